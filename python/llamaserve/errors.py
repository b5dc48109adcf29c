"""The engine's typed errors. They are defined natively (llamaserve.native); this module is their public home."""
from llamaserve.native import (
    ContextLengthExceeded,
    EngineError,
    InvalidRequest,
    ModelLoadError,
    QueueFull,
)


class DefaultModelMissing(ModelLoadError):
    """The default model package is not installed."""


__all__ = [
    "ContextLengthExceeded",
    "DefaultModelMissing",
    "EngineError",
    "InvalidRequest",
    "ModelLoadError",
    "QueueFull",
]
