"""workbench.convert: requantized GGUF files and HF F32 directories, and cached variants.

Fast tests run on a tiny llama GGUF written here (F32, F16, Q8_0 and Q4_1 tensors, one
row length of 80 that Q8_0/Q4_0 cannot hold, an untied lm_head, a GPT-2 style tokenizer,
a metadata string that is not UTF-8). The slow tests convert the two real models once
per session (a session fixture shares each conversion) and check:
- every GGUF tensor is the reference encoding of the source values (`quantize_ref` of
  `dequantize_ref`), the metadata is the source's but for general.file_type, and
  `workbench.load` generates from the file;
- an HF directory read back by `HFDirectory` serves, under every GGUF name, exactly
  `dequantize_ref` of the source tensor, its config gives the same `ModelConfig`, and it
  generates the same greedy tokens (and the same logits) as the F32 GGUF.
"""

import json
import os
from dataclasses import replace

import gguf
import numpy as np
import pytest

import workbench
from tests._models import gemma3_path, smollm2_path
from workbench.convert import (CONVERTER_VERSION, TARGETS, ConvertError, convert, convert_report, derived,
                               derived_path, variants)
from workbench.convert import cache as convert_cache
from workbench.convert import gguf_out, hf_out
from workbench.errors import ParameterError, UnsupportedError, WorkbenchError
from workbench.formats.catalog import ModelNotFoundError
from workbench.formats.gguf import GGUFFile
from workbench.formats.hf import HFDirectory
from workbench.formats.token_bytes import byte_decoder
from workbench.models.config import ModelConfig
from workbench.quant.reference import dequantize_ref, quantize_ref

GGUF_TARGETS = [t for t in TARGETS if t.startswith("gguf-")]
PROMPTS = ["The capital of France is", "Once upon a time, in a small village by the sea,"]


# -- a tiny llama GGUF ---------------------------------------------------------------

D, FF, HEADS, KV_HEADS, LAYERS = 64, 80, 4, 2, 2


