"""The compiled decode step (`workbench.nn.compiled`) against the layer-by-layer path.

A one-token forward runs in one call into numba unless a trace asks for layers or ops;
both paths call the same kernels in the same order, so for every model kind and weight
format (Q4_1, Q8_0 and Q4_0 SmolLM2; Gemma 3's Q4_K_M mix with its GELU table and QK
norms; F32 HF directories with exact GELU, quantized above a threshold) and both KV cache
types, the logits of a greedy continuation must be equal bit for bit. Also: a trace says
which path ran, a kernel variant made default turns the compiled step off, and a step
allocates nothing in numba but its arguments' wrappers.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import workbench
from tests._models import gemma3_path, smollm2_path
from workbench.kernels import registry

pytestmark = pytest.mark.slow
CASES = [
    ("smollm2-135m", {}, "f16"),
    ("smollm2-135m", {}, "f32"),
    ("smollm2-135m:q8_0", {}, "f16"),
    ("smollm2-135m:q4_0", {}, "f16"),
    ("smollm2-135m:hf-f32", {"quant_threshold": 1024}, "f16"),
    ("gemma3-270m", {}, "f16"),
    ("gemma3-270m", {}, "f32"),
    ("gemma3-270m:hf-f32", {"quant_threshold": 1024, "quant_type": "q4_0"}, "f32"),
]
PROMPT = "The three most important inventions of the last century were"


def _load(source: str, **options):
    (gemma3_path if source.startswith("gemma") else smollm2_path)()  # skips without the package
    return workbench.load(source, threads=1, n_ctx=128, **options)


def greedy_logits(model, kv_type: str, compiled_step: bool, steps: int = 6) -> list[np.ndarray]:
    """Logits of the prompt and of `steps` greedy one-token forwards, on a fresh state."""
    net = model.net
    plan = net.products
    state = net.new_state(n_batch=32, kv_type=kv_type)
    if not compiled_step:
        net.products = None
    try:
        ids = model.encode_prompt(PROMPT)
        out = [net.forward(np.asarray(ids, np.int64), state).copy()]
        for _ in range(steps):
            out.append(net.forward(np.array([out[-1].argmax()], np.int64), state).copy())
    finally:
        net.products = plan
    return out


@pytest.mark.parametrize("source,options,kv_type", CASES, ids=[f"{s}-{kv}" for s, _, kv in CASES])
def test_compiled_step_equals_layer_by_layer(source, options, kv_type):
    model = _load(source, **options)
    assert model.net.products is not None, f"{source} gets no compiled step"
    want = greedy_logits(model, kv_type, compiled_step=False)
    got = greedy_logits(model, kv_type, compiled_step=True)
    for i, (a, b) in enumerate(zip(want, got)):
        assert np.array_equal(a, b), f"{source} step {i}: max |diff| {np.abs(a - b).max()}"


@pytest.fixture(scope="module")
def smollm2():
    return _load("smollm2-135m")


def test_trace_names_the_path(smollm2):
    for level, path in (("step", "compiled"), ("layer", "instrumented"), ("op", "instrumented")):
        with workbench.trace(level=level) as t:
            smollm2.generate("Hello", max_tokens=3)
        assert t.meta["decode_path"].startswith(path), (level, t.meta["decode_path"])
    assert any(s.kind == "op" for s in t.spans)  # the op-level trace still has its ops


def test_a_new_default_kernel_turns_the_compiled_step_off(smollm2, monkeypatch):
    calls = []
    builtin = registry.default("matvec", "q4_1")

    def counted(out, w, x):
        calls.append(w.shape)
        return builtin(out, w, x)

    before = registry.default_name("matvec", "q4_1")
    registry.register("matvec", "q4_1", "counted", counted, default=True)
    try:
        assert not smollm2.net.products.runs()
        smollm2.generate("Hello", max_tokens=3)
        assert calls, "the decode loop bypassed the default kernel"
    finally:
        registry.set_default("matvec", "q4_1", before)
    assert smollm2.net.products.runs()


ALLOCATIONS = """
import numpy as np, workbench
import workbench.models.llama as llama
from numba.core.runtime import rtsys
arrays, real = [], llama.decode_step
def n_arrays(args):
    return sum(n_arrays(a) if isinstance(a, tuple) else isinstance(a, np.ndarray) for a in args)
def counting(*args):
    arrays.append(n_arrays(args))
    return real(*args)
llama.decode_step = counting
model = workbench.load("smollm2-135m", threads=1, n_ctx=64)
net, state = model.net, model.net.new_state(n_batch=8)
net.forward(np.arange(4, dtype=np.int64), state)
net.forward(np.array([5], np.int64), state)
before = rtsys.get_allocation_stats().alloc
for tok in range(3):
    net.forward(np.array([tok], np.int64), state)
print((rtsys.get_allocation_stats().alloc - before) / 3, arrays[-1])
"""


def test_a_step_allocates_nothing(smollm2):
    """numba counts each array argument's wrapper as an allocation (NUMBA_NRT_STATS=1); a
    step must allocate exactly those, nothing per layer or per op."""
    env = dict(os.environ, NUMBA_NRT_STATS="1")
    done = subprocess.run([sys.executable, "-c", ALLOCATIONS], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    per_step, arrays = done.stdout.split()
    assert float(per_step) == float(arrays), f"{per_step} allocations per step for {arrays} array arguments"
