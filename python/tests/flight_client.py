"""A pyarrow.flight client against `shmarrow serve`: the Python half of tests/flight.rs.

Run by the Rust test (which starts the server and checks the server's directory) as
`python flight_client.py COMMAND ADDR ...`; exits non-zero with a message on any mismatch.

- ``check ADDR NAME``: NAME (the type matrix) is listed with its row count, its flight info
  and schema are right, and do_get returns the matrix exactly.
- ``upload ADDR NAME``: do_put the matrix (batches of 3 + 2 rows) as NAME; prints the server's
  JSON summary of the new segment.
- ``reduce ADDR NAME [COLUMN...]``: the remote `reduce` action; prints its JSON result.
- ``remove ADDR NAME``: the `remove` action, then a second one must fail with not found.
- ``token ADDR NAME TOKEN``: no token and a wrong token are refused (unauthenticated); TOKEN
  reads NAME.
"""

import json
import os
import sys

import pyarrow as pa
import pyarrow.flight as flight

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from matrix import ROWS, batches, compare, matrix  # noqa: E402


def client(addr: str) -> flight.FlightClient:
    return flight.connect(f"grpc://{addr}")


def check(addr: str, name: str) -> None:
    c = client(addr)
    listed = {f.descriptor.path[0].decode(): f for f in c.list_flights()}
    if name not in listed:
        sys.exit(f"{name} not listed: {sorted(listed)}")
    if listed[name].total_records != ROWS:
        sys.exit(f"listed {listed[name].total_records} rows, want {ROWS}")
    info = c.get_flight_info(flight.FlightDescriptor.for_path(name))
    want = matrix()
    if info.total_records != ROWS or info.total_bytes <= 0:
        sys.exit(f"flight info: {info.total_records} rows, {info.total_bytes} bytes")
    if info.schema.remove_metadata() != want.schema:
        sys.exit(f"flight info schema:\n{info.schema}\n--- want ---\n{want.schema}")
    if any(k.startswith(b"shmarrow.") for k in (info.schema.metadata or {})):
        sys.exit("the server's own metadata keys leaked into the schema")
    schema = c.get_schema(flight.FlightDescriptor.for_path(name)).schema
    if schema.remove_metadata() != want.schema:
        sys.exit(f"get_schema:\n{schema}")
    [endpoint] = info.endpoints
    table = c.do_get(endpoint.ticket).read_all()
    compare(table, want)
    if [b.num_rows for b in table.to_batches()] != [3, 2]:
        sys.exit(f"batches {[b.num_rows for b in table.to_batches()]}, want [3, 2]")
    print("ok")


def upload(addr: str, name: str) -> None:
    c = client(addr)
    table = matrix()
    writer, reader = c.do_put(flight.FlightDescriptor.for_path(name), table.schema)
    for batch in batches(table):
        writer.write_batch(batch)
    writer.done_writing()
    summary = reader.read()
    writer.close()
    print(json.dumps(json.loads(summary.to_pybytes())))


def reduce(addr: str, name: str, columns) -> None:
    body = json.dumps({"name": name, "columns": list(columns)}).encode()
    [result] = list(client(addr).do_action(flight.Action("reduce", body)))
    print(json.dumps(json.loads(result.body.to_pybytes())))


def remove(addr: str, name: str) -> None:
    c = client(addr)
    [result] = list(c.do_action(flight.Action("remove", name.encode())))
    if json.loads(result.body.to_pybytes()) != {"name": name, "status": "removed"}:
        sys.exit(f"remove answered {result.body.to_pybytes()!r}")
    try:
        list(c.do_action(flight.Action("remove", name.encode())))
    except flight.FlightError as e:
        if "not found" not in str(e):
            sys.exit(f"second remove: {e}")
    except KeyError as e:  # pyarrow maps NOT_FOUND to ArrowKeyError
        if "not found" not in str(e):
            sys.exit(f"second remove: {e}")
    else:
        sys.exit("removing a missing segment succeeded")
    print("ok")


def token(addr: str, name: str, secret: str) -> None:
    c = client(addr)
    ticket = flight.Ticket(name.encode())
    for headers in ([], [(b"authorization", b"Bearer not-the-token")]):
        try:
            c.do_get(ticket, options=flight.FlightCallOptions(headers=headers)).read_all()
        except flight.FlightUnauthenticatedError:
            pass
        else:
            sys.exit(f"read without the right token (headers {headers})")
    good = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {secret}".encode())])
    table = c.do_get(ticket, options=good).read_all()
    compare(table, matrix())
    print("ok")


def main() -> None:
    command, addr, name, *rest = sys.argv[1:]
    if command == "check":
        check(addr, name)
    elif command == "upload":
        upload(addr, name)
    elif command == "reduce":
        reduce(addr, name, rest)
    elif command == "remove":
        remove(addr, name)
    elif command == "token":
        token(addr, name, rest[0])
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
