"""Fuzzing the safetensors reader with hostile files (issue 9).

Every file here, however malformed, must either open or raise a `WorkbenchError` naming
the file; a file that opens must hand out `array()` / `f32()` results of the stated
shape that lie inside it (or refuse with a `WorkbenchError`). Files come from:
- hypothesis-built headers: valid entries laid out back to back, then hostile ones
  (unknown or non-string dtypes, shapes of wrong types or absurd sizes, reversed,
  outside or overlapping data_offsets, `__metadata__` of every JSON type), with the
  8-byte header length and the data size perturbed;
- arbitrary JSON values and arbitrary bytes as the header;
- a file written by the `safetensors` package, truncated and mutated;
- a table of named hostile cases, also opened in a child process under a 1 GiB
  address-space cap.
Settings and the shared checks are in `tests/_fuzz.py`.
"""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from safetensors.numpy import save_file

from tests._fuzz import FUZZ, LIMITED_OPEN, clean, put_int, rarely, run_limited, u64s
from workbench.errors import FormatError
from workbench.formats.safetensors_file import DTYPES, SafetensorsFile, describe

ITEMSIZE = {name: size for name, (size, _) in DTYPES.items()}


def blob_of(header, data: bytes = b"", length: int | None = None, pad: int = 0) -> bytes:
    """8-byte length + header (a JSON value, or bytes as they are) + data."""
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    h += b" " * pad  # trailing spaces are legal: writers pad the header to 8 bytes
    n = len(h) if length is None else length
    return struct.pack("<Q", n % 2**64) + h + data


# -- checks -------------------------------------------------------------------------------

def exercise(sf: SafetensorsFile) -> None:
    """Everything a caller may do with a file that opened; only WorkbenchErrors allowed."""
    json.dumps(describe(sf))
    spans = []
    for name, t in sf.tensors.items():
        assert t.dtype in DTYPES and t.n_bytes == t.n_elements * ITEMSIZE[t.dtype], t
        assert sf.data_offset <= t.offset and t.offset + t.n_bytes <= sf.file_size, t
        if t.n_bytes:
            spans.append((t.offset, t.offset + t.n_bytes))
        ok, a = clean(sf.path, f"array({name!r})", lambda: sf.array(name))
        assert ok, a  # every tensor of a file that opened must be readable
        assert a.shape == t.shape and a.nbytes == t.n_bytes and not a.flags.writeable
        if a.size:
            a.reshape(-1)[-1].tobytes()  # the last element is inside the map
        ok, f = clean(sf.path, f"f32({name!r})", lambda: sf.f32(name))
        if ok:
            assert f.dtype == np.float32 and f.shape == t.shape
        else:
            assert t.dtype not in ("F32", "F16", "BF16"), f
    spans.sort()
    assert all(a1 <= b0 for (_, a1), (b0, _) in zip(spans, spans[1:])), spans


def check(path, blob: bytes):
    """Open `blob` as a file: a SafetensorsFile (exercised) or the WorkbenchError raised."""
    path.write_bytes(blob)
    ok, sf = clean(path, "SafetensorsFile.open", lambda: SafetensorsFile.open(path))
    if ok:
        exercise(sf)
    return sf


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz_st") / "f.safetensors"


# -- strategies -----------------------------------------------------------------------------

EDGE_INTS = [0, 1, 2, 3, 4, 7, 8, 2**31, 2**32, 2**53 + 1, 2**62, 2**63 - 1, 2**63, 2**64,
             2**64 + 1, 10**30, -1, -(2**63)]
JSON_SCALARS = (st.none() | st.booleans() | st.floats() | st.text(max_size=6)
                | st.sampled_from(EDGE_INTS) | st.integers())
JSON = st.recursive(JSON_SCALARS, lambda c: st.lists(c, max_size=4)
                    | st.dictionaries(st.text(max_size=6), c, max_size=4), max_leaves=12)


