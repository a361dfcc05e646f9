"""The matvec / get_rows kernels against the numpy references, on real model weights.

- activation quantization inside the kernels == quantize_activation_ref, bit for bit;
- linear(W, x) == llama.cpp's own CPU kernels (libggml-cpu from llama-cpp-python, called
  through ctypes), bit for bit, for every format: the decode-path `vec_dot`, or the
  repacked `gemv` llama.cpp runs for q4_0 / q4_K / iq4_nl (skipped without llama-cpp-python);
- quantize_ref of iq4_nl == ggml's quantize_row_iq4_nl_ref (gguf-py has no quantizer for it);
- linear(W, x) == dequantize_ref(W) @ dequantize_ref(quantized x) in float64 within
  KERNEL_TOL (float32 rounding only), and == W @ x within the budget that quantizing the
  activations as llama.cpp does allows (Q8_STEP_SLACK, f16 / bf16 ulps);
- T > 1 equals T separate calls, 1 and 2 threads and the serial variant agree bit for bit;
- get_rows == dequantize_ref bit for bit; invalid input raises ShapeError naming the tensor;
- the kernels also run as plain Python under NUMBA_DISABLE_JIT=1.
Errors are measured per output element relative to sum_j |w_ij| |x_j|, the scale of
the float32 rounding in a dot product.
"""

import ctypes
import importlib.util
import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from tests._models import gemma3_path, smollm2_path
from workbench.errors import ShapeError, UnsupportedError
from workbench.formats.gguf import GGUFFile
from workbench.kernels import registry
from workbench.kernels.formats.activations import quantize_activation
from workbench.kernels.isa.x86 import cpu_features
from workbench.kernels.jit import max_threads, set_threads
from workbench.kernels.linear import get_rows, linear
from workbench.quant import FORMATS, dequantize_ref, quantize_activation_ref, quantize_ref

ROOT = Path(__file__).resolve().parents[1]

# vs the float64 dot of the dequantized weight and the dequantized quantized activation
# (for q4_1 / q5_1: with the min term taken from q8_1's s = fp16(d * sum q), as llama.cpp does)
KERNEL_TOL = {fmt: 2e-6 for fmt in FORMATS if FORMATS[fmt].weight}
# vs the float64 dot with the unquantized x, the budget is sum_j |w_ij| e_j with e_j the
# largest change quantizing the activations can make to x_j: half a q8 step d = amax/127
# of its block, widened by the step's own fp16 rounding (127 * 2^-11 of a step), or half
# an f16 / bf16 ulp of x_j
Q8_STEP_SLACK = 0.5 + 127 * 2.0**-11

# (format, model, tensor, rows used): real shapes of both models
REAL_CASES = [
    ("q4_1", "smollm2", "blk.0.attn_q.weight", None),  # 576 x 576
    ("q4_1", "smollm2", "blk.0.ffn_gate.weight", None),  # 1536 x 576
    ("q4_1", "smollm2", "blk.0.ffn_down.weight", None),  # 576 x 1536
    ("q8_0", "smollm2", "token_embd.weight", 4096),  # 49152 x 576, tied lm_head
    ("q5_0", "gemma3", "blk.0.attn_q.weight", None),  # 1024 x 640
    ("q8_0", "gemma3", "blk.0.attn_v.weight", None),  # 256 x 640
    ("q4_k", "gemma3", "blk.0.attn_output.weight", None),  # 640 x 1024
    ("q4_k", "gemma3", "blk.2.ffn_down.weight", None),  # 640 x 2048
    ("q6_k", "gemma3", "blk.0.ffn_down.weight", None),  # 640 x 2048
    ("q8_0", "gemma3", "token_embd.weight", 2048),  # 262144 x 640, tied lm_head
]


@lru_cache(maxsize=None)
def model_file(model: str) -> GGUFFile:
    return GGUFFile.open({"smollm2": smollm2_path, "gemma3": gemma3_path}[model]())


def real_weight(model: str, name: str, rows: int | None) -> np.ndarray:
    """Raw bytes (rows, row_bytes) of a tensor: a read-only view of the mapped file."""
    return model_file(model).raw(name)[:rows]


