"""nonfinite_count: NaN / Inf weights counted per element (float formats) or per block
with a non-finite scale (block formats), against the numpy reference dequantizers."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests._fuzz import FUZZ
from tests._models import smollm2_path
from workbench.errors import ParameterError, ShapeError
from workbench.formats.gguf import GGUFFile
from workbench.quant import FORMATS, WEIGHT_FORMATS, dequantize_ref, quantize_ref
from workbench.quant.finite import nonfinite_count

F16_SPECIALS = [0x7C00, 0xFC00, 0x7E00, 0x7C01, 0xFFFF]  # +Inf, -Inf, NaNs
FLOAT_SPECIALS = {
    "f32": np.array([np.inf, -np.inf, np.nan], np.float32).view(np.uint8).reshape(-1, 4).tolist()
    + [[1, 0, 0x80, 0x7F], [0xFF, 0xFF, 0xFF, 0xFF]],  # a signalling NaN, a negative NaN
    "f16": [list(int(v).to_bytes(2, "little")) for v in F16_SPECIALS],
    "bf16": [list(int(v).to_bytes(2, "little")) for v in (0x7F80, 0xFF80, 0x7FC0, 0x7F81)],
}
SCALES = {"q8_0": [0], "q4_0": [0], "q4_1": [0, 2], "q5_0": [0], "q5_1": [0, 2], "q4_k": [0, 2], "q5_k": [0, 2],
          "q6_k": [208], "iq4_nl": [0]}


def reference_count(raw: np.ndarray, fmt: str) -> int:
    """Non-finite elements (float formats) or blocks holding any non-finite element."""
    f = FORMATS[fmt]
    with np.errstate(invalid="ignore", over="ignore"):  # Inf * 0 and friends
        x = dequantize_ref(fmt, raw)
    bad = ~np.isfinite(x.reshape(-1, f.block_size))
    return int(np.count_nonzero(bad.any(axis=1) if f.block_size > 1 else bad))


def weights(fmt: str, rows: int, blocks_per_row: int, seed: int) -> np.ndarray:
    """Finite weights of format `fmt`: quantize_ref where it exists, else random block
    bytes with finite f16 scales (the k-quants have no quantizer in workbench)."""
    f = FORMATS[fmt]
    rng = np.random.default_rng(seed)
    if f.quantize is None:
        raw = rng.integers(0, 256, (rows, blocks_per_row * f.type_size), np.uint8)
        blocks = raw.reshape(-1, f.type_size)
        for off in SCALES[fmt]:
            d = rng.uniform(-2, 2, len(blocks)).astype(np.float16)
            blocks[:, off : off + 2] = d.view(np.uint8).reshape(-1, 2)
        return raw
    x = rng.standard_normal((rows, blocks_per_row * f.block_size)).astype(np.float32)
    return quantize_ref(fmt, x)


@pytest.mark.parametrize("fmt", WEIGHT_FORMATS)
def test_clean_weights_count_zero(fmt):
    raw = weights(fmt, 4, 3, seed=1)
    assert nonfinite_count(raw, fmt) == 0 == reference_count(raw, fmt)


@pytest.mark.parametrize("fmt", ["f32", "f16", "bf16"])
def test_poisoned_float_elements(fmt):
    f = FORMATS[fmt]
    raw = weights(fmt, 8, 64, seed=2)
    elems = raw.reshape(-1, f.type_size)
    rng = np.random.default_rng(3)
    hit = rng.choice(len(elems), 37, replace=False)
    for i, j in enumerate(hit):
        elems[j] = FLOAT_SPECIALS[fmt][i % len(FLOAT_SPECIALS[fmt])]
    assert nonfinite_count(raw, fmt) == 37 == reference_count(raw, fmt)


@pytest.mark.parametrize("fmt", list(SCALES))
def test_poisoned_block_scales(fmt):
    """Poison d in some blocks, m / dmin in others, both in a few: each block counts once."""
    f = FORMATS[fmt]
    raw = weights(fmt, 16, 4, seed=4)
    blocks = raw.reshape(-1, f.type_size)
    rng = np.random.default_rng(5)
    poisoned = set()
    for k, off in enumerate(SCALES[fmt]):
        hit = rng.choice(len(blocks), 9, replace=False)
        for i, b in enumerate(hit):
            blocks[b, off : off + 2] = list(F16_SPECIALS[(i + k) % 5].to_bytes(2, "little"))
        poisoned |= set(hit.tolist())
    assert 9 <= len(poisoned) <= 18
    assert nonfinite_count(raw, fmt) == len(poisoned) == reference_count(raw, fmt)
    # the quants are integers: garbage there never counts
    if fmt == "q8_0":
        blocks[:, 2:] = 0xFF
        assert nonfinite_count(raw, fmt) == len(poisoned)


@FUZZ
@given(fmt=st.sampled_from(WEIGHT_FORMATS), rows=st.integers(1, 5), blocks=st.integers(1, 40),
       seed=st.integers(0, 2**32 - 1), specials=st.integers(0, 20))
def test_any_bit_pattern_matches_the_dequantizer(fmt, rows, blocks, seed, specials):
    """Arbitrary bytes (random f16 fields are Inf / NaN one time in 32) plus planted
    specials: the count equals what dequantize_ref says."""
    f = FORMATS[fmt]
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, (rows, blocks * f.type_size), np.uint8)
    units = raw.reshape(-1, f.type_size)
    for _ in range(specials):
        u = rng.integers(len(units))
        if fmt in FLOAT_SPECIALS:
            units[u] = FLOAT_SPECIALS[fmt][rng.integers(len(FLOAT_SPECIALS[fmt]))]
        else:
            off = SCALES[fmt][rng.integers(len(SCALES[fmt]))]
            units[u, off : off + 2] = list(F16_SPECIALS[rng.integers(5)].to_bytes(2, "little"))
    assert nonfinite_count(raw, fmt) == reference_count(raw, fmt)


def test_chunks_and_views(monkeypatch):
    """Chunk boundaries, a 1-D input and a non-contiguous input give the same count."""
    import workbench.quant.finite as finite

    raw = weights("q4_1", 64, 5, seed=6)
    raw.reshape(-1, 20)[::7, 2:4] = [0x00, 0x7C]  # m = +Inf in every 7th block
    want = reference_count(raw, "q4_1")
    monkeypatch.setattr(finite, "_CHUNK_BYTES", 20 * 3)  # 3 blocks a chunk
    assert nonfinite_count(raw, "q4_1") == want
    assert nonfinite_count(raw.reshape(-1), "q4_1") == want
    wide = np.zeros((64, 200), np.uint8)
    wide[:, ::2] = raw
    assert nonfinite_count(wide[:, ::2], "q4_1") == want
    f32 = np.full((3, 10), np.nan, np.float32).view(np.uint8)
    assert nonfinite_count(f32, "F32") == 30


def test_bad_arguments():
    with pytest.raises(ParameterError, match="q8_1"):
        nonfinite_count(np.zeros((1, 36), np.uint8), "q8_1")
    with pytest.raises(ParameterError, match="q3_k"):
        nonfinite_count(np.zeros((1, 36), np.uint8), "q3_k")
    with pytest.raises(ShapeError, match="34"):
        nonfinite_count(np.zeros((1, 35), np.uint8), "q8_0")
    with pytest.raises(ShapeError, match="float32"):
        nonfinite_count(np.zeros((1, 8), np.float32), "f32")


def test_real_file_is_finite():
    g = GGUFFile.open(smollm2_path())
    for name in ("token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_norm.weight"):
        t = g.tensors[name]
        assert nonfinite_count(g.raw(name), t.type_name.lower()) == 0, name
