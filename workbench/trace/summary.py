"""The per-step breakdown of a trace, in rustml's terms.

A step (`prefill` or `decode_step[i]`) splits into embedding, layers, the final norm,
the projection to the vocabulary (lm_head) and sampling; each layer into attn and ffn.
These are plain dicts so that printers, DataFrames and plots can consume them.
"""

from __future__ import annotations

from collections import defaultdict

_PARTS = {"embedding": "embedding", "output_norm": "norm", "lm_head": "projection", "sample": "sample"}


def step_summary(tracer) -> dict:
    """{"steps": [per-step ms breakdown], "layers": [mean attn/ffn ms per layer over decode steps]}."""
    spans = tracer.spans
    kids = defaultdict(list)
    for i, s in enumerate(spans):
        kids[s.parent].append(i)
    steps = []
    layer_ms = defaultdict(lambda: defaultdict(list))
    for i, s in enumerate(spans):
        if s.kind != "step":
            continue
        row = {"step": s.name, "tokens": s.attrs.get("tokens", 1), "total_ms": s.seconds * 1e3,
               "embedding_ms": 0.0, "layers_ms": 0.0, "norm_ms": 0.0, "projection_ms": 0.0, "sample_ms": 0.0}
        for c in kids[i]:
            child = spans[c]
            if child.kind == "layer":
                row["layers_ms"] += child.seconds * 1e3
                if s.name.startswith("decode"):
                    for g in kids[c]:
                        layer_ms[child.layer][spans[g].name].append(spans[g].seconds * 1e3)
            elif child.name in _PARTS:
                row[_PARTS[child.name] + "_ms"] += child.seconds * 1e3
        steps.append(row)
    layers = []
    for layer in sorted(layer_ms):
        parts = layer_ms[layer]
        layers.append({"layer": layer, **{f"{k}_ms": sum(v) / len(v) for k, v in sorted(parts.items())}})
    return {"steps": steps, "layers": layers}
