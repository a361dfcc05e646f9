"""Plots of a real SmolLM2 trace: every bar is a measured span, every roof the one passed in.

One short generation is traced per level once for the module, saved and read back (the
plots read saved traces too). The checks compare figure data with the spans and with
the trace's own summaries (`step_summary`, `Tracer.roofline`), never with a clock.
"""

import ast
import math
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio
import pytest

import workbench
from tests._models import smollm2_path
from workbench import viz
from workbench.errors import ParameterError
from workbench.trace import NULL_TRACER, Tracer, tracing

PROMPT = "The capital of France is"
ROOF = 12.5  # GB/s: any positive number; the plots must draw exactly this one


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    """{level: Tracer} for "op", "layer", "step", and "short" (an op trace with no decode step)."""
    model = workbench.load(smollm2_path(), threads=1, n_ctx=64)
    model.generate(PROMPT, max_tokens=2)  # compile before tracing, so the trace shows steady steps
    out = {}
    for name, level, n in [("op", "op", 4), ("layer", "layer", 3), ("step", "step", 3), ("short", "op", 1)]:
        with tracing(level, {"model": "smollm2-135m"}) as t:
            model.generate(PROMPT, max_tokens=n)
        path = tmp_path_factory.mktemp("traces") / f"{name}.json"
        t.save(path)
        out[name] = Tracer.load(path)
    return out


def _close(a, b, rel=1e-9):
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)


def _decode_steps(t):
    return [s for s in t.spans if s.kind == "step" and s.name.startswith("decode")]


# --- flame and icicle ------------------------------------------------------------------

def test_flame_bars_are_the_spans_of_the_last_decode_step(traces):
    t = traces["op"]
    fig = viz.flame(t)
    assert isinstance(fig, go.Figure) and all(isinstance(d, go.Bar) for d in fig.data)
    assert {d.name for d in fig.data} == {"step", "embedding", "layer", "attn", "ffn", "output_norm", "lm_head"}
    spans = t.spans
    last = _decode_steps(t)[-1]
    bars = [(c[2], x, base, y) for d in fig.data for c, x, base, y in zip(d.customdata, d.x, d.base, d.y)]
    assert len({b[0] for b in bars}) == len(bars) == len([s for s in spans if s.path.startswith(last.path)])
    for index, x, base, y in bars:  # every bar is exactly its span: length, start, row
        s = spans[index]
        assert x == s.seconds * 1e3 and _close(base, (s.start - last.start) * 1e3) and y == s.depth - last.depth
    step_bar = [b for b in bars if b[3] == 0]
    assert len(step_bar) == 1 and spans[step_bar[0][0]].name == last.name and step_bar[0][1] == last.seconds * 1e3
    # the step's parts add up to what step_summary measures of it, and fit inside it
    row = next(r for r in t.summary()["steps"] if r["step"] == last.name)
    parts = sum(x for _, x, _, y in bars if y == 1)
    assert _close(parts, row["embedding_ms"] + row["layers_ms"] + row["norm_ms"] + row["projection_ms"])
    assert parts <= last.seconds * 1e3
    for _, x, base, _ in bars:
        assert -1e-9 <= base and base + x <= last.seconds * 1e3 + 1e-9
    assert fig.layout.yaxis.autorange == "reversed" and last.name in fig.layout.title.text


def test_flame_hover_names_ops_shapes_formats_and_bandwidth(traces):
    t = traces["op"]
    fig = viz.flame(t)
    names = {c[0] for d in fig.data for c in d.customdata}
    last = _decode_steps(t)[-1]
    ops = {s.name for s in t.spans if s.kind == "op" and s.path.startswith(last.path + "/")}
    assert ops <= names and {"attn_output", "ffn_down", "output", "embedding_lookup"} <= ops
    down = next(h for d in fig.data for c, h in zip(d.customdata, d.hovertext) if c[0] == "ffn_down")
    assert "<b>ffn_down</b>" in down and "shape 1x1536x576  q4_1" in down and "GB/s" in down and " ms" in down


def test_flame_step_argument(traces):
    t = traces["op"]
    decode = _decode_steps(t)
    assert viz.flame(t, 0).data[0].customdata[0][0] == decode[0].name
    assert viz.flame(t, -1).layout.title.text == viz.flame(t).layout.title.text
    prefill = viz.flame(t, "prefill")
    assert prefill.layout.title.text.startswith("Flame chart of prefill") and "tokens" in prefill.layout.title.text
    assert viz.flame(t, decode[1].name).data[0].customdata[0][0] == decode[1].name


def test_icicle_values_are_measured_ms(traces):
    t = traces["op"]
    fig = viz.icicle(t)
    assert len(fig.data) == 1 and isinstance(fig.data[0], go.Icicle)
    ice = fig.data[0]
    last = _decode_steps(t)[-1]
    assert ice.parents[0] == "" and ice.labels[0] == last.name and ice.values[0] == pytest.approx(last.seconds * 1e3,
                                                                                                  rel=1e-12)
    ids = set(ice.ids)
    assert all(p in ids for p in ice.parents[1:])
    for (name, _, index), value in zip(ice.customdata, ice.values):
        assert name == t.spans[index].name and _close(value, t.spans[index].seconds * 1e3)
    assert ice.branchvalues == "total" and "output" in ice.labels


