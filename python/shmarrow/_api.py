"""attach, create, column_view and allocate: the package's Python layer over the Rust binding.

Every table :func:`attach` returns is remembered (weakly) with the name, directory and file
identity it came from, so that :func:`shmarrow.ref` and multiprocessing can send it by
reference (see ``_share.py``).
"""

from __future__ import annotations

import errno
import os
import weakref
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

import numpy as np
import pyarrow as pa

from . import _shmarrow
from ._shmarrow import Created, InvalidColumn, InvalidTable, NotZeroCopy, SegmentExists, SegmentNotFound
from .structured import _table as _numpy_table

PathLike = Union[str, "os.PathLike[str]"]
#: (device, inode) of a segment's file: one published version of a name.
Identity = Tuple[int, int]
#: What a reference to a segment holds: name, absolute directory, identity (None: any version).
Reference = Tuple[str, str, Optional[Identity]]

# id(table) -> (weak reference to the table, where it came from). An entry dies with its table,
# so a reused id never finds a stale entry (the weak reference would not be the same object).
_ATTACHED: Dict[int, Tuple["weakref.ref[pa.Table]", Reference]] = {}


def _absolute_dir(dir: Optional[PathLike]) -> str:
    """The absolute segment directory: ``dir``, else ``$SHMARROW_DIR`` if set and not empty,
    else ``/dev/shm`` (as the Rust side chooses it)."""
    chosen = os.fspath(dir) if dir is not None else os.environ.get(_shmarrow.DIR_ENV) or _shmarrow.DEFAULT_DIR
    return os.path.abspath(chosen)


def _resolve_dir(name: str, dir: Optional[PathLike]) -> str:
    """The absolute directory segment ``name`` lives in, after checking the name."""
    _shmarrow.path(name, dir=dir)
    return _absolute_dir(dir)


def _error(cls: type, message: str, name: Optional[str], **attrs: Any) -> Exception:
    """An instance of one of shmarrow's exception classes, as the Rust binding makes them."""
    codes: Dict[type, int] = {SegmentNotFound: errno.ENOENT, SegmentExists: errno.EEXIST}
    code = codes.get(cls)
    exc: Exception = cls(code, message) if code is not None else cls(message)
    exc.name = name  # type: ignore[attr-defined]
    for key, value in attrs.items():
        setattr(exc, key, value)
    return exc


def _attach_version(
    name: str, dir: str, identity: Optional[Identity], strict: bool, validate: str = "auto"
) -> pa.Table:
    """Attach ``name`` in ``dir``; with ``identity``, only that published version of it."""
    table, found = _shmarrow.attach(name, dir=dir, strict=strict, validate=validate)
    if identity is not None and found != tuple(identity):
        raise _error(
            SegmentNotFound,
            f"segment {name!r} in {dir} was replaced since this reference was made; "
            "the version it refers to is gone",
            name,
        )
    key = id(table)
    _ATTACHED[key] = (weakref.ref(table, lambda _: _ATTACHED.pop(key, None)), (name, dir, found))
    return table


def _reference_of(table: object) -> Optional[Reference]:
    """Where ``table`` was attached from, if it is a table :func:`attach` returned."""
    entry = _ATTACHED.get(id(table))
    if entry is None or entry[0]() is not table:
        return None
    return entry[1]


