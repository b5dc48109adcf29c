"""The models the server runs: load at start (in the background), find models by name,
load several side by side within a memory budget, and close engines only once no request
still uses them.

Names go through the registry of llamaserve.models (file ids, aliases, the spec's names, the
models config); loads may quantize first (into the registry's cache); a load that takes long
is a job whose progress the listing shows. `current` is the model a request that names no
model (or "default") gets: the configured one, else the most recently used.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llamaserve import _native
from llamaserve import models as registry_models
from llamaserve.config import ServerConfig
from llamaserve.default_model import default_model_path
from llamaserve.engine import Engine
from llamaserve.errors import EngineError, ModelLoadError
from llamaserve.models import LruBudget, MemoryEstimate, ModelEntry, ModelRegistry, RegistryError, Resident
from llamaserve.server.errors import ApiError
from llamaserve.server.schemas import gigabytes

log = logging.getLogger("llamaserve.server")

Loader = Callable[..., Engine]  # loader(path, **engine options) -> Engine


@dataclass(eq=False)
class LoadedModel:
    name: str
    path: Path
    engine: Engine
    owned: bool  # the server loaded it, so the server closes it
    n_gpu_layers: int = 0
    load_time: float = 0.0
    active: int = 0  # requests using it now
    retired: bool = False
    aliases: frozenset[str] = field(default_factory=frozenset)
    quantization: str | None = None
    memory: MemoryEstimate | None = None  # weights as loaded, KV cache and compute buffers
    last_used: float = field(default_factory=time.monotonic)
    chat_template: str | None = None  # the models config's override (a built-in name or Jinja)

    def answers_to(self, name: str) -> bool:
        return name.lower() in self.aliases

    @property
    def device(self) -> str:
        return "gpu" if self.n_gpu_layers != 0 and _native.supports_gpu_offload() else "cpu"

    @property
    def memory_bytes(self) -> int:
        if self.memory is not None:
            return self.memory.total
        return int(self.engine.metadata.get("weights_size") or 0)

    def info(self) -> dict[str, Any]:
        meta = self.engine.metadata
        return {
            "name": self.name,
            "format": "gguf",
            "size": gigabytes(meta.get("file_size") or _file_size(self.path)),
            "loaded": True,
            "memory_usage": gigabytes(self.memory_bytes),
            "memory": self.memory.as_dict() if self.memory else {"weights": meta.get("weights_size") or 0},
            "quantization": self.quantization,
            "device": self.device,
            "n_gpu_layers": self.n_gpu_layers,
            "architecture": meta.get("architecture"),
            "description": meta.get("description"),
            "n_params": meta.get("n_params"),
            "n_ctx": self.engine.n_ctx,
            "slots": self.engine.n_parallel,
            "active_requests": self.active,
        }


@dataclass(eq=False)
class LoadJob:
    """A load in progress (quantizing first, when asked to): what the listing shows."""
    key: str
    name: str
    reserved: int  # estimated bytes, counted against the budget until it finishes
    phase: str = "queued"  # quantizing | loading
    progress: float = 0.0
    started: float = field(default_factory=time.monotonic)
    task: asyncio.Task[LoadedModel] | None = None

    def status(self) -> dict[str, Any]:
        return {"name": self.name, "status": "loading", "phase": self.phase,
                "progress": round(self.progress, 3), "elapsed": round(time.monotonic() - self.started, 3)}


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _same_file(a: Path, b: Path) -> bool:
    """The same model file: links are models of their own (a folder may name one file twice)."""
    return a.absolute() == b.absolute()


def _api_error(exc: RegistryError) -> ApiError:
    return ApiError(exc.status, exc.code, exc.message, exc.details)


class ModelHost:
    """Owns the engines the handlers use; every use is a lease (acquire/release)."""

    def __init__(self, config: ServerConfig, engine: Engine | None = None,
                 loader: Loader | None = None) -> None:
        self.config = config
        self.loader: Loader = loader or Engine.load
        self.registry = ModelRegistry(config.models_dir, config_file=config.models_config,
                                      allow_paths=config.allow_model_paths, cache_dir=config.quantize_cache,
                                      default_model=config.model)
        self.budget = LruBudget(config.max_memory_bytes)
        self.loaded: dict[str, LoadedModel] = {}
        self.current: LoadedModel | None = None
        self.state = "loading"  # loading | ready | idle (all unloaded) | unhealthy | stopped
        self.error: str | None = None
        self.load_errors: dict[str, str] = {}  # name -> why its last background load failed
        self._retired: list[LoadedModel] = []
        self._jobs: dict[str, LoadJob] = {}
        self._idle_task: asyncio.Task[None] | None = None
        if engine is not None:
            path = Path(engine.metadata.get("path") or "model.gguf")
            model = self._wrap(engine, path, owned=False, n_gpu_layers=config.n_gpu_layers)
            self.loaded[model.name] = self.current = model
            self.state = "ready"

    # -- names --------------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        return self.current.name if self.current else "none"

    def model_files(self) -> list[Path]:
        """The readable GGUF files the registry lists (models folder, config, default)."""
        return [e.path for e in self.registry.scan() if e.ok]

    def _resolve(self, name: str) -> ModelEntry:
        try:
            return self.registry.resolve(name)
        except RegistryError as exc:
            raise _api_error(exc) from None

    def configured_path(self) -> Path:
        """The model the server starts with: --model (a file or a name), else the default."""
        return self._configured_entry().path

    def _configured_entry(self) -> ModelEntry:
        model = self.config.model
        if model is None:
            path = default_model_path()
            return self.registry.entry_for_path(path)
        path = Path(model).expanduser()
        if path.is_file():  # the operator's --model may be any file
            return self.registry.entry_for_path(path)
        try:
            return self.registry.resolve(model)
        except RegistryError:
            raise ModelLoadError(f"model {path.name!r} is neither a file nor a model in the models folder") from None

    def _find_loaded(self, name: str) -> LoadedModel | None:
        for model in sorted(self.loaded.values(), key=lambda m: -m.last_used):
            if model.answers_to(name):
                return model
        return None

    # -- leases -------------------------------------------------------------------------

    def _route(self, name: str | None) -> LoadedModel:
        if name is None or name.strip().lower() == "default":
            current = self.current
            if current is None:
                if self.state == "loading" or self._jobs:
                    raise ApiError(503, "MODEL_LOADING", "the model is still loading", "retry shortly",
                                   {"Retry-After": "1"})
                raise ApiError(503, "MODEL_NOT_LOADED", "no model is loaded",
                               self.error or "load one with POST /api/v1/models/{name}/load")
            return current
        model = self._find_loaded(name)
        if model is not None:
            return model
        loading = {job.name for job in self._jobs.values()}
        still_loading = ApiError(503, "MODEL_LOADING", f"model: {name[:64]!r} is still loading",
                                 "retry shortly", {"Retry-After": "1"})
        if name.strip().lower() in loading or self.state == "loading":
            # a quantized copy not yet in the cache, or the server's start-up model
            raise still_loading
        entry = self._resolve(name)
        if entry.id in loading:
            raise still_loading
        for model in self.loaded.values():
            if _same_file(model.path, entry.path):
                return model
        raise ApiError(409, "MODEL_NOT_LOADED", f"model: {name[:64]!r} is not loaded",
                       "Please call the load endpoint first")

    def acquire(self, name: str | None) -> LoadedModel:
        model = self._route(name)
        model.active += 1
        model.last_used = time.monotonic()
        return model

    def release(self, model: LoadedModel) -> None:
        model.active -= 1
        model.last_used = time.monotonic()
        if model.retired and model.active == 0:
            self._close(model)

    async def ensure(self, name: str | None) -> None:
        """With --auto-load: load the model a request names if it is not loaded (a no-op
        otherwise; acquire() then reports what is wrong)."""
        if not self.config.auto_load:
            return
        try:
            self._route(name)
            return
        except ApiError as exc:
            if exc.code not in ("MODEL_NOT_LOADED", "MODEL_LOADING"):
                return
        await self.load(name or "default")

    @property
    def active_requests(self) -> int:
        return sum(m.active for m in [*self.loaded.values(), *self._retired])

    # -- loading ------------------------------------------------------------------------

    def _options(self, n_gpu_layers: int, entry: ModelEntry | None = None) -> dict[str, Any]:
        c = self.config
        settings = self.registry.settings_for(entry) if entry is not None else self.registry.defaults
        return {"n_ctx": settings.n_ctx or c.n_ctx, "n_parallel": settings.n_parallel or c.n_parallel,
                "n_threads": c.n_threads, "n_gpu_layers": n_gpu_layers, "max_queue": c.max_queue}

    def _gpu_layers(self, prefer_gpu: bool) -> int:
        if prefer_gpu:
            return -1 if _native.supports_gpu_offload() else 0
        return self.config.n_gpu_layers

    def _wrap(self, engine: Engine, path: Path, *, owned: bool, n_gpu_layers: int,
              load_time: float = 0.0, entry: ModelEntry | None = None, name: str | None = None,
              also: tuple[str, ...] = ()) -> LoadedModel:
        meta = engine.metadata
        try:
            info = entry.info if entry is not None and entry.info is not None else registry_models.read_gguf_info(path)
        except registry_models.GGUFFormatError:
            info = None
        # What llama.cpp actually allocated, summed over devices and host.
        use = engine.memory_use
        memory = MemoryEstimate(sum(b["model"] for b in use), sum(b["context"] for b in use),
                                sum(b["compute"] for b in use))
        name = name or (entry.id if entry is not None else path.stem)
        names = {name, path.stem, meta.get("name") or "", *also}
        if entry is not None:
            names.update(entry.names())
        settings = self.registry.settings_for(entry) if entry is not None else None
        return LoadedModel(name=name, path=path, engine=engine, owned=owned, n_gpu_layers=n_gpu_layers,
                           load_time=load_time, aliases=frozenset(a.lower() for a in names if a),
                           quantization=info.quantization if info is not None else None, memory=memory,
                           chat_template=settings.chat_template if settings else None)

    async def _load(self, path: Path, n_gpu_layers: int, entry: ModelEntry | None = None, *,
                    name: str | None = None, also: tuple[str, ...] = ()) -> LoadedModel:
        started = time.perf_counter()
        engine = await asyncio.to_thread(self.loader, path, **self._options(n_gpu_layers, entry))
        elapsed = time.perf_counter() - started
        log.info("loaded %s in %.1fs", path.name, elapsed)
        return self._wrap(engine, path, owned=True, n_gpu_layers=n_gpu_layers, load_time=elapsed,
                          entry=entry, name=name, also=also)

    async def start(self) -> None:
        """Load the configured model unless an engine was handed in; never raises."""
        if self.config.idle_unload > 0 and self._idle_task is None:
            self._idle_task = asyncio.create_task(self._unload_idle())
        await asyncio.to_thread(self._scan_quietly)  # the first listing then costs nothing
        if self.current is not None:
            return
        entry = None
        try:
            entry = await asyncio.to_thread(self._configured_entry)
            if entry.error is not None:
                raise ModelLoadError(f"{entry.path.name}: {entry.error}")
            model = await self._load(entry.path, self.config.n_gpu_layers, entry)
        except (EngineError, OSError) as exc:
            log.error("could not load the model: %s", exc)
            # /health is open to anyone: say what failed, not where files live.
            text = str(exc)
            if entry is not None:
                text = text.replace(str(entry.path.parent), "")
            self.state, self.error = "unhealthy", text
            return
        if self.state == "stopped":
            model.engine.close()
            return
        self._register(model)

    def _scan_quietly(self) -> None:
        try:
            self.registry.scan()
        except Exception as exc:  # noqa: BLE001 - a listing problem must not stop the server
            log.warning("could not scan the models folder: %s", exc)

    def resolve(self, name: str, quantization: str | None) -> Path:
        """The file a load of `name` (at `quantization`) means; 4xx ApiErrors otherwise."""
        entry = self._entry_for_load(name)
        if quantization:
            try:
                target, qtype = self.registry.for_quantization(entry, quantization)
            except RegistryError as exc:
                raise _api_error(exc) from None
            return target.path if qtype is None else self.registry.quantized_path(target, qtype)
        return entry.path

    def _entry_for_load(self, name: str) -> ModelEntry:
        if name.strip().lower() == "default":
            try:
                return self._configured_entry()
            except ModelLoadError as exc:
                raise ApiError(404, "MODEL_NOT_FOUND", "model: the default model is not available",
                               str(exc)) from None
        try:
            return self.registry.resolve(name)
        except registry_models.ModelNotFound as exc:
            loaded = self._find_loaded(name)  # e.g. a quantized copy from the cache
            if loaded is None:
                raise _api_error(exc) from None
            return self.registry.entry_for_path(loaded.path)
        except RegistryError as exc:
            raise _api_error(exc) from None

    def begin_load(self, name: str, quantization: str | None = None, prefer_gpu: bool = False,
                   allow_requantize: bool = False) -> tuple[LoadedModel | None, LoadJob | None]:
        """Check a load request and start it: (the model, None) when it is already loaded,
        else (None, the job). Bad names, quantizations and budgets fail here, at once."""
        entry = self._entry_for_load(name)
        if entry.error is not None:
            raise ApiError(500, "MODEL_LOAD_FAILED", f"failed to load model {name[:64]!r}",
                           f"{entry.path.name}: {entry.error}")
        n_gpu_layers = self._gpu_layers(prefer_gpu)
        target, qtype = entry, None
        if quantization:
            try:
                target, qtype = self.registry.for_quantization(entry, quantization,
                                                               allow_requantize=allow_requantize)
            except RegistryError as exc:
                raise _api_error(exc) from None
        path = self.registry.quantized_path(target, qtype) if qtype else target.path
        for model in self.loaded.values():
            if _same_file(model.path, path) and model.n_gpu_layers == n_gpu_layers:
                return model, None
        key = f"{path.absolute()}|{n_gpu_layers}"
        if key in self._jobs:
            return None, self._jobs[key]
        options = self._options(n_gpu_layers, entry)
        estimate = self._estimate(target, qtype, options)
        model_name = target.id if qtype is None else f"{entry.base}.{qtype.lower()}"
        self._make_room(model_name, estimate)
        job = LoadJob(key, model_name, estimate)
        also = (name.lower(),) if name.strip().lower() != "default" else ()
        job.task = asyncio.create_task(self._run(job, entry, target, qtype, n_gpu_layers, allow_requantize, also))
        job.task.add_done_callback(self._job_done)
        self._jobs[key] = job
        self.load_errors.pop(model_name, None)
        return None, job

    def _estimate(self, target: ModelEntry, qtype: str | None, options: dict[str, Any]) -> int:
        if target.info is None:
            return target.file_size
        estimate = registry_models.estimate_memory(target.info, options["n_ctx"], options["n_parallel"])
        if qtype is None:
            return estimate.total
        weights = registry_models.expected_quantized_size(target.info, qtype)
        return weights + estimate.kv_cache + estimate.compute

    def _make_room(self, name: str, needed: int) -> None:
        """Unload least recently used idle models until `needed` fits the budget; 503 if it
        cannot."""
        if self.budget.limit is None:
            return
        residents = [Resident(m.name, m.memory_bytes, m.active, m.last_used, pinned=not m.owned)
                     for m in [*self.loaded.values(), *self._retired]]
        reserved = sum(job.reserved for job in self._jobs.values())
        victims = self.budget.victims(residents, needed, reserved)
        if victims is None:
            in_use = sum(r.memory for r in residents) + reserved
            raise ApiError(
                503, "INSUFFICIENT_MEMORY",
                f"model: {name[:64]!r} needs about {gigabytes(needed)}; {gigabytes(in_use)} of the "
                f"{gigabytes(self.budget.limit)} budget is in use by models that are busy or loading",
                "retry when requests finish, unload a model, or raise --max-memory", {"Retry-After": "5"})
        for victim in victims:
            model = self.loaded.get(victim.key)
            if model is not None:
                log.info("unloading %s (least recently used) to make room for %s", model.name, name)
                self._retire(model)

    async def _run(self, job: LoadJob, entry: ModelEntry, target: ModelEntry, qtype: str | None,
                   n_gpu_layers: int, allow_requantize: bool, also: tuple[str, ...]) -> LoadedModel:
        try:
            source = target
            if qtype is not None:
                job.phase = "quantizing"

                def progress(fraction: float) -> None:
                    job.progress = fraction

                source = await asyncio.to_thread(self.registry.quantize, target, qtype,
                                                 allow_requantize=allow_requantize, progress=progress)
            job.phase, job.progress = "loading", 0.0
            model = await self._load(source.path, n_gpu_layers, source, name=job.name, also=also)
        except (EngineError, OSError, RegistryError) as exc:
            log.error("could not load %s: %s", job.name, exc)
            detail = exc.message if isinstance(exc, RegistryError) else str(exc)
            for p in (entry.path, target.path):
                detail = detail.replace(str(p.parent) + "/", "").replace(str(p), p.name)
            raise ApiError(500, "MODEL_LOAD_FAILED", f"failed to load model {job.name[:64]!r}", detail) from None
        job.progress = 1.0
        if self.state == "stopped":
            model.engine.close()
            raise ApiError(503, "SHUTTING_DOWN", "the server is shutting down")
        self._register(model)
        return model

    def _job_done(self, task: asyncio.Task[LoadedModel]) -> None:
        for key, job in list(self._jobs.items()):
            if job.task is task:
                del self._jobs[key]
                if not task.cancelled() and task.exception() is not None:
                    exc = task.exception()
                    self.load_errors[job.name] = exc.details if isinstance(exc, ApiError) else str(exc)

    def _register(self, model: LoadedModel) -> None:
        old = self.loaded.get(model.name)
        if old is not None:
            self._retire(old)
        self.loaded[model.name] = model
        limit = self.config.max_models
        while limit and len(self.loaded) > limit:
            others = [m for m in self.loaded.values() if m is not model]
            victim = min(others, key=lambda m: (m.active > 0, m.last_used))
            log.info("retiring %s: --max-models %d", victim.name, limit)
            self._retire(victim)
        if self.current is None or self.current.retired:
            self.current = model
        self.state, self.error = "ready", None

    async def load(self, name: str, quantization: str | None = None, prefer_gpu: bool = False,
                   allow_requantize: bool = False) -> tuple[LoadedModel, bool]:
        """Load `name` (waiting for it); returns the model and whether anything changed."""
        model, job = self.begin_load(name, quantization, prefer_gpu, allow_requantize)
        if model is not None:
            return model, False
        assert job is not None and job.task is not None
        return await asyncio.shield(job.task), True

    # -- unloading ----------------------------------------------------------------------

    def _retire(self, model: LoadedModel) -> None:
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

    def unload(self, name: str) -> dict[str, Any]:
        model = self._find_loaded(name)
        if model is None:
            entry = self._resolve(name)
            model = next((m for m in self.loaded.values() if _same_file(m.path, entry.path)), None)
            if model is None:
                return {"name": entry.id, "status": "not_loaded", "loaded": False}
        busy = model.active
        self._retire(model)
        return {"name": model.name, "status": "unloading" if busy else "unloaded", "loaded": False,
                "active_requests": busy}

    async def _unload_idle(self) -> None:
        limit = self.config.idle_unload
        period = max(0.05, min(1.0, limit / 4))
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for model in list(self.loaded.values()):
                if model.owned and model.active == 0 and now - model.last_used >= limit:
                    log.info("unloading %s: idle for %.0fs", model.name, now - model.last_used)
                    self._retire(model)

    def _close(self, model: LoadedModel) -> None:
        if model in self._retired:
            self._retired.remove(model)
        if model.owned:
            model.engine.close()

    async def close(self, drain_timeout: float) -> None:
        """Wait (bounded) for requests still running, then close the engines we loaded."""
        if self._idle_task is not None:
            self._idle_task.cancel()
            await asyncio.gather(self._idle_task, return_exceptions=True)
        jobs = [job.task for job in self._jobs.values() if job.task is not None]
        self.state = "stopped"
        await asyncio.gather(*jobs, return_exceptions=True)
        deadline = time.monotonic() + drain_timeout
        while self.active_requests and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for model in [*self.loaded.values(), *self._retired]:
            model.retired = True
            self._close(model)
        self.loaded.clear()
        self.current = None

    # -- listing ------------------------------------------------------------------------

    def catalog(self) -> list[dict[str, Any]]:
        """Every model the registry sees, loaded or not, plus loads in progress."""
        models = []
        listed: set[int] = set()
        jobs = {job.name: job for job in self._jobs.values()}
        for entry in self.registry.scan():
            row = entry.describe()
            model = next((m for m in self.loaded.values() if m.name == entry.id), None) or next(
                (m for m in self.loaded.values() if _same_file(m.path, entry.path) and id(m) not in listed), None)
            if model is not None:
                listed.add(id(model))
                row = {**row, **model.info(), "name": model.name}
            else:
                row.update(loaded=False, memory_usage=gigabytes(0))
                job = jobs.pop(entry.id, None)
                if job is not None:
                    row.update(job.status())
                if entry.id in self.load_errors:
                    row["load_error"] = self.load_errors[entry.id]
            models.append(row)
        for model in self.loaded.values():
            if id(model) not in listed:
                models.append(model.info())
        for job in jobs.values():
            models.append({"name": job.name, "format": "gguf", "loaded": False,
                           "memory_usage": gigabytes(0), **job.status()})
        return models
