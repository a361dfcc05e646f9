"""Tracing: spans, exporters, perf logging, and what a traced SmolLM2 step must account for.

The first half runs on hand-made spans (fast); the second traces a few real decode steps
and checks the bytes against the file's tensor table, the time against the step, and
the tokens against an untraced run. No assertion is about speed.
"""

import json
import logging
import os
import re
import subprocess
import sys
from collections import defaultdict

import numpy as np
import pytest

import workbench
from tests._models import smollm2_path
from workbench.trace import NULL_SPAN, NULL_TRACER, LogTracer, Span, Tracer, current, step_summary, tracing
from workbench.trace.logs import lines, tracer_from_env

OP_LINE = re.compile(r"^\[perf\] linear::forward \[\d+, \d+\]->\[\d+,\d+\] Q4_1 [\d.]+ms [\d.]+GB/s "
                     r"blk\.\d+\.\w+\.weight$")
LAYER_LINE = re.compile(r"^\[perf\] transformer\[\d+\]::forward attn=[\d.]+ms ffn=[\d.]+ms$")
MODEL_LINE = re.compile(r"^\[perf\] model::forward embedding=[\d.]+ms layers=[\d.]+ms norm=[\d.]+ms "
                        r"projection=[\d.]+ms total=[\d.]+ms step=\S+$")


def _fake_step(tracer, step="decode_step[0]", n_layers=2):
    """The span tree of one decode step of a tiny model, with real (tiny) timings."""
    with tracer.span(step, kind="step", tokens=1):
        with tracer.span("embedding"):
            with tracer.span("embedding_lookup", kind="op", weight="token_embd.weight", fmt="q8_0", shape=(1, 8),
                             bytes=66, weight_bytes=34):
                pass
        for i in range(n_layers):
            with tracer.span(f"layer[{i}]", kind="layer", layer=i):
                with tracer.span("attn"):
                    with tracer.span("q", kind="op", weight=f"blk.{i}.attn_q.weight", fmt="q4_1", shape=(1, 8, 8),
                                     bytes=np.int64(112), weight_bytes=48, flops=128):
                        sum(range(100))
                with tracer.span("ffn"):
                    with tracer.span("ffn_act", kind="op", shape=(1, 16), bytes=192, flops=96):
                        pass
        with tracer.span("output_norm"):
            pass
        with tracer.span("lm_head"):
            with tracer.span("output", kind="op", weight="token_embd.weight", fmt="q8_0", shape=(1, 8, 16),
                             bytes=600, weight_bytes=544, flops=256):
                pass


def _fake_trace(level="op"):
    t = Tracer(level, meta={"model": "fake"})
    with t.span("generate", kind="root"):
        with t.span("prefill", kind="step", tokens=3):
            pass
        for s in range(2):
            with t.span("sample"):
                pass
            _fake_step(t, f"decode_step[{s}]")
    return t


# -- spans and levels -------------------------------------------------------------------


@pytest.mark.skipif(bool(os.environ.get("WORKBENCH_LOG")), reason="WORKBENCH_LOG makes a LogTracer the default")
def test_null_tracer_spans_are_one_shared_object():
    assert current() is NULL_TRACER and not NULL_TRACER.enabled and not NULL_TRACER.ops
    a = NULL_TRACER.span("x")
    b = NULL_TRACER.span("layer[3]", kind="layer", layer=3)
    c = NULL_TRACER.span("q", kind="op", bytes=10, flops=2)
    assert a is b is c is NULL_SPAN
    with a as entered:
        assert entered is NULL_SPAN


def test_tracing_block_sets_and_restores_current():
    before = current()
    with tracing("layer") as t:
        assert current() is t and t.level == "layer"
        with tracing("op") as inner:
            assert current() is inner
        assert current() is t
    assert current() is before


def test_levels_drop_deeper_spans():
    counts = {level: defaultdict(int) for level in ("step", "layer", "op")}
    for level in counts:
        for s in _fake_trace(level).spans:
            counts[level][s.kind] += 1
    assert counts["step"]["op"] == counts["step"]["layer"] == 0 and counts["step"]["step"] == 3
    assert counts["layer"]["op"] == 0 and counts["layer"]["layer"] == 4
    assert counts["op"]["op"] == 2 * (1 + 2 * 2 + 1)
    assert Tracer("op").ops and not Tracer("layer").ops and not Tracer("step").ops  # nn's hot-path check
    with pytest.raises(ValueError, match="trace level"):
        Tracer("kernel")


def test_paths_depths_and_layers():
    t = _fake_trace()
    by_path = {s.path: s for s in t.spans}
    q = by_path["generate/decode_step[1]/layer[1]/attn/q"]
    assert q.depth == 4 and q.layer == 1 and t.spans[q.parent].name == "attn"
    assert by_path["generate/decode_step[1]/lm_head/output"].layer == -1
    for s in t.spans:
        assert s.parent < 0 or t.spans[s.parent].depth == s.depth - 1


