"""Opening one model file as a LoadedModel: the engine options the server and the models
config give it, the load itself (in a thread), and what llama.cpp really allocated."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llamaserve.config import ServerConfig
from llamaserve.engine import Engine
from llamaserve.hosting.loaded import LoadedModel
from llamaserve.hosting.kv_sizing import kv_cells
from llamaserve.models import GGUFFormatError, GGUFInfo, MemoryEstimate, ModelEntry, ModelRegistry, read_gguf_info

log = logging.getLogger("llamaserve.hosting")

Loader = Callable[..., Engine]  # loader(path, **engine options) -> Engine


def engine_options(config: ServerConfig, registry: ModelRegistry, n_gpu_layers: int,
                   entry: ModelEntry | None = None, info: GGUFInfo | None = None) -> dict[str, Any]:
    settings = registry.settings_for(entry) if entry is not None else registry.defaults
    n_ctx, n_parallel = settings.n_ctx or config.n_ctx, settings.n_parallel or config.n_parallel
    info = info or (entry.info if entry is not None else None)
    return {"n_ctx": n_ctx, "n_parallel": n_parallel, "n_threads": config.n_threads,
            "n_gpu_layers": n_gpu_layers, "max_queue": config.max_queue,
            "n_kv": kv_cells(config, info, n_ctx, n_parallel, n_gpu_layers),
            "kv_unified": config.kv_unified, "cache_ram": config.cache_ram_bytes,
            "cache_dir": Path(config.cache_dir).expanduser() if config.cache_dir else None,
            "cache_disk": config.cache_disk_bytes,
            "cache_reuse": config.cache_reuse,
            "cache_type_k": config.cache_type_k, "cache_type_v": config.cache_type_v,
            "flash_attn": config.flash_attn, "swa_full": config.swa_full,
            "spec": config.spec, "spec_draft_max": config.spec_draft_max,
            "grammar_budget_ms": config.grammar_budget_ms, "reranking": config.reranking,
            # with --spec off, no draft model is loaded at all
            "draft_model": config.draft_model if config.spec != "off" else None}


def wrap(engine: Engine, path: Path, registry: ModelRegistry, *, owned: bool, n_gpu_layers: int,
         load_time: float = 0.0, entry: ModelEntry | None = None, name: str | None = None,
         also: tuple[str, ...] = (), chat_template: str | None = None) -> LoadedModel:
    """`chat_template`: the server's --chat-template, for a model the models config gives none."""
    """The LoadedModel of an open engine: its names, quantization and real memory use."""
    meta = engine.metadata
    try:
        info = entry.info if entry is not None and entry.info is not None else read_gguf_info(path)
    except GGUFFormatError:
        info = None
    # What llama.cpp actually allocated, summed over devices and host.
    use = engine.memory_use
    memory = MemoryEstimate(sum(b["model"] for b in use), sum(b["context"] for b in use),
                            sum(b["compute"] for b in use))
    name = name or (entry.id if entry is not None else path.stem)
    names = {name, path.stem, meta.get("name") or "", *also}
    if entry is not None:
        names.update(entry.names())
    settings = registry.settings_for(entry) if entry is not None else None
    return LoadedModel(name=name, path=path, engine=engine, owned=owned, n_gpu_layers=n_gpu_layers,
                       load_time=load_time, aliases=frozenset(a.lower() for a in names if a),
                       quantization=info.quantization if info is not None else None, memory=memory,
                       chat_template=settings.chat_template if settings and settings.chat_template
                       else chat_template)


async def open_model(loader: Loader, config: ServerConfig, registry: ModelRegistry, path: Path,
                     n_gpu_layers: int, entry: ModelEntry | None = None, *, name: str | None = None,
                     also: tuple[str, ...] = ()) -> LoadedModel:
    """Open `path` once a child process has (models/probe.py): a file llama.cpp would abort on
    is refused (ModelFileError) and never opened here."""
    try:
        info = entry.info if entry is not None and entry.info is not None else read_gguf_info(path)
    except GGUFFormatError:
        info = None  # llama.cpp may still read it; its own error says why if not
    options = engine_options(config, registry, n_gpu_layers, entry, info)
    for file in (path, options["draft_model"]):
        if file is not None:
            await asyncio.to_thread(registry.probe.check, Path(file))
    started = time.perf_counter()
    engine = await asyncio.to_thread(loader, path, **options)
    elapsed = time.perf_counter() - started
    log.info("loaded %s in %.1fs", path.name, elapsed)
    n_ctx_train = engine.metadata.get("n_ctx_train") or 0
    if 0 < n_ctx_train < options["n_ctx"]:
        log.warning("--ctx %d is more than %s was trained for (%d tokens): text past that length "
                    "may degrade", options["n_ctx"], path.name, n_ctx_train)
    _say_what_reuse_applies(engine, path.name, options["cache_reuse"])
    return wrap(engine, path, registry, owned=True, n_gpu_layers=n_gpu_layers, load_time=elapsed,
                entry=entry, name=name, also=also, chat_template=config.template_override)


def _say_what_reuse_applies(engine: Engine, model: str, asked: int) -> None:
    """--cache-reuse is a request: a model whose KV cannot move never reuses, and without one
    KV pool a chunk can only follow the cached prefix (README, "Reuse past a divergence")."""
    if asked <= 0:
        return
    in_effect = engine.cache_reuse
    if in_effect["min_chunk"] == 0:
        log.warning("--cache-reuse %d: off for %s, whose KV cannot move to new positions (a sliding "
                    "window without --swa-full, a recurrent state or M-RoPE)", asked, model)
    elif not in_effect["after_new_tokens"]:
        log.info("--cache-reuse %d without --kv-unified: %s reuses cached chunks only right after the "
                 "cached prefix (past deleted text), not past a changed line", asked, model)
