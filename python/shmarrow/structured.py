"""NumPy structured arrays as segments: :func:`from_numpy`, :func:`to_numpy_structured`,
:func:`field_views`.

NumPy records are rows; Arrow is columnar. Publishing therefore extracts every leaf field of
the record array into its own contiguous little-endian column (one copy, made while
converting byte order if needed) and hands the table to :func:`shmarrow.create`, the Rust
writer. Reading back either rebuilds the records (:func:`to_numpy_structured`, a copy) or gives
zero-copy NumPy views of each fixed-width leaf column in the shared mapping
(:func:`field_views`).

Type mapping (NumPy -> Arrow):

=====================================  ===============================================
``b1``                                 ``bool`` (bit-packed)
``i1``..``i8``, ``u1``..``u8``         ``int8``..``int64``, ``uint8``..``uint64``
``f2``, ``f4``, ``f8``                 ``halffloat``, ``float``, ``double``
``c8``, ``c16``                        ``struct<re: float, im: float>`` /
                                       ``struct<re: double, im: double>``
``M8[s|ms|us|ns]``                     ``timestamp[unit]`` (no time zone)
``m8[s|ms|us|ns]``                     ``duration[unit]``
``U<n>``                               ``string`` (UTF-8)
``S<n>``                               ``binary``
nested structured dtype                ``struct`` (same field order and names)
subarray ``(base, (d1, ..., dk))``     ``fixed_size_list`` nested k deep (outermost d1)
=====================================  ===============================================

Anything else (``object``, ``void`` without fields, ``longdouble``, ``clongdouble``, other
datetime units) raises ``TypeError`` naming the field's dotted path.

The exact NumPy dtype (byte order, units, string sizes, field order, offsets/padding,
subarray shapes, complex fields) is stored as JSON in the schema metadata key
``shmarrow.numpy.dtype`` (see ``schemas/SEGMENT.md``)::

    {"version": 1, "descr": <numpy descr>, "masked": false, "complex": "struct<re, im>"}

``descr`` is ``dtype.descr`` with tuples as JSON arrays (padding appears as ``["", "|V4"]``
entries, as in ``.npy`` headers). A dtype whose fields are out of offset order, for which
NumPy defines no ``descr``, is stored as ``{"names": [...], "formats": [...], "offsets":
[...], "itemsize": n}`` instead, each format encoded the same way (a subarray format as
``{"subdtype": <format>, "shape": [...]}``).
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ._shmarrow import Created, NotZeroCopy

__all__ = ["from_numpy", "to_numpy_structured", "field_views", "METADATA_KEY", "PLAIN_COLUMN"]

#: Schema metadata key holding the original NumPy dtype (JSON).
METADATA_KEY = "shmarrow.numpy.dtype"
#: The column a plain (non-structured) array is published as.
PLAIN_COLUMN = "values"
_FORMAT_VERSION = 1
_COMPLEX_ENCODING = "struct<re, im>"
_TIME_UNITS = ("s", "ms", "us", "ns")


# ------------------------------------------------------------------ dtype <-> JSON


def _encode_dtype(dt: np.dtype):
    """A JSON-able description of ``dt`` that :func:`_decode_dtype` turns back into an equal
    dtype. Structured dtypes use NumPy's own ``descr`` when it exists."""
    if dt.subdtype is not None:
        base, shape = dt.subdtype
        return {"subdtype": _encode_dtype(base), "shape": list(shape)}
    if dt.names is None:
        return dt.str
    try:
        return _jsonable(dt.descr)
    except ValueError:  # overlapping or out-of-order fields: no descr
        names, formats, offsets, titles = [], [], [], []
        for name in dt.names:
            field = dt.fields[name]
            names.append(name)
            formats.append(_encode_dtype(field[0]))
            offsets.append(field[1])
            titles.append(field[2] if len(field) > 2 else None)
        out = {"names": names, "formats": formats, "offsets": offsets, "itemsize": dt.itemsize}
        if any(t is not None for t in titles):
            out["titles"] = titles
        return out


def _jsonable(descr):
    if isinstance(descr, str):
        return descr
    return [[list(e[0]) if isinstance(e[0], tuple) else e[0], _jsonable(e[1])] + ([list(e[2])] if len(e) > 2 else [])
            for e in descr]