@st.composite
def hostile_entry(draw, valid: dict, data_size: int):
    """`valid` with one or more fields gone wrong, or any JSON value at all."""
    if draw(st.integers(0, 5)) == 0:
        return draw(JSON)
    dtype = st.sampled_from(list(DTYPES) + ["F4X", "f32", "", "__metadata__"]) | JSON
    dim = st.sampled_from(EDGE_INTS) | st.integers(0, 4) | JSON_SCALARS
    shape = (st.lists(dim, max_size=6) | JSON
             | st.lists(st.sampled_from([0, 1, 2**64]), min_size=60, max_size=70))
    begin, end = valid["data_offsets"]
    offset = st.sampled_from([0, begin, end, begin + 1, end - 1, data_size, data_size + 1, -1]
                             + EDGE_INTS) | JSON_SCALARS
    offsets = st.lists(offset, min_size=2, max_size=2) | st.lists(offset, max_size=3) | JSON
    entry = dict(valid)
    for key, strategy in (("dtype", dtype), ("shape", shape), ("data_offsets", offsets)):
        how = draw(st.sampled_from(["keep", "keep", "replace", "delete"]))
        if how == "replace":
            entry[key] = draw(strategy)
        elif how == "delete":
            del entry[key]
    if draw(st.integers(0, 3)) == 0:
        entry["extra"] = draw(JSON)
    return entry


@st.composite
def headers(draw, hostile: bool):
    """(header dict, data bytes): valid entries laid out back to back, plus hostile ones."""
    names = st.sampled_from(["a", "b", "model.embed_tokens.weight", ""]) | st.text(max_size=8)
    entries, pos = {}, 0
    for _ in range(draw(st.integers(0, 4))):
        name = draw(names.filter(lambda n: n != "__metadata__"))
        dtype = draw(st.sampled_from(list(DTYPES)))
        shape = draw(st.lists(st.integers(0, 4), max_size=3))
        n = math.prod(shape) * ITEMSIZE[dtype]
        entries[name] = {"dtype": dtype, "shape": shape, "data_offsets": [pos, pos + n]}
        if hostile and draw(st.integers(0, 2)) == 0:
            entries[name] = draw(hostile_entry(entries[name], pos + 16))
        pos += n
    meta = draw(st.none() | st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3)
                | (JSON if hostile else st.nothing()))
    header = dict(entries)
    if meta is not None or draw(st.booleans()):
        header["__metadata__"] = meta
    if hostile and draw(st.booleans()):  # the data shorter or longer than the entries say
        pos = max(0, pos + draw(st.sampled_from([-1, -4, 1, 8])))
    seed = draw(st.integers(0, 2**32 - 1))
    data = np.random.default_rng(seed).integers(0, 256, pos, np.uint8).tobytes()
    return header, data


# -- valid files round-trip -----------------------------------------------------------------

@FUZZ
@given(hd=headers(hostile=False), pad=st.integers(0, 7))
def test_valid_files_round_trip(work, hd, pad):
    header, data = hd
    sf = check(work, blob_of(header, data, pad=pad))
    assert isinstance(sf, SafetensorsFile), sf
    assert sf.metadata == (header.get("__metadata__") or {})
    for name, e in header.items():
        if name == "__metadata__":
            continue
        t = sf.tensors[name]
        assert (t.dtype, list(t.shape)) == (e["dtype"], e["shape"])
        begin, end = e["data_offsets"]
        assert sf.array(name).tobytes() == data[begin:end]


# -- hostile files -------------------------------------------------------------------------

@FUZZ
@given(hd=headers(hostile=True), length=rarely(u64s()), pad=st.integers(0, 3))
def test_hostile_headers(work, hd, length, pad):
    header, data = hd
    check(work, blob_of(header, data, length=length, pad=pad))


@FUZZ
@given(header=st.dictionaries(st.text(max_size=6), JSON, max_size=4) | JSON,
       data=st.binary(max_size=64))
def test_any_json_header(work, header, data):
    check(work, blob_of(header, data))


@FUZZ
@given(header=st.binary(max_size=200), data=st.binary(max_size=64), length=rarely(u64s()))
def test_any_bytes_header(work, header, data, length):
    check(work, blob_of(header, data, length=length))


@pytest.fixture(scope="module")
def package_blob(tmp_path_factory):
    """A file written by the `safetensors` package (every dtype numpy can hold)."""
    path = tmp_path_factory.mktemp("st_writer") / "w.safetensors"
    rng = np.random.default_rng(0)
    arrays = {
        "f32": rng.standard_normal((3, 4)).astype(np.float32),
        "f16": rng.standard_normal(6).astype(np.float16),
        "i64": np.arange(4, dtype=np.int64),
        "u8": np.arange(5, dtype=np.uint8),
        "bool": np.array([True, False]),
        "empty": np.zeros((0, 3), np.float32),
    }
    save_file(arrays, str(path), metadata={"format": "np"})
    return path.read_bytes()


