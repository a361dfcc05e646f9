"""Views of a finished trace: a DataFrame, a roofline table, Chrome trace JSON, a file.

These only read `Tracer.spans`; they never touch the engine. pandas is imported when a
DataFrame is asked for, so that `import workbench.trace` stays light.

The roofline here is the memory roofline only: an op's floor is `bytes / bandwidth`, the
time it would take at the machine's measured bandwidth (`workbench.machine_bandwidth()`).
Decode is memory-bound, so that is the bound that matters; no peak-flops roof is drawn.
"""

from __future__ import annotations

import json
from pathlib import Path

from workbench.trace.record import Span

FORMAT = "workbench-trace"
VERSION = 1

COLUMNS = ["path", "op", "layer", "step", "shape", "dtype", "weight", "bytes", "weight_bytes", "flops",
           "seconds", "GB/s", "GFLOP/s", "kind", "depth", "start", "parent"]


def _steps(spans) -> list[str]:
    """For each span, the name of the step it belongs to ("" outside any step)."""
    out = []
    for s in spans:
        if s.kind == "step":
            out.append(s.name)
        else:
            out.append(out[s.parent] if s.parent >= 0 else "")
    return out


def rows(tracer) -> list[dict]:
    """One plain dict per span, in the order spans were opened (parents first)."""
    steps = _steps(tracer.spans)
    out = []
    for s, step in zip(tracer.spans, steps):
        a = s.attrs
        shape = a.get("shape")
        out.append({
            "path": s.path, "op": s.name, "layer": s.layer, "step": step,
            "shape": tuple(shape) if shape is not None else None,
            "dtype": a.get("fmt") or a.get("dtype") or "", "weight": a.get("weight", ""),
            "bytes": int(a.get("bytes", 0)), "weight_bytes": int(a.get("weight_bytes", 0)),
            "flops": int(a.get("flops", 0)), "seconds": s.seconds, "GB/s": s.gbps, "GFLOP/s": s.gflops,
            "kind": s.kind, "depth": s.depth, "start": s.start, "parent": s.parent,
        })
    return out


def frame(tracer, bandwidth_gbps: float | None = None):
    """path, op, layer, step, shape, dtype (the weight's format where there is one),
    weight, bytes, weight_bytes, flops, seconds, GB/s, GFLOP/s, kind, depth, start (s since
    the tracer began), parent (row number, -1 for roots); and `roofline`, the fraction of
    `bandwidth_gbps` an op reaches, when that is given."""
    import pandas as pd

    df = pd.DataFrame(rows(tracer), columns=COLUMNS)
    if bandwidth_gbps:
        df["roofline"] = df["GB/s"] / bandwidth_gbps
    return df


def roofline(tracer, bandwidth_gbps: float, steps: str = "decode"):
    """Per op name over the op spans of `steps` ("decode", "prefill" or "all"), per step:
    calls, ms, MB moved, GB/s, `roofline` (GB/s over `bandwidth_gbps`), `floor_ms` (the time
    at that bandwidth), `lost_ms` (ms - floor_ms) and `share` of the op time. Sorted from
    the op furthest below the roofline (smallest fraction) up."""
    import pandas as pd

    if not bandwidth_gbps or bandwidth_gbps <= 0:
        raise ValueError(f"bandwidth_gbps must be positive, got {bandwidth_gbps!r}")
    df = frame(tracer)
    ops = df[df["kind"] == "op"]
    if steps != "all":
        ops = ops[ops["step"].str.startswith(steps)]
    n_steps = max(ops["step"].nunique(), 1)
    g = ops.groupby("op").agg(calls=("seconds", "size"), seconds=("seconds", "sum"), bytes=("bytes", "sum"))
    out = pd.DataFrame({
        "calls": g["calls"] / n_steps,
        "ms": g["seconds"] * 1e3 / n_steps,
        "MB": g["bytes"] / 1e6 / n_steps,
    })
    out["GB/s"] = g["bytes"] / g["seconds"].where(g["seconds"] > 0) / 1e9
    out["roofline"] = out["GB/s"] / bandwidth_gbps
    out["floor_ms"] = out["MB"] / bandwidth_gbps  # MB / (GB/s) = ms
    out["lost_ms"] = out["ms"] - out["floor_ms"]
    out["share"] = out["ms"] / out["ms"].sum() if len(out) else out["ms"]
    return out.sort_values("roofline")


