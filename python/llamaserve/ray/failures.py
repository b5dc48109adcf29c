"""What a client gets when the replica serving its request fails (its actor died, or the
request raised inside it): the error JSON of the path's API, or, in a stream already started,
that API's error event, then the end of the stream."""
from __future__ import annotations

from starlette.types import Scope, Send

from llamaserve.server.errors import ApiError
from llamaserve.server.families import FAMILIES
from llamaserve.server.family import spec_stream_error


def replica_failed() -> ApiError:
    return ApiError(503, "REPLICA_FAILED", "the replica serving this request stopped",
                    "retry: another replica takes it", {"Retry-After": "1"})


def internal_error() -> ApiError:
    return ApiError(500, "INTERNAL_ERROR", "internal server error", "the replica's log has the cause")


def stream_error_event(path: str, error: ApiError) -> bytes:
    """The error event of the path's API, as its own streams send one."""
    family = FAMILIES.for_path(path)
    return (family.stream_error if family is not None else spec_stream_error)(path, error)


async def send_failure(scope: Scope, send: Send, error: ApiError, started: bool, streaming: bool) -> None:
    if not started:
        family = FAMILIES.for_path(scope["path"])
        response = family.error_response(error) if family is not None else error.response()
        await response(scope, _no_body, send)
        return
    body = stream_error_event(scope["path"], error) if streaming else b""
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _no_body() -> dict:
    return {"type": "http.request", "body": b"", "more_body": False}
