"""Fresh processes against one numba cache: none may crash, and the cache may not grow.

    .venv/bin/python scripts/cache_soak.py [--runs 50] [--cache DIR] [--json]

Runs `workbench generate MODEL --max-tokens 4` in `--runs` fresh processes, cycling
through SmolLM2 and Gemma 3 x 1 and 2 threads x f16 and f32 KV caches, all against one
cache directory (`--cache`, else a new temporary one, used as WORKBENCH_CACHE so that the
keyed numba directory inside it is exercised). Reports per run the exit code, wall time
and the number of numba cache files after it; the first round of the 8 combinations may
add files (it compiles), no later run may. Exit 1 on any failed run or any growth after
the first round. The test suite runs a shorter version (tests/test_compiled_step.py).
"""

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMBOS = list(itertools.product(["smollm2-135m", "gemma3-270m"], [1, 2], ["f16", "f32"]))


def cache_files(root: Path) -> int:
    return sum(1 for p in root.rglob("*") if p.suffix in (".nbi", ".nbc"))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--cache", default=None, help="WORKBENCH_CACHE for every run (default: a new temporary one)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    cache = Path(args.cache or tempfile.mkdtemp(prefix="workbench-cache-soak-"))
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"} | {"WORKBENCH_CACHE": str(cache)}
    rows = []
    for i in range(args.runs):
        source, threads, kv = COMBOS[i % len(COMBOS)]
        cmd = [sys.executable, "-m", "workbench", "generate", source, "-p", "Hello", "--max-tokens", "4", "--json",
               "--threads", str(threads), "--kv-type", kv]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        out = json.loads(done.stdout) if done.returncode == 0 else {}
        rows.append({"run": i, "source": source, "threads": threads, "kv_type": kv, "exit": done.returncode,
                     "seconds": round(time.perf_counter() - t0, 2), "cache_files": cache_files(cache / "numba"),
                     "decode_tok_s": round(out.get("decode_tok_s", 0.0), 1),
                     "compiled": next((line for line in done.stderr.splitlines() if "compiled for this CPU" in line), ""),
                     "error": done.stderr.strip().splitlines()[-1] if done.returncode else ""})
    first_round = rows[len(COMBOS) - 1]["cache_files"] if len(rows) >= len(COMBOS) else None
    grew = [r["run"] for r in rows[len(COMBOS):] if r["cache_files"] != first_round]
    failed = [r["run"] for r in rows if r["exit"] != 0]
    summary = {"runs": len(rows), "failed": len(failed), "cache_files_after_first_round": first_round,
               "cache_files_last": rows[-1]["cache_files"], "runs_that_grew_the_cache": grew,
               "first_run_seconds": rows[0]["seconds"],
               "median_later_seconds": sorted(r["seconds"] for r in rows[len(COMBOS):])[len(rows[len(COMBOS):]) // 2]
               if len(rows) > len(COMBOS) else None, "cache": str(cache)}
    if args.json:
        print(json.dumps({"summary": summary, "runs": rows}))
    else:
        print("| run | model | threads | kv | exit | s | decode tok/s | cache files |")
        print("|---:|---|---:|---|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r['run']} | {r['source']} | {r['threads']} | {r['kv_type']} | {r['exit']} | {r['seconds']} | "
                  f"{r['decode_tok_s']} | {r['cache_files']} |")
        for r in rows:
            if r["compiled"]:
                print(f"run {r['run']}: {r['compiled']}")
        print(json.dumps(summary))
    return 1 if failed or grew else 0


if __name__ == "__main__":
    sys.exit(main())
