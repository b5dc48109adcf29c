"""Native API requests as engine work: a generation collected or streamed as SSE events, a
batch run concurrently through the slots, a load that answers 202 when it outlasts
--load-wait."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from llamaserve.errors import EngineError, QueueFull
from llamaserve.hosting.loaded import LoadedModel
from llamaserve.server import sse
from llamaserve.server.errors import invalid, to_api_error
from llamaserve.server.generation import Generation, GenerationService
from llamaserve.server.native import protocol
from llamaserve.server.native.catalog import job_status


class NativeEvents:
    """The SSE events of one generation; aclose() cleans up even if never iterated."""

    def __init__(self, generation: Generation) -> None:
        self.generation = generation
        self._iterator: Any = None

    def __aiter__(self) -> AsyncIterator[bytes]:
        self._iterator = self._iterate()
        return self._iterator

    async def _iterate(self) -> AsyncIterator[bytes]:
        stream = self.generation.stream
        token_event = sse.TextEvents(protocol.token_event(sse.TEXT_HOLE))
        last = ""
        try:
            # What came together goes as one event in one write (naive clients, the spec's example,
            # parse a read as one event); what came with the end goes out with it, as the spec's
            # stream shows (a step that verified drafted tokens may emit several and finish).
            while pieces := await stream.next_pieces():
                if stream.drained:
                    last = "".join(pieces)
                    break
                yield token_event("".join(pieces))
            event = protocol.final_event(stream.stats, self.generation.model.name, last)
        except EngineError as exc:  # failed mid-stream: the status line is long sent
            event = {"token": last, "finished": True, "finish_reason": "error", **to_api_error(exc).body()}
        self.generation.close()
        yield sse.event(event)

    async def aclose(self) -> None:
        if self._iterator is not None:
            await self._iterator.aclose()
        self.generation.close()


class NativeService:
    def __init__(self, service: GenerationService) -> None:
        self.service = service
        self.defaults = service.config.request_defaults

    def submit(self, request: protocol.GenerateRequest) -> Generation:
        return self.service.submit_by_name(request.model, request.prompt,
                                   request.engine_arguments(self.defaults))

    async def complete(self, request: protocol.GenerateRequest) -> dict[str, Any]:
        return await self._collect(self.submit(request))

    @staticmethod
    async def _collect(generation: Generation) -> dict[str, Any]:
        try:
            completion = await generation.stream.completion()
        finally:
            generation.close()
        return protocol.completion_body(completion, generation.model.name)

    def open_stream(self, request: protocol.GenerateRequest) -> sse.EventStreamResponse:
        return sse.EventStreamResponse(NativeEvents(self.submit(request)))

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
                request = protocol.parse_generate(item)
                if request.stream:
                    raise invalid("stream: not available inside a batch")
                async with self.service.lease(request.model) as model:  # its prediction and grammar off the loop
                    request = replace(request, generation=await model.engine.aprepare(request.generation))
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
                    return await self._collect(generation)
                finally:
                    running -= 1
                    wake()
            except Exception as exc:  # noqa: BLE001 - each item reports its own error
                return to_api_error(exc).body()

        return list(await asyncio.gather(*(one(item) for item in items)))

    async def load(self, name: str, options: protocol.LoadRequest) -> tuple[LoadedModel | None, str, dict[str, Any]]:
        """Start a load and wait up to --load-wait: (the model, "loaded" or "already_loaded",
        {}) or (None, "loading", the job's progress) when it goes on in the background."""
        model, job = self.service.host.begin_load(name, options.quantization, options.prefer_gpu,
                                                  options.allow_requantize)
        if job is None:
            return model, "already_loaded", {}
        assert job.task is not None
        done, _ = await asyncio.wait({job.task}, timeout=self.service.config.load_wait)
        if not done:
            return None, "loading", job_status(job)
        return job.task.result(), "loaded", {}
