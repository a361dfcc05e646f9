"""Fuzzing the GGUF reader with hostile files (issue 9).

Every file here, however malformed, must either open or raise a `WorkbenchError` naming
the file; a file that opens must hand out `raw()` / `f32()` views that lie inside it (or
refuse with a `WorkbenchError`) and a `describe()` that serializes. Files come from:
- a serializer below that remembers where every count, length, type and offset sits,
  driven by hypothesis strategies (valid files, hostile files, then field overwrites,
  byte flips and truncations on top);
- a small file written by gguf-py's `GGUFWriter`, truncated and mutated;
- a table of named hostile cases, also opened in a child process under a 1 GiB
  address-space cap to show that no count a header claims is allocated unchecked.
Settings and the shared checks are in `tests/_fuzz.py` (`WORKBENCH_FUZZ=long` for a
long local run).
"""

from __future__ import annotations

import json
import math
import struct

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFWriter
from gguf import quants as gguf_quants
from hypothesis import given
from hypothesis import strategies as st

from tests._fuzz import FUZZ, LIMITED_OPEN, EDGE_U64, clean, put_int, run_limited, u32s, u64s
from workbench.errors import FormatError, UnsupportedError
from workbench.formats.ggml_types import GGML_TYPES
from workbench.formats.gguf import GGUFFile, describe

U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
        BOOL: "<B", U64: "<Q", I64: "<q", F64: "<d"}
SCALARS = sorted(_FMT)
# the tensor types workbench runs, and the rest of ggml's table
RUN_TYPES = [0, 1, 30, 8, 2, 3, 6, 12, 14]
TYPE_IDS = sorted(GGML_TYPES) + [4, 5, 31, 36, 42, 99, 1234, 2**31, 2**32 - 1]


# -- a GGUF serializer that remembers where each integer field is ----------------------

class Blob:
    """Bytes under construction plus (position, size) of every integer field in them."""

    def __init__(self) -> None:
        self.b = bytearray()
        self.fields: list[tuple[int, int]] = []

    def u32(self, v: int) -> None:
        self.fields.append((len(self.b), 4))
        self.b += struct.pack("<I", v % 2**32)

    def u64(self, v: int) -> None:
        self.fields.append((len(self.b), 8))
        self.b += struct.pack("<Q", v % 2**64)

    def string(self, s: bytes) -> None:
        self.u64(len(s))
        self.b += s

    def value(self, t: int, v) -> None:
        if t == STR:
            self.string(v)
        elif t == ARR:
            elem, items = v
            self.u32(elem)
            self.u64(len(items))
            for x in items:
                self.value(elem, x)
        elif t in _FMT:
            self.b += struct.pack(_FMT[t], v)
        else:  # unknown value type: whatever bytes follow
            self.b += v


def build(kvs, tensors, *, version=3, magic=b"GGUF", alignment=32, data=b"",
          n_tensors=None, n_kv=None) -> Blob:
    """kvs: [(key bytes, type, payload)]; tensors: [(name bytes, dims, type id, offset)]."""
    out = Blob()
    out.b += magic
    out.u32(version)
    out.u64(len(tensors) if n_tensors is None else n_tensors)
    out.u64(len(kvs) if n_kv is None else n_kv)
    for key, t, v in kvs:
        out.string(key)
        out.u32(t)
        out.value(t, v)
    for name, dims, type_id, offset in tensors:
        out.string(name)
        out.u32(len(dims))
        for d in dims:
            out.u64(d)
        out.u32(type_id)
        out.u64(offset)
    out.b += b"\0" * (-len(out.b) % alignment)
    out.b += data
    return out


def n_bytes(dims, type_id) -> int:
    ty = GGML_TYPES[type_id]
    return math.prod(dims) // ty.block_size * ty.type_size


# -- strategies -------------------------------------------------------------------------

