"""Model architectures, one file each; `build` picks one by the GGUF's architecture."""

from workbench.errors import ParameterError, UnsupportedError
from workbench.models.config import ModelConfig
from workbench.models.gemma3 import Gemma3
from workbench.models.llama import Llama

ARCHITECTURES = {"llama": Llama, "gemma3": Gemma3}
DEFAULT_N_CTX = 2048  # positions a session holds unless asked (capped by the model's limit)


def build(gf, n_ctx: int | None = None):
    """The model described by parsed GGUF file `gf`, its weights memory-mapped, for
    sessions of up to `n_ctx` positions (position tables are sized to it, not to the
    model's whole trained context)."""
    arch = gf.get("general.architecture")
    if arch not in ARCHITECTURES:
        known = ", ".join(sorted(ARCHITECTURES))
        raise UnsupportedError(f"{gf.path}: architecture {arch!r} is not supported (supported: {known})")
    cfg = ModelConfig.from_gguf(gf)
    limit = cfg.context_length
    n_ctx = min(limit, DEFAULT_N_CTX) if n_ctx is None else n_ctx
    if not 1 <= n_ctx <= limit:
        raise ParameterError(f"n_ctx must be between 1 and the model's context length {limit}, got {n_ctx}")
    return ARCHITECTURES[arch](gf, cfg, n_ctx)


__all__ = ["ARCHITECTURES", "DEFAULT_N_CTX", "ModelConfig", "build"]
