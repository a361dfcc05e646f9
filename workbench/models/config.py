"""The frozen description of a model's shape, built only by loaders.

`ModelConfig.from_gguf` reads the `{arch}.*` metadata keys of a GGUF file; derived
fields (head_dim, group size, rope dims) are computed here once, and the whole config is
checked for consistency so that model code can trust it. Runtime choices (threads,
quantization, fusion, tracing) are not here: see `workbench.engine.options`.
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.errors import FormatError


@dataclass(frozen=True)
class ModelConfig:
    arch: str
    n_layers: int
    d_model: int
    d_ff: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    vocab_size: int
    context_length: int
    norm_eps: float
    rope_base: float
    rope_dims: int
    tied_embeddings: bool

    @property
    def group_size(self) -> int:
        """Query heads per KV head (grouped-query attention)."""
        return self.n_heads // self.n_kv_heads

    @classmethod
    def from_gguf(cls, gf) -> ModelConfig:
        """Read the architecture's hyperparameters from a parsed GGUF file."""
        arch = gf.get("general.architecture")
        p = f"{arch}."
        n_heads = int(gf.get(p + "attention.head_count"))
        d_model = int(gf.get(p + "embedding_length"))
        head_dim = int(gf.get(p + "attention.key_length", d_model // max(n_heads, 1)))
        tokens = gf.metadata.get("tokenizer.ggml.tokens")
        vocab = int(gf.get(p + "vocab_size", len(tokens) if tokens is not None else 0))
        cfg = cls(
            arch=arch,
            n_layers=int(gf.get(p + "block_count")),
            d_model=d_model,
            d_ff=int(gf.get(p + "feed_forward_length")),
            n_heads=n_heads,
            n_kv_heads=int(gf.get(p + "attention.head_count_kv", n_heads)),
            head_dim=head_dim,
            vocab_size=vocab,
            context_length=int(gf.get(p + "context_length")),
            norm_eps=float(gf.get(p + "attention.layer_norm_rms_epsilon")),
            rope_base=float(gf.get(p + "rope.freq_base", 10000.0)),
            rope_dims=int(gf.get(p + "rope.dimension_count", head_dim)),
            tied_embeddings="output.weight" not in gf.tensors,
        )
        cfg.check(str(gf.path))
        return cfg

    def check(self, source: str) -> None:
        """Raise FormatError naming `source` if the hyperparameters cannot form a model."""
        positive = ("n_layers", "d_model", "d_ff", "n_heads", "n_kv_heads", "head_dim", "vocab_size", "context_length")
        for name in positive:
            if getattr(self, name) <= 0:
                raise FormatError(f"{source}: {name} must be positive, got {getattr(self, name)}")
        if self.n_heads % self.n_kv_heads:
            raise FormatError(f"{source}: {self.n_heads} heads do not split into {self.n_kv_heads} KV heads")
        if self.rope_dims > self.head_dim or self.rope_dims % 2:
            raise FormatError(f"{source}: rope dimension {self.rope_dims} does not fit head_dim {self.head_dim}")
