"""NumPy structured arrays <-> segments: from_numpy, to_numpy_structured, field_views.

Property tests (hypothesis) generate structured dtypes (nesting up to depth 3, subarrays of 1-2
dimensions, every supported scalar kind, both byte orders, packed and aligned layouts) and
values (NaN, infinities, -0.0, integer extremes, NaT, empty strings, inner NULs) and check the
round trip dtype -> segment -> dtype is exact, byte for byte, masked arrays included, and that
field_views are zero-copy views into the segment's mapping.
"""

from __future__ import annotations

import gc
import json
import math
import os

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import shmarrow

# numpy.ma's default fill value for f2 fields (1e20) overflows float16: NumPy warns whenever a
# masked array of such a dtype is made (here, by the tests themselves). Not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")

KEY = b"shmarrow.numpy.dtype"
UNITS = ["s", "ms", "us", "ns"]

# kinds without a byte order, and kinds generated with both '<' and '>'
UNORDERED = ["b1", "i1", "u1"] + [f"S{n}" for n in range(1, 9)]
ORDERED = (
    ["i2", "i4", "i8", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16"]
    + [f"M8[{u}]" for u in UNITS]
    + [f"m8[{u}]" for u in UNITS]
    + [f"U{n}" for n in range(1, 9)]
)

PROPERTY = settings(
    max_examples=int(os.environ.get("SHMARROW_HYPOTHESIS_EXAMPLES", "100")),
    deadline=None,
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ---------------------------------------------------------------- strategies

scalar_dtypes = st.one_of(
    st.sampled_from(UNORDERED).map(np.dtype),
    st.tuples(st.sampled_from("<>"), st.sampled_from(ORDERED)).map(lambda t: np.dtype(t[0] + t[1])),
)
# no "." in names: field_views' dotted paths stay unambiguous
field_names = st.text(alphabet="abxyzé_0Ω", min_size=1, max_size=4)
sub_shapes = st.none() | st.lists(st.integers(1, 3), min_size=1, max_size=2).map(tuple)


def struct_dtypes(depth: int):
    """Structured dtypes; fields may themselves be structs ``depth`` more levels down."""
    child = scalar_dtypes if depth == 0 else st.one_of(scalar_dtypes, scalar_dtypes, struct_dtypes(depth - 1))
    fields = st.lists(st.tuples(field_names, child, sub_shapes), min_size=1, max_size=4, unique_by=lambda f: f[0])
    return st.tuples(fields, st.booleans()).map(
        lambda fa: np.dtype([(n, d) if s is None else (n, d, s) for n, d, s in fa[0]], align=fa[1])
    )


record_dtypes = struct_dtypes(2)  # the record + 2 levels of nested structs: depth 3


def leaf_strategy(dt: np.dtype):
    kind = dt.kind
    if kind == "b":
        return st.booleans()
    if kind in "iu":
        info = np.iinfo(dt)
        return st.one_of(st.sampled_from([int(info.min), int(info.max), 0]), st.integers(int(info.min), int(info.max)))
    if kind == "f":
        return st.floats(width=8 * dt.itemsize, allow_nan=True, allow_infinity=True)
    if kind == "c":
        part = st.floats(width=4 * dt.itemsize, allow_nan=True, allow_infinity=True)
        return st.builds(complex, part, part)
    if kind in "Mm":  # any int64, NaT (the minimum) included
        return st.one_of(st.just(-(2**63)), st.integers(-(2**63), 2**63 - 1))
    if kind == "U":
        return st.text(max_size=dt.itemsize // 4)
    if kind == "S":
        return st.binary(max_size=dt.itemsize)
    raise AssertionError(dt)


def draw_values(draw, dt: np.dtype, shape: tuple) -> np.ndarray:
    """An array of ``shape`` and non-subarray dtype ``dt`` (padding zero) with drawn values."""
    out = np.zeros(shape, dtype=dt)
    if dt.names is not None:
        for name in dt.names:
            fdt = dt.fields[name][0]
            out[name] = draw_values(draw, fdt.base, shape + fdt.shape)
        return out
    n = math.prod(shape)
    values = draw(st.lists(leaf_strategy(dt), min_size=n, max_size=n))
    if dt.kind in "Mm":
        out[...] = np.array(values, dtype=np.int64).view(dt.newbyteorder("=")).reshape(shape)
    else:
        out[...] = np.array(values, dtype=dt).reshape(shape)
    return out


@st.composite
def records(draw, masked=False):
    dt = draw(record_dtypes)
    rows = draw(st.integers(0, 5))
    arr = draw_values(draw, dt, (rows,))
    if not masked:
        return arr
    mask = np.zeros(rows, dtype=np.ma.make_mask_descr(dt))
    _draw_mask(draw, mask)
    return np.ma.MaskedArray(arr, mask=mask)


def _draw_mask(draw, mask: np.ndarray) -> None:
    if mask.dtype.names is not None:
        for name in mask.dtype.names:
            _draw_mask(draw, mask[name])
        return
    n = mask.size
    mask[...] = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool).reshape(mask.shape)


# ---------------------------------------------------------------- helpers


def leaves(dt: np.dtype, path: str = ""):
    """(dotted path, [field names to index with], base dtype) of every leaf of ``dt``."""
    for name in dt.names:
        fdt = dt.fields[name][0]
        p = f"{path}.{name}" if path else name
        if fdt.base.names is not None:
            for sub_path, keys, base in leaves(fdt.base, p):
                yield sub_path, [name] + keys, base
        else:
            yield p, [name], fdt.base


def pick(arr: np.ndarray, keys) -> np.ndarray:
    for k in keys:
        arr = arr[k]
    return arr


def expected_views(arr: np.ndarray) -> dict:
    """What field_views must give for ``arr``: fixed-width leaves only, complex as re/im."""
    out = {}
    for path, keys, base in leaves(arr.dtype):
        values = pick(arr, keys)
        if base.kind == "c":
            out[path + ".re"] = values.real
            out[path + ".im"] = values.imag
        elif base.kind not in "bUS":
            out[path] = values
    return out


def assert_zero_copy(view: np.ndarray, ranges, within, what: str) -> None:
    if view.nbytes == 0:
        return
    address = view.__array_interface__["data"][0]
    assert within(address, view.nbytes, ranges), f"{what}: {address:#x}+{view.nbytes} is not in the mapping"
    assert view.flags.writeable is False, what


def publish_attach(name, data, **options):
    shmarrow.from_numpy(name, data, **options)
    return shmarrow.attach(name, dir=options.get("dir"))


# ---------------------------------------------------------------- property tests


@PROPERTY
@given(arr=records())
def test_round_trip_dtype_and_values_exact(new_name, arr):
    name = new_name()
    try:
        table = publish_attach(name, arr)
        back = shmarrow.to_numpy_structured(table)
        assert type(back) is np.ndarray
        assert back.dtype == arr.dtype, (back.dtype, arr.dtype)
        assert back.shape == arr.shape
        # bit for bit: NaN payloads, -0.0, NaT, byte order, inner NULs (padding is zero in both)
        assert back.tobytes() == arr.tobytes()
        for path, keys, base in leaves(arr.dtype):
            a, b = pick(arr, keys), pick(back, keys)
            if base.kind in "fcMm":  # NaN and NaT compare equal to themselves here
                assert np.array_equal(a, b, equal_nan=True), path
            else:
                assert np.array_equal(a, b), path
        # the columns are the top-level fields, in order; data is little-endian Arrow
        assert table.column_names == list(arr.dtype.names)
        assert json.loads(table.schema.metadata[KEY])["masked"] is False
    finally:
        shmarrow.remove(name)


@PROPERTY
@given(arr=records(masked=True))
def test_masked_round_trip(new_name, arr):
    name = new_name()
    try:
        table = publish_attach(name, arr)
        back = shmarrow.to_numpy_structured(table)
        assert isinstance(back, np.ma.MaskedArray)
        assert back.dtype == arr.dtype
        assert back.mask.dtype == arr.mask.dtype
        assert back.mask.tobytes() == np.ma.getmaskarray(arr).tobytes()
        assert back.data.tobytes() == arr.data.tobytes(), "values under the mask are kept too"
        # nulls live on the leaf arrays only, one per masked element
        total_masked = sum(int(np.count_nonzero(pick(arr.mask, k))) for _, k, _ in leaves(arr.dtype))
        total_nulls = sum(_leaf_nulls(table.column(i).chunk(0)) for i in range(table.num_columns)) if len(arr) else 0
        complex_masked = sum(int(np.count_nonzero(pick(arr.mask, k))) for _, k, b in leaves(arr.dtype) if b.kind == "c")
        assert total_nulls == total_masked + complex_masked  # a complex null is on re and on im
    finally:
        shmarrow.remove(name)


def _leaf_nulls(arr: pa.Array) -> int:
    t = arr.type
    if pa.types.is_struct(t):
        assert arr.null_count == 0, "struct arrays carry no nulls"
        return sum(_leaf_nulls(arr.field(i)) for i in range(t.num_fields))
    if pa.types.is_fixed_size_list(t):
        assert arr.null_count == 0, "fixed-size list arrays carry no nulls"
        return _leaf_nulls(arr.values)
    return arr.null_count


@PROPERTY
@given(arr=st.one_of(records(), records(masked=True)))
def test_field_views_are_zero_copy(new_name, maps, within, arr):
    name = new_name()
    try:
        table = publish_attach(name, arr)
        ranges = maps(shmarrow.path(name))  # empty if no buffer holds the mapping (0 rows)
        views = shmarrow.field_views(table)
        data = np.ma.getdata(arr)
        expected = expected_views(data)
        masked = isinstance(arr, np.ma.MaskedArray)
        mask_keys = {k for k in views if k.endswith(".mask")}
        assert set(views) - mask_keys == set(expected)
        for path, exp in expected.items():
            view = views[path]
            assert view.shape == exp.shape, path
            assert view.dtype == exp.dtype.newbyteorder("<"), path
            assert_zero_copy(view, ranges, within, path)
            assert view.tobytes() == exp.astype(view.dtype).tobytes(), path
        # masks: exactly the leaves with a masked element, as bool arrays, True = null
        want_masks = {}
        if masked:
            full = np.ma.getmaskarray(arr)
            for path, keys, base in leaves(arr.dtype):
                m = pick(full, keys)
                if m.any():
                    for p in ([path + ".re", path + ".im"] if base.kind == "c" else [path]):
                        if base.kind not in "bUS":
                            want_masks[p + ".mask"] = m
        assert mask_keys == set(want_masks)
        for key, m in want_masks.items():
            assert views[key].dtype == np.bool_ and np.array_equal(views[key], m), key
    finally:
        shmarrow.remove(name)


# ---------------------------------------------------------------- the mapping, explicitly

POINT = np.dtype([
    ("id", "<i8"),
    ("pos", ">f4", (3,)),
    ("grid", "<i2", (2, 3)),
    ("meta", [("t", "<M8[ms]"), ("d", ">m8[us]"), ("inner", [("k", "u1"), ("name", "U4")])]),
    ("z", ">c16"),
    ("flag", "?"),
    ("tag", "S3"),
    ("h", "<f2"),
])


def _points(n=5) -> np.ndarray:
    a = np.zeros(n, POINT)
    a["id"] = np.arange(n) * 10
    a["pos"] = np.arange(3 * n).reshape(n, 3) / 2
    a["grid"] = np.arange(6 * n).reshape(n, 2, 3)
    a["meta"]["t"] = np.arange(n).astype("M8[ms]")
    a["meta"]["d"] = (np.arange(n) * 7).astype("m8[us]")
    a["meta"]["inner"]["k"] = 255
    a["meta"]["inner"]["name"] = ["", "a", "bé", "a\x00c", "wxyz"][:n] + [""] * max(0, n - 5)
    a["z"] = np.arange(n) + 1j * np.arange(n)[::-1]
    a["flag"] = np.arange(n) % 2 == 0
    a["tag"] = b"x\x00y"
    a["h"] = 0.5
    return a


def test_arrow_schema_of_each_kind(seg_name):
    table = publish_attach(seg_name, _points())
    f32 = pa.field("item", pa.float32(), nullable=False)
    i16 = pa.field("item", pa.int16(), nullable=False)
    expect = pa.schema([
        pa.field("id", pa.int64(), nullable=False),
        pa.field("pos", pa.list_(f32, 3), nullable=False),
        pa.field("grid", pa.list_(pa.field("item", pa.list_(i16, 3), nullable=False), 2), nullable=False),
        pa.field("meta", pa.struct([
            pa.field("t", pa.timestamp("ms"), nullable=False),
            pa.field("d", pa.duration("us"), nullable=False),
            pa.field("inner", pa.struct([
                pa.field("k", pa.uint8(), nullable=False), pa.field("name", pa.string(), nullable=False)
            ]), nullable=False),
        ]), nullable=False),
        pa.field("z", pa.struct([pa.field("re", pa.float64(), nullable=False), pa.field("im", pa.float64(), nullable=False)]), nullable=False),
        pa.field("flag", pa.bool_(), nullable=False),
        pa.field("tag", pa.binary(), nullable=False),
        pa.field("h", pa.float16(), nullable=False),
    ])
    assert table.schema.remove_metadata().equals(expect, check_metadata=False), table.schema
    rows = table.to_pylist()
    assert rows[3]["pos"] == [4.5, 5.0, 5.5] and rows[3]["grid"] == [[18, 19, 20], [21, 22, 23]]
    assert rows[3]["meta"]["inner"] == {"k": 255, "name": "a\x00c"}, "inner NULs survive"
    assert rows[1]["z"] == {"re": 1.0, "im": 3.0}
    assert rows[1]["flag"] is False and rows[2]["tag"] == b"x\x00y"


def test_metadata_records_the_exact_dtype(seg_name):
    table = publish_attach(seg_name, _points())
    doc = json.loads(table.schema.metadata[KEY])
    assert doc["version"] == 1 and doc["masked"] is False and doc["complex"] == "struct<re, im>"
    assert doc["descr"][1] == ["pos", ">f4", [3]], "byte order and subarray shape"
    assert doc["descr"][3][1][1] == ["d", ">m8[us]"], "unit and byte order of nested fields"
    back = shmarrow.to_numpy_structured(table)
    assert back.dtype == POINT and back.tobytes() == _points().tobytes()
    # other readers see the shmarrow keys and ours side by side
    assert {b"shmarrow.version", KEY} <= set(table.schema.metadata)


def test_big_endian_is_little_endian_in_arrow(seg_name, maps, within):
    a = _points()
    table = publish_attach(seg_name, a)
    pos = table.column("pos").chunk(0).values.buffers()[1]
    assert np.frombuffer(pos, "<f4", count=15).tolist() == a["pos"].ravel().tolist()
    views = shmarrow.field_views(table)
    assert views["pos"].dtype == np.dtype("<f4") and views["meta.d"].dtype == np.dtype("<m8[us]")
    assert views["z.re"].dtype == np.dtype("<f8")
    np.testing.assert_array_equal(views["pos"], a["pos"])
    np.testing.assert_array_equal(views["z.im"], a["z"].imag)
    ranges = maps(shmarrow.path(seg_name))
    for path, view in views.items():
        assert_zero_copy(view, ranges, within, path)


def test_field_views_paths_shapes_and_units(seg_name, maps, within):
    a = _points()
    table = publish_attach(seg_name, a)
    views = shmarrow.field_views(table)
    # bool (bit-packed) and strings/binary (variable width) have no zero-copy view: omitted
    assert list(views) == ["id", "pos", "grid", "meta.t", "meta.d", "meta.inner.k", "z.re", "z.im", "h"]
    assert views["grid"].shape == (5, 2, 3) and views["pos"].shape == (5, 3)
    assert views["meta.t"].dtype == np.dtype("M8[ms]")
    np.testing.assert_array_equal(views["meta.t"], a["meta"]["t"])
    np.testing.assert_array_equal(views["grid"], a["grid"])
    assert views["h"].dtype == np.float16
    ranges = maps(shmarrow.path(seg_name))
    grid = table.column("grid").chunk(0).values.values.buffers()[1]
    assert views["grid"].__array_interface__["data"][0] == grid.address, "the Arrow buffer itself"
    for view in views.values():
        assert_zero_copy(view, ranges, within, "view")
        with pytest.raises(ValueError):
            view.flat[0] = 0


def test_field_views_keep_the_mapping_alive(seg_name, maps):
    table = publish_attach(seg_name, _points(1000))
    path = shmarrow.path(seg_name)
    view = shmarrow.field_views(table)["grid"]
    del table
    gc.collect()
    assert maps(path), "a live view keeps the mapping"
    assert int(view[-1, -1, -1]) == 6 * 1000 - 1
    del view
    gc.collect()
    assert maps(path) == []


def test_field_views_masks(seg_name, maps, within):
    a = _points()
    m = np.ma.MaskedArray(a)
    m.mask["pos"][1, 2] = True
    m.mask["meta"]["inner"]["k"][4] = True
    m.mask["z"][0] = True
    m.mask["flag"][3] = True
    table = publish_attach(seg_name, m)
    views = shmarrow.field_views(table)
    assert sorted(k for k in views if k.endswith(".mask")) == [
        "meta.inner.k.mask", "pos.mask", "z.im.mask", "z.re.mask"
    ], "only leaves with nulls get a mask; bool has no view, so no mask either"
    np.testing.assert_array_equal(views["pos.mask"], m.mask["pos"])
    assert views["pos.mask"].shape == (5, 3)
    assert views["z.re.mask"].tolist() == [True, False, False, False, False]
    # the values stay zero-copy views, masked slots included (they hold the masked data)
    ranges = maps(shmarrow.path(seg_name))
    assert_zero_copy(views["pos"], ranges, within, "pos")
    np.testing.assert_array_equal(views["pos"], a["pos"])
    # what numpy.ma makes of the pair
    pos = np.ma.MaskedArray(views["pos"], mask=views["pos.mask"])
    assert pos.count() == 14
    assert table.column("z").chunk(0).null_count == 0
    assert table.column("z").chunk(0).field("re").null_count == 1


def test_masked_round_trip_explicit(seg_name):
    a = _points()
    m = np.ma.MaskedArray(a)
    m.mask["meta"]["inner"]["name"][2] = True
    m.mask["tag"][0] = True
    m.mask["flag"][1] = True
    m.mask["grid"][4, 1, 0] = True
    table = publish_attach(seg_name, m)
    back = shmarrow.to_numpy_structured(table)
    assert isinstance(back, np.ma.MaskedArray) and back.dtype == POINT
    assert back.mask.tobytes() == m.mask.tobytes()
    assert back.data.tobytes() == a.tobytes()
    assert table.column("meta").chunk(0).to_pylist()[2]["inner"]["name"] is None
    assert table.column("flag").chunk(0).to_pylist()[1] is None
    # unmasked but published as masked: comes back masked (nothing masked)
    shmarrow.from_numpy(seg_name, np.ma.MaskedArray(a))
    back = shmarrow.to_numpy_structured(shmarrow.attach(seg_name))
    assert isinstance(back, np.ma.MaskedArray) and not np.ma.getmaskarray(back)["id"].any()


def test_nat_and_nan_are_values_not_nulls(seg_name):
    a = np.zeros(3, [("t", "M8[ns]"), ("d", "m8[s]"), ("f", "f8")])
    a["t"][1] = np.datetime64("NaT")
    a["d"][2] = np.timedelta64("NaT")
    a["f"][0] = np.nan
    table = publish_attach(seg_name, a)
    assert all(table.column(i).null_count == 0 for i in range(3))
    back = shmarrow.to_numpy_structured(table)
    assert type(back) is np.ndarray and np.isnat(back["t"][1]) and np.isnat(back["d"][2])
    assert np.isnan(back["f"][0])


def test_field_views_of_a_multi_batch_table(seg_name, maps, within):
    t = pa.Table.from_batches([
        pa.record_batch({"x": pa.array([1, 2], pa.int32())}), pa.record_batch({"x": pa.array([3], pa.int32())})
    ])
    shmarrow.create(seg_name, t)
    table = shmarrow.attach(seg_name)
    with pytest.raises(shmarrow.NotZeroCopy, match="'x'.*2 chunks"):
        shmarrow.field_views(table)
    ranges = maps(shmarrow.path(seg_name))
    got = [shmarrow.field_views(b)["x"] for b in table.to_batches()]
    assert [g.tolist() for g in got] == [[1, 2], [3]]
    for g in got:
        assert_zero_copy(g, ranges, within, "x")
    # to_numpy_structured spans batches (it copies anyway)
    back = shmarrow.to_numpy_structured(table)
    assert back.dtype == np.dtype([("x", "<i4")]) and back["x"].tolist() == [1, 2, 3]


# ---------------------------------------------------------------- dict input, options


def test_dict_of_arrays(seg_name):
    inner = np.zeros(3, [("a", ">i2"), ("b", "U2")])
    inner["a"] = [1, -1, 300]
    inner["b"] = ["x", "", "yz"]
    data = {
        "x": np.arange(3, dtype=np.int64),
        "pos": np.arange(18, dtype=">f4").reshape(3, 2, 3),
        "rec": inner,
        "s": np.array(["a", "bb", ""]),
        "m": np.ma.MaskedArray([1.5, 2.5, 3.5], mask=[False, True, False]),
    }
    table = publish_attach(seg_name, data)
    assert table.column_names == list(data)
    assert table.schema.field("pos").type == pa.list_(pa.field("item", pa.list_(pa.field("item", pa.float32(), False), 3), False), 2)
    assert table.schema.field("m").nullable and not table.schema.field("x").nullable
    back = shmarrow.to_numpy_structured(table)
    assert isinstance(back, np.ma.MaskedArray)
    assert back.dtype == np.dtype([("x", "<i8"), ("pos", ">f4", (2, 3)), ("rec", inner.dtype), ("s", "<U2"), ("m", "<f8")])
    for key in ["x", "pos", "s"]:
        np.testing.assert_array_equal(back[key], data[key])
    assert back["rec"].tobytes() == inner.tobytes()
    assert back["m"].tolist() == [1.5, None, 3.5]
    assert not back.mask["x"].any()


def test_dict_rejects_mismatched_rows(seg_name):
    with pytest.raises(ValueError, match="'b'.*2 rows"):
        shmarrow.from_numpy(seg_name, {"a": np.zeros(3), "b": np.zeros(2)})
    assert not os.path.exists(shmarrow.path(seg_name))


def test_create_options_pass_through(seg_name, iso_dir):
    a = _points(2)
    with shmarrow.from_numpy(seg_name, a, dir=iso_dir, lifetime="owner", mode=0o640) as created:
        assert created.path == os.path.join(iso_dir, seg_name)
        assert os.stat(created.path).st_mode & 0o777 == 0o640
        with pytest.raises(shmarrow.SegmentExists):
            shmarrow.from_numpy(seg_name, a, dir=iso_dir, replace=False)
        back = shmarrow.to_numpy_structured(shmarrow.attach(seg_name, dir=iso_dir))
        assert back.tobytes() == a.tobytes()
    assert not os.path.exists(os.path.join(iso_dir, seg_name)), "owner lifetime: removed on exit"


# ---------------------------------------------------------------- layouts numpy allows


@pytest.mark.parametrize(
    "dtype",
    [
        np.dtype([("a", "i1"), ("b", ">f8", (2,)), ("c", [("x", "U3"), ("y", "M8[ns]")])], align=True),  # padding
        np.dtype({"names": ["a", "b"], "formats": ["<i4", (">i2", (2,))], "offsets": [4, 0], "itemsize": 12}),
        np.dtype({"names": ["a"], "formats": ["<i4"], "offsets": [8], "itemsize": 16}),  # leading/trailing gaps
        np.dtype([(("a title", "a"), "<i4"), ("b", [(("t", "c"), "S2")])]),  # titles
        np.dtype([("empty", "<f4", (0,)), ("x", "<u2")]),  # a zero-size subarray
        np.dtype([("nest", [("deep", [("deeper", [("v", ">c8", (2, 2))])])])]),
    ],
    ids=["aligned", "out-of-order", "gaps", "titles", "zero-size-subarray", "deep"],
)
def test_layouts_round_trip(seg_name, dtype):
    a = np.zeros(4, dtype)
    for path, keys, base in leaves(dtype):
        v = pick(a, keys)
        if base.kind in "iufc":
            v[...] = np.arange(v.size).reshape(v.shape) + 1
        elif base.kind in "US":
            v[...] = "ab" if base.kind == "U" else b"ab"
    table = publish_attach(seg_name, a)
    back = shmarrow.to_numpy_structured(table)
    assert back.dtype == dtype
    for path, keys, _ in leaves(dtype):
        assert pick(back, keys).tobytes() == pick(a, keys).tobytes(), path


def test_selected_columns_keep_their_metadata_dtype(seg_name):
    a = _points()
    table = publish_attach(seg_name, a).select(["z", "id", "meta"])
    back = shmarrow.to_numpy_structured(table)
    assert back.dtype == np.dtype([("z", ">c16"), ("id", "<i8"), ("meta", POINT["meta"])])
    for key in ["z", "id"]:
        np.testing.assert_array_equal(back[key], a[key])
    assert back["meta"].tobytes() == a["meta"].tobytes()


# ---------------------------------------------------------------- tables without our metadata


def test_inferred_from_arrow_types_without_metadata(seg_name):
    n = 4
    struct = pa.array(
        [{"a": 1, "b": [1.0, 2.0]}, None, {"a": 3, "b": [5.0, 6.0]}, {"a": None, "b": [7.0, 8.0]}],
        pa.struct([("a", pa.int16()), ("b", pa.list_(pa.float64(), 2))]),
    )
    t = pa.table({
        "i": pa.array([1, None, 3, 4], pa.int32()),
        "ts": pa.array([0, 1, 2, 3], pa.timestamp("us", tz="Europe/Paris")),
        "dur": pa.array([5, 6, 7, 8], pa.duration("ns")),
        "day": pa.array([0, 1, 19000, -1], pa.date32()),
        "s": pa.array(["a", "héllo", None, ""]),
        "b": pa.array([b"\x00x", b"", b"abc", None]),
        "flag": pa.array([True, False, None, True]),
        "st": struct,
        "cplx": pa.array([{"re": 1.0, "im": 2.0}] * n),
        "fb": pa.array([b"ab", b"cd", b"ef", b"gh"], pa.binary(2)),
    })
    shmarrow.create(seg_name, t)
    table = shmarrow.attach(seg_name)
    assert KEY not in table.schema.metadata
    back = shmarrow.to_numpy_structured(table)
    assert isinstance(back, np.ma.MaskedArray), "the table has nulls"
    assert back.dtype == np.dtype([
        ("i", "<i4"), ("ts", "<M8[us]"), ("dur", "<m8[ns]"), ("day", "<M8[D]"), ("s", "<U5"), ("b", "S3"),
        ("flag", "?"), ("st", [("a", "<i2"), ("b", "<f8", (2,))]),
        ("cplx", [("re", "<f8"), ("im", "<f8")]),  # without metadata a struct<re, im> stays a struct
        ("fb", "S2"),
    ])
    assert back["i"].tolist() == [1, None, 3, 4]
    assert back.data["ts"].astype(np.int64).tolist() == [0, 1, 2, 3], "UTC values, zone dropped"
    assert back.data["day"][2] == np.datetime64("2022-01-08")
    assert back["s"].tolist() == ["a", "héllo", None, ""]
    assert back["b"].tolist() == [b"\x00x", b"", b"abc", None]
    assert back.data["fb"].tolist() == [b"ab", b"cd", b"ef", b"gh"]
    # a null struct masks every leaf below it; a null child only itself
    assert back.mask["st"]["a"].tolist() == [False, True, False, True]
    assert back.mask["st"]["b"].tolist() == [[False, False], [True, True], [False, False], [False, False]]
    assert back.data["st"]["b"][2].tolist() == [5.0, 6.0]
    # field_views: the same null propagation, as separate masks
    views = shmarrow.field_views(table)
    assert views["st.b.mask"].tolist() == back.mask["st"]["b"].tolist()
    assert views["st.a.mask"].tolist() == [False, True, False, True]
    assert "dur.mask" not in views and views["fb"].dtype == np.dtype("S2")
    assert "day" not in views, "date32 has no zero-copy datetime64 view"


def test_inferred_without_nulls_is_a_plain_array(seg_name):
    t = pa.table({"x": pa.array([1.0, 2.0]), "v": pa.array([[1, 2], [3, 4]], pa.list_(pa.int8(), 2))})
    shmarrow.create(seg_name, t)
    back = shmarrow.to_numpy_structured(shmarrow.attach(seg_name))
    assert type(back) is np.ndarray
    assert back.dtype == np.dtype([("x", "<f8"), ("v", "i1", (2,))])
    assert back["v"].tolist() == [[1, 2], [3, 4]]


def test_unsupported_arrow_types_name_the_column(seg_name):
    t = pa.table({"ok": [1], "deep": pa.array([{"l": [1, 2]}])})
    with pytest.raises(TypeError, match="'deep.l'.*list"):
        shmarrow.to_numpy_structured(t)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "dtype, path",
    [
        (np.dtype([("a", "i4"), ("o", "O")]), "'o'"),
        (np.dtype([("a", [("b", [("obj", "O", (2,))])])]), "'a.b.obj'"),
        (np.dtype([("a", "i4"), ("raw", "V4")]), "'raw'"),
        (np.dtype([("s", [("blob", "V8")])]), "'s.blob'"),
        (np.dtype([("q", "g")]), "'q'"),
        (np.dtype([("cq", "G")]), "'cq'"),
        (np.dtype([("day", "M8[D]")]), "'day'"),
        (np.dtype([("t", "M8")]), "'t'"),
        (np.dtype([("t", "m8[10ms]")]), "'t'"),
    ],
    ids=["object", "nested-object", "void", "nested-void", "longdouble", "clongdouble", "day-unit", "generic", "multiple"],
)
def test_unsupported_dtypes_name_the_field(seg_name, dtype, path):
    if dtype.names[0] in ("q", "cq") and np.dtype("g").itemsize == 8:
        pytest.skip("long double is double on this platform")
    with pytest.raises(TypeError, match=path):
        shmarrow.from_numpy(seg_name, np.zeros(2, dtype))
    assert not os.path.exists(shmarrow.path(seg_name)), "nothing is published"


def test_object_message_is_clear(seg_name):
    with pytest.raises(TypeError, match=r"field 'x\.o': object dtype"):
        shmarrow.from_numpy(seg_name, {"x": np.zeros(2, [("o", "O")])})


@pytest.mark.parametrize(
    "data, exc, match",
    [
        ([1, 2], TypeError, "an ndarray or a dict"),
        (np.array(3.0), ValueError, "'values'.*0-d"),
        (np.zeros((2, 2), [("a", "i4")]), ValueError, "1-d"),
        ({}, ValueError, "no columns"),
        ({"a": np.int64(3)}, ValueError, "'a'.*0-d"),
    ],
)
def test_bad_inputs(seg_name, data, exc, match):
    with pytest.raises(exc, match=match):
        shmarrow.from_numpy(seg_name, data)


def test_exports():
    for name in ["from_numpy", "to_numpy_structured", "field_views"]:
        assert name in shmarrow.__all__ and callable(getattr(shmarrow, name))
    assert "copy" in shmarrow.to_numpy_structured.__doc__


def test_from_numpy_plain_masked_1d(seg_name, shm_dir):
    masked = np.ma.masked_array([1, 2, 3], mask=[False, True, False], dtype=np.int32)
    shmarrow.from_numpy(seg_name, masked, dir=shm_dir)
    table = shmarrow.attach(seg_name, dir=shm_dir)
    assert table.column_names == [shmarrow.structured.PLAIN_COLUMN]
    assert table.column(0).type == pa.int32()
    assert table.column(0).to_pylist() == [1, None, 3]
    back = shmarrow.to_numpy_structured(table)
    assert isinstance(back, np.ma.MaskedArray)
    assert back["values"].tolist() == [1, None, 3]