def _jsonable(value):
    if isinstance(value, tuple):
        return list(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to a trace file")


def chrome_trace(tracer, path=None) -> dict:
    """Trace-event JSON: one complete ("X") event per span, ts and dur in microseconds,
    all on one thread (spans nest by time, so viewers draw the flame chart). `args` holds
    the path, layer and the span's attributes, plus GB/s where bytes are known."""
    events = []
    for s in tracer.spans:
        args = {"path": s.path, "layer": s.layer, **s.attrs}
        if s.gbps:
            args["GB/s"] = round(s.gbps, 3)
        events.append({"name": s.name, "cat": s.kind, "ph": "X", "ts": round(s.start * 1e6, 3),
                       "dur": round(s.seconds * 1e6, 3), "pid": 1, "tid": 1, "args": args})
    doc = {"traceEvents": events, "displayTimeUnit": "ms",
           "otherData": {"generator": "workbench", "level": tracer.level, **tracer.meta}}
    doc = json.loads(json.dumps(doc, default=_jsonable))  # the object returned is what the file holds
    if path is not None:
        Path(path).write_text(json.dumps(doc))
    return doc


def save(tracer, path) -> None:
    spans = [{"name": s.name, "path": s.path, "depth": s.depth, "parent": s.parent, "start": s.start,
              "seconds": s.seconds, "kind": s.kind, "layer": s.layer, "attrs": s.attrs} for s in tracer.spans]
    doc = {"format": FORMAT, "version": VERSION, "level": tracer.level, "meta": tracer.meta, "spans": spans}
    Path(path).write_text(json.dumps(doc, default=_jsonable))


def load(cls, path):
    """A tracer of class `cls` from a file `save` wrote or from the Chrome trace JSON
    `chrome_trace` wrote (its spans rebuilt from the events, timed to the microsecond
    rounding of that format, and `meta` from `otherData`)."""
    doc = json.loads(Path(path).read_text())
    if isinstance(doc, dict) and "traceEvents" in doc:
        return _from_chrome(cls, doc, path)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ValueError(f"{path}: neither a workbench trace file nor a Chrome trace (format {got!r})")
    if doc.get("version") != VERSION:
        raise ValueError(f"{path}: trace file version {doc.get('version')!r}, this workbench reads {VERSION}")
    tracer = cls(doc["level"], doc.get("meta"))
    for d in doc["spans"]:
        attrs = d["attrs"]
        if isinstance(attrs.get("shape"), list):  # JSON has no tuples
            attrs["shape"] = tuple(attrs["shape"])
        tracer._append(Span(d["name"], d["path"], d["depth"], d["parent"], d["start"], d["seconds"],
                            d["kind"], d["layer"], attrs))
    return tracer


def _from_chrome(cls, doc: dict, path):
    """Spans from the complete ("X") events of a Chrome trace workbench wrote: events
    come parents first, and an event's parent is the latest one whose `path` is its own
    minus the last part."""
    other = dict(doc.get("otherData") or {})
    if other.pop("generator", None) != "workbench":
        raise ValueError(f"{path}: not a workbench trace: a Chrome trace workbench did not write (otherData.generator)")
    tracer = cls(other.pop("level", "op"), other)
    latest: dict[str, int] = {}
    for i, e in enumerate(ev for ev in doc["traceEvents"] if ev.get("ph") == "X"):
        args = dict(e.get("args") or {})
        span_path, layer = args.pop("path", e["name"]), args.pop("layer", -1)
        args.pop("GB/s", None)  # derived from bytes and seconds
        if isinstance(args.get("shape"), list):
            args["shape"] = tuple(args["shape"])
        parent_path = span_path.rpartition("/")[0]
        parent = latest.get(parent_path, -1) if parent_path else -1
        tracer._append(Span(e["name"], span_path, span_path.count("/"), parent, e["ts"] / 1e6, e["dur"] / 1e6,
                            e.get("cat", "block"), layer, args))
        latest[span_path] = i
    return tracer
