"""The one API error type, and the one place that renders it: the spec's error JSON
{"error": {"code": ..., "message": ..., "details": ...}}, or the shape of the API a path
belongs to (OpenAI's under /v1, Anthropic's under /v1/messages)."""
from __future__ import annotations

import logging
import re
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Match
from starlette.types import Receive, Scope, Send

from llamaserve.errors import (
    ContextLengthExceeded,
    EngineClosed,
    InvalidRequest,
    QueueFull,
    RequestCancelled,
    RequestTimedOut,
)
from llamaserve.hosting.errors import (
    HostingError, InsufficientMemory, ModelLoadFailed, ModelLoading, ModelNotLoaded, NoModelLoaded, ShuttingDown)
from llamaserve.models import RegistryError

log = logging.getLogger("llamaserve.server")

# Codes for statuses that reach us as plain HTTP errors (routing, Starlette itself).
_STATUS_CODES = {
    400: "INVALID_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "REQUEST_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMITED",
    500: "INTERNAL_ERROR",
    503: "SERVICE_UNAVAILABLE",
    504: "REQUEST_TIMEOUT",
}


# Model hosting's domain errors -> (status, code). The registry's errors carry their own.
_HOSTING: dict[type[Exception], tuple[int, str]] = {
    ModelLoading: (503, "MODEL_LOADING"),
    NoModelLoaded: (503, "MODEL_NOT_LOADED"),
    ModelNotLoaded: (409, "MODEL_NOT_LOADED"),
    InsufficientMemory: (503, "INSUFFICIENT_MEMORY"),
    ModelLoadFailed: (500, "MODEL_LOAD_FAILED"),
    ShuttingDown: (503, "SHUTTING_DOWN"),
}
DOMAIN_ERRORS = (HostingError, RegistryError)


def _domain_error(exc: HostingError | RegistryError) -> ApiError:
    if isinstance(exc, RegistryError):
        status, code = exc.status, exc.code
    else:
        status, code = next(_HOSTING[t] for t in type(exc).__mro__ if t in _HOSTING)
    retry_after = getattr(exc, "retry_after", None)
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return ApiError(status, code, exc.message, exc.details, headers)


class ApiError(Exception):
    """An error the API reports to its client: HTTP status, stable code, message, details."""

    def __init__(self, status: int, code: str, message: str, details: Any = None,
                 headers: dict[str, str] | None = None, fields: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = dict(headers or {})
        self.fields = dict(fields or {})  # what some families' shapes add (llama-server's n_ctx, ...)

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}

    def response(self) -> JSONResponse:
        return ErrorResponse(self)


class ErrorResponse(JSONResponse):
    """The spec's error JSON, except where another API's shape is rendered when sent: under
    /v1/messages Anthropic's (server/anthropic/errors.py), elsewhere under /v1 OpenAI's
    (server/openai/errors.py); so middleware errors (401, 429, 413) get it too."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.body(), status_code=error.status, headers=error.headers)
        self.error = error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The app's API families (server/family.py) say whose shape a path's errors take.
        families = getattr(getattr(scope.get("app"), "state", None), "families", None)
        family = families.for_path(scope.get("path", "")) if families is not None else None
        if family is not None:
            await family.error_response(self.error)(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def invalid(message: str, details: Any = None) -> ApiError:
    """400 INVALID_REQUEST; the message starts with the bad field's name."""
    return ApiError(400, "INVALID_REQUEST", message, details)


def overloaded(message: str, retry_after: int = 1) -> ApiError:
    return ApiError(503, "OVERLOADED", message, "retry after the time in Retry-After",
                    {"Retry-After": str(retry_after)})


_SIZES = re.compile(r"has (\d+) tokens but .*?(\d+)")


def to_api_error(exc: BaseException) -> ApiError:
    """Map any exception to what the client may see; unexpected ones say nothing inside."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, HTTPException):
        status = exc.status_code
        message = {404: "no such endpoint", 405: "method not allowed for this endpoint",
                   413: "request body too large"}.get(status, str(exc.detail or status))
        return ApiError(status, _STATUS_CODES.get(status, "HTTP_ERROR"), message, None, dict(exc.headers or {}))
    if isinstance(exc, DOMAIN_ERRORS):
        return _domain_error(exc)
    if isinstance(exc, ContextLengthExceeded):
        message = str(exc) if str(exc).startswith("prompt") else f"prompt: {exc}"
        # the engine's message is the one place its two sizes are told ("has N tokens but ... M")
        sizes = _SIZES.search(message)
        fields = {"n_prompt_tokens": int(sizes[1]), "n_ctx": int(sizes[2])} if sizes else None
        return ApiError(400, "CONTEXT_LENGTH_EXCEEDED", message, "shorten the prompt or lower max_tokens",
                        fields=fields)
    if isinstance(exc, InvalidRequest):
        return invalid(str(exc))
    if isinstance(exc, RequestTimedOut):
        return ApiError(504, "REQUEST_TIMEOUT", str(exc), "ask for fewer tokens, or retry when the server is less busy")
    if isinstance(exc, (RequestCancelled, EngineClosed)):  # ended by, or sent to, a closing engine
        return ApiError(503, "CANCELLED", str(exc), "retry", {"Retry-After": "1"})
    if isinstance(exc, QueueFull):
        return overloaded(f"server overloaded: {exc}")
    log.error("internal error", exc_info=exc)
    return ApiError(500, "INTERNAL_ERROR", "internal server error", "the server log has the cause")


def render(exc: BaseException) -> JSONResponse:
    return to_api_error(exc).response()


async def handle(request: Request, exc: Exception) -> JSONResponse:
    """Starlette exception handler for every exception type."""
    if isinstance(exc, HTTPException) and exc.status_code == 404:
        error = to_api_error(exc)
        nearby = _route_nearby(request)
        if nearby is not None:  # e.g. the spec's bare POST /generate
            error.message += f": did you mean {nearby}?"
            error.details = "this server's native API is under /api/v1 and its OpenAI API under /v1"
        return error.response()
    return render(exc)


def _route_nearby(request: Request) -> str | None:
    """The path under /api/v1 or /v1 that the app has for a path it has not."""
    for prefix in ("/api/v1", "/v1"):
        path = prefix + request.url.path
        scope = {**request.scope, "path": path}
        if any(route.matches(scope)[0] != Match.NONE for route in request.app.routes):
            return path
    return None