def _assert_children_within_parents(spans, slack=1e-9):
    kids = defaultdict(list)
    for s in spans:
        kids[s.parent].append(s)
    for i, parent in enumerate(spans):
        for c in kids[i]:
            assert c.seconds <= parent.seconds + slack, (c.path, parent.path)
            assert c.start >= parent.start - slack and c.start + c.seconds <= parent.start + parent.seconds + slack
        assert sum(c.seconds for c in kids[i]) <= parent.seconds + slack, parent.path


def test_children_never_exceed_parent_on_fake_trace():
    _assert_children_within_parents(_fake_trace().spans)


def test_trace_package_imports_nothing_of_workbench():
    import ast
    import importlib.util
    from pathlib import Path

    folder = Path(importlib.util.find_spec("workbench.trace").submodule_search_locations[0])
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            for name in names:
                assert not name.startswith("workbench") or name.startswith("workbench.trace"), (path.name, name)


# -- exporters --------------------------------------------------------------------------


def test_frame_columns_and_rates():
    df = _fake_trace().frame()
    for col in ["path", "op", "layer", "shape", "dtype", "bytes", "flops", "seconds", "GB/s", "GFLOP/s", "kind",
                "depth", "start"]:
        assert col in df.columns
    q = df[df["op"] == "q"].iloc[0]
    assert q["dtype"] == "q4_1" and q["shape"] == (1, 8, 8) and q["bytes"] == 112 and q["step"] == "decode_step[0]"
    assert q["GB/s"] == pytest.approx(112 / q["seconds"] / 1e9)
    assert q["GFLOP/s"] == pytest.approx(128 / q["seconds"] / 1e9)
    assert (df["parent"] < df.index).all()
    assert "roofline" in _fake_trace().frame(bandwidth_gbps=10.0).columns


def test_roofline_per_op_per_step():
    t = _fake_trace()
    roof = t.roofline(10.0)
    assert list(roof["roofline"]) == sorted(roof["roofline"])
    q = roof.loc["q"]
    assert q["calls"] == 2 and q["MB"] == pytest.approx(2 * 112 / 1e6)
    assert q["floor_ms"] == pytest.approx(q["MB"] / 10.0) and q["roofline"] == pytest.approx(q["GB/s"] / 10.0)
    with pytest.raises(ValueError):
        t.roofline(0)


def test_summary_is_step_summary():
    t = _fake_trace("layer")
    s = t.summary()
    assert s == step_summary(t)
    assert [r["step"] for r in s["steps"]] == ["prefill", "decode_step[0]", "decode_step[1]"]
    assert [r["layer"] for r in s["layers"]] == [0, 1] and "attn_ms" in s["layers"][0]


def test_chrome_trace_json_is_valid(tmp_path):
    t = _fake_trace()
    path = tmp_path / "trace.json"
    doc = t.to_chrome_json(path)
    assert json.loads(path.read_text()) == doc
    events = doc["traceEvents"]
    assert len(events) == len(t.spans)
    for e, s in zip(events, t.spans):
        assert e["ph"] == "X" and e["name"] == s.name and e["pid"] == 1 and e["tid"] == 1
        assert isinstance(e["ts"], (int, float)) and isinstance(e["dur"], (int, float)) and e["dur"] >= 0
        assert e["args"]["path"] == s.path
    q = next(e for e in events if e["name"] == "q")
    assert q["args"]["shape"] == [1, 8, 8] and q["args"]["bytes"] == 112 and q["args"]["GB/s"] > 0
    assert doc["otherData"]["model"] == "fake"


def test_save_load_round_trip(tmp_path):
    t = _fake_trace()
    t.save(tmp_path / "t.json")
    back = Tracer.load(tmp_path / "t.json")
    assert back.level == t.level and back.meta == t.meta
    assert back.spans == t.spans and isinstance(back.spans[0], Span)
    import pandas as pd

    pd.testing.assert_frame_equal(back.frame(), t.frame())
    (tmp_path / "bad.json").write_text('{"traceEvents": []}')
    with pytest.raises(ValueError, match="not a workbench trace"):
        Tracer.load(tmp_path / "bad.json")


# -- logging ----------------------------------------------------------------------------


