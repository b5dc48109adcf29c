"""Request and response types of the native /api/v1 API.

Generation parameters are checked by the one request model (llamaserve.generation_params);
this module checks the rest of a body (unknown fields, prompt, model, stream) and names the
bad field."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llamaserve.generation_params import (
    PARAMETERS, PROMPT_SCHEMA, check_bool, check_prompt, check_text, properties_schema, validate)
from llamaserve.results import Completion, Embeddings
from llamaserve.server.embeddings import INPUT_SCHEMA, parse_inputs
from llamaserve.server.errors import invalid
from llamaserve.server.offloop import dumps, write_list, write_object
from llamaserve.server.usage import CacheReport, drafts, usage

MAX_MODEL_NAME = 256
# What a client may set; add_special and parse_special stay the engine's.
GENERATION_FIELDS = tuple(name for name in PARAMETERS
                          if name not in ("add_special", "parse_special", "logprobs", "preserved_tokens")
                          and not name.startswith("reasoning_"))  # what the chat pipeline sets
GENERATE_FIELDS = ("prompt", "model", "stream", *GENERATION_FIELDS)
LOAD_FIELDS = ("quantization", "prefer_gpu", "allow_requantize")


GENERATE_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["prompt"],
    "properties": {"prompt": PROMPT_SCHEMA, "model": {"type": "string", "minLength": 1, "maxLength": MAX_MODEL_NAME},
                   "stream": {"type": "boolean"}, **properties_schema(GENERATION_FIELDS)}}
BATCH_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["requests"],
    "properties": {"requests": {"type": "array", "minItems": 1, "items": GENERATE_SCHEMA},
                   "model": GENERATE_SCHEMA["properties"]["model"]}}
LOAD_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {"quantization": {"type": "string"}, "prefer_gpu": {"type": "boolean"},
                   "allow_requantize": {"type": "boolean"}}}
_USAGE = {"type": "object", "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
          "properties": {k: {"type": "integer"} for k in ("prompt_tokens", "completion_tokens", "total_tokens")}}
COMPLETION_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["text", "usage", "latency", "finish_reason", "model"],
    "properties": {"text": {"type": "string"}, "usage": _USAGE, "latency": {"type": "number"},
                   "finish_reason": {"type": "string"}, "model": {"type": "string"},
                   "time_to_first_token": {"type": ["number", "null"]}}}


EMBEDDINGS_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["input"],
    "properties": {"input": INPUT_SCHEMA, "model": GENERATE_SCHEMA["properties"]["model"]}}


def _fields(body: Any, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """The body's fields without nulls (null = absent); unknown ones refused by name."""
    if not isinstance(body, dict):
        raise invalid("body: must be a JSON object")
    for name in body:
        if name not in allowed:
            raise invalid(f"{str(name)[:64]}: unknown field")
    for name in required:
        if body.get(name) is None:
            raise invalid(f"{name}: required")
    return {name: value for name, value in body.items() if value is not None}


def _model(value: Any) -> str | None:
    if value is None:
        return None
    model = check_text("model", value)
    if len(model) > MAX_MODEL_NAME:
        raise invalid("model: name too long")
    return model


@dataclass(frozen=True)
class GenerateRequest:
    prompt: str | list[int]
    model: str | None = None
    stream: bool = False
    generation: dict[str, Any] = field(default_factory=dict)  # engine arguments

    def engine_arguments(self, defaults: dict[str, Any]) -> dict[str, Any]:
        return {**defaults, **self.generation}


def parse_generate(body: Any) -> GenerateRequest:
    values = _fields(body, GENERATE_FIELDS, required=("prompt",))
    prompt = check_prompt("prompt", values.pop("prompt"))
    model = _model(values.pop("model", None))
    stream = check_bool("stream", values.pop("stream", False))
    return GenerateRequest(prompt=prompt, model=model, stream=stream, generation=validate(values))


def parse_batch(body: Any, max_items: int) -> list[Any]:
    """The raw items of a batch; each is parsed on its own so one bad item fails alone."""
    values = _fields(body, ("requests", "model"), required=("requests",))
    items = values["requests"]
    if not isinstance(items, list):
        raise invalid("requests: must be a list of generate requests")
    if not items:
        raise invalid("requests: must not be empty")
    if len(items) > max_items:
        raise invalid(f"requests: at most {max_items} requests in one batch, got {len(items)}")
    model = _model(values.get("model"))
    if model is not None:  # a batch-wide model applies to items that name none
        items = [{"model": model, **item} if isinstance(item, dict) else item for item in items]
    return items


@dataclass(frozen=True)
class LoadRequest:
    quantization: str | None = None
    prefer_gpu: bool = False
    allow_requantize: bool = False  # quantize a file that is already quantized


def parse_load(body: Any) -> LoadRequest:
    if body is None:
        return LoadRequest()
    values = _fields(body, LOAD_FIELDS)
    return LoadRequest(
        quantization=check_text("quantization", values["quantization"]) if "quantization" in values else None,
        prefer_gpu=check_bool("prefer_gpu", values.get("prefer_gpu", False)),
        allow_requantize=check_bool("allow_requantize", values.get("allow_requantize", False)))


@dataclass(frozen=True)
class EmbeddingsRequest:
    inputs: list[str | list[int]]
    model: str | None = None


def parse_embeddings(body: Any) -> EmbeddingsRequest:
    values = _fields(body, ("input", "model"), required=("input",))
    return EmbeddingsRequest(parse_inputs(values["input"]), _model(values.get("model")))


# -- responses ------------------------------------------------------------------------

def completion_body(c: Completion, model: str) -> dict[str, Any]:
    return {
        "text": c.text,
        "usage": usage(c.usage.prompt_tokens, c.usage.completion_tokens, c.usage.cached_tokens,
                       (c.usage.drafted_tokens, c.usage.accepted_tokens),
                       cache=CacheReport(c.usage.reused_tokens, c.usage.cache_departure, c.usage.cache_departure_text)),
        "latency": round(c.latency, 6),
        "finish_reason": c.finish_reason,
        "time_to_first_token": None if c.time_to_first_token is None else round(c.time_to_first_token, 6),
        "model": model,
    }


def embeddings_answer(embeddings: Embeddings, model: str) -> str:
    """The answer's JSON, a row at a time (see server/offloop.py: 2,048 rows are a lot)."""
    tokens = sum(embeddings.token_counts)
    return write_object({"embeddings": write_list(dumps(row.tolist()) for row in embeddings.vectors),
                        "dimensions": str(int(embeddings.vectors.shape[1])), "model": dumps(model),
                        "usage": dumps({"prompt_tokens": tokens, "total_tokens": tokens})})


def token_event(piece: str) -> dict[str, Any]:
    return {"token": piece, "finished": False}


def final_event(stats: dict[str, Any], model: str, last_piece: str = "") -> dict[str, Any]:
    return {
        "token": last_piece,
        "finished": True,
        "finish_reason": stats["finish_reason"],
        "usage": usage(stats["prompt_tokens"], stats["completion_tokens"], stats["cached_tokens"], drafts([stats]),
                       cache=CacheReport.of([stats])),
        "latency": round(stats["total_time"], 6),
        "model": model,
    }
