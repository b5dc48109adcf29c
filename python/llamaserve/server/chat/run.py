"""Running the choices of one request on its leased model: an engine stream per choice, read
together as one sequence of events."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from llamaserve.engine import AsyncTextStream, Prompt, failure_of
from llamaserve.errors import EngineError, RequestCancelled
from llamaserve.hosting.loaded import LoadedModel
from llamaserve.results import TokenLogprob

RunEvent = tuple[int, list[str], list[TokenLogprob], "dict[str, Any] | None"]


def ended(stats: dict[str, Any]) -> str:
    """How a choice ended, "stop" or "length"; an engine that cancelled the request (the
    server shutting down) or failed it raises: those are errors, not quiet stops."""
    reason = stats.get("finish_reason")
    if reason in ("stop", "length"):
        return reason
    if reason == "cancelled":
        raise RequestCancelled("the request was cancelled before it finished (the server is shutting down)")
    raise failure_of(stats) or EngineError("generation failed")


class Submitted(Protocol):
    stream: AsyncTextStream

    def close(self) -> None: ...


class Service(Protocol):
    """What submits a choice: the server's GenerationService (a lease, metrics, a deadline),
    or an in-process engine's (local_chat)."""

    def submit(self, model: LoadedModel, prompt: Prompt, arguments: dict[str, Any]) -> Submitted: ...


class Run:
    """The engine streams of one request's choices. Submitting all of them happens before
    any response starts, so a full queue or an over-long prompt fails the whole request."""

    def __init__(self, service: Service, model: LoadedModel,
                 prompts: Sequence[Prompt], arguments: Sequence[dict[str, Any]]) -> None:
        self.generations: list[Submitted] = []
        self.logprobs = any(a.get("logprobs") is not None for a in arguments)
        # return_progress: each choice's prompt progress reports not yet taken (take_progress)
        self.progress: list[list[tuple[int, int, int, float]]] = [[] for _ in arguments]
        try:
            for prompt, args in zip(prompts, arguments, strict=True):
                self.generations.append(service.submit(model, prompt, args))
        except BaseException:  # QueueFull, ContextLengthExceeded, a bad argument...
            self.close()
            raise

    def close(self) -> None:
        for g in self.generations:
            g.close()

    def stop(self, choice: int) -> None:
        """End one choice early (its reader needs nothing more); it still reports its stats."""
        self.generations[choice].stream.cancel()

    def take_progress(self, choice: int) -> list[tuple[int, int, int, float]]:
        out, self.progress[choice] = self.progress[choice], []
        return out

    async def _next(self, i: int, stream: AsyncTextStream) -> list[str] | None:
        """Choice i's new pieces (progress reports kept aside); None at its end."""
        pieces, progress = await stream.next_update()
        self.progress[i] += progress
        return pieces if pieces or progress else None

    async def events(self) -> AsyncIterator[RunEvent]:
        """(choice, new text pieces, new logprob records, stats once finished else None),
        across all choices as they come; an event without pieces brings progress reports."""
        streams = [g.stream for g in self.generations]
        if len(streams) == 1:  # the usual n=1: no task and no asyncio.wait per token
            async for event in self._single_events(streams[0]):
                yield event
            return
        pending: dict[asyncio.Future[list[str] | None], int] = {
            asyncio.ensure_future(self._next(i, s)): i for i, s in enumerate(streams)}
        try:
            while pending:
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for future in sorted(done, key=lambda f: pending[f]):
                    i = pending.pop(future)
                    pieces = future.result()
                    records = streams[i].take_token_logprobs() if self.logprobs else []
                    if pieces is not None:
                        pending[asyncio.ensure_future(self._next(i, streams[i]))] = i
                        yield i, pieces, records, None
                    else:
                        self.generations[i].close()
                        yield i, [], records, streams[i].stats
        finally:
            for future in pending:
                future.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            self.close()

    async def _single_events(self, stream: Any) -> AsyncIterator[RunEvent]:
        try:
            while (pieces := await self._next(0, stream)) is not None:
                yield 0, pieces, stream.take_token_logprobs() if self.logprobs else [], None
            records = stream.take_token_logprobs() if self.logprobs else []
            self.generations[0].close()
            yield 0, [], records, stream.stats
        finally:
            self.close()
