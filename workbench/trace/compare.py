"""Two traces side by side: time per op or per layer, and whether a difference is real.

`diff(a, b, by="op")` takes the decode steps of both traces (or `steps="prefill"` /
"all") and, per op name (or per layer index with `by="layer"`), the time of each step
as one sample: mean ms per step in A and B, their difference and ratio, and `noise`,
`sigmas` standard errors of the difference (sqrt(sa²/na + sb²/nb), the step-to-step
spread of each run). `beyond_noise` is True where |delta| exceeds it; with fewer than two
steps on a side there is no spread to judge by and it is None. `meta_diff(a, b)` lists
the provenance keys whose values differ (threads, kernels, commit, file...).

It reads `Tracer.frame()` only; pandas does the grouping.
"""

from __future__ import annotations

import math

SIGMAS = 3.0
COLUMNS = ["key", "a", "b", "delta", "ratio", "noise", "beyond_noise", "a_n", "b_n"]


def _per_step(tracer, by: str, steps: str):
    df = tracer.frame()
    if steps != "all":
        df = df[df["step"].str.startswith(steps)]
    if by == "op":
        rows = df[df["kind"] == "op"]
    elif by == "layer":
        rows = df[(df["kind"] == "layer") & (df["layer"] >= 0)]
    else:
        raise ValueError(f"by must be 'op' or 'layer', got {by!r}")
    return rows.groupby([by, "step"])["seconds"].sum().mul(1e3).groupby(level=0).agg(list)


def diff(a, b, by: str = "op", steps: str = "decode", sigmas: float = SIGMAS):
    """The per-op (or per-layer) table described above (ms per step), largest |delta| first."""
    import pandas as pd

    sa, sb = _per_step(a, by, steps), _per_step(b, by, steps)
    keys = sorted(set(sa.index) | set(sb.index), key=str)
    df = pd.DataFrame([{"key": k, **sample_diff(sa.get(k, []), sb.get(k, []), sigmas)} for k in keys],
                      columns=COLUMNS)
    order = df["delta"].abs().sort_values(ascending=False, na_position="last").index
    return df.reindex(order).reset_index(drop=True)


def sample_diff(xa, xb, sigmas: float = SIGMAS) -> dict:
    """Means of two sample lists, their difference and ratio, the noise (`sigmas`
    standard errors of the difference) and whether the difference is beyond it."""
    ma = sum(xa) / len(xa) if xa else None
    mb = sum(xb) / len(xb) if xb else None
    delta = mb - ma if xa and xb else None
    noise = sigmas * math.sqrt(_var(xa) / len(xa) + _var(xb) / len(xb)) if len(xa) > 1 and len(xb) > 1 else None
    return {"a": ma, "b": mb, "delta": delta, "ratio": mb / ma if delta is not None and ma else None,
            "noise": noise, "beyond_noise": None if noise is None or delta is None else abs(delta) > noise,
            "a_n": len(xa), "b_n": len(xb)}


def meta_diff(a, b) -> dict:
    """{key: (value in a, value in b)} for the `meta` keys whose values differ."""
    keys = dict.fromkeys([*a.meta, *b.meta])
    return {k: (a.meta.get(k), b.meta.get(k)) for k in keys if a.meta.get(k) != b.meta.get(k)}


def _var(xs) -> float:
    m = sum(xs) / len(xs)
    return sum((x - m) ** 2 for x in xs) / (len(xs) - 1)
