"""Sweeps: grids of bench points (model x load options x threads x kernels) on a Dask cluster.

    import workbench
    result = workbench.sweep({"sources": ["smollm2-135m", "gemma3-270m"], "threads": [1, 2],
                              "quant_threshold": [None, 768], "n_gen": [16]}, "sweep.parquet")
    df = workbench.sweep.load("sweep.parquet")         # one row per point
    workbench.sweep.run(grid, "sweep.parquet", resume=True, scheduler="tcp://HOST:8786")

`workbench.sweep(...)` is `workbench.sweep.run(...)`. A point is one source with one
value of every axis; it runs `workbench.bench` (a ppN and a tgN test) and, when the grid
names an evaluation text, `Model.score` for perplexity, in a fresh Python process on a
Dask worker with numba's pool pinned to its thread count, and returns one record: its
parameters, the bench numbers, perplexity, what actually ran (kernel per weight format,
decode path) and where (host, CPU model and flags, versions, commit). Modules:
`grid` (axes -> points with stable ids), `runner` (Dask: placement, progress, stop and
resume), `worker` (the Dask task), `point` (the process that measures), `provenance`,
`store` (Parquet / JSONL written as points finish). Plots of the records are in
`workbench.viz.sweep`.

Where it sits: above `api` and `bench`, whose `load` and tests it runs on workers, and
below `cli`; dask is imported only when a sweep runs, so `load` needs pandas alone.
"""

import sys
import types

from workbench.sweep.grid import Grid, points
from workbench.sweep.runner import SweepError, SweepResult, iter_run, run
from workbench.sweep.store import load


class _CallableModule(types.ModuleType):
    """Lets `workbench.sweep(grid, out)` stand for `workbench.sweep.run(grid, out)`."""

    def __call__(self, grid, out=None, **kwargs) -> SweepResult:
        return run(grid, out, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["Grid", "SweepError", "SweepResult", "iter_run", "load", "points", "run"]