def test_package_file_every_prefix(work, package_blob):
    for n in range(len(package_blob)):
        assert isinstance(check(work, package_blob[:n]), FormatError), n


@FUZZ
@given(data=st.data())
def test_package_file_mutated(work, package_blob, data):
    b = bytearray(package_blob)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(8, len(b) - 1))
        kind = data.draw(st.sampled_from(["length", "byte", "byte", "splice", "digit", "digit"]))
        if kind == "length":
            b = bytearray(put_int(b, 0, 8, data.draw(u64s())))
        elif kind == "byte":
            b[pos] = data.draw(st.integers(0, 255))
        elif kind == "digit":  # keep the JSON valid more often than random bytes do
            b[pos] = data.draw(st.sampled_from(b"0123456789-[]{},\":"))
        else:
            b[pos : pos + data.draw(st.integers(0, 16))] = data.draw(st.binary(max_size=16))
    cut = data.draw(rarely(st.integers(0, len(b))))
    check(work, bytes(b[:cut]))


# -- named hostile cases, in-process and under an address-space cap ------------------------

class Sparse(bytes):
    """File content: these bytes, then zeros up to `size` (a sparse file: no disk used)."""

    def __new__(cls, head: bytes, size: int):
        self = super().__new__(cls, head)
        self.size = size
        return self


def write_case(path, blob: bytes):
    with open(path, "wb") as f:
        f.write(blob)
        if isinstance(blob, Sparse):
            f.truncate(blob.size)
    return path


def _entry(dtype="F32", shape=(1,), offsets=(0, 4)):
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


