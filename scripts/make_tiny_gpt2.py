"""Write the tiny seeded GPT-2 fixture (data/tiny-gpt2/) and its golden logits (tests/golden/tiny_gpt2.json).

No real GPT-2 weights can be had offline, so the GPT-2 path is tested on a small model
that transformers itself builds: `GPT2Config(vocab_size=1257, n_positions=128,
n_embd=64, n_layer=2, n_head=4)` with `<|endoftext|>` as BOS/EOS, the vocabulary being
the 1257-token cut of GPT-2's real BPE that `scripts/make_tiny_gpt2_tokenizer.py` left
in the same folder (vocab.json + merges.txt, kept as they are; no tokenizer.json is
written, so the classic two-file layout is what gets exercised).

Initialisation: transformers' default (std 0.02, zero biases, unit LayerNorms) makes the
logits of a 2-layer model nearly flat and the test toothless. Under `torch.manual_seed(0)`
every parameter is re-drawn, in `named_parameters()` order: matrices and embeddings
N(0, 0.2), linear biases N(0, 0.2), LayerNorm weights 1 + N(0, 0.1), LayerNorm biases
N(0, 0.1). The lm_head is tied to wte (GPT-2's default), so it is saved once.

Golden file, per prompt (ids from transformers' `GPT2Tokenizer` on the same folder):
- `prompt_tokens`;
- `logits_last`: the full logits (rounded to 6 decimals) at the last 3 prompt positions;
- `top20`: at every prompt position, the 20 largest logits and their ids (the full rows
  at every position would make the JSON ~0.5 MB for no added check of the arithmetic);
- `greedy`: 16 tokens of `model.generate(do_sample=False)` (EOS does not stop it), and
  `greedy_top5`: the top-5 ids and logits of each of those 16 steps (the logits that
  chose the token), so a test can tell a genuine divergence from a near tie.
Torch runs single-threaded with eager attention, in float32. The script is deterministic:
rerunning it rewrites byte-identical files (checked by the sha256 it prints).

Usage: .venv/bin/python scripts/make_tiny_gpt2.py [--out data/tiny-gpt2] [--golden tests/golden/tiny_gpt2.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from pathlib import Path

import torch
import transformers
from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer

ROOT = Path(__file__).resolve().parents[1]
EOT = "<|endoftext|>"
PROMPTS = [
    "Hello, my name is",
    "The quick brown fox jumps over the lazy dog.",
    "In the beginning there was a small house by the river",
    "1, 2, 3, 4, 5, and then",
]
N_GREEDY = 16
LAST_FULL = 3  # prompt positions, counted from the end, whose full logits are kept
TOP = 20


def build_model(vocab_size: int, eot: int) -> GPT2LMHeadModel:
    config = GPT2Config(vocab_size=vocab_size, n_positions=128, n_embd=64, n_layer=2, n_head=4,
                        bos_token_id=eot, eos_token_id=eot, attn_implementation="eager")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config)
    with torch.no_grad():
        for name, p in model.named_parameters():  # tied lm_head.weight is wte.weight: listed once
            if ".ln_" in name or name.startswith("transformer.ln_f"):
                if name.endswith("weight"):
                    p.copy_(1.0 + 0.1 * torch.randn_like(p))
                else:
                    p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))
    return model.eval()


def rounded(values) -> list[float]:
    return [round(float(v), 6) for v in values]


def golden_case(model, tokenizer, prompt: str, eot: int) -> dict:
    ids = tokenizer(prompt)["input_ids"]
    x = torch.tensor([ids])
    with torch.no_grad():
        logits = model(x).logits[0]  # (T, vocab), every prompt position
        out = model.generate(x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=N_GREEDY,
                             min_new_tokens=0, eos_token_id=None, pad_token_id=eot,
                             output_logits=True, return_dict_in_generate=True)
    greedy = out.sequences[0, len(ids):].tolist()
    assert len(greedy) == N_GREEDY, greedy
    top = torch.topk(logits, TOP, dim=-1)
    steps = [torch.topk(step[0], 5) for step in out.logits]
    return {
        "prompt": prompt,
        "prompt_tokens": ids,
        "logits_last": {str(t): rounded(logits[t]) for t in range(len(ids) - LAST_FULL, len(ids))},
        "top20": [{"ids": top.indices[t].tolist(), "logits": rounded(top.values[t])} for t in range(len(ids))],
        "greedy": greedy,
        "greedy_top5": [{"ids": s.indices.tolist(), "logits": rounded(s.values)} for s in steps],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "data" / "tiny-gpt2")
    ap.add_argument("--golden", type=Path, default=ROOT / "tests" / "golden" / "tiny_gpt2.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    vocab = json.loads((args.out / "vocab.json").read_text(encoding="utf-8"))
    eot = vocab[EOT]
    model = build_model(len(vocab), eot)
    model.save_pretrained(args.out, safe_serialization=True)
    for stray in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (args.out / stray).unlink(missing_ok=True)  # the two-file tokenizer is the point

    tokenizer = GPT2Tokenizer.from_pretrained(args.out)
    cases = [golden_case(model, tokenizer, p, eot) for p in PROMPTS]
    golden = {
        "script": "scripts/make_tiny_gpt2.py",
        "reference": f"transformers {transformers.__version__}, torch {torch.__version__} (CPU, float32, "
                     "eager attention, 1 thread)",
        "model": "data/tiny-gpt2",
        "vocab_size": len(vocab),
        "cases": cases,
    }
    text = json.dumps(golden, indent=1)
    text = re.sub(r"\[[-0-9.e,\s]+\]", lambda m: "".join(m.group(0).split()), text)  # number lists on one line
    assert json.loads(text) == golden
    args.golden.write_text(text + "\n", encoding="utf-8")
    for path in sorted(args.out.iterdir()) + [args.golden]:
        print(f"{hashlib.sha256(path.read_bytes()).hexdigest()[:16]}  {path.stat().st_size:>8}  {path}")


if __name__ == "__main__":
    main()
