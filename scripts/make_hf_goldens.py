"""Write golden logits and greedy tokens from transformers (torch CPU) for HF directories.

For the F32 HF directories workbench derives from the two GGUF models (`smollm2-135m:hf-f32`,
`gemma3-270m:hf-f32`; made or reused by `workbench.convert.derived`), and for each prompt
of scripts/make_goldens.py (plus, for Gemma, one prompt longer than its 512-token sliding
window): transformers' own tokenization, the top-`K` logits at every prompt position
(one forward over the prompt), and 32 greedy tokens by transformers' argmax loop with
the top-5 logits of each step. The tests (tests/test_golden_hf.py) check our tokenizer
against the recorded ids, our logits at every position against these, and our greedy
tokens against transformers' wherever its top-2 margin is not a near tie.

    pip install torch==2.13.0 transformers==5.23.0     # never plain `torch`
    python scripts/make_hf_goldens.py [--model smollm2-135m:hf-f32] [--out ...]

The goldens record torch/transformers versions, the directory's converter sidecar (sha256
of its safetensors) and the workbench commit. The tests need only the JSON.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from make_goldens import PROMPTS, long_prompt  # noqa: E402

TOP_K = 10
N_GEN = 32


def _sha256_of(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run(variant: str, out: Path, long: bool) -> None:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from workbench.convert import derived

    torch.manual_seed(0)
    torch.set_num_threads(2)
    path = derived(*variant.split(":"))
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    prompts = list(PROMPTS) + ([long_prompt()] if long else [])
    cases = []
    for prompt in prompts:
        ids = tok(prompt)["input_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].float()
        top = torch.topk(logits, TOP_K, dim=-1)
        positions = [{"ids": i.tolist(), "logits": [round(float(v), 5) for v in vals]}
                     for i, vals in zip(top.indices, top.values)]
        if len(ids) > 64:  # long prompts: every 16th position and the last 8 keep the file small
            keep = set(range(0, len(ids), 16)) | set(range(len(ids) - 8, len(ids)))
            positions = [p if i in keep else None for i, p in enumerate(positions)]
        tokens, steps = [], []
        seq = list(ids)
        with torch.no_grad():
            past = None
            cur = torch.tensor([seq])
            for _ in range(N_GEN if len(ids) <= 64 else 8):
                o = model(cur, past_key_values=past, use_cache=True)
                past = o.past_key_values
                last = o.logits[0, -1].float()
                t5 = torch.topk(last, 5)
                nxt = int(t5.indices[0])
                steps.append({"ids": t5.indices.tolist(), "logits": [round(float(v), 5) for v in t5.values]})
                tokens.append(nxt)
                if nxt in set(model.generation_config.eos_token_id if isinstance(
                        model.generation_config.eos_token_id, list) else [model.generation_config.eos_token_id]):
                    break
                cur = torch.tensor([[nxt]])
        cases.append({"prompt": prompt, "prompt_tokens": ids, "positions": positions, "tokens": tokens,
                      "top5": steps})
        print(f"{variant}: {len(ids)} prompt tokens, {len(tokens)} generated", file=sys.stderr)
    sidecar = Path(str(path) + ".json")
    record = {
        "script": "scripts/make_hf_goldens.py", "model": variant,
        "reference": f"transformers {transformers.__version__}, torch {torch.__version__}, float32, eager attention",
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                 text=True).stdout.strip(),
        "safetensors_sha256": _sha256_of(Path(path) / "model.safetensors"),
        "converter": json.loads(sidecar.read_text()).get("converter") if sidecar.is_file() else None,
        "top_k": TOP_K, "cases": cases,
    }
    out.write_text(json.dumps(record) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", nargs="+", default=["smollm2-135m:hf-f32", "gemma3-270m:hf-f32"])
    args = ap.parse_args()
    for variant in args.model:
        name = variant.replace(":", "-")
        run(variant, ROOT / "tests" / "golden" / f"hf_{name}.json", long=variant.startswith("gemma3"))


if __name__ == "__main__":
    main()