def payloads(t: int, depth: int, hostile: bool):
    """A payload of GGUF value type `t` (arrays hold up to 4 items, nested up to depth 3)."""
    if t == STR:
        return st.binary(max_size=12) | st.text(max_size=6).map(str.encode)
    if t == ARR:
        elem_types = SCALARS + [STR] + ([ARR] if depth < 3 else [])
        if hostile:
            return st.tuples(st.sampled_from(elem_types + [13, 2**32 - 1]), st.just([]))
        return st.sampled_from(elem_types).flatmap(
            lambda e: st.tuples(st.just(e), st.lists(payloads(e, depth + 1, False), max_size=4)))
    if t in (F32, F64):
        return st.floats(width=32 if t == F32 else 64)
    if t in _FMT:
        size = struct.calcsize(_FMT[t])
        signed = _FMT[t].islower()
        bits = 8 * size
        return st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else st.integers(
            0, 2**bits - 1)
    return st.binary(max_size=16)  # unknown type


@st.composite
def metadata_kv(draw, hostile: bool):
    key = draw(st.sampled_from([b"general.architecture", b"general.name", b"k", b"a.b"])
               | st.binary(max_size=10))
    types = SCALARS + [STR, ARR] + ([13, 255, 2**32 - 1] if hostile else [])
    t = draw(st.sampled_from(types))
    return key, t, draw(payloads(t, 0, hostile and draw(st.booleans())))


ALIGNMENTS_OK = [(U32, 1), (U32, 8), (U32, 16), (U32, 32), (U32, 64), (U64, 128), (U8, 32)]
ALIGNMENTS_BAD = [(U32, 0), (U32, 3), (U32, 48), (U32, 2**31), (U64, 2**63), (I32, -32),
                  (STR, b"32"), (BOOL, 1), (F32, 32.0), (ARR, (U32, [32])), (U64, 2**64 - 1)]


@st.composite
def tensor_records(draw, alignment: int, hostile: bool):
    """Records laid out back to back (aligned) with their data; hostile ones get
    absurd dims, type ids and offsets too."""
    n = draw(st.integers(0, 4))
    records, pos, names = [], 0, set()
    for _ in range(n):
        name = draw(st.sampled_from([b"a", b"b", b"blk.0.attn_q.weight"]) | st.binary(max_size=8))
        if not hostile and name in names:
            continue
        names.add(name)
        if hostile and draw(st.integers(0, 2)) == 0:
            dims = draw(st.lists(st.sampled_from(EDGE_U64) | st.integers(0, 2**64 - 1), max_size=6))
            type_id = draw(st.sampled_from(TYPE_IDS) | u32s())
            offset = draw(st.sampled_from([pos, pos + 1, pos + alignment, 2**63]) | u64s())
            records.append((name, dims, type_id, offset))
            continue
        type_id = draw(st.sampled_from(RUN_TYPES + ([t for t in GGML_TYPES] if hostile else [])))
        ty = GGML_TYPES[type_id]
        dims = [ty.block_size * draw(st.integers(1, 3))]
        dims += draw(st.lists(st.integers(1, 3), max_size=3))
        records.append((name, dims, type_id, pos))
        pos += n_bytes(dims, type_id)
        pos += -pos % alignment
    return records, pos


@st.composite
def gguf_files(draw, hostile: bool):
    kvs = draw(st.lists(metadata_kv(hostile), max_size=5,
                        unique_by=None if hostile else (lambda kv: kv[0])))
    alignments = ALIGNMENTS_OK + (ALIGNMENTS_BAD if hostile else [])
    align_kv = draw(st.none() | st.sampled_from(alignments))
    alignment = 32
    if align_kv is not None:
        kvs.insert(draw(st.integers(0, len(kvs))), (b"general.alignment", *align_kv))
        if align_kv in ALIGNMENTS_OK:
            alignment = align_kv[1]
    records, data_size = draw(tensor_records(alignment, hostile))
    seed = draw(st.integers(0, 2**32 - 1))
    data = np.random.default_rng(seed).integers(0, 256, data_size, np.uint8).tobytes()
    if hostile:
        data = data[: max(0, data_size + draw(st.sampled_from([0, 0, -1, -alignment, 7])))]
    version = draw(u32s()) if hostile and draw(st.integers(0, 9)) == 0 else draw(
        st.sampled_from([2, 3]))
    return build(kvs, records, version=version, alignment=alignment, data=data), kvs, records


