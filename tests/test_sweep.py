"""Sweeps on real Dask clusters (`workbench.sweep`, `workbench sweep`), bound to 127.0.0.1.

- A LocalCluster of two workers (one thread each) runs 2 models x 2 thread counts x 2
  kernel choices with a few tokens; one worker is killed while it runs a point. The
  scheduler may not retry a point whose worker died (allowed-failures 0), so that point,
  and any other the scheduler had already handed to that worker, must come back as
  failed records and every other one as ok; a resumed run must then run exactly the
  failed points and leave every finished record as it was.
- `dask scheduler` and two `dask worker` processes: a sweep stopped after its first
  point, resumed through the CLI with `--scheduler`, points placed by CPU kind.
- The grid, the results file and the plots on their own, without a cluster.
No assertion is about speed beyond "positive".
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

import workbench
from tests._models import smollm2_path
from workbench import viz
from workbench.cli import main
from workbench.errors import ParameterError
from workbench.sweep import Grid, iter_run, load, points, run
from workbench.sweep.grid import canonical_kernel
from workbench.sweep.store import ResultStore, read_records

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "data" / "tiny-gpt2")
FEW = dict(n_prompt=[4], n_gen=[4], reps=1)

distributed = pytest.importorskip("distributed", reason="pip install 'workbench[sweep]'")


@pytest.fixture
def worktree_on_path(monkeypatch):
    """Workers (and the points they start) import this checkout's workbench."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))


# -- a LocalCluster, a killed worker, a resumed sweep ----------------------------------

@pytest.mark.slow
def test_killed_worker_then_resume(tmp_path, worktree_on_path):
    import dask

    grid = Grid(sources=[TINY, str(smollm2_path())], threads=[1, 2], kernel=["default", "serial"], **FEW)
    expected = {p["point_id"]: p for p in points(grid)}
    assert len(expected) == 8
    out = tmp_path / "sweep.parquet"
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                           dashboard_address=None, resources={"bench": 1})
    with cluster, distributed.Client(cluster) as client:
        killed = handed = None
        first = []
        for record in iter_run(grid, out, client=client, progress=False):
            first.append(record)
            if killed is None:
                killed, handed = _kill_a_worker_running(client, str(smollm2_path()), expected)
        assert killed is not None, "no worker was seen running a SmolLM2 point"

        # every point came back once: those on the killed worker failed with Dask's reason
        assert sorted(r["point_id"] for r in first) == sorted(expected)
        by_id = {r["point_id"]: r for r in first}
        failed = {i for i, r in by_id.items() if r["status"] == "failed"}
        assert killed in failed and failed <= handed, [by_id[i]["error"] for i in failed - handed]
        assert all("KilledWorker" in by_id[i]["error"] for i in failed)
        ok = set(expected) - failed
        assert all(by_id[i]["status"] == "ok" for i in ok)
        on_disk = read_records(out)
        assert [r["point_id"] for r in on_disk] == [r["point_id"] for r in first]  # streamed in finishing order
        for r in (by_id[i] for i in ok):
            _check_ok_record(r, expected[r["point_id"]])

        # resume: only the failed points run; finished records stay as they were
        client.wait_for_workers(2, timeout=60)
        again = run(grid, out, client=client, resume=True, progress=False)
        assert sorted(again.skipped) == sorted(ok)
        assert sorted(r["point_id"] for r in again.records) == sorted(failed)
        assert all(r["status"] == "ok" for r in again.records), [r["error"] for r in again.records]
        every = read_records(out)
        assert len(every) == 8 + len(failed)
        for old in every[:8]:
            assert old["run_id"] == first[0]["run_id"]
        latest = load(out)
        assert len(latest) == 8 and set(latest["status"]) == {"ok"}
        kept = latest.set_index("point_id")
        for i in ok:
            assert kept.loc[i, "pid"] == by_id[i]["pid"] and kept.loc[i, "finished"] == by_id[i]["finished"]

        # nothing left to run: no record, every point skipped
        done = run(grid, out, client=client, resume=True, progress=False)
        assert done.records == [] and len(done.skipped) == 8

    # the plots draw exactly the records' numbers
    fig = viz.kernel_variants(latest)
    bars = {(t.name, x): y for t in fig.data for x, y in zip(t.x, t.y)}
    for _, r in latest.iterrows():
        assert bars[(r["kernel"], f"{r['model']} t={r['threads']}")] == pytest.approx(r["tg_tok_s"])
    scaling = viz.thread_scaling(latest)
    assert {t.name for t in scaling.data} == {f"{m} on {latest['cpu'].iloc[0]}" for m in latest["model"].unique()}


