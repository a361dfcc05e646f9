"""One standalone HTML file with every chart of a trace: what `workbench trace --html` writes.

plotly.js is inlined once, with the first figure, so the file opens offline (it is a
few MB for that reason); `plotlyjs="cdn"` or a path to a plotly.min.js references it
instead (a few hundred kB). A chart the trace cannot feed (a layer-level trace has no ops
for the flame chart, no roof was given for the roofline) is replaced by a line saying
what it needs; only a trace that feeds none of them is an error.
"""

from __future__ import annotations

import html
from pathlib import Path

import plotly.io as pio

from workbench.errors import ParameterError
from workbench.viz._spans import as_tracer
from workbench.viz.flame import flame, icicle
from workbench.viz.roofline import bandwidth, roofline
from workbench.viz.steps import decode_timeline, layer_breakdown

SECTIONS = ("Decode timeline", "Layer breakdown", "Flame chart", "Icicle", "Bandwidth per op", "Roofline")


def _figures(tracer, roof_gbs, peak_gflops):
    yield SECTIONS[0], lambda: decode_timeline(tracer)
    yield SECTIONS[1], lambda: layer_breakdown(tracer)
    yield SECTIONS[2], lambda: flame(tracer)
    yield SECTIONS[3], lambda: icicle(tracer)
    yield SECTIONS[4], lambda: bandwidth(tracer, roof_gbs)
    yield SECTIONS[5], lambda: roofline(tracer, roof_gbs, peak_gflops)


def report_html(trace, path, roof_gbs: float | None = None, peak_gflops: float | None = None,
                plotlyjs: str = "inline") -> Path:
    """Write every chart of `trace` to the HTML file `path` and return its path. `roof_gbs`
    is the machine's read bandwidth (`workbench.machine_bandwidth().gbps("read",
    threads)`); it defaults to the trace's `meta["read_gbps"]`. `plotlyjs`: "inline"
    (plotly.js once, in the file: opens offline, a few MB), "cdn" (a script tag to
    plotly's CDN: small, needs the network) or the path or URL of a plotly.min.js."""
    include = _include_plotlyjs(plotlyjs)
    tracer = as_tracer(trace)
    parts, errors = [], []
    first = True
    for name, make in _figures(tracer, roof_gbs, peak_gflops):
        parts.append(f"<h2>{html.escape(name)}</h2>")
        try:
            fig = make()
        except ParameterError as e:
            errors.append(e)
            parts.append(f'<p class="missing">Not drawn: {html.escape(str(e))}.</p>')
            continue
        parts.append(pio.to_html(fig, include_plotlyjs=include if first else False, full_html=False,
                                 config={"displaylogo": False}))
        first = False
    if len(errors) == len(SECTIONS):
        raise ParameterError(f"this trace can feed none of the report's charts: {errors[0]}")
    meta = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                   for k, v in {"level": tracer.level, **tracer.meta}.items())
    doc = ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>workbench trace</title><style>"
           "body{font-family:sans-serif;margin:2em}th{text-align:left;padding-right:1em}"
           ".missing{color:#a33}</style></head><body><h1>workbench trace</h1>"
           f"<table>{meta}</table>{''.join(parts)}</body></html>\n")
    path = Path(path)
    path.write_text(doc, encoding="utf-8")
    return path


def _include_plotlyjs(plotlyjs: str):
    """plotly's `include_plotlyjs` for one of report_html's `plotlyjs` choices."""
    if plotlyjs == "inline":
        return True
    if plotlyjs == "cdn":
        return "cdn"
    if isinstance(plotlyjs, str) and plotlyjs.endswith(".js"):
        return plotlyjs  # written as <script src="..."> (relative paths resolve against the HTML file)
    raise ParameterError(f"plotlyjs must be 'inline', 'cdn' or the path of a .js file, got {plotlyjs!r}")
