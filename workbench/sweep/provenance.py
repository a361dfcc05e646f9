"""Where and with what a sweep point ran: host, CPU, versions, threads, kernels.

Read inside the point's own process, after its measurements, so that the thread pool
and the threading layer are the ones the numbers came from. Everything is a plain
value (str, int) so that a record goes into Parquet as it is; the kernel choices are a
JSON object in one string column (their keys differ from model to model).
"""

from __future__ import annotations

import json
import os
import platform
import socket
from importlib import metadata
from pathlib import Path

PACKAGES = ("numpy", "numba", "llvmlite", "pandas", "dask", "distributed")
OPS = ("matvec", "get_rows")


def machine() -> dict:
    """host, cpu (model name), cpu_flags (space-separated, /proc/cpuinfo's), cpu_count,
    cpus_allowed (this process's affinity), platform, python and package versions."""
    from workbench.machine import cpu_name

    out = {"host": socket.gethostname(), "cpu": cpu_name(), "cpu_flags": cpu_flags(), "cpu_count": os.cpu_count(),
           "cpus_allowed": cpus_allowed(), "platform": platform.platform(), "python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[f"{name}_version"] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[f"{name}_version"] = None
    return out


def cpus_allowed() -> int:
    """The CPUs this process may run on (its affinity mask; the CPU count where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_flags() -> str:
    """The CPU's feature flags as /proc/cpuinfo lists them ("" where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def threading() -> dict:
    """numba's thread pool size, threads in use and threading layer (None before any
    parallel region ran)."""
    import numba

    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel region has run in this process
        layer = None
    return {"numba_threads": numba.config.NUMBA_NUM_THREADS, "numba_threads_used": numba.get_num_threads(),
            "threading_layer": layer}


def kernel_choices(formats) -> dict:
    """{"matvec:q4_1": "serial (row_groups_serial)", ...}: the registry's default
    variant of each op for each weight format in `formats`, and the function it names
    (two names may be one function: "serial" is the serial twin of the CPU's choice)."""
    from workbench.kernels import registry

    out = {}
    for op in OPS:
        for fmt in sorted(formats):
            try:
                name = registry.default_name(op, fmt)
                fn = registry.default(op, fmt)
            except Exception:  # noqa: BLE001 - a format without this op has nothing to record
                continue
            out[f"{op}:{fmt}"] = f"{name} ({getattr(fn, '__name__', type(fn).__name__)})"
    return out


def weight_formats(model) -> set[str]:
    """The formats of the model's matrices as the kernels read them: the file's 2-D
    tensors' formats plus those the load converted to (a converted layer's source
    format may still hold other matrices, so it stays in)."""
    source = model.source
    if hasattr(source, "tensors"):  # a GGUF file
        found = {t.type_name.lower() for t in source.tensors.values() if len(t.shape) > 1}
    else:  # an HF directory: safetensors dtypes ("F32", "BF16")
        found = {st.tensors[name].dtype.lower() for st in source.shards.values() for name in st.tensors
                 if len(st.tensors[name].shape) > 1}
    return found | {b for _, b in model.load_report.quantized}


def as_json(value) -> str:
    return json.dumps(value, sort_keys=True)