def _decode_dtype(enc) -> np.dtype:
    if isinstance(enc, str):
        return np.dtype(enc)
    if isinstance(enc, dict):
        if "subdtype" in enc:
            return np.dtype((_decode_dtype(enc["subdtype"]), tuple(enc["shape"])))
        spec = {
            "names": list(enc["names"]),
            "formats": [_decode_dtype(f) for f in enc["formats"]],
            "offsets": list(enc["offsets"]),
            "itemsize": int(enc["itemsize"]),
        }
        if "titles" in enc:
            spec["titles"] = enc["titles"]
        return np.dtype(spec)
    if isinstance(enc, list):
        return np.lib.format.descr_to_dtype(_descr_tuples(enc))
    raise ValueError(f"cannot decode dtype description {enc!r}")


def _descr_tuples(enc):
    if isinstance(enc, str):
        return enc
    out = []
    for entry in enc:
        name = tuple(entry[0]) if isinstance(entry[0], list) else entry[0]
        fmt = _descr_tuples(entry[1]) if isinstance(entry[1], list) else entry[1]
        if isinstance(fmt, dict):  # cannot happen in NumPy descr, but be lenient
            fmt = _decode_dtype(fmt)
        out.append((name, fmt, tuple(entry[2])) if len(entry) > 2 else (name, fmt))
    return out


def _metadata_value(dtype: np.dtype, masked: bool) -> str:
    return json.dumps(
        {"version": _FORMAT_VERSION, "descr": _encode_dtype(dtype), "masked": bool(masked),
         "complex": _COMPLEX_ENCODING},
        ensure_ascii=False,
        separators=(",", ":"),
    )


