"""Our GGUF reader against gguf-py's GGUFReader on the real files, and against hostile files.

Every malformed file must raise FormatError naming the file: never a crash, a hang or a
huge allocation.
"""

import json
import shutil
import struct

import numpy as np
import pytest
from gguf import GGUFReader, GGUFWriter, GGMLQuantizationType

from tests._models import gemma3_path, smollm2_path
from workbench.errors import FormatError, UnsupportedError
from workbench.formats.gguf import GGUFFile, describe, read_gguf

# -- a hand-rolled GGUF writer, so that tests can corrupt any field -------------------

U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)
_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
        BOOL: "<?", U64: "<Q", I64: "<q", F64: "<d"}


def _str(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def _val(t: int, v) -> bytes:
    if t == STR:
        return _str(v)
    if t == ARR:
        elem, items = v
        return struct.pack("<IQ", elem, len(items)) + b"".join(_val(elem, x) for x in items)
    return struct.pack(_FMT[t], v)


def _kv(key: str, t: int, v) -> bytes:
    return _str(key) + struct.pack("<I", t) + _val(t, v)


def _tensor(name: str, dims, type_id: int, offset: int) -> bytes:
    return (_str(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
            + struct.pack("<IQ", type_id, offset))


def _gguf(kvs=(), tensors=(), data=b"", version=3, magic=b"GGUF", alignment=32) -> bytes:
    head = magic + struct.pack("<IQQ", version, len(tensors), len(kvs)) + b"".join(kvs)
    head += b"".join(tensors)
    head += b"\0" * (-len(head) % alignment)
    return head + data


def _valid_parts():
    """Metadata of every value type (nested arrays too) and two F32 tensors."""
    kvs = [
        _kv("general.architecture", STR, "llama"),
        _kv("u8", U8, 200), _kv("i8", I8, -5), _kv("u16", U16, 60000), _kv("i16", I16, -300),
        _kv("u32", U32, 4_000_000_000), _kv("i32", I32, -7), _kv("f32", F32, 0.5),
        _kv("bool", BOOL, True), _kv("u64", U64, 2**40), _kv("i64", I64, -(2**40)),
        _kv("f64", F64, 0.25), _kv("str", STR, "héllo"),
        _kv("arr.f32", ARR, (F32, [1.0, 2.0, 3.5])),
        _kv("arr.str", ARR, (STR, ["a", "bc", ""])),
        _kv("arr.nested", ARR, (ARR, [(I32, [1, 2]), (I32, [3])])),
        _kv("arr.empty", ARR, (U8, [])),
    ]
    a = np.arange(8, dtype=np.float32)
    b = np.arange(6, dtype=np.float32).reshape(2, 3) * 10
    tensors = [_tensor("a", [8], 0, 0), _tensor("b", [3, 2], 0, 32)]
    data = a.tobytes() + b.tobytes()  # a fills exactly one 32-byte aligned slot
    return kvs, tensors, data


def _write(tmp_path, blob: bytes, name="model.gguf"):
    p = tmp_path / name
    p.write_bytes(blob)
    return p


def _fails(path, *words, error=FormatError):
    with pytest.raises(error) as e:
        GGUFFile.open(path)
    msg = str(e.value)
    assert str(path) in msg, msg
    for w in words:
        assert w in msg, msg
    return msg


# -- the hand-made file, parsed by us and by gguf-py ----------------------------------

def test_every_value_type_and_tensor_view(tmp_path):
    kvs, tensors, data = _valid_parts()
    path = _write(tmp_path, _gguf(kvs, tensors, data))
    g = GGUFFile.open(path)
    m = g.metadata
    ints = [m[k] for k in ("u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64")]
    assert ints == [200, -5, 60000, -300, 4_000_000_000, -7, 2**40, -(2**40)]
    assert (m["f32"], m["f64"], m["bool"], m["str"]) == (0.5, 0.25, True, "héllo")
    assert m["arr.f32"].dtype == np.float32 and m["arr.f32"].tolist() == [1.0, 2.0, 3.5]
    assert m["arr.str"] == ["a", "bc", ""]
    assert [x.tolist() for x in m["arr.nested"]] == [[1, 2], [3]]
    assert m["arr.empty"].size == 0
    assert g.metadata_types["arr.nested"] == "ARRAY[ARRAY]" and g.metadata_types["u8"] == "UINT8"

    reader = GGUFReader(path)
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        ours = m[key]
        if key == "arr.nested":  # gguf-py does not decode nested arrays
            continue
        theirs = field.contents()
        ours = ours.tolist() if isinstance(ours, np.ndarray) else ours
        assert ours == pytest.approx(theirs) if isinstance(theirs, float) else ours == theirs, key

    a, b = g.tensors["a"], g.tensors["b"]
    assert (a.shape, a.n_bytes, a.n_elements, a.type_name) == ((8,), 32, 8, "F32")
    assert b.shape == (3, 2) and b.numpy_shape == (2, 3) and b.offset == g.data_offset + 32
    assert np.array_equal(g.f32("b"), np.arange(6, dtype=np.float32).reshape(2, 3) * 10)
    raw = g.raw("b")
    assert raw.shape == (2, 12) and raw.dtype == np.uint8 and not raw.flags.writeable
    assert list(g.tensors) == ["a", "b"]
    assert read_gguf(path).tensors == g.tensors


def test_metadata_get(tmp_path):
    kvs, tensors, data = _valid_parts()
    path = _write(tmp_path, _gguf(kvs, tensors, data))
    g = GGUFFile.open(path)
    assert g.get("u8") == 200 and g.get("missing", 7) == 7 and g.get("missing", None) is None
    with pytest.raises(FormatError, match="lacks metadata key llama.block_count") as e:
        g.get("llama.block_count")
    assert str(path) in str(e.value)
    with pytest.raises(FormatError, match="no tensor 'nope'"):
        g.raw("nope")


def test_unknown_tensor_type_parses_but_raw_refuses(tmp_path):
    path = _write(tmp_path, _gguf([], [_tensor("odd", [32], 1234, 0)], b"\0" * 64))
    g = GGUFFile.open(path)
    t = g.tensors["odd"]
    assert t.type_id == 1234 and t.n_bytes is None and "1234" in t.type_name
    assert describe(g)["tensors"][0]["bytes"] is None
    with pytest.raises(UnsupportedError, match="odd") as e:
        g.raw("odd")
    assert "1234" in str(e.value)


def test_f32_refuses_other_types(tmp_path):
    data = b"\0" * 34
    path = _write(tmp_path, _gguf([], [_tensor("q", [32], int(GGMLQuantizationType.Q8_0), 0)], data))
    g = GGUFFile.open(path)
    assert g.raw("q").shape == (1, 34)
    with pytest.raises(FormatError, match="Q8_0, expected F32"):
        g.f32("q")


def test_gguf_writer_file_with_custom_alignment(tmp_path):
    path = tmp_path / "w.gguf"
    w = GGUFWriter(str(path), "llama")
    w.add_custom_alignment(64)
    w.add_tensor("x", np.arange(24, dtype=np.float32).reshape(4, 6))
    w.add_tensor("y", np.ones(5, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    g = GGUFFile.open(path)
    assert g.alignment == 64 and g.data_offset % 64 == 0
    assert all((t.offset - g.data_offset) % 64 == 0 for t in g.tensors.values())
    assert np.array_equal(g.f32("x"), np.arange(24, dtype=np.float32).reshape(4, 6))
    assert np.array_equal(g.f32("y"), np.ones(5, dtype=np.float32))


# -- hostile files --------------------------------------------------------------------

def test_not_a_file(tmp_path):
    _fails(tmp_path / "missing.gguf", "cannot open")
    _fails(tmp_path, "directory")


@pytest.mark.parametrize("blob", [b"", b"GG", b"GGU"])
def test_tiny_files(tmp_path, blob):
    _fails(_write(tmp_path, blob), "not a GGUF")


def test_bad_magic(tmp_path):
    _fails(_write(tmp_path, _gguf(magic=b"GGML")), "not a GGUF", "GGML")
    _fails(_write(tmp_path, b"PK\x03\x04" + b"\0" * 100), "not a GGUF")


@pytest.mark.parametrize("version", [0, 1, 4, 0xFFFFFFFF])
def test_unsupported_version(tmp_path, version):
    _fails(_write(tmp_path, _gguf(version=version)), "unsupported GGUF version", str(version))


def test_big_endian(tmp_path):
    blob = b"GGUF" + struct.pack(">IQQ", 3, 0, 0)
    _fails(_write(tmp_path, blob), "big-endian")


def test_huge_counts(tmp_path):
    _fails(_write(tmp_path, b"GGUF" + struct.pack("<IQQ", 3, 0, 2**63)), "metadata count")
    _fails(_write(tmp_path, b"GGUF" + struct.pack("<IQQ", 3, 2**40, 0)), "tensor count")


def test_huge_string_length(tmp_path):
    kv = struct.pack("<Q", 2**62) + b"key"
    _fails(_write(tmp_path, _gguf([kv])), "truncated")
    kv = _str("k") + struct.pack("<IQ", STR, 2**64 - 1)
    _fails(_write(tmp_path, _gguf([kv])), "truncated", "'k'")


def test_huge_array_count(tmp_path):
    kv = _str("tokens") + struct.pack("<IIQ", ARR, STR, 2**61)
    _fails(_write(tmp_path, _gguf([kv]) + b"\0" * 1000), "truncated", "'tokens'")
    kv = _str("scores") + struct.pack("<IIQ", ARR, F32, 10**12)
    _fails(_write(tmp_path, _gguf([kv]) + b"\0" * 1000), "truncated", "'scores'")
    kv = _str("nested") + struct.pack("<IIQ", ARR, ARR, 10**9)
    _fails(_write(tmp_path, _gguf([kv]) + b"\0" * 1000), "truncated", "'nested'")


def test_deeply_nested_arrays(tmp_path):
    kv = _str("deep") + struct.pack("<I", ARR) + struct.pack("<IQ", ARR, 1) * 50 + struct.pack("<IQ", U8, 0)
    _fails(_write(tmp_path, _gguf([kv])), "nested")


def test_unknown_value_types(tmp_path):
    _fails(_write(tmp_path, _gguf([_str("k") + struct.pack("<I", 13) + b"\0" * 8])),
           "unknown value type 13", "'k'")
    _fails(_write(tmp_path, _gguf([_str("k") + struct.pack("<IIQ", ARR, 99, 1) + b"\0" * 8])),
           "unknown array element type 99")


def test_duplicate_key(tmp_path):
    _fails(_write(tmp_path, _gguf([_kv("a", U8, 1), _kv("a", U8, 2)])), "duplicate metadata key 'a'")


@pytest.mark.parametrize("alignment", [0, 3, 48])
def test_bad_alignment(tmp_path, alignment):
    blob = _gguf([_kv("general.alignment", U32, alignment)])
    _fails(_write(tmp_path, blob), "general.alignment")


def test_alignment_of_wrong_type(tmp_path):
    _fails(_write(tmp_path, _gguf([_kv("general.alignment", STR, "32")])), "general.alignment")


@pytest.mark.parametrize("dims, words", [
    ([1, 1, 1, 1, 1], ["5 dims"]),
    ([], ["0 dims"]),
    ([32, 0], ["every dimension must be positive"]),
    ([32, 2**64 - 1], ["every dimension must be positive", "-1"]),
    ([2**32, 2**32], ["overflows"]),
    ([2**40], ["past the end"]),
])
def test_bad_dims(tmp_path, dims, words):
    blob = _gguf([], [_tensor("t", dims, 0, 0)], b"\0" * 128)
    _fails(_write(tmp_path, blob), "'t'", *words)


def test_block_size_mismatch(tmp_path):
    blob = _gguf([], [_tensor("q", [33], int(GGMLQuantizationType.Q8_0), 0)], b"\0" * 128)
    _fails(_write(tmp_path, blob), "'q'", "block size 32", "33")


def test_tensor_data_outside_file(tmp_path):
    blob = _gguf([], [_tensor("t", [8], 0, 2**40)], b"\0" * 32)
    _fails(_write(tmp_path, blob), "'t'", "past the end")
    blob = _gguf([], [_tensor("t", [16], 0, 0)], b"\0" * 32)  # 64 bytes needed
    _fails(_write(tmp_path, blob), "'t'", "runs past the end")


def test_misaligned_offset(tmp_path):
    blob = _gguf([], [_tensor("t", [4], 0, 4)], b"\0" * 64)
    _fails(_write(tmp_path, blob), "'t'", "alignment")


def test_duplicate_and_overlapping_tensors(tmp_path):
    blob = _gguf([], [_tensor("t", [8], 0, 0), _tensor("t", [8], 0, 32)], b"\0" * 64)
    _fails(_write(tmp_path, blob), "duplicate tensor name 't'")
    blob = _gguf([], [_tensor("a", [16], 0, 0), _tensor("b", [8], 0, 32)], b"\0" * 96)
    _fails(_write(tmp_path, blob), "'a'", "'b'", "overlap")


def test_every_truncation_of_a_small_file(tmp_path):
    kvs, tensors, data = _valid_parts()
    blob = _gguf(kvs, tensors, data)
    path = tmp_path / "cut.gguf"
    for n in range(len(blob)):
        path.write_bytes(blob[:n])
        _fails(path)


# -- the real files -------------------------------------------------------------------

@pytest.fixture(scope="module")
def smollm2():
    return GGUFFile.open(smollm2_path())


@pytest.fixture(scope="module")
def smollm2_reader():
    return GGUFReader(smollm2_path())


def _same_metadata(ours: GGUFFile, reader: GGUFReader):
    keys = [k for k in reader.fields if not k.startswith("GGUF.")]
    assert keys == list(ours.metadata)
    for key in keys:
        theirs = reader.fields[key].contents()
        mine = ours.metadata[key]
        if isinstance(mine, np.ndarray):
            assert np.array_equal(mine, np.asarray(theirs, dtype=mine.dtype)), key
        else:
            assert mine == theirs, key


def _same_tensors(ours: GGUFFile, reader: GGUFReader, compare_bytes=True):
    assert [t.name for t in reader.tensors] == list(ours.tensors)
    for t in reader.tensors:
        mine = ours.tensors[t.name]
        assert mine.offset == t.data_offset, t.name
        assert mine.shape == tuple(int(d) for d in t.shape), t.name
        assert mine.type_id == int(t.tensor_type) and mine.type_name == t.tensor_type.name
        assert mine.n_bytes == t.n_bytes and mine.n_elements == t.n_elements, t.name
        if compare_bytes:
            raw = ours.raw(t.name)
            assert raw.shape[0] == t.n_elements // t.shape[0]
            assert np.array_equal(raw.reshape(-1), np.asarray(t.data).reshape(-1).view(np.uint8)), t.name


def test_smollm2_matches_gguf_reader(smollm2, smollm2_reader):
    assert smollm2.version == 3 and smollm2.alignment == 32
    _same_metadata(smollm2, smollm2_reader)
    _same_tensors(smollm2, smollm2_reader)


def test_smollm2_views(smollm2, smollm2_reader):
    emb = smollm2.tensors["token_embd.weight"]
    assert emb.type_name == "Q8_0" and emb.shape == (576, 49152)
    assert smollm2.raw("token_embd.weight").shape == (49152, 576 // 32 * 34)
    norm = smollm2.f32("blk.0.attn_norm.weight")
    ref = next(t for t in smollm2_reader.tensors if t.name == "blk.0.attn_norm.weight")
    assert norm.shape == (576,) and np.array_equal(norm, ref.data)
    assert not norm.flags.writeable


def test_describe_smollm2(smollm2):
    d = describe(smollm2)
    json.dumps(d)  # JSON-serializable for `inspect --json`
    assert d["format"] == "gguf" and d["n_tensors"] == 272
    assert d["metadata"]["llama.block_count"] == 30
    assert d["metadata"]["tokenizer.ggml.tokens"]["length"] == 49152
    assert d["metadata"]["tokenizer.ggml.tokens"]["head"][:2] == ["<|endoftext|>", "<|im_start|>"]
    assert d["tensors"][0] == {"name": "token_embd.weight", "type": "Q8_0", "shape": [576, 49152],
                               "bytes": 30081024, "offset": smollm2.tensors["token_embd.weight"].offset}
    assert d["tensor_types"]["Q4_1"]["tensors"] > 0
    assert sum(r["bytes"] for r in d["tensor_types"].values()) == sum(t["bytes"] for t in d["tensors"])


def test_gemma3_parses():
    g = GGUFFile.open(gemma3_path())
    assert g.get("general.architecture") == "gemma3" and len(g.tensors) == 236
    assert {t.type_name for t in g.tensors.values()} == {"F32", "Q8_0", "Q5_0", "Q4_K", "Q6_K"}
    assert len(g.get("tokenizer.ggml.tokens")) == 262144
    assert g.get("tokenizer.ggml.scores").dtype == np.float32
    spans = sorted((t.offset, t.n_bytes) for t in g.tensors.values())
    assert spans[0][0] == g.data_offset
    assert spans[-1][0] + spans[-1][1] <= g.file_size
    for (a, n), (b, _) in zip(spans, spans[1:]):
        assert a + n <= b and b - (a + n) < g.alignment  # packed, only alignment padding
    assert g.f32("output_norm.weight").shape == (640,)


@pytest.mark.slow
def test_gemma3_matches_gguf_reader():
    g = GGUFFile.open(gemma3_path())
    reader = GGUFReader(gemma3_path())  # ~30 s: gguf-py walks 262k token strings
    _same_metadata(g, reader)
    _same_tensors(g, reader)


@pytest.fixture(scope="module")
def smollm2_head(tmp_path_factory, smollm2):
    """The first 2 MB of the real SmolLM2 file: its whole header and the start of its data."""
    with open(smollm2.path, "rb") as f:
        blob = f.read(smollm2.data_offset + 2_000_000)
    return blob


def test_real_header_truncated(tmp_path, smollm2, smollm2_head):
    tokens_at = smollm2_head.find(b"tokenizer.ggml.tokens")
    merges_at = smollm2_head.find(b"tokenizer.ggml.merges")
    table_at = smollm2_head.find(b"token_embd.weight")  # first tensor record
    cuts = [0, 3, 10, 23, 100, 1000, tokens_at + 30, tokens_at + 100_000, merges_at + 50,
            merges_at + 500_000, table_at - 1, table_at + 20, smollm2.data_offset - 1,
            smollm2.data_offset, smollm2.data_offset + 1000]
    path = tmp_path / "cut.gguf"
    for n in cuts:
        path.write_bytes(smollm2_head[:n])
        _fails(path)


def test_real_file_missing_its_last_byte(tmp_path, smollm2):
    path = tmp_path / "short.gguf"
    shutil.copyfile(smollm2.path, path)
    with open(path, "r+b") as f:
        f.truncate(smollm2.file_size - 1)
    _fails(path, "runs past the end")


def test_invalid_utf8_survives_and_describe_stays_printable(tmp_path):
    tensor = _str(b"bad\xffname") + struct.pack("<I", 1) + struct.pack("<Q", 8) + struct.pack("<IQ", 0, 0)
    blob = _gguf([_kv("k", STR, b"v\xfe")], [tensor], b"\0" * 32)
    g = GGUFFile.open(_write(tmp_path, blob))
    name = next(iter(g.tensors))
    assert name.encode("utf-8", "surrogateescape") == b"bad\xffname"
    assert g.metadata["k"].encode("utf-8", "surrogateescape") == b"v\xfe"
    json.dumps(describe(g), ensure_ascii=False).encode("utf-8")
