"""Hyperparameters a file may hold but no model can run with, refused at load.

`ModelConfig.check` tests that the shapes fit together; this tests the float
hyperparameters the kernels divide by, take roots or powers of: the norm epsilon (NaN
or negative: every token NaN, and generation silently stops after 0 tokens), the rope
bases (0 or inf: inf or NaN angles), the rope scale and the logit soft-cap.
`ModelConfig.check` runs it as the loaders build the config, before any weight is read;
errors are `FormatError`s naming the file and the file's key.

It does not judge whether a value is sensible for a model (an epsilon of 0.1 runs).
"""

from __future__ import annotations

import math

from workbench.errors import FormatError

# config field -> (what it is called in GGUF metadata under "{arch}.", in an HF config.json)
_KEYS = {
    "norm_eps": ("attention.layer_norm_rms_epsilon", "rms_norm_eps / layer_norm_epsilon"),
    "rope_base": ("rope.freq_base", "rope_theta"),
    "rope_base_local": ("rope.freq_base_swa", "rope_local_base_freq"),
    "rope_freq_scale": ("rope.scaling.factor", "rope_scaling.factor"),
    "final_logit_softcap": ("final_logit_softcapping", "final_logit_softcapping"),
}


def check_config(cfg, where: str) -> None:
    """Raise FormatError naming `where` if a float hyperparameter of `cfg` cannot run."""
    positive = ["norm_eps", "rope_freq_scale"]
    if cfg.rope_dims > 0:
        positive.append("rope_base")
    if cfg.swa_layers:
        positive.append("rope_base_local")
    for name in positive:
        _finite(cfg, name, where, lambda v: v > 0, "> 0")
    _finite(cfg, "final_logit_softcap", where, lambda v: v >= 0, ">= 0")


def _finite(cfg, name: str, where: str, ok, bound: str) -> None:
    v = getattr(cfg, name)
    if not (isinstance(v, (int, float)) and math.isfinite(v) and ok(v)):
        gguf_key, hf_key = _KEYS[name]
        raise FormatError(f"{where}: {name} ({cfg.arch}.{gguf_key} in GGUF, {hf_key} in config.json) must be "
                          f"a finite number {bound}, got {v!r}")
