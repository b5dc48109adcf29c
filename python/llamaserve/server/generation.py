"""Running generations for HTTP handlers: lease the model, submit, collect or stream, record
metrics, and always cancel the engine stream and release the lease at the end."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from llamaserve.config import ServerConfig
from llamaserve.engine import AsyncTextStream
from llamaserve.errors import EngineError, QueueFull
from llamaserve.server import schemas, sse
from llamaserve.server.errors import invalid, to_api_error
from llamaserve.server.metrics import ServerMetrics
from llamaserve.server.runtime import LoadedModel, ModelHost


class Generation:
    """One submitted request: its model lease and its engine stream."""

    def __init__(self, service: GenerationService, model: LoadedModel, stream: AsyncTextStream) -> None:
        self.service = service
        self.model = model
        self.stream = stream
        self._closed = False

    def close(self) -> None:
        """Cancel (a no-op once finished), release the lease, record metrics; idempotent."""
        if self._closed:
            return
        self._closed = True
        self.stream.cancel()
        stats = self.stream.stats
        self.service.host.release(self.model)  # may close a swapped-out engine
        if stats["finish_reason"]:
            self.service.metrics.observe_generation(self.model.name, stats)
        else:  # cancelled before the engine said it finished
            self.service.metrics.generations.labels(self.model.name, "cancelled").inc()

    async def result(self) -> dict[str, Any]:
        try:
            completion = await self.stream.completion()
        finally:
            self.close()
        return schemas.completion_body(completion, self.model.name)


class _Events:
    """The SSE events of one generation; aclose() cleans up even if never iterated."""

    def __init__(self, generation: Generation) -> None:
        self.generation = generation
        self._iterator: Any = None

    def __aiter__(self) -> AsyncIterator[bytes]:
        self._iterator = self._iterate()
        return self._iterator

    async def _iterate(self) -> AsyncIterator[bytes]:
        stream = self.generation.stream
        token_event = sse.TextEvents(schemas.token_event(sse.TEXT_HOLE))
        try:
            while pieces := await stream.next_pieces():
                for piece in pieces:  # one write per event: naive clients read one per chunk
                    yield token_event(piece)
            event = schemas.final_event(stream.stats, self.generation.model.name)
        except EngineError as exc:  # failed mid-stream: the status line is long sent
            event = {"token": "", "finished": True, "finish_reason": "error", **to_api_error(exc).body()}
        self.generation.close()
        yield sse.event(event)

    async def aclose(self) -> None:
        if self._iterator is not None:
            await self._iterator.aclose()
        self.generation.close()


class GenerationService:
    def __init__(self, host: ModelHost, metrics: ServerMetrics, config: ServerConfig) -> None:
        self.host = host
        self.metrics = metrics
        self.config = config

    def submit(self, request: schemas.GenerateRequest) -> Generation:
        """Lease the model and submit; engine errors (bad argument, prompt too long, queue
        full) are raised here, before any response starts."""
        model = self.host.acquire(request.model)
        try:
            stream = model.engine.astream(
                request.prompt, **request.engine_arguments(self.config.default_max_tokens))
        except BaseException:
            self.host.release(model)
            raise
        return Generation(self, model, stream)

    async def complete(self, request: schemas.GenerateRequest) -> dict[str, Any]:
        return await self.submit(request).result()

    def open_stream(self, request: schemas.GenerateRequest) -> sse.EventStreamResponse:
        return sse.EventStreamResponse(_Events(self.submit(request)))

    async def batch(self, items: list[Any]) -> list[dict[str, Any]]:
        """Run every item concurrently; results keep the input order and a failing item
        gets its own error object. An item that finds the engine queue full waits for one
        of its siblings to finish, then tries again (like Engine.generate_batch)."""
        running = 0
        waiters: list[asyncio.Future[None]] = []

        def wake() -> None:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
            waiters.clear()

        async def one(item: Any) -> dict[str, Any]:
            nonlocal running
            try:
                request = schemas.parse_generate(item)
                if request.stream:
                    raise invalid("stream: not available inside a batch")
                while True:
                    try:
                        generation = self.submit(request)
                        break
                    except QueueFull:
                        if not running:  # the slots are other clients'
                            raise
                        waiter = asyncio.get_running_loop().create_future()
                        waiters.append(waiter)
                        await waiter
                running += 1
                try:
                    return await generation.result()
                finally:
                    running -= 1
                    wake()
            except Exception as exc:  # noqa: BLE001 - each item reports its own error
                return to_api_error(exc).body()

        return list(await asyncio.gather(*(one(item) for item in items)))
