"""The errors of the models package. RegistryError's kinds carry the HTTP `status` and error
`code` a server answers with, and a `details` hint for the client; ModelsConfigError (raised at
start-up) and GGUFFormatError (what is wrong with a file's header) carry neither."""
from __future__ import annotations

from typing import Any


class RegistryError(Exception):
    """Base of the registry's errors; `status` is the HTTP status a server should answer."""

    status = 400
    code = "INVALID_REQUEST"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidModelName(RegistryError):
    """The name is a path, or could escape the models folder."""


class ModelNotFound(RegistryError):
    status = 404
    code = "MODEL_NOT_FOUND"


class ModelFileError(RegistryError):
    """The model's file is not a usable GGUF (truncated, corrupt, unreadable)."""

    status = 422
    code = "MODEL_FILE_INVALID"


class ModelProbeFailed(RegistryError):
    """The load probe (probe.py) could not judge the file: it timed out, or its process was
    killed or could not start. Not the file's fault; nothing is kept."""

    status = 500
    code = "MODEL_LOAD_FAILED"


class QuantizeCacheFull(RegistryError):
    """A quantization would not fit in --quantize-cache-size beside the cached files in use."""

    status = 507
    code = "QUANTIZE_CACHE_FULL"


class UnknownQuantization(RegistryError):
    """The quantization name is not one llama.cpp's quantizer knows."""


class RequantizeRefused(RegistryError):
    """The only source is already quantized and requantizing was not allowed."""


class ModelsConfigError(ValueError):
    """The models config file is malformed (raised at start-up, not per request)."""


class GGUFFormatError(Exception):
    """A file whose GGUF header cannot be read; the message says what is wrong."""
