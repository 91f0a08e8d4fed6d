"""Errors: names, missing segments, corrupt bytes, things that are not files, bad arguments,
and operating-system permissions."""

from __future__ import annotations

import errno
import os
import pickle
import shutil
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pytest

import shmarrow

ALL_ERRORS = [
    shmarrow.SegmentNotFound,
    shmarrow.SegmentExists,
    shmarrow.NoSpace,
    shmarrow.AccessDenied,
    shmarrow.InvalidName,
    shmarrow.NotAFile,
    shmarrow.CorruptSegment,
    shmarrow.NotZeroCopy,
    shmarrow.InvalidTable,
    shmarrow.InvalidColumn,
    shmarrow.ChannelError,
    shmarrow.ChannelTimeout,
    shmarrow.MapOverflow,
]

# The classes that are also Python's own, and the errno their OSError side carries.
ALSO_BUILTIN = [
    (shmarrow.SegmentNotFound, FileNotFoundError, errno.ENOENT),
    (shmarrow.SegmentExists, FileExistsError, errno.EEXIST),
    (shmarrow.AccessDenied, PermissionError, errno.EACCES),
    (shmarrow.NoSpace, OSError, errno.ENOSPC),
    (shmarrow.InvalidName, ValueError, None),
    (shmarrow.InvalidColumn, ValueError, None),
    (shmarrow.ChannelTimeout, TimeoutError, errno.ETIMEDOUT),
    (shmarrow.MapOverflow, OverflowError, None),
]

INVALID_NAMES = ["", ".x", "a/b", "../x", "x" * 201, "sp ace", "a\x00b", "ü", "a\nb"]


def _valid_segment_bytes() -> bytes:
    """Bytes of a real shmarrow segment (published in an isolated spot and removed)."""
    import tempfile

    d = tempfile.mkdtemp(prefix=f"pytest-shmarrow-{os.getpid()}-", dir="/dev/shm")
    try:
        t = pa.table({"x": pa.array(range(64), pa.int64()), "s": [f"v{i}" for i in range(64)]})
        created = shmarrow.create("valid", t, dir=d)
        with open(created.path, "rb") as f:
            return f.read()
    finally:
        shutil.rmtree(d)


def test_exception_hierarchy():
    for exc in ALL_ERRORS:
        assert issubclass(exc, shmarrow.ShmarrowError), exc
        assert exc is not shmarrow.ShmarrowError
    assert issubclass(shmarrow.ShmarrowError, Exception)
    assert len(set(ALL_ERRORS)) == len(ALL_ERRORS)


@pytest.mark.parametrize("cls, builtin, code", ALSO_BUILTIN, ids=lambda c: getattr(c, "__name__", repr(c)))
def test_errors_are_also_pythons_own(cls, builtin, code):
    assert issubclass(cls, builtin) and issubclass(cls, shmarrow.ShmarrowError)
    assert cls.__module__ == "shmarrow" and getattr(shmarrow, cls.__name__) is cls
    assert cls.__doc__


def test_errors_pickle_with_their_attributes(seg_name, shm_dir):
    """A worker's exception crosses back to the parent (ProcessPoolExecutor pickles it)."""
    raised = []
    for op in (
        lambda: shmarrow.attach(seg_name, dir=shm_dir),
        lambda: shmarrow.path("../x", dir=shm_dir),
        lambda: shmarrow.reduce(seg_name, columns=["nope"], dir=shm_dir),
    ):
        try:
            op()
        except shmarrow.ShmarrowError as exc:
            raised.append(exc)
    shmarrow.create(seg_name, pa.table({"x": [1]}), dir=shm_dir)
    try:
        shmarrow.reduce(seg_name, columns=["nope"], dir=shm_dir)
    except shmarrow.ShmarrowError as exc:
        raised.append(exc)
    assert [type(e) for e in raised] == [
        shmarrow.SegmentNotFound, shmarrow.InvalidName, shmarrow.SegmentNotFound, shmarrow.InvalidColumn,
    ]
    for exc in raised:
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc) and str(back) == str(exc)
        assert back.name == exc.name
    assert raised[0].name == seg_name and raised[0].errno == errno.ENOENT
    assert raised[1].name == "../x"
    assert raised[3].column == "nope" and raised[3].name == seg_name
    assert pickle.loads(pickle.dumps(raised[3])).column == "nope"
    # Errors without a segment carry name None.
    assert shmarrow.ShmarrowError("x").name is None


