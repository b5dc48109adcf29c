"""CORS: which web pages' scripts may call the API. By default `localhost`, llama-server's
keyword: any page this machine serves (a local chat UI, an editor's web view), on any port;
exact origins and '*' as given."""
from __future__ import annotations

from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import PlainTextResponse, Response

LOCALHOST = "localhost"
LOCAL_ORIGIN = r"https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?"


class Cors(CORSMiddleware):
    """Starlette's, except that a preflight from an origin not allowed is answered 200 with no
    CORS headers (the browser then refuses the call), as llama-server answers it, not 400."""

    def preflight_response(self, request_headers: Headers) -> Response:
        if not self.is_allowed_origin(origin=request_headers["origin"]):
            return PlainTextResponse("OK")
        return super().preflight_response(request_headers)


def cors_middleware(origins: Sequence[str]) -> Middleware | None:
    if not origins:
        return None
    exact = [origin for origin in origins if origin != LOCALHOST]
    return Middleware(
        Cors, allow_origins=exact, allow_origin_regex=LOCAL_ORIGIN if LOCALHOST in origins else None,
        allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "X-API-Key", "Accept"],
        expose_headers=["X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After"])
