"""The routes of Ollama's API under /api: chat, generate, embed (and the older embeddings),
the model listings (tags, ps, show), version, and the model-management routes, which say how
llamaserve gets its models (no downloads: GGUF files in the models folder).

Errors here are ApiErrors like everywhere else; under /api they are rendered in Ollama's shape
(server/ollama/errors.py)."""
from __future__ import annotations

import asyncio
import hashlib
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from llamaserve.hosting.loaded import LoadedModel
from llamaserve.models import ModelEntry
from llamaserve.server import openapi
from llamaserve.server.body import read_json
from llamaserve.server.chat.stream import collect
from llamaserve.server.embeddings import embed
from llamaserve.server.errors import ApiError, invalid
from llamaserve.server.generation import GenerationService
from llamaserve.server.ollama import names, protocol, serving
from llamaserve.server.ollama.serving import Answer, NdjsonResponse
from llamaserve.server.openai import serving_chat, serving_completions
from llamaserve.server.sse import until_disconnect

# The version of Ollama's API these routes follow (clients check it before using newer fields).
API_VERSION = "0.12.0"
_NOT_HERE = ("llamaserve does not download, push, create, copy or delete models: put a GGUF file into "
             "the models folder (--models-dir{where}) and it is listed in /api/tags; a name that "
             "is not loaded loads on first use")


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat().replace("+00:00", "Z")


def _digest(path: Path) -> str:
    """A stable identity of a model file (its path, size and time), not a hash of its bytes:
    reading gigabytes per listing is not worth it."""
    try:
        stat = path.stat()
        key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    except OSError:
        key = str(path)
    return hashlib.sha256(key.encode()).hexdigest()


def _details(entry: ModelEntry | None, model: LoadedModel | None) -> dict[str, Any]:
    family = ""
    if entry is not None and entry.info is not None:
        family = entry.info.architecture
    elif model is not None:
        family = str(model.engine.metadata.get("architecture") or "")
    quantization = (entry.quantization if entry is not None else None) or (model.quantization if model else None)
    return {"parent_model": "", "format": "gguf", "family": family, "families": [family] if family else None,
            "parameter_size": "", "quantization_level": quantization or ""}


def _listed(name: str, path: Path, size: int, details: dict[str, Any]) -> dict[str, Any]:
    try:
        modified = _iso(path.stat().st_mtime)
    except OSError:
        modified = _iso(0)
    ollama_name = names.theirs(name)
    return {"name": ollama_name, "model": ollama_name, "modified_at": modified, "size": size,
            "digest": _digest(path), "details": details}


