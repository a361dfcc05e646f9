"""One compiled step per model, what runs traced or not (`workbench.nn.step`).

Every forward (a prompt chunk or one decode token) is one call into the model's `step`.
A trace at any level runs that same step, which then reads the cycle counter after each
op: for every model kind and weight format (Q4_1, Q8_0 and Q4_0 SmolLM2; Gemma 3's
Q4_K_M mix with its GELU table and QK norms; F32 HF directories with exact GELU,
quantized above a threshold; the tiny GPT-2 with biases) and both KV cache types, the
logits of a greedy continuation are equal bit for bit traced and untraced, and an op
trace names every op. Also: kernel choice is data (a built-in variant made default runs
inside the step; a Python kernel is refused by name), a step allocates nothing in numba
but its arguments' wrappers, and processes sharing one numba cache neither crash nor
make it grow.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest

import workbench
from tests._models import gemma3_path, smollm2_path
from workbench.errors import UnsupportedError
from workbench.kernels import registry
from workbench.kernels.formats.q4_1 import one_row_serial
from workbench.kernels.isa.x86 import cpu_features
from workbench.kernels.table import FORMATS

ROOT = Path(__file__).resolve().parents[1]
TINY_GPT2 = str(ROOT / "data" / "tiny-gpt2")
CASES = [
    ("smollm2-135m", {}, "f16"),
    ("smollm2-135m", {}, "f32"),
    ("smollm2-135m:q8_0", {}, "f16"),
    ("smollm2-135m:q4_0", {}, "f16"),
    ("smollm2-135m:hf-f32", {"quant_threshold": 1024}, "f16"),
    ("gemma3-270m", {}, "f16"),
    ("gemma3-270m", {}, "f32"),
    ("gemma3-270m:hf-f32", {"quant_threshold": 1024, "quant_type": "q4_0"}, "f32"),
    (TINY_GPT2, {}, "f16"),
]
PROMPT = "The three most important inventions of the last century were"


def _load(source: str, kv_type: str = "f16", **options):
    if not source.startswith(str(ROOT)):
        (gemma3_path if source.startswith("gemma") else smollm2_path)()  # skips without the package
    return workbench.load(source, threads=1, n_ctx=128, kv_type=kv_type, **options)


def greedy_logits(model, level: str | None, steps: int = 4) -> list[np.ndarray]:
    """Logits of the prompt and of `steps` greedy one-token forwards, traced at `level`."""
    model.reset()
    ids = model.encode_prompt(PROMPT)
    out = []
    with workbench.trace(level) if level else _untraced():
        out.append(model.forward(ids).copy())
        for _ in range(steps):
            out.append(model.forward([int(out[-1].argmax())]).copy())
    return out


class _untraced:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


@pytest.mark.slow
@pytest.mark.parametrize("source,options,kv_type", CASES, ids=[f"{Path(s).name}-{kv}" for s, _, kv in CASES])
def test_traced_logits_equal_untraced(source, options, kv_type):
    model = _load(source, kv_type, **options)
    want = greedy_logits(model, None)
    for level in ("step", "layer", "op"):
        got = greedy_logits(model, level)
        for i, (a, b) in enumerate(zip(want, got)):
            assert np.array_equal(a, b), f"{source} {level} step {i}: max |diff| {np.abs(a - b).max()}"


@pytest.fixture(scope="module")
def smollm2():
    return _load("smollm2-135m")


@pytest.fixture(scope="module")
def smollm2_gguf_layout():
    """SmolLM2 with its Q4_1 weights as the file stores them: registry kernels read GGUF bytes
    (a default load repacks Q4_1 for `rows16` on AVX-512 VNNI CPUs)."""
    return _load("smollm2-135m", repack=False)


OPS = {"embedding_lookup", "attn_norm", "qkv", "rope_q", "rope_k", "kv_cache", "attention", "attn_output",
       "residual", "ffn_norm", "ffn_gate_up", "ffn_act", "ffn_down", "output_norm", "output"}


@pytest.mark.slow
def test_op_trace_names_every_op_and_covers_the_step(smollm2):
    with workbench.trace("op") as t:
        smollm2.generate("Hello", max_tokens=3)
    spans = t.spans
    ops = {s.name for s in spans if s.kind == "op"}
    assert OPS <= ops, OPS - ops
    step = next(i for i, s in enumerate(spans) if s.name == "decode_step[1]")
    children = [s for s in spans if s.parent == step]
    assert [c.name for c in children][:2] == ["embedding", "layer[0]"]
    assert children[-2].name == "output_norm" and children[-1].name == "lm_head"
    assert sum(c.seconds for c in children) <= spans[step].seconds
    for a, b in zip(children, children[1:]):  # the ops follow each other: no gap between blocks
        assert abs(a.start + a.seconds - b.start) < 1e-9
    qkv = next(s for s in spans if s.name == "qkv" and s.layer == 3)
    assert qkv.attrs["weight"] == "blk.3.attn_q.weight+blk.3.attn_k.weight+blk.3.attn_v.weight"
    assert qkv.attrs["bytes"] > qkv.attrs["weight_bytes"] > 0 and qkv.gbps > 0


@pytest.mark.slow
def test_a_builtin_variant_made_default_runs_inside_the_step(smollm2_gguf_layout):
    smollm2 = smollm2_gguf_layout
    want = greedy_logits(smollm2, None, steps=2)
    before = registry.default_name("matvec", "q4_1")
    registry.set_default("matvec", "q4_1", "one_row")
    try:
        assert smollm2.net.products.kernel_names()["q4_1"] == "one_row"
        got = greedy_logits(smollm2, None, steps=2)
    finally:
        registry.set_default("matvec", "q4_1", before)
    assert smollm2.net.products.kernel_names()["q4_1"] == FORMATS["q4_1"].choose(cpu_features())
    for a, b in zip(want, got):  # the two kernels are equal bit for bit (test_formats)
        assert np.array_equal(a, b)


@pytest.mark.slow
def test_a_notebook_kernel_made_default_runs_inside_the_step(smollm2_gguf_layout):
    """An njit kernel registered from Python runs inside a step recompiled around it (what
    a trace then times is what runs); anything else is refused by name."""
    smollm2 = smollm2_gguf_layout

    @numba.njit
    def same(out, w, x):  # the built-in one-row kernel, equal bit for bit to the default
        one_row_serial(out, w, x, np.empty(0, np.int8), np.empty(0, np.int32), np.empty(0, np.float32))

    @numba.njit
    def zeros(out, w, x):  # visibly wrong: every q4_1 product is zero
        out[:] = 0

    want = greedy_logits(smollm2, None, steps=2)
    before = registry.default_name("matvec", "q4_1")
    registry.register("matvec", "q4_1", "notebook_same", same, default=True)
    try:
        assert smollm2.net.products.kernel_names()["q4_1"] == "python-registered: notebook_same"
        got = greedy_logits(smollm2, "op", steps=2)
        registry.register("matvec", "q4_1", "notebook_zeros", zeros, default=True)
        assert not np.array_equal(greedy_logits(smollm2, None, steps=0)[0], want[0])
        registry.register("matvec", "q4_1", "not_njit", lambda out, w, x: None, default=True)
        with pytest.raises(UnsupportedError, match="not compiled with numba"):
            smollm2.forward([1])
    finally:
        registry.set_default("matvec", "q4_1", before)
    smollm2.reset()
    for a, b in zip(want, got):
        assert np.array_equal(a, b)


ALLOCATIONS = """
import numpy as np, workbench
import workbench.models.llama as llama
from numba.core.runtime import rtsys
arrays, real = [], llama.step
def n_arrays(args):
    return sum(n_arrays(a) if isinstance(a, tuple) else isinstance(a, np.ndarray) for a in args)