def _current_identity(directory: str, name: str) -> Optional[Identity]:
    try:
        st = os.stat(os.path.join(directory, name), follow_symlinks=False)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def attach(
    name: str, *, dir: Optional[PathLike] = None, strict: bool = False, validate: str = "auto"
) -> pa.Table:
    """Attach a segment: a ``pyarrow.Table`` whose buffers lie in the shared mapping.

    Parameters
    ----------
    name : str
        The segment's name.
    dir : str or os.PathLike, optional
        The segment directory; default ``$SHMARROW_DIR``, else ``/dev/shm``.
    strict : bool, default False
        Refuse segments that would need any copy (foreign files with misaligned 16-byte
        types or compressed bodies). By default only those buffers are copied.
    validate : {"auto", "full", "structure"}, default "auto"
        How much of the data to check (the trust model, SECURITY.md). Structural checks
        (every buffer inside the mapping and large enough, lengths and null counts
        consistent) are always made, in time independent of the data size. ``"full"`` also
        checks every offset, UTF-8 string and dictionary key (time proportional to the
        variable-width data). ``"auto"``: structure only for a segment shmarrow published
        that only this user (or root) can write, full otherwise. ``"structure"``: structure
        only for any file only this user or root can write; others are refused.

    Returns
    -------
    pyarrow.Table
        Zero-copy: the mapping stays alive as long as any column, array or buffer of the
        table does, even after the segment is removed or replaced (a replaced segment's
        readers keep the version they attached). Sent through ``multiprocessing`` (a Pool,
        a ``ProcessPoolExecutor``, a Queue) this very table travels as a reference to its
        segment, not as data; :func:`shmarrow.ref` makes that reference explicit.

    Raises
    ------
    SegmentNotFound
        No segment of that name (also a ``FileNotFoundError``).
    InvalidName
        The name breaks the naming rule (also a ``ValueError``).
    AccessDenied
        The file's mode or owner refuses this process, or ``validate="structure"`` and
        other users can write the file (also a ``PermissionError``).
    NotAFile, CorruptSegment, NotZeroCopy
        Something other than a regular file at the name; bytes that are not a valid Arrow
        IPC file; ``strict=True`` and a copy would be needed.
    ValueError
        ``validate`` is not one of the three.
    """
    # The Rust attach checks the name.
    return _attach_version(name, _absolute_dir(dir), None, strict, validate)


def _as_arrow(data: object, name: str) -> Any:
    """``data`` as something the Rust writer takes (an object with ``__arrow_c_stream__``)."""
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if isinstance(data, (np.ndarray, dict)):
        return _numpy_table(data)
    if isinstance(data, pa.RecordBatchReader):
        return _read_batches(iter(data), name, data.schema)
    if isinstance(data, (pa.Array, pa.ChunkedArray)):
        raise TypeError(
            f"create: a pyarrow {type(data).__name__} is one column, not a table: "
            "pass pa.table({'name': array})"
        )
    if hasattr(data, "__arrow_c_stream__"):
        return data  # pandas, polars, DuckDB results, ...: the Rust writer reads the stream
    if isinstance(data, (str, bytes, pa.Schema)) or not isinstance(data, Iterable):
        raise TypeError(
            f"create: cannot publish {type(data).__name__!r} objects: pass a pyarrow Table, RecordBatch "
            "or RecordBatchReader, an iterable of RecordBatches, a NumPy array (plain, "
            "structured or masked), a dict of NumPy arrays, or an object with "
            "__arrow_c_stream__ (pandas or polars DataFrame, ...)"
        )
    return _read_batches(iter(data), name, None)