def _read_metadata(schema: pa.Schema) -> Tuple[Optional[np.dtype], bool]:
    md = schema.metadata or {}
    raw = md.get(METADATA_KEY.encode())
    if raw is None:
        return None, False
    try:
        doc = json.loads(raw.decode("utf-8"))
        if doc.get("version") != _FORMAT_VERSION:
            raise ValueError(f"unknown version {doc.get('version')!r}")
        dtype = _decode_dtype(doc["descr"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"schema metadata {METADATA_KEY!r} is not a dtype this version reads: {exc}") from exc
    if dtype.names is None:
        raise ValueError(f"schema metadata {METADATA_KEY!r} does not describe a structured dtype")
    return dtype, bool(doc.get("masked", False))


# ------------------------------------------------------------------ NumPy -> Arrow


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _time_unit(dt: np.dtype, path: str) -> str:
    unit, count = np.datetime_data(dt)
    if count != 1 or unit not in _TIME_UNITS:
        what = "generic (unitless)" if unit == "generic" else f"[{count if count != 1 else ''}{unit}]"
        raise TypeError(
            f"field {path!r}: {dt} has unit {what}; Arrow timestamps and durations take "
            f"s, ms, us or ns (cast the field, e.g. to {dt.kind}8[s])"
        )
    return unit


def _leaf_type(dt: np.dtype, path: str) -> pa.DataType:
    """The Arrow type of a non-structured, non-subarray NumPy dtype (complex: its struct)."""
    kind = dt.kind
    if kind == "b":
        return pa.bool_()
    if kind in "iu" and dt.itemsize <= 8 or kind == "f" and dt.itemsize in (2, 4, 8):
        return pa.from_numpy_dtype(dt.newbyteorder("="))
    if kind == "c" and dt.itemsize in (8, 16):
        part = pa.float32() if dt.itemsize == 8 else pa.float64()
        return pa.struct([pa.field("re", part, nullable=False), pa.field("im", part, nullable=False)])
    if kind == "M":
        return pa.timestamp(_time_unit(dt, path))
    if kind == "m":
        return pa.duration(_time_unit(dt, path))
    if kind == "U":
        return pa.string()
    if kind == "S":
        return pa.binary()
    if kind == "O":
        raise TypeError(f"field {path!r}: object dtype cannot be published (no fixed Arrow type)")
    if kind == "V":
        raise TypeError(f"field {path!r}: void dtype {dt} without fields has no Arrow equivalent")
    raise TypeError(f"field {path!r}: dtype {dt} is not supported (no exact Arrow type)")


def _validity(null: Optional[np.ndarray]):
    """(validity buffer, null count) for a flat bool 'is null' array (None: no nulls)."""
    if null is None or not null.any():
        return None, 0
    return pa.py_buffer(np.packbits(~null, bitorder="little")), int(np.count_nonzero(null))


def _as_buffer(flat: np.ndarray) -> pa.Buffer:
    return pa.py_buffer(flat.view(np.uint8))


def _build(values: np.ndarray, mask: Optional[np.ndarray], path: str, nullable: bool) -> pa.Array:
    """``values`` (shape P, non-subarray dtype) as an Arrow array of length prod(P), C order."""
    dt = values.dtype
    length = int(np.prod(values.shape, dtype=np.int64))
    if dt.names is not None:
        fields, children = [], []
        for name in dt.names:
            child = values[name]
            cmask = None if mask is None else mask[name]
            sub = dt.fields[name][0].shape
            leaf_nullable = nullable and _nullable_leaf(dt.fields[name][0].base)
            arr = _build(child, cmask, _join(path, name), nullable)
            arr, ftype = _wrap_rows(arr, sub, length, leaf_nullable)
            fields.append(pa.field(name, ftype, nullable=leaf_nullable and not sub))
            children.append(arr)
        stype = pa.struct(fields)
        return pa.Array.from_buffers(stype, length, [None], null_count=0, children=children)

    ltype = _leaf_type(dt, path)  # raises for unsupported dtypes, naming the field
    null = None if mask is None else np.ascontiguousarray(mask, dtype=bool).reshape(-1)
    if dt.kind == "c":
        part = np.dtype("<f4" if dt.itemsize == 8 else "<f8")
        validity, nulls = _validity(null)
        children = []
        for component in (values.real, values.imag):
            flat = component.astype(part, order="C").reshape(-1)
            children.append(pa.Array.from_buffers(ltype.field(0).type, length, [validity, _as_buffer(flat)], null_count=nulls))
        stype = pa.struct([pa.field(n, ltype.field(0).type, nullable=nullable) for n in ("re", "im")])
        return pa.Array.from_buffers(stype, length, [None], null_count=0, children=children)

    validity, nulls = _validity(null)
    if dt.kind in "US":
        # pyarrow's NumPy string conversion stops at the first NUL; NumPy keeps inner NULs.
        flat = values.astype(dt.newbyteorder("="), order="C").reshape(-1)
        try:
            arr = pa.array(flat.tolist(), type=ltype)
        except (pa.ArrowException, UnicodeError) as exc:
            raise ValueError(f"field {path!r}: cannot encode as {ltype}: {exc}") from exc
        return pa.Array.from_buffers(ltype, length, [validity] + arr.buffers()[1:], null_count=nulls)
    if dt.kind == "b":
        data = pa.py_buffer(np.packbits(values.astype(bool, order="C").reshape(-1), bitorder="little"))
        return pa.Array.from_buffers(ltype, length, [validity, data], null_count=nulls)
    # Fixed width: at most one copy (columnar extraction, little-endian at the same time);
    # none for a column that is already contiguous and little-endian.
    flat = values.astype(dt.newbyteorder("<"), order="C", copy=False).reshape(-1)
    return pa.Array.from_buffers(ltype, length, [validity, _as_buffer(flat)], null_count=nulls)


def _nullable_leaf(dt: np.dtype) -> bool:
    """Whether a masked field of this (base) dtype carries nulls on its own Arrow array: plain
    leaves do; structs (nested or complex) never do, their leaves do."""
    return dt.names is None and dt.kind != "c"


def _columns(data) -> Tuple[List[Tuple[str, np.ndarray, Optional[np.ndarray]]], np.dtype, bool, int]:
    """(name, values, mask) per column, the equivalent structured dtype, masked?, rows."""
    if isinstance(data, dict):
        if not data:
            raise ValueError("from_numpy: the dict has no columns")
        cols, fields, masked, rows = [], [], False, None
        for name, value in data.items():
            if not isinstance(name, str):
                raise TypeError(f"from_numpy: column names must be str, got {name!r}")
            value = np.asanyarray(value)
            if value.ndim == 0:
                raise ValueError(f"field {name!r}: a 0-d array is not a column (need rows)")
            if rows is None:
                rows = value.shape[0]
            elif value.shape[0] != rows:
                raise ValueError(f"field {name!r}: {value.shape[0]} rows, the first column has {rows}")
            mask = None
            if isinstance(value, np.ma.MaskedArray):
                mask, value, masked = np.ma.getmaskarray(value), np.ma.getdata(value), True
            cols.append((name, value, mask))
            fields.append((name, value.dtype, value.shape[1:]))
        try:
            dtype = np.dtype(fields)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"from_numpy: the columns do not form a structured dtype: {exc}") from exc
        return cols, dtype, masked, rows
    if not isinstance(data, np.ndarray):
        raise TypeError(f"from_numpy: expected an ndarray or a dict of ndarrays, got {type(data).__name__}")
    if data.dtype.names is None:
        # A plain (or masked) array: one column whose rows are the first dimension.
        return _columns({PLAIN_COLUMN: data})
    if data.ndim != 1:
        raise ValueError(f"from_numpy: expected a 1-d structured array (rows), got shape {data.shape}")
    mask = None
    masked = isinstance(data, np.ma.MaskedArray)
    if masked:
        mask, data = np.ma.getmaskarray(data), np.ma.getdata(data)
    cols = [(name, data[name], None if mask is None else mask[name]) for name in data.dtype.names]
    return cols, data.dtype, masked, data.shape[0]


