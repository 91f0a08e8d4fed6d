"""One worker process of ``shmarrow.reduce(name, processes=P)``, started by the coordinator as
``python -m shmarrow._worker DIR VALIDATE NAME RESULTS WORKER WORKERS COLUMN...``.

It attaches the segment and the results segment by name, reduces its share of the chunks and
writes their partials into its own rows (``shmarrow::partition::ReduceTask::run``, the same
Rust code as ``shmarrow worker reduce``). An error exits non-zero with its message as the last
line on stderr, which the coordinator quotes.
"""

import sys

from shmarrow._shmarrow import _reduce_worker


def main(argv: "list[str]") -> int:
    if len(argv) < 6:
        print("usage: python -m shmarrow._worker DIR VALIDATE NAME RESULTS WORKER WORKERS COLUMN...",
              file=sys.stderr)
        return 2
    dir, validate, name, results, worker, workers, *columns = argv
    _reduce_worker(name, results, columns, int(worker), int(workers), validate=validate, dir=dir)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Exception as e:  # the coordinator quotes the last line of stderr
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
