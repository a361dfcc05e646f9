"""Plots of a trace: plotly figures built from a `Tracer`'s spans, never shown here.

    with workbench.trace("op") as t:
        model.generate("Hello", max_tokens=16)
    roof = workbench.machine_bandwidth().gbps("read", model.threads)
    viz.flame(t); viz.icicle(t)          # one step, span by span (default: last decode step)
    viz.layer_breakdown(t)               # attn / ffn per layer, prefill and decode
    viz.bandwidth(t, roof); viz.roofline(t, roof)
    viz.decode_timeline(t)
    viz.report_html(t, "report.html", roof)
    viz.comparison(workbench.compare(t1, t2))   # B - A per op and layer, noise as whiskers
    df = workbench.sweep.load("sweep.parquet")
    viz.speed_vs_threshold(df); viz.thread_scaling(df); viz.kernel_variants(df)

Each function takes a `Tracer` or the path of a saved one and returns a
`plotly.graph_objects.Figure`; the caller shows, saves or embeds it. They read the trace
only (this package imports nothing of workbench but `trace` and `errors`), so the
machine's bandwidth comes in as an argument. A trace that lacks what a chart needs
(decode steps, op spans, a roof) raises `ParameterError` saying so. The sweep plots
(`viz.sweep`) take the DataFrame of a sweep's records instead of a trace.
"""

try:
    import plotly  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("workbench.viz needs plotly: pip install 'workbench[viz]'") from e

from workbench.viz.compare import comparison
from workbench.viz.flame import flame, icicle
from workbench.viz.report import report_html
from workbench.viz.roofline import bandwidth, roofline
from workbench.viz.steps import decode_timeline, layer_breakdown
from workbench.viz.sweep import kernel_variants, speed_vs_threshold, thread_scaling

__all__ = ["bandwidth", "comparison", "decode_timeline", "flame", "icicle", "kernel_variants", "layer_breakdown", "report_html",
           "roofline", "speed_vs_threshold", "thread_scaling"]
