"""Block formats and the numpy reference codecs (workbench.quant, formats.ggml_types).

- the GGML type table agrees with gguf-py (except Q8_1, see ggml_types.py);
- dequantize_ref equals gguf.quants.dequantize bit for bit on real tensors of both test
  models, for every weight format they hold, and on synthetic f16 / bf16 / q4_0 / q5_1;
- quantize_ref equals gguf.quants.quantize bit for bit where gguf implements it;
- round trips stay within named error budgets (as llama.cpp's test-quantize-fns).
"""

from functools import lru_cache

import gguf
import numpy as np
import pytest

from tests._models import gemma3_path, smollm2_path
from workbench.errors import ShapeError, UnsupportedError
from workbench.formats.ggml_types import GGML_TYPES, ggml_type
from workbench.formats.gguf import GGUFFile
from workbench.quant import (
    FORMATS,
    WEIGHT_FORMATS,
    dequantize_ref,
    format_named,
    format_of_ggml_type,
    quantize_activation_ref,
    quantize_ref,
)

Q = gguf.GGMLQuantizationType

# max |x - dequantize(quantize(x))| per block, as a fraction of the block's max |x|
# (of each value for f16 / bf16). q4_0 / q5_0 may clip the value opposite the block's
# signed extreme by one full step (q = 16 or 32 -> 15 or 31), hence 1/8 and 1/16; q4_1's
# half step is half of range/15 <= 2 max|x| / 30 (q5_1's: of range/31), plus its fp16 min.
ROUND_TRIP_BUDGET = {
    "f32": 0.0,
    "f16": 2.0**-11,
    "bf16": 2.0**-8,
    "q8_0": 0.5 / 127 + 2.0**-10,  # half a step, plus the step rounded to fp16
    "q8_1": 0.5 / 127 + 2.0**-10,
    "q8_k": 0.5 / 127 + 1e-6,  # float32 step
    "q4_0": 1 / 8 + 2.0**-10,
    "q5_0": 1 / 16 + 2.0**-10,
    "q4_1": 1 / 15 + 2.0**-9,
    "q5_1": 1 / 31 + 2.0**-9,
}
# fp16 scales below 2^-14 are subnormal: their rounding is absolute (2^-25 at most),
# times a quant of up to 128 in size
FP16_SCALE_FLOOR = 128 * 2.0**-25

# Tensors of the real models per weight format: (model, tensor name).
REAL_TENSORS = {
    "f32": [("smollm2", "blk.0.attn_norm.weight"), ("gemma3", "blk.0.attn_k_norm.weight")],
    "q8_0": [
        ("smollm2", "token_embd.weight"),
        ("gemma3", "blk.0.attn_v.weight"),
        ("gemma3", "token_embd.weight"),
    ],
    "q4_1": [
        ("smollm2", "blk.0.attn_q.weight"),
        ("smollm2", "blk.0.ffn_down.weight"),
        ("smollm2", "blk.29.ffn_gate.weight"),
    ],
    "q5_0": [
        ("gemma3", "blk.0.attn_q.weight"),
        ("gemma3", "blk.0.attn_k.weight"),
        ("gemma3", "blk.0.ffn_up.weight"),
    ],
    "q4_k": [("gemma3", "blk.0.attn_output.weight"), ("gemma3", "blk.2.ffn_down.weight")],
    "q6_k": [("gemma3", "blk.0.ffn_down.weight"), ("gemma3", "blk.17.ffn_down.weight")],
}


@lru_cache(maxsize=None)
def model_file(model: str) -> GGUFFile:
    # workbench's own reader only locates the bytes (gguf.GGUFReader takes ~20 s to parse
    # Gemma's 262k-token vocabulary); the values are checked against gguf-py's codecs.
    return GGUFFile.open({"smollm2": smollm2_path, "gemma3": gemma3_path}[model]())


def real_tensor(model: str, name: str, rows: int | None = 64):
    """(GGUF type, raw bytes (rows, row_bytes) uint8) of a tensor, 1-D ones as one row."""
    f = model_file(model)
    raw = f.raw(name)
    return Q(f.tensor(name).type_id), raw.reshape(-1, raw.shape[-1])[:rows]