def counting(*args):
    arrays.append(n_arrays(args))
    return real(*args)
llama.step = counting
model = workbench.load("smollm2-135m", threads=1, n_ctx=64)
net, state = model.net, model.net.new_state(n_batch=8)
net.forward(np.arange(4, dtype=np.int64), state)
net.forward(np.array([5], np.int64), state)
before = rtsys.get_allocation_stats().alloc
for tok in range(3):
    net.forward(np.array([tok], np.int64), state)
print((rtsys.get_allocation_stats().alloc - before) / 3, arrays[-1])
"""


@pytest.mark.slow
def test_a_step_allocates_nothing(smollm2):
    """numba counts each array argument's wrapper as an allocation (NUMBA_NRT_STATS=1); a
    step must allocate exactly those, nothing per layer or per op."""
    env = dict(os.environ, NUMBA_NRT_STATS="1")
    done = subprocess.run([sys.executable, "-c", ALLOCATIONS], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    per_step, arrays = done.stdout.split()
    assert float(per_step) == float(arrays), f"{per_step} allocations per step for {arrays} array arguments"


def _cache_files() -> int:
    from workbench.kernels import cache

    return sum(1 for p in cache.directory().rglob("*") if p.suffix in (".nbi", ".nbc"))


@pytest.mark.slow
def test_processes_sharing_one_cache_neither_crash_nor_grow_it(smollm2):
    """The crash this guards against: a step taking a compiled function as an argument got
    a new cache entry in every process, and after a dozen processes every run died with
    `ReferenceError: underlying object has vanished`. Two rounds of fresh processes over
    two architectures, both KV types and both thread counts: every run exits 0 and the
    second round adds no file to the cache."""
    combos = [(TINY_GPT2, "f16", 1), (TINY_GPT2, "f32", 2), ("smollm2-135m", "f32", 2), ("smollm2-135m", "f16", 1)]

    def one_round():
        for source, kv, threads in combos:
            cmd = [sys.executable, "-m", "workbench", "generate", source, "-p", "Hello", "-n", "4", "--json",
                   "--kv-type", kv, "--threads", str(threads)]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
            assert done.returncode == 0, (cmd, done.stderr[-2000:])
            assert len(json.loads(done.stdout)["tokens"]) >= 1

    one_round()
    files = _cache_files()
    one_round()
    one_round()
    assert _cache_files() == files, "fresh processes added compiled code to the cache"
