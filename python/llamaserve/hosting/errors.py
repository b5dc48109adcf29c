"""Why the model host cannot serve a request or a load. Domain errors: the HTTP layer maps
each to its status and code (llamaserve.server.errors)."""
from __future__ import annotations

from typing import Any


class HostingError(Exception):
    """`retry_after`: seconds after which trying again may succeed (None: it will not)."""

    retry_after: int | None = None

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ModelLoading(HostingError):
    """The model asked for is still loading."""

    retry_after = 1


class NoModelLoaded(HostingError):
    """A request named no model, and none is loaded."""


class ModelNotLoaded(HostingError):
    """The model exists but is not loaded (and --auto-load is off)."""


class InsufficientMemory(HostingError):
    """Loading would exceed --max-memory even after unloading every idle model."""

    retry_after = 5


class ModelLoadFailed(HostingError):
    """The load itself failed (a bad file, a failed quantization, llama.cpp refused)."""


class ShuttingDown(HostingError):
    """The server stopped while the load ran."""
