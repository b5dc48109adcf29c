"""GET /health (and llama-server's /v1/health): is a model loaded, memory, connections, slots."""
from __future__ import annotations

import os
import resource
import sys
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from llamaserve.hosting.devices import placement
from llamaserve.hosting.host import ModelHost
from llamaserve.server import openapi
from llamaserve.server.family import ApiFamily, spec_error_body, spec_stream_error
from llamaserve.server.metrics import ServerMetrics

if TYPE_CHECKING:
    from llamaserve.server.generation import GenerationService


def process_memory() -> int:
    """Resident set size of this process in bytes."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # peak, not current
        return peak if sys.platform == "darwin" else peak * 1024


def machine_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError):
        return 0


def memory_usage() -> str:
    return f"{process_memory() / 2**30:.1f}GB/{machine_memory() / 2**30:.1f}GB"


# The disk tier's counters /health shows (Engine.cache_stats names them disk_<field>).
DISK_FIELDS = ("entries", "bytes", "budget", "hits", "writes", "evictions", "dropped", "skipped")


def kv_cache(stats: dict[str, int], reuse: dict[str, int | bool]) -> dict[str, object]:
    """KV cells and prefix-cache use, as /health shows them; reuse: the reuse past a divergence
    in effect (Engine.cache_reuse)."""
    cells, used = stats["kv_cells"], stats["kv_cells_used"]
    return {
        "cells": cells, "cells_used": used, "cells_reserved": stats["kv_cells_reserved"],
        "usage": round(used / cells, 4) if cells else 0.0,
        "prefix_cache": {
            "prompt_tokens": stats["prompt_tokens"], "cached_tokens": stats["cached_tokens"],
            "requests_hit": stats["requests_hit"], "reused_tokens": stats["reused_tokens"],
            "requests_missed": stats["requests_departed"], "host_entries": stats["host_entries"],
            "host_bytes": stats["host_bytes"], "host_budget": stats["host_budget"],
            "host_hits": stats["host_hits"], "host_spare_bytes": stats["host_spare_bytes"], "reuse": reuse,
            # the disk tier (--cache-dir): all zero without one
            "disk": {key: stats[f"disk_{key}"] for key in DISK_FIELDS},
        },
    }


def health_endpoint(host: ModelHost, metrics: ServerMetrics):  # noqa: ANN201 - a Starlette endpoint
    async def health(request: Request) -> JSONResponse:
        model = host.current
        body = {
            "status": "healthy" if model else ("loading" if host.state == "loading" else "unhealthy"),
            "model_loaded": model is not None,
            "memory_usage": memory_usage(),
            "active_connections": metrics.active,
            "models": [model.name, *(n for n in host.loaded if n != model.name)] if model else [],
            "slots": {"total": 0, "busy": 0, "free": 0},
            "queue_depth": 0,
        }
        if model is not None:
            total, busy = model.engine.n_parallel, model.engine.busy_slots
            body["slots"] = {"total": total, "busy": busy, "free": total - busy}
            body["queue_depth"] = model.engine.queue_depth
            body["kv_cache"] = kv_cache(model.engine.cache_stats, model.engine.cache_reuse)
            body["speculation"] = {"mode": model.engine.speculation, **model.engine.speculation_stats}
            body["device"] = placement(model.engine.memory_use)
            return JSONResponse(body)
        if host.state == "idle":  # every model was unloaded (--idle-unload, unload): still serving
            body["status"] = "idle"
            return JSONResponse(body)
        if host.error:
            body["error"] = host.error
        headers = {"Retry-After": "1"} if host.state == "loading" else None
        return JSONResponse(body, status_code=503, headers=headers)
    return health


_HEALTH = {"type": "object", "required": ["status", "model_loaded"],
           "properties": {"status": {"type": "string"}, "model_loaded": {"type": "boolean"}}}
OPENAPI_PATH = {"get": openapi.operation(
    "Is a model loaded: memory, connections, slots (503 while loading or unhealthy)", "server",
    {"200": {"description": "serving", "content": {"application/json": {"schema": _HEALTH}}},
     "503": {"description": "loading or unhealthy", "content": {"application/json": {"schema": _HEALTH}}}})}


def _routes(service: GenerationService) -> list[Route]:
    endpoint = health_endpoint(service.host, service.metrics)
    return [Route(path, endpoint, methods=["GET"]) for path in PATHS]


# /health, and llama-server's /v1/health: public (no API key), like llama-server's.
PATHS = ("/health", "/v1/health")
FAMILY = ApiFamily("health", PATHS, _routes, {path: OPENAPI_PATH for path in PATHS}, spec_error_body,
                   spec_stream_error, guarded=False)
