"""Runtime controls: weight options, profiles, fusion and thread count (issue 4).

The quantization rule and the load report's counts are checked against layer shapes
worked out by hand from the model's config; fusion and profiles against greedy tokens.
"""

from collections import Counter

import numpy as np
import pytest

import workbench
from workbench.engine.options import PROFILES, resolve_options
from workbench.errors import ParameterError
from workbench.kernels.jit import max_threads
from workbench.nn.options import WeightOptions

from tests._models import smollm2_path

PROMPT = "The three most important ideas in computer science are"


@pytest.mark.parametrize("bad", [
    dict(quant_threshold=-1), dict(quant_threshold=1.5), dict(quant_threshold=True), dict(quant_type="q5_0"),
    dict(quantize_lm_head="yes"), dict(fuse=1), dict(requantize=None),
])
def test_weight_options_reject_bad_values(bad):
    with pytest.raises(ParameterError, match=next(iter(bad))):
        WeightOptions(**bad)


def test_threshold_rule_is_the_seed_tools():
    o = WeightOptions(quant_threshold=768)
    assert o.quantizes(768, 768) and o.quantizes(3072, 768) and not o.quantizes(767, 64)
    o = WeightOptions(quant_threshold=1024)
    assert not o.quantizes(768, 768) and o.quantizes(3072, 768)  # GPT-2: attention float, FFN quantized
    assert not WeightOptions().quantizes(10**6, 10**6)  # None: off
    assert WeightOptions(quantize_lm_head=True).quantizes(10, 10, lm_head=True)
    assert not WeightOptions(quant_threshold=0, quantize_lm_head=False).quantizes(10**5, 64, lm_head=True)


def test_profiles_and_overrides():
    assert set(PROFILES) == {"baseline", "optimized", "aggressive"}
    base = resolve_options("baseline")
    assert base.threads == 1 and not base.weights.fuse and base.weights.quant_threshold is None
    assert resolve_options().profile == "optimized" and resolve_options().weights.fuse
    aggressive = resolve_options("aggressive").weights
    assert aggressive.quant_threshold == 0 and aggressive.quant_type == "q4_0"
    over = resolve_options("baseline", threads=2, fuse=True)
    assert over.threads == 2 and over.weights.fuse
    with pytest.raises(ParameterError, match="profile"):
        resolve_options("fastest")
    assert all(resolve_options(name).kv_type == "f16" for name in PROFILES)  # llama.cpp's cache by default
    assert resolve_options("aggressive", kv_type="f32").kv_type == "f32"


@pytest.mark.parametrize("bad", ["f8", "F32", "bf16", None, 16])
def test_kv_type_is_validated(bad):
    with pytest.raises(ParameterError, match="kv_type"):
        resolve_options(kv_type=bad)
    with pytest.raises(ParameterError, match="kv_type"):
        workbench.load(smollm2_path(), kv_type=bad)


@pytest.fixture(scope="module")
def smollm2_fused():
    return workbench.load(smollm2_path(), threads=1)


def test_fused_and_unfused_give_identical_logits_and_tokens(smollm2_fused):
    plain = workbench.load(smollm2_path(), fuse=False, threads=1)
    r = smollm2_fused.load_report
    assert (r.fused_qkv, r.fused_gate_up) == (30, 30) and plain.load_report.fused_qkv == 0
    ids = smollm2_fused.encode_prompt(PROMPT)
    for m in (smollm2_fused, plain):
        m.reset()
    a, b = smollm2_fused.forward(ids).copy(), plain.forward(ids).copy()
    assert np.array_equal(a, b)  # the same dot product per output row, fused or not
    ga = smollm2_fused.generate(PROMPT, max_tokens=16)
    gb = plain.generate(PROMPT, max_tokens=16)
    assert ga.tokens == gb.tokens


def test_baseline_and_optimized_agree_on_the_same_formats(smollm2_fused):
    base = workbench.load(smollm2_path(), profile="baseline")
    assert base.threads == 1 and base.options.profile == "baseline"
    assert base.generate(PROMPT, max_tokens=16).tokens == smollm2_fused.generate(PROMPT, max_tokens=16).tokens


@pytest.mark.parametrize("threshold, quant_type, expected", [
    # SmolLM2: q 576x576, k/v 192x576, o 576x576, gate/up 1536x576, down 576x1536, lm_head 49152x576
    (0, "q8_0", {("q4_1", "q8_0"): 210}),  # the tied Q8_0 lm_head is already Q8_0
    (0, "q4_0", {("q4_1", "q4_0"): 210, ("q8_0", "q4_0"): 1}),
    (577, "q4_0", {("q4_1", "q4_0"): 90, ("q8_0", "q4_0"): 1}),  # only the FFN and the lm_head
    (49153, "q8_0", {}),
])
def test_requantize_counts_follow_the_rule(threshold, quant_type, expected):
    m = workbench.load(smollm2_path(), quant_threshold=threshold, quant_type=quant_type, requantize=True,
                       threads=1, n_ctx=64)
    assert m.load_report.quantized == Counter(expected)
    lines = [line for line in m.load_report.lines() if line.startswith("Quantized")]
    assert sum(int(line.split()[1]) for line in lines) == sum(expected.values())  # one line per format pair
    formats = {lin.fmt for layer in m.net.layers for lin in (layer.attn_output, layer.ffn_down)}
    assert formats <= {"q4_1", quant_type}


