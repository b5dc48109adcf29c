"""What llamaserve takes from the compiled extension besides the engine itself (engine.py):
the typed errors, llama.cpp's quantizer, build facts and log verbosity. With engine.py, the
only module that imports `_native`."""
from llamaserve._native import (
    ContextLengthExceeded,
    EngineError,
    InvalidRequest,
    ModelLoadError,
    QueueFull,
    quantize,
    set_verbose,
    supports_gpu_offload,
)

__all__ = [
    "ContextLengthExceeded",
    "EngineError",
    "InvalidRequest",
    "ModelLoadError",
    "QueueFull",
    "quantize",
    "set_verbose",
    "supports_gpu_offload",
]