def test_ggml_type_table_matches_gguf():
    for t in Q:
        ours = GGML_TYPES[t.value]
        expected = gguf.GGML_QUANT_SIZES[t]
        if t == Q.Q8_1:  # gguf-py keeps the old float32 layout; ggml's block is 36 bytes
            expected = (32, 36)
        assert (ours.name, ours.block_size, ours.type_size) == (t.name, *expected)
    assert len(GGML_TYPES) == len(Q)


def test_ggml_type_rejects_unknown_ids():
    assert ggml_type(12).name == "Q4_K"
    with pytest.raises(UnsupportedError, match="99"):
        ggml_type(99)
    with pytest.raises(UnsupportedError, match="Q4_0_4_4"):
        ggml_type(31)


def test_block_formats():
    assert FORMATS["q8_0"].type_size == 34 and FORMATS["q6_k"].type_size == 210
    expected_vec_dot = {
        "f32": "f32", "f16": "f16", "bf16": "bf16", "q8_0": "q8_0", "q4_0": "q8_0",
        "q5_0": "q8_0", "q4_1": "q8_1", "q5_1": "q8_1", "q4_k": "q8_k", "q5_k": "q8_k", "q6_k": "q8_k",
        "iq4_nl": "q8_0",
    }
    assert {f: FORMATS[f].vec_dot for f in WEIGHT_FORMATS} == expected_vec_dot
    assert format_of_ggml_type(Q.Q4_K.value) is FORMATS["q4_k"]
    assert format_named("Q5_0") is FORMATS["q5_0"]
    assert FORMATS["q4_k"].row_bytes(1024) == 4 * 144
    with pytest.raises(UnsupportedError, match="256"):
        FORMATS["q4_k"].row_bytes(640)
    with pytest.raises(UnsupportedError, match="IQ2_XXS"):
        format_of_ggml_type(Q.IQ2_XXS.value)
    with pytest.raises(UnsupportedError, match="q3_k"):
        format_named("q3_k")


@pytest.mark.parametrize("fmt", list(REAL_TENSORS))
def test_dequantize_matches_gguf_on_real_tensors(fmt):
    for model, name in REAL_TENSORS[fmt]:
        qtype, raw = real_tensor(model, name)
        assert format_of_ggml_type(qtype.value).name == fmt
        ours = dequantize_ref(fmt, raw)
        theirs = gguf.quants.dequantize(raw, qtype).reshape(ours.shape)
        assert ours.dtype == np.float32
        assert np.array_equal(ours.view(np.uint32), theirs.view(np.uint32)), (model, name)


@pytest.mark.parametrize("fmt, qtype", [("f16", Q.F16), ("bf16", Q.BF16), ("q4_0", Q.Q4_0),
                                         ("q5_1", Q.Q5_1)])
def test_dequantize_matches_gguf_on_synthetic_tensors(fmt, qtype):
    x = np.random.default_rng(1).standard_normal((16, 512)).astype(np.float32)
    raw = np.ascontiguousarray(gguf.quants.quantize(x, qtype)).view(np.uint8).reshape(16, -1)
    ours = dequantize_ref(fmt, raw)
    theirs = gguf.quants.dequantize(raw, qtype).reshape(ours.shape)
    assert np.array_equal(ours.view(np.uint32), theirs.view(np.uint32))


@pytest.mark.parametrize("fmt, qtype", [("q4_k", Q.Q4_K), ("q5_k", Q.Q5_K), ("q6_k", Q.Q6_K)])
def test_dequantize_matches_gguf_on_random_blocks(fmt, qtype):
    """Every quant, scale and min value (q5_K has no tensor in the test models)."""
    f = FORMATS[fmt]
    rng = np.random.default_rng(2)
    raw = rng.integers(0, 256, (64, f.type_size), np.uint8)
    for o in f.scale_fields:
        raw[:, o : o + 2] = rng.standard_normal((64, 1)).astype(np.float16).view(np.uint8)
    ours = dequantize_ref(fmt, raw)
    theirs = gguf.quants.dequantize(raw, qtype).reshape(ours.shape)
    assert np.array_equal(ours.view(np.uint32), theirs.view(np.uint32))


def test_iq4_nl_dequantize_matches_gguf_on_random_blocks():
    """IQ4_NL, which gguf-py can only dequantize: random quants, finite fp16 scales."""
    rng = np.random.default_rng(2)
    raw = rng.integers(0, 256, (16, 8, 18), dtype=np.uint8)
    raw[..., :2] = rng.standard_normal((16, 8)).astype(np.float16).view(np.uint8).reshape(16, 8, 2)
    raw = raw.reshape(16, -1)
    ours = dequantize_ref("iq4_nl", raw)
    theirs = gguf.quants.dequantize(raw, Q.IQ4_NL).reshape(ours.shape)
    assert np.array_equal(ours.view(np.uint32), theirs.view(np.uint32))