HOSTILE = {
    "header_length_2**63": (blob_of({}, length=2**63), ["runs past the end"]),
    "header_length_2**64-1": (blob_of({}, length=2**64 - 1), ["runs past the end"]),
    "header_length_one_more": (blob_of({"t": _entry()}, b"\0" * 4, length=33), ["not valid"]),
    "header_length_zero": (blob_of({}, length=0), ["not valid"]),
    "header_past_100mb_limit": (Sparse(blob_of(b"{}", length=2**27), 8 + 2**27), ["exceeds"]),
    "not_json": (blob_of(b"{not json"), ["not valid UTF-8 JSON"]),
    "not_utf8": (blob_of(b'{"\xff": 1}'), ["not valid UTF-8 JSON"]),
    "utf16": (blob_of('{"t": 1}'.encode("utf-16")), ["not valid UTF-8 JSON"]),
    "json_list": (blob_of([1, 2]), ["JSON list"]),
    "json_null": (blob_of(None), ["JSON NoneType"]),
    "json_nested_100000_deep": (blob_of(b"[" * 100_000 + b"]" * 100_000), ["nested too deeply"]),
    "json_5000_digit_integer": (
        blob_of(b'{"t": {"dtype": "F32", "shape": [' + b"9" * 5000 + b'], "data_offsets": [0, 4]}}',
                b"\0" * 4),
        ["not valid UTF-8 JSON"]),
    "entry_not_object": (blob_of({"t": [1]}), ["'t' entry is not a JSON object"]),
    "dtype_unknown": (blob_of({"t": _entry("F4X")}, b"\0" * 4), ["unknown dtype 'F4X'"]),
    "dtype_lowercase": (blob_of({"t": _entry("f32")}, b"\0" * 4), ["unknown dtype 'f32'"]),
    "dtype_list": (blob_of({"t": _entry(["F32"])}, b"\0" * 4), ["unknown dtype ['F32']"]),
    "dtype_object": (blob_of({"t": _entry({"F32": 1})}, b"\0" * 4), ["unknown dtype"]),
    "dtype_missing": (blob_of({"t": {"shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4),
                      ["unknown dtype None"]),
    "shape_string": (blob_of({"t": _entry(shape="1")}, b"\0" * 4), ["shape"]),
    "shape_float": (blob_of({"t": _entry(shape=[1.0])}, b"\0" * 4), ["shape"]),
    "shape_bool": (blob_of({"t": _entry(shape=[True])}, b"\0" * 4), ["shape"]),
    "shape_negative": (blob_of({"t": _entry(shape=[-1])}, b"\0" * 4), ["shape"]),
    "shape_product_overflows": (
        blob_of({"t": _entry(shape=[2**32, 2**32])}, b"\0" * 4), ["overflows"]),
    "shape_dim_2**64_with_zero": (
        blob_of({"t": _entry(shape=[0, 2**64], offsets=(0, 0))}), ["overflows"]),
    "shape_zero_times_huge": (
        blob_of({"t": _entry(shape=[0, 2**40, 2**40], offsets=(0, 0))}), ["overflows"]),
    "shape_100_dims": (blob_of({"t": _entry(shape=[1] * 100)}, b"\0" * 4), ["100 dims"]),
    "shape_100000_huge_dims": (
        blob_of({"t": _entry(shape=[2**63 - 1] * 10**5)}, b"\0" * 4), ["dims"]),
    "shape_product_mismatch": (blob_of({"t": _entry(shape=[3])}, b"\0" * 4), ["needs 12"]),
    "offsets_reversed": (blob_of({"t": _entry(offsets=(4, 0))}, b"\0" * 4), ["outside"]),
    "offsets_outside": (blob_of({"t": _entry(offsets=(4, 8))}, b"\0" * 4), ["outside"]),
    "offsets_negative": (blob_of({"t": _entry(offsets=(-4, 0))}, b"\0" * 4), ["outside"]),
    "offsets_2**64": (blob_of({"t": _entry(offsets=(2**64, 2**64 + 4))}, b"\0" * 4), ["outside"]),
    "offsets_three": (blob_of({"t": _entry(offsets=(0, 4, 8))}, b"\0" * 8), ["data_offsets"]),
    "offsets_floats": (blob_of({"t": _entry(offsets=(0.0, 4.0))}, b"\0" * 4), ["data_offsets"]),
    "offsets_overlap": (
        blob_of({"a": _entry(shape=[2], offsets=(0, 8)), "b": _entry(shape=[2], offsets=(4, 12))},
                b"\0" * 12), ["overlap"]),
    "offsets_same": (
        blob_of({"a": _entry(), "b": _entry()}, b"\0" * 4), ["overlap"]),
    "metadata_list": (blob_of({"__metadata__": []}), ["__metadata__"]),
    "metadata_string": (blob_of({"__metadata__": "x"}), ["__metadata__"]),
    "metadata_false": (blob_of({"__metadata__": False}), ["__metadata__"]),
    "metadata_int_value": (blob_of({"__metadata__": {"a": 1}}), ["__metadata__"]),
    "metadata_nested": (blob_of({"__metadata__": {"a": {"b": "c"}}}), ["__metadata__"]),
    "megabyte_name_overlap": (
        blob_of({"a" * 2**20: _entry(), "b" * 2**20: _entry()}, b"\0" * 4), ["overlap", "aaa..."]),
    "megabyte_dtype": (blob_of({"t": _entry("F" * 2**20)}, b"\0" * 4), ["unknown dtype"]),
    "metadata_100000_items": (
        blob_of({"__metadata__": {str(i): i for i in range(100_000)}}), ["__metadata__"]),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_named_hostile_case(work, name):
    blob, words = HOSTILE[name]
    write_case(work, blob)
    ok, got = clean(work, "SafetensorsFile.open", lambda: SafetensorsFile.open(work))
    assert isinstance(got, FormatError), (name, got)
    for w in words:
        assert w in str(got), (name, str(got)[:300])
    assert len(str(got)) < 1000, (name, len(str(got)))  # one readable line, not the header


def test_null_metadata_and_empty_header_open(work):
    sf = check(work, blob_of({"__metadata__": None}))
    assert isinstance(sf, SafetensorsFile) and sf.metadata == {} and sf.tensors == {}
    sf = check(work, blob_of({}))
    assert isinstance(sf, SafetensorsFile) and sf.tensors == {}


def test_hostile_cases_under_a_1gib_address_space_cap(tmp_path):
    """In a child capped at 1 GiB of address space (RLIMIT_AS), each named case ends in
    a WorkbenchError naming the file: no MemoryError, no crash, within the timeout."""
    paths = []
    for name, (blob, _) in sorted(HOSTILE.items()):
        paths.append(str(write_case(tmp_path / f"{name}.safetensors", blob)))
    script = ("from workbench.formats.safetensors_file import SafetensorsFile\n"
              "OPEN = SafetensorsFile.open\n" + LIMITED_OPEN)
    for row in run_limited(script, paths):
        assert not row["ok"] and row["type"] == "FormatError", row
        assert row["path"] in row["message"], row
