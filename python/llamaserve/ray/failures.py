"""What a client gets when the replica serving its request fails (its actor died, or the
request raised inside it): the error JSON of the path's API, or, in a stream already started,
that API's error event, then the end of the stream."""
from __future__ import annotations

from starlette.types import Scope, Send

from llamaserve.server import sse
from llamaserve.server.anthropic.errors import anthropic_body, is_anthropic_path
from llamaserve.server.errors import ApiError
from llamaserve.server.openai.errors import is_openai_path, openai_body


def replica_failed() -> ApiError:
    return ApiError(503, "REPLICA_FAILED", "the replica serving this request stopped",
                    "retry: another replica takes it", {"Retry-After": "1"})


def internal_error() -> ApiError:
    return ApiError(500, "INTERNAL_ERROR", "internal server error", "the replica's log has the cause")


def stream_error_event(path: str, error: ApiError) -> bytes:
    """The error event of the path's API, as its own streams send one."""
    if is_anthropic_path(path):
        return b"event: error\n" + sse.event(anthropic_body(error))
    if path == "/v1/responses":
        body = openai_body(error)["error"]
        return b"event: error\n" + sse.event({"type": "error", "code": body["code"], "message": body["message"],
                                              "param": body["param"]})
    if is_openai_path(path):
        return sse.event(openai_body(error))
    return sse.event({"token": "", "finished": True, "finish_reason": "error", **error.body()})


async def send_failure(scope: Scope, send: Send, error: ApiError, started: bool, streaming: bool) -> None:
    if not started:
        await error.response()(scope, _no_body, send)  # renders the path's API shape
        return
    body = stream_error_event(scope["path"], error) if streaming else b""
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _no_body() -> dict:
    return {"type": "http.request", "body": b"", "more_body": False}
