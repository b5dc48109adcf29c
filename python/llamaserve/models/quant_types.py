"""The quantization types llama.cpp knows: llama_ftype names and numbers, which are
unquantized, which to prefer, and how many bytes a ggml tensor type takes."""
from __future__ import annotations

from llamaserve.models.errors import UnknownQuantization

# llama_ftype values (vendor/llama.cpp/include/llama.h) that the quantizer can produce.
QUANT_TYPES: dict[str, int] = {
    "F32": 0, "F16": 1, "BF16": 32,
    "Q8_0": 7, "Q6_K": 18,
    "Q5_K_M": 17, "Q5_K_S": 16, "Q5_1": 9, "Q5_0": 8,
    "Q4_K_M": 15, "Q4_K_S": 14, "Q4_1": 3, "Q4_0": 2,
    "Q3_K_L": 13, "Q3_K_M": 12, "Q3_K_S": 11,
    "Q2_K": 10,
}
# Every llama_ftype name, for naming files quantized elsewhere.
FTYPE_NAMES: dict[int, str] = {v: k for k, v in QUANT_TYPES.items()} | {
    19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S",
    25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M",
    36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE", 39: "NVFP4", 40: "Q1_0", 41: "Q2_0",
}
UNQUANTIZED = frozenset({"F32", "F16", "BF16"})
# Source preference when quantizing: the most precise file first.
PRECISION_ORDER = ["F32", "BF16", "F16", "Q8_0", "Q6_K", "Q5_K_M", "Q5_1", "Q5_K_S", "Q5_0",
                   "Q4_K_M", "Q4_1", "Q4_K_S", "Q4_0", "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q2_K"]
# Which variant a bare model name loads: the usual serving trade-off first.
DEFAULT_ORDER = ["Q4_K_M", "Q5_K_M", "Q4_K_S", "Q5_K_S", "Q6_K", "Q8_0", "Q4_0", "Q4_1", "Q5_0",
                 "Q5_1", "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q2_K", "F16", "BF16", "F32"]
# ggml tensor type -> (block size, bytes per block), for sizes without loading.
GGML_TYPE_SIZES: dict[int, tuple[int, int]] = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
    9: (32, 40), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210),
    15: (256, 292), 16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 110), 20: (256, 82),
    21: (256, 136), 22: (256, 50), 23: (32, 18), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8),
    28: (1, 8), 29: (256, 56), 30: (1, 2), 34: (256, 54), 35: (256, 66), 39: (32, 17),
}
# The ggml tensor type a llama_ftype mostly uses (for estimating a quantized file's size).
FTYPE_TENSOR_TYPE = {0: 0, 1: 1, 32: 30, 7: 8, 18: 14, 17: 13, 16: 13, 9: 7, 8: 6, 15: 12, 14: 12,
                     3: 3, 2: 2, 13: 11, 12: 11, 11: 11, 10: 10}


def quant_name(name: str) -> str:
    """The canonical quantization name ("q4_k_m" -> "Q4_K_M"); UnknownQuantization listing
    the valid names otherwise."""
    if isinstance(name, str):
        canon = name.strip().upper().replace("-", "_")
        if canon in QUANT_TYPES:
            return canon
    valid = ", ".join(n.lower() for n in QUANT_TYPES)
    raise UnknownQuantization(f"quantization: unknown type {str(name)[:32]!r}", f"valid types: {valid}")
