"""The trust model of attach (SECURITY.md): ``validate="auto"|"full"|"structure"``.

A private segment shmarrow published gets structural checks only; bad UTF-8 written into it
after publish is caught when full validation is asked, or when other users can write it; a
file shmarrow did not write is validated in full unless ``structure`` is forced.
"""

from __future__ import annotations

import os

import pyarrow as pa
import pytest

import shmarrow

VICTIM = b"victim-value"


def table() -> pa.Table:
    return pa.table({"s": ["first", VICTIM.decode(), "last"], "x": [1.0, 2.0, 3.0]})


def break_utf8(path: str) -> None:
    """Corrupt the string column at rest: its second value's first byte becomes 0xFF."""
    with open(path, "r+b") as f:
        data = f.read()
        at = data.index(VICTIM)
        f.seek(at)
        f.write(b"\xff")


def test_a_private_segment_is_trusted_and_full_validation_catches_corruption(iso_dir):
    shmarrow.create("t", table(), dir=iso_dir)
    assert shmarrow.attach("t", dir=iso_dir).column("s").to_pylist()[1] == "victim-value"
    assert shmarrow.attach("t", dir=iso_dir, validate="full").num_rows == 3
    break_utf8(shmarrow.path("t", dir=iso_dir))
    with pytest.raises(shmarrow.CorruptSegment, match="(?i)utf"):
        shmarrow.attach("t", dir=iso_dir, validate="full")
    # Auto: only this user (or root) can write it, so it was not read; the table comes back.
    assert shmarrow.attach("t", dir=iso_dir).num_rows == 3


@pytest.mark.parametrize("mode", [0o620, 0o666])
def test_a_segment_others_can_write_is_validated_in_full(iso_dir, mode):
    shmarrow.create("t", table(), dir=iso_dir, mode=mode)
    path = shmarrow.path("t", dir=iso_dir)
    os.chmod(path, mode)
    assert shmarrow.attach("t", dir=iso_dir).num_rows == 3
    break_utf8(path)
    with pytest.raises(shmarrow.CorruptSegment, match="(?i)utf"):
        shmarrow.attach("t", dir=iso_dir)
    with pytest.raises(shmarrow.AccessDenied, match=f"mode {mode:o}") as err:
        shmarrow.attach("t", dir=iso_dir, validate="structure")
    assert isinstance(err.value, PermissionError) and err.value.name == "t"


def test_a_foreign_file_is_validated_in_full_unless_structure_is_forced(iso_dir):
    path = os.path.join(iso_dir, "foreign")
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table().schema) as writer:
        writer.write_table(table())
    os.chmod(path, 0o600)
    break_utf8(path)
    with pytest.raises(shmarrow.CorruptSegment, match="(?i)utf"):
        shmarrow.attach("foreign", dir=iso_dir)
    assert shmarrow.attach("foreign", dir=iso_dir, validate="structure").num_rows == 3


@pytest.mark.parametrize("bad", ["", "Full", "none", "structural"])
def test_an_unknown_validation_is_a_value_error(iso_dir, bad):
    shmarrow.create("t", table(), dir=iso_dir)
    with pytest.raises(ValueError, match="auto, full or structure"):
        shmarrow.attach("t", dir=iso_dir, validate=bad)


def test_create_refuses_invalid_utf8(iso_dir):
    # A string array whose bytes are not UTF-8, built without validation.
    offsets = pa.array([0, 2], pa.int32()).buffers()[1]
    bad = pa.StringArray.from_buffers(1, offsets, pa.py_buffer(b"\xff\xfe"))
    with pytest.raises(shmarrow.InvalidTable, match="(?i)utf"):
        shmarrow.create("bad", pa.table({"s": bad}), dir=iso_dir)
    assert not os.path.exists(os.path.join(iso_dir, "bad"))
