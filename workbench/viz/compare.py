"""The chart of a `workbench.compare` result: B minus A per op, layer or test.

One horizontal bar per row of the comparison's table (ms per decode step for traces,
tok/s for bench results), with the run-to-run noise as an error bar, so that a bar
longer than its whisker reads at a glance as a real difference; rows beyond the noise
are drawn in a strong color, the rest pale. Traces get a second panel per layer.
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.errors import ParameterError

_REAL, _NOISE = "#d62728", "#c7c7c7"


def comparison(result) -> go.Figure:
    """A figure of a `Comparison` (anything with `table`, optional `layers`, `kind`, `a`, `b`)."""
    table = getattr(result, "table", None)
    if table is None or not len(table):
        raise ParameterError("comparison needs the result of workbench.compare(a, b) with at least one row")
    panels = [("per op" if result.kind == "trace" else "per test", table)]
    if getattr(result, "layers", None) is not None and len(result.layers):
        panels.append(("per layer", result.layers))
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p[0] for p in panels], horizontal_spacing=0.15)
    unit = "ms per decode step" if result.kind == "trace" else "tok/s"
    for col, (_, df) in enumerate(panels, start=1):
        df = df.dropna(subset=["delta"])
        fig.add_trace(go.Bar(
            x=df["delta"], y=[str(k) for k in df["key"]], orientation="h", showlegend=False,
            marker_color=[_REAL if flag is True else _NOISE for flag in df["beyond_noise"]],
            error_x={"type": "data", "array": df["noise"].fillna(0).tolist(), "visible": True},
            customdata=df[["a", "b", "ratio"]].to_numpy(),
            hovertemplate="%{y}: A %{customdata[0]:.3f}, B %{customdata[1]:.3f} (B/A %{customdata[2]:.3f})"
                          "<extra></extra>"), row=1, col=col)
        fig.update_xaxes(title_text=f"B - A, {unit}", row=1, col=col)
    fig.update_layout(title=f"B = {result.b} vs A = {result.a} (red: beyond run-to-run noise)",
                      height=max(300, 22 * max(len(p[1]) for p in panels) + 120))
    return fig
