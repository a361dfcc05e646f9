"""Plots of sweep records: the three questions a grid of bench points is run for.

    df = workbench.sweep.load("sweep.parquet")
    viz.speed_vs_threshold(df)   # tok/s and perplexity against the quantization threshold
    viz.thread_scaling(df)       # tok/s against threads, one line per CPU kind and model
    viz.kernel_variants(df)      # kernel choices side by side, one panel per machine

Each takes the DataFrame of `workbench.sweep.load` (this package reads data, it does not
import the sweep machinery) and returns a `plotly.graph_objects.Figure`. Only points
with status "ok" are drawn; points that agree on every plotted key (repeated runs, an
axis the plot does not show) are averaged, and the hover says how many. `speed` picks
the column: "tg_tok_s" (decode, the default) or "pp_tok_s" (prefill). Titles name the
CPUs the numbers come from. Data that cannot make the chart raises `ParameterError`.
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.errors import ParameterError

SPEEDS = {"tg_tok_s": "decode tok/s", "pp_tok_s": "prefill tok/s"}
_DASHES = ("solid", "dash", "dot", "dashdot", "longdash")


def speed_vs_threshold(df, speed: str = "tg_tok_s") -> go.Figure:
    """Speed (left axis, solid) and perplexity (right axis, dotted, where scored) against
    the load-time quantization threshold ("off" first, then ascending), one line per
    model x quant type x threads. "off" belongs to every quant type's line."""
    ok = _ok(df, speed, ["quant_threshold", "quant_type", "model", "threads"])
    ok = ok.assign(x=ok["quant_threshold"].map(_threshold_label))
    order = ["off"] + [str(int(t)) for t in sorted(ok["quant_threshold"].dropna().unique())]
    scored = "perplexity" in ok and ok["perplexity"].notna().any()
    fig = make_subplots(specs=[[{"secondary_y": bool(scored)}]])
    types = sorted(ok["quant_type"].dropna().unique()) or [None]
    for i, ((model, threads), rows) in enumerate(ok.groupby(["model", "threads"], sort=True)):
        for j, qt in enumerate(types):
            line = rows[rows["quant_type"].isna() | (rows["quant_type"] == qt)]
            if line.empty:
                continue
            name = f"{model} {qt or ''} t={threads}".replace("  ", " ")
            mean = line.groupby("x")[speed].agg(["mean", "count"]).reindex(order).dropna()
            fig.add_trace(go.Scatter(x=mean.index, y=mean["mean"], mode="lines+markers", name=name,
                                     legendgroup=name, line={"dash": _DASHES[j % len(_DASHES)]},
                                     customdata=mean["count"],
                                     hovertemplate=f"{name}<br>threshold %{{x}}: %{{y:.1f}} tok/s"
                                                   f" (mean of %{{customdata}})<extra></extra>"),
                          secondary_y=False)
            if scored:
                ppl = line.groupby("x")["perplexity"].mean().reindex(order).dropna()
                fig.add_trace(go.Scatter(x=ppl.index, y=ppl.values, mode="lines+markers", name=f"{name} perplexity",
                                         legendgroup=name, marker={"symbol": "diamond"}, line={"dash": "dot"},
                                         hovertemplate=f"{name}<br>threshold %{{x}}: perplexity %{{y:.2f}}"
                                                       f"<extra></extra>"),
                              secondary_y=True)
    fig.update_xaxes(title_text="quantization threshold (max(in, out) >= N is quantized)", type="category",
                     categoryorder="array", categoryarray=order)
    fig.update_yaxes(title_text=SPEEDS[speed], rangemode="tozero", secondary_y=False)
    if scored:
        fig.update_yaxes(title_text="perplexity", secondary_y=True)
    fig.update_layout(title=f"{SPEEDS[speed]} and perplexity vs quantization threshold — {_cpus(ok)}")
    return fig


