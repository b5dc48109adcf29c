"""How `serve` stops. The first Ctrl-C (or SIGTERM) stops accepting connections and lets the
requests in flight finish for --drain-timeout; then, or at a second Ctrl-C, every generation
still running is ended, so each open stream closes with its API's error event (and [DONE]
where the API has one) instead of being cut off; a third Ctrl-C forces the exit. The MCP
servers of /tools stop at the first signal: a tool call in flight answers its error at once.
uvicorn's own deadline comes later, so it never has to cancel a request's task (a
CancelledError traceback)."""
from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from types import FrameType

import uvicorn

log = logging.getLogger("llamaserve.server")

END_GRACE = 5.0  # seconds the ended streams get to write their last events, before uvicorn's deadline


class GracefulServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, drain_timeout: float,
                 end_generations: Callable[[], Awaitable[None]],
                 stop_at_once: Callable[[], Awaitable[None]] | None = None) -> None:
        config.timeout_graceful_shutdown = int(drain_timeout + END_GRACE) + 1
        super().__init__(config)
        self.drain_timeout = drain_timeout
        self._end_generations = end_generations
        self._stop_at_once = stop_at_once  # what need not drain (tool calls): stopped at the first signal
        self._stopping: asyncio.Future[None] | None = None
        self._interrupts = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ending: asyncio.Task[None] | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._interrupts += 1
        if self._interrupts == 1:
            super().handle_exit(sig, frame)  # stop accepting; uvicorn waits for the requests
            if self._loop is not None and self._stop_at_once is not None:
                self._loop.call_soon_threadsafe(self._stop_now)
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._loop.call_later, self.drain_timeout, self._end,
                                                "the drain time is over")
        elif self._interrupts == 2:
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._end, "interrupted again")
        else:
            super().handle_exit(sig, frame)  # uvicorn's forced exit

    def _stop_now(self) -> None:
        assert self._stop_at_once is not None
        self._stopping = asyncio.ensure_future(self._stop_at_once())

    def _end(self, why: str) -> None:
        if self._ending is None and self.server_state.tasks:
            log.warning("%s: ending %d request(s) still running (Ctrl-C again quits at once)", why,
                        len(self.server_state.tasks))
            self._ending = asyncio.ensure_future(self._end_generations())
