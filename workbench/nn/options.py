"""How weights are prepared at load: quantization threshold and type, fusion.

rustml's rule: a float linear layer is quantized when its larger dimension is at
or above `quant_threshold` (max(in, out) >= threshold; None turns load-time quantization
off). The lm_head follows the same rule unless `quantize_lm_head` says otherwise (True:
always, False: never). Weights a GGUF file already stores quantized keep their format
unless `requantize` asks for the target type. `fuse` joins Q/K/V and gate/up into one
matrix each when they share a format and have no bias. `repack` lets the loader
rearrange a matrix's blocks for a kernel that streams them faster (`WeightFormat.repacked`:
Q4_0's sixteen-row layout on AVX-512 VNNI CPUs); the values are the file's, bit for bit.
Threads are not a load-time choice: see `Model.threads`.
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.errors import ParameterError

QUANT_TYPES = ("q8_0", "q4_0")


@dataclass(frozen=True)
class WeightOptions:
    quant_threshold: int | None = None  # None: keep float weights float
    quant_type: str = "q8_0"
    quantize_lm_head: bool | None = None  # None: by the threshold rule like any layer
    requantize: bool = False  # also re-quantize weights the file stores quantized
    fuse: bool = True
    repack: bool = True  # repack weights at load for a variant that reads its own layout (`nn.loader`)

    def __post_init__(self):
        t = self.quant_threshold
        if t is not None and (isinstance(t, bool) or not isinstance(t, int) or t < 0):
            raise ParameterError(f"quant_threshold must be a non-negative integer or None, got {t!r}")
        if self.quant_type not in QUANT_TYPES:
            raise ParameterError(f"quant_type must be one of {', '.join(QUANT_TYPES)}, got {self.quant_type!r}")
        if self.quantize_lm_head not in (None, True, False):
            raise ParameterError(f"quantize_lm_head must be True, False or None, got {self.quantize_lm_head!r}")
        for name in ("requantize", "fuse", "repack"):
            if not isinstance(getattr(self, name), bool):
                raise ParameterError(f"{name} must be True or False, got {getattr(self, name)!r}")

    def quantizes(self, rows: int, cols: int, lm_head: bool = False) -> bool:
        """Whether a float weight of (rows, cols) goes to `quant_type` under these options."""
        if lm_head and self.quantize_lm_head is not None:
            return self.quantize_lm_head
        return self.quant_threshold is not None and max(rows, cols) >= self.quant_threshold
