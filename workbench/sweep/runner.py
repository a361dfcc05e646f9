"""Run a grid of bench points on a Dask cluster, streaming each record to a file.

    result = run(Grid(["smollm2-135m"], threads=[1, 2], n_gen=[16]), "sweep.parquet")
    for record in iter_run(grid, "sweep.jsonl", scheduler="tcp://10.0.0.5:8786"): ...

Where points run:
- by default a `LocalCluster` on 127.0.0.1 made for the sweep and closed after it: one
  worker process (`n_workers`) with one task thread, so points run one after another
  and never share cores; each point's own process takes the threads it asks for;
- `scheduler="tcp://HOST:8786"` connects to a running cluster, `client=` uses a Client
  the caller made (neither is closed here). Every point asks for one unit of the worker
  resource `bench` (`dask worker ... --resources bench=1`), so a worker runs one point
  at a time whatever its thread count; a cluster where no worker offers it is an error,
  not a sweep that waits forever (`resources=None` lifts the requirement).
A point with a `cpu_kind` runs only on hosts whose CPU name or flag list contains it
(case-insensitive: "EPYC", "Xeon", "avx512f"); with no such host it fails at once.

Failure and resumption: a point's own errors come back as its failed record (see
`point`); a task Dask gives up on (its worker died more often than the scheduler's
`distributed.scheduler.allowed-failures` allows) becomes a failed record with Dask's
error. Every record reaches the results file (`store`) as it arrives, so a sweep stopped
at any moment (Ctrl-C, a closed notebook) keeps what finished; `resume=True` then skips
every point with an "ok" record and runs the rest, failed ones included. Stopping
cancels the points not yet finished; on a cluster of your own, a point already running
finishes there and its result is dropped.

Progress is a tqdm bar (a widget in Jupyter, text in a terminal) of points done, with
ok / failed counts and the Dask dashboard's address; `progress=False` hides it.
"""

from __future__ import annotations

import contextlib
import datetime
import html
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from workbench.errors import ParameterError, WorkbenchError
from workbench.sweep.grid import Grid, points
from workbench.sweep.store import ResultStore, frame, load

RESOURCE = "bench"


class SweepError(WorkbenchError):
    """The sweep as a whole cannot run (no cluster, no worker able to take points)."""


@dataclass
class SweepResult:
    """What one `run` did: the records it made, the points it skipped as finished."""

    path: str | None
    records: list[dict] = field(repr=False)  # this run's, in the order they finished
    skipped: list[str] = field(repr=False)  # point ids finished by an earlier run
    seconds: float  # wall time of this run, cluster start-up included
    dashboard_link: str | None = None
    run_id: str = ""
    points: int = field(default=0)  # the grid's points

    @property
    def ok(self) -> int:
        return sum(r.get("status") == "ok" for r in self.records)

    @property
    def failed(self) -> int:
        return sum(r.get("status") != "ok" for r in self.records)

    def frame(self):
        """The results file as a DataFrame (`load(path)`), else this run's records."""
        return load(self.path) if self.path else frame(self.records)

    def _repr_html_(self) -> str:
        where = f" into <code>{html.escape(self.path)}</code>" if self.path else ""
        link = (f"; <a href=\"{html.escape(self.dashboard_link)}\" target=\"_blank\">Dask dashboard</a>"
                if self.dashboard_link else "")
        return (f"<b>sweep</b> {self.points} points{where}: {self.ok} ok, {self.failed} failed, "
                f"{len(self.skipped)} finished earlier; {self.seconds:.1f} s{link}")


def run(grid: Grid | Mapping, out=None, **kwargs) -> SweepResult:
    """Run every point of `grid` not finished in `out` and return a `SweepResult`;
    options as `iter_run`."""
    t0 = time.perf_counter()
    info: dict = {}
    records = list(iter_run(grid, out, info=info, **kwargs))
    return SweepResult(None if out is None else str(out), records, info.get("skipped", []),
                       time.perf_counter() - t0, info.get("dashboard_link"), info.get("run_id", ""),
                       info.get("points", 0))


def iter_run(grid: Grid | Mapping, out=None, *, client=None, scheduler: str | None = None, resume: bool = False,
             overwrite: bool = False, n_workers: int = 1, timeout: float | None = None, progress: bool = True,
             resources: Mapping | None = None, info: dict | None = None) -> Iterator[dict]:
    """Yield each point's record as it finishes (after it is in `out`).

    `out`: a `.parquet` or `.jsonl` results file (None: keep records in memory only);
    `resume` skips the points it holds as finished, `overwrite` starts it afresh.
    `client` / `scheduler`: an existing cluster (see the module docstring); otherwise a
    LocalCluster of `n_workers` workers. `timeout`: seconds a point may take before its
    process is killed (None: no limit). `resources`: what each point asks of a worker
    (default {"bench": 1}). `info`, when given, receives run_id, points, skipped and
    dashboard_link before the first point is submitted."""
    all_points = points(grid)
    if resume and overwrite:
        raise ParameterError("resume and overwrite exclude each other")
    if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ParameterError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
    if isinstance(n_workers, bool) or not isinstance(n_workers, int) or n_workers < 1:
        raise ParameterError(f"n_workers must be an integer >= 1, got {n_workers!r}")
    resources = {RESOURCE: 1} if resources is None else dict(resources)
    store = ResultStore(out, resume=resume, overwrite=overwrite) if out is not None else None
    done = store.finished() if store is not None else set()
    todo = [p for p in all_points if p["point_id"] not in done]
    run_id = uuid.uuid4().hex[:12]
    info = {} if info is None else info
    info.update(run_id=run_id, points=len(all_points), skipped=[p["point_id"] for p in all_points
                                                                 if p["point_id"] in done])
    if not todo:
        info["dashboard_link"] = None
        return
    with _connect(client, scheduler, n_workers, resources) as dask_client:
        info["dashboard_link"] = dask_client.dashboard_link
        yield from _execute(dask_client, todo, store, run_id, timeout, resources, progress, len(all_points),
                            len(all_points) - len(todo), info["dashboard_link"])