def _table(data) -> pa.Table:
    cols, dtype, masked, rows = _columns(data)
    fields, arrays = [], []
    for name, values, mask in cols:
        nullable = mask is not None
        # ``values`` has shape (rows, *sub) and the field's base dtype.
        sub = values.shape[1:]
        leaf_nullable = nullable and _nullable_leaf(values.dtype)
        arr = _build(values, mask, name, nullable)
        arr, ftype = _wrap_rows(arr, sub, rows, leaf_nullable)
        fields.append(pa.field(name, ftype, nullable=leaf_nullable and not sub))
        arrays.append(arr)
    schema = pa.schema(fields, metadata={METADATA_KEY: _metadata_value(dtype, masked)})
    return pa.Table.from_arrays(arrays, schema=schema)


def _wrap_rows(arr: pa.Array, shape: tuple, rows: int, item_nullable: bool):
    """Wrap the flat items ``arr`` of ``rows`` elements of subarray ``shape`` in fixed-size
    lists (outermost dimension first): the result has length ``rows``. Lengths come from
    ``rows``, not from division, so zero-size dimensions work."""
    t = arr.type
    lengths = [rows * int(np.prod(shape[:k], dtype=np.int64)) for k in range(len(shape))]
    first = True
    for d, n in zip(reversed(shape), reversed(lengths)):
        t = pa.list_(pa.field("item", t, nullable=item_nullable and first), d)
        arr = pa.Array.from_buffers(t, n, [None], null_count=0, children=[arr])
        first = False
    return arr, t


def from_numpy(name: str, data: Any, **create_options: Any) -> Created:
    """Publish a structured ndarray (or a dict of ndarrays) as segment ``name``; one Arrow
    column per top-level field, through :func:`shmarrow.create` (the Rust writer).

    ``data`` is a 1-d structured ``numpy.ndarray``, a ``numpy.ma.MaskedArray`` of one, a
    plain (or masked) array of any shape, published as one column ``"values"`` whose rows are
    the first dimension, or a dict ``{column: array}`` whose arrays share their first
    dimension (extra dimensions become subarray fields; values may be structured or masked
    arrays). ``create_options`` are
    :func:`shmarrow.create`'s (``dir``, ``replace``, ``mode``, ``lifetime``); its return
    value is returned.

    Mapping: nested structured dtypes become structs; subarray fields ``('pos', 'f4', (3,))``
    become fixed-size lists, nested once per dimension (``(2, 3)`` is a list of 2 lists of
    3); ``U``/``S`` become ``string``/``binary``; ``M8[unit]``/``m8[unit]`` become
    ``timestamp[unit]``/``duration[unit]`` (units s, ms, us, ns; NaT is kept as its int64
    value, not turned into a null); ``b1`` becomes ``bool``; ``c8``/``c16`` become
    ``struct<re: float, im: float>``/``struct<re: double, im: double>``.

    Masked arrays: masked leaf elements become Arrow nulls on the leaf arrays (struct children
    and the items of fixed-size lists; for a complex field on both ``re`` and ``im``); struct
    and list arrays themselves have no nulls. The values under the mask are kept.

    Copies: NumPy records are rows and Arrow is columnar, so every leaf field is copied once,
    in Python, into its own contiguous column (inherent to the layout change; big-endian
    fields are byte-swapped to Arrow's little-endian during that same copy, strings are
    encoded to UTF-8). The Rust writer then writes those columns into the segment, as any
    publish does; readers use the segment's pages in place (see :func:`field_views`). The exact dtype (byte order, units, string sizes,
    field order, padding, subarray shapes, complex fields) is stored in the schema metadata
    key ``shmarrow.numpy.dtype``, so :func:`to_numpy_structured` restores it.

    Parameters
    ----------
    name : str
        The segment's name.
    data : numpy.ndarray or dict of numpy.ndarray
        As above.
    **create_options
        ``dir``, ``replace``, ``mode``, ``lifetime``: as for :func:`shmarrow.create`.

    Returns
    -------
    Created
        As :func:`shmarrow.create` returns.

    Raises
    ------
    TypeError
        A dtype with no Arrow equivalent, naming the field's dotted path: ``object``,
        ``void`` without fields, ``longdouble``/``clongdouble``, datetimes in units other
        than s/ms/us/ns; column names that are not str.
    ValueError
        A 0-d array, an empty dict, columns of different lengths, a structured array that is
        not 1-d.
    SegmentExists, NoSpace, InvalidName, AccessDenied
        As for :func:`shmarrow.create`.
    """
    from . import create  # the package's create (the Rust writer); late import: no cycle

    return create(name, _table(data), **create_options)


