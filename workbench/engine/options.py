"""Runtime option sets: the named profiles and how explicit arguments override them.

A profile is a starting point, not a mode: `load(..., profile="baseline", threads=2)`
takes baseline's weight options with two threads. The profiles:

- `baseline`: weights as the file stores them (no fusion, no repacking), one thread:
  the reference point every optimization is measured against.
- `optimized` (the default): no change of weight formats, Q/K/V and gate+up fused,
  weights repacked where the CPU has a faster kernel for a repacked layout (Q4_0 with
  AVX-512 VNNI), every thread numba was started with.
- `aggressive`: every float linear layer (lm_head included) quantized to Q4_0, fusion,
  every thread: the smallest weights, at a quality cost the quality table measures.

Every profile keeps llama.cpp's f16 KV cache (`kv_type="f16"`): parity with llama.cpp
is the default contract. `kv_type="f32"` is asked for explicitly (transformers parity).
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.errors import ParameterError
from workbench.nn.kv_cache import check_kv_type
from workbench.nn.options import WeightOptions

DEFAULT_PROFILE = "optimized"
PROFILES: dict[str, dict] = {
    "baseline": {"quant_threshold": None, "quant_type": "q8_0", "quantize_lm_head": None, "fuse": False, "threads": 1,
                 "kv_type": "f16", "repack": False},
    "optimized": {"quant_threshold": None, "quant_type": "q8_0", "quantize_lm_head": None, "fuse": True,
                  "threads": None, "kv_type": "f16", "repack": True},
    "aggressive": {"quant_threshold": 0, "quant_type": "q4_0", "quantize_lm_head": True, "fuse": True,
                   "threads": None, "kv_type": "f16", "repack": True},
}


class _ProfileDefault:
    """The "not given" marker of `load`'s keyword arguments: the profile's value holds.
    A class rather than a bare `object()` so that `help(workbench.load)` reads
    `threads=<profile default>` (None is a real value for several options: no
    quantization, all threads)."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<profile default>"

    def __reduce__(self):  # one instance, also across pickling (Dask workers)
        return (_ProfileDefault, ())


_UNSET = _ProfileDefault()


@dataclass(frozen=True)
class RunOptions:
    """The weight options for the loader plus the session's thread count (None: all) and
    KV cache type ("f16" or "f32", see `nn.kv_cache.KVCache`)."""

    profile: str
    weights: WeightOptions
    threads: int | None
    kv_type: str = "f16"

    def __post_init__(self):
        check_kv_type(self.kv_type)


def resolve_options(profile: str | None = None, **overrides) -> RunOptions:
    """The profile's options with every argument not left `_UNSET` (or None-by-default
    for threads) put over them; bad values raise ParameterError naming the option."""
    name = DEFAULT_PROFILE if profile is None else profile
    if name not in PROFILES:
        raise ParameterError(f"profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    values = dict(PROFILES[name])
    for key, value in overrides.items():
        if key not in values and key != "requantize":
            raise ParameterError(f"unknown option {key!r}")
        if value is not _UNSET:
            values[key] = value
    threads, kv_type = values.pop("threads"), values.pop("kv_type")
    return RunOptions(name, WeightOptions(**values), threads, kv_type)


UNSET = _UNSET  # the "not given" marker for `load` keyword arguments
