"""Rate limiting as pure ASGI middleware: a fixed window per client identity (API key, JWT
subject, else client IP). Every limited response carries X-RateLimit-Limit, -Remaining and
-Reset (epoch seconds); over the limit is 429 RATE_LIMITED with Retry-After."""
from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llamaserve.server.errors import ApiError

MAX_TRACKED = 100_000  # identities remembered before old windows are dropped


class FixedWindowLimiter:
    """`limit` requests per `window` seconds; windows are aligned to the epoch, so every
    client's window resets at the same moment (like GitHub's limits)."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.time) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._counts: dict[str, tuple[float, int]] = {}

    def hit(self, identity: str) -> tuple[bool, int, float]:
        """Count one request: (allowed, remaining, reset time in epoch seconds)."""
        now = self.clock()
        start = math.floor(now / self.window) * self.window
        reset = start + self.window
        window_start, count = self._counts.get(identity, (start, 0))
        if window_start != start:
            count = 0
        if count >= self.limit:
            return False, 0, reset
        if len(self._counts) >= MAX_TRACKED:
            self._counts = {k: v for k, v in self._counts.items() if v[0] == start}
        self._counts[identity] = (start, count + 1)
        return True, self.limit - count - 1, reset


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, limiter: Any, identify: Callable[[Scope], str],
                 applies: Callable[[str], bool]) -> None:
        self.app = app
        self.limiter = limiter  # FixedWindowLimiter, or RedisWindowLimiter (ratelimit_redis.py)
        self.identify = identify
        self.applies = applies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS" or not self.applies(scope["path"]):
            await self.app(scope, receive, send)
            return
        try:
            counted = self.limiter.hit(self.identify(scope))
            # RedisWindowLimiter (ratelimit_redis.py) counts in Redis: a coroutine
            allowed, remaining, reset = await counted if inspect.isawaitable(counted) else counted
        except ApiError as error:  # the limit's store is unreachable and may not be bypassed
            await error.response()(scope, receive, send)
            return
        headers = {"X-RateLimit-Limit": str(self.limiter.limit),
                   "X-RateLimit-Remaining": str(remaining),
                   "X-RateLimit-Reset": str(math.ceil(reset))}
        if not allowed:
            retry_after = max(1, math.ceil(reset - self.limiter.clock()))
            error = ApiError(429, "RATE_LIMITED",
                             f"rate limit exceeded: {self.limiter.limit} requests per {self.limiter.window:g}s",
                             f"retry after {retry_after}s", {**headers, "Retry-After": str(retry_after)})
            await error.response()(scope, receive, send)
            return
        raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *raw]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
