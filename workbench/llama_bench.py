"""Bench records in llama-bench's shape, and its output formats (md, csv, json, jsonl).

Scripts written for llama.cpp's `llama-bench -o json` (and tooling in the style of its
`compare-llama-bench.py`) read these records as they are: every key of llama-bench's
`test` record, in its order and with its types (ints, bools, floats, strings; see
`FIELDS`), then `samples_ns` and `samples_ts`, then workbench's own fields (`engine`,
`model`, `quant`, `profile`, `converted`, `weight_bytes`, `kv_type`, `tok_s`, ...).
Fields that name GPU or scheduling settings workbench does not have take the value
llama-bench writes for a CPU run without them (`n_gpu_layers` 0, `cpu_mask` "0x0",
`devices` "auto", `tensor_split` "0.00", ...). `model_type` follows
`llama_model_desc`: architecture, size, weight type ("llama 135M Q4_1").

A `BenchRecord` with a peer becomes two records of the same shape: workbench's
(`engine` "workbench", `build_commit` its commit) and the peer's (`engine` "llama.cpp",
`build_commit` the peer description, its samples). `markdown` prints llama-bench's
table (its columns, widths and number formats, `t/s` as "mean ± stdev", the test as
"pp32", "tg64 @ d8"), with the peer's t/s and the ratio beside ours when there is one.

Nothing here measures or prints; `workbench bench -o FORMAT` writes what it returns.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections.abc import Sequence

# llama-bench's record keys in its order, with their JSON types
FIELDS: dict[str, type] = {
    "build_commit": str, "build_number": int, "cpu_info": str, "gpu_info": str, "backends": str,
    "model_filename": str, "model_type": str, "model_size": int, "model_n_params": int, "n_batch": int,
    "n_ubatch": int, "n_threads": int, "cpu_mask": str, "cpu_strict": bool, "poll": int, "type_k": str,
    "type_v": str, "n_gpu_layers": int, "n_cpu_moe": int, "split_mode": str, "main_gpu": int,
    "no_kv_offload": bool, "flash_attn": bool, "devices": str, "tensor_split": str, "tensor_buft_overrides": str,
    "use_mmap": bool, "embeddings": bool, "no_op_offload": int, "no_host": bool, "n_prompt": int, "n_gen": int,
    "n_depth": int, "test_time": str, "avg_ns": int, "stddev_ns": int, "avg_ts": float, "stddev_ts": float,
}
SAMPLE_FIELDS = ("samples_ns", "samples_ts")
FORMATS = ("md", "csv", "json", "jsonl")

# what llama-bench writes for settings a CPU run of workbench does not have
_CPU_RUN = {"gpu_info": "", "backends": "CPU", "cpu_mask": "0x0", "cpu_strict": False, "poll": 50,
            "n_gpu_layers": 0, "n_cpu_moe": 0, "split_mode": "layer", "main_gpu": 0, "no_kv_offload": False,
            "flash_attn": False, "devices": "auto", "tensor_split": "0.00", "tensor_buft_overrides": "none",
            "embeddings": False, "no_op_offload": 0, "no_host": False}


def records(bench_records: Sequence) -> list[dict]:
    """llama-bench-shaped dicts of `BenchRecord`s: one per record, and one more for its
    peer's samples when it has a peer."""
    out = []
    for r in bench_records:
        out.append(_record(r, "workbench", r.commit, r.build_number, r.samples))
        if r.peer:
            out.append(_record(r, "llama.cpp", r.peer, 0, r.peer_samples, r.peer_model_path))
    return out


def _record(r, engine: str, build_commit: str, build_number: int, samples_ts: list[float],
            model_filename: str | None = None) -> dict:
    n_tokens = r.n_prompt + r.n_gen
    samples_ns = [round(n_tokens / ts * 1e9) for ts in samples_ts]
    row = dict(_CPU_RUN)
    row |= {"build_commit": build_commit, "build_number": build_number, "cpu_info": r.cpu,
            "model_filename": model_filename or r.model_path, "model_type": model_type(r), "model_size": r.size_bytes,
            "model_n_params": r.n_params, "n_batch": r.n_batch, "n_ubatch": r.n_batch, "n_threads": r.threads,
            "type_k": r.kv_type, "type_v": r.kv_type, "use_mmap": r.model_path.endswith(".gguf"),
            "n_prompt": r.n_prompt, "n_gen": r.n_gen, "n_depth": r.n_depth,
            "test_time": r.timestamp.replace("+00:00", "Z"),
            "avg_ns": round(statistics.mean(samples_ns)),
            "stddev_ns": round(statistics.stdev(samples_ns)) if len(samples_ns) > 1 else 0,
            "avg_ts": statistics.mean(samples_ts),
            "stddev_ts": statistics.stdev(samples_ts) if len(samples_ts) > 1 else 0.0}
    row = {k: row[k] for k in FIELDS}
    row |= {"samples_ns": samples_ns, "samples_ts": list(samples_ts), "engine": engine}
    ours = r.as_dict()
    row |= {k: v for k, v in ours.items() if k not in row}
    return row


