"""Replaying llama.cpp golden runs (scripts/make_goldens.py) teacher-forced.

Our arithmetic follows llama.cpp's operation for operation, so logits agree to the 5
decimals a golden file keeps; a looser bound would hide an arithmetic change. A
different argmax is accepted only where llama.cpp's own top-2 margin is below NEAR_TIE
(an exact tie, which either token answers); `replay` returns those it saw.
`generate_up_to_margin` checks `generate()` (a batched prefill) against a golden whose
prompts were fed one token at a time.
"""

import numpy as np

LOGIT_ATOL = 2e-5
NEAR_TIE = 1e-4


def feed_prompt(model, ids, by_token: bool = False):
    """Reset `model` and feed `ids` in one batch (or one token at a time); last logits."""
    model.reset()
    for chunk in ([t] for t in ids) if by_token else [ids]:
        logits = model.forward(chunk)
    return logits


def replay(model, case, by_token: bool = False) -> tuple[float, list]:
    """Teacher-force `case`, asserting every step; (worst top-5 difference, ties taken otherwise)."""
    ties, worst = [], 0.0
    name = case["prompt"][-40:]
    logits = feed_prompt(model, case["prompt_tokens"], by_token)
    for step, (token, ref) in enumerate(zip(case["tokens"], case["top5"])):
        diff = float(np.abs(logits[ref["ids"]] - np.asarray(ref["logits"])).max())
        worst = max(worst, diff)
        assert diff < LOGIT_ATOL, f"{name!r} step {step}: top-5 logits off by {diff:.4f}"
        ours = int(np.argmax(logits))
        if ours != token:
            margin = ref["logits"][0] - ref["logits"][1]
            assert margin < NEAR_TIE, f"{name!r} step {step}: {ours} != {token}, margin {margin:.4f}"
            ties.append((name, step, margin))
        if step + 1 < len(case["tokens"]):
            logits = model.forward([token])
    return worst, ties


def generate_up_to_margin(model, cases, margin: float) -> int:
    """Check `model.generate` on each case up to its first stop token or the first step
    llama.cpp decided by less than `margin`; the number of tokens compared.

    generate() prefills the prompt in one batch, which sums in another order than a
    golden's token-by-token prompt (batched f16 attention), so its logits drift (by up
    to ~1 on Gemma 3): only the steps that drift cannot overturn are compared."""
    stop = set(model.tokenizer.stop_ids)
    compared = 0
    for case in cases:
        margins = [ref["logits"][0] - ref["logits"][1] for ref in case["top5"]]
        expected = case["tokens"]
        cut = next((i for i, t in enumerate(expected) if t in stop or margins[i] < margin), len(expected))
        if cut == 0:
            continue
        gen = model.generate(case["prompt"], max_tokens=cut)
        assert gen.prompt_tokens == case["prompt_tokens"]
        assert gen.tokens == expected[:cut], case["prompt"]
        compared += cut
    return compared
