"""The errors of the models package. RegistryError's kinds carry a message and a `details`
hint for the client (the HTTP layer maps each kind to its status and code); ModelsConfigError
(raised at start-up) and GGUFFormatError (what is wrong with a file's header) are plain."""
from __future__ import annotations

from typing import Any


class RegistryError(Exception):
    """Base of the registry's errors: a request named a model or a quantization wrongly."""

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidModelName(RegistryError):
    """The name is a path, or could escape the models folder."""


class ModelNotFound(RegistryError):
    """No model answers to the name."""


class ModelFileError(RegistryError):
    """The model's file is not a usable GGUF (truncated, corrupt, unreadable)."""


class UnknownQuantization(RegistryError):
    """The quantization name is not one llama.cpp's quantizer knows."""


class RequantizeRefused(RegistryError):
    """The only source is already quantized and requantizing was not allowed."""


class ModelsConfigError(ValueError):
    """The models config file is malformed (raised at start-up, not per request)."""


class GGUFFormatError(Exception):
    """A file whose GGUF header cannot be read; the message says what is wrong."""
