"""Measure what load-time quantization costs: top-1 agreement and perplexity.

For each F32 model (the HF F32 directories workbench derives from the two GGUF models)
and each quantization type, the model is loaded with every linear layer quantized
(threshold 0, lm_head included), and both it and the float model score the first
`--tokens` tokens of data/eval_text.txt teacher-forced (`Model.score`). Written to
tests/golden/quality.json (checked by tests/test_quality.py against stated floors) and
printed as a markdown table.

    .venv/bin/python scripts/quality_table.py [--tokens 257] [--models ...]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import workbench  # noqa: E402

MODELS = ["smollm2-135m:hf-f32", "gemma3-270m:hf-f32"]
QUANT_TYPES = ["q8_0", "q4_0"]
OUT = ROOT / "tests" / "golden" / "quality.json"


def measure(source: str, text: str, n_tokens: int, threads: int) -> list[dict]:
    ref = workbench.load(source, quant_threshold=None, threads=threads, n_ctx=n_tokens + 8)
    ids = ref.tokenizer.encode(text)[:n_tokens]
    if len(ids) < n_tokens:
        raise SystemExit(f"{source}: the text has only {len(ids)} tokens, fewer than {n_tokens}")
    t0 = time.perf_counter()
    base = ref.score(ids)
    rows = [{"model": source, "quant": "f32", "threshold": None, "weights_mib": ref.weight_bytes / 2**20,
             "top1_agreement": 1.0, "perplexity": base.perplexity, "seconds": time.perf_counter() - t0}]
    del ref
    for qt in QUANT_TYPES:
        m = workbench.load(source, quant_threshold=0, quant_type=qt, threads=threads, n_ctx=n_tokens + 8)
        t0 = time.perf_counter()
        s = m.score(ids)
        rows.append({"model": source, "quant": qt, "threshold": 0, "weights_mib": m.weight_bytes / 2**20,
                     "quantized_layers": m.load_report.n_quantized, "top1_agreement": base.agreement(s),
                     "perplexity": s.perplexity, "seconds": time.perf_counter() - t0})
        del m
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=257, help="tokens of the text (predictions = tokens - 1)")
    ap.add_argument("--models", nargs="+", default=MODELS)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    text = (ROOT / "data" / "eval_text.txt").read_text()
    rows = []
    for source in args.models:
        rows += measure(source, text, args.tokens, args.threads)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    record = {"script": "scripts/quality_table.py", "commit": commit.strip(), "cpu": platform.processor(),
              "text": "data/eval_text.txt", "tokens": args.tokens, "rows": rows}
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print("| model | weights | MiB | top-1 agreement | perplexity |")
    print("|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['quant'].upper()} | {r['weights_mib']:.0f} | {r['top1_agreement']:.3f} "
              f"| {r['perplexity']:.2f} |")


if __name__ == "__main__":
    main()