# --- layer breakdown and timeline --------------------------------------------------------

def _row_traces(fig, row):
    axis = "x" if row == 1 else f"x{row}"
    return [d for d in fig.data if (d.xaxis or "x") == axis]


def test_layer_breakdown_sums_to_the_mean_step(traces):
    t = traces["op"]
    fig = viz.layer_breakdown(t)
    cats = {"attn", "ffn", "gaps", "embedding", "output_norm", "lm_head"}
    assert len(fig.data) == 2 * len(cats) and {d.name for d in fig.data} == cats
    decode = _decode_steps(t)
    prefill = next(s for s in t.spans if s.name == "prefill")
    prefill_row, decode_row = _row_traces(fig, 1), _row_traces(fig, 2)
    assert _close(sum(sum(d.y) for d in prefill_row), prefill.seconds * 1e3)
    assert _close(sum(sum(d.y) for d in decode_row), sum(s.seconds for s in decode) * 1e3 / len(decode))
    # per layer attn and ffn: the mean over decode steps that step_summary computes
    layers = {r["layer"]: r for r in t.summary()["layers"]}
    for d in decode_row:
        if d.name in ("attn", "ffn"):
            assert list(d.x) == [str(i) for i in range(30)]
            for x, y in zip(d.x, d.y):
                assert _close(y, layers[int(x)][f"{d.name}_ms"])
    assert {"embedding", "lm_head"} <= {c[0] for d in decode_row for c in d.customdata}


def test_layer_breakdown_one_phase_and_layer_level(traces):
    fig = viz.layer_breakdown(traces["layer"], phase="decode")
    assert len(fig.data) == 6 and len(_row_traces(fig, 2)) == 0
    assert "decode (mean of 2 steps)" in fig.layout.annotations[0].text
    assert len(viz.layer_breakdown(traces["short"], phase="prefill").data) == 6


def test_decode_timeline(traces):
    t = traces["step"]
    fig = viz.decode_timeline(t)
    assert len(fig.data) == 2 and isinstance(fig.data[0], go.Bar) and isinstance(fig.data[1], go.Scatter)
    decode = _decode_steps(t)
    assert list(fig.data[1].y) == [s.seconds * 1e3 for s in decode]
    assert [c[0] for c in fig.data[1].customdata] == [s.name for s in decode]
    prefill = next(s for s in t.spans if s.name == "prefill")
    assert list(fig.data[0].y) == [prefill.seconds * 1e3]
    assert "tok/s" in fig.layout.title.text and f"{len(decode)} steps" in fig.layout.title.text
    mean = sum(s.seconds for s in decode) * 1e3 / len(decode)
    assert _close(fig.layout.shapes[0].y0, mean)


# --- bandwidth and roofline --------------------------------------------------------------

def test_bandwidth_bars_and_roof(traces):
    t = traces["op"]
    fig = viz.bandwidth(t, ROOF)
    assert {d.name for d in fig.data} >= {"q4_1", "q8_0", "f32"} and all(isinstance(d, go.Bar) for d in fig.data)
    lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert len(lines) == 1 and lines[0].y0 == ROOF and lines[0].y1 == ROOF
    # an op of one format: the same GB/s as the trace's own roofline table
    table = t.roofline(ROOF)
    gbs = {c[0]: y for d in fig.data for c, y in zip(d.customdata, d.y)}
    for op in ("attn_output", "ffn_down", "output", "attn_norm"):
        assert _close(gbs[op], table.loc[op, "GB/s"])
    assert "ffn_down" in next(d for d in fig.data if d.name == "q4_1").hovertext[-1]


def test_bandwidth_roof_from_meta_or_none(traces, tmp_path):
    t = traces["op"]
    assert not [s for s in viz.bandwidth(t).layout.shapes if s.type == "line"]  # no roof known: no line
    path = tmp_path / "t.json"
    t.save(path)
    with_meta = Tracer.load(path)
    with_meta.meta["read_gbps"] = 7.25
    assert [s.y0 for s in viz.bandwidth(with_meta).layout.shapes] == [7.25]
    assert [s.y0 for s in viz.bandwidth(with_meta, ROOF).layout.shapes] == [ROOF]  # the argument wins
    assert viz.roofline(with_meta).data[-1].name == "memory roof 7.2 GB/s"


