"""Sharing by reference: :func:`share`, :class:`Shared`, :func:`ref`.

A :class:`Shared` handle names one published version of a segment (name, directory, file
identity). It pickles as those three (about a hundred bytes), so a ``multiprocessing`` Pool,
a ``ProcessPoolExecutor`` or joblib sends the name, never the data; the receiving process
attaches the segment zero-copy. Tables returned by :func:`shmarrow.attach` travel the same
way through ``multiprocessing`` (registered with its pickler, see the end of this file).
"""

from __future__ import annotations

import atexit
import os
import uuid
import weakref
from multiprocessing.reduction import ForkingPickler
from typing import Any, Callable, Optional, Tuple

import numpy as np
import pyarrow as pa

from . import _shmarrow
from ._api import (
    Identity,
    PathLike,
    Reference,
    _as_arrow,
    _attach_version,
    _current_identity,
    _error,
    _reference_of,
    _resolve_dir,
)
from ._shmarrow import Created, InvalidColumn, NotZeroCopy, SegmentNotFound
from .structured import field_views

# The creating handles of owner segments still open: closed at interpreter exit.
_OWNED: "weakref.WeakSet[Shared]" = weakref.WeakSet()


class Shared:
    """A reference to one published version of a segment, for sending to other processes.

    Pickling a ``Shared`` sends its name, directory and file identity (about a hundred
    bytes), never the data. :meth:`table` and :meth:`numpy` attach the segment where they
    are called, zero-copy.

    Parameters
    ----------
    name : str
        The segment's name.
    dir : str or os.PathLike, optional
        Its directory; default ``$SHMARROW_DIR``, else ``/dev/shm`` (stored absolute).
    identity : (int, int), optional
        The (device, inode) of the version referred to; :meth:`table` raises SegmentNotFound
        once the name holds another version. ``None``: whatever the name holds when
        attached. :func:`share` and :func:`ref` set it.

    Notes
    -----
    Lifetime: the handle :func:`share` returns for an ``"owner"`` segment removes it when
    :meth:`close` is called, its ``with`` block ends, it is garbage-collected or the
    interpreter exits; if the process is killed, ``shmarrow.gc()`` removes it. Copies made by
    unpickling (in workers) and handles of forked children never remove the segment.
    Tables and views already attached stay valid after removal.
    """

    def __init__(self, name: str, dir: Optional[PathLike] = None, identity: Optional[Identity] = None) -> None:
        self.name = name
        self.dir = _resolve_dir(name, dir)
        self.identity: Optional[Identity] = None if identity is None else (int(identity[0]), int(identity[1]))
        self._created: Optional[Created] = None

    @property
    def path(self) -> str:
        """The segment's file."""
        return os.path.join(self.dir, self.name)

    @property
    def owner(self) -> bool:
        """True for the open creating handle of an ``"owner"`` segment (closing it removes
        the segment)."""
        return self._created is not None and self._created.lifetime == "owner"

    def table(self, *, strict: bool = False) -> pa.Table:
        """Attach the segment referred to.

        Parameters
        ----------
        strict : bool, default False
            As for :func:`shmarrow.attach`.

        Returns
        -------
        pyarrow.Table
            Zero-copy: its buffers lie in this process's mapping of the segment.

        Raises
        ------
        SegmentNotFound
            The segment was removed, or replaced by another version since the reference was
            made (also a ``FileNotFoundError``).
        AccessDenied, CorruptSegment, NotZeroCopy
            As for :func:`shmarrow.attach`.
        """
        return _attach_version(self.name, self.dir, self.identity, strict)

    def numpy(self, column: Optional[str] = None) -> np.ndarray:
        """A zero-copy, read-only NumPy view of one column of the segment.

        Parameters
        ----------
        column : str, optional
            The column, or a struct field by dotted path (``"pos.x"``). ``None``: the only
            column, e.g. of a shared NumPy array.

        Returns
        -------
        numpy.ndarray
            Shape ``(rows,)``, or ``(rows, *subshape)`` for a fixed-size-list column (a shared
            N-d array comes back with its shape). A column with nulls (a shared masked array)
            comes back as a ``numpy.ma.MaskedArray`` whose data is the view and whose mask is
            built from the validity bitmap (a small copy).

        Raises
        ------
        TypeError
            ``column`` is neither a str nor None.
        InvalidColumn
            No such column, or ``None`` for a table of several columns (also a
            ``ValueError``).
        NotZeroCopy
            The column has no NumPy view: booleans, strings, nested lists; or the segment
            has several batches.
        SegmentNotFound
            As for :meth:`table`.
        """
        if column is not None and not isinstance(column, str):
            raise TypeError(f"column must be a str or None, not {type(column).__name__!r}")
        table = self.table()
        if column is None:
            if table.num_columns != 1:
                raise _error(
                    InvalidColumn,
                    f"segment {self.name!r} has {table.num_columns} columns "
                    f"{table.column_names}; name one",
                    self.name,
                    column=None,
                )
            column = table.column_names[0]
        top = [i for i, n in enumerate(table.column_names) if column == n or column.startswith(n + ".")]
        if not top:
            raise _error(InvalidColumn, f"segment {self.name!r}: column {column!r}: no such column", self.name, column=column)
        views = field_views(table.select(top))
        if column not in views:
            what = table.schema.field(top[0]).type
            raise _error(
                NotZeroCopy,
                f"segment {self.name!r}: column {column!r} ({what}) has no zero-copy NumPy "
                "view (booleans, strings and nested lists have none); use table()",
                self.name,
            )
        view = views[column]
        mask = views.get(column + ".mask")
        if mask is not None:
            return np.ma.MaskedArray(view, mask=mask, copy=False)
        return view

    def close(self) -> None:
        """Release the creating handle: an ``"owner"`` segment is removed (by the creating
        process only). A no-op for references received from elsewhere."""
        created, self._created = self._created, None
        if created is not None:
            created.close()

    def __enter__(self) -> "Shared":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> Tuple[Callable[..., "Shared"], Tuple[str, str, Optional[Identity]]]:
        return (Shared, (self.name, self.dir, self.identity))

    def __repr__(self) -> str:
        role = "owner" if self.owner else "reference"
        return f"Shared(name={self.name!r}, dir={self.dir!r}, {role})"


