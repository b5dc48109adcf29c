"""What llamaserve takes from the compiled extension besides the engine itself (the engine
package): the typed errors, llama.cpp's quantizer, build facts (the compute backends and their
devices), log verbosity, the speculation bound, the grammar limits and the shortest chunk cache
reuse takes. With the engine package, the only place that imports `_native`."""
from llamaserve._native import (
    MAX_GRAMMAR_BYTES,
    MAX_GRAMMAR_WIDTH,
    MAX_STEP_DRAFTS,
    MIN_REUSE_CHUNK,
    ContextLengthExceeded,
    EngineError,
    InvalidRequest,
    ModelLoadError,
    QueueFull,
    compute_backends,
    quantize,
    set_verbose,
    supports_gpu_offload,
)

__all__ = [
    "MAX_GRAMMAR_BYTES",
    "MAX_GRAMMAR_WIDTH",
    "MAX_STEP_DRAFTS",
    "MIN_REUSE_CHUNK",
    "ContextLengthExceeded",
    "EngineError",
    "InvalidRequest",
    "ModelLoadError",
    "QueueFull",
    "compute_backends",
    "quantize",
    "set_verbose",
    "supports_gpu_offload",
]