def test_channel_timeout_is_a_timeout_error(seg_name, shm_dir):
    schema = pa.schema([("x", pa.int64())])
    with shmarrow.producer(seg_name, schema, dir=shm_dir):
        sub = shmarrow.subscribe(seg_name, dir=shm_dir, timeout=0.05)
        with pytest.raises(TimeoutError, match="timed out") as info:
            next(sub)
        sub.close()
    assert isinstance(info.value, shmarrow.ChannelTimeout)
    assert isinstance(info.value, shmarrow.ChannelError)
    assert info.value.name == seg_name and info.value.errno == errno.ETIMEDOUT


def test_attach_missing(seg_name, shm_dir):
    with pytest.raises(shmarrow.SegmentNotFound, match=seg_name) as info:
        shmarrow.attach(seg_name, dir=shm_dir)
    assert isinstance(info.value, shmarrow.ShmarrowError)
    with pytest.raises(FileNotFoundError):
        shmarrow.attach(seg_name, dir=shm_dir)


def test_attach_missing_dir(seg_name, iso_dir):
    with pytest.raises(shmarrow.SegmentNotFound, match=seg_name):
        shmarrow.attach(seg_name, dir=os.path.join(iso_dir, "no-such-dir"))


def test_remove_missing_returns_false(seg_name, shm_dir):
    assert shmarrow.remove(seg_name, dir=shm_dir) is False


@pytest.mark.parametrize("name", INVALID_NAMES, ids=repr)
def test_invalid_names(name, shm_dir, iso_dir):
    t = pa.table({"x": [1]})
    with pytest.raises(shmarrow.InvalidName):
        shmarrow.attach(name, dir=shm_dir)
    with pytest.raises(shmarrow.InvalidName):
        shmarrow.remove(name, dir=shm_dir)
    with pytest.raises(shmarrow.InvalidName):
        shmarrow.path(name, dir=shm_dir)
    with pytest.raises(shmarrow.InvalidName):
        shmarrow.create(name, t, dir=iso_dir)
    assert os.listdir(iso_dir) == [], "a refused create must leave nothing behind"


def test_invalid_name_is_shmarrow_error(shm_dir):
    with pytest.raises(shmarrow.ShmarrowError):
        shmarrow.path("../etc/passwd", dir=shm_dir)


@pytest.mark.parametrize("name", ["a", "x.arrow", "A-b_c.9", "n" * 200, "a..b"])
def test_valid_names_accepted(name, iso_dir):
    shmarrow.create(name, pa.table({"x": [1]}), dir=iso_dir)
    assert shmarrow.attach(name, dir=iso_dir).num_rows == 1
    assert shmarrow.remove(name, dir=iso_dir) is True


# ---------------------------------------------------------------- corrupt files


