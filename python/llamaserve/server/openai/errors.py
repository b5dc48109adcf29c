"""Errors under /v1 in OpenAI's shape: {"error": {"message", "type", "param", "code"}}.

The server has one error type (ApiError); this module only renders it differently. The
HTTP status stays the same (the OpenAI SDK picks its exception class from it: 400
BadRequestError, 401 AuthenticationError, 404 NotFoundError, 429 RateLimitError, 500
InternalServerError, 503 ...); `param` is the parameter that a validation message starts
with (`temperature: must be ...`)."""
from __future__ import annotations

import re
from typing import Any

from llamaserve.server.errors import ApiError

# native code -> (OpenAI type, OpenAI code); unknown codes fall back by status.
_MAPPED: dict[str, tuple[str, str | None]] = {
    "INVALID_REQUEST": ("invalid_request_error", None),
    # llama-server's type, which its clients read; OpenAI's code, which the SDKs' users read
    "CONTEXT_LENGTH_EXCEEDED": ("exceed_context_size_error", "context_length_exceeded"),
    "UNAUTHORIZED": ("invalid_request_error", "invalid_api_key"),
    "MODEL_NOT_FOUND": ("invalid_request_error", "model_not_found"),
    "NOT_FOUND": ("invalid_request_error", "not_found"),
    "RATE_LIMITED": ("requests", "rate_limit_exceeded"),
    "INTERNAL_ERROR": ("server_error", None),
}
_PARAM = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(?:(?:\.[A-Za-z_$][A-Za-z0-9_]*)|(?:\[\d+\]))*): ")


def param_of(message: str) -> str | None:
    """The parameter a validation message names first, if any."""
    match = _PARAM.match(message)
    if match is None or match.group(1) in ("body",):
        return None
    return match.group(1)


def openai_body(error: ApiError) -> dict[str, Any]:
    kind, code = _MAPPED.get(error.code, (None, None))
    if kind is None:
        kind = "invalid_request_error" if error.status < 500 else "server_error"
        code = error.code.lower()
    param = param_of(error.message) if error.status == 400 else None
    return {"error": {"message": error.message, "type": kind, "param": param, "code": code, **error.fields}}
