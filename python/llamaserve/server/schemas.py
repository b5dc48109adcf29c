"""Request and response types of the native /api/v1 API, and their validation.

Validation here checks shapes and types (unknown fields, wrong types, non-finite numbers) and
names the bad field; the engine's own validator checks ranges when the request is submitted.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from llamaserve.engine import Completion
from llamaserve.server.errors import invalid

MAX_MODEL_NAME = 256
MAX_INT = 2**63 - 1

# field -> kind; every optional field may also be null (= absent).
_GENERATION_FIELDS: dict[str, str] = {
    "max_tokens": "int",
    "temperature": "number",
    "top_p": "number",
    "top_k": "int",
    "min_p": "number",
    "repeat_penalty": "number",
    "presence_penalty": "number",
    "frequency_penalty": "number",
    "penalty_last_n": "int",
    "seed": "int",
    "stop": "stop",
    "ignore_eos": "bool",
    "logit_bias": "object",
    "grammar": "str",
    "cache_prompt": "bool",
}
_GENERATE_FIELDS = {"prompt": "prompt", "model": "str", "stream": "bool", **_GENERATION_FIELDS}
_LOAD_FIELDS = {"quantization": "str", "prefer_gpu": "bool", "allow_requantize": "bool"}


def _check(name: str, kind: str, value: Any) -> Any:
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid(f"{name}: must be an integer")
        if abs(value) > MAX_INT:
            raise invalid(f"{name}: out of range")
    elif kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise invalid(f"{name}: must be a number")
        if abs(value) > MAX_INT or not math.isfinite(value):
            raise invalid(f"{name}: out of range")
        value = float(value)
    elif kind == "bool":
        if not isinstance(value, bool):
            raise invalid(f"{name}: must be true or false")
    elif kind == "str":
        if not isinstance(value, str):
            raise invalid(f"{name}: must be a string")
    elif kind == "stop":
        if not isinstance(value, str) and not (
                isinstance(value, list) and all(isinstance(s, str) for s in value)):
            raise invalid(f"{name}: must be a string or a list of strings")
    elif kind == "object":
        if not isinstance(value, dict):
            raise invalid(f"{name}: must be an object")
    elif kind == "prompt":
        if isinstance(value, list):
            if not all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t <= MAX_INT for t in value):
                raise invalid(f"{name}: a list prompt must hold token ids")
        elif not isinstance(value, str):
            raise invalid(f"{name}: must be a string (or a list of token ids)")
    return value


def _fields(body: Any, spec: dict[str, str], required: tuple[str, ...] = ()) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise invalid("body: must be a JSON object")
    for name in body:
        if name not in spec:
            raise invalid(f"{str(name)[:64]}: unknown field")
    for name in required:
        if body.get(name) is None:
            raise invalid(f"{name}: required")
    return {name: _check(name, spec[name], value) for name, value in body.items() if value is not None}


@dataclass(frozen=True)
class GenerateRequest:
    prompt: str | list[int]
    model: str | None = None
    stream: bool = False
    generation: dict[str, Any] = field(default_factory=dict)  # engine arguments

    def engine_arguments(self, default_max_tokens: int) -> dict[str, Any]:
        return {"max_tokens": default_max_tokens, **self.generation}


def parse_generate(body: Any) -> GenerateRequest:
    values = _fields(body, _GENERATE_FIELDS, required=("prompt",))
    model = values.pop("model", None)
    if model is not None and len(model) > MAX_MODEL_NAME:
        raise invalid("model: name too long")
    return GenerateRequest(prompt=values.pop("prompt"), model=model,
                           stream=values.pop("stream", False), generation=values)


def parse_batch(body: Any, max_items: int) -> list[Any]:
    """The raw items of a batch; each is parsed on its own so one bad item fails alone."""
    values = _fields(body, {"requests": "list", "model": "str"}, required=("requests",))
    items = body["requests"]
    if not isinstance(items, list):
        raise invalid("requests: must be a list of generate requests")
    if not items:
        raise invalid("requests: must not be empty")
    if len(items) > max_items:
        raise invalid(f"requests: at most {max_items} requests in one batch, got {len(items)}")
    model = values.get("model")
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
    return LoadRequest(**_fields(body, _LOAD_FIELDS))


# -- responses ------------------------------------------------------------------------

def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def completion_body(c: Completion, model: str) -> dict[str, Any]:
    return {
        "text": c.text,
        "usage": usage(c.usage.prompt_tokens, c.usage.completion_tokens),
        "latency": round(c.latency, 6),
        "finish_reason": c.finish_reason,
        "time_to_first_token": None if c.time_to_first_token is None else round(c.time_to_first_token, 6),
        "model": model,
    }


def token_event(piece: str) -> dict[str, Any]:
    return {"token": piece, "finished": False}


def final_event(stats: dict[str, Any], model: str) -> dict[str, Any]:
    return {
        "token": "",
        "finished": True,
        "finish_reason": stats["finish_reason"],
        "usage": usage(stats["prompt_tokens"], stats["completion_tokens"]),
        "latency": round(stats["total_time"], 6),
        "model": model,
    }


def gigabytes(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.1f}GB"
