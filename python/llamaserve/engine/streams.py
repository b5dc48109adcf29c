"""A request's token streams: TextStream for blocking readers (waiting releases the GIL) and
AsyncTextStream for asyncio, woken by one pump per engine and event loop."""
from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from llamaserve import _native
from llamaserve.engine.arguments import raise_if_failed
from llamaserve.errors import EngineError
from llamaserve.results import Completion, TokenLogprob, completion_of


class TextStream:
    """Text pieces of one request as they are generated; waiting releases the GIL.

    Leaving it unfinished (break, close(), garbage collection) cancels the request.
    """

    def __init__(self, native: _native.TokenStream) -> None:
        self._native = native
        self._text: list[str] = []

    def __iter__(self) -> TextStream:
        return self

    def __next__(self) -> str:
        try:
            piece = next(self._native)
        except StopIteration:
            raise_if_failed(self._native)
            raise
        self._text.append(piece)
        return piece

    def cancel(self) -> None:
        self._native.cancel()

    close = cancel

    def __enter__(self) -> TextStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()

    def __del__(self) -> None:
        self._native.cancel()

    @property
    def finished(self) -> bool:
        return self._native.finished

    def take_token_logprobs(self) -> list[TokenLogprob]:
        """With logprobs=N: (token, logprob, top N alternatives) per token since the last call."""
        return self._native.take_logprobs()

    def completion(self) -> Completion:
        """The whole result; consumes what is left of the stream first."""
        for _ in self:
            pass
        return completion_of("".join(self._text), self._native.stats())


class _Waiter:
    """Lets one async stream sleep until the pump says its native stream has news."""

    __slots__ = ("future", "ready")

    def __init__(self) -> None:
        self.future: asyncio.Future[None] | None = None
        self.ready = False

    def wake(self) -> None:
        self.ready = True
        if self.future is not None and not self.future.done():
            self.future.set_result(None)

    async def wait(self) -> None:
        if not self.ready:
            self.future = asyncio.get_running_loop().create_future()
            try:
                await self.future
            finally:
                self.future = None
        self.ready = False


class AsyncPump:
    """One per engine and event loop: the loop watches one pipe, and each wake-up hands
    every stream with news to its waiter. No thread per stream, no thread at all."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.notifier = _native.AsyncNotifier()
        self.waiters: dict[int, _Waiter] = {}
        loop.add_reader(self.notifier.fd, self._on_ready)

    def _on_ready(self) -> None:
        for stream_id in self.notifier.take_ready():
            waiter = self.waiters.get(stream_id)
            if waiter is not None:
                waiter.wake()

    def close(self) -> None:
        """Stop watching the pipe and wake every waiter: called once their streams have all
        ended (the native engine is closed), so each one sees its end. Any thread may call it."""
        if self.loop.is_closed():
            return

        def wake_all() -> None:
            self.loop.remove_reader(self.notifier.fd)
            for waiter in list(self.waiters.values()):
                waiter.wake()

        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            wake_all()
        else:
            self.loop.call_soon_threadsafe(wake_all)


class AsyncTextStream:
    """Async iterator of text pieces; breaking out of it or aclose() cancels the request."""

    def __init__(self, native: _native.TokenStream, pump: AsyncPump, progress: bool = False) -> None:
        """`progress`: the request asked for return_progress (only then are its reports read)."""
        self._native = native
        self._pump = pump
        self._reports_progress = progress
        self._waiter = _Waiter()
        pump.waiters[native.id] = self._waiter
        self._pieces: deque[str] = deque()
        self._progress: list[tuple[int, int, int, float]] = []  # with return_progress: not yet taken
        self._text: list[str] = []
        self._finished = False
        self._failure: EngineError | None = None

    def __aiter__(self) -> AsyncTextStream:
        return self

    async def _fill(self, progress: bool = False) -> bool:
        """Wait until some pieces (or, with `progress`, a progress report) are buffered; False
        once the stream is over."""
        while not (self._pieces or (progress and self._progress)) or self._failure is not None:
            if self._failure is not None:
                self._release()
                raise self._failure
            if self._finished:
                self._release()
                raise_if_failed(self._native)
                return False
            pieces, self._finished = self._native.drain()
            if self._reports_progress:  # reported before the pieces they precede
                self._progress += self._native.take_progress()
            self._pieces.extend(pieces)
            self._text.extend(pieces)
            if not pieces and not self._finished and not (progress and self._progress):
                await self._waiter.wait()
        return True

    async def next_pieces(self) -> list[str]:
        """Everything generated since the last call (at least one piece); [] at the end."""
        if not await self._fill():
            return []
        out = list(self._pieces)
        self._pieces.clear()
        return out

    async def next_update(self) -> tuple[list[str], list[tuple[int, int, int, float]]]:
        """What came since the last call: pieces and, with return_progress, the prompt's progress
        reports (total, cache, processed, ms); ([], []) at the end."""
        if not await self._fill(progress=True):
            return [], self.take_progress()
        out = list(self._pieces)
        self._pieces.clear()
        return out, self.take_progress()

    def take_progress(self) -> list[tuple[int, int, int, float]]:
        out, self._progress = self._progress, []
        return out

    async def __anext__(self) -> str:
        if not await self._fill():
            raise StopAsyncIteration
        return self._pieces.popleft()

    def _release(self) -> None:
        self._pump.waiters.pop(self._native.id, None)

    def cancel(self) -> None:
        """Stop generating; a coroutine awaiting this stream sees it end (as cancelled)."""
        self._native.cancel()
        self._waiter.wake()

    def fail(self, error: EngineError) -> None:
        """Cancel the request and raise `error` to whoever reads the stream next (a server's
        request timeout, say), instead of ending it quietly as cancelled."""
        self._failure = error
        self.cancel()

    async def aclose(self) -> None:
        self.cancel()

    def __del__(self) -> None:
        self._native.cancel()
        self._release()

    @property
    def stats(self) -> dict[str, Any]:
        return self._native.stats()

    @property
    def token_times(self) -> list[float]:
        """Seconds from submit at which each generated token came (its inter-token gaps)."""
        return self._native.token_times()

    @property
    def drained(self) -> bool:
        """The engine has finished and every piece has been read: what next_pieces() just
        returned was the end (the engine hands over a request's last piece with its end)."""
        return self._finished and not self._pieces and self._failure is None

    def take_token_logprobs(self) -> list[TokenLogprob]:
        """With logprobs=N: (token, logprob, top N alternatives) per token since the last call."""
        return self._native.take_logprobs()

    async def completion(self) -> Completion:
        async for _ in self:
            pass
        return completion_of("".join(self._text), self._native.stats())
