"""CORS: which web pages' scripts may call the API. By default `localhost`, llama-server's
keyword: any page this machine serves (a local chat UI, an editor's web view), on any port;
exact origins and '*' as given."""
from __future__ import annotations

from collections.abc import Sequence

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

LOCALHOST = "localhost"
LOCAL_ORIGIN = r"https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?"


def cors_middleware(origins: Sequence[str]) -> Middleware | None:
    if not origins:
        return None
    exact = [origin for origin in origins if origin != LOCALHOST]
    return Middleware(
        CORSMiddleware, allow_origins=exact, allow_origin_regex=LOCAL_ORIGIN if LOCALHOST in origins else None,
        allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "X-API-Key", "Accept"],
        expose_headers=["X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After"])