# ------------------------------------------------------------------ Arrow -> NumPy


def _nulls_of(arr: pa.Array) -> Optional[np.ndarray]:
    """Flat bool 'is null' array of ``arr``'s own validity, None if it has no nulls."""
    if arr.null_count == 0:
        return None
    if pa.types.is_null(arr.type):
        return np.ones(len(arr), dtype=bool)
    buf = arr.buffers()[0]
    if buf is None:
        return None
    bits = np.unpackbits(np.frombuffer(buf, dtype=np.uint8), bitorder="little", count=arr.offset + len(arr))
    return ~bits[arr.offset:].astype(bool)


def _or(a: Optional[np.ndarray], b: Optional[np.ndarray]) -> Optional[np.ndarray]:
    if a is None:
        return b
    if b is None:
        return a
    return a | b


def _fsl_values(arr: pa.Array) -> pa.Array:
    """The items of a fixed-size list array, for exactly its slice."""
    d = arr.type.list_size
    return arr.values.slice(arr.offset * d, len(arr) * d)


def _fixed_dtype(t: pa.DataType) -> Optional[np.dtype]:
    """The little-endian NumPy dtype whose bytes are exactly those of Arrow type ``t``'s
    values buffer, or None if there is none (bool is bit-packed, strings vary in width)."""
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return np.dtype(t.to_pandas_dtype()).newbyteorder("<")
    if pa.types.is_timestamp(t):
        return np.dtype(f"<M8[{t.unit}]")
    if pa.types.is_duration(t):
        return np.dtype(f"<m8[{t.unit}]")
    if pa.types.is_date64(t):
        return np.dtype("<M8[ms]")
    if pa.types.is_fixed_size_binary(t) and not pa.types.is_decimal(t):
        return np.dtype(f"S{t.byte_width}") if t.byte_width > 0 else None
    return None


def _raw_view(arr: pa.Array, dt: np.dtype) -> np.ndarray:
    """Zero-copy view of ``arr``'s values buffer (validity ignored), for ``dt`` from
    :func:`_fixed_dtype`."""
    n = len(arr)
    buf = arr.buffers()[1]
    if buf is None or n == 0:
        return np.empty(0, dtype=dt)
    return np.frombuffer(buf, dtype=dt, count=n, offset=arr.offset * dt.itemsize)


def _without_validity(arr: pa.Array) -> pa.Array:
    return pa.Array.from_buffers(arr.type, len(arr), [None] + arr.buffers()[1:], null_count=0, offset=arr.offset)


def _leaf_values(arr: pa.Array, path: str) -> np.ndarray:
    """Flat NumPy values of a leaf Arrow array, the values under nulls included."""
    t = arr.type
    dt = _fixed_dtype(t)
    if dt is not None:
        return _raw_view(arr, dt)
    if pa.types.is_boolean(t):
        buf = arr.buffers()[1]
        if buf is None or len(arr) == 0:
            return np.zeros(0, dtype=bool)
        bits = np.unpackbits(np.frombuffer(buf, dtype=np.uint8), bitorder="little", count=arr.offset + len(arr))
        return bits[arr.offset:].astype(bool)
    if pa.types.is_date32(t):
        return _raw_view(arr, np.dtype("<i4")).astype("<i8").view("<M8[D]")
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return _without_validity(arr).to_numpy(zero_copy_only=False)
    raise TypeError(f"field {path!r}: Arrow type {t} has no NumPy structured-dtype equivalent")


