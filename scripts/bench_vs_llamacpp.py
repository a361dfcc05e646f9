"""Decode and prefill tok/s of workbench beside llama.cpp, same file, same threads, one run.

For each thread count, the two engines alternate for `--reps` repetitions (after one
warm-up each): a prompt of `--prompt-tokens` tokens, then `--gen` greedy decode steps
fed one token at a time. llama.cpp's times come from its own perf counters
(`llama_perf_context`), ours from `Generation`; both exclude tokenization and sampling
of the first token. Prints a markdown table and, with --json, the raw records.

    python scripts/bench_vs_llamacpp.py --model smollm2-135m --threads 1 2
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess

import numpy as np

PROMPT = ("The history of computing is a story of people who wanted to calculate faster than they could "
          "by hand, and of the machines they built to do it. ")


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unknown"


def ours(model, ids: list[int], gen: int) -> tuple[float, float]:
    model.reset()
    import time

    t0 = time.perf_counter()
    logits = model.forward(ids)
    t1 = time.perf_counter()
    tok = int(np.argmax(logits))
    for _ in range(gen):
        logits = model.forward([tok])
        tok = int(np.argmax(logits))
    t2 = time.perf_counter()
    return len(ids) / (t1 - t0), gen / (t2 - t1)


def theirs(llm, ids: list[int], gen: int) -> tuple[float, float]:
    import llama_cpp

    llm.reset()
    llama_cpp.llama_perf_context_reset(llm.ctx)
    llm.eval(ids)
    n_vocab = llm.n_vocab()
    tok = int(np.argmax(np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,))))
    for _ in range(gen):
        llm.eval([tok])
        tok = int(np.argmax(np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,))))
    perf = llama_cpp.llama_perf_context(llm.ctx)
    return perf.n_p_eval / (perf.t_p_eval_ms / 1e3), perf.n_eval / (perf.t_eval_ms / 1e3)


def main() -> None:
    import llama_cpp

    import workbench

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    model = workbench.load(args.model, n_ctx=512)
    ids = model.tokenizer.encode(PROMPT * 8, add_special=True)[: args.prompt_tokens]
    records = []
    for t in args.threads:
        model.threads = t
        llm = llama_cpp.Llama(str(model.path), n_ctx=512, n_batch=512, n_threads=t, n_threads_batch=t,
                              verbose=False)
        ours(model, ids, 4)
        theirs(llm, ids, 4)
        samples = {"ours": [], "llamacpp": []}
        for _ in range(args.reps):
            samples["ours"].append(ours(model, ids, args.gen))
            samples["llamacpp"].append(theirs(llm, ids, args.gen))
        for phase, k in (("pp", 0), ("tg", 1)):
            a = [s[k] for s in samples["ours"]]
            b = [s[k] for s in samples["llamacpp"]]
            records.append({
                "model": model.path.name, "test": f"{phase}{args.prompt_tokens if phase == 'pp' else args.gen}",
                "threads": t, "tok_s": statistics.mean(a), "stdev": statistics.pstdev(a), "samples": a,
                "peer_tok_s": statistics.mean(b), "peer_samples": b, "ratio": statistics.mean(a) / statistics.mean(b),
                "commit": _commit(), "cpu": platform.processor() or platform.machine(),
                "peer": f"llama-cpp-python {llama_cpp.__version__}",
            })
        del llm
    if args.json:
        print(json.dumps(records, indent=1))
    print("| model | test | threads | workbench tok/s | llama.cpp tok/s | ratio |")
    print("|---|---|---:|---:|---:|---:|")
    for r in records:
        print(f"| {r['model']} | {r['test']} | {r['threads']} | {r['tok_s']:.1f} ± {r['stdev']:.1f} | "
              f"{r['peer_tok_s']:.1f} | {r['ratio']:.2f} |")


if __name__ == "__main__":
    main()
