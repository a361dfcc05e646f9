"""Whole steps: where a step's time goes layer by layer, and how steps follow each other.

`layer_breakdown` stacks each layer's attn and ffn time beside the parts outside the
layers (embedding, output_norm, lm_head) and a `gaps` bar for time no child span covers,
so its bars add up to the mean step time exactly. `decode_timeline` needs step spans
only, so any trace level will do.
"""

from __future__ import annotations

from collections import defaultdict

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.errors import ParameterError
from workbench.viz._spans import (PHASES, as_tracer, color, phase_title, require_level, require_steps, steps,
                                  subtree)


def _phase_parts(tracer, phase: str) -> tuple[list[str], dict[str, dict[str, float]], float, int]:
    """Mean ms per step of `phase`: x labels in execution order, {category: {x label: ms}}
    and the mean step ms. Layers are labeled by number, their blocks summed per name."""
    spans = tracer.spans
    found = require_steps(tracer, phase, f"layer_breakdown(phase={phase!r})")
    order: list[str] = []
    ms: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    total = 0.0
    for i in found:
        step = spans[i]
        total += step.seconds
        covered = 0.0
        for j in subtree(spans, i):
            s = spans[j]
            if s.parent != i:
                continue
            covered += s.seconds
            if s.kind == "layer":
                x = str(s.layer)
                inner = 0.0
                for k in subtree(spans, j):
                    if spans[k].parent == j:
                        ms[spans[k].name][x] += spans[k].seconds
                        inner += spans[k].seconds
                ms["gaps"][x] += s.seconds - inner
            else:
                x = s.name
                ms[s.name][x] += s.seconds
            if x not in order:
                order.append(x)
        ms["gaps"]["gaps"] += step.seconds - covered
    order.append("gaps")
    n = len(found)
    out = {cat: {x: v * 1e3 / n for x, v in per.items()} for cat, per in ms.items()}
    return order, out, total * 1e3 / n, n


def layer_breakdown(trace, phase: str = "both") -> go.Figure:
    """Per layer, stacked attn / ffn ms (and the layer's gaps), with embedding,
    output_norm, lm_head and the step's gaps as their own bars: mean per step over the
    decode steps, and for the prefill step(s) whole. `phase` is "prefill", "decode" or
    "both" (one row each). The bars of a row sum to that phase's mean step ms."""
    tracer = as_tracer(trace)
    require_level(tracer, "layer", "layer_breakdown")
    if phase not in (*PHASES, "both"):
        raise ParameterError(f"phase must be one of {(*PHASES, 'both')}, got {phase!r}")
    phases = list(PHASES) if phase == "both" else [phase]
    parts = [(p, *_phase_parts(tracer, p)) for p in phases]
    titles = [f"{phase_title(tracer, p, n)}: {step_ms:.2f} ms per step" for p, _, _, step_ms, n in parts]
    fig = make_subplots(rows=len(phases), cols=1, subplot_titles=titles, vertical_spacing=0.18)
    seen = set()
    for row, (p, order, ms, step_ms, _) in enumerate(parts, start=1):
        for cat, per in ms.items():
            xs = [x for x in order if x in per]
            ys = [per[x] for x in xs]
            share = [100 * y / step_ms if step_ms > 0 else 0.0 for y in ys]
            where = ["layer " + x if x.isdigit() else x for x in xs]
            fig.add_trace(go.Bar(
                name=cat, x=xs, y=ys, marker_color=color(cat), legendgroup=cat, showlegend=cat not in seen,
                customdata=list(zip(where, share)),
                hovertemplate=f"%{{customdata[0]}} {cat}<br>%{{y:.4f}} ms (%{{customdata[1]:.1f}}% of step)"
                              "<extra></extra>"), row=row, col=1)
            seen.add(cat)
        fig.update_xaxes(type="category", categoryorder="array", categoryarray=order, row=row, col=1)
        fig.update_yaxes(title_text="ms", row=row, col=1)
    fig.update_layout(title="Layer breakdown: attn / ffn per layer, and the rest of the step", barmode="stack",
                      height=320 * len(phases) + 80)
    return fig


def _tok_s(tokens: int, ms: float) -> float:
    return 1e3 * tokens / ms if ms > 0 else 0.0


def decode_timeline(trace) -> go.Figure:
    """ms per decode step over the generation (right), with the prefill step(s) apart on
    their own scale (left); tok/s in the hover and the title. Step time is the forward
    pass of the step; sampling the token after it (a span of its own) shows in the hover."""
    tracer = as_tracer(trace)
    spans = tracer.spans
    decode = require_steps(tracer, "decode", "decode_timeline")
    prefill = steps(tracer, "prefill")
    sample_ms = {}  # step index -> ms sampling the token its logits gave
    last = None
    for i, s in enumerate(spans):
        if s.kind == "step":
            last = i
        elif s.name == "sample" and last is not None and s.parent == spans[last].parent:
            sample_ms[last] = s.seconds * 1e3
    fig = make_subplots(rows=1, cols=2, column_widths=[0.15, 0.85], horizontal_spacing=0.08,
                        subplot_titles=["prefill", "decode"])
    if prefill:
        ms = [spans[i].seconds * 1e3 for i in prefill]
        tokens = [spans[i].attrs.get("tokens", 0) for i in prefill]
        fig.add_trace(go.Bar(
            name="prefill", x=[f"prefill {k}" if len(prefill) > 1 else "prefill" for k in range(len(prefill))],
            y=ms, marker_color=color("embedding"),
            customdata=[(t, _tok_s(t, m), sample_ms.get(i, 0.0)) for t, m, i in zip(tokens, ms, prefill)],
            hovertemplate="prefill: %{customdata[0]} tokens<br>%{y:.2f} ms, %{customdata[1]:.1f} tok/s"
                          "<br>then sampling %{customdata[2]:.3f} ms<extra></extra>"), row=1, col=1)
    ms = [spans[i].seconds * 1e3 for i in decode]
    fig.add_trace(go.Scatter(
        name="decode step", x=list(range(len(decode))), y=ms, mode="lines+markers", marker_color=color("attn"),
        customdata=[(spans[i].name, _tok_s(1, m), sample_ms.get(i, 0.0)) for m, i in zip(ms, decode)],
        hovertemplate="%{customdata[0]}<br>%{y:.2f} ms, %{customdata[1]:.1f} tok/s"
                      "<br>then sampling %{customdata[2]:.3f} ms<extra></extra>"), row=1, col=2)
    mean = sum(ms) / len(ms)
    fig.add_hline(y=mean, line_dash="dot", line_color="gray", row=1, col=2,
                  annotation_text=f"mean {mean:.2f} ms", annotation_position="top left")
    title = f"Decode timeline: {len(decode)} steps, mean {mean:.2f} ms = {_tok_s(1, mean):.1f} tok/s"
    if prefill:
        t_ms = sum(spans[i].seconds for i in prefill) * 1e3
        t_tok = sum(spans[i].attrs.get("tokens", 0) for i in prefill)
        title += f"; prefill {t_tok} tokens in {t_ms:.1f} ms = {_tok_s(t_tok, t_ms):.1f} tok/s"
    fig.update_xaxes(title_text="decode step", dtick=1 if len(decode) <= 20 else None, row=1, col=2)
    fig.update_yaxes(title_text="ms", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(rangemode="tozero", row=1, col=2)
    fig.update_layout(title=title, showlegend=False, height=380)
    return fig