@lru_cache(maxsize=None)
def synthetic_weight(fmt: str, cols: int = 576) -> np.ndarray:
    """A SmolLM2 ffn_gate (1536 x 576) requantized to `fmt`, or random rows for other widths."""
    if cols == 576:
        dense = dequantize_ref("q4_1", real_weight("smollm2", "blk.0.ffn_gate.weight", None))
    else:
        dense = np.random.default_rng(3).standard_normal((200, cols)).astype(np.float32) * 0.05
    w = quantize_ref(fmt, dense)
    w.flags.writeable = False
    return w


@lru_cache(maxsize=None)
def random_blocks(fmt: str, rows: int, cols: int, seed: int = 3) -> np.ndarray:
    """Random block bytes (every quant, scale and min value) with finite fp16 scales of a
    real model's size, for a format workbench cannot quantize and the test models lack
    (q5_K): its kernels are exact integer sums and fixed float steps whatever the bytes."""
    f = FORMATS[fmt]
    rng = np.random.default_rng(seed)
    w = rng.integers(0, 256, (rows, cols // f.block_size, f.type_size), dtype=np.uint8)
    for o in f.scale_fields:
        d = (rng.standard_normal(w.shape[:2]) * 2e-3).astype(np.float16)
        w[..., o : o + 2] = d.view(np.uint8).reshape(*w.shape[:2], 2)
    w = w.reshape(rows, -1)
    w.flags.writeable = False
    return w


def activations(T: int, cols: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, cols)).astype(np.float32)
    x[:, 5] *= 20  # an outlier channel, as real hidden states have
    return x


def q8_1_reference(fmt: str, w: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """llama.cpp's q4_1 / q5_1 x q8_1 dot in float64: sum over blocks of d_w d_x sum(q_w q_x)
    + m_w s_x, and the sum of the magnitudes of its terms."""
    f = FORMATS[fmt]
    rows, nb = w.shape[0], w.shape[1] // f.type_size
    wb = np.ascontiguousarray(w).reshape(rows, nb, f.type_size)
    d_w = wb[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float64)
    m_w = wb[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float64)
    qs = wb[..., -16:]
    q_w = np.concatenate([qs & 15, qs >> 4], axis=-1).astype(np.float64)
    if fmt == "q5_1":  # the 5th bits: bit j of the u32 at byte 4
        qh = wb[..., 4:8].copy().view(np.uint32)
        q_w += 16 * ((qh >> np.arange(32, dtype=np.uint32)) & 1)
    xb = quantize_activation_ref("q8_1", x).reshape(x.shape[0], nb, 36)
    d_x = xb[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float64)
    s_x = xb[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float64)
    q_x = xb[..., 4:].view(np.int8).astype(np.float64)
    dots = np.einsum("rbj,tbj->trb", q_w, q_x) * d_w[None] * d_x[:, None]
    mins = m_w[None] * s_x[:, None]
    sizes = np.einsum("rbj,tbj->trb", q_w, np.abs(q_x)) * np.abs(d_w[None] * d_x[:, None])
    return (dots + mins).sum(-1), (sizes + np.abs(mins)).sum(-1)


def check_against_references(fmt: str, w: np.ndarray, x: np.ndarray) -> np.ndarray:
    out = np.full((x.shape[0], w.shape[0]), np.nan, np.float32)
    assert linear(out, w, x, fmt, "test.weight") is out
    W = dequantize_ref(fmt, w).astype(np.float64)
    vec_dot = FORMATS[fmt].vec_dot
    if vec_dot == "q8_1":
        ref, size = q8_1_reference(fmt, w, x)
    else:
        xa = dequantize_ref(vec_dot, quantize_activation_ref(vec_dot, x)).astype(np.float64)
        ref, size = xa @ W.T, np.abs(xa) @ np.abs(W).T
    err = np.abs(out - ref) / size
    assert err.max() <= KERNEL_TOL[fmt], err.max()
    budget = activation_error(vec_dot, x) @ np.abs(W).T + KERNEL_TOL[fmt] * size
    assert np.all(np.abs(out - x.astype(np.float64) @ W.T) <= budget)
    return out


def activation_error(vec_dot: str, x: np.ndarray) -> np.ndarray:
    """The most quantizing x to `vec_dot` may move each x_j, float64 (T, cols)."""
    x = x.astype(np.float64)
    if vec_dot == "f32":
        return np.zeros_like(x)
    if vec_dot in ("f16", "bf16"):
        return np.abs(x) * (2.0**-11 if vec_dot == "f16" else 2.0**-8) + 2.0**-25
    bs = FORMATS[vec_dot].block_size
    step = np.abs(x).reshape(x.shape[0], -1, bs).max(axis=-1, keepdims=True) / 127
    slack = 0.5 * (1 + 2.0**-20) if vec_dot == "q8_k" else Q8_STEP_SLACK  # q8_K's d is float32
    return np.broadcast_to(step * slack, (x.shape[0], x.shape[1] // bs, bs)).reshape(x.shape)


@pytest.mark.parametrize("vec_dot", ["q8_0", "q8_1", "q8_k", "f16", "bf16", "f32"])
def test_activation_quantization_matches_reference(vec_dot):
    x = activations(5, 1024)
    x[0, :256] = 0
    x[1, :32] = np.arange(32, dtype=np.float32) - 15.5  # halves: rounded to even
    x[1, 31] = 127
    x[2, 40:42] = [-3.0, 3.0]  # equal magnitudes: q8_K keeps the first one's sign
    x[3] *= 1e-7
    assert np.array_equal(quantize_activation(vec_dot, x), quantize_activation_ref(vec_dot, x))


@pytest.mark.parametrize("T", [1, 3])
@pytest.mark.parametrize("fmt, model, name, rows", REAL_CASES, ids=lambda c: str(c))
def test_linear_on_real_weights(fmt, model, name, rows, T):
    w = real_weight(model, name, rows)
    check_against_references(fmt, w, activations(T, dequantize_ref(fmt, w[:1]).shape[1]))


@pytest.mark.parametrize("T", [1, 4])
@pytest.mark.parametrize("fmt", ["f32", "f16", "bf16", "q4_0", "q5_1", "iq4_nl"])
def test_linear_on_requantized_weights(fmt, T):
    w = synthetic_weight(fmt)
    check_against_references(fmt, w, activations(T, 576))


@pytest.mark.parametrize("T", [1, 3])
def test_linear_on_random_q5_k_blocks(T):
    check_against_references("q5_k", random_blocks("q5_k", 200, 1024), activations(T, 1024))


@pytest.mark.parametrize("fmt", ["f32", "f16", "bf16"])
def test_float_formats_take_any_width(fmt):
    w = synthetic_weight(fmt, cols=1000)  # 62 lanes of 16 and a tail of 8
    check_against_references(fmt, w, activations(2, 1000))


def weight_for(fmt: str) -> np.ndarray:
    for case_fmt, model, name, rows in REAL_CASES:
        if case_fmt == fmt:
            return real_weight(model, name, rows or 512)
    if FORMATS[fmt].quantize is None:  # no quantizer in workbench, no tensor in the test models
        return random_blocks(fmt, 512, 1024)
    return synthetic_weight(fmt)


@pytest.mark.parametrize("fmt", list(registry.formats("matvec")))
def test_tokens_threads_and_variants_agree_bit_for_bit(fmt):
    w = weight_for(fmt)
    x = activations(3, dequantize_ref(fmt, w[:1]).shape[1])
    together = linear(np.empty((3, w.shape[0]), np.float32), w, x, fmt)
    for t in range(3):  # prefill == token by token
        alone = linear(np.empty((1, w.shape[0]), np.float32), w, x[t : t + 1], fmt)
        assert np.array_equal(together[t], alone[0])
    serial = np.empty_like(together)
    x_ro = x.copy()
    x_ro.flags.writeable = False
    registry.variants("matvec", fmt)["serial"](serial, w, x_ro)
    assert np.array_equal(serial, together)
    if max_threads() >= 2:
        try:
            set_threads(2)
            two = linear(np.empty_like(together), w, x, fmt)
            set_threads(1)
            one = linear(np.empty_like(together), w, x, fmt)
        finally:
            set_threads(max_threads())
        assert np.array_equal(one, two) and np.array_equal(one, together)


@pytest.mark.parametrize("fmt", list(registry.formats("get_rows")))
def test_get_rows_matches_dequantize_ref(fmt):
    w = weight_for(fmt)
    ids = np.array([0, w.shape[0] - 1, 7, 7, 3], np.int32)
    out = np.full((5, dequantize_ref(fmt, w[:1]).shape[1]), np.nan, np.float32)
    assert get_rows(out, w, ids, fmt, "token_embd.weight") is out
    assert np.array_equal(out.view(np.uint32), dequantize_ref(fmt, w[ids]).view(np.uint32))


def test_registry():
    assert registry.formats("matvec") == sorted(f for f in FORMATS if FORMATS[f].weight)
    assert set(registry.variants("matvec", "q8_0")) >= {"serial", "one_row", "one_row_serial", "row_groups",
                                                         "row_groups_serial", "row_groups_vnni"}
    assert set(registry.variants("matvec", "f32")) == {"serial", "lanes64", "lanes64_serial"}
    # the default is the variant the table chooses for this CPU, under its own name
    assert registry.default_name("matvec", "q8_0") == FORMATS["q8_0"].choose(cpu_features())
    fn = lambda out, w, x: out  # noqa: E731
    registry.register("matvec_test", "q8_0", "first", fn)
    registry.register("matvec_test", "q8_0", "second", fn)
    assert registry.default_name("matvec_test", "q8_0") == "first"
    registry.set_default("matvec_test", "q8_0", "second")
    assert registry.default_name("matvec_test", "q8_0") == "second"
    with pytest.raises(UnsupportedError, match="q3_k"):
        registry.default("matvec", "q3_k")


# ---- validation -------------------------------------------------------------------------


@pytest.fixture
def q8():
    w = real_weight("gemma3", "blk.0.attn_v.weight", None)  # 256 x 640 q8_0
    return w, activations(2, 640), np.empty((2, 256), np.float32)


def test_linear_rejects_bad_weights(q8):
    w, x, out = q8
    with pytest.raises(ShapeError, match="blk.0.attn_v.weight.*uint8"):
        linear(out, w.view(np.int8), x, "q8_0", "blk.0.attn_v.weight")
    with pytest.raises(ShapeError, match="attn_v"):
        linear(out, w.reshape(-1), x, "q8_0", "attn_v")
    with pytest.raises(ShapeError, match="attn_v.*C-contiguous"):
        linear(out, np.asfortranarray(w), x, "q8_0", "attn_v")
    with pytest.raises(ShapeError, match="attn_v.*multiple of 34"):
        linear(out, np.ascontiguousarray(w[:, :100]), x, "q8_0", "attn_v")
    with pytest.raises(ShapeError, match="attn_v.*680 bytes per row, expected 612"):
        linear(out, w, np.zeros((2, 576), np.float32), "q8_0", "attn_v")  # w has 640 columns
    with pytest.raises(UnsupportedError, match="q3_k"):
        linear(out, w, x, "q3_k", "attn_v")
    with pytest.raises(UnsupportedError, match="q8_k"):  # an activation-only format
        linear(out, w, x, "q8_k", "attn_v")


def test_linear_rejects_bad_activations_and_outputs(q8):
    w, x, out = q8
    with pytest.raises(ShapeError, match="attn_v: x must be float32"):
        linear(out, w, x.astype(np.float64), "q8_0", "attn_v")
    with pytest.raises(ShapeError, match="attn_v: x must be float32"):
        linear(out, w, x[0], "q8_0", "attn_v")
    with pytest.raises(ShapeError, match="attn_v: x must be C-contiguous"):
        linear(out, w, np.asfortranarray(x), "q8_0", "attn_v")
    with pytest.raises(ShapeError, match="attn_v.*640 columns|attn_v.*block size 32"):
        linear(out, w, np.zeros((2, 650), np.float32), "q8_0", "attn_v")
    with pytest.raises(ShapeError, match=r"attn_v: out must have shape \(2, 256\)"):
        linear(np.empty((2, 255), np.float32), w, x, "q8_0", "attn_v")
    with pytest.raises(ShapeError, match="attn_v: out must be float32"):
        linear(np.empty((2, 256), np.float64), w, x, "q8_0", "attn_v")
    with pytest.raises(ShapeError, match="attn_v: out must be C-contiguous"):
        linear(np.empty((256, 2), np.float32).T, w, x, "q8_0", "attn_v")
    with pytest.raises(ShapeError, match="attn_v: out must not overlap"):
        big = np.zeros((2, 640), np.float32)
        linear(big.reshape(-1)[:512].reshape(2, 256), w, big, "q8_0", "attn_v")
    with pytest.raises(ShapeError, match="block size 256"):
        w4 = real_weight("gemma3", "blk.0.attn_output.weight", 8)
        linear(np.empty((1, 8), np.float32), w4, np.zeros((1, 1000), np.float32), "q4_k", "o")


def test_get_rows_rejects_bad_ids(q8):
    w = q8[0]
    out = np.empty((2, 640), np.float32)
    with pytest.raises(ShapeError, match=r"token_embd.weight: row id 256 out of range \[0, 256\)"):
        get_rows(out, w, np.array([1, 256]), "q8_0", "token_embd.weight")
    with pytest.raises(ShapeError, match="row id -1"):
        get_rows(out, w, np.array([-1, 0]), "q8_0", "token_embd.weight")
    with pytest.raises(ShapeError, match="token_embd.weight: ids must be a 1-D integer"):
        get_rows(out, w, np.array([1.0, 2.0]), "q8_0", "token_embd.weight")
    with pytest.raises(ShapeError, match=r"out must have shape \(2, 640\)"):
        get_rows(np.empty((2, 639), np.float32), w, np.array([1, 2]), "q8_0", "token_embd.weight")
    empty = get_rows(np.empty((0, 640), np.float32), w, np.array([], np.int64), "q8_0")
    assert empty.shape == (0, 640)


def test_kernels_run_as_python_without_jit():
    """NUMBA_DISABLE_JIT=1: the same kernel code as plain Python (numpy twins of the
    intrinsics) still matches the references, so kernels can be stepped through."""
    script = """
import sys
import numpy as np
from workbench.formats.gguf import GGUFFile
from workbench.kernels.linear import linear, get_rows
from workbench.quant import FORMATS, dequantize_ref, quantize_activation_ref, quantize_ref
rng = np.random.default_rng(0)
dense = rng.standard_normal((8, 512)).astype(np.float32)
gemma = GGUFFile.open(sys.argv[1])
for fmt in ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k", "q5_k", "q6_k", "iq4_nl"]:
    if fmt == "q5_k":  # random blocks, d and dmin 0.01 (workbench has no q5_K quantizer)
        w = rng.integers(0, 256, (8, 2, 176), np.uint8)
        w[..., 0:4] = np.full((8, 2, 2), 0.01, np.float16).view(np.uint8)
        w = w.reshape(8, -1)
    elif fmt == "q4_k":
        w = gemma.raw("blk.0.attn_output.weight")[:8]
    elif fmt == "q6_k":
        w = gemma.raw("blk.0.ffn_down.weight")[:8]
    else:
        w = quantize_ref(fmt, dense)
    T = 7 if fmt == "f32" else 2  # f32: 7 tokens take its prefill tiles (6 and 1) on packed x
    x = rng.standard_normal((T, dequantize_ref(fmt, w[:1]).shape[1])).astype(np.float32)
    out = linear(np.empty((T, 8), np.float32), w, x, fmt)
    vd = FORMATS[fmt].vec_dot
    xa = dequantize_ref(vd, quantize_activation_ref(vd, x)).astype(np.float64)
    W = dequantize_ref(fmt, w).astype(np.float64)
    err = (np.abs(out - xa @ W.T) / (np.abs(xa) @ np.abs(W).T)).max()
    assert err < 2e-4, (fmt, err)
    rows = get_rows(np.empty((2, x.shape[1]), np.float32), w, np.array([1, 5]), fmt)
    assert np.array_equal(rows, dequantize_ref(fmt, w[[1, 5]])), fmt
print("ok")
"""
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    command = [sys.executable, "-c", script, str(gemma3_path())]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-3000:]


# ---- bit for bit against llama.cpp's CPU backend ------------------------------------------

GGML_TYPE = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8, "q8_1": 9,
             "q4_k": 12, "q5_k": 13, "q6_k": 14, "q8_k": 15, "iq4_nl": 20, "bf16": 30}
_FROM_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
_VEC_DOT = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                            ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
_GEMV = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                         ctypes.c_void_p, ctypes.c_int, ctypes.c_int)


class _CpuTraits(ctypes.Structure):  # ggml-cpu.h: struct ggml_type_traits_cpu
    _fields_ = [("from_float", ctypes.c_void_p), ("vec_dot", ctypes.c_void_p),
                ("vec_dot_type", ctypes.c_int), ("nrows", ctypes.c_int64)]


@lru_cache(maxsize=None)
def ggml_cpu():
    """llama.cpp's CPU backend library, as built by llama-cpp-python; skip without it."""
    spec = importlib.util.find_spec("llama_cpp")  # found, not imported (that loads llama)
    lib = spec and Path(spec.submodule_search_locations[0]) / "lib" / "libggml-cpu.so"
    if not lib or not lib.exists():
        pytest.skip("llama-cpp-python is not installed (pip install -e '.[reference]')")
    cpu = ctypes.CDLL(str(lib))
    cpu.ggml_cpu_init()
    cpu.ggml_get_type_traits_cpu.restype = ctypes.POINTER(_CpuTraits)
    return cpu


def ggml_quantize(vec_dot: str, x: np.ndarray) -> np.ndarray:
    """One activation row quantized by llama.cpp (`type_traits_cpu[...].from_float`)."""
    x = np.ascontiguousarray(x, np.float32)
    f = FORMATS[vec_dot]
    out = np.zeros(x.size // f.block_size * f.type_size, np.uint8)
    traits = ggml_cpu().ggml_get_type_traits_cpu(GGML_TYPE[vec_dot]).contents
    _FROM_FLOAT(traits.from_float)(x.ctypes.data, out.ctypes.data, x.size)
    return out


def ggml_vec_dot(fmt: str, w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """out (T, rows) from llama.cpp's vec_dot, one weight row and one token at a time."""
    traits = ggml_cpu().ggml_get_type_traits_cpu(GGML_TYPE[fmt]).contents
    vec_dot, s = _VEC_DOT(traits.vec_dot), np.zeros(1, np.float32)
    w = np.ascontiguousarray(w)
    out = np.zeros((x.shape[0], w.shape[0]), np.float32)
    for t in range(x.shape[0]):
        xq = ggml_quantize(FORMATS[fmt].vec_dot, x[t])
        for r in range(w.shape[0]):
            vec_dot(x.shape[1], s.ctypes.data, 0, w[r].ctypes.data, 0, xq.ctypes.data, 0, 1)
            out[t, r] = s[0]
    return out


def repack_x8(fmt: str, w: np.ndarray) -> np.ndarray:
    """Rows in groups of 8 -> llama.cpp's block_q4_0x8 / block_q4_Kx8 / block_iq4_nlx8
    (interleave 8), as its CPU "repack" buffer does at load (make_block_*x8)."""
    f = FORMATS[fmt]
    rows, nb = w.shape[0], w.shape[1] // f.type_size
    blocks = np.ascontiguousarray(w).reshape(rows // 8, 8, nb, f.type_size).transpose(0, 2, 1, 3)
    head = 2 if fmt in ("q4_0", "iq4_nl") else 16  # bytes before the quants: d, or d, dmin, scales[12]
    qs = blocks[..., head:].reshape(rows // 8, nb, 8, -1, 8).transpose(0, 1, 3, 2, 4)
    qs = qs.reshape(rows // 8, nb, -1)  # 8 bytes of row 0, 8 of row 1, ..., then the next 8
    if fmt in ("q4_0", "iq4_nl"):  # q4_0's nibbles are stored xor 0x88 (signed), iq4_nl's as they are
        return np.concatenate([blocks[..., 0:2].reshape(rows // 8, nb, 16), qs ^ (0x88 if fmt == "q4_0" else 0)], -1)
    d = blocks[..., 0:2].reshape(rows // 8, nb, 16)
    dmin = blocks[..., 2:4].reshape(rows // 8, nb, 16)
    sc = blocks[..., 4:16].astype(np.int32)  # (groups, nb, 8 rows, 12)
    # per sub-block j the 8 rows' 6-bit scales s and mins m, repacked as in one q4_K block
    s = np.concatenate([sc[..., 0:4] & 63, ((sc[..., 0:4] & 192) >> 2) | (sc[..., 8:12] & 15)], -1)
    m = np.concatenate([sc[..., 4:8] & 63, ((sc[..., 4:8] & 192) >> 2) | (sc[..., 8:12] >> 4)], -1)
    s, m = s.transpose(0, 1, 3, 2), m.transpose(0, 1, 3, 2)  # (groups, nb, sub-block, row)
    packed = np.concatenate([
        (s[..., 0:4] & 63) + ((s[..., 4:8] & 48) << 2),
        (m[..., 0:4] & 63) + ((m[..., 4:8] & 48) << 2),
        (s[..., 4:8] & 15) + ((m[..., 4:8] & 15) << 4),
    ], axis=-1)  # (groups, nb, 8 sub-blocks, 12)
    scales = packed.reshape(rows // 8, nb, 2, 4, 12).reshape(rows // 8, nb, 96).astype(np.uint8)
    return np.concatenate([d, dmin, scales, qs], axis=-1)


def ggml_gemv(fmt: str, w: np.ndarray, x: np.ndarray) -> np.ndarray:
    """out (T, rows) from llama.cpp's repacked ggml_gemv_<fmt>_8x8 (q4_0, q4_K, iq4_nl)."""
    name = {"q4_0": "ggml_gemv_q4_0_8x8_q8_0", "q4_k": "ggml_gemv_q4_K_8x8_q8_K",
            "iq4_nl": "ggml_gemv_iq4_nl_8x8_q8_0"}[fmt]
    gemv = _GEMV(ctypes.cast(getattr(ggml_cpu(), name), ctypes.c_void_p).value)
    packed = np.ascontiguousarray(repack_x8(fmt, w))
    out = np.zeros((x.shape[0], w.shape[0]), np.float32)
    for t in range(x.shape[0]):
        xq = ggml_quantize(FORMATS[fmt].vec_dot, x[t])
        gemv(x.shape[1], out[t].ctypes.data, 0, packed.ctypes.data, xq.ctypes.data, 1, w.shape[0])
    return out


LLAMA_CASES = [  # (format, weights) with the kernel llama.cpp runs on them at decode
    ("q8_0", lambda: real_weight("smollm2", "token_embd.weight", 128)),
    ("q4_1", lambda: real_weight("smollm2", "blk.0.attn_q.weight", 64)),
    ("q5_0", lambda: real_weight("gemma3", "blk.0.attn_q.weight", 64)),
    ("q4_k", lambda: real_weight("gemma3", "blk.0.attn_output.weight", 64)),
    ("q5_k", lambda: random_blocks("q5_k", 64, 2048)),  # x86 has no repacked q5_K gemv
    ("q6_k", lambda: real_weight("gemma3", "blk.0.ffn_down.weight", 64)),
    ("q4_0", lambda: synthetic_weight("q4_0")[:64]),
    ("q5_1", lambda: synthetic_weight("q5_1")[:64]),  # no test model holds q5_1
    ("iq4_nl", lambda: synthetic_weight("iq4_nl")[:64]),
    ("f32", lambda: synthetic_weight("f32")[:64]),
    ("f16", lambda: synthetic_weight("f16")[:64]),
    ("bf16", lambda: synthetic_weight("bf16")[:64]),
]


@pytest.mark.parametrize("vec_dot", ["q8_0", "q8_1", "q8_k", "f16", "bf16"])
def test_activation_quantization_matches_llama_cpp(vec_dot):
    x = activations(3, 1024)
    x[1, :32] = np.arange(32, dtype=np.float32) - 15.5
    for t in range(3):
        ours = quantize_activation(vec_dot, x[t : t + 1])[0]
        assert np.array_equal(ours, ggml_quantize(vec_dot, x[t]))


@pytest.mark.parametrize("fmt, weights", LLAMA_CASES, ids=[c[0] for c in LLAMA_CASES])
def test_linear_matches_llama_cpp_bit_for_bit(fmt, weights):
    w = weights()
    x = activations(2, dequantize_ref(fmt, w[:1]).shape[1], seed=5)
    ours = linear(np.empty((2, w.shape[0]), np.float32), w, x, fmt)
    theirs = ggml_gemv(fmt, w, x) if fmt in ("q4_0", "q4_k", "iq4_nl") else ggml_vec_dot(fmt, w, x)
    if FORMATS[fmt].block_size == 1 and not ggml_cpu().ggml_cpu_has_avx512():
        # The float kernels sum in the order of llama.cpp's AVX-512 build (16-lane
        # accumulators); a build without AVX-512 (this CPU lacks it) sums in 8 lanes, so
        # there the two agree to float32 rounding of the sum, not bit for bit. The
        # integer-dot formats above use the same 8-lane order in both builds.
        dense = dequantize_ref(fmt, w).astype(np.float64)
        bound = np.abs(x.astype(np.float64)) @ np.abs(dense).T * 64 * np.finfo(np.float32).eps
        assert np.all(np.abs(ours.astype(np.float64) - theirs) <= bound)
        assert not np.array_equal(ours, np.zeros_like(ours))
        return
    assert np.array_equal(ours.view(np.uint32), theirs.view(np.uint32))


def test_iq4_nl_quantizer_matches_llama_cpp():
    """quantize_ref("iq4_nl") == ggml's quantize_row_iq4_nl_ref (one call over the whole
    array, whose all-zero blocks keep the quants of the block before: never the first)."""
    rng = np.random.default_rng(13)
    x = (rng.standard_normal((64, 512)) * rng.uniform(1e-6, 50, (64, 1))).astype(np.float32)
    x[3, 64:128] = 0  # two all-zero blocks
    x[4, :32] = np.arange(32, dtype=np.float32) - 15.5
    x[5, 32:64] = 3.0  # constant block
    x[6, 35], x[6, 40] = 9.0, -9.0  # equal magnitudes: the first one's sign wins
    x[7, :32] *= 1e-15  # below and around ggml's GROUP_MAX_EPS
    theirs = np.zeros(x.size // 32 * 18, np.uint8)
    ggml_cpu().quantize_row_iq4_nl_ref(ctypes.c_void_p(x.ctypes.data), ctypes.c_void_p(theirs.ctypes.data),
                                       ctypes.c_int64(x.size))
    assert np.array_equal(quantize_ref("iq4_nl", x), theirs.reshape(64, -1))


def test_prepared_weight_equals_linear_and_still_validates():
    from workbench.kernels.linear import Weight

    rng = np.random.default_rng(11)
    raw = quantize_ref("q8_0", rng.standard_normal((40, 64)).astype(np.float32))
    x = rng.standard_normal((3, 64)).astype(np.float32)
    want, got = np.empty((3, 40), np.float32), np.empty((3, 40), np.float32)
    linear(want, raw, x, "q8_0", "blk.0.attn_q.weight")
    w = Weight(raw, "q8_0", "blk.0.attn_q.weight")
    assert np.array_equal(w.matvec(got, x), want)
    with pytest.raises(ShapeError, match="blk.0.attn_q.weight"):
        w.matvec(np.empty((3, 39), np.float32), x)
    with pytest.raises(ShapeError, match="blk.0.attn_q.weight"):
        w.matvec(got, x[:, :32].copy())
    with pytest.raises(ShapeError, match="blk.0.attn_q.weight"):
        w.matvec(got, x.astype(np.float64))
    with pytest.raises(ShapeError, match="blk.0.attn_q.weight"):
        Weight(raw[:, :33], "q8_0", "blk.0.attn_q.weight")