def _kill_a_worker_running(client, source: str, expected: dict) -> tuple[str | None, set[str]]:
    """SIGKILL the process of a worker while it runs a point of `source`: that point's id,
    and the ids of every point the scheduler had handed to that worker (the bench
    resource lets it run one; the others wait there)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        running = client.run(_running_keys)
        for address, keys in running.items():
            for key in keys:
                point = expected.get(str(key).split("-")[1])
                if point is not None and point["source"] == source:
                    handed = {str(k).split("-")[1] for k in client.processing()[address]}
                    pid = client.run(os.getpid, workers=[address])[address]
                    os.kill(pid, signal.SIGKILL)
                    return point["point_id"], handed | {point["point_id"]}
        time.sleep(0.1)
    return None, set()


def _running_keys(dask_worker) -> list[str]:
    """The keys a worker is executing now (not those waiting for its bench resource)."""
    return [str(k) for k in dask_worker.state.executing]


def _check_ok_record(r: dict, point: dict) -> None:
    """What a finished point's record must carry: its parameters, numbers, what ran, where."""
    for key in ("source", "threads", "kernel", "n_prompt", "n_gen", "kv_type"):
        assert r[key] == point[key]
    assert r["pp_tok_s"] > 0 and r["tg_tok_s"] > 0 and len(r["tg_samples"]) == 1
    assert r["numba_threads"] == r["numba_threads_used"] == point["threads"]  # the pool is the point's size
    kernels = json.loads(r["kernels"])
    matvec = [v for k, v in kernels.items() if k.startswith("matvec:")]
    assert matvec and all(v.startswith("serial ") == (point["kernel"] == "serial") for v in matvec)
    assert r["decode_path"].startswith("compiled")  # every kernel choice runs inside the compiled step
    run = json.loads(r["kernels_run"])
    assert run and all(v.endswith("serial") == (point["kernel"] == "serial") for f, v in run.items()
                       if f.startswith("q")), run
    for key in ("host", "cpu", "cpu_flags", "numba_version", "numpy_version", "commit", "workbench", "worker"):
        assert r[key], key
    assert r["commit"] != "unknown" and r["worker"].startswith("tcp://127.0.0.1:")


# -- dask scheduler + dask worker processes, through the CLI ---------------------------

