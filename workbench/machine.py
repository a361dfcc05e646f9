"""The machine's measured memory bandwidth: the roofline of a memory-bound decode step.

    bw = workbench.machine_bandwidth()        # measured once per machine, then cached
    bw.gbps("read", threads=2)                # best GB/s of the read kernel at 2 threads
    bw.as_dict()                              # the record, JSON-ready

The measurement (`kernels.membw.stream`, a few seconds and ~768 MiB) is cached as JSON in
`$WORKBENCH_CACHE` (else `~/.cache/workbench`), one file per CPU model and CPU count, so
that a machine that changes (another VM size, another host) measures again.
`refresh=True` measures again regardless. A decode step reads weights, so the roof to
compare an op's GB/s with is the `read` kernel's at the same thread count.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from workbench.errors import ParameterError
from workbench.formats.files import partial_path, remove

KERNELS = ("read", "copy", "triad")


def cpu_name() -> str:
    """The CPU's model name as /proc/cpuinfo gives it (else what `platform` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


@dataclass(frozen=True)
class MachineBandwidth:
    """Best GB/s per kernel per thread count, with every sample and its provenance."""

    cpu: str
    cpus: int  # logical CPUs the OS reports
    date: str  # ISO 8601, when it was measured
    buffer_mib: int  # size of each of the three arrays
    repeats: int
    samples: dict = field(repr=False)  # {kernel: {threads: [GB/s, ...]}}
    path: str = field(default="", compare=False)  # the cache file it came from or went to

    @property
    def threads(self) -> list[int]:
        return sorted(self.samples["read"])

    def gbps(self, kernel: str = "read", threads: int | None = None) -> float:
        """Best GB/s of `kernel` at `threads` (the most measured threads not above it;
        all measured when None)."""
        if kernel not in self.samples:
            raise ParameterError(f"kernel must be one of {KERNELS}, got {kernel!r}")
        measured = self.threads
        usable = [t for t in measured if threads is None or t <= threads]
        return max(self.samples[kernel][usable[-1] if usable else measured[0]])

    def table(self) -> list[dict]:
        """One row per thread count: threads, read, copy, triad (best GB/s)."""
        return [{"threads": t, **{k: max(self.samples[k][t]) for k in KERNELS}} for t in self.threads]

    def as_dict(self) -> dict:
        d = asdict(self)
        d["samples"] = {k: {str(t): v for t, v in per.items()} for k, per in self.samples.items()}
        d["best"] = self.table()
        return d

    @classmethod
    def from_dict(cls, d: dict, path: str = "") -> MachineBandwidth:
        samples = {k: {int(t): list(v) for t, v in per.items()} for k, per in d["samples"].items()}
        return cls(d["cpu"], int(d["cpus"]), d["date"], int(d["buffer_mib"]), int(d["repeats"]), samples, path)

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{r['threads']}</td>" + "".join(f"<td>{r[k]:.1f}</td>" for k in KERNELS) + "</tr>"
                       for r in self.table())
        head = "".join(f"<th>{k} GB/s</th>" for k in KERNELS)
        return (f"<b>{self.cpu}</b>, {self.cpus} CPUs, measured {self.date}"
                f"<table><tr><th>threads</th>{head}</tr>{rows}</table>")


def cache_path() -> Path:
    """This machine's cache file: one per CPU model and CPU count."""
    from workbench.formats.catalog import cache_dir

    slug = re.sub(r"[^a-z0-9]+", "-", cpu_name().lower()).strip("-")
    return cache_dir() / f"membw-{slug}-{os.cpu_count()}cpu.json"


def _default_threads() -> list[int]:
    from workbench.kernels.jit import max_threads

    n = max_threads()
    counts = [1 << i for i in range(n.bit_length()) if 1 << i < n]
    return counts + [n]


def machine_bandwidth(refresh: bool = False, threads: list[int] | None = None, buffer_mib: int = 256,
                      repeats: int = 5) -> MachineBandwidth:
    """This machine's STREAM-style bandwidth, from the cache unless `refresh` or none is
    cached. `threads` defaults to 1, 2, 4, ... up to numba's pool size."""
    path = cache_path()
    if not refresh and path.is_file():
        try:
            record = MachineBandwidth.from_dict(json.loads(path.read_text()), str(path))
            if record.cpu == cpu_name() and record.cpus == os.cpu_count():
                return record
        except (ValueError, KeyError, TypeError):
            pass  # an unreadable cache is measured again and overwritten
    from workbench.kernels.jit import max_threads
    from workbench.kernels.membw import stream

    threads = sorted(set(threads or _default_threads()))
    if threads[0] < 1 or threads[-1] > max_threads():
        raise ParameterError(f"threads must lie in 1..{max_threads()}, got {threads}")
    if buffer_mib < 1 or repeats < 1:
        raise ParameterError(f"buffer_mib and repeats must be positive, got {buffer_mib}, {repeats}")
    samples = stream(threads, buffer_mib, repeats)
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    record = MachineBandwidth(cpu_name(), os.cpu_count(), date, buffer_mib, repeats, samples, str(path))
    tmp = partial_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(record.as_dict(), indent=1))
        tmp.replace(path)  # atomic: a concurrent reader sees the old file or the new one
    except OSError:  # a read-only or misplaced cache: the measurement stands, it is only not kept
        remove(tmp)
    return record
