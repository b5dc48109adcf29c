"""CORS: which web pages' scripts may call the API. By default `localhost`, llama-server's
keyword: any page this machine serves (a local chat UI, an editor's web view), on any port;
exact origins and '*' as given. An allowed page may send /tools' headers and /cors-proxy's
x-llama-server-proxy-header-* ones."""
from __future__ import annotations

from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import PlainTextResponse, Response

LOCALHOST = "localhost"
# /cors-proxy forwards the headers a page sends under this prefix: any name may follow it
PROXY_HEADER_PREFIX = "x-llama-server-proxy-header-"
LOCAL_ORIGIN = r"https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?"


class Cors(CORSMiddleware):
    """Starlette's, except that a preflight from an origin not allowed is answered 200 with no
    CORS headers (the browser then refuses the call), as llama-server answers it, not 400."""

    def preflight_response(self, request_headers: Headers) -> Response:
        if not self.is_allowed_origin(origin=request_headers["origin"]):
            return PlainTextResponse("OK")
        requested = [h.strip().lower() for h in request_headers.get("access-control-request-headers", "").split(",")]
        proxied = [h for h in requested if h.startswith(PROXY_HEADER_PREFIX) and len(h) > len(PROXY_HEADER_PREFIX)]
        if not proxied:
            return super().preflight_response(request_headers)
        rest = [h for h in requested if h and h not in proxied]
        headers = request_headers.mutablecopy()
        del headers["access-control-request-headers"]
        if rest:
            headers["access-control-request-headers"] = ", ".join(rest)
        response = super().preflight_response(headers)
        if response.status_code == 200:
            allowed = response.headers.get("access-control-allow-headers", "")
            response.headers["access-control-allow-headers"] = ", ".join(filter(None, [allowed, *proxied]))
        return response


def cors_middleware(origins: Sequence[str]) -> Middleware | None:
    if not origins:
        return None
    exact = [origin for origin in origins if origin != LOCALHOST]
    return Middleware(
        Cors, allow_origins=exact, allow_origin_regex=LOCAL_ORIGIN if LOCALHOST in origins else None,
        allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "X-API-Key", "Accept",
                       "X-Tool-Cwd", "X-Tool-Runtime", "X-Resp-Type"],  # /tools' headers
        expose_headers=["X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After",
                        "Mcp-Session-Id"])  # /cors-proxy passes an MCP server's session id back
