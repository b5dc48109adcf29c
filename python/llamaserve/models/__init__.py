"""The model registry: which GGUF files there are, what they are, and what they cost.

- errors.py       the package's errors (the registry's with the HTTP status to answer)
- quant_types.py  llama.cpp's quantization types, their preference orders and byte sizes
- gguf.py         reading a GGUF header (metadata, tensor table) without the weights
- memory.py       what loading a model costs, and sizes as people write them
- budget.py       which idle models to unload to fit a memory budget
- names.py        model names: the spec's aliases, quantization suffixes, path refusal
- config.py       the TOML models config (names, files, per-model defaults)
- verdicts.py     what the load probe found, kept by file identity (probes.json)
- probe.py        opening a file first in a child process, where a llama.cpp abort is harmless
- registry.py     ModelRegistry: discovery, names to files, variants, the quantized cache
- quantizer.py    quantizing a GGUF with llama.cpp's quantizer
- cli.py          `llamaserve models` and `llamaserve quantize` (not imported here)
"""
from llamaserve.models.budget import LruBudget, Resident
from llamaserve.models.config import ModelSettings
from llamaserve.models.errors import (
    GGUFFormatError,
    InvalidModelName,
    ModelFileError,
    ModelNotFound,
    ModelProbeFailed,
    ModelsConfigError,
    QuantizeCacheFull,
    RegistryError,
    RequantizeRefused,
    UnknownQuantization,
)
from llamaserve.models.gguf import GGUFInfo, read_gguf_info
from llamaserve.models.memory import MemoryEstimate, estimate_memory, format_size, gigabytes, parse_size
from llamaserve.models.names import SPEC_ALIASES, check_name, split_quant_suffix
from llamaserve.models.quant_types import QUANT_TYPES, quant_name
from llamaserve.models.quantizer import expected_quantized_size, quantize
from llamaserve.models.registry import DEFAULT_MODELS_DIR, ModelEntry, ModelRegistry

__all__ = [
    "DEFAULT_MODELS_DIR", "GGUFFormatError", "GGUFInfo", "InvalidModelName", "LruBudget",
    "MemoryEstimate", "ModelEntry", "ModelFileError", "ModelNotFound", "ModelProbeFailed", "ModelRegistry",
    "ModelSettings", "ModelsConfigError", "QUANT_TYPES", "QuantizeCacheFull", "RegistryError", "RequantizeRefused",
    "Resident", "SPEC_ALIASES", "UnknownQuantization", "check_name", "estimate_memory",
    "expected_quantized_size", "format_size", "gigabytes", "parse_size", "quant_name", "quantize",
    "read_gguf_info", "split_quant_suffix",
]