def model_type(r) -> str:
    """"llama 135M Q4_1": architecture, parameter count, weight type, as `llama_model_desc`
    (with the formats workbench converted at load, when it did)."""
    n = r.n_params
    size = f"{n / 1e9:.1f}B" if n >= 1e9 else f"{round(n / 1e6)}M"
    converted = f" ({r.converted} at load)" if r.converted else ""
    return f"{r.arch} {size} {r.quant}{converted}"


def render(bench_records: Sequence, fmt: str) -> str:
    """The records in one of `FORMATS`, as llama-bench writes them."""
    if fmt == "md":
        return markdown(bench_records)
    rows = records(bench_records)
    if fmt == "json":
        return json.dumps(rows, indent=2) + "\n"
    if fmt == "jsonl":
        return "".join(json.dumps(row) + "\n" for row in rows)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else list(FIELDS), lineterminator="\n")
        w.writeheader()
        for row in rows:
            w.writerow({k: json.dumps(v) if isinstance(v, list) else "" if v is None else v for k, v in row.items()})
        return buf.getvalue()
    raise ValueError(f"unknown format {fmt!r}")


# (header, width): negative widths are left-aligned, as llama-bench's printf("%*s")
_COLUMNS = [("model", -30), ("size", 10), ("params", 10), ("backend", -10), ("threads", 7), ("test", 15),
            ("t/s", 20), ("GB/s", 6)]
_PEER_COLUMNS = [("llama.cpp t/s", 20), ("ratio", 6), ("llama.cpp GB/s", 14)]


def markdown(bench_records: Sequence) -> str:
    """llama-bench's table (its columns first, then the decode rows' GB/s and, when the
    machine's bandwidth is known, their share of it), then its build line and
    workbench's provenance."""
    peer = next((r.peer for r in bench_records if r.peer), None)
    build = next((r.peer_build for r in bench_records if r.peer_build), None)
    roof = any(r.roof_frac is not None for r in bench_records)
    columns = _COLUMNS + [("% read bw", 9)] * roof
    if peer:
        columns += _PEER_COLUMNS + [("llama.cpp % read bw", 19)] * roof
    lines = ["|" + "".join(f" {name:{'<' if w < 0 else '>'}{abs(w)}} |" for name, w in columns),
             "|" + "".join(f" {'-' * (abs(w) - 1)}{':' if w > 0 else '-'} |" for _, w in columns)]
    for r in bench_records:
        values = [model_type(r), _size(r.size_bytes), _params(r.n_params), "CPU", str(r.threads),
                  r.test + (f" @ d{r.n_depth}" if r.n_depth else ""), f"{r.tok_s:.2f} ± {r.stdev:.2f}",
                  _num(r.gbps, ".1f")] + [_num(r.roof_frac and 100 * r.roof_frac, ".0f")] * roof
        if peer:
            values += [f"{r.peer_tok_s:.2f} ± {r.peer_stdev:.2f}", f"{r.ratio:.2f}", _num(r.peer_gbps, ".1f")] \
                if r.peer else ["", "", ""]
            values += [_num(r.peer_roof_frac and 100 * r.peer_roof_frac, ".0f")] * roof
        lines.append("|" + "".join(f" {v:{'<' if w < 0 else '>'}{abs(w)}} |" for v, (_, w) in zip(values, columns)))
    first = bench_records[0]
    reps = sorted({len(r.samples) for r in bench_records})
    roofs = sorted({(r.threads, r.roof_gbps) for r in bench_records if r.roof_gbps is not None})
    lines += ["", f"build: {first.commit} ({first.build_number})",
              f"workbench {first.workbench}, profile {first.profile}, on {first.cpu} ({first.cpu_flags}), "
              f"{first.timestamp}; mean ± stdev of {'/'.join(map(str, reps))} runs after 1 warm-up; models: "
              + ", ".join(dict.fromkeys(f"{r.model} ({r.model_path})" for r in bench_records))
              + ("; read bandwidth " + ", ".join(f"{g:.1f} GB/s at t={t}" for t, g in roofs) if roofs else "")
              + (f"; peer {peer} built with {build}, interleaved run by run" if peer else "")]
    return "\n".join(lines) + "\n"


def _num(value, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:.2f} MiB" if n_bytes < 2**30 else f"{n_bytes / 2**30:.2f} GiB"


def _params(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n < 1e9 else f"{n / 1e9:.2f} B"
