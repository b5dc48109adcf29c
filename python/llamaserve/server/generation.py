"""Running generations for HTTP handlers of every API: lease the model, submit, and always
cancel the engine stream, release the lease and record metrics at the end."""
from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from llamaserve.config import ServerConfig
from llamaserve.engine import AsyncTextStream, Prompt
from llamaserve.errors import RequestTimedOut
from llamaserve.generation_params import check_text
from llamaserve.hosting.host import ModelHost
from llamaserve.hosting.loaded import LoadedModel
from llamaserve.models import RegistryError
from llamaserve.server.metrics import ServerMetrics
from llamaserve.server.resumable import StreamSessions

if TYPE_CHECKING:
    from llamaserve.server.family import ApiFamily


LONG_PROMPT = 8192  # characters: about a millisecond of tokenizing


class Generation:
    """One submitted request: its model lease and its engine stream."""

    def __init__(self, service: GenerationService, model: LoadedModel, stream: AsyncTextStream) -> None:
        self.service = service
        self.model = model
        self.stream = stream
        self._closed = False
        self._deadline: asyncio.TimerHandle | None = None
        timeout = service.config.request_timeout
        if timeout > 0:
            self._deadline = asyncio.get_running_loop().call_later(timeout, self._time_out, timeout)

    def _time_out(self, timeout: float) -> None:
        self.stream.fail(RequestTimedOut(f"the request took longer than {timeout:g} s (--request-timeout)"))

    def close(self) -> None:
        """Cancel (a no-op once finished), release the lease, record metrics; idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._deadline is not None:
            self._deadline.cancel()
        self.stream.cancel()
        stats = self.stream.stats
        self.service.host.release(self.model)  # may close a swapped-out engine
        if stats["finish_reason"]:
            self.service.metrics.observe_generation(self.model.name, stats, self.stream.token_times)
        else:  # cancelled before the engine said it finished
            self.service.metrics.generations.labels(self.model.name, "cancelled").inc()


class GenerationService:
    def __init__(self, host: ModelHost, metrics: ServerMetrics, config: ServerConfig) -> None:
        self.host = host
        self.metrics = metrics
        self.config = config
        self.family: ApiFamily | None = None  # whose routes use this service (for_family)
        self.resumable = StreamSessions()  # shared by every family's copy (for_family)

    def for_family(self, family: ApiFamily) -> GenerationService:
        """This service as one API family's routes use it: its declaration says whether a
        model loads on first use and how strictly names are matched."""
        bound = copy.copy(self)
        bound.family = family
        return bound

    @property
    def loads_on_demand(self) -> bool:
        return self.family is not None and self.family.loads_on_demand and self.config.auto_load

    def served_name(self, name: str | None) -> str | None:
        """The name a request's model is looked up by: with lenient names and one model
        loaded, a name nothing else answers to means that model (None: the current one)."""
        host = self.host
        lenient = self.family is not None and self.family.lenient_names and not self.config.strict_model_names
        if name is None or not lenient or len(host.loaded) != 1 or host._find_loaded(name) is not None:
            return name
        try:
            host.registry.resolve(name, rescan=False)
        except RegistryError:
            return None
        return name

    @contextlib.asynccontextmanager
    async def lease(self, model_name: str | None) -> AsyncIterator[LoadedModel]:
        """The model a request names, held while the request is planned (loaded first with
        --auto-load); its generations take leases of their own."""
        model_name = self.served_name(model_name)
        await self.host.ensure(model_name, load=self.loads_on_demand)
        model = self.host.acquire(model_name)
        try:
            yield model
        finally:
            self.host.release(model)

    @staticmethod
    async def tokenized(model: LoadedModel, prompt: Prompt) -> Prompt:
        """A long text prompt as token ids, tokenized in a thread so that the event loop (and
        every stream on it) does not wait; a short one stays text, which is cheaper inline."""
        if not isinstance(prompt, str) or len(prompt) < LONG_PROMPT:
            return prompt
        return await asyncio.to_thread(model.engine.tokenize, check_text("prompt", prompt))

    def submit(self, leased: LoadedModel, prompt: Prompt, arguments: dict[str, Any]) -> Generation:
        """Submit to the model the request leased (the generation holds a lease of its own);
        engine errors (bad argument, prompt too long, queue full) are raised here, before any
        response starts."""
        model = self.host.hold(leased)
        try:
            stream = model.engine.astream(prompt, **arguments)
        except BaseException:
            self.host.release(model)
            raise
        return Generation(self, model, stream)

    def submit_by_name(self, model_name: str | None, prompt: Prompt, arguments: dict[str, Any]) -> Generation:
        """Lease the named model for one generation (a request that plans nothing on it)."""
        model = self.host.acquire(model_name)
        try:
            return self.submit(model, prompt, arguments)
        finally:
            self.host.release(model)
