"""Each op against the machine: its GB/s beside the measured read bandwidth, and the roofline.

Decode reads every weight once per token, so the roof that matters is memory bandwidth.
It is measured by `workbench.machine_bandwidth()`, which this package may not import
(plots read traces only): callers pass `roof_gbs`, e.g.
`workbench.machine_bandwidth().gbps("read", model.threads)`, or the trace carries it as
`meta["read_gbps"]` (as `workbench trace` records it). Ops are aggregated per (op name,
weight format) over the steps of one phase: GB/s = their bytes over their time.
"""

from __future__ import annotations

import math
import zlib

import plotly.graph_objects as go

from workbench.errors import ParameterError
from workbench.viz._spans import as_tracer, is_positive, op_table, phase_title, roof

_FMT_COLORS = {"q4_0": "#1f77b4", "q4_1": "#17becf", "q4_k": "#2ca02c", "q5_0": "#bcbd22", "q6_k": "#8c564b",
               "q8_0": "#ff7f0e", "f16": "#9467bd", "bf16": "#e377c2", "f32": "#7f7f7f", "": "#c7c7c7"}


_MORE_COLORS = ("#d62728", "#aec7e8", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5")


def _fmt_color(fmt: str) -> str:
    """A color per weight format: fixed for the common ones, any other format (the table
    of formats grows without this file) one of the rest, the same in every process."""
    return _FMT_COLORS.get(fmt) or _MORE_COLORS[zlib.crc32(fmt.encode()) % len(_MORE_COLORS)]


def _hover(row, roof_gbs) -> str:
    lines = [f"<b>{row['op']}</b> {row['fmt'] or 'no weight format'}",
             f"{row['ms']:.4f} ms per step ({100 * row['share']:.1f}% of op time), {row['calls']:g} calls",
             f"{row['MB']:.3f} MB per step, {row['GB/s']:.2f} GB/s"]
    if roof_gbs:
        lines[-1] += f" ({100 * row['GB/s'] / roof_gbs:.0f}% of roof)"
    if row["flops"]:
        lines.append(f"{row['GFLOP/s']:.2f} GFLOP/s, {row['intensity']:.2f} flop/byte")
    return "<br>".join(lines)


def _check_phase(phase):
    if phase not in ("prefill", "decode"):
        raise ParameterError(f"phase must be 'prefill' or 'decode', got {phase!r}")


def bandwidth(trace, roof_gbs: float | None = None, phase: str = "decode") -> go.Figure:
    """GB/s per op over `phase`'s steps, one bar per (op, format) in the order ops run,
    colored by weight format, with a dashed line at `roof_gbs` (else the trace's
    `meta["read_gbps"]`; no line when neither is known). Ops that move no bytes are left
    out. Hover: ms per step, share of op time, MB, fraction of the roof."""
    tracer = as_tracer(trace)
    _check_phase(phase)
    roof_gbs = roof(tracer, roof_gbs, required=False, chart="bandwidth")
    table = op_table(tracer, phase, "bandwidth")
    n_steps = table.attrs["steps"]
    table = table[table["bytes"] > 0]
    fig = go.Figure()
    for fmt, rows in table.groupby("fmt", sort=False):
        fig.add_trace(go.Bar(name=fmt or "(none)", x=rows["label"], y=rows["GB/s"], marker_color=_fmt_color(fmt),
                             customdata=list(zip(rows["op"], rows["fmt"])),
                             hovertext=[_hover(r, roof_gbs) for _, r in rows.iterrows()],
                             hovertemplate="%{hovertext}<extra></extra>"))
    title = f"Bandwidth per op, {phase_title(tracer, phase, n_steps)}"
    if roof_gbs:
        fig.add_hline(y=roof_gbs, line_dash="dash", line_color="black",
                      annotation_text=f"read roof {roof_gbs:.1f} GB/s", annotation_position="top right")
        title += f", against {roof_gbs:.1f} GB/s read"
    fig.update_layout(title=title, barmode="relative", legend_title_text="weight format", height=450,
                      xaxis=dict(type="category", categoryorder="array", categoryarray=list(table["label"])),
                      yaxis=dict(title="GB/s", rangemode="tozero"), hoverlabel=dict(align="left"))
    return fig


def roofline(trace, roof_gbs: float | None = None, peak_gflops: float | None = None,
             phase: str = "decode") -> go.Figure:
    """Roofline of `phase`'s ops: arithmetic intensity (flops per byte moved) against
    achieved GFLOP/s, log axes, one marker per (op, format) sized by its share of op time,
    under the memory roof GFLOP/s = `roof_gbs` x intensity (capped at `peak_gflops` when
    given). `roof_gbs` defaults to the trace's `meta["read_gbps"]` and is required. Ops
    without flops or bytes (lookups, cache writes) cannot sit on log axes and are left out."""
    tracer = as_tracer(trace)
    _check_phase(phase)
    roof_gbs = roof(tracer, roof_gbs, required=True, chart="roofline")
    if peak_gflops is not None and not is_positive(peak_gflops):
        raise ParameterError(f"peak_gflops must be a positive number of GFLOP/s, got {peak_gflops!r}")
    table = op_table(tracer, phase, "roofline")
    n_steps = table.attrs["steps"]
    table = table[(table["flops"] > 0) & (table["bytes"] > 0) & (table["GFLOP/s"] > 0)]
    if table.empty:
        raise ParameterError(f"roofline needs ops with flops and bytes in the {phase} steps; this trace has none")
    fig = go.Figure()
    for fmt, rows in table.groupby("fmt", sort=False):
        fig.add_trace(go.Scatter(
            name=fmt or "(none)", x=rows["intensity"], y=rows["GFLOP/s"], mode="markers",
            customdata=list(zip(rows["op"], rows["fmt"])),
            marker=dict(color=_fmt_color(fmt), size=[8 + 30 * math.sqrt(s) for s in rows["share"]],
                        line=dict(color="white", width=1)),
            hovertext=[_hover(r, roof_gbs) for _, r in rows.iterrows()], hovertemplate="%{hovertext}<extra></extra>"))
    lo, hi = table["intensity"].min() / 2, table["intensity"].max() * 2
    xs = [lo, hi]
    if peak_gflops is not None and lo < peak_gflops / roof_gbs < hi:
        xs = [lo, peak_gflops / roof_gbs, hi]  # the knee, where the memory roof meets the compute roof
    ys = [roof_gbs * x if peak_gflops is None else min(roof_gbs * x, peak_gflops) for x in xs]
    fig.add_trace(go.Scatter(name=f"memory roof {roof_gbs:.1f} GB/s", x=xs, y=ys, mode="lines",
                             line=dict(color="black", dash="dash"), hoverinfo="name"))
    title = f"Roofline, {phase_title(tracer, phase, n_steps)}: memory roof {roof_gbs:.1f} GB/s"
    if peak_gflops is not None:
        title += f", compute roof {peak_gflops:.0f} GFLOP/s"
    fig.update_layout(title=title, height=500, legend_title_text="weight format", hoverlabel=dict(align="left"),
                      xaxis=dict(type="log", title="arithmetic intensity (flop/byte)"),
                      yaxis=dict(type="log", title="GFLOP/s"))
    return fig