def awkward_rows() -> np.ndarray:
    """Random rows plus blocks that stress rounding and tie-breaking."""
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((24, 512)) * rng.uniform(0.01, 20, (24, 1))).astype(np.float32)
    x[0, :256] = 0  # all-zero blocks (and a zero q8_K super-block)
    x[1, :32] = np.arange(32, dtype=np.float32) - 15.5  # exact halves after scaling
    x[1, 31] = 127
    x[2, :32] = 3.0  # constant block
    x[3, 3], x[3, 9] = 5.0, -5.0  # equal magnitude, opposite signs: first one wins
    x[4, :32] = -x[4, :32]
    x[5] *= 1e-6  # tiny scales
    return x


@pytest.mark.parametrize("fmt, qtype", [
    ("q8_0", Q.Q8_0), ("q4_0", Q.Q4_0), ("q4_1", Q.Q4_1), ("q5_0", Q.Q5_0), ("q5_1", Q.Q5_1),
    ("bf16", Q.BF16), ("f16", Q.F16),
])
def test_quantize_matches_gguf(fmt, qtype):
    x = awkward_rows()
    ours = quantize_ref(fmt, x)
    theirs = np.ascontiguousarray(gguf.quants.quantize(x, qtype)).view(np.uint8).reshape(ours.shape)
    assert np.array_equal(ours, theirs)


@pytest.mark.parametrize("fmt", list(ROUND_TRIP_BUDGET))
def test_round_trip_error_budget(fmt):
    x = awkward_rows()
    back = dequantize_ref(fmt, quantize_ref(fmt, x))
    bs = max(FORMATS[fmt].block_size, 32)
    blocks, err = x.reshape(-1, bs), np.abs(back - x).reshape(-1, bs)
    if fmt in ("f16", "bf16"):  # relative to each value, down to half an f16 subnormal step
        assert np.all(err <= ROUND_TRIP_BUDGET[fmt] * np.abs(blocks) + 2.0**-25)
    else:
        floor = 0.0 if fmt in ("f32", "q8_k") else FP16_SCALE_FLOOR
        budget = ROUND_TRIP_BUDGET[fmt] * np.abs(blocks).max(axis=1) + floor
        assert np.all(err.max(axis=1) <= budget)


def test_q8_k_block_fields():
    x = awkward_rows()
    raw = quantize_ref("q8_k", x).reshape(-1, 292)
    q = raw[:, 4:260].view(np.int8).astype(np.int32)
    bsums = raw[:, 260:].copy().view(np.int16)
    assert np.array_equal(bsums, q.reshape(-1, 16, 16).sum(axis=-1))
    assert np.array_equal(raw[0], np.zeros(292, np.uint8))  # all-zero super-block
    assert q.max() <= 127 and q.min() >= -127


def test_activation_quantizers_differ_from_reference_only_in_rounding():
    # x86 quantize_row_q8_0 rounds halves to even (and scales by 127/amax); the ggml
    # reference quantizer rounds halves away from zero (and scales by 1/d).
    x = np.zeros((1, 256), np.float32)
    x[0, :4] = [127.0, 0.5, 1.5, -2.5]
    ref = quantize_ref("q8_0", x)[0, 2:6].view(np.int8)
    act = quantize_activation_ref("q8_0", x)[0, 2:6].view(np.int8)
    assert list(ref) == [127, 1, 2, -3]
    assert list(act) == [127, 0, 2, -2]
    assert np.array_equal(quantize_activation_ref("q8_k", x), quantize_ref("q8_k", x))


def test_bad_inputs_are_rejected():
    with pytest.raises(ShapeError, match="q8_0"):
        dequantize_ref("q8_0", np.zeros((2, 33), np.uint8))
    with pytest.raises(ShapeError):
        dequantize_ref("q8_0", np.zeros((2, 34), np.float32))
    with pytest.raises(ShapeError):
        quantize_ref("q4_0", np.zeros((2, 40), np.float32))
    with pytest.raises(UnsupportedError, match="q4_k"):
        quantize_ref("q4_k", np.zeros((1, 256), np.float32))