def test_log_tracer_writes_lines_per_step_and_forgets(caplog):
    log = logging.getLogger("workbench.test_trace")
    tracer = LogTracer("op", log)
    with caplog.at_level(logging.DEBUG, logger=log.name):
        with tracer.span("generate", kind="root"):
            _fake_step(tracer, "decode_step[0]")
            assert len(tracer.spans) == 1  # the step's spans went out with its lines
            _fake_step(tracer, "decode_step[1]")
    assert tracer.spans == []
    got = [r.getMessage() for r in caplog.records]
    per_step = len(got) // 2
    assert per_step == 6 + 2 + 1  # op lines, transformer lines, the model line
    first = got[:per_step]
    assert first[0].startswith("[perf] embedding_lookup::forward [1, 8] Q8_0 ")
    assert re.match(r"^\[perf\] linear::forward \[1, 8\]->\[8,8\] Q4_1 [\d.]+ms [\d.]+GB/s blk\.0\.attn_q\.weight$",
                    first[1])
    assert first[2].startswith("[perf] ffn_act::forward [1, 16] ")
    assert LAYER_LINE.match(first[3]) and first[3].startswith("[perf] transformer[0]::forward")
    assert MODEL_LINE.match(first[-1]) and first[-1].endswith("step=decode_step[0]")


def test_log_tracer_at_layer_level_has_no_op_lines(caplog):
    log = logging.getLogger("workbench.test_trace")
    tracer = LogTracer("layer", log)
    with caplog.at_level(logging.DEBUG, logger=log.name):
        _fake_step(tracer)
    got = [r.getMessage() for r in caplog.records]
    assert len(got) == 3 and all(LAYER_LINE.match(g) for g in got[:2]) and MODEL_LINE.match(got[2])


def test_lines_of_a_bare_forward():
    t = Tracer("layer")
    with t.span("layer[0]", kind="layer", layer=0):
        with t.span("attn"):
            pass
    got = lines(t.spans, 0)
    assert len(got) == 1 and re.match(r"^\[perf\] transformer\[0\]::forward attn=[\d.]+ms$", got[0])


def test_env_values():
    assert tracer_from_env({}) is None and tracer_from_env({"WORKBENCH_LOG": "off"}) is None
    with pytest.warns(UserWarning, match="WORKBENCH_LOG"):
        assert tracer_from_env({"WORKBENCH_LOG": "verbose"}) is None
    assert tracer_from_env({"WORKBENCH_LOG": "Debug"}).level == "layer"
    assert tracer_from_env({"WORKBENCH_LOG": "trace"}).level == "op"


def test_env_var_makes_the_default_tracer_log():
    code = ("from workbench.trace import current\n"
            "from tests.test_trace import _fake_step\n"
            "_fake_step(current())\n")
    env = {**os.environ, "WORKBENCH_LOG": "trace"}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert r.returncode == 0, r.stderr
    got = r.stderr.strip().splitlines()
    assert sum(bool(OP_LINE.match(g)) for g in got) == 2, got
    assert sum(bool(LAYER_LINE.match(g)) for g in got) == 2 and MODEL_LINE.match(got[-1])


# -- a real model -----------------------------------------------------------------------

PROMPT = "The capital of France is"
N_TOKENS = 5


@pytest.fixture(scope="module")
def runs():
    model = workbench.load(smollm2_path(), threads=1, n_ctx=128)
    model.generate(PROMPT, max_tokens=2)  # load the kernels before anything is timed
    plain = model.generate(PROMPT, max_tokens=N_TOKENS)
    with tracing("op") as t:
        traced = model.generate(PROMPT, max_tokens=N_TOKENS)
    return model, plain, traced, t


def _steps(t):
    return [i for i, s in enumerate(t.spans) if s.kind == "step"]


@pytest.mark.slow
def test_traced_and_untraced_greedy_tokens_agree(runs):
    _, plain, traced, t = runs
    assert traced.tokens == plain.tokens and len(plain.tokens) == N_TOKENS
    assert len(_steps(t)) == N_TOKENS  # prefill + N - 1 decode steps


@pytest.mark.slow
def test_untraced_forward_opens_no_spans_and_reads_no_clock(runs):
    # untraced, the compiled step gets an empty marks array: no span, no cycle-counter read
    from workbench.trace import NullTracer

    class Counting(NullTracer):
        def __init__(self):
            self.kinds = []

        def span(self, name, kind="block", layer=-1, **attrs):
            self.kinds.append(kind)
            return NULL_SPAN

    model = runs[0]
    counting = Counting()
    model.reset()
    model.state.marks[:] = 0
    model.net.forward(np.array([1, 2], np.int64), model.state, counting)
    assert counting.kinds == [] and not model.state.marks.any()


