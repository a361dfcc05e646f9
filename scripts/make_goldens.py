"""Write golden greedy generations from llama.cpp (through llama-cpp-python).

For each prompt: llama.cpp's tokenization, then a greedy loop of our own over its
logits (argmax of the last position, fed back one token at a time), so that no sampler
setting of llama-cpp-python can interfere. Each step keeps the reference's top-5 ids and
logits, which lets a test justify any divergence by the reference's own margin.

    python scripts/make_goldens.py                      # SmolLM2-135M Q4_1
    python scripts/make_goldens.py --model gemma3-270m --out tests/golden/greedy_gemma3-270m.json \
        --long --prompt-by-token
    python scripts/make_goldens.py --model smollm2-135m:q4_0   # a variant workbench converts

A derived variant (`name:variant`, see `workbench.convert.variants()`) is made (or reused
after verification) by `workbench.convert.derived`, and llama.cpp runs on that very file;
the golden records its sha256, the converter version and the workbench commit, so that
the test can insist on the same converted bytes. `--quantized MODEL:QTYPE` does the same
for a shipped model that llama-quantize quantized from workbench's F32 conversion
(`tests/_quantized.py`: smollm2-135m:Q5_1, gemma3-270m:Q5_K_M, ...); the golden records
the llama-quantize type, the converter version and the llama.cpp commit beside the sha256.

    python scripts/make_goldens.py --quantized smollm2-135m:IQ4_NL --prompt-by-token

`--long` adds one prompt of more than 512 tokens (`long_cases`), so that a sliding
attention window of 512 (Gemma 3) is exercised: a story of numbered facts that ends
with a question about one told more than 512 tokens earlier. `--prompt-by-token` feeds
prompts one token at a time (recorded as `prompt_by_token`): llama.cpp then runs only its
matrix-vector kernels, whereas a batch of rows goes through its repacked q4_K_8x8 kernel
for Q4_K weights, which sums in another order than ours does.

Needs llama-cpp-python (`make peer` builds it without AMX). The tests need only the JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea,",
    'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n',
    "Q: What is 17 multiplied by 23?\nA:",
    "The three laws of thermodynamics state that",
    "<|im_start|>user\nWrite a haiku about autumn.<|im_end|>\n<|im_start|>assistant\n",
    "List of the planets in the solar system:\n1.",
    "In 1969, Neil Armstrong",
    "Translate to French: 'Good morning, how are you?'\nFrench:",
    "Les avantages de l'énergie solaire sont",
]

ANIMALS = ["fox", "heron", "badger", "otter", "lynx", "crane", "beaver", "falcon", "hare", "wolf", "owl"]
COLOURS = ["red", "grey", "silver", "brown", "white", "black", "golden"]
PLACES = ["Lisbon", "Oslo", "Kyoto", "Lima", "Cairo", "Quebec", "Perth", "Dakar", "Tallinn", "Hanoi", "Bergen",
          "Cusco", "Malaga"]
TRADES = ["bakes bread", "repairs clocks", "sells maps", "teaches music", "builds boats", "paints houses",
          "keeps bees", "grows tea", "writes letters"]


def long_prompt(n_facts: int = 28) -> str:
    """A deterministic story of `n_facts` numbered facts and a question about the first."""
    lines = ["Read the notes below carefully, then answer the question at the end.", ""]
    for i in range(n_facts):
        who = f"the {COLOURS[i % len(COLOURS)]} {ANIMALS[i % len(ANIMALS)]}"
        lines.append(f"Note {i + 1}: {who.capitalize()} lives in {PLACES[i % len(PLACES)]}, "
                     f"{TRADES[i % len(TRADES)]} on weekdays and visits {PLACES[(3 * i + 5) % len(PLACES)]} "
                     f"every {1 + i % 9} weeks.")
    lines += ["", "Question: In which city does the red fox live?", "Answer: The red fox lives in"]
    return "\n".join(lines)


def workbench_commit() -> str:
    """The checkout's commit, with "-dirty" when tracked files differ from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parents[1]).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


