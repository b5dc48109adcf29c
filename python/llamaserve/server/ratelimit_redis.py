"""A fixed-window rate limit counted in Redis, so that one limit holds across processes and
Ray Serve replicas. Same windows and headers as FixedWindowLimiter (server/ratelimit.py).

One round trip per request: a Lua script INCRs the window's counter (setting its expiry on
the first hit) and reads Redis's own clock, so every process agrees on the window without
synchronised clocks.

When Redis cannot be reached (`fallback`):
- "local" (default): fail open to a FixedWindowLimiter in this process (each process then
  allows the full limit, as without Redis); a warning is logged once per outage and Redis is
  tried again after RETRY_AFTER_OUTAGE seconds, so an outage costs no timeout per request.
- "deny": 503 RATE_LIMIT_UNAVAILABLE with Retry-After, until Redis answers again.
"""
from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from llamaserve.server.errors import ApiError
from llamaserve.server.ratelimit import FixedWindowLimiter

log = logging.getLogger("llamaserve.ratelimit")

RETRY_AFTER_OUTAGE = 2.0  # seconds before an unreachable Redis is asked again
SOCKET_TIMEOUT = 0.25  # a limiter must not stall a request for long
KEY_PREFIX = "llamaserve:ratelimit:"

# KEYS[1]: the identity's key prefix; ARGV[1]: window in ms. Returns {count, reset_ms, now_ms}.
# The counter's key is KEYS[1] plus the window start: in the same cluster hash slot ({...}).
WINDOW_SCRIPT = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window_ms = tonumber(ARGV[1])
local start = now_ms - (now_ms % window_ms)
local key = KEYS[1] .. ':' .. start
local count = redis.call('INCR', key)
if count == 1 then redis.call('PEXPIRE', key, window_ms + 1000) end
return {count, start + window_ms, now_ms}
"""


def rate_limit_unavailable() -> ApiError:
    return ApiError(503, "RATE_LIMIT_UNAVAILABLE", "the rate limit store cannot be reached",
                    "retry after the time in Retry-After", {"Retry-After": str(math.ceil(RETRY_AFTER_OUTAGE))})


class RedisWindowLimiter:
    """`limit` requests per `window` seconds per identity, counted in Redis at `url`."""

    def __init__(self, url: str, limit: int, window: float, fallback: str = "local",
                 clock: Callable[[], float] = time.time) -> None:
        try:
            import redis.asyncio as redis_asyncio
        except ImportError:
            raise ValueError("--rate-limit-redis: needs the redis package (pip install 'llamaserve[redis]')") from None
        self.limit = limit
        self.window = window
        self.fallback = fallback
        self._local_clock = clock
        self.local = FixedWindowLimiter(limit, window, clock)
        self._client: Any = redis_asyncio.Redis.from_url(
            url, socket_connect_timeout=SOCKET_TIMEOUT, socket_timeout=SOCKET_TIMEOUT,
            retry_on_timeout=False)
        self._script = self._client.register_script(WINDOW_SCRIPT)
        self._errors = (redis_asyncio.RedisError, OSError)
        self._down_until = 0.0  # monotonic time before which Redis is not asked
        self._window_ms = max(1, round(window * 1000))
        self._offset = 0.0  # Redis's clock minus ours: Retry-After uses Redis's windows

    @staticmethod
    def key(identity: str) -> str:
        # Identities can hold API-key digests or JWT subjects: store only a hash of them.
        return KEY_PREFIX + "{" + hashlib.sha256(identity.encode()).hexdigest()[:32] + "}"

    def clock(self) -> float:
        """Redis's clock (as last seen): the one its reset times count on (for Retry-After)."""
        return self._local_clock() + self._offset

    async def hit(self, identity: str) -> tuple[bool, int, float]:
        """Count one request: (allowed, remaining, reset time in epoch seconds)."""
        if time.monotonic() >= self._down_until:
            try:
                count, reset_ms, now_ms = await self._script(keys=[self.key(identity)], args=[self._window_ms])
            except self._errors as exc:
                self._down_until = time.monotonic() + RETRY_AFTER_OUTAGE
                log.warning("rate limit: Redis unreachable (%s); %s for %gs", type(exc).__name__,
                            "counting in this process" if self.fallback == "local" else "refusing requests",
                            RETRY_AFTER_OUTAGE)
            else:
                self._offset = int(now_ms) / 1000 - self._local_clock()
                count = int(count)
                return count <= self.limit, max(0, self.limit - count), int(reset_ms) / 1000
        if self.fallback == "deny":
            raise rate_limit_unavailable()
        return self.local.hit(identity)

    async def aclose(self) -> None:
        await self._client.aclose()
