"""Errors under /v1/messages in Anthropic's shape:
{"type": "error", "error": {"type": ..., "message": ...}}.

The server has one error type (ApiError); this module only renders it differently. The HTTP
status stays the same (the anthropic SDK picks its exception class from it); the error type
follows from the status, as Anthropic documents them."""
from __future__ import annotations

from typing import Any

from llamaserve.server.errors import ApiError

_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error",
          429: "rate_limit_error", 503: "overloaded_error", 504: "timeout_error"}


def anthropic_body(error: ApiError) -> dict[str, Any]:
    kind = _TYPES.get(error.status) or ("api_error" if error.status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": error.message}}
