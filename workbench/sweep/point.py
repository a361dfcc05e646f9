"""One sweep point, measured in a process of its own.

    python -m workbench.sweep.point POINT.json RECORD.json PARENT_PID

`workbench.sweep.worker.run_point` starts this with NUMBA_NUM_THREADS (and
OMP_NUM_THREADS) set to the point's thread count, so numba's pool is exactly the
point's size; a fresh process also means a fresh kernel registry, page cache warmth
aside nothing left over from the point before, and a crash that ends only this point.
It selects the point's kernel variants (`registry.set_default`, before the model loads,
so the load's warm-up compiles them), loads the model by catalog name or path on this
machine, runs `workbench.bench.bench_model` (ppN and tgN), optionally `Model.score` for
perplexity, and writes one record: the point's parameters, the bench numbers, what
actually ran (kernel choices per weight format, which decode path the model takes) and
where (`provenance`).

What ran can differ from what was asked: a bare variant name applies only to formats
that have it (`kernels` lists the registry's choice per format, `kernels_run` the kernel
each format's products run inside the model's compiled step). Any error becomes a record with status
"failed" and the error; the process exits 0 whenever it wrote a record.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import time
import traceback
from pathlib import Path

from workbench.errors import ParameterError
from workbench.sweep import provenance

# the point's fields that are parameters, copied into its record ("score_text" is not)
PARAMS = ("point_id", "source", "threads", "n_prompt", "n_gen", "reps", "quant_threshold", "quant_type", "kv_type",
          "kernel", "cpu_kind", "profile", "score_file", "score_sha256", "score_tokens")
# the bench record's keys shared by the pp and tg tests of a point
BENCH_KEYS = ("model", "model_path", "arch", "quant", "size_bytes", "n_params", "profile", "converted",
              "weight_bytes", "commit", "workbench")


def measure(point: dict) -> dict:
    """The record of one point (status "ok" or "failed"); never raises."""
    record = {k: point.get(k) for k in PARAMS} | {"status": "failed", "error": None, "started": _now(),
                                                   "pid": os.getpid()}
    t0 = time.perf_counter()
    try:
        record |= _run(point)
        record["status"] = "ok"
    except Exception as e:  # noqa: BLE001 - a point's failure is data, the sweep goes on
        record["error"] = f"{type(e).__name__}: {e}"
        record["traceback"] = traceback.format_exc(limit=-8)
    record["seconds"] = time.perf_counter() - t0
    record["finished"] = _now()
    try:
        record |= provenance.machine() | provenance.threading()
    except Exception as e:  # noqa: BLE001
        record["error"] = record["error"] or f"provenance: {type(e).__name__}: {e}"
    return record


def _run(point: dict) -> dict:
    import workbench
    from workbench.bench import bench_model, context_for

    threads = point["threads"]
    cpus = provenance.cpus_allowed()
    if threads > cpus:  # benchmarks must not share cores
        raise ParameterError(f"the point asks {threads} threads; this process may run on {cpus} CPUs")
    select_kernels(point["kernel"])
    n_ctx = context_for([point["n_prompt"]], [point["n_gen"]])
    if point.get("score_text") is not None:
        n_ctx = max(n_ctx, point["score_tokens"])
    options = {"kv_type": point["kv_type"], "quant_threshold": point["quant_threshold"]}
    if point["quant_type"] is not None:
        options["quant_type"] = point["quant_type"]
    source = point["source"]
    local = Path(source).expanduser()
    model = workbench.load(str(local.resolve()) if local.exists() else source, threads=threads, n_ctx=n_ctx,
                           profile=point["profile"], **options)
    out = {}
    for r in bench_model(model, source, n_prompt=[point["n_prompt"]], n_gen=[point["n_gen"]], threads=[threads],
                         reps=point["reps"]):
        kind = "pp" if r.n_prompt else "tg"
        out |= {k: getattr(r, k) for k in BENCH_KEYS}
        out |= {f"{kind}_tok_s": r.tok_s, f"{kind}_stdev": r.stdev, f"{kind}_samples": list(r.samples)}
        if kind == "tg":
            out["n_depth"] = r.n_depth
    out["bench_cpu"] = r.cpu
    out["decode_path"] = "compiled: one call into numba per forward"  # the only path a model has
    out["kernels_run"] = provenance.as_json(model.net.products.kernel_names())
    out["kernels"] = provenance.as_json(provenance.kernel_choices(provenance.weight_formats(model)))
    if getattr(model.load_report, "kernels", None):  # what the load itself recorded, where it does
        out["load_kernels"] = provenance.as_json(model.load_report.kernels)
    if point.get("score_text") is not None:
        scores = model.score(point["score_text"], max_tokens=point["score_tokens"])
        out |= {"perplexity": scores.perplexity, "scored_tokens": int(scores.logprob.size)}
    return out


def select_kernels(spec: str) -> dict:
    """Make the kernel choice `spec` (see `grid`) the registry's defaults in this process;
    {"matvec:q4_1": "serial", ...} of what it set. A named variant that no format has, or
    an OP:FMT=NAME that is not registered, is an error."""
    from workbench.kernels import registry
    from workbench.sweep.grid import kernel_parts

    registry.variants("matvec", "f32")  # loads the built-in kernels
    chosen = {}
    for op, fmt, name in kernel_parts(spec):
        if op is not None:
            registry.set_default(op, fmt, name)
            chosen[f"{op}:{fmt}"] = name
            continue
        for fmt in registry.formats("matvec"):
            if name in registry.variants("matvec", fmt):
                registry.set_default("matvec", fmt, name)
                chosen[f"matvec:{fmt}"] = name
        if not any(v == name for v in chosen.values()):
            raise ParameterError(f"kernel choice {spec!r}: no matvec format has a variant {name!r}")
    return chosen


def _die_with_parent(parent: int) -> None:
    """End this process when the worker that started it dies (Linux), so that killing a
    worker does not leave its point running on the cores the next point needs."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        sys.exit(3)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def main(argv: list[str]) -> int:
    spec, out, parent = argv
    _die_with_parent(int(parent))
    record = measure(json.loads(Path(spec).read_text(encoding="utf-8")))
    tmp = Path(out).with_suffix(".tmp")
    tmp.write_text(json.dumps(record), encoding="utf-8")
    os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
