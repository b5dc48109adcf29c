"""The event loop Engine.chat's blocking calls run on: one thread per Engine, started on the
first call. Calls from several threads interleave on it, so they batch in the engine."""
from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

from llamaserve.errors import RequestCancelled

T = TypeVar("T")


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="llamaserve-chat", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run on the loop and wait; an interrupted wait (Ctrl-C) cancels the coroutine."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise RequestCancelled("the engine was closed while this call ran") from None
        except BaseException:
            future.cancel()
            raise

    def iterate(self, items: AsyncIterator[T]) -> Iterator[T]:
        """An async iterator read from a blocking one; leaving early closes it."""
        try:
            while True:
                try:
                    yield self.run(items.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            if not self.loop.is_closed():
                self.run(items.aclose())  # type: ignore[attr-defined]

    def close(self) -> None:
        """Cancel what still runs (its callers get RequestCancelled), then end the thread."""
        if self.loop.is_closed():
            return

        async def cancel_the_rest() -> None:
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(cancel_the_rest(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()