@pytest.mark.slow
def test_linear_bytes_are_the_tensor_table_bytes(runs):
    model, _, _, t = runs
    tensors = model.source.tensors
    linears = [s for s in t.spans if s.kind == "op" and len(s.attrs.get("shape", ())) == 3 and "weight" in s.attrs]
    # fused: qkv, attn_output, ffn_gate_up, ffn_down per layer, then the lm_head
    assert len(linears) == N_TOKENS * (4 * model.config.n_layers + 1)
    for s in linears:
        T, n_in, n_out = s.attrs["shape"]
        parts = s.attrs["weight"].split("+")  # a fused weight is named after its parts
        assert s.attrs["weight_bytes"] == sum(tensors[p].n_bytes for p in parts), s.path
        assert s.attrs["bytes"] == s.attrs["weight_bytes"] + 4 * T * (n_in + n_out), s.path  # f32 x in, y out
        assert s.attrs["flops"] == 2 * T * n_in * n_out


@pytest.mark.slow
def test_decode_step_reads_every_weight_once(runs):
    model, _, _, t = runs
    tensors = model.source.tensors
    embd = tensors["token_embd.weight"]
    lm_head = tensors.get("output.weight", embd)
    expected = (sum(v.n_bytes for k, v in tensors.items() if k.startswith("blk."))
                + tensors["output_norm.weight"].n_bytes + lm_head.n_bytes + embd.n_bytes // model.config.vocab_size)
    df = t.frame()
    per_step = df[df["kind"] == "op"].groupby("step")["weight_bytes"].sum()
    decode = per_step[per_step.index.str.startswith("decode")]
    assert len(decode) == N_TOKENS - 1 and (decode == expected).all(), (decode.to_dict(), expected)


@pytest.mark.slow
def test_children_never_exceed_parent_on_model_trace(runs):
    _assert_children_within_parents(runs[3].spans)


@pytest.mark.slow
def test_step_children_cover_the_step(runs):
    # Every op of a step is inside a child span (residual adds included); what is left is
    # the Python call into the compiled step (~1% on a quiet machine). The median over
    # steps, and a bound well below that, keep a preempted call on a busy machine from failing it.
    t = runs[3]
    kids = defaultdict(float)
    for s in t.spans:
        if s.parent >= 0:
            kids[s.parent] += s.seconds
    steps = [kids[i] / t.spans[i].seconds for i in _steps(t)]
    assert float(np.median(steps)) > 0.9, steps
    layers = [kids[i] / s.seconds for i, s in enumerate(t.spans) if s.kind == "layer"]
    assert min(layers) > 0.999  # the ops of a layer tile it: one timestamp ends one and starts the next
    blocks = [kids[i] / s.seconds for i, s in enumerate(t.spans) if s.name in ("attn", "ffn") and s.kind == "block"]
    assert min(blocks) > 0.999


@pytest.mark.slow
def test_model_chrome_trace_nests(runs, tmp_path):
    t = runs[3]
    doc = t.to_chrome_json(tmp_path / "trace.json")
    events = json.loads((tmp_path / "trace.json").read_text())["traceEvents"]
    assert doc["traceEvents"] == events and len(events) == len(t.spans)
    for e, s in zip(events, t.spans):
        if s.parent >= 0:
            up = events[s.parent]
            assert up["ts"] - 0.01 <= e["ts"] and e["ts"] + e["dur"] <= up["ts"] + up["dur"] + 0.01


@pytest.mark.slow
def test_summary_of_model_trace(runs):
    model, _, _, t = runs
    s = t.summary()
    assert len(s["steps"]) == N_TOKENS and len(s["layers"]) == model.config.n_layers
    for row in s["steps"]:
        assert row["layers_ms"] + row["embedding_ms"] + row["norm_ms"] + row["projection_ms"] <= row["total_ms"] + 1e-6


@pytest.mark.slow
def test_cli_trace_writes_chrome_json(tmp_path, capsys):
    from workbench.cli import main

    out = tmp_path / "t.json"
    code = main(["trace", str(smollm2_path()), "--prompt", "Hi", "--max-tokens", "2", "--threads", "1",
                 "--out", str(out), "--no-roofline", "--json"])
    assert code == 0
    record = json.loads(capsys.readouterr().out)
    assert record["out"] == str(out) and len(record["tokens"]) == 2 and record["timings"]["steps"]
    assert all(e["ph"] == "X" for e in json.loads(out.read_text())["traceEvents"])


@pytest.mark.slow
def test_workbench_log_debug_from_the_cli():
    env = {**os.environ, "WORKBENCH_LOG": "debug"}
    r = subprocess.run([sys.executable, "-m", "workbench", "generate", str(smollm2_path()), "--prompt", "Hi",
                        "--max-tokens", "2", "--threads", "1"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    got = [g for g in r.stderr.splitlines() if g.startswith("[perf]")]
    assert sum(bool(MODEL_LINE.match(g)) for g in got) == 2  # prefill and one decode step
    assert sum(bool(LAYER_LINE.match(g)) for g in got) == 2 * 30
    assert not any("linear::forward" in g for g in got)