def test_quantized_files_stay_as_they_are_without_requantize():
    m = workbench.load(smollm2_path(), quant_threshold=0, threads=1, n_ctx=64)
    assert m.load_report.n_quantized == 0 and m.net.layers[0].ffn_down.fmt == "q4_1"


def test_threads_change_between_steps_without_reloading(smollm2_fused):
    m = smollm2_fused
    tokens = []
    for n in range(1, max_threads() + 1):
        m.threads = n
        tokens.append(m.generate(PROMPT, max_tokens=8).tokens)
    assert all(t == tokens[0] for t in tokens)  # rows are split across threads, never reordered
    with pytest.raises(ParameterError, match="numba was started with"):
        m.threads = max_threads() + 1
    with pytest.raises(ParameterError):
        m.threads = 0
    m.threads = 1


def test_load_report_names_the_kv_cache(smollm2_fused):
    lines = smollm2_fused.load_report.lines()
    assert "KV cache 45.0 MiB (f16)" in lines  # 30 layers x 3 KV heads x 64 dims x 2048 positions x K, V halves
    assert smollm2_fused.load_report.kv_cache_bytes == smollm2_fused.state.cache.nbytes
    assert smollm2_fused.state.cache.kv_type == "f16" and smollm2_fused.state.cache.k.dtype == np.uint16


def test_f32_kv_cache_generates_like_f16(smollm2_fused):
    """SmolLM2 with a float32 cache: twice the cache memory, and the greedy text of the
    f16 cache for its first tokens (they part later: measured at token 15 of 48)."""
    m = workbench.load(smollm2_path(), kv_type="f32", threads=1)
    assert m.state.cache.kv_type == "f32" and "KV cache 90.0 MiB (f32)" in m.load_report.lines()
    assert m.generate(PROMPT, max_tokens=8).tokens == smollm2_fused.generate(PROMPT, max_tokens=8).tokens


# rustml's counting: every linear layer by its own shape (GPT-2's c_attn as three
# d x d projections), the lm_head included. Expected counts worked out from the configs.
TINY_GPT2 = {0: 13, 576: 1, 768: 1, 1024: 1, 10**6: 0}  # d 64, d_ff 256, vocab 1257, 2 layers
SMOLLM2_F32 = {0: 211, 576: 211, 768: 91, 1024: 91, 10**6: 0}  # 30 x (q, k, v, o, gate, up, down) + head
GEMMA3_F32 = {0: 127, 576: 127, 768: 91, 1024: 91, 10**6: 0}  # 18 x 7 + head; k/v 256x640 and q 1024x640


@pytest.mark.parametrize("threshold", sorted(TINY_GPT2))
def test_counts_on_the_tiny_gpt2(threshold):
    m = workbench.load("data/tiny-gpt2", quant_threshold=threshold, threads=1)
    expected = TINY_GPT2[threshold]
    assert m.load_report.quantized == (Counter({("f32", "q8_0"): expected}) if expected else Counter())
    assert m.load_report.kept_float == 13 - expected
    head = f"Quantized {expected} linear layers F32 -> Q8_0" if expected else "Quantized 0 linear layers"
    assert m.load_report.lines()[0] == head


@pytest.mark.slow
@pytest.mark.parametrize("source, counts", [("smollm2-135m:hf-f32", SMOLLM2_F32), ("gemma3-270m:hf-f32", GEMMA3_F32)])
def test_counts_on_the_f32_directories(source, counts):
    for threshold, expected in counts.items():
        m = workbench.load(source, quant_threshold=threshold, threads=1, n_ctx=64)
        assert m.load_report.n_quantized == expected, (source, threshold)
        assert not m.load_report.quantized or set(m.load_report.quantized) == {("f32", "q8_0")}
        del m


@pytest.mark.slow
def test_fused_and_unfused_f32_paths_give_identical_tokens():
    a = workbench.load("smollm2-135m:hf-f32", fuse=True, threads=1, n_ctx=128)
    b = workbench.load("smollm2-135m:hf-f32", fuse=False, threads=1, n_ctx=128)
    assert a.load_report.fused_qkv == 30 and b.load_report.fused_qkv == 0
    assert a.generate(PROMPT, max_tokens=16).tokens == b.generate(PROMPT, max_tokens=16).tokens
    a.reset(), b.reset()
    ids = a.encode_prompt(PROMPT)
    assert np.array_equal(a.forward(ids), b.forward(ids))
