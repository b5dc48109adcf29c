"""The engine's typed errors. They are defined natively (llamaserve.native); this module is their public home."""
from llamaserve.native import (
    ContextLengthExceeded,
    EngineClosed,
    EngineError,
    InvalidRequest,
    ModelLoadError,
    QueueFull,
)


class RequestTimedOut(EngineError):
    """The request ran longer than the server allows (--request-timeout) and was cancelled."""


class RequestCancelled(EngineError):
    """The engine ended the request before it finished (it was closed, as at shutdown)."""


class DefaultModelMissing(ModelLoadError):
    """The default model is not where set-up (scripts/fetch_default_model.py) puts it."""


__all__ = [
    "ContextLengthExceeded",
    "DefaultModelMissing",
    "EngineClosed",
    "EngineError",
    "InvalidRequest",
    "ModelLoadError",
    "QueueFull",
    "RequestCancelled",
    "RequestTimedOut",
]
