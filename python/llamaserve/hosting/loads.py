"""Loads in the background: a load request is checked at once (name, quantization, memory
budget) and then runs as a job (quantizing first when asked to) whose progress the
listing shows; a failed job's reason is kept for the listing."""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llamaserve.errors import EngineError
from llamaserve.hosting.errors import ModelLoadFailed, ShuttingDown
from llamaserve.hosting.eviction import to_unload_for
from llamaserve.hosting.loaded import LoadedModel, LoadJob, same_file
from llamaserve.hosting.opening import engine_options, open_model
from llamaserve.models import ModelEntry, ModelFileError, RegistryError, estimate_memory, expected_quantized_size

if TYPE_CHECKING:
    from llamaserve.hosting.host import ModelHost

log = logging.getLogger("llamaserve.hosting")


class Loads:
    """The load jobs of one host."""

    def __init__(self, host: ModelHost) -> None:
        self.host = host
        self.jobs: dict[str, LoadJob] = {}
        self.errors: dict[str, str] = {}  # model name -> why its last background load failed
        self.quantizing: dict[str, int] = {}  # job key -> bytes its quantized file will take

    def names(self) -> set[str]:
        return {job.name for job in self.jobs.values()}

    @property
    def reserved(self) -> int:
        return sum(job.reserved for job in self.jobs.values())

    def begin(self, name: str, quantization: str | None = None, prefer_gpu: bool = False,
              allow_requantize: bool = False) -> tuple[LoadedModel | None, LoadJob | None]:
        """Check a load request and start it: (the model, None) when it is already loaded,
        else (None, the job). Bad names, quantizations and budgets fail here, at once."""
        host = self.host
        entry = host.entry_for_load(name)
        if entry.error is not None:
            # The file's own fault, known from its header: 422, not a server failure.
            raise ModelFileError(f"model: {name[:64]!r} cannot be loaded: its file is not a usable GGUF",
                                 f"{entry.path.name}: {entry.error}")
        n_gpu_layers = host.gpu_layers(prefer_gpu)
        target, qtype = entry, None
        if quantization:
            target, qtype = host.registry.for_quantization(entry, quantization, allow_requantize=allow_requantize)
        path = host.registry.quantized_path(target, qtype) if qtype else target.path
        for model in host.loaded.values():
            if same_file(model.path, path) and model.n_gpu_layers == n_gpu_layers:
                return model, None
        key = f"{path.absolute()}|{n_gpu_layers}"
        if key in self.jobs:
            return None, self.jobs[key]
        disk = self._make_room(target, qtype) if qtype is not None else 0
        estimate = self._estimate(target, qtype, engine_options(host.config, host.registry, n_gpu_layers, entry))
        model_name = target.id if qtype is None else f"{entry.base}.{qtype.lower()}"
        for victim in to_unload_for(host.budget, host.all_models(), self.reserved, model_name, estimate):
            log.info("unloading %s (least recently used) to make room for %s", victim.name, model_name)
            host.retire(victim)
        job = LoadJob(key, model_name, estimate)
        also = (name.lower(),) if name.strip().lower() != "default" else ()
        job.task = asyncio.create_task(self._run(job, entry, target, qtype, n_gpu_layers, allow_requantize, also))
        job.task.add_done_callback(self._done)
        self.jobs[key] = job
        if disk:
            self.quantizing[key] = disk
        self.errors.pop(model_name, None)
        return None, job

    def _make_room(self, target: ModelEntry, qtype: str) -> int:
        """--quantize-cache-size: room for the result beside what other quantizations will
        write, or QuantizeCacheFull (507) now, before anything is written. Returns its size."""
        needed = expected_quantized_size(target.info, qtype) if target.info is not None else target.file_size
        in_use = {m.path.absolute() for m in self.host.all_models()}
        in_use |= {Path(k.rsplit("|", 1)[0]) for k in self.jobs}
        self.host.registry.make_room(needed + sum(self.quantizing.values()), in_use)
        return needed

    @staticmethod
    def _estimate(target: ModelEntry, qtype: str | None, options: dict[str, Any]) -> int:
        if target.info is None:
            return target.file_size
        estimate = estimate_memory(target.info, options["n_ctx"], options["n_parallel"])
        if qtype is None:
            return estimate.total
        return expected_quantized_size(target.info, qtype) + estimate.kv_cache + estimate.compute

    async def _run(self, job: LoadJob, entry: ModelEntry, target: ModelEntry, qtype: str | None,
                   n_gpu_layers: int, allow_requantize: bool, also: tuple[str, ...]) -> LoadedModel:
        host = self.host
        try:
            source = target
            if qtype is not None:
                job.phase = "quantizing"
                # llama.cpp's quantizer reads the header as a load does: the same asserts
                await asyncio.to_thread(host.registry.probe.check, target.path)

                def progress(fraction: float) -> None:
                    job.progress = fraction

                source = await asyncio.to_thread(host.registry.quantize, target, qtype,
                                                 allow_requantize=allow_requantize, progress=progress)
            job.phase, job.progress = "loading", 0.0
            model = await open_model(host.loader, host.config, host.registry, source.path, n_gpu_layers,
                                     source, name=job.name, also=also)
        except ModelFileError as exc:  # the file's fault, not the server's: 422 with what is wrong
            log.warning("refused %s: %s (%s)", job.name, exc.message, exc.details)
            raise
        except (EngineError, OSError, RegistryError) as exc:
            log.error("could not load %s: %s", job.name, exc)
            detail = exc.message if isinstance(exc, RegistryError) else str(exc)
            for p in (entry.path, target.path):  # say what failed, not where files live
                detail = detail.replace(str(p.parent) + "/", "").replace(str(p), p.name)
            raise ModelLoadFailed(f"failed to load model {job.name[:64]!r}", detail) from None
        job.progress = 1.0
        if host.state == "stopped":
            model.engine.close()
            raise ShuttingDown("the server is shutting down")
        host.register(model)
        return model

    def _done(self, task: asyncio.Task[LoadedModel]) -> None:
        for key, job in list(self.jobs.items()):
            if job.task is task:
                del self.jobs[key]
                self.quantizing.pop(key, None)
                if not task.cancelled() and task.exception() is not None:
                    exc = task.exception()
                    self.errors[job.name] = exc.details if isinstance(exc, ModelLoadFailed) else str(exc)

    async def finish(self) -> None:
        """Wait for the jobs still running (at shutdown)."""
        await asyncio.gather(*(job.task for job in self.jobs.values() if job.task is not None),
                             return_exceptions=True)