def _read_batches(batches: Any, name: str, schema: Optional[pa.Schema]) -> pa.Table:
    """Collect the batches of an iterator; an exception raised while producing them becomes
    the ``__cause__`` of an InvalidTable."""
    collected: List[pa.RecordBatch] = []
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            break
        except Exception as exc:
            raise _error(
                InvalidTable,
                f"reading the batches given for segment {name!r} failed after "
                f"{len(collected)} batch(es): {type(exc).__name__}: {exc}",
                name,
            ) from exc
        if not isinstance(batch, pa.RecordBatch):
            raise TypeError(
                f"create: item {len(collected)} of the iterable is {type(batch).__name__!r}, "
                "not a pyarrow.RecordBatch"
            )
        collected.append(batch)
    if not collected and schema is None:
        raise _error(
            InvalidTable, "no record batches given; pass a (possibly empty) pyarrow.Table", name
        )
    try:
        return pa.Table.from_batches(collected, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise _error(InvalidTable, f"the batches given for {name!r} do not form a table: {exc}", name) from exc


def create(
    name: str,
    data: object,
    *,
    dir: Optional[PathLike] = None,
    replace: bool = True,
    mode: int = 0o600,
    lifetime: str = "persistent",
) -> Created:
    """Publish ``data`` as segment ``name``, atomically: readers see nothing or all of it.

    Parameters
    ----------
    name : str
        The segment's name: 1 to 200 bytes of ``A-Z a-z 0-9 . _ -``, not starting with ``.``.
    data : table-like
        A ``pyarrow.Table``, ``RecordBatch`` or ``RecordBatchReader``; a non-empty iterable of
        RecordBatches of one schema; a NumPy array (plain of any shape, published as one
        column ``"values"`` whose extra dimensions become fixed-size lists; structured, one
        column per field; masked, masked elements as nulls); a dict of NumPy arrays (one
        column each, see :func:`from_numpy`); or any object with ``__arrow_c_stream__``
        (pandas and polars DataFrames; polars ``string_view`` columns are kept as they are).
    dir : str or os.PathLike, optional
        The segment directory; default ``$SHMARROW_DIR``, else ``/dev/shm``.
    replace : bool, default True
        Replace a segment of that name. Readers that attached it keep their version,
        unchanged. ``False`` raises SegmentExists instead.
    mode : int, default 0o600
        Permission bits, applied exactly (not masked by the umask).
    lifetime : {"persistent", "owner"}, default "persistent"
        ``"owner"``: the returned handle removes the segment when closed, when its ``with``
        block ends or when it is garbage-collected, in this process only (a forked child's
        copy does not); ``shmarrow gc`` removes it once this process is dead.

    Returns
    -------
    Created
        The handle: ``name``, ``path``, ``nbytes``, ``lifetime``, ``identity``; ``close()``,
        ``disown()``. It pickles as a :class:`Shared` reference (name and directory, not data).

    Raises
    ------
    TypeError
        ``data`` is none of the above (or an iterable yields something not a RecordBatch).
    InvalidTable
        The batches do not form one table; an exception raised while iterating ``data`` is
        chained as its ``__cause__``.
    SegmentExists
        ``replace=False`` and the name is taken (also a ``FileExistsError``).
    NoSpace
        The directory cannot hold the segment; nothing was written (an ``OSError`` with
        ``errno.ENOSPC``; ``.needed`` is the size in bytes).
    InvalidName, AccessDenied
        See :func:`attach`.
    ValueError
        ``mode`` outside 0o000..0o777 or an unknown ``lifetime``.
    """
    return _shmarrow.create(name, _as_arrow(data, name), dir=dir, replace=replace, mode=mode, lifetime=lifetime)


def column_view(
    source: Union[pa.Table, str],
    column: Union[str, int],
    *,
    dir: Optional[PathLike] = None,
    validate: str = "auto",
) -> List[np.ndarray]:
    """Zero-copy, read-only NumPy views of a fixed-width column without nulls.

    ``column_view(name, "x")`` attaches segment ``name`` and views its column in one call,
    without building a pyarrow Table (the shortest route from a segment to NumPy);
    ``column_view(table, "x")`` views a column of a table :func:`attach` returned.

    Parameters
    ----------
    source : str or pyarrow.Table
        A segment's name, or a table (typically from :func:`attach`).
    column : str or int
        The column's name or index (negative: counted from the end).
    dir : str or os.PathLike, optional
        With a segment name: the segment directory, as for :func:`attach`.
    validate : {"auto", "full", "structure"}, default "auto"
        With a segment name: as for :func:`attach`.

    Returns
    -------
    list of numpy.ndarray
        One view per chunk (per batch of the segment), in order. A view keeps the segment's
        mapping alive, even after the segment is removed or replaced.

    Raises
    ------
    InvalidColumn
        No such column (also a ``ValueError``).
    NotZeroCopy
        A chunk cannot be viewed without a copy (strings, booleans, nested types, nulls; with
        a segment name also a column the attach had to copy out of the mapping: compressed
        or misaligned in a foreign file): never a silent copy.
    TypeError
        ``source`` is neither a str nor a Table, ``column`` neither a str nor an int, or
        ``dir``/``validate`` given with a table.
    SegmentNotFound, InvalidName, AccessDenied, NotAFile, CorruptSegment
        With a segment name: as for :func:`attach`.
    """
    if isinstance(source, str):
        return _shmarrow.column_view(source, column, dir=dir, validate=validate)
    if not isinstance(source, pa.Table):
        raise TypeError(
            f"column_view takes a segment name or a pyarrow.Table, not {type(source).__name__!r}"
        )
    if dir is not None or validate != "auto":
        raise TypeError("column_view: dir and validate apply to a segment name, not to a table")
    if isinstance(column, bool) or not isinstance(column, (str, int)):
        raise TypeError(f"column must be a str or an int, not {type(column).__name__!r}")
    try:
        col = source.column(column)
    except (KeyError, IndexError, OverflowError) as exc:
        raise _error(InvalidColumn, f"column {column!r}: no such column", None, column=column) from exc
    views = []
    for i, chunk in enumerate(col.chunks):
        why = ""
        try:
            view = chunk.to_numpy(zero_copy_only=True)
        except (pa.ArrowInvalid, NotImplementedError) as exc:
            why = str(exc)
        else:
            # pyarrow decodes some types (dictionaries) into a new array even with
            # zero_copy_only: a view must start at the chunk's own values.
            data = chunk.buffers()[1] if len(chunk.buffers()) > 1 else None
            start = None if data is None else data.address + chunk.offset * view.itemsize
            if view.size == 0 or view.__array_interface__["data"][0] == start:
                views.append(view)
                continue
            why = "pyarrow would return a decoded copy, not a view of the segment's bytes"
        raise NotZeroCopy(
            f"column {column!r} chunk {i} ({chunk.type}, {chunk.null_count} nulls) "
            f"cannot be viewed without a copy: {why}"
        )
    return views


class _View:
    """Exposes one column's writable values to NumPy and keeps the mapping alive (it is the
    NumPy array's ``base``)."""

    def __init__(self, owner: object, address: int, shape: tuple, typestr: str):
        self._owner = owner
        self.__array_interface__ = {
            "version": 3,
            "shape": shape,
            "typestr": typestr,
            "data": (address, False),
        }


def _arrow_type(spec: Any) -> pa.DataType:
    """A NumPy dtype spec (``"f8"``, ``("f4", 3)``, ``("i2", (2, 3))``) as an Arrow type."""
    if isinstance(spec, tuple):
        base, shape = spec
        shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        for n in shape:
            if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
                raise TypeError(f"subarray sizes are integers, not {type(n).__name__}")
            if not 0 <= n <= 2**31 - 1:  # Arrow's fixed-size list sizes are int32
                raise ValueError(f"subarray size {n} is not between 0 and {2**31 - 1}")
        t = _arrow_type(base)
        for n in reversed(shape):
            t = pa.list_(pa.field("item", t, nullable=False), n)
        return t
    dtype = np.dtype(spec)
    if dtype.kind not in "iuf" or dtype.itemsize > 8:
        raise TypeError(f"{dtype} is not a fixed-width integer or float type")
    return pa.from_numpy_dtype(dtype.newbyteorder("="))


def _shape(arrow_type: pa.DataType) -> Tuple[tuple, np.dtype]:
    shape: tuple = ()
    while pa.types.is_fixed_size_list(arrow_type):
        shape += (arrow_type.list_size,)
        arrow_type = arrow_type.value_type
    return shape, np.dtype(arrow_type.to_pandas_dtype())


class Allocation:
    """A table being filled in place before it is published (see :func:`allocate`).

    ``alloc["x"]`` is a writable NumPy view of column ``x``'s values in shared memory (shape
    ``(rows,) + subarray shape``). :meth:`publish` makes the table visible under its name
    atomically; an allocation closed or garbage-collected unpublished leaves nothing behind.

    After :meth:`publish` or :meth:`close` the views handed out are read-only (writing raises
    ``ValueError``), and this process's mapping of the table is private (copy-on-write): a view
    NumPy derived from them earlier (``v = alloc["x"][:10]``) stays valid memory, but what is
    written through it no longer reaches the published segment, so readers keep the snapshot
    they attached. Flipping NumPy's ``writeable`` flag alone would not be enough (derived
    views keep their own flag); making the mapping read-only would turn such a write into a
    SIGSEGV of the interpreter.
    """

    def __init__(self, raw: Any, schema: pa.Schema, rows: int):
        self._raw = raw
        self.schema = schema
        self.rows = rows
        self._views: Dict[str, np.ndarray] = {}

    def __getitem__(self, column: str) -> np.ndarray:
        """The writable NumPy view of ``column`` (InvalidColumn if there is none)."""
        if column not in self._views:
            owner, address, _elements, _ = self._raw.raw(column)
            shape, dtype = _shape(self.schema.field(column).type)
            self._views[column] = np.asarray(
                _View(owner, address, (self.rows,) + shape, dtype.str)
            )
        return self._views[column]

    def publish(self) -> Created:
        """Make the table visible under its name, atomically; the views become read-only.

        Returns
        -------
        Created
            The segment's handle (with the allocation's lifetime).

        Raises
        ------
        ShmarrowError
            Already published or closed; SegmentExists if created with ``replace=False`` and
            the name was taken meanwhile.
        """
        self._seal()
        created: Created = self._raw.publish()
        return created

    def _seal(self) -> None:
        for view in self._views.values():
            view.flags.writeable = False

    def close(self) -> None:
        """Drop without publishing (views stay valid, read-only memory; the table is gone)."""
        self._seal()
        self._raw.close()

    def __enter__(self) -> "Allocation":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def allocate(
    name: str,
    columns: Dict[str, Any],
    rows: int,
    *,
    dir: Optional[PathLike] = None,
    replace: bool = True,
    mode: int = 0o600,
    lifetime: str = "persistent",
) -> Allocation:
    """Lay out a table of ``rows`` rows in shared memory for filling in place: the lecture's
    "allocate once, workers fill" made safe. Nothing is visible under ``name`` until
    ``publish()``::

        w = shmarrow.allocate("frame", {"x": "f8", "pos": ("f4", 3)}, 1_000_000)
        w["x"][:] = np.random.random(1_000_000)      # writes straight into shared memory
        w["pos"][:, 0] = 1.0
        w.publish()

    Parameters
    ----------
    name : str
        The segment's name once published.
    columns : dict
        Column name to NumPy dtype spec: ``{"x": "f8", "pos": ("f4", 3)}`` (integers and
        floats; subarrays become fixed-size lists).
    rows : int
        Number of rows.
    dir, replace, mode, lifetime
        As for :func:`create`.

    Returns
    -------
    Allocation
        Index it by column for writable views; ``publish()`` or ``close()`` it.

    Raises
    ------
    TypeError
        A dtype that is not a fixed-width integer or float.
    NoSpace, InvalidName, AccessDenied, SegmentExists
        As for :func:`create`.
    """
    schema = pa.schema([pa.field(n, _arrow_type(s), nullable=False) for n, s in columns.items()])
    raw = _shmarrow.allocate(name, schema, rows, dir=dir, replace=replace, mode=mode, lifetime=lifetime)
    return Allocation(raw, schema, rows)
