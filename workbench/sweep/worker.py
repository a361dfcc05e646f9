"""The Dask task of a sweep point: start a fresh Python process for it and return its record.

Runs on a Dask worker. The point is measured by `python -m workbench.sweep.point` in a
child process whose environment pins numba's pool to the point's thread count
(NUMBA_NUM_THREADS is read once, when numba starts, so a worker's own process cannot
change it for one task) and whose PYTHONPATH starts with the directory this workbench
was imported from, so that the child runs the same code as the worker. The worker
thread only waits; Dask's `bench` resource keeps a second point off the worker meanwhile.

A child that dies without writing its record (a crash, a kill, the timeout) makes a
failed record here, with its exit code and the end of its stderr.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

STDERR_TAIL = 2000  # characters of a dead point's stderr kept in its error


def run_point(point: dict, timeout: float | None = None) -> dict:
    """The record of `point`, measured in a child process (see the module docstring)."""
    import workbench

    threads = str(point["threads"])
    root = str(Path(workbench.__file__).resolve().parents[1])
    env = dict(os.environ, NUMBA_NUM_THREADS=threads, OMP_NUM_THREADS=threads,
               PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    with tempfile.TemporaryDirectory(prefix="workbench-point-") as tmp:
        spec, out = Path(tmp) / "point.json", Path(tmp) / "record.json"
        spec.write_text(json.dumps(point), encoding="utf-8")
        argv = [sys.executable, "-m", "workbench.sweep.point", str(spec), str(out), str(os.getpid())]
        try:
            proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
            error = None if out.is_file() else (f"the point's process exited with code {proc.returncode} "
                                                f"without a record: {proc.stderr[-STDERR_TAIL:].strip()}")
        except subprocess.TimeoutExpired:
            error = f"the point's process did not finish within {timeout:g} s and was killed"
        record = json.loads(out.read_text(encoding="utf-8")) if error is None else failed(point, error)
    record["worker"] = _worker_address()
    return record


def failed(point: dict, error: str) -> dict:
    """A failed record of `point`: its parameters, status "failed" and the error."""
    from workbench.sweep.point import PARAMS

    return {k: point.get(k) for k in PARAMS} | {"status": "failed", "error": error}


def worker_cpu(dask_worker) -> dict:
    """host, CPU name and flags of the machine a worker runs on (for `cpu_kind`
    placement); for `Client.run`, which passes the worker as `dask_worker`."""
    from distributed.comm import get_address_host

    from workbench.machine import cpu_name
    from workbench.sweep.provenance import cpu_flags

    return {"host": get_address_host(dask_worker.address), "cpu": cpu_name(), "flags": cpu_flags()}


def _worker_address() -> str | None:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return None