def routes(service: GenerationService) -> list[Route]:
    host, config = service.host, service.config

    def tags() -> list[dict[str, Any]]:
        found, paths = [], set()
        for entry in host.registry.scan():
            if entry.ok:
                paths.add(entry.path.resolve())
                found.append(_listed(entry.id, entry.path, entry.info.file_size if entry.info else 0,
                                     _details(entry, None)))
        for model in host.loaded.values():  # the server's --model may be a file outside the folder
            if model.path.resolve() not in paths:
                found.append(_listed(model.name, model.path, model.memory_bytes, _details(None, model)))
        return found

    async def list_tags(request: Request) -> JSONResponse:
        return JSONResponse({"models": await asyncio.to_thread(tags)})

    async def list_running(request: Request) -> JSONResponse:
        running = []
        for model in host.loaded.values():
            listed = _listed(model.name, model.path, model.memory_bytes, _details(None, model))
            vram = model.memory_bytes if model.device == "gpu" else 0
            limit = host.idle_limit(model)
            expires = model.last_used + limit if limit is not None else None
            running.append({**listed, "expires_at": _iso(time.time() + expires - time.monotonic())
                            if expires is not None else "0001-01-01T00:00:00Z",
                            "size_vram": vram, "context_length": model.engine.n_ctx})
        return JSONResponse({"models": running})

    async def show(request: Request) -> JSONResponse:
        body = protocol.json_object("body", await read_json(request))
        wanted = body.get("model", body.get("name"))
        wanted = protocol.text("model", wanted, 256)
        async with service.lease(names.ours(host, wanted)) as model:
            info = dict(model.engine.metadata)
            template = str(info.pop("chat_template", "") or "")
            details = _details(None, model)
            capabilities = ["completion"] + (["tools"] if "tool" in template else []) + \
                (["thinking"] if "think" in template else [])
            return JSONResponse({
                "modelfile": f"FROM {model.path}\n", "parameters": f"num_ctx {model.engine.n_ctx}",
                "template": template, "details": details,
                "model_info": {k: v for k, v in info.items() if isinstance(v, (str, int, float, bool))},
                "capabilities": capabilities, "modified_at": _iso(model.path.stat().st_mtime)})

    async def version(request: Request) -> JSONResponse:
        return JSONResponse({"version": API_VERSION})

    def check_context(req: protocol.OllamaRequest, model: LoadedModel) -> None:
        if req.num_ctx is not None and req.num_ctx > model.engine.n_ctx:
            raise invalid(f"options.num_ctx: {req.num_ctx} is more than this model's context of "
                          f"{model.engine.n_ctx} tokens (set with --ctx when the server starts)")

    async def load_or_unload(body: dict[str, Any], kind: str) -> JSONResponse:
        """Ollama's load and unload requests (no messages, or no prompt): keep_alive 0 unloads."""
        wanted = protocol.text("model", body.get("model"), 256)
        record: dict[str, Any] = {"model": wanted, "created_at": protocol.now()}
        record.update({"message": {"role": "assistant", "content": ""}} if kind == "chat" else {"response": ""})
        keep = protocol.keep_alive(body)
        if keep == 0:
            host.unload(names.ours(host, wanted))
            return JSONResponse({**record, "done": True, "done_reason": "unload"})
        async with service.lease(names.ours(host, wanted)) as model:
            if keep is not None:
                host.keep_alive(model, keep)
        return JSONResponse({**record, "done": True, "done_reason": "load"})

    async def generation(request: Request, kind: str) -> Response:
        started = time.monotonic()
        body = protocol.json_object("body", await read_json(request))
        if not body.get("messages" if kind == "chat" else "prompt"):
            return await load_or_unload(body, kind)
        req = protocol.parse_chat_request(body) if kind == "chat" else protocol.parse_generate_request(body)
        entered = time.monotonic()
        async with service.lease(names.ours(host, req.model)) as model:
            load_seconds = time.monotonic() - entered  # a load on first use is in it
            check_context(req, model)
            if req.keep_alive is not None:
                host.keep_alive(model, req.keep_alive)
            if req.chat is not None:
                _, chat = await serving_chat.start(req.chat, model, service, config)
            else:
                assert req.completion is not None
                _, chat = await serving_completions.start(req.completion, model, service, config.request_defaults)
        answer = Answer(req.model, kind, started, load_seconds)
        stream = (req.chat or req.completion).sampling.stream  # type: ignore[union-attr]
        if stream:
            return NdjsonResponse(serving.Records(chat, answer))
        try:
            (choice,) = await until_disconnect(collect(chat), request.receive)
        finally:
            chat.close()
        return JSONResponse(serving.body(answer, choice))

    async def chat(request: Request) -> Response:
        return await generation(request, "chat")

    async def generate(request: Request) -> Response:
        return await generation(request, "generate")

    async def embeddings(request: Request, legacy: bool) -> JSONResponse:
        started = time.monotonic()
        wanted, inputs, keep = protocol.embed_inputs(await read_json(request), legacy)
        name = names.ours(host, wanted)
        async with service.lease(name) as model:  # loaded on first use: Ollama reports how long that took
            load_seconds = time.monotonic() - started
            if keep is not None:
                host.keep_alive(model, keep)
        _, result = await embed(service, name, inputs)
        vectors = result.vectors.tolist()
        if legacy:
            return JSONResponse({"embedding": vectors[0]})
        return JSONResponse({"model": wanted, "embeddings": vectors,
                             "total_duration": int((time.monotonic() - started) * serving.NS),
                             "load_duration": int(load_seconds * serving.NS),
                             "prompt_eval_count": sum(result.token_counts)})

    async def embed_route(request: Request) -> JSONResponse:
        return await embeddings(request, legacy=False)

    async def embeddings_route(request: Request) -> JSONResponse:
        return await embeddings(request, legacy=True)

    async def not_here(request: Request) -> Response:
        where = f": {config.models_dir}" if config.models_dir else ""
        raise ApiError(400, "NOT_SUPPORTED", _NOT_HERE.format(where=where))

    return [
        Route("/api/tags", list_tags, methods=["GET"]),
        Route("/api/ps", list_running, methods=["GET"]),
        Route("/api/show", show, methods=["POST"]),
        Route("/api/version", version, methods=["GET"]),
        Route("/api/chat", chat, methods=["POST"]),
        Route("/api/generate", generate, methods=["POST"]),
        Route("/api/embed", embed_route, methods=["POST"]),
        Route("/api/embeddings", embeddings_route, methods=["POST"]),
        *(Route(f"/api/{verb}", not_here, methods=["POST"]) for verb in ("pull", "push", "create", "copy")),
        Route("/api/delete", not_here, methods=["DELETE"]),
    ]


