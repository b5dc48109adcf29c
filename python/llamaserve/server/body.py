"""Request bodies: a size bound for every request, and strict JSON parsing."""
from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llamaserve.server.errors import ApiError, invalid


def too_large(limit: int) -> ApiError:
    return ApiError(413, "REQUEST_TOO_LARGE", f"body: larger than {limit} bytes",
                    "send a smaller request (see max_body_bytes)")


class BodyLimitMiddleware:
    """Pure ASGI: refuse a declared Content-Length over the limit at once, and stop reading
    an undeclared (chunked) body as soon as it passes the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.max_bytes:
                    error = too_large(self.max_bytes) if value.isdigit() else invalid(
                        "Content-Length: not a number")
                    await error.response()(scope, receive, send)
                    return
        seen = 0

        async def bounded_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise too_large(self.max_bytes)
            return message

        await self.app(scope, bounded_receive, send)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def read_json(request: Request, *, required: bool = True) -> Any:
    """The body as JSON whatever its Content-Type (curl -d sends form encoding); NaN,
    Infinity, bad UTF-8 and absurd nesting are malformed. An empty optional body is None."""
    raw = await request.body()
    if not raw.strip():
        if required:
            raise invalid("body: expected a JSON object, got an empty body")
        return None
    try:
        return json.loads(raw, parse_constant=_no_constants)
    except UnicodeDecodeError:
        raise invalid("body: not UTF-8") from None
    except RecursionError:
        raise invalid("body: JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, int too long, NaN
        raise invalid("body: malformed JSON", str(exc)[:200]) from None