def write_tiny_llama(path):
    rng = np.random.default_rng(0)
    tokens = sorted(byte_decoder(), key=byte_decoder().get) + ["Ġt", "he", "<|endoftext|>"]
    types = [1] * (len(tokens) - 1) + [3]
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_key_value("general.name", b"tiny caf\xe9", gguf.GGUFValueType.STRING)  # not UTF-8
    for key, value in [("block_count", LAYERS), ("context_length", 256), ("embedding_length", D),
                       ("feed_forward_length", FF), ("attention.head_count", HEADS),
                       ("attention.head_count_kv", KV_HEADS), ("vocab_size", len(tokens))]:
        w.add_uint32(f"llama.{key}", value)
    w.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
    w.add_float32("llama.rope.freq_base", 10000.0)
    w.add_uint32("general.file_type", 0)
    w.add_string("tokenizer.ggml.model", "gpt2")
    w.add_string("tokenizer.ggml.pre", "gpt-2")
    w.add_array("tokenizer.ggml.tokens", tokens)
    w.add_array("tokenizer.ggml.token_type", types)
    w.add_array("tokenizer.ggml.merges", ["Ġ t", "h e"])
    w.add_array("tokenizer.ggml.scores", [0.5] * 3)  # float array (unused by gpt2 vocabularies)
    w.add_array("workbench.flags", [True, False])  # bool array
    w.add_uint32("tokenizer.ggml.eos_token_id", len(tokens) - 1)
    w.add_bool("tokenizer.ggml.add_bos_token", False)

    def f32(*shape):
        return (rng.standard_normal(shape) * 0.1).astype(np.float32)

    def quant(fmt, x):
        return quantize_ref(fmt, x), gguf.GGMLQuantizationType[fmt.upper()]

    raw, ty = quant("q8_0", f32(len(tokens), D))
    w.add_tensor("token_embd.weight", raw, raw_dtype=ty)
    for i in range(LAYERS):
        b = f"blk.{i}."
        w.add_tensor(b + "attn_norm.weight", 1 + f32(D))
        w.add_tensor(b + "attn_q.weight", f32(D, D))
        w.add_tensor(b + "attn_k.weight", f32(KV_HEADS * D // HEADS, D).astype(np.float16))
        raw, ty = quant("q4_1", f32(KV_HEADS * D // HEADS, D))
        w.add_tensor(b + "attn_v.weight", raw, raw_dtype=ty)
        raw, ty = quant("q8_0", f32(D, D))
        w.add_tensor(b + "attn_output.weight", raw, raw_dtype=ty)
        w.add_tensor(b + "ffn_norm.weight", 1 + f32(D))
        w.add_tensor(b + "ffn_gate.weight", f32(FF, D))
        w.add_tensor(b + "ffn_up.weight", f32(FF, D))
        w.add_tensor(b + "ffn_down.weight", f32(D, FF))  # rows of 80: no Q8_0 / Q4_0
    w.add_tensor("output_norm.weight", 1 + f32(D))
    w.add_tensor("output.weight", f32(len(tokens), D))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny.gguf")


def expected_format(info, fmt):
    if len(info.shape) == 1:
        return "f32"
    return "f16" if info.shape[0] % 32 and fmt in ("q8_0", "q4_0") else fmt


def check_gguf(src_path, out_path, fmt, names=None):
    """`out_path` holds the source's metadata (but general.file_type) and every tensor (or
    `names`) as the reference encoding of the source's values."""
    src, out = GGUFFile.open(src_path), GGUFFile.open(out_path)
    added = {"general.file_type": "UINT32"}
    if fmt in ("q8_0", "q4_0"):
        added["general.quantization_version"] = "UINT32"
    assert out.metadata_types == src.metadata_types | added
    for key, value in src.metadata.items():
        if key not in added:
            assert np.array_equal(out.metadata[key], value) if isinstance(value, np.ndarray) \
                else out.metadata[key] == value, key
    assert out.metadata["general.file_type"] == {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 7}[fmt]
    assert list(out.tensors) == list(src.tensors)
    for name in names or src.tensors:
        a, b = src.tensors[name], out.tensors[name]
        to = expected_format(a, fmt)
        assert (b.type_name.lower(), b.shape) == (to, a.shape), name
        if a.type_name.lower() == to:
            want = src.raw(name)
        else:
            want = quantize_ref(to, dequantize_ref(a.type_name.lower(), src.raw(name)))
        assert np.array_equal(out.raw(name), want), name


def check_hf(src_path, out_dir):
    """HFDirectory serves each GGUF tensor as exactly the source's dequantized values, and
    config.json gives the source's ModelConfig (eps up to its float32 value; the GELU
    arithmetic follows each format's reference on purpose: `ModelConfig.gelu_table`)."""
    src, hf = GGUFFile.open(src_path), HFDirectory.open(out_dir)
    assert hf.names == frozenset(src.tensors)
    for name, info in src.tensors.items():
        t = hf.tensor(name)
        want = dequantize_ref(info.type_name.lower(), src.raw(name)).reshape(info.numpy_shape)
        assert t.fmt == "f32" and t.shape == want.shape, name
        assert np.array_equal(t.f32().view(np.uint32), want.view(np.uint32)), name
    from_hf = ModelConfig.from_hf(hf.config, str(out_dir), "output.weight" in hf.names)
    from_gguf = ModelConfig.from_gguf(src)
    assert replace(from_hf, norm_eps=float(np.float32(from_hf.norm_eps)), gelu_table=from_gguf.gelu_table) == from_gguf


# -- fast tests on the tiny model ---------------------------------------------------------


@pytest.mark.parametrize("to", GGUF_TARGETS)
def test_gguf_targets(tiny, tmp_path, to):
    fmt = to.removeprefix("gguf-")
    report = convert_report(tiny, tmp_path / "out.gguf", to, progress=False)
    check_gguf(tiny, report.path, fmt)
    if fmt in ("q8_0", "q4_0"):
        assert report.fallback == {f"blk.{i}.ffn_down.weight": "f16" for i in range(LAYERS)}
    else:
        assert report.fallback == {}
    assert sum(report.formats.values()) == len(GGUFFile.open(tiny).tensors)
    assert report.bytes_written == report.path.stat().st_size
    assert os.listdir(tmp_path) == ["out.gguf"]


def test_hf_target(tiny, tmp_path):
    out = convert(tiny, tmp_path / "hf", "hf-f32", progress=False)
    check_hf(tiny, out)
    assert sorted(os.listdir(out)) == [".workbench-converted", "config.json", "generation_config.json",
                                       "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "llama" and config["tie_word_embeddings"] is False
    assert config["rms_norm_eps"] == 1e-05 and config["rope_parameters"]["rope_theta"] == 10000.0
    gen = json.loads((out / "generation_config.json").read_text())
    eos = len(GGUFFile.open(tiny).metadata["tokenizer.ggml.tokens"]) - 1
    assert gen["eos_token_id"] == config["eos_token_id"] == eos
    assert os.listdir(tmp_path) == ["hf"]


@pytest.mark.parametrize("to", ["gguf-q4_0", "hf-f32"])
@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_interrupted_conversion_leaves_nothing(tiny, tmp_path, monkeypatch, to, error):
    module = hf_out if to == "hf-f32" else gguf_out
    calls = []

    def failing(fmt, raw):
        calls.append(fmt)
        if len(calls) == 5:
            raise error("interrupted")
        return dequantize_ref(fmt, raw)

    monkeypatch.setattr(module, "dequantize_ref", failing)
    with pytest.raises(error, match="interrupted"):
        convert(tiny, tmp_path / "out", to, progress=False)
    assert os.listdir(tmp_path) == []


def test_interrupted_overwrite_keeps_the_old_output(tiny, tmp_path, monkeypatch):
    out = convert(tiny, tmp_path / "hf", "hf-f32", progress=False)
    before = (out / "model.safetensors").read_bytes()
    monkeypatch.setattr(hf_out, "save_file", lambda *a, **k: (_ for _ in ()).throw(OSError(28, "No space left")))
    with pytest.raises(ConvertError, match="No space left"):
        convert(tiny, out, "hf-f32", progress=False, overwrite=True)
    assert os.listdir(tmp_path) == ["hf"] and (out / "model.safetensors").read_bytes() == before


def test_bad_inputs(tiny, tmp_path):
    with pytest.raises(ParameterError, match=r"unknown conversion target 'gguf-q4'.*did you mean gguf-q4_0"):
        convert(tiny, tmp_path / "x.gguf", "gguf-q4")
    with pytest.raises(ModelNotFoundError, match="no-such.gguf"):
        convert(tmp_path / "no-such.gguf", tmp_path / "x.gguf", "gguf-q8_0")
    (tmp_path / "exists.gguf").write_bytes(b"old")
    with pytest.raises(ParameterError, match="exists.gguf already exists; pass overwrite=True"):
        convert(tiny, tmp_path / "exists.gguf", "gguf-q8_0")
    assert (tmp_path / "exists.gguf").read_bytes() == b"old"
    assert convert(tiny, tmp_path / "exists.gguf", "gguf-q8_0", progress=False, overwrite=True).stat().st_size > 3
    with pytest.raises(ParameterError, match="is the source of the conversion"):
        convert(tiny, tiny, "gguf-f32", overwrite=True)
    hf = convert(tiny, tmp_path / "hf", "hf-f32", progress=False)
    with pytest.raises(UnsupportedError, match="is an HF directory"):
        convert(hf, tmp_path / "y.gguf", "gguf-f32")
    with pytest.raises(ModelNotFoundError, match=r"derived model smollm2-135m:q4 is unknown.*"
                                                 r"did you mean smollm2-135m:q4_0"):
        derived("smollm2-135m", "q4")
    with pytest.raises(ModelNotFoundError, match=r"catalog name \(smollm2-135m, gemma3-270m\) and a variant "
                                                 r"\(q8_0, q4_0, f16, f32, hf-f32\)"):
        derived("tinyllama", "q8_0")
    for cls in (ParameterError, UnsupportedError, ModelNotFoundError, ConvertError):
        assert issubclass(cls, WorkbenchError)


def test_variants():
    assert len(variants()) == 10 and variants()[:2] == ["smollm2-135m:q8_0", "smollm2-135m:q4_0"]
    assert "gemma3-270m:hf-f32" in variants()


def test_derived_is_verified_on_reuse(tiny, tmp_path, monkeypatch):
    """Cached variants are reused only while size and sha256 match the sidecar (tiny source)."""
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(convert_cache, "resolve", lambda name: tiny)
    made = []
    real = convert_cache.convert_report
    monkeypatch.setattr(convert_cache, "convert_report", lambda *a, **k: made.append(a[2]) or real(*a, **k))

    path = derived("SmolLM2-135M", "Q8_0", progress=False)
    assert path == derived_path("smollm2-135m", "q8_0") == tmp_path / "derived" / "smollm2-135m-q8_0.gguf"
    sidecar = json.loads(path.with_name(path.name + ".json").read_text())
    assert sidecar["converter_version"] == CONVERTER_VERSION and sidecar["source"]["path"] == str(tiny)
    assert sidecar["files"] == {path.name: {"size": path.stat().st_size, "sha256": convert_cache.sha256(path)}}
    assert sidecar["fallback"] == {"blk.0.ffn_down.weight": "f16", "blk.1.ffn_down.weight": "f16"}
    good = path.read_bytes()
    assert derived("smollm2-135m", "q8_0") == path and made == ["gguf-q8_0"]  # reused

    data = bytearray(good)
    data[len(data) // 2] ^= 0x01  # one flipped bit: same size, other checksum
    path.write_bytes(bytes(data))
    assert derived("smollm2-135m", "q8_0", progress=False).read_bytes() == good and len(made) == 2
    path.write_bytes(good[:-1])  # truncated
    assert derived("smollm2-135m", "q8_0", progress=False).read_bytes() == good and len(made) == 3
    os.utime(tiny, ns=(tiny.stat().st_atime_ns, tiny.stat().st_mtime_ns + 1))  # the source changed
    assert derived("smollm2-135m", "q8_0", progress=False).read_bytes() == good and len(made) == 4
    path.with_name(path.name + ".json").write_text("{not json")
    derived("smollm2-135m", "q8_0", progress=False)
    assert len(made) == 5

    hf = derived("smollm2-135m", "hf-f32", progress=False)
    assert hf == tmp_path / "derived" / "smollm2-135m-hf-f32" and hf.is_dir()
    (hf / "config.json").write_text((hf / "config.json").read_text().replace("64", "65"))
    assert derived("smollm2-135m", "hf-f32", progress=False) == hf and made[-2:] == ["hf-f32", "hf-f32"]
    check_hf(tiny, hf)
    leftovers = [p.name for p in (tmp_path / "derived").iterdir() if ".partial" in p.name or ".old" in p.name]
    assert leftovers == []


# -- slow tests on the real models ---------------------------------------------------------

MODELS = {"smollm2-135m": smollm2_path, "gemma3-270m": gemma3_path}


@pytest.fixture(scope="session")
def converted(tmp_path_factory):
    """converted(model, to) -> path, each conversion made once per session."""
    import shutil

    root = tmp_path_factory.mktemp("converted")
    made = {}

    def get(model, to):
        if (model, to) not in made:
            src = MODELS[model]()
            made[model, to] = convert(src, root / f"{model}-{to}{'.gguf' if to.startswith('gguf') else ''}", to,
                                      progress=False)
        return made[model, to]

    yield get
    shutil.rmtree(root, ignore_errors=True)  # ~5 GB: not kept for pytest's last-3-runs history


@pytest.mark.slow
@pytest.mark.parametrize("to", GGUF_TARGETS)
@pytest.mark.parametrize("model", MODELS)
def test_real_gguf_conversion(converted, model, to):
    src, out = MODELS[model](), converted(model, to)
    first = [n for n in GGUFFile.open(src).tensors if not n.startswith("blk.") or n.startswith(("blk.0.", "blk.5."))]
    check_gguf(src, out, to.removeprefix("gguf-"), names=first)
    if to == "gguf-f32" or (model == "gemma3-270m" and to == "gguf-f16"):
        return  # F32 files run in the HF test below; Gemma's F16 uses SmolLM2's F16 kernels
    m = workbench.load(out, n_ctx=64)
    gen = m.generate(PROMPTS[0], max_tokens=6)
    assert len(gen.tokens) == 6 and gen.text.strip(), gen.text


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_real_hf_roundtrip(converted, model):
    out = converted(model, "hf-f32")
    check_hf(MODELS[model](), out)
    config = json.loads((out / "config.json").read_text())
    if model == "gemma3-270m":
        assert config["model_type"] == "gemma3_text" and config["query_pre_attn_scalar"] == 256
        assert config["rope_theta"] == 1e6 and config["rope_local_base_freq"] == 10000.0
        assert config["rope_parameters"]["sliding_attention"]["rope_theta"] == 10000.0
        assert config["layer_types"][5] == "full_attention" and config["sliding_window"] == 512
        assert config["final_logit_softcapping"] is None and config["tie_word_embeddings"] is True
        assert "<start_of_turn>" in json.loads((out / "tokenizer_config.json").read_text())["chat_template"]
    else:
        assert config["model_type"] == "llama" and config["tie_word_embeddings"] is True
    assert "lm_head.weight" not in HFDirectory.open(out).shards["model.safetensors"].tensors


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_real_hf_generates_like_the_f32_gguf(converted, model):
    hf_dir, f32 = converted(model, "hf-f32"), converted(model, "gguf-f32")
    a, b = workbench.load(hf_dir, n_ctx=128), workbench.load(f32, n_ctx=128)
    # the one intended difference: an HF directory's GELU is transformers' exact one, a
    # GGUF's goes through llama.cpp's half table: give both the same to compare the rest
    if "gelu_table" in b.net._weights:  # the flag the compiled step reads
        a.net._weights["gelu_table"] = b.net._weights["gelu_table"]
    assert replace(a.config, gelu_table=b.config.gelu_table) == b.config or \
        replace(a.config, norm_eps=b.config.norm_eps, gelu_table=b.config.gelu_table) == b.config
    for prompt in PROMPTS:
        ids = b.encode_prompt(prompt)
        assert a.encode_prompt(prompt) == ids
        a.reset(), b.reset()
        assert np.array_equal(a.forward(ids), b.forward(ids)), prompt  # same weights, same arithmetic
    assert a.generate(PROMPTS[0], max_tokens=8).tokens == b.generate(PROMPTS[0], max_tokens=8).tokens
    assert a.tokenizer.stop_ids == b.tokenizer.stop_ids


@pytest.mark.slow
def test_real_derived_variant_is_remade_when_corrupted(tmp_path, monkeypatch):
    smollm2_path()  # skip without the package
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path))
    path = derived("smollm2-135m", "q4_0", progress=False)
    good = convert_cache.sha256(path)
    with open(path, "r+b") as f:
        f.seek(path.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert convert_cache.sha256(path) != good
    assert workbench.load("smollm2-135m:q4_0", n_ctx=32).path == path
    assert convert_cache.sha256(path) == good