def thread_scaling(df, speed: str = "tg_tok_s") -> go.Figure:
    """Speed against thread count, one line per CPU kind (the `cpu` model name) x model,
    with the mean stdev of the points as error bars."""
    ok = _ok(df, speed, ["threads", "cpu", "model"])
    err = speed.replace("tok_s", "stdev")
    fig = go.Figure()
    models = sorted(ok["model"].unique())
    for (cpu, model), rows in ok.groupby(["cpu", "model"], sort=True):
        stats = rows.groupby("threads").agg(mean=(speed, "mean"), n=(speed, "count"),
                                            stdev=(err, "mean") if err in rows else (speed, "std"))
        name = f"{model} on {cpu}"
        fig.add_trace(go.Scatter(x=stats.index, y=stats["mean"], mode="lines+markers", name=name,
                                 line={"dash": _DASHES[models.index(model) % len(_DASHES)]},
                                 error_y={"type": "data", "array": stats["stdev"].fillna(0).tolist()},
                                 customdata=stats["n"],
                                 hovertemplate=f"{name}<br>%{{x}} threads: %{{y:.1f}} tok/s"
                                               f" (mean of %{{customdata}})<extra></extra>"))
    fig.update_xaxes(title_text="threads", dtick=1)
    fig.update_yaxes(title_text=SPEEDS[speed], rangemode="tozero")
    fig.update_layout(title=f"{SPEEDS[speed]} vs threads per CPU kind — {_cpus(ok)}")
    return fig


def kernel_variants(df, speed: str = "tg_tok_s") -> go.Figure:
    """Kernel choices side by side: one panel per machine (CPU), a group of bars per
    model x threads, one bar per kernel choice; the hover gives the decode path and the
    kernels that ran (a variant the compiled step does not run makes decode op by op)."""
    ok = _ok(df, speed, ["kernel", "cpu", "model", "threads"])
    cpus = sorted(ok["cpu"].unique())
    kernels = sorted(ok["kernel"].unique(), key=lambda k: (k != "default", k))
    fig = make_subplots(rows=1, cols=len(cpus), subplot_titles=cpus, shared_yaxes=True)
    for col, cpu in enumerate(cpus, 1):
        rows = ok[ok["cpu"] == cpu].assign(group=lambda d: d["model"] + " t=" + d["threads"].astype(str))
        for i, kernel in enumerate(kernels):
            part = rows[rows["kernel"] == kernel]
            if part.empty:
                continue
            stats = part.groupby("group").agg(mean=(speed, "mean"), n=(speed, "count"),
                                              path=("decode_path", "first") if "decode_path" in part else
                                              ("kernel", "first"))
            fig.add_trace(go.Bar(x=stats.index, y=stats["mean"], name=kernel, legendgroup=kernel,
                                 showlegend=col == 1, marker={"color": _COLORS[i % len(_COLORS)]},
                                 customdata=list(zip(stats["n"], stats["path"])),
                                 hovertemplate=f"kernel {kernel}<br>%{{x}}: %{{y:.1f}} tok/s (mean of "
                                               f"%{{customdata[0]}})<br>%{{customdata[1]}}<extra></extra>"),
                          row=1, col=col)
    fig.update_yaxes(title_text=SPEEDS[speed], rangemode="tozero", row=1, col=1)
    fig.update_layout(barmode="group", title=f"{SPEEDS[speed]} by kernel choice — {_cpus(ok)}")
    return fig


_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def _ok(df, speed: str, needed: list[str]):
    """The rows with status "ok" and a value of `speed`; ParameterError if none or a
    column the chart needs is missing."""
    if speed not in SPEEDS:
        raise ParameterError(f"speed must be one of {', '.join(SPEEDS)}, got {speed!r}")
    missing = [c for c in ["status", speed, *needed] if c not in getattr(df, "columns", ())]
    if missing:
        raise ParameterError(f"sweep records lack the column(s) {', '.join(missing)}: pass workbench.sweep.load(path)")
    ok = df[(df["status"] == "ok") & df[speed].notna()]
    if ok.empty:
        raise ParameterError(f"no sweep point finished with a {speed} value: nothing to plot")
    return ok


def _threshold_label(value) -> str:
    return "off" if value is None or value != value else str(int(value))


def _cpus(ok) -> str:
    return ", ".join(sorted(ok["cpu"].dropna().unique())) if "cpu" in ok else "CPU unknown"