LONG_N_CTX = 2048


def greedy_case(llm, prompt: str, steps: int, by_token: bool) -> dict:
    """llama.cpp's tokens of `prompt`, then `steps` greedy tokens with the top-5 logits of each."""
    ids = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
    llm.reset()
    for chunk in ([t] for t in ids) if by_token else [ids]:
        llm.eval(chunk)
    tokens, top5 = [], []
    for _ in range(steps):
        # with logits_all=False llama.cpp keeps one output row: the last position's
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).astype(np.float32)
        order = np.argsort(-logits, kind="stable")[:5]
        top5.append({"ids": order.tolist(), "logits": [round(float(logits[i]), 5) for i in order]})
        tok = int(order[0])
        tokens.append(tok)
        if tok == llm.token_eos():
            break
        llm.eval([tok])
    text = llm.detokenize(tokens).decode("utf-8", errors="replace")
    print(f"{len(ids):3d} prompt tokens -> {text!r}")
    return {"prompt": prompt, "prompt_tokens": list(ids), "tokens": tokens, "text": text, "top5": top5}


def main() -> None:
    import llama_cpp

    from workbench.convert import CONVERTER_VERSION, derived
    from workbench.formats.catalog import resolve

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--model", default="smollm2-135m",
                       help="catalog name, derived variant (smollm2-135m:q4_0) or GGUF path")
    which.add_argument("--quantized", metavar="MODEL:QTYPE",
                       help="a shipped model quantized by llama-quantize (tests/_quantized.py), e.g. smollm2-135m:Q5_1")
    ap.add_argument("--out", default=None)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--long", action="store_true", help="add one prompt of more than 512 tokens")
    ap.add_argument("--long-steps", type=int, default=8)
    ap.add_argument("--prompt-by-token", action="store_true",
                    help="feed prompts one token at a time: llama.cpp then runs only its matrix-vector kernels")
    args = ap.parse_args()

    name, sep, variant = args.model.partition(":")
    is_variant = bool(sep) and not Path(args.model).exists()
    if args.quantized:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ is not an installed package
        from tests._quantized import make_quantized, recipe

        name, _, qtype = args.quantized.partition(":")
        path = make_quantized(name, qtype.upper())
        stem = path.stem
    else:
        path = derived(name, variant) if is_variant else resolve(args.model)
        stem = f"{name}-{variant}" if is_variant else Path(args.model).stem
    out = Path(args.out or f"tests/golden/greedy_{stem}.json")
    llm = llama_cpp.Llama(str(path), n_ctx=512, n_batch=512, n_threads=args.threads, logits_all=False,
                          verbose=False)
    cases = [greedy_case(llm, prompt, args.steps, args.prompt_by_token) for prompt in PROMPTS]
    long_cases = []
    if args.long:
        llm = llama_cpp.Llama(str(path), n_ctx=LONG_N_CTX, n_batch=512, n_threads=args.threads, logits_all=False,
                              verbose=False)
        long_cases = [greedy_case(llm, long_prompt(), args.long_steps, args.prompt_by_token)]

    golden = {
        "reference": f"llama-cpp-python {llama_cpp.__version__} (llama.cpp), greedy argmax over its logits",
        "model_file": path.name,
        "model_sha256": sha256(path),
        "workbench_commit": workbench_commit(),
        "n_ctx": 512,
        "threads": args.threads,
        "prompt_by_token": args.prompt_by_token,
        "cases": cases,
    }
    if is_variant:
        golden["derived"] = f"{name}:{variant}"
        golden["converter_version"] = CONVERTER_VERSION
    if args.quantized:
        made = recipe(path)
        golden["quantized"] = f"{made['model']}:{made['llama_quantize']}"
        golden["converter_version"] = made["source"]["converter_version"]
        golden["llama_quantize_commit"] = made["llama_cpp_commit"]
    if long_cases:
        golden["long_n_ctx"] = LONG_N_CTX
        golden["long_cases"] = long_cases
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(golden, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
