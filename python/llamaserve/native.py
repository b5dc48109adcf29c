"""What llamaserve takes from the compiled extension besides the engine itself (the engine
package): the typed errors, llama.cpp's quantizer, build facts (the compute backends and their
devices), log verbosity, the samplers' defaults, the speculation bound, the grammar limits and the shortest chunk cache
reuse takes. With the engine package, the only place that imports `_native`."""
from llamaserve._native import (
    MAX_GRAMMAR_BYTES,
    MAX_GRAMMAR_WIDTH,
    MAX_STEP_DRAFTS,
    MIN_REUSE_CHUNK,
    ContextLengthExceeded,
    EngineClosed,
    EngineError,
    InvalidRequest,
    ModelLoadError,
    QueueFull,
    SamplingParams,
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
    "EngineClosed",
    "EngineError",
    "InvalidRequest",
    "ModelLoadError",
    "QueueFull",
    "compute_backends",
    "quantize",
    "sampling_defaults",
    "set_verbose",
    "supports_gpu_offload",
]


SAMPLERS = ("temperature", "top_k", "top_p", "min_p", "repeat_penalty", "presence_penalty", "frequency_penalty")


def sampling_defaults() -> dict[str, float | int]:
    """What the engine's samplers use when a request names nothing."""
    params = SamplingParams()
    return {name: round(getattr(params, name), 6) for name in SAMPLERS}  # float32s, as written