# -- the checks ---------------------------------------------------------------------------

def exercise(g: GGUFFile) -> None:
    """Everything a caller may do with a file that opened; only WorkbenchErrors allowed."""
    json.dumps(describe(g), ensure_ascii=False).encode("utf-8")
    spans = []
    for name, t in g.tensors.items():
        assert len(t.shape) in range(1, 5) and all(d > 0 for d in t.shape), t
        assert g.data_offset <= t.offset <= g.file_size, t
        if t.n_bytes is not None:
            assert t.offset + t.n_bytes <= g.file_size, t
            spans.append((t.offset, t.offset + t.n_bytes))
        ok, raw = clean(g.path, f"raw({name!r})", lambda: g.raw(name))
        if ok:
            assert raw.dtype == np.uint8 and raw.nbytes == t.n_bytes and not raw.flags.writeable
            int(raw.reshape(-1)[-1])  # the last byte is inside the map
        else:
            assert isinstance(raw, UnsupportedError) and t.n_bytes is None, raw
        ok, a = clean(g.path, f"f32({name!r})", lambda: g.f32(name))
        if ok:
            assert a.dtype == np.float32 and a.shape == t.numpy_shape
            assert t.type_name == "F32"
    spans.sort()
    assert all(a1 <= b0 for (_, a1), (b0, _) in zip(spans, spans[1:])), spans


def check(path, blob: bytes):
    """Open `blob` as a file: a GGUFFile (exercised) or the WorkbenchError it raised."""
    path.write_bytes(blob)
    ok, g = clean(path, "GGUFFile.open", lambda: GGUFFile.open(path))
    if ok:
        exercise(g)
    return g


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz_gguf") / "f.gguf"


# -- valid files round-trip ---------------------------------------------------------------

def _same_value(t, written, got):
    if t == STR:
        assert got.encode("utf-8", "surrogateescape") == written
    elif t == ARR:
        elem, items = written
        assert len(got) == len(items)
        if elem in _FMT:
            assert isinstance(got, np.ndarray) and got.dtype == (bool if elem == BOOL else
                                                                  np.dtype(_FMT[elem]))
            want = np.array(items, dtype=np.dtype(_FMT[elem])).astype(got.dtype)
            assert got.tobytes() == want.tobytes()
        else:
            for x, y in zip(items, got):
                _same_value(elem, x, y)
    elif t in (F32, F64):
        assert struct.pack(_FMT[t], got) == struct.pack(_FMT[t], written)
    elif t == BOOL:
        assert got is bool(written)
    else:
        assert got == written


@FUZZ
@given(file=gguf_files(hostile=False))
def test_valid_files_round_trip(work, file):
    blob, kvs, records = file
    keys = [k for k, _, _ in kvs]
    if len(set(keys)) < len(keys) or len({r[0] for r in records}) < len(records):
        work.write_bytes(bytes(blob.b))
        with pytest.raises(FormatError, match="duplicate"):
            GGUFFile.open(work)
        return
    g = check(work, bytes(blob.b))
    assert isinstance(g, GGUFFile), g
    for key, t, v in kvs:
        _same_value(t, v, g.metadata[key.decode("utf-8", "surrogateescape")])
    for name, dims, type_id, offset in records:
        t = g.tensors[name.decode("utf-8", "surrogateescape")]
        assert (list(t.shape), t.type_id, t.offset) == (dims, type_id, g.data_offset + offset)
        start = g.data_offset + offset
        assert g.raw(t.name).tobytes() == bytes(blob.b[start : start + n_bytes(dims, type_id)])


# -- hostile files --------------------------------------------------------------------------

MUTATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("field"), st.integers(0, 10**6), u64s()),
        st.tuples(st.just("byte"), st.integers(0, 10**6), st.integers(0, 255)),
        st.tuples(st.just("cut"), st.integers(0, 10**6), st.just(0)),
    ),
    max_size=3,
)


def mutate(blob: Blob, mutations) -> bytes:
    b = bytes(blob.b)
    for kind, where, value in mutations:
        if not b:
            break
        if kind == "field" and len(blob.fields) > 1:
            # field 0 is the version, which the strategies already vary
            pos, size = blob.fields[1 + where % (len(blob.fields) - 1)]
            b = put_int(b, pos, size, value)
        elif kind == "byte":
            i = where % len(b)
            b = b[:i] + bytes([value]) + b[i + 1 :]
        elif kind == "cut":
            b = b[: where % len(b)]
    return b


@FUZZ
@given(file=gguf_files(hostile=True), mutations=MUTATIONS)
def test_hostile_structured_files(work, file, mutations):
    blob, _, _ = file
    check(work, mutate(blob, mutations))


@FUZZ
@given(file=gguf_files(hostile=False), field=st.integers(0, 10**6), value=u64s())
def test_one_field_overwritten(work, file, field, value):
    """Each count, length, type id, dim and offset of a valid file set to an edge value."""
    blob, _, _ = file
    check(work, mutate(blob, [("field", field, value)]))


@FUZZ
@given(version=st.sampled_from([2, 3]), n_tensors=st.integers(0, 3), n_kv=st.integers(0, 3),
       tail=st.binary(min_size=16, max_size=512))
def test_random_bytes_after_the_counts(work, version, n_tensors, n_kv, tail):
    check(work, b"GGUF" + struct.pack("<IQQ", version, n_tensors, n_kv) + tail)


# -- a file written by gguf-py, truncated and mutated ------------------------------------

@pytest.fixture(scope="module")
def writer_blob(tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf_writer") / "w.gguf"
    rng = np.random.default_rng(0)
    w = GGUFWriter(str(path), "llama")
    w.add_uint32("llama.block_count", 2)
    w.add_float32("llama.rope.freq_base", 10000.0)
    w.add_bool("flag", True)
    w.add_array("tokenizer.ggml.tokens", ["<s>", "</s>", "héllo", ""])
    w.add_array("tokenizer.ggml.scores", [0.0, -1.5, 2.25, 3.0])
    w.add_string("general.name", "fuzz")
    w.add_tensor("f32", rng.standard_normal((3, 8)).astype(np.float32))
    w.add_tensor("f16", rng.standard_normal((2, 32)).astype(np.float16))
    x = rng.standard_normal((2, 64)).astype(np.float32)
    q8 = gguf_quants.quantize(x, GGMLQuantizationType.Q8_0)
    w.add_tensor("q8_0", q8, raw_dtype=GGMLQuantizationType.Q8_0)
    q4k = rng.integers(0, 256, (1, 144), np.uint8)
    w.add_tensor("q4_k", q4k, raw_dtype=GGMLQuantizationType.Q4_K)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    blob = path.read_bytes()
    g = GGUFFile.open(path)
    assert set(g.tensors) == {"f32", "f16", "q8_0", "q4_k"}
    return blob


def test_writer_file_every_prefix(work, writer_blob):
    """Every proper prefix of the gguf-py file fails cleanly, except the cuts that only
    drop zero padding after the last tensor."""
    g = GGUFFile.open(_write(work, writer_blob))
    last_end = max(t.offset + t.n_bytes for t in g.tensors.values())
    for n in range(len(writer_blob)):
        got = check(work, writer_blob[:n])
        assert isinstance(got, FormatError) or n >= last_end, n


@FUZZ
@given(data=st.data())
def test_writer_file_mutated(work, writer_blob, data):
    b = bytearray(writer_blob)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(8, len(b) - 1))  # magic and version stay
        kind = data.draw(st.sampled_from(["u64", "u32", "byte", "splice"]))
        if kind == "u64":
            b = bytearray(put_int(b, pos, 8, data.draw(u64s())))
        elif kind == "u32":
            b = bytearray(put_int(b, pos, 4, data.draw(u32s())))
        elif kind == "byte":
            b[pos] = data.draw(st.integers(0, 255))
        else:
            b[pos : pos + data.draw(st.integers(0, 16))] = data.draw(st.binary(max_size=16))
    cut = data.draw(st.none() | st.integers(0, len(b)))
    check(work, bytes(b[:cut]))