def _corruptions():
    valid = _valid_segment_bytes()
    assert valid[:6] == b"ARROW1" and valid[-6:] == b"ARROW1"
    footer_ff = bytearray(valid)
    footer_ff[-74:-10] = b"\xff" * 64
    lying_len = bytearray(valid)
    lying_len[-10:-6] = (len(valid) * 4).to_bytes(4, "little")  # footer length past the start
    return {
        "random": os.urandom(4096),
        "truncated-half": valid[: len(valid) // 2],
        "footer-0xff": bytes(footer_ff),
        "footer-length-lies": bytes(lying_len),
        "empty": b"",
        "five-bytes": b"ARROW",
        "magic-only": b"ARROW1\x00\x00ARROW1",
    }


CORRUPTIONS = _corruptions()


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_corrupt_segment(kind, seg_name, shm_dir):
    with open(os.path.join(shm_dir, seg_name), "wb") as f:
        f.write(CORRUPTIONS[kind])
    with pytest.raises(shmarrow.CorruptSegment) as info:
        shmarrow.attach(seg_name, dir=shm_dir)
    message = str(info.value)
    assert seg_name in message
    assert "\n" not in message.strip(), "errors are one line"
    assert isinstance(info.value, shmarrow.ShmarrowError)
    with pytest.raises(shmarrow.CorruptSegment):
        shmarrow.attach(seg_name, dir=shm_dir, strict=True)


def test_corrupt_segment_in_subprocess_does_not_crash(seg_name, shm_dir):
    """Belt and braces: every corruption in a fresh interpreter exits normally (no SIGSEGV/
    SIGBUS/abort) and reports CorruptSegment."""
    paths = []
    for i, kind in enumerate(sorted(CORRUPTIONS)):
        name = f"{seg_name}-{i}"
        paths.append(os.path.join(shm_dir, name))
        with open(paths[-1], "wb") as f:
            f.write(CORRUPTIONS[kind])
    code = textwrap.dedent(
        f"""
        import shmarrow
        for i in range({len(CORRUPTIONS)}):
            try:
                shmarrow.attach(f"{seg_name}-{{i}}", dir={shm_dir!r})
                print("no-error")
            except shmarrow.CorruptSegment:
                print("corrupt")
        """
    )
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    finally:
        for p in paths:
            os.unlink(p)
    assert out.returncode == 0, (out.returncode, out.stderr)
    assert out.stdout.split() == ["corrupt"] * len(CORRUPTIONS)


def test_ipc_stream_format_is_corrupt(seg_name, shm_dir):
    """A segment is an IPC *file*; the stream format (no footer) is refused, not misread."""
    t = pa.table({"x": [1, 2, 3]})
    with pa.OSFile(os.path.join(shm_dir, seg_name), "wb") as sink:
        with pa.ipc.new_stream(sink, t.schema) as writer:
            writer.write_table(t)
    with pytest.raises(shmarrow.CorruptSegment, match=seg_name):
        shmarrow.attach(seg_name, dir=shm_dir)


def test_non_arrow_file_is_not_listed_but_attach_says_corrupt(seg_name, shm_dir):
    with open(os.path.join(shm_dir, seg_name), "wb") as f:
        f.write(b"hello world, not arrow")
    assert seg_name not in {s["name"] for s in shmarrow.list(dir=shm_dir)}
    with pytest.raises(shmarrow.CorruptSegment):
        shmarrow.attach(seg_name, dir=shm_dir)


# ---------------------------------------------------------------- not regular files


def test_symlink_is_not_followed(new_name, shm_dir):
    target, link = new_name("target"), new_name("link")
    shmarrow.create(target, pa.table({"x": [1]}), dir=shm_dir)
    os.symlink(os.path.join(shm_dir, target), os.path.join(shm_dir, link))
    assert shmarrow.attach(target, dir=shm_dir).num_rows == 1  # the target itself is fine
    with pytest.raises(shmarrow.NotAFile, match="symbolic link"):
        shmarrow.attach(link, dir=shm_dir)


def test_dangling_symlink_is_not_a_file(new_name, shm_dir):
    link = new_name("dangling")
    os.symlink(os.path.join(shm_dir, new_name("nowhere")), os.path.join(shm_dir, link))
    with pytest.raises(shmarrow.NotAFile):
        shmarrow.attach(link, dir=shm_dir)


def test_create_over_symlink_replaces_link_not_target(new_name, shm_dir):
    target, link = new_name("target"), new_name("link")
    shmarrow.create(target, pa.table({"x": [1]}), dir=shm_dir)
    with open(os.path.join(shm_dir, target), "rb") as f:
        before = f.read()
    os.symlink(os.path.join(shm_dir, target), os.path.join(shm_dir, link))
    shmarrow.create(link, pa.table({"x": [2]}), dir=shm_dir)
    with open(os.path.join(shm_dir, target), "rb") as f:
        assert f.read() == before, "the symlink's target must not be written"
    assert stat.S_ISREG(os.lstat(os.path.join(shm_dir, link)).st_mode)
    assert shmarrow.attach(link, dir=shm_dir).column("x").to_pylist() == [2]


def test_fifo_is_not_a_file_and_does_not_hang(seg_name, shm_dir):
    os.mkfifo(os.path.join(shm_dir, seg_name))
    code = textwrap.dedent(
        f"""
        import shmarrow
        try:
            shmarrow.attach({seg_name!r}, dir={shm_dir!r})
        except shmarrow.NotAFile as e:
            print("NotAFile", e)
        """
    )
    # in a subprocess with a timeout, so a blocking open() fails the test instead of hanging it
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("NotAFile") and seg_name in out.stdout
    with pytest.raises(shmarrow.NotAFile, match="FIFO"):
        shmarrow.attach(seg_name, dir=shm_dir)


def test_directory_is_not_a_file(seg_name, shm_dir):
    os.mkdir(os.path.join(shm_dir, seg_name))
    with pytest.raises(shmarrow.NotAFile, match="directory"):
        shmarrow.attach(seg_name, dir=shm_dir)
    with pytest.raises(shmarrow.NotAFile):
        shmarrow.remove(seg_name, dir=shm_dir)
    assert os.path.isdir(os.path.join(shm_dir, seg_name))


# ---------------------------------------------------------------- bad arguments


@pytest.mark.parametrize("mode", [0o1000, 0o4755, 0o7777])
def test_create_invalid_mode(mode, seg_name, shm_dir):
    with pytest.raises(ValueError):
        shmarrow.create(seg_name, pa.table({"x": [1]}), dir=shm_dir, mode=mode)
    assert not os.path.lexists(os.path.join(shm_dir, seg_name))


@pytest.mark.parametrize("lifetime", ["forever", "", "Owner", "temporary"])
def test_create_invalid_lifetime(lifetime, seg_name, shm_dir):
    with pytest.raises(ValueError, match="lifetime"):
        shmarrow.create(seg_name, pa.table({"x": [1]}), dir=shm_dir, lifetime=lifetime)
    assert not os.path.lexists(os.path.join(shm_dir, seg_name))


def test_create_empty_batch_list(seg_name, shm_dir):
    with pytest.raises(shmarrow.InvalidTable):
        shmarrow.create(seg_name, [], dir=shm_dir)
    assert not os.path.lexists(os.path.join(shm_dir, seg_name))


def test_create_dictionary_replacement_is_invalid_table(seg_name, shm_dir):
    """Chunks with different dictionaries cannot be one IPC file: InvalidTable, no files."""
    t = pa.Table.from_batches(
        [
            pa.record_batch({"c": pa.array(["a", "b"]).dictionary_encode()}),
            pa.record_batch({"c": pa.array(["z"]).dictionary_encode()}),
        ]
    )
    with pytest.raises(shmarrow.InvalidTable, match=seg_name):
        shmarrow.create(seg_name, t, dir=shm_dir)
    assert not os.path.lexists(os.path.join(shm_dir, seg_name))
    assert [f for f in os.listdir(shm_dir) if f.startswith(f".{seg_name}.")] == []


def test_create_missing_directory(seg_name, iso_dir):
    missing = os.path.join(iso_dir, "missing")
    with pytest.raises(shmarrow.ShmarrowError):
        shmarrow.create(seg_name, pa.table({"x": [1]}), dir=missing)
    assert not os.path.exists(missing)


def test_create_rejects_non_arrow_data(seg_name, shm_dir):
    with pytest.raises(Exception):
        shmarrow.create(seg_name, 42, dir=shm_dir)
    assert not os.path.lexists(os.path.join(shm_dir, seg_name))


def test_column_view_missing_column(seg_name, shm_dir):
    shmarrow.create(seg_name, pa.table({"x": [1]}), dir=shm_dir)
    t = shmarrow.attach(seg_name, dir=shm_dir)
    with pytest.raises(shmarrow.InvalidColumn, match="nope") as info:
        shmarrow.column_view(t, "nope")
    assert isinstance(info.value, ValueError) and info.value.column == "nope"


# ---------------------------------------------------------------- permissions (root only)

NOBODY = ["--reuid=65534", "--regid=65534", "--clear-groups"]


def _as_nobody(argv, **kw):
    env = {"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1", "HOME": "/"}
    return subprocess.run(
        ["setpriv", *NOBODY, *argv], capture_output=True, text=True, timeout=60, cwd="/", env=env, **kw
    )


@pytest.fixture(scope="module")
def nobody_python():
    """(python, can_import_shmarrow) runnable as user nobody."""
    if os.geteuid() != 0:
        pytest.skip("permission tests need root (to run a process as user nobody)")
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    probe = _as_nobody([sys.executable, "-c", "import shmarrow, pyarrow"])
    if probe.returncode == 0:
        return sys.executable, True
    for candidate in ("/usr/bin/python3", shutil.which("python3")):
        if candidate and _as_nobody([candidate, "-c", "pass"]).returncode == 0:
            return candidate, False
    pytest.skip("no python interpreter that user nobody can run")


ATTACH_AS_NOBODY = """
import sys
name, d = sys.argv[1], sys.argv[2]
try:
    import shmarrow
except ImportError:
    shmarrow = None
if shmarrow is not None:
    try:
        t = shmarrow.attach(name, dir=d)
    except PermissionError as e:
        print("AccessDenied" if isinstance(e, shmarrow.AccessDenied) else "other", e.name, e); sys.exit(3)
    print("rows", t.num_rows, sum(t.column("x").to_pylist()))
else:
    import os
    try:
        with open(os.path.join(d, name), "rb") as f:
            data = f.read()
    except PermissionError as e:
        print("PermissionError", e); sys.exit(3)
    print("magic", data[:6].decode(), len(data))
"""


def test_permissions_default_mode_denies_other_users(seg_name, shm_dir, nobody_python, shmarrow_bin):
    python, has_shmarrow = nobody_python
    created = shmarrow.create(seg_name, pa.table({"x": [1, 2, 3]}), dir=shm_dir)
    assert stat.S_IMODE(os.stat(created.path).st_mode) == 0o600

    denied = _as_nobody([python, "-c", ATTACH_AS_NOBODY, seg_name, shm_dir])
    assert denied.returncode == 3, (denied.stdout, denied.stderr)
    if has_shmarrow:
        assert denied.stdout.startswith(f"AccessDenied {seg_name} ")
    else:
        assert denied.stdout.startswith("PermissionError")

    cli = _as_nobody([shmarrow_bin, "inspect", seg_name, "--dir", shm_dir])
    assert cli.returncode == 1, (cli.stdout, cli.stderr)
    assert "permission denied" in cli.stderr.lower()

    os.chmod(created.path, 0o644)
    allowed = _as_nobody([python, "-c", ATTACH_AS_NOBODY, seg_name, shm_dir])
    assert allowed.returncode == 0, (allowed.stdout, allowed.stderr)
    if has_shmarrow:
        assert allowed.stdout.split() == ["rows", "3", "6"]
    else:
        assert allowed.stdout.split() == ["magic", "ARROW1", str(created.nbytes)]
    cli = _as_nobody([shmarrow_bin, "inspect", seg_name, "--dir", shm_dir])
    assert cli.returncode == 0, cli.stderr
    assert seg_name in cli.stdout


def test_permissions_mode_644_readable_by_others(seg_name, shm_dir, nobody_python, shmarrow_bin):
    python, has_shmarrow = nobody_python
    created = shmarrow.create(seg_name, pa.table({"x": [4, 5]}), dir=shm_dir, mode=0o644)
    allowed = _as_nobody([python, "-c", ATTACH_AS_NOBODY, seg_name, shm_dir])
    assert allowed.returncode == 0, (allowed.stdout, allowed.stderr)
    if has_shmarrow:
        assert allowed.stdout.split() == ["rows", "2", "9"]
    else:
        assert allowed.stdout.split() == ["magic", "ARROW1", str(created.nbytes)]
    cli = _as_nobody([shmarrow_bin, "inspect", seg_name, "--dir", shm_dir])
    assert cli.returncode == 0, cli.stderr


def test_permissions_other_user_cannot_remove_or_replace(seg_name, shm_dir, nobody_python):
    """/dev/shm is sticky (1777): another user can neither remove nor replace our segment."""
    python, has_shmarrow = nobody_python
    if not has_shmarrow:
        pytest.skip("user nobody cannot import shmarrow here")
    if not os.stat(shm_dir).st_mode & stat.S_ISVTX:
        pytest.skip("segment directory is not sticky")
    shmarrow.create(seg_name, pa.table({"x": [1]}), dir=shm_dir, mode=0o644)
    code = textwrap.dedent(
        """
        import sys, shmarrow, pyarrow as pa
        name, d = sys.argv[1], sys.argv[2]
        for op in (lambda: shmarrow.remove(name, dir=d),
                   lambda: shmarrow.create(name, pa.table({"x": [9]}), dir=d)):
            try:
                op(); print("ok")
            except shmarrow.AccessDenied:
                print("AccessDenied")
        """
    )
    out = _as_nobody([python, "-c", code, seg_name, shm_dir])
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["AccessDenied", "AccessDenied"]
    assert shmarrow.attach(seg_name, dir=shm_dir).column("x").to_pylist() == [1]
    assert [f for f in os.listdir(shm_dir) if f.startswith(f".{seg_name}.")] == []


# ---------------------------------------------------------------- a full directory (root only)

NO_SPACE = """
import errno, sys, numpy as np, shmarrow
try:
    shmarrow.share(np.zeros(1 << 20), "big", dir=sys.argv[1])
except OSError as e:
    assert isinstance(e, shmarrow.NoSpace), type(e)
    print(e.errno == errno.ENOSPC, e.name, e.needed)
"""


def test_no_space_is_an_oserror_enospc(iso_dir):
    if os.geteuid() != 0:
        pytest.skip("needs root (mounts a 1 MiB tmpfs in a private mount namespace)")
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    script = f'mount -t tmpfs -o size=1m shmarrow-test "$1" && exec "$2" -c "$3" "$1"'
    out = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, "sh", iso_dir, sys.executable, NO_SPACE],
        capture_output=True, text=True,
    )
    if out.returncode != 0 and "mount" in out.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {out.stderr.strip()}")
    assert out.returncode == 0, out.stderr
    ok, name, needed = out.stdout.split()
    assert ok == "True" and name == "big" and int(needed) > 8 << 20
    assert os.listdir(iso_dir) == []  # the tmpfs (and anything in it) was private


