"""Limits at the door: how long a request may take to arrive, and how many connections may be
open, enforced in uvicorn's HTTP protocol (a subclass of its h11 one: httptools' writes every response
header name in lower case, which clients reading headers through a plain dict miss; h11 costs
about 0.1 ms a request and 3 us a streamed event more, nothing beside a token's time).

uvicorn (0.55) times out only an idle connection between two requests (timeout_keep_alive). A
connection that never finishes its request line and headers, or sends a body shorter than its
Content-Length, is held for ever, and httptools accepts headers of any size; its
limit_concurrency answers 503 only once a request's headers are complete, so slow connections
still hold their sockets. None of that is visible to an ASGI middleware, which first hears of a
request when its headers are complete, so the guard sits in the protocol:

- the head (request line and headers) must arrive within --header-timeout of the connection
  or of the previous response, and be at most MAX_HEADER_BYTES (else 431);
- the body must arrive within --body-timeout of the head;
- beyond --max-connections open connections, a new one is answered 503 and closed.

A late request gets 408 in its API's error shape (when nothing was answered yet) and its
connection is closed; a connection that sent nothing is just closed. Responses are not
touched: the guard costs nothing per streamed token."""
from __future__ import annotations

import asyncio
import http
import logging
from typing import Any, NamedTuple

from starlette.responses import JSONResponse
from uvicorn.protocols.http.h11_impl import H11Protocol

from llamaserve.config import ServerConfig
from llamaserve.server.errors import ApiError
from llamaserve.server.families import FAMILIES

log = logging.getLogger("llamaserve.server")

MAX_HEADER_BYTES = 64 * 1024  # request line and headers (h11's own limit is 16 KiB)


class DoorLimits(NamedTuple):
    header_timeout: float
    body_timeout: float
    max_connections: int
    max_header_bytes: int = MAX_HEADER_BYTES


def raw_error(error: ApiError, path: str | None) -> bytes:
    """A whole HTTP/1.1 error response that closes the connection, in the error shape of the
    API `path` belongs to (the spec's own shape when no path is known yet)."""
    family = FAMILIES.for_path(path) if path else None
    response = family.error_response(error) if family else JSONResponse(error.body(), error.status, error.headers)
    lines = [f"HTTP/1.1 {error.status} {http.HTTPStatus(error.status).phrase}\r\n".encode()]
    lines += [name + b": " + value + b"\r\n" for name, value in response.raw_headers]
    return b"".join([*lines, b"connection: close\r\n\r\n", response.body])


class _Door:
    """Mixed in before uvicorn's protocol class; `limits` is set by guarded_protocol().
    The connection is in one phase: head (waiting for a request's head), body (its body is
    arriving), app (the request is whole: the app's time, --request-timeout's business)."""

    limits: DoorLimits
    # uvicorn's protocol provides these
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    connections: set[Any]
    cycle: Any

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._timer: asyncio.TimerHandle | None = None
        self._seen_cycle: Any = None  # the request whose head arrived last
        self._phase = "head"
        self._head_bytes = 0
        if len(self.connections) > self.limits.max_connections:
            self._refuse(ApiError(503, "OVERLOADED", "too many open connections", "retry after the time in "
                                  "Retry-After", {"Retry-After": "1"}))
            return
        self._arm(self.limits.header_timeout, self._head_late)

    def data_received(self, data: bytes) -> None:
        if self._phase == "head" and self._head_size(data) > self.limits.max_header_bytes:
            self._refuse(ApiError(431, "HEADERS_TOO_LARGE", "request line and headers too large",
                                  f"send at most {self.limits.max_header_bytes} bytes of headers"))
            return
        super().data_received(data)  # type: ignore[misc]
        if self.transport.is_closing():
            self._disarm()
            return
        if self.cycle is not None and self.cycle is not self._seen_cycle:  # a request's head is whole
            self._seen_cycle = self.cycle
            if self.cycle.more_body:
                self._phase = "body"
                self._arm(self.limits.body_timeout, self._body_late)
            else:
                self._phase = "app"
                self._disarm()
        elif self._phase == "head":
            self._head_bytes += len(data)
        elif self._phase == "body" and not self.cycle.more_body:
            self._phase = "app"
            self._disarm()

    def _head_size(self, data: bytes) -> int:
        """The head's size so far with `data`, up to its blank line when `data` holds it (a body
        may follow in the same read). Checked before h11 buffers it (its own limit answers 400)."""
        end = data.find(b"\r\n\r\n")
        return self._head_bytes + (end + 4 if end >= 0 else len(data))

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        # A response sent before its request's body was read (401, 413) leaves the body timer
        # running: the rest of that body must still arrive in time.
        if not self.transport.is_closing() and self._phase != "body":
            self._phase, self._head_bytes = "head", 0
            self._arm(self.limits.header_timeout, self._head_late)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    # -- timers ---------------------------------------------------------------------------

    def _arm(self, delay: float, callback: Any) -> None:
        self._disarm()
        self._timer = self.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if getattr(self, "_timer", None) is not None:
            self._timer.cancel()
            self._timer = None

    def _head_late(self) -> None:
        self._timer = None
        if self._phase != "head" or self.transport.is_closing():
            return
        if self._head_bytes == 0:  # nothing asked: nothing to answer
            self.transport.close()
            return
        log.debug("closing a connection: no whole request head within %gs", self.limits.header_timeout)
        self._refuse(ApiError(408, "REQUEST_TIMEOUT", f"request headers not received within "
                              f"{self.limits.header_timeout:g}s", "send the whole request at once"))

    def _body_late(self) -> None:
        self._timer = None
        cycle = self.cycle
        if self._phase != "body" or self.transport.is_closing() or cycle is None:
            return
        log.debug("closing a connection: request body not received within %gs", self.limits.body_timeout)
        if cycle.response_started:
            self.transport.close()
            return
        self._refuse(ApiError(408, "REQUEST_TIMEOUT", f"request body not received within "
                              f"{self.limits.body_timeout:g}s", "send the whole request at once"),
                     cycle.scope.get("path"))

    def _refuse(self, error: ApiError, path: str | None = None) -> None:
        """Answer `error` and close; the app (if it waits for the body) hears a disconnect."""
        self._disarm()
        self._phase = "closed"
        self.transport.write(raw_error(error, path))
        self.transport.close()


def guarded_protocol(limits: DoorLimits) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class with the door's limits (uvicorn.Config(http=...))."""
    return type("GuardedHTTPProtocol", (_Door, H11Protocol), {"limits": limits})


def door_limits(config: ServerConfig) -> DoorLimits:
    return DoorLimits(config.header_timeout, config.body_timeout, config.max_connections)