@pytest.mark.slow
def test_cli_on_a_scheduler_and_two_worker_processes(tmp_path, capsys, worktree_on_path):
    from workbench.machine import cpu_name

    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = str(Path(sys.executable).parent / "dask")
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for _ in range(2):
            procs.append(subprocess.Popen([dask, "worker", address, "--host", "127.0.0.1", "--nthreads", "1",
                                           "--resources", "bench=1", "--no-dashboard"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with distributed.Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
            workers = set(client.scheduler_info(n_workers=-1)["workers"])
        kind = cpu_name().split()[-1]  # "EPYC", "Xeon(R)"...: a kind this machine's workers are
        out = tmp_path / "sweep.jsonl"
        argv = ["sweep", TINY, "-t", "1", "-p", "4", "-n", "4", "-r", "1", "--kernel", "default,serial",
                "--cpu-kind", f"{kind},NoSuchCPU", "--out", str(out), "--scheduler", address]
        grid = Grid(sources=[TINY], kernel=["default", "serial"], cpu_kind=[kind, "NoSuchCPU"], **FEW, threads=[1])
        assert len(points(grid)) == 4

        # the placeable half, stopped after its first record (Ctrl-C, a closed notebook)
        records = iter_run(replace(grid, cpu_kind=[kind]), out, scheduler=address, progress=False)
        stopped = next(records)
        records.close()
        assert read_records(out) == [stopped] and stopped["status"] == "ok", stopped["error"]

        # the whole grid, resumed through the CLI on the same scheduler: the other three run
        code = main(argv + ["--resume", "--json"])
        printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert read_records(out) == [stopped] + printed
        every = [stopped] + printed
        assert sorted(r["point_id"] for r in every) == sorted(p["point_id"] for p in points(grid))
        placed = [r for r in every if r["cpu_kind"] == kind]
        nowhere = [r for r in every if r["cpu_kind"] == "NoSuchCPU"]
        assert [r["status"] for r in placed] == ["ok", "ok"], [r.get("error") for r in placed]
        assert {r["worker"] for r in placed} <= workers
        assert {r["kernel"] for r in placed} == {"default", "serial"}
        assert len(nowhere) == 2 and all("no worker has a CPU of kind 'NoSuchCPU'" in r["error"] for r in nowhere)
        assert code == 1  # some points failed

        # resumed with the placeable points only: nothing to run, exit 0
        assert main(argv[:argv.index("--cpu-kind") + 1] + [kind] + argv[argv.index("--out"):] + ["--resume"]) == 0
        assert "0 ok, 0 failed, 2 finished earlier" in capsys.readouterr().err
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- without a cluster -------------------------------------------------------------------

def test_grid_points_and_ids():
    grid = {"sources": ["a", "b"], "threads": [1, 2], "quant_threshold": [None, 768], "quant_type": ["q8_0", "q4_0"],
            "kernel": ["default", "serial"]}
    found = points(grid)
    # quantization off has no type to choose: 2 x 2 x (1 + 2) x 2
    assert len(found) == 24 and len({p["point_id"] for p in found}) == 24
    assert {p["quant_type"] for p in found if p["quant_threshold"] is None} == {None}
    # an id depends on the point, not on the grid around it
    wider = points(grid | {"threads": [4, 2, 1], "kernel": ["row_groups", "serial", "default"]})
    assert {p["point_id"] for p in found} < {p["point_id"] for p in wider}
    # axes left out take the profile's values, written into the point
    plain = points({"sources": ["a"]})[0]
    assert plain["quant_threshold"] is None and plain["kv_type"] == "f16"
    assert points({"sources": ["a"], "profile": "aggressive"})[0]["quant_threshold"] == 0


def test_kernel_choices_are_spelled_one_way():
    assert canonical_kernel("matvec:q4_1=serial + default+row_groups") == "matvec:q4_1=serial+row_groups"
    assert canonical_kernel("default") == canonical_kernel("") == "default"
    assert len(points({"sources": ["a"], "kernel": ["serial+row_groups", "row_groups+serial"]})) == 1


@pytest.mark.parametrize("grid, word", [
    ({"sources": []}, "sources"),
    ({"sources": ["a"], "threads": [0]}, "threads"),
    ({"sources": ["a"], "quant_type": ["q3"]}, "quant_type"),
    ({"sources": ["a"], "kv_type": "f8"}, "kv_type"),
    ({"sources": ["a"], "kernel": ["matvec:q4_1"]}, "kernel"),
    ({"sources": ["a"], "n_prompt": [0], "n_gen": [0]}, "no points"),
    ({"sources": ["a"], "score": "/no/such/text.txt"}, "score"),
    ({"sources": ["a"], "threds": [1]}, "threds"),
])
def test_bad_grids_are_refused_before_anything_runs(grid, word):
    with pytest.raises(ParameterError, match=word):
        points(grid)


def test_results_file(tmp_path):
    for name in ("r.jsonl", "r.parquet"):
        path = tmp_path / name
        store = ResultStore(path)
        store.add({"point_id": "a", "status": "failed", "error": "boom", "tg_tok_s": None})
        store.add({"point_id": "b", "status": "ok", "tg_tok_s": 5.0, "tg_samples": [4.0, 6.0]})
        store.add({"point_id": "a", "status": "ok", "tg_tok_s": 7.0, "tg_samples": [7.0]})
        assert [r["point_id"] for r in read_records(path)] == ["a", "b", "a"]
        assert ResultStore(path, resume=True).finished() == {"a", "b"}
        latest = load(path)
        assert list(latest["point_id"]) == ["a", "b"] and list(latest["tg_tok_s"]) == [7.0, 5.0]
        assert len(load(path, latest=False)) == 3
        with pytest.raises(ParameterError, match="exists"):
            ResultStore(path)
        assert ResultStore(path, overwrite=True).records == [] and not path.exists()
    torn = tmp_path / "torn.jsonl"
    torn.write_text('{"point_id": "a", "status": "ok"}\n{"point_id": "b", "sta')
    assert [r["point_id"] for r in read_records(torn)] == ["a"]
    with pytest.raises(ParameterError, match="must end in"):
        ResultStore(tmp_path / "r.csv")


def test_speed_vs_threshold_draws_each_quant_type_from_off():
    rows = []
    for qt, thr, tok, ppl in [(None, None, 10.0, 40.0), ("q8_0", 768, 20.0, 41.0), ("q8_0", 0, 30.0, 42.0),
                              ("q4_0", 768, 25.0, 50.0), ("q4_0", 768, 27.0, 52.0)]:
        rows.append({"status": "ok", "model": "m", "threads": 1, "quant_threshold": thr, "quant_type": qt,
                     "tg_tok_s": tok, "perplexity": ppl, "cpu": "AMD EPYC"})
    rows.append({"status": "failed", "model": "m", "threads": 1, "quant_threshold": 0, "quant_type": "q4_0",
                 "tg_tok_s": None, "perplexity": None, "cpu": None})
    fig = viz.speed_vs_threshold(pd.DataFrame(rows))
    lines = {t.name: dict(zip(t.x, t.y)) for t in fig.data}
    assert lines["m q4_0 t=1"] == {"off": 10.0, "768": 26.0}  # repeated points averaged
    assert lines["m q8_0 t=1"] == {"off": 10.0, "0": 30.0, "768": 20.0}
    assert lines["m q4_0 t=1 perplexity"] == {"off": 40.0, "768": 51.0}
    assert list(fig.layout.xaxis.categoryarray) == ["off", "0", "768"]
    assert "AMD EPYC" in fig.layout.title.text
    with pytest.raises(ParameterError, match="no sweep point"):
        viz.speed_vs_threshold(pd.DataFrame(rows[-1:]))
    with pytest.raises(ParameterError, match="lack"):
        viz.thread_scaling(pd.DataFrame(rows).drop(columns=["cpu"]))


def test_cli_refuses_bad_input_before_starting_a_cluster(tmp_path, capsys):
    assert main(["sweep", TINY, "--out", str(tmp_path / "r.csv")]) == 2
    assert "must end in" in capsys.readouterr().err
    assert main(["sweep", TINY, "--quant-threshold", "lots", "--out", str(tmp_path / "r.jsonl")]) == 2
    assert "--quant-threshold" in capsys.readouterr().err


def test_workbench_sweep_is_the_run_function_and_the_module():
    assert workbench.sweep.run is run and workbench.sweep.load is load
    with pytest.raises(ParameterError, match="sources"):
        workbench.sweep({"sources": []})