def test_a_missing_directory_is_named_as_such(iso_dir):
    missing = os.path.join(iso_dir, "missing")
    for call in (
        lambda: shmarrow.attach("x", dir=missing),
        lambda: shmarrow.list(dir=missing),
        lambda: shmarrow.remove("x", dir=missing),
        lambda: shmarrow.create("x", pa.table({"a": [1]}), dir=missing),
    ):
        with pytest.raises(shmarrow.SegmentNotFound, match="segment directory .* does not exist") as info:
            call()
        assert isinstance(info.value, FileNotFoundError)


# ---------------------------------------------------------------- column_view of a segment name


def test_column_view_of_a_name_errors(new_name, shm_dir):
    missing, corrupt, directory, strings = (new_name() for _ in range(4))
    with pytest.raises(shmarrow.SegmentNotFound) as info:
        shmarrow.column_view(missing, "x", dir=shm_dir)
    assert info.value.name == missing and isinstance(info.value, FileNotFoundError)
    with open(os.path.join(shm_dir, corrupt), "wb") as f:
        f.write(CORRUPTIONS["footer-0xff"])
    with pytest.raises(shmarrow.CorruptSegment, match=corrupt):
        shmarrow.column_view(corrupt, "x", dir=shm_dir)
    os.mkdir(os.path.join(shm_dir, directory))
    with pytest.raises(shmarrow.NotAFile, match="directory"):
        shmarrow.column_view(directory, "x", dir=shm_dir)
    with pytest.raises(shmarrow.InvalidName):
        shmarrow.column_view("../etc", "x", dir=shm_dir)
    shmarrow.create(strings, pa.table({"s": ["a", "b"], "x": [1.0, 2.0]}), dir=shm_dir)
    with pytest.raises(shmarrow.NotZeroCopy, match="column .s.") as info:
        shmarrow.column_view(strings, "s", dir=shm_dir)
    assert info.value.name == strings
    with pytest.raises(shmarrow.InvalidColumn, match="nope") as info:
        shmarrow.column_view(strings, "nope", dir=shm_dir)
    assert isinstance(info.value, ValueError) and info.value.column == "nope"
    assert info.value.name == strings