def _execute(client, todo, store, run_id, timeout, resources, progress, total, skipped, link) -> Iterator[dict]:
    from distributed import as_completed
    from tqdm.auto import tqdm

    from workbench.sweep.worker import failed, run_point

    hosts = _hosts_by_kind(client, {p["cpu_kind"] for p in todo if p["cpu_kind"]})
    futures, early = {}, []
    for p in todo:
        kind = p["cpu_kind"]
        if kind and not hosts[kind]:
            early.append(failed(p, f"no worker has a CPU of kind {kind!r} (CPU names and flags of the cluster's "
                                   f"workers do not contain it)"))
            continue
        where = {"workers": hosts[kind], "allow_other_workers": False} if kind else {}
        f = client.submit(run_point, p, timeout, key=f"sweep-{p['point_id']}-{run_id}", pure=False, retries=0,
                          resources=resources or None, **where)
        futures[f] = p
    counts = {"ok": 0, "failed": 0}
    bar = tqdm(total=total, initial=skipped, unit="point", desc="sweep", disable=not progress, dynamic_ncols=True)
    try:
        for record in early:
            yield _finish(record, store, run_id, bar, counts, link)
        for f in as_completed(list(futures)):
            point = futures.pop(f)
            if f.status == "finished":
                record = f.result()
            else:  # erred or cancelled: Dask's reason, e.g. KilledWorker when its worker died
                exc = f.exception() if f.status == "error" else None
                record = failed(point, f"{type(exc).__name__}: {exc}" if exc is not None else f"task {f.status}")
            yield _finish(record, store, run_id, bar, counts, link)
    finally:
        bar.close()
        if futures:  # stopped early: what has not finished is not wanted any more
            client.cancel(list(futures))


def _finish(record, store, run_id, bar, counts, link) -> dict:
    record.setdefault("finished", _now())
    record["run_id"] = run_id
    if store is not None:
        store.add(record)
    counts["ok" if record.get("status") == "ok" else "failed"] += 1
    bar.set_postfix_str(f"ok {counts['ok']}, failed {counts['failed']}" + (f" | dashboard {link}" if link else ""),
                        refresh=False)
    bar.update(1)
    return record


@contextlib.contextmanager
def _connect(client, scheduler, n_workers, resources):
    """A Client for the sweep: the caller's, one to `scheduler`, or one on a new LocalCluster."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise SweepError("workbench.sweep needs dask.distributed: pip install 'workbench[sweep]'") from None
    if client is not None and scheduler is not None:
        raise ParameterError("give client or scheduler, not both")
    if client is not None:
        _check_resources(client, resources)
        yield client
        return
    if scheduler is not None:
        try:
            own = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as e:
            raise SweepError(f"cannot reach the Dask scheduler at {scheduler}: {e}") from None
        with own:
            own.wait_for_workers(1, timeout=120)
            _check_resources(own, resources)
            yield own
        return
    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address="127.0.0.1:0", resources=dict(resources) or None)
    with cluster, Client(cluster) as own:
        yield own


def _check_resources(client, resources) -> None:
    try:
        info = client.scheduler_info(n_workers=-1)  # newer distributed lists 5 workers unless asked for all
    except TypeError:
        info = client.scheduler_info()
    workers = info["workers"].values()
    for name, amount in (resources or {}).items():
        if not any(w.get("resources", {}).get(name, 0) >= amount for w in workers):
            raise SweepError(f"no worker of the cluster offers the resource {name}={amount}: start workers with "
                             f"`dask worker SCHEDULER --resources {name}={amount}` (one point at a time each)")


def _hosts_by_kind(client, kinds) -> dict:
    """{kind: [host, ...]} of the workers whose CPU name or flags contain each kind."""
    hosts = {None: None}
    if not kinds:
        return hosts
    from workbench.sweep.worker import worker_cpu

    cpus = client.run(worker_cpu).values()
    for kind in kinds:
        k = kind.lower()
        hosts[kind] = sorted({c["host"] for c in cpus
                              if k in c["cpu"].lower() or k in c["flags"].lower().split()})
    return hosts


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