def share(
    obj: object,
    name: Optional[str] = None,
    *,
    lifetime: str = "owner",
    dir: Optional[PathLike] = None,
    replace: bool = False,
    mode: int = 0o600,
) -> Shared:
    """Publish ``obj`` as a segment and return a handle that pickles by reference.

    Parameters
    ----------
    obj : table-like
        Anything :func:`shmarrow.create` takes: a pyarrow Table or RecordBatch, a NumPy
        array (plain of any shape, structured or masked), a dict of NumPy arrays, a pandas
        or polars DataFrame (any object with ``__arrow_c_stream__``), an iterable of
        RecordBatches.
    name : str, optional
        The segment's name; default a fresh ``share-<pid>-<random>``.
    lifetime : {"owner", "persistent"}, default "owner"
        ``"owner"``: the returned handle removes the segment when closed, garbage-collected
        or at interpreter exit; ``shmarrow.gc()`` removes it after a crash. Handles
        unpickled in workers never remove it. ``"persistent"``: stays until removed.
    dir : str or os.PathLike, optional
        The segment directory; default ``$SHMARROW_DIR``, else ``/dev/shm``.
    replace : bool, default False
        Replace a segment of that name (readers of the old one keep it); by default an
        existing name raises SegmentExists.
    mode : int, default 0o600
        Permission bits of the segment.

    Returns
    -------
    Shared
        Pass it to workers (``pool.map(work, [handle] * n)``); in a worker, ``handle.table()``
        or ``handle.numpy(column)`` attach it zero-copy.

    Raises
    ------
    TypeError
        ``obj`` is not table-like.
    SegmentExists, NoSpace, InvalidName, AccessDenied, InvalidTable
        As for :func:`shmarrow.create`.
    """
    if name is None:
        name = f"share-{os.getpid()}-{uuid.uuid4().hex[:16]}"
    created = _shmarrow.create(
        name, _as_arrow(obj, name), dir=dir, replace=replace, mode=mode, lifetime=lifetime
    )
    handle = Shared(name, os.path.dirname(created.path), created.identity)
    handle._created = created
    if handle.owner:
        _OWNED.add(handle)
    return handle


def ref(table: pa.Table) -> Shared:
    """A reference to the segment a table from :func:`shmarrow.attach` came from.

    Parameters
    ----------
    table : pyarrow.Table
        Exactly a table :func:`shmarrow.attach` (or :meth:`Shared.table`) returned; derived
        tables (slices, selections, concatenations) are new tables, not segments.

    Returns
    -------
    Shared
        Pickles as name, directory and identity; never removes the segment.

    Raises
    ------
    TypeError
        ``table`` is not a ``pyarrow.Table``.
    ValueError
        ``table`` did not come from ``attach``.
    SegmentNotFound
        The segment was removed or replaced since ``table`` was attached (the table itself
        stays valid; share it anew with :func:`share`).
    """
    if not isinstance(table, pa.Table):
        raise TypeError(f"ref takes a pyarrow.Table from shmarrow.attach, not {type(table).__name__!r}")
    reference = _reference_of(table)
    if reference is None:
        raise ValueError(
            "this table did not come from shmarrow.attach (slices and selections are new "
            "tables): publish it with shmarrow.share"
        )
    name, directory, identity = reference
    if _current_identity(directory, name) != identity:
        raise _error(
            SegmentNotFound,
            f"segment {name!r} in {directory} was removed or replaced since this table was "
            "attached; share the table anew with shmarrow.share",
            name,
        )
    return Shared(name, directory, identity)


def _attach_reference(name: str, directory: str, identity: Identity) -> pa.Table:
    return Shared(name, directory, identity).table()


def _reduce_table(table: pa.Table) -> Any:
    """multiprocessing's pickler for pyarrow Tables: an attached table whose segment still
    holds the version it attached travels as a reference; any other table (derived, or its
    segment replaced) by value, as pyarrow pickles it."""
    reference = _reference_of(table)
    if reference is not None and _current_identity(reference[1], reference[0]) == reference[2]:
        return (_attach_reference, reference)
    return table.__reduce__()


ForkingPickler.register(pa.Table, _reduce_table)


@atexit.register
def _close_owned() -> None:
    for handle in list(_OWNED):
        handle.close()
