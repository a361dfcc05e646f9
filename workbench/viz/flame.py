"""One step as a flame chart and as an icicle: where its milliseconds went.

Both draw the spans of one step (step > layers and parts > attn/ffn > ops) from their
measured start and duration, nothing else: a bar is exactly as long as its span, and
the space between sibling bars is time no span covered (Python between kernel calls).
They need an op-level trace; the other charts make do with less.
"""

from __future__ import annotations

import plotly.graph_objects as go

from workbench.viz._spans import as_tracer, categories, color, pick_step, require_level, subtree

ROWS = ("step", "layer", "attn / ffn", "op")


def _hover(s, step_ms: float) -> str:
    a = s.attrs
    lines = [f"<b>{s.name}</b>", s.path]
    if a.get("shape") is not None:
        shape = "x".join(str(d) for d in a["shape"])
        lines.append(f"shape {shape}  {a.get('fmt') or a.get('dtype') or ''}".rstrip())
    if a.get("weight"):
        lines.append(a["weight"])
    ms = s.seconds * 1e3
    lines.append(f"{ms:.4f} ms ({100 * ms / step_ms:.1f}% of step)" if step_ms > 0 else f"{ms:.4f} ms")
    if s.gbps:
        lines.append(f"{s.gbps:.2f} GB/s, {a.get('bytes', 0) / 1e6:.3f} MB")
    if s.gflops:
        lines.append(f"{s.gflops:.2f} GFLOP/s")
    return "<br>".join(lines)


def _step(trace, step, chart):
    tracer = as_tracer(trace)
    require_level(tracer, "op", chart)
    spans = tracer.spans
    index = pick_step(tracer, step)
    return spans, index


def flame(trace, step=None) -> go.Figure:
    """Flame chart of one step: x is ms from the step's start, one row per depth below it
    (step, layers and parts, attn/ffn, ops), one bar per span with `base` = its start and
    length = its measured duration, colored by the part of the step it belongs to.

    `step`: None for the last decode step, an int for the decode step at that position,
    or a step's name ("prefill", "decode_step[3]"). Each bar's `customdata` is
    (name, path, span index), for widgets that map a click back to the trace."""
    spans, index = _step(trace, step, "a flame chart")
    root = spans[index]
    step_ms = root.seconds * 1e3
    cats = categories(spans, index)
    bars: dict[str, dict[str, list]] = {}
    for j in subtree(spans, index):
        s = spans[j]
        b = bars.setdefault(cats[j], {"x": [], "base": [], "y": [], "text": [], "hovertext": [], "customdata": []})
        b["x"].append(s.seconds * 1e3)
        b["base"].append((s.start - root.start) * 1e3)
        b["y"].append(s.depth - root.depth)
        b["text"].append(s.name)
        b["hovertext"].append(_hover(s, step_ms))
        b["customdata"].append((s.name, s.path, j))
    fig = go.Figure()
    for cat, b in bars.items():
        fig.add_trace(go.Bar(name=cat, orientation="h", marker_color=color(cat),
                             marker_line=dict(color="white", width=0.5), textposition="inside",
                             insidetextanchor="start", textangle=0, hovertemplate="%{hovertext}<extra></extra>",
                             **b))
    depth = max(max(b["y"]) for b in bars.values()) + 1
    ticks = [ROWS[d] if d < len(ROWS) else f"depth {d}" for d in range(depth)]
    tokens = root.attrs.get("tokens", 1)
    fig.update_layout(
        title=f"Flame chart of {root.name}: {step_ms:.2f} ms, {tokens} token{'s' * (tokens != 1)}",
        barmode="overlay", bargap=0.05, height=160 + 70 * depth, uniformtext=dict(minsize=9, mode="hide"),
        xaxis=dict(title="ms from step start", range=[0, step_ms * 1.005]),
        yaxis=dict(tickvals=list(range(depth)), ticktext=ticks, autorange="reversed"),
        legend=dict(orientation="h", y=-0.25), hoverlabel=dict(align="left"))
    return fig


def icicle(trace, step=None) -> go.Figure:
    """The same step as a go.Icicle, top-down: values are each span's measured ms
    (branchvalues "total": a parent's box holds its children and the time none of them
    covers). `step` as in `flame`."""
    spans, index = _step(trace, step, "an icicle chart")
    root = spans[index]
    cats = categories(spans, index)
    nodes = list(subtree(spans, index))
    # A parent's children fit inside it in time; float rounding can still put their sum a
    # few ulps above it, and plotly then drops the branch: lift such a parent to the sum.
    values = {j: spans[j].seconds * 1e3 for j in nodes}
    below: dict[int, float] = {}
    for j in reversed(nodes):
        values[j] = max(values[j], below.get(j, 0.0))
        if j != index:
            below[spans[j].parent] = below.get(spans[j].parent, 0.0) + values[j]
    fig = go.Figure(go.Icicle(
        ids=[str(j) for j in nodes], parents=["" if j == index else str(spans[j].parent) for j in nodes],
        labels=[spans[j].name for j in nodes], values=[values[j] for j in nodes], branchvalues="total",
        marker=dict(colors=[color(cats[j]) for j in nodes]), sort=False, tiling=dict(orientation="v"),
        hovertext=[_hover(spans[j], root.seconds * 1e3) for j in nodes],
        customdata=[(spans[j].name, spans[j].path, j) for j in nodes],
        hovertemplate="%{hovertext}<extra></extra>"))
    fig.update_layout(title=f"Icicle of {root.name}: {root.seconds * 1e3:.2f} ms", height=600,
                      margin=dict(t=60, l=10, r=10, b=10), hoverlabel=dict(align="left"))
    return fig
