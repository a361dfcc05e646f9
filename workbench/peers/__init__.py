"""Other inference engines, run on the same file for side-by-side benchmarks.

A peer is opened on one GGUF file at one thread count and answers two questions, each
in seconds of its own compute: how long `prefill(ids)` takes for a prompt fed in one
call from an empty cache, and how long `decode(prompt, n)` takes for `n` single-token
steps after `prompt`, each step fed the argmax of the last. `workbench.bench` turns the
seconds into tok/s records; peers return numbers only and never print.

    peer = open_peer("llamacpp", path, threads=2, n_ctx=128)
    seconds = peer.prefill(ids)
    peer.close()

`peer_version(name)` and `peer_build(name)` describe the peer for bench records (what it
is, and how it was built: compiler, flags, AMX). Each peer lives in its own module, the
only place that runs its engine, and finds it lazily: a missing engine is a
`PeerUnavailableError` that says how to install it, raised when a peer is asked for, not
when workbench is imported.
"""

from __future__ import annotations

from workbench.errors import ParameterError, PeerUnavailableError

PEERS = ("llamacpp",)
__all__ = ["PEERS", "PeerUnavailableError", "open_peer", "peer_build", "peer_version"]


def _module(name: str):
    if name not in PEERS:
        raise ParameterError(f"peer must be one of {', '.join(PEERS)}, got {name!r}")
    from workbench.peers import llamacpp

    return llamacpp


def peer_version(name: str) -> str:
    """The peer's description, e.g. "llama.cpp 0c1e57098 llama-bench (llama-cpp-python
    0.3.36 tree)"; `PeerUnavailableError` when it is not installed."""
    return _module(name).version()


def peer_build(name: str) -> str:
    """How the peer was built, e.g. "g++ (Debian 12.2.0-14+deb12u1) 12.2.0, -march=native,
    AMX off (CPU has none)"."""
    return _module(name).build_description()


def open_peer(name: str, path, *, threads: int, n_ctx: int):
    """The peer `name` on the GGUF file `path` with `threads` threads."""
    return _module(name).LlamaBenchPeer(path, threads=threads, n_ctx=n_ctx)
