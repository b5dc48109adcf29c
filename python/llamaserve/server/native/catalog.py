"""The model listing's JSON (GET /api/v1/models, load answers): every model the registry
sees, loaded or not, plus loads in progress, sizes in the spec's "4.2GB" format."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from llamaserve.hosting.host import ModelHost
from llamaserve.hosting.loaded import LoadedModel, LoadJob, same_file
from llamaserve.models import gigabytes


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def model_info(model: LoadedModel) -> dict[str, Any]:
    meta = model.engine.metadata
    return {
        "name": model.name,
        "format": "gguf",
        "size": gigabytes(meta.get("file_size") or _file_size(model.path)),
        "loaded": True,
        "memory_usage": gigabytes(model.memory_bytes),
        "memory": model.memory.as_dict() if model.memory else {"weights": meta.get("weights_size") or 0},
        "quantization": model.quantization,
        "device": model.device,
        "n_gpu_layers": model.n_gpu_layers,
        "architecture": meta.get("architecture"),
        "description": _description(meta.get("architecture"), meta.get("n_params"), model.quantization),
        "n_params": meta.get("n_params"),
        "n_ctx": model.engine.n_ctx,
        "slots": model.engine.n_parallel,
        "active_requests": model.active,
    }


def _description(architecture: str | None, n_params: int | None, quantization: str | None) -> str:
    """"llama 135M Q4_1": llama.cpp's own description names a size class by layer count, which
    calls SmolLM2-135M "256M"; the parameter count is the file's own."""
    size = None
    if n_params:
        size = f"{n_params / 1e9:.1f}B" if n_params >= 1e9 else f"{round(n_params / 1e6)}M"
    return " ".join(part for part in (architecture, size, quantization) if part)


def job_status(job: LoadJob) -> dict[str, Any]:
    return {"name": job.name, "status": "loading", "phase": job.phase,
            "progress": round(job.progress, 3), "elapsed": round(job.elapsed, 3)}


def catalog(host: ModelHost) -> list[dict[str, Any]]:
    models = []
    listed: set[int] = set()
    jobs = {job.name: job for job in host.loads.jobs.values()}
    for entry in host.registry.scan():
        row = entry.describe()
        model = next((m for m in host.loaded.values() if m.name == entry.id), None) or next(
            (m for m in host.loaded.values() if same_file(m.path, entry.path) and id(m) not in listed), None)
        if model is not None:
            listed.add(id(model))
            row = {**row, **model_info(model), "name": model.name}
        else:
            row.update(loaded=False, memory_usage=gigabytes(0))
            job = jobs.pop(entry.id, None)
            if job is not None:
                row.update(job_status(job))
            if entry.id in host.loads.errors:
                row["load_error"] = host.loads.errors[entry.id]
        models.append(row)
    for model in host.loaded.values():
        if id(model) not in listed:
            models.append(model_info(model))
    for job in jobs.values():
        models.append({"name": job.name, "format": "gguf", "loaded": False,
                       "memory_usage": gigabytes(0), **job_status(job)})
    return models