def _compatible(dt: np.dtype, t: pa.DataType) -> bool:
    kind = dt.kind
    if kind == "b":
        return pa.types.is_boolean(t)
    if kind in "iuf":
        return (pa.types.is_integer(t) or pa.types.is_floating(t)) and np.dtype(t.to_pandas_dtype()) == dt.newbyteorder("=")
    if kind == "M":
        unit = np.datetime_data(dt)[0]
        return (pa.types.is_timestamp(t) and t.unit == unit) or (pa.types.is_date32(t) and unit == "D") or (
            pa.types.is_date64(t) and unit == "ms")
    if kind == "m":
        return pa.types.is_duration(t) and t.unit == np.datetime_data(dt)[0]
    if kind == "U":
        return pa.types.is_string(t) or pa.types.is_large_string(t)
    if kind == "S":
        return pa.types.is_binary(t) or pa.types.is_large_binary(t) or (
            pa.types.is_fixed_size_binary(t) and not pa.types.is_decimal(t))
    return False


def _unwrap(arr: pa.Array, shape: tuple, nulls: Optional[np.ndarray], path: str):
    """Descend through the fixed-size lists of a subarray field: (flat items, flat nulls)."""
    for d in shape:
        if not pa.types.is_fixed_size_list(arr.type) or arr.type.list_size != d:
            raise TypeError(f"field {path!r}: expected a fixed-size list of {d} for the subarray shape {shape}, found {arr.type}")
        nulls = _or(nulls, _nulls_of(arr))
        if nulls is not None:
            nulls = np.repeat(nulls, d)
        arr = _fsl_values(arr)
    return arr, nulls


def _fill(target: np.ndarray, tmask: np.ndarray, arr: pa.Array, nulls: Optional[np.ndarray], path: str) -> bool:
    """Write Arrow array ``arr`` (length prod(target.shape)) into ``target`` (any shape,
    non-subarray dtype) and its nulls into ``tmask``. Returns whether any null was seen."""
    dt = target.dtype
    t = arr.type
    nulls = _or(nulls, _nulls_of(arr))
    shape = target.shape
    if dt.names is not None:
        if not pa.types.is_struct(t):
            raise TypeError(f"field {path!r}: the dtype is a struct {dt} but the column is {t}")
        seen = False
        for name in dt.names:
            cpath = _join(path, name)
            idx = t.get_field_index(name)
            if idx < 0:
                raise TypeError(f"field {cpath!r}: not in the Arrow struct {t}")
            child, cnulls = _unwrap(arr.field(idx), dt.fields[name][0].shape, nulls, cpath)
            seen |= _fill(target[name], tmask[name], child, cnulls, cpath)
        return seen
    if dt.kind == "c":
        part = np.dtype("f4" if dt.itemsize == 8 else "f8")
        ok = pa.types.is_struct(t) and t.num_fields == 2 and [t.field(i).name for i in range(2)] == ["re", "im"]
        if not ok or any(np.dtype(t.field(i).type.to_pandas_dtype()) != part for i in range(2)
                         if pa.types.is_floating(t.field(i).type)) or not all(
                pa.types.is_floating(t.field(i).type) for i in range(2)):
            raise TypeError(f"field {path!r}: complex {dt} needs struct<re: {part}, im: {part}>, found {t}")
        for i, component in enumerate((target.real, target.imag)):
            child = arr.field(i)
            nulls = _or(nulls, _nulls_of(child))
            component[...] = _leaf_values(child, path + (".re", ".im")[i]).reshape(shape)
    else:
        if not _compatible(dt, t):
            raise TypeError(f"field {path!r}: dtype {dt} does not match the Arrow type {t}")
        target[...] = _leaf_values(arr, path).reshape(shape)
    if nulls is not None:
        tmask[...] = nulls.reshape(shape)
        return bool(nulls.any())
    return False


def _strip(arr: pa.Array) -> pa.Array:
    return _without_validity(arr) if arr.null_count else arr