def _write(path, blob):
    path.write_bytes(blob)
    return path


# -- named hostile cases, in-process and under an address-space cap ----------------------

def _kv(key, t, v):
    return (key, t, v)


def _nested(depth: int):
    """An ARR payload: an array holding one array holding ... an empty U8 array."""
    v = (U8, [])
    for _ in range(depth - 1):
        v = (ARR, [v])
    return v


F32_8 = ("t", [8], 0, 0)


def _case(kvs=(), tensors=(), data=b"\0" * 64, **kw) -> bytes:
    tensors = [(n.encode() if isinstance(n, str) else n, d, ty, o) for n, d, ty, o in tensors]
    return bytes(build(list(kvs), tensors, data=data, **kw).b)


def _patched(blob: Blob, field: int, value: int) -> bytes:
    pos, size = blob.fields[field]
    return put_int(bytes(blob.b), pos, size, value)


HOSTILE = {
    "tensor_count_2**63": (_case(n_tensors=2**63), ["tensor count"]),
    "tensor_count_2**64-1": (_case(tensors=[F32_8], n_tensors=2**64 - 1), ["tensor count"]),
    "kv_count_huge": (_case(n_kv=2**62), ["metadata count"]),
    "kv_count_one_more": (_case([_kv(b"k", U8, 1)], n_kv=2, data=b"", alignment=1),
                          ["truncated"]),
    "key_length_past_end": (
        _patched(build([_kv(b"k", U8, 1)], []), 3, 2**63), ["truncated", "metadata key"]),
    "string_length_past_end": (
        _patched(build([_kv(b"k", STR, b"abc")], []), 5, 10**12), ["truncated", "'k'"]),
    "string_length_2**64-1": (
        _patched(build([_kv(b"k", STR, b"abc")], []), 5, 2**64 - 1), ["truncated", "'k'"]),
    "u64_array_length_huge": (
        _patched(build([_kv(b"a", ARR, (U64, [1, 2]))], []), 6, 2**61), ["truncated", "'a'"]),
    "string_array_length_huge": (
        _patched(build([_kv(b"a", ARR, (STR, [b"x"]))], []), 6, 2**63), ["truncated", "'a'"]),
    "nested_array_length_huge": (
        _patched(build([_kv(b"a", ARR, (ARR, [(U8, [])]))], []), 6, 10**15), ["truncated", "'a'"]),
    "arrays_nested_100_deep": (_case([_kv(b"deep", ARR, _nested(100))]), ["nested"]),
    "unknown_value_type": (_case([_kv(b"k", 13, b"\0" * 8)]), ["unknown value type 13"]),
    "unknown_array_element_type": (
        _case([_kv(b"k", ARR, (99, []))]), ["unknown array element type 99"]),
    "offset_outside_file": (_case(tensors=[("t", [8], 0, 2**40)]), ["past the end"]),
    "offset_2**64-32": (_case(tensors=[("t", [8], 0, 2**64 - 32)]), ["past the end"]),
    "data_runs_past_end": (_case(tensors=[("t", [64], 0, 0)]), ["runs past the end"]),
    "overlapping_tensors": (
        _case(tensors=[("a", [16], 0, 0), ("b", [8], 0, 32)], data=b"\0" * 96), ["overlap"]),
    "same_offset_tensors": (
        _case(tensors=[("a", [8], 0, 0), ("b", [8], 0, 0)]), ["overlap"]),
    "element_count_overflows_int64": (
        _case(tensors=[("t", [2**32, 2**32], 0, 0)]), ["overflows"]),
    "element_count_2**63": (
        _case(tensors=[("t", [2**62, 2], 0, 0)]), ["overflows"]),
    "dim_2**63": (_case(tensors=[("t", [2**63], 0, 0)]), ["every dimension must be positive"]),
    "five_dims": (_case(tensors=[("t", [1, 1, 1, 1, 8], 0, 0)]), ["5 dims"]),
    "zero_dims": (_case(tensors=[("t", [], 0, 0)]), ["0 dims"]),
    "n_dims_2**32-1": (
        _patched(build([], [(b"t", [8], 0, 0)]), 4, 2**32 - 1), ["4294967295 dims"]),
    "zero_dim": (_case(tensors=[("t", [8, 0], 0, 0)]), ["every dimension must be positive"]),
    "block_size_mismatch": (_case(tensors=[("t", [33], 8, 0)]), ["block size 32"]),
    "misaligned_offset": (_case(tensors=[("t", [4], 0, 4)]), ["alignment"]),
    "alignment_zero": (_case([_kv(b"general.alignment", U32, 0)]), ["general.alignment"]),
    "alignment_48": (_case([_kv(b"general.alignment", U32, 48)]), ["general.alignment"]),
    "alignment_string": (_case([_kv(b"general.alignment", STR, b"32")]), ["general.alignment"]),
    "alignment_float": (_case([_kv(b"general.alignment", F32, 32.0)]), ["general.alignment"]),
    "alignment_bool": (_case([_kv(b"general.alignment", BOOL, 1)]), ["general.alignment"]),
    "alignment_2**63_with_tensor": (
        _case([_kv(b"general.alignment", U64, 2**63)], [F32_8]), ["ends before its tensor data"]),
    "duplicate_tensor": (
        _case(tensors=[("t", [8], 0, 0), ("t", [8], 0, 32)]), ["duplicate tensor name"]),
    "version_1": (_case(version=1), ["unsupported GGUF version 1"]),
    "megabyte_key_twice": (
        _case([_kv(b"k" * 2**20, U8, 1), _kv(b"k" * 2**20, U8, 2)]), ["duplicate", "kkk..."]),
    "megabyte_tensor_name_twice": (
        _case(tensors=[("t" * 2**20, [8], 0, 0), ("t" * 2**20, [8], 0, 32)]), ["duplicate"]),
    "alignment_array_of_10000_strings": (
        _case([_kv(b"general.alignment", ARR, (STR, [b"32" * 50] * 10_000))]),
        ["general.alignment"]),
    "big_endian": (b"GGUF" + struct.pack(">IQQ", 3, 0, 0), ["big-endian"]),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_named_hostile_case(work, name):
    blob, words = HOSTILE[name]
    got = check(work, blob)
    assert isinstance(got, FormatError), (name, got)
    for w in words:
        assert w in str(got), (name, str(got)[:300])
    assert len(str(got)) < 1000, (name, len(str(got)))  # one readable line, not the file


def test_unknown_tensor_type_opens_but_raw_refuses(work):
    got = check(work, _case(tensors=[("t", [8], 1234, 0), ("u", [8], 0, 32)]))
    assert isinstance(got, GGUFFile)
    with pytest.raises(UnsupportedError, match="1234"):
        got.raw("t")
    with pytest.raises(FormatError, match="expected F32"):
        got.f32("t")
    assert got.f32("u").shape == (8,)


def test_hostile_cases_under_a_1gib_address_space_cap(tmp_path):
    """In a child capped at 1 GiB of address space (RLIMIT_AS), each named case ends in
    a WorkbenchError naming the file: no MemoryError, no crash, within the timeout."""
    paths = []
    for name, (blob, _) in sorted(HOSTILE.items()):
        paths.append(str(_write(tmp_path / f"{name}.gguf", blob)))
    script = "from workbench.formats.gguf import GGUFFile\nOPEN = GGUFFile.open\n" + LIMITED_OPEN
    for row in run_limited(script, paths):
        assert not row["ok"] and row["type"] == "FormatError", row
        assert row["path"] in row["message"], row
