"""Model architectures, one file each; `build` picks one by the GGUF's architecture."""

from workbench.errors import UnsupportedError
from workbench.models.config import ModelConfig
from workbench.models.gemma3 import Gemma3
from workbench.models.llama import Llama

ARCHITECTURES = {"llama": Llama, "gemma3": Gemma3}


def build(gf):
    """The model described by parsed GGUF file `gf`, its weights memory-mapped."""
    arch = gf.get("general.architecture")
    if arch not in ARCHITECTURES:
        known = ", ".join(sorted(ARCHITECTURES))
        raise UnsupportedError(f"{gf.path}: architecture {arch!r} is not supported (supported: {known})")
    return ARCHITECTURES[arch](gf, ModelConfig.from_gguf(gf))


__all__ = ["ARCHITECTURES", "ModelConfig", "build"]