_TAG = "Ollama-compatible API"
_ERRORS = (*openapi.COMMON_ERRORS, 404, 500)
_OBJECT = {"type": "object"}
_MODEL = {"model": {"type": "string", "minLength": 1, "maxLength": 256}}
_CHAT = {"type": "object", "required": ["model"], "properties": {
    **_MODEL, "messages": {"type": "array", "items": _OBJECT}, "tools": {"type": "array", "items": _OBJECT},
    "format": {"oneOf": [{"enum": ["", "json"]}, _OBJECT]}, "options": _OBJECT, "stream": {"type": "boolean"},
    "think": {"oneOf": [{"type": "boolean"}, {"enum": ["low", "medium", "high"]}]},
    "keep_alive": {"type": ["string", "number"]}}}
_GENERATE = {"type": "object", "required": ["model"], "properties": {
    **{k: v for k, v in _CHAT["properties"].items() if k not in ("messages", "tools")},
    "prompt": {"type": "string"}, "system": {"type": "string"}, "raw": {"type": "boolean"}}}
_EMBED = {"type": "object", "required": ["model", "input"], "properties": {
    **_MODEL, "input": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
    "options": _OBJECT}}
_LEGACY_EMBED = {"type": "object", "required": ["model", "prompt"], "properties": {
    **_MODEL, "prompt": {"type": "string"}, "options": _OBJECT}}
_NAMED = {"type": "object", "required": ["model"], "properties": _MODEL}


def _post(summary: str, body: dict, errors: tuple[int, ...] = _ERRORS) -> dict:
    return {"post": openapi.operation(summary, _TAG, openapi.responses({200: _OBJECT}, errors,
                                                                       error_schema="OllamaError"), body)}


def _get(summary: str) -> dict:
    return {"get": openapi.operation(summary, _TAG, openapi.responses({200: _OBJECT}, (401, 429),
                                                                      error_schema="OllamaError"))}


OPENAPI_PATHS = {
    "/api/chat": _post("A chat reply (NDJSON records unless stream: false)", _CHAT),
    "/api/generate": _post("A completion (NDJSON records unless stream: false)", _GENERATE),
    "/api/embed": _post("Embeddings of a string or a list", _EMBED),
    "/api/embeddings": _post("The embedding of one prompt (Ollama's older route)", _LEGACY_EMBED),
    "/api/show": _post("One model's details, header and chat template", _NAMED),
    "/api/tags": _get("The model files"),
    "/api/ps": _get("The loaded models"),
    "/api/version": _get("The version of Ollama's API followed"),
    **{f"/api/{verb}": _post("Not here: llamaserve reads GGUF files from its models folder", _OBJECT, (400, 401))
       for verb in ("pull", "push", "create", "copy")},
    "/api/delete": {"delete": openapi.operation(
        "Not here: llamaserve reads GGUF files from its models folder", _TAG,
        openapi.responses({200: _OBJECT}, (400, 401), error_schema="OllamaError"), _OBJECT)},
}
