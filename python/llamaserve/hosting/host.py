"""The models the server runs: load at start (in the background), find models by name,
load several side by side within a memory budget, and close engines only once no request
still uses them.

Names go through the model registry (file ids, aliases, the spec's names, the models
config). `current` is the model a request that names no model (or "default") gets: the
configured one, else the most recently used. Every use is a lease (acquire/release).
Failures are domain errors (llamaserve.hosting.errors, llamaserve.models' RegistryError).
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llamaserve.config import ServerConfig
from llamaserve.default_model import default_model_path
from llamaserve.engine import Engine
from llamaserve.errors import EngineError, ModelLoadError
from llamaserve.hosting.errors import HostingError, ModelLoading, ModelNotLoaded, NoModelLoaded
from llamaserve.hosting.eviction import over_the_count
from llamaserve.hosting.loaded import LoadedModel, LoadJob, same_file
from llamaserve.hosting.loads import Loads
from llamaserve.hosting.opening import Loader, open_model, wrap
from llamaserve.models import LruBudget, ModelEntry, ModelNotFound, ModelRegistry, RegistryError
from llamaserve.hosting.devices import device_notice, gpu_devices
from llamaserve.native import supports_gpu_offload

log = logging.getLogger("llamaserve.hosting")


class ModelHost:
    """Owns the engines the handlers use."""

    def __init__(self, config: ServerConfig, engine: Engine | None = None,
                 loader: Loader | None = None) -> None:
        self.config = config
        self.loader: Loader = loader or Engine.load
        self.registry = ModelRegistry(config.models_dir, config_file=config.models_config,
                                      allow_paths=config.allow_model_paths, cache_dir=config.quantize_cache,
                                      cache_limit=config.quantize_cache_bytes, default_model=config.model,
                                      probe_timeout=config.probe_timeout)
        self.budget = LruBudget(config.max_memory_bytes)
        self.loaded: dict[str, LoadedModel] = {}
        self.current: LoadedModel | None = None
        self.state = "loading"  # loading | ready | idle (all unloaded) | unhealthy | stopped
        self.error: str | None = None
        self.loads = Loads(self)
        self._retired: list[LoadedModel] = []
        self.on_register: list[Callable[[LoadedModel], None]] = []  # told of each model loaded
        # The model unloaded for being idle, while none is loaded (llama-server's sleep): its engine
        # is closed, its counters still read (what /metrics shows meanwhile).
        self.asleep: LoadedModel | None = None
        self._idle_task: asyncio.Task[None] | None = None
        if engine is not None:
            path = Path(engine.metadata.get("path") or "model.gguf")
            model = wrap(engine, path, self.registry, owned=False, n_gpu_layers=config.n_gpu_layers,
                         chat_template=config.template_override, **self._served_names())
            self.loaded[model.name] = self.current = model
            self.state = "ready"

    # -- names --------------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        return self.current.name if self.current else "none"

    def model_files(self) -> list[Path]:
        """The readable GGUF files the registry lists (models folder, config, default)."""
        return [e.path for e in self.registry.scan() if e.ok]

    def _served_names(self) -> dict[str, Any]:
        """The server's model under --served-model-name: the first names it, all answer."""
        names = tuple(n.strip() for n in self.config.served_model_name)
        return {"name": names[0], "also": names[1:]} if names else {}

    def listed_names(self, model: LoadedModel) -> tuple[str, ...]:
        """The names /v1/models lists a model under: every served name for the server's model."""
        names = tuple(n.strip() for n in self.config.served_model_name)
        return names if names and model.name == names[0] else (model.name,)

    def all_models(self) -> list[LoadedModel]:
        """Loaded models, and retired ones that still finish requests."""
        return [*self.loaded.values(), *self._retired]

    def configured_entry(self) -> ModelEntry:
        """The model the server starts with: --model (a file or a name), else the default."""
        model = self.config.model
        if model is None:
            return self.registry.entry_for_path(default_model_path())
        path = Path(model).expanduser()
        if path.is_file():  # the operator's --model may be any file
            return self.registry.entry_for_path(path)
        try:
            return self.registry.resolve(model)
        except RegistryError:  # not found, or a path where a name belongs
            # /health shows this: the name as given, not where the folders are
            raise ModelLoadError(f"{model!r} is neither a file nor a model in the models folder") from None

    def entry_for_load(self, name: str) -> ModelEntry:
        """The registry entry a load of `name` means."""
        if name.strip().lower() == "default":
            try:
                return self.configured_entry()
            except ModelLoadError as exc:
                raise ModelNotFound("model: the default model is not available", str(exc)) from None
        try:
            return self.registry.resolve(name)
        except ModelNotFound:
            loaded = self._find_loaded(name)  # e.g. a quantized copy from the cache
            if loaded is None:
                raise
            return self.registry.entry_for_path(loaded.path)

    def _find_loaded(self, name: str) -> LoadedModel | None:
        for model in sorted(self.loaded.values(), key=lambda m: -m.last_used):
            if model.answers_to(name):
                return model
        return None

    # -- leases -------------------------------------------------------------------------

    def _route(self, name: str | None) -> LoadedModel:
        if name is None or name.strip().lower() == "default":
            if self.current is None:
                if self.state == "loading" or self.loads.jobs:
                    raise ModelLoading("the model is still loading", "retry shortly")
                raise NoModelLoaded("no model is loaded",
                                    self.error or "load one with POST /api/v1/models/{name}/load")
            return self.current
        model = self._find_loaded(name)
        if model is not None:
            return model
        loading = self.loads.names()
        still_loading = ModelLoading(f"model: {name[:64]!r} is still loading", "retry shortly")
        if name.strip().lower() in loading or self.state == "loading":
            # a quantized copy not yet in the cache, or the server's start-up model
            raise still_loading
        entry = self.registry.resolve(name, rescan=False)  # ensure() rescanned, off the loop
        if entry.id in loading:
            raise still_loading
        for model in self.loaded.values():
            if same_file(model.path, entry.path):
                return model
        raise ModelNotLoaded(f"model: {name[:64]!r} is not loaded", "Please call the load endpoint first")

    def acquire(self, name: str | None) -> LoadedModel:
        model = self._route(name)
        model.active += 1
        model.last_used = time.monotonic()
        return model

    def hold(self, model: LoadedModel) -> LoadedModel:
        """Another lease on a model a request already leased (each of its generations takes one)."""
        model.active += 1
        model.last_used = time.monotonic()
        return model

    def release(self, model: LoadedModel) -> None:
        model.active -= 1
        model.last_used = time.monotonic()
        if model.retired and model.active == 0:
            self._close(model)

    async def ensure(self, name: str | None, load: bool = False) -> None:
        """Before acquire(): for a name no loaded model answers to, rescan the models folder
        in a thread (a file dropped in since is found, and the event loop does not wait on
        the disk); with `load` (the API loads on demand), load that model too. acquire()
        reports what is wrong."""
        if name is not None and name.strip().lower() != "default" and self._find_loaded(name) is None:
            await asyncio.to_thread(self._scan_quietly)
        if not load:
            return
        try:
            self._route(name)
        except (ModelNotLoaded, NoModelLoaded, ModelLoading):
            _, job = self.begin_load(name or "default")
            if job is None or job.task is None:
                return
            try:  # waits --load-wait at most; the load goes on, and the request is told to retry
                await asyncio.wait_for(asyncio.shield(job.task), self.config.load_wait)
            except asyncio.TimeoutError:
                raise ModelLoading(f"model: {(name or 'default')[:64]!r} is still loading",
                                   "retry after the time in Retry-After") from None
        except (HostingError, RegistryError):
            pass  # acquire() reports it

    @property
    def active_requests(self) -> int:
        return sum(m.active for m in self.all_models())

    # -- loading ------------------------------------------------------------------------

    def gpu_layers(self, prefer_gpu: bool) -> int:
        if prefer_gpu:
            return -1 if supports_gpu_offload() else 0
        return self.config.n_gpu_layers

    async def start(self) -> None:
        """Load the configured model unless an engine was handed in; never raises."""
        if (notice := device_notice(self.config.n_gpu_layers)) is not None:
            asked_in_vain = self.config.n_gpu_layers != 0 and not gpu_devices()
            log.log(logging.WARNING if asked_in_vain else logging.INFO, notice)
        if self.config.idle_unload > 0 and self._idle_task is None:
            self._idle_task = asyncio.create_task(self._unload_idle())
        await asyncio.to_thread(self._scan_quietly)  # the first listing then costs nothing
        if self.current is not None:
            return
        entry = None
        try:
            entry = await asyncio.to_thread(self.configured_entry)
            if entry.error is not None:
                raise ModelLoadError(f"{entry.path.name}: {entry.error}")
            model = await open_model(self.loader, self.config, self.registry, entry.path,
                                     self.config.n_gpu_layers, entry, **self._served_names())
        except (EngineError, OSError, RegistryError) as exc:
            log.error("could not load the model: %s", exc)
            # /health is open to anyone: say what failed, not where files live.
            text = f"{exc.message}: {exc.details}" if isinstance(exc, RegistryError) else str(exc)
            if entry is not None:
                text = text.replace(str(entry.path.parent), "")
            self.state, self.error = "unhealthy", text
            return
        if self.state == "stopped":
            model.engine.close()
            return
        self.register(model)

    def _scan_quietly(self) -> None:
        try:
            self.registry.scan()
        except Exception as exc:  # noqa: BLE001 - a listing problem must not stop the server
            log.warning("could not scan the models folder: %s", exc)

    def begin_load(self, name: str, quantization: str | None = None, prefer_gpu: bool = False,
                   allow_requantize: bool = False) -> tuple[LoadedModel | None, LoadJob | None]:
        return self.loads.begin(name, quantization, prefer_gpu, allow_requantize)

    async def load(self, name: str, quantization: str | None = None, prefer_gpu: bool = False,
                   allow_requantize: bool = False) -> tuple[LoadedModel, bool]:
        """Load `name` (waiting for it); returns the model and whether anything changed."""
        model, job = self.begin_load(name, quantization, prefer_gpu, allow_requantize)
        if model is not None:
            return model, False
        assert job is not None and job.task is not None
        return await asyncio.shield(job.task), True

    def register(self, model: LoadedModel) -> None:
        old = self.loaded.get(model.name)
        if old is not None:
            self.retire(old)
        self.loaded[model.name] = model
        for victim in over_the_count(self.loaded.values(), model, self.config.max_models):
            log.info("retiring %s: --max-models %d", victim.name, self.config.max_models)
            self.retire(victim)
        if self.current is None or self.current.retired:
            self.current = model
        self.state, self.error = "ready", None
        self.asleep = None
        for listener in self.on_register:
            listener(model)

    # -- unloading ----------------------------------------------------------------------

    def retire(self, model: LoadedModel) -> None:
        """Take a model out of service; it closes once its running requests finish."""
        if self.loaded.get(model.name) is model:
            del self.loaded[model.name]
        model.retired = True
        if model.active:
            self._retired.append(model)
        else:
            self._close(model)
        if self.current is model:
            rest = sorted(self.loaded.values(), key=lambda m: -m.last_used)
            self.current = rest[0] if rest else None
            if self.current is None and self.state == "ready":
                self.state = "idle"

    def unload(self, name: str) -> tuple[str, LoadedModel | None]:
        """Retire the model `name` means: (its name, the model, or None if it was not loaded)."""
        model = self._find_loaded(name)
        if model is None:
            entry = self.registry.resolve(name)
            model = next((m for m in self.loaded.values() if same_file(m.path, entry.path)), None)
            if model is None:
                return entry.id, None
        self.retire(model)
        return model.name, model

    def idle_limit(self, model: LoadedModel) -> float | None:
        """Seconds `model` may stay idle before it is unloaded; None: never."""
        limit = model.keep_alive if model.keep_alive is not None else self.config.idle_unload or None
        return None if limit is None or math.isinf(limit) else limit

    def keep_alive(self, model: LoadedModel, seconds: float) -> None:
        """A client's keep-alive for `model` (0: unload it once idle; infinity: never)."""
        model.keep_alive = seconds
        if self._idle_task is None and self.state != "stopped":
            self._idle_task = asyncio.create_task(self._unload_idle())

    async def _unload_idle(self) -> None:
        while True:
            limits = [limit for m in self.loaded.values() if (limit := self.idle_limit(m)) is not None]
            await asyncio.sleep(max(0.05, min(1.0, min(limits, default=4.0) / 4)))
            now = time.monotonic()
            for model in list(self.loaded.values()):
                limit = self.idle_limit(model)
                if model.owned and model.active == 0 and limit is not None and now - model.last_used >= limit:
                    log.info("unloading %s: idle for %.0fs", model.name, now - model.last_used)
                    self.retire(model)
                    if self.current is None:
                        self.asleep = model

    def _close(self, model: LoadedModel) -> None:
        if model in self._retired:
            self._retired.remove(model)
        if model.owned:
            model.engine.close()

    async def end_generations(self) -> None:
        """Shutting down past the drain: close the engines we loaded, so that every request
        still running ends (as cancelled: each open stream ends with its API's error event)."""
        for model in self.all_models():
            if model.owned:
                await asyncio.to_thread(model.engine.close)  # joins the scheduler thread

    async def close(self, drain_timeout: float) -> None:
        """Wait (bounded) for requests still running, then close the engines we loaded."""
        if self._idle_task is not None:
            self._idle_task.cancel()
            await asyncio.gather(self._idle_task, return_exceptions=True)
        self.state = "stopped"
        await self.loads.finish()
        deadline = time.monotonic() + drain_timeout
        while self.active_requests and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for model in self.all_models():
            model.retired = True
            self._close(model)
        self.loaded.clear()
        self.current = None
