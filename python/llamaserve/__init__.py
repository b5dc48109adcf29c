"""llamaserve: a native continuous-batching LLM engine over llama.cpp, served over HTTP."""
from importlib.metadata import PackageNotFoundError, version

from llamaserve.default_model import default_model_path
from llamaserve.engine import Engine
from llamaserve.errors import (
    ContextLengthExceeded,
    EngineClosed,
    EngineError,
    InvalidRequest,
    ModelLoadError,
    QueueFull,
)
from llamaserve.results import Completion, Usage



def __getattr__(name: str) -> object:
    """`from llamaserve import Llama` (llama-cpp-python's API) loads the server's chat pipeline
    only when asked for."""
    if name == "Llama":
        from llamaserve.compat import Llama

        return Llama
    raise AttributeError(f"module 'llamaserve' has no attribute {name!r}")


try:
    __version__ = version("llamaserve")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"

__all__ = [
    "Completion",
    "ContextLengthExceeded",
    "Engine",
    "EngineClosed",
    "EngineError",
    "InvalidRequest",
    "Llama",
    "ModelLoadError",
    "QueueFull",
    "Usage",
    "default_model_path",
]