def test_roofline_points_and_memory_roof(traces):
    t = traces["op"]
    fig = viz.roofline(t, ROOF)
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    *points, roof_line = fig.data
    assert roof_line.mode == "lines" and all(_close(y / x, ROOF) for x, y in zip(roof_line.x, roof_line.y))
    ops = {c[0]: (x, y) for d in points for c, x, y in zip(d.customdata, d.x, d.y)}
    assert {"attn_output", "ffn_down", "output", "attention"} <= set(ops) and "kv_cache" not in ops  # no flops
    df = t.frame()
    wo = df[(df["op"] == "attn_output") & df["step"].str.startswith("decode")]
    assert _close(ops["attn_output"][0], wo["flops"].sum() / wo["bytes"].sum())
    assert _close(ops["attn_output"][1], wo["flops"].sum() / wo["seconds"].sum() / 1e9)
    capped = viz.roofline(t, ROOF, peak_gflops=30.0).data[-1]
    assert max(capped.y) == 30.0 and all(y <= 30.0 for y in capped.y)
    assert all(_close(y, min(ROOF * x, 30.0)) for x, y in zip(capped.x, capped.y))


# --- report ------------------------------------------------------------------------------

def test_report_html_holds_every_chart(traces, tmp_path):
    t = traces["op"]
    path = viz.report_html(t, tmp_path / "report.html", ROOF)
    text = Path(path).read_text()
    titles = [viz.decode_timeline(t), viz.layer_breakdown(t), viz.flame(t), viz.icicle(t), viz.bandwidth(t, ROOF),
              viz.roofline(t, ROOF)]
    for fig in titles:  # as plotly writes strings into the page ("/" escaped)
        assert pio.json.to_json_plotly(fig.layout.title.text) in text
    for section in viz.report.SECTIONS:
        assert f"<h2>{section}</h2>" in text
    assert "Not drawn" not in text and text.count("plotly.js v") == 1  # plotly.js inlined once
    assert "smollm2-135m" in text  # the trace's meta


def test_report_html_notes_what_a_coarse_trace_cannot_draw(traces, tmp_path):
    text = viz.report_html(traces["layer"], tmp_path / "r.html").read_text()
    assert text.count('class="missing"') == 4 and "Layer breakdown: attn \\u002f ffn per layer" in text
    assert "needs roof_gbs" in text and "level=&#x27;op&#x27;" in text


# --- errors --------------------------------------------------------------------------------

@pytest.mark.parametrize("plot", [viz.flame, viz.icicle, viz.bandwidth, lambda t: viz.roofline(t, ROOF)])
def test_op_charts_need_op_spans(traces, plot):
    with pytest.raises(ParameterError, match=r"needs op spans.*level='layer'.*workbench.trace\(level='op'\)"):
        plot(traces["layer"])


def test_layer_breakdown_needs_layer_spans(traces):
    with pytest.raises(ParameterError, match="needs layer spans.*level='step'"):
        viz.layer_breakdown(traces["step"])


@pytest.mark.parametrize("plot", [viz.flame, viz.icicle, viz.layer_breakdown, viz.decode_timeline,
                                  lambda t: viz.bandwidth(t, ROOF), lambda t: viz.roofline(t, ROOF)])
def test_charts_of_decode_need_decode_steps(traces, plot):
    with pytest.raises(ParameterError, match="decode steps"):
        plot(traces["short"])


def test_bad_arguments_are_named(traces, tmp_path):
    t = traces["op"]
    with pytest.raises(ParameterError, match=r"step 'decode_step\[99\]' is not in this trace; it has decode_step"):
        viz.flame(t, "decode_step[99]")
    with pytest.raises(ParameterError, match="step=7 is out of range: this trace has 3 decode steps"):
        viz.icicle(t, 7)
    with pytest.raises(ParameterError, match="roofline needs roof_gbs.*machine_bandwidth"):
        viz.roofline(t)
    for bad in (0, -1.0, "fast", True, float("nan")):
        with pytest.raises(ParameterError, match="roof_gbs must be a positive number"):
            viz.bandwidth(t, bad)
    with pytest.raises(ParameterError, match="peak_gflops"):
        viz.roofline(t, ROOF, peak_gflops=0)
    with pytest.raises(ParameterError, match="phase must be one of"):
        viz.layer_breakdown(t, phase="train")
    with pytest.raises(ParameterError, match="phase must be"):
        viz.bandwidth(t, ROOF, phase="both")
    for not_a_trace in (NULL_TRACER, t.frame(), None):
        with pytest.raises(ParameterError, match="trace must be a Tracer"):
            viz.flame(not_a_trace)
    with pytest.raises(ParameterError, match="cannot read trace file"):
        viz.flame(tmp_path / "missing.json")
    with pytest.raises(ParameterError, match="holds no spans"):
        viz.decode_timeline(Tracer("op"))


def test_plots_read_saved_trace_files(traces, tmp_path):
    path = tmp_path / "t.json"
    traces["op"].save(path)
    assert viz.flame(str(path)).layout.title.text == viz.flame(traces["op"]).layout.title.text


def test_viz_reads_traces_only_and_shows_nothing():
    """viz may import workbench.trace and workbench.errors, never the engine or models."""
    for path in Path(viz.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                if name == "workbench" or name.startswith("workbench."):
                    assert name.split(".")[1] in ("trace", "errors", "viz"), f"{path.name} imports {name}"
        assert ".show(" not in path.read_text(), path.name
