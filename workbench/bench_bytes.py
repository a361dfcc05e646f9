"""The bytes one decode step reads, for the GB/s and roofline fraction of bench records.

Decode is memory-bound, so a decode row's tok/s means most next to the bytes a token
reads: every weight the step reads once, as the kernels hold it, the embedding tables
counted as the one row a lookup reads unless the lm_head is the embedding itself, plus
the KV cache at the test's mean depth. That makes a GB/s at the measured tok/s, and a
fraction of the machine's read bandwidth at that thread count
(`workbench.machine_bandwidth()`, measured once per machine and cached; `workbench bench
--membw` shows it). The peer's bytes are those of its file (llama.cpp runs weights as
stored), so its GB/s and fraction sit beside ours. Apart from the runner (`bench.py`)
for one reason: this is arithmetic on a model's shapes, testable without timing anything.
"""

from __future__ import annotations


def decode_bytes(model, depth: float) -> int:
    """Bytes one decode step of `model` reads with `depth` positions in its KV cache: the
    weights as the kernels hold them (`model.weight_bytes`), less the embedding tables
    but the one row a lookup reads (unless the lm_head is the token embedding itself),
    plus K and V of every layer at `depth` positions."""
    total = model.weight_bytes
    net = getattr(model, "net", None)
    head = getattr(getattr(net, "output", None), "w", None)
    for name in ("token_embd", "position_embd"):
        table = getattr(getattr(net, name, None), "w", None)
        if table is not None and table is not head:
            total -= table.nbytes - table.nbytes // table.shape[0]
    return int(total + kv_bytes(model.config, depth, getattr(model.load_report, "kv_type", "f16")))


def peer_decode_bytes(path, model, depth: float) -> int:
    """Bytes one llama.cpp decode step on the GGUF `path` reads: its tensors as stored,
    the embedding tables as one row (but token_embd whole when there is no output.weight,
    since it is then the lm_head), plus an F16 KV cache at `depth` positions."""
    from workbench.formats.gguf import GGUFFile

    gf = GGUFFile.open(path)
    try:
        total = 0
        for name, info in gf.tensors.items():
            size = info.n_bytes or 0
            if name == "position_embd.weight" or (name == "token_embd.weight" and "output.weight" in gf.tensors):
                size //= info.shape[-1]  # one row of the (rows, d) table
            total += size
    finally:
        gf.close()
    return int(total + kv_bytes(model.config, depth, "f16"))


def kv_bytes(config, depth: float, kv_type: str) -> float:
    """K and V of every layer at `depth` positions (Gemma's sliding layers see their window)."""
    per_position = 2 * config.n_kv_heads * config.head_dim * (2 if kv_type == "f16" else 4)
    swa = getattr(config, "swa_layers", ()) or (False,) * config.n_layers
    window = getattr(config, "sliding_window", 0) or depth
    return sum(per_position * (min(depth, window) if s else depth) for s in swa)


def traffic(prefix: str, n_bytes: int, tok_s: float, bandwidth, threads: int) -> dict:
    """A record's `{prefix}bytes_per_token`, `{prefix}gbps` at `tok_s` and, given the
    machine's `bandwidth`, `{prefix}roof_frac` (and `roof_gbps` for ours)."""
    gbps = n_bytes * tok_s / 1e9
    out = {f"{prefix}bytes_per_token": n_bytes, f"{prefix}gbps": gbps}
    if bandwidth is not None:
        roof_gbps = bandwidth.gbps("read", threads)
        out[f"{prefix}roof_frac"] = gbps / roof_gbps
        if not prefix:
            out["roof_gbps"] = roof_gbps
    return out