@pytest.mark.parametrize("route", ["name", "table"])
def test_column_view_arguments(route, seg_name, shm_dir):
    shmarrow.create(seg_name, pa.table({"s": ["a", "b"], "x": [1.0, 2.0]}), dir=shm_dir)
    source = seg_name if route == "name" else shmarrow.attach(seg_name, dir=shm_dir)

    def view(column):
        if route == "name":
            return shmarrow.column_view(source, column, dir=shm_dir)
        return shmarrow.column_view(source, column)

    assert view(1)[0].tolist() == [1.0, 2.0]
    assert view(-1)[0].tolist() == [1.0, 2.0], "negative: from the end, as pyarrow counts"
    with pytest.raises(shmarrow.NotZeroCopy):
        view(-2)
    for index in (2, -3, 2**63, -(2**63) - 1, 2**64, 10**30):
        with pytest.raises(shmarrow.InvalidColumn):
            view(index)
    for bad in (None, 1.0, float("nan"), b"x", True, [1], np.int64(1)):
        with pytest.raises(TypeError, match="column must be a str or an int"):
            view(bad)


def test_column_view_source_and_option_types(seg_name, shm_dir):
    shmarrow.create(seg_name, pa.table({"x": [1.0, 2.0]}), dir=shm_dir)
    table = shmarrow.attach(seg_name, dir=shm_dir)
    for bad in (None, 3, b"name", pa.table({"x": [1.0]}).column(0), table.to_batches()[0]):
        with pytest.raises(TypeError, match="segment name or a pyarrow.Table"):
            shmarrow.column_view(bad, "x")
    with pytest.raises(TypeError, match="segment name"):
        shmarrow.column_view(table, "x", dir=shm_dir)
    with pytest.raises(TypeError, match="segment name"):
        shmarrow.column_view(table, "x", validate="full")
    with pytest.raises(TypeError):
        shmarrow.column_view(seg_name, "x", dir=3)
    with pytest.raises(TypeError):
        shmarrow.column_view(seg_name, "x", dir=shm_dir, validate=None)