def _infer(t: pa.DataType, arrays: List[pa.Array], path: str) -> np.dtype:
    """The NumPy dtype for Arrow type ``t`` (a tables without our metadata); strings get the
    longest value's length (at least 1)."""
    if pa.types.is_struct(t):
        return np.dtype([
            (t.field(i).name, _infer(t.field(i).type, [a.field(i) for a in arrays], _join(path, t.field(i).name)))
            for i in range(t.num_fields)
        ])
    if pa.types.is_fixed_size_list(t):
        inner = _infer(t.value_type, [_fsl_values(a) for a in arrays], path)
        shape = (t.list_size,)
        if inner.subdtype is not None:
            inner, more = inner.subdtype
            shape += more
        return np.dtype((inner, shape))
    if pa.types.is_boolean(t):
        return np.dtype("?")
    if pa.types.is_date32(t):
        return np.dtype("<M8[D]")
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        text = pa.types.is_string(t) or pa.types.is_large_string(t)
        width = 1
        for a in arrays:
            if len(a):
                m = pc.max((pc.utf8_length if text else pc.binary_length)(_strip(a))).as_py()
                width = max(width, m or 0)
        return np.dtype(f"<U{width}" if text else f"S{width}")
    dt = _fixed_dtype(t)
    if dt is not None:
        return dt
    raise TypeError(f"field {path!r}: Arrow type {t} has no NumPy structured-dtype equivalent")


def _as_table(table) -> pa.Table:
    if isinstance(table, pa.RecordBatch):
        return pa.Table.from_batches([table])
    if not isinstance(table, pa.Table):
        raise TypeError(f"expected a pyarrow.Table or RecordBatch, got {type(table).__name__}")
    return table


def to_numpy_structured(table: Union[pa.Table, pa.RecordBatch]) -> Union[np.ndarray, np.ma.MaskedArray]:
    """Rebuild the structured ndarray from a table (e.g. ``shmarrow.attach(name)``): one
    record per row, one field per column.

    This is a copy, not a view: Arrow is columnar and NumPy records are rows, so every value
    is copied into the record array (for zero-copy access per field use
    :func:`field_views`).

    The dtype comes from the schema metadata ``shmarrow.numpy.dtype`` written by
    :func:`from_numpy` (exact: byte order, units, string sizes, field order, padding,
    complex fields). Columns the metadata does not describe, and tables written by others
    without it, are inferred from the Arrow types: little-endian numbers, ``timestamp``/
    ``duration`` as ``M8``/``m8`` of the same unit (time zones dropped, values are UTC),
    ``date32``/``date64`` as ``M8[D]``/``M8[ms]``, strings/binary as ``U``/``S`` as wide as
    the longest value, structs as nested dtypes, fixed-size lists as subarrays; a
    ``struct<re, im>`` stays a struct. Other types raise ``TypeError`` naming the column.

    Parameters
    ----------
    table : pyarrow.Table or pyarrow.RecordBatch
        Typically ``shmarrow.attach(name)``.

    Returns
    -------
    numpy.ndarray or numpy.ma.MaskedArray
        A ``numpy.ma.MaskedArray`` if the array published was masked or the table has
        nulls anywhere (a null struct or list masks every leaf below it); otherwise a plain
        ndarray. Padding bytes are zero.

    Raises
    ------
    TypeError
        Not a Table or RecordBatch, or a column type with no NumPy equivalent.
    ValueError
        Duplicate column names, or unreadable ``shmarrow.numpy.dtype`` metadata.
    """
    table = _as_table(table)
    meta_dtype, masked = _read_metadata(table.schema)
    names = table.column_names
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate column names cannot be NumPy fields: {names}")
    if meta_dtype is not None and list(meta_dtype.names) == names:
        dtype = meta_dtype
    else:
        fields = []
        for i, name in enumerate(names):
            if meta_dtype is not None and name in meta_dtype.fields:
                fields.append((name, meta_dtype.fields[name][0]))
            else:
                fields.append((name, _infer(table.schema.field(i).type, table.column(i).chunks, name)))
        dtype = np.dtype(fields)
    out = np.zeros(table.num_rows, dtype=dtype)
    mask = np.zeros(table.num_rows, dtype=np.ma.make_mask_descr(dtype))
    start = 0
    seen = False
    for batch in table.to_batches():
        stop = start + batch.num_rows
        for i, name in enumerate(names):
            sub = dtype.fields[name][0].shape
            arr, nulls = _unwrap(batch.column(i), sub, None, name)
            seen |= _fill(out[name][start:stop], mask[name][start:stop], arr, nulls, name)
        start = stop
    if masked or seen:
        # NumPy's default fill value for f2 fields (1e20) overflows float16 and warns; harmless.
        with np.errstate(over="ignore"):
            return np.ma.MaskedArray(out, mask=mask)
    return out


