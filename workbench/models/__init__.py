"""Model architectures, one file each; `build` picks one by the source's architecture."""

from workbench.errors import ParameterError, UnsupportedError
from workbench.formats.hf import HFDirectory
from workbench.formats.weights import GGUFWeights
from workbench.models.config import ModelConfig
from workbench.models.gemma3 import Gemma3
from workbench.models.gpt2 import GPT2
from workbench.models.llama import Llama
from workbench.nn.loader import WeightLoader
from workbench.nn.options import WeightOptions

ARCHITECTURES = {"llama": Llama, "gemma3": Gemma3, "gpt2": GPT2}
DEFAULT_N_CTX = 2048  # positions a session holds unless asked (capped by the model's limit)
_TIED_BY_DEFAULT = {"llama": False, "gemma3": True, "gemma3_text": True, "gpt2": True}  # transformers' defaults


def config_of(source) -> ModelConfig:
    """The ModelConfig of a parsed GGUF file or an `HFDirectory`."""
    if isinstance(source, HFDirectory):
        c = source.config
        tied = c.get("tie_word_embeddings", _TIED_BY_DEFAULT[source.model_type])
        has_output = "output.weight" in source and not tied
        return ModelConfig.from_hf(c, str(source.path / "config.json"), has_output)
    arch = source.get("general.architecture")
    if arch not in ARCHITECTURES:
        known = ", ".join(sorted(ARCHITECTURES))
        raise UnsupportedError(f"{source.path}: architecture {arch!r} is not supported (supported: {known})")
    return ModelConfig.from_gguf(source)


def build(source, n_ctx: int | None = None, options: WeightOptions | None = None, kernels: dict | None = None):
    """The model in `source` (a parsed GGUF file or an `HFDirectory`), its weights prepared
    under `options` (quantization, fusion; what was done is in `.load_report`), for
    sessions of up to `n_ctx` positions (position tables are sized to it, not to the
    model's whole trained context). `kernels`: the session's {format: variant} choices,
    checked (`dispatch.check_choices`): a repacking variant chosen there has its weights
    repacked, any other keeps them in the GGUF layout."""
    cfg = config_of(source)
    if cfg.arch not in ARCHITECTURES:
        raise UnsupportedError(f"{source.path}: architecture {cfg.arch!r} is not supported yet")
    limit = cfg.context_length
    n_ctx = min(limit, DEFAULT_N_CTX) if n_ctx is None else n_ctx
    if not 1 <= n_ctx <= limit:
        raise ParameterError(f"n_ctx must be between 1 and the model's context length {limit}, got {n_ctx}")
    weights = source if isinstance(source, HFDirectory) else GGUFWeights(source)
    ld = WeightLoader(weights, options, kernels)
    try:
        net = ARCHITECTURES[cfg.arch](ld, cfg, n_ctx)
    finally:
        ld.close()
    net.load_report = ld.report
    return net


__all__ = ["ARCHITECTURES", "DEFAULT_N_CTX", "ModelConfig", "build", "config_of"]
