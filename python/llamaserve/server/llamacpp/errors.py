"""Errors on llama-server's own routes in its shape: {"error": {"code": <status>, "message",
"type"}}, the type named by the status as llama-server names it (its clients read `type`)."""
from __future__ import annotations

from typing import Any

from llamaserve.server import sse
from llamaserve.server.errors import ApiError

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 501: "not_supported_error", 503: "unavailable_error"}


def llamacpp_body(error: ApiError) -> dict[str, Any]:
    kind = _TYPES.get(error.status, "server_error" if error.status >= 500 else "invalid_request_error")
    if error.code == "CONTEXT_LENGTH_EXCEEDED":
        kind = "exceed_context_size_error"
    return {"error": {"code": error.status, "message": error.message, "type": kind, **error.fields}}


def stream_error(path: str, error: ApiError) -> bytes:
    return sse.event(llamacpp_body(error))