# ------------------------------------------------------------------ zero-copy views


def _views(arr: pa.Array, path: str, shape: tuple, nulls: Optional[np.ndarray], out: dict) -> None:
    t = arr.type
    nulls = _or(nulls, _nulls_of(arr))
    if pa.types.is_struct(t):
        for i in range(t.num_fields):
            _views(arr.field(i), _join(path, t.field(i).name), shape, nulls, out)
        return
    if pa.types.is_fixed_size_list(t):
        d = t.list_size
        _views(_fsl_values(arr), path, shape + (d,), None if nulls is None else np.repeat(nulls, d), out)
        return
    dt = _fixed_dtype(t)
    if dt is None:
        return  # bool (bit-packed), strings/binary (variable width), other types: no view
    for key in (path, path + ".mask"):
        if key in out:
            raise ValueError(f"two fields have the dotted path {key!r}; rename one")
    out[path] = _raw_view(arr, dt).reshape(shape)
    if nulls is not None and nulls.any():
        out[path + ".mask"] = nulls.reshape(shape)


def field_views(table: Union[pa.Table, pa.RecordBatch]) -> Dict[str, np.ndarray]:
    """Zero-copy, read-only NumPy views of every fixed-width leaf field of a one-batch table
    (what :func:`from_numpy` publishes) or of a ``pyarrow.RecordBatch``.

    Returns ``{dotted path: ndarray}``: struct children are ``"a.b.c"``; a fixed-size-list
    (subarray) leaf has shape ``(rows, *subshape)``; a complex field published by
    :func:`from_numpy` appears as its two parts ``"z.re"`` and ``"z.im"``. Views have Arrow's
    little-endian dtype: integers and floats (``f2`` included), ``timestamp``/``date64`` as
    ``M8[unit]``, ``duration`` as ``m8[unit]``, fixed-size binary as ``S<n>``. The original
    byte order, if big-endian, is not applied (that would be a copy; see
    :func:`to_numpy_structured`).

    Masks: a leaf with nulls (its own, or of a struct or list above it) gets a second entry
    ``path + ".mask"``: a bool array of the same shape, ``True`` where the value is null
    (``numpy.ma`` convention; unpacked from Arrow's bitmaps, so a small copy). Leaves without
    nulls have no ``.mask`` entry. The values view is zero-copy either way; under a null it
    shows whatever bytes are stored (for :func:`from_numpy` segments: the masked data).

    Omitted, because no zero-copy NumPy view exists: booleans (Arrow packs them 8 per byte),
    strings and binary (variable width), and other variable-width or non-NumPy types.
    :func:`to_numpy_structured` gives all fields, as a copy.

    Parameters
    ----------
    table : pyarrow.Table or pyarrow.RecordBatch
        A table of one batch per column, or one batch.

    Returns
    -------
    dict of str to numpy.ndarray
        ``{dotted path: view}``, plus ``path + ".mask"`` entries as described above.

    Raises
    ------
    NotZeroCopy
        A table with several batches per column (a view cannot span batches): call this on
        each of ``table.to_batches()``.
    TypeError
        Not a Table or RecordBatch.
    ValueError
        Two fields with the same dotted path.
    """
    if isinstance(table, pa.RecordBatch):
        columns = [(table.schema.field(i).name, table.column(i)) for i in range(table.num_columns)]
    elif isinstance(table, pa.Table):
        columns = []
        for i, name in enumerate(table.column_names):
            col = table.column(i)
            if col.num_chunks == 1:
                columns.append((name, col.chunk(0)))
            elif col.num_chunks == 0:
                columns.append((name, pa.array([], type=col.type)))
            else:
                raise NotZeroCopy(
                    f"column {name!r} has {col.num_chunks} chunks; a view cannot span them: "
                    "call field_views on each of table.to_batches()"
                )
    else:
        raise TypeError(f"expected a pyarrow.Table or RecordBatch, got {type(table).__name__}")
    out: Dict[str, np.ndarray] = {}
    for name, arr in columns:
        _views(arr, name, (len(arr),), None, out)
    return out
