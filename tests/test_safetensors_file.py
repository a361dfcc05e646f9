"""Our safetensors header reader against the `safetensors` package, and corrupt headers."""

import json
import struct

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from workbench.errors import FormatError
from workbench.formats.safetensors_file import SafetensorsFile, describe, read_safetensors

ARRAYS = {
    "f32": np.arange(12, dtype=np.float32).reshape(3, 4),
    "f16": np.linspace(-1, 1, 10, dtype=np.float16),
    "f64": np.array([1.5, -2.25]),
    "i8": np.array([[-1, 2], [3, -4]], dtype=np.int8),
    "u8": np.arange(5, dtype=np.uint8),
    "i32": np.array([7], dtype=np.int32),
    "i64": np.arange(6, dtype=np.int64).reshape(1, 2, 3),
    "bool": np.array([True, False, True]),
    "scalar": np.array(3.0, dtype=np.float32),
    "empty": np.zeros((0, 4), dtype=np.float32),
}


@pytest.fixture
def st_path(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file(ARRAYS, str(path), metadata={"format": "pt", "note": "x"})
    return path


def test_matches_safetensors_package(st_path):
    st = SafetensorsFile.open(st_path)
    ref = load_file(str(st_path))
    assert set(st.tensors) == set(ref)
    assert st.metadata == {"format": "pt", "note": "x"}
    for name, want in ref.items():
        got = st.array(name)
        assert got.dtype == want.dtype and got.shape == want.shape, name
        assert np.array_equal(got, want), name
        assert not got.flags.writeable
    assert st.tensors["f32"].shape == (3, 4) and st.tensors["f32"].n_bytes == 48
    assert st.tensors["scalar"].shape == () and st.tensors["scalar"].n_elements == 1
    assert read_safetensors(st_path).tensors == st.tensors


def test_f32_conversion(st_path):
    st = SafetensorsFile.open(st_path)
    assert np.array_equal(st.f32("f32"), ARRAYS["f32"])
    assert np.array_equal(st.f32("f16"), ARRAYS["f16"].astype(np.float32))
    with pytest.raises(FormatError, match="'i8' is I8"):
        st.f32("i8")
    with pytest.raises(FormatError, match="no tensor 'nope'"):
        st.array("nope")


def _raw_file(tmp_path, header: dict | bytes, data: bytes = b"", length: int | None = None):
    blob = header if isinstance(header, bytes) else json.dumps(header).encode()
    n = len(blob) if length is None else length
    path = tmp_path / "raw.safetensors"
    path.write_bytes(struct.pack("<Q", n) + blob + data)
    return path


def test_bf16(tmp_path):
    values = np.array([1.0, -2.5, 3.140625], dtype=np.float32)
    bits = (values.view(np.uint32) >> 16).astype(np.uint16)
    path = _raw_file(tmp_path, {"w": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]}},
                     bits.tobytes())
    st = SafetensorsFile.open(path)
    assert st.array("w").dtype == np.uint16
    assert np.array_equal(st.f32("w"), values)


def test_describe(st_path):
    d = describe(SafetensorsFile.open(st_path))
    json.dumps(d)
    assert d["format"] == "safetensors" and d["n_tensors"] == len(ARRAYS)
    row = next(t for t in d["tensors"] if t["name"] == "f32")
    assert row["type"] == "F32" and row["shape"] == [3, 4] and row["bytes"] == 48
    assert d["metadata"]["format"] == "pt"
    assert d["tensor_types"]["F32"]["tensors"] == 3


def _fails(path, *words):
    with pytest.raises(FormatError) as e:
        SafetensorsFile.open(path)
    msg = str(e.value)
    assert str(path) in msg, msg
    for w in words:
        assert w in msg, msg


def test_missing_and_tiny(tmp_path):
    _fails(tmp_path / "missing.safetensors", "cannot read")
    _fails(tmp_path, "directory")
    p = tmp_path / "tiny.safetensors"
    for blob in (b"", b"\x01\x02\x03"):
        p.write_bytes(blob)
        _fails(p, "not a safetensors file")


def test_header_length_beyond_file(tmp_path):
    _fails(_raw_file(tmp_path, {}, length=10**6), "header length 1000000 runs past the end")
    _fails(_raw_file(tmp_path, {}, length=2**64 - 1), "runs past the end")


def test_bad_json(tmp_path):
    _fails(_raw_file(tmp_path, b"{not json"), "not valid UTF-8 JSON")
    _fails(_raw_file(tmp_path, b"\xff\xfe{}"), "not valid UTF-8 JSON")
    _fails(_raw_file(tmp_path, b"[1, 2]"), "JSON list")


@pytest.mark.parametrize("entry, words", [
    ({"dtype": "F4X", "shape": [1], "data_offsets": [0, 4]}, ["unknown dtype 'F4X'"]),
    ({"shape": [1], "data_offsets": [0, 4]}, ["unknown dtype None"]),
    ({"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}, ["shape [-1]"]),
    ({"dtype": "F32", "shape": "1", "data_offsets": [0, 4]}, ["shape '1'"]),
    ({"dtype": "F32", "shape": [1], "data_offsets": [0]}, ["data_offsets [0]"]),
    ({"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}, ["outside"]),
    ({"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}, ["outside the 8-byte data section"]),
    ({"dtype": "F32", "shape": [1], "data_offsets": [-4, 0]}, ["outside"]),
    ({"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}, ["spans 8 bytes", "needs 12"]),
    ("not an object", ["not a JSON object"]),
])
def test_bad_entries(tmp_path, entry, words):
    _fails(_raw_file(tmp_path, {"t": entry}, b"\0" * 8), "'t'", *words)


def test_bad_metadata(tmp_path):
    _fails(_raw_file(tmp_path, {"__metadata__": {"a": 1}}), "__metadata__")


def test_overlapping_tensors(tmp_path):
    header = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
              "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}
    _fails(_raw_file(tmp_path, header, b"\0" * 12), "overlap")


def test_truncated_data(tmp_path, st_path):
    blob = st_path.read_bytes()
    p = tmp_path / "cut.safetensors"
    p.write_bytes(blob[:-1])
    _fails(p, "outside")