def test_a_wide_segment_pyarrow_reads_in_place_refuses_every_corrupt_message_as_corrupt(iso_dir):
    """A private segment of 20 primitive columns in one batch is read by pyarrow in place after
    the Rust checks: each byte of its batch message's metadata set to 0x00 or 0xff either
    attaches or raises CorruptSegment (pyarrow's own refusals, of a metadata version or by its
    stricter flatbuffer verifier, came out as OSError or ArrowInvalid)."""
    cols = {f"c{i}": np.arange(64, dtype=np.float64) * i for i in range(20)}
    shmarrow.create("wide", pa.table(cols), dir=iso_dir)
    with open(os.path.join(iso_dir, "wide"), "rb") as f:
        orig = f.read()
    # The schema message (marker, length, metadata) first, then the batch message, each
    # after the padding the writer aligns messages with.
    schema_at = orig.index(b"\xff" * 4, 8)
    schema_len = int.from_bytes(orig[schema_at + 4:schema_at + 8], "little")
    at = orig.index(b"\xff" * 4, schema_at + 8 + schema_len)
    meta_len = int.from_bytes(orig[at + 4:at + 8], "little")
    refused = 0
    for pos in range(at + 8, at + 8 + meta_len):
        for value in (0x00, 0xFF):
            corrupt = bytearray(orig)
            corrupt[pos] = value
            path = os.path.join(iso_dir, "x")
            with open(path, "wb") as f:
                f.write(corrupt)
            os.chmod(path, 0o600)
            try:
                shmarrow.attach("x", dir=iso_dir)
            except shmarrow.CorruptSegment as e:
                assert e.name == "x"
                refused += 1
    assert refused > 0
