"""Ollama's requests as the chat pipeline's: /api/chat and /api/generate become the chat (or,
with `raw`, the completions) request that /v1 parses (server/openai/), so every parameter has
one validator; `options` are Ollama's names for the request model's sampling parameters.
Refusals are 400s naming Ollama's field; an unknown `options` key is ignored (logged once)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from llamaserve.server.chat.request import ChatRequest
from llamaserve.server.chat.thinking import Thinking, from_effort
from llamaserve.errors import InvalidRequest
from llamaserve.server.ollama.keep_alive import keep_alive_seconds
from llamaserve.server.errors import ApiError, invalid, to_api_error
from llamaserve.server.openai.chat_protocol import parse_chat
from llamaserve.server.openai.protocol import CompletionRequest, parse_completion
from llamaserve.server.protocol_values import json_array, json_object, text

log = logging.getLogger("llamaserve.server.ollama")

# Ollama's `options` that are the request model's sampling parameters (OpenAI's names here).
OPTIONS = {"num_predict": "max_tokens", "temperature": "temperature", "top_k": "top_k", "top_p": "top_p",
           "min_p": "min_p", "seed": "seed", "stop": "stop", "repeat_penalty": "repeat_penalty",
           "repeat_last_n": "penalty_last_n", "presence_penalty": "presence_penalty",
           "frequency_penalty": "frequency_penalty"}
_OURS_TO_THEIRS = {ours: f"options.{theirs}" for theirs, ours in OPTIONS.items()}
_logged_options: set[str] = set()  # unknown option keys already logged

CHAT_FIELDS = frozenset({"model", "messages", "tools", "format", "options", "stream", "think", "keep_alive"})
GENERATE_FIELDS = frozenset({"model", "prompt", "suffix", "system", "template", "context", "stream", "raw",
                             "format", "images", "options", "think", "keep_alive"})
EMBED_FIELDS = frozenset({"model", "input", "truncate", "options", "keep_alive", "dimensions"})
LEGACY_EMBED_FIELDS = frozenset({"model", "prompt", "options", "keep_alive"})


@dataclass(frozen=True)
class OllamaRequest:
    model: str
    chat: ChatRequest | None  # /api/chat, and /api/generate without raw
    completion: CompletionRequest | None  # /api/generate with raw
    num_ctx: int | None  # the context the client asks for, checked against the model's
    keep_alive: float | None = None  # seconds the model stays loaded after this request; None: the server's


def now() -> str:
    """Ollama's created_at: RFC 3339 with the offset."""
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _fields(body: Any, allowed: frozenset[str]) -> dict[str, Any]:
    body = json_object("body", body)
    for key, value in body.items():
        if key not in allowed and value is not None:
            raise invalid(f"{str(key)[:64]}: unsupported parameter")
    values = {k: v for k, v in body.items() if v is not None}
    values["model"] = text("model", values.get("model"), 256)
    return values


def _options(value: Any) -> tuple[dict[str, Any], int | None]:
    """Ollama's options as OpenAI's sampling parameters, and num_ctx."""
    options = json_object("options", value)
    out: dict[str, Any] = {}
    for key, option in options.items():
        if key in OPTIONS:
            if key == "num_predict" and isinstance(option, int) and option < 0:
                continue  # -1 (no limit) and -2 (fill the context): the server's limit applies
            out[OPTIONS[key]] = option
        elif key != "num_ctx" and key not in _logged_options:
            _logged_options.add(key)
            log.info("ollama: option %r is not supported and is ignored", str(key)[:64])
    num_ctx = options.get("num_ctx")
    if num_ctx is not None and (not isinstance(num_ctx, int) or isinstance(num_ctx, bool) or num_ctx < 1):
        raise invalid("options.num_ctx: must be a positive integer")
    return out, num_ctx


def _format(value: Any) -> dict[str, Any] | None:
    if value == "":
        return None
    if value == "json":
        return {"type": "json_object"}
    if isinstance(value, dict):
        return {"type": "json_schema", "json_schema": {"schema": value}}
    raise invalid('format: must be "json" or a JSON schema object')


def _thinking(value: Any) -> Thinking:
    if isinstance(value, bool):
        return Thinking(enabled=value)
    if value in ("low", "medium", "high"):
        return from_effort("think", value)
    raise invalid('think: must be true, false, "low", "medium" or "high"')


def _message(i: int, value: Any, pending_ids: list[str], next_id: list[int]) -> dict[str, Any]:
    """One of Ollama's messages as OpenAI's: tool calls get ids (Ollama's have none), and each
    tool result answers the earliest call not yet answered."""
    name = f"messages[{i}]"
    message = dict(json_object(name, value))
    if message.pop("images", None):
        raise invalid(f"{name}.images: images are not supported (the models served are text-only)")
    if "thinking" in message:
        message["reasoning_content"] = message.pop("thinking")
    if message.get("tool_calls") is not None:
        calls = []
        for j, call in enumerate(json_array(f"{name}.tool_calls", message["tool_calls"])):
            call = json_object(f"{name}.tool_calls[{j}]", call)
            call_id = f"call_{next_id[0]}"
            next_id[0] += 1
            pending_ids.append(call_id)
            calls.append({"id": call_id, "type": "function", "function": call.get("function")})
        message["tool_calls"] = calls
    if message.get("role") == "tool":
        tool_name = message.pop("tool_name", None)
        message["tool_call_id"] = pending_ids.pop(0) if pending_ids else f"call_{next_id[0]}"
        if tool_name is not None:
            message["name"] = tool_name
    return message


def _renamed(error: ApiError | InvalidRequest) -> ApiError:
    """A refusal from the /v1 parsers, naming Ollama's field instead of OpenAI's."""
    exc = to_api_error(error)
    field_ = exc.message.split(":", 1)[0]
    if field_ in _OURS_TO_THEIRS:
        exc.message = _OURS_TO_THEIRS[field_] + exc.message[len(field_):]
    elif field_.startswith("response_format"):
        exc.message = "format" + exc.message[len(field_):]
    return exc


def _sampling(values: dict[str, Any]) -> tuple[dict[str, Any], int | None]:
    sampling, num_ctx = _options(values["options"]) if "options" in values else ({}, None)
    sampling["stream"] = values.get("stream", True)  # Ollama streams unless told not to
    return sampling, num_ctx


def parse_chat_request(body: Any) -> OllamaRequest:
    values = _fields(body, CHAT_FIELDS)
    sampling, num_ctx = _sampling(values)
    pending: list[str] = []
    counter = [0]
    raw_messages = json_array("messages", values.get("messages", []))
    openai_body: dict[str, Any] = {
        "model": values["model"], **sampling,
        "messages": [_message(i, m, pending, counter) for i, m in enumerate(raw_messages)]}
    if "tools" in values:
        openai_body["tools"] = values["tools"]
    if (fmt := _format(values["format"]) if "format" in values else None) is not None:
        openai_body["response_format"] = fmt
    try:
        req = parse_chat(openai_body)
    except (ApiError, InvalidRequest) as exc:
        raise _renamed(exc) from None
    if "think" in values:
        req = replace(req, thinking=_thinking(values["think"]))
    return OllamaRequest(values["model"], req, None, num_ctx, keep_alive(values))


def keep_alive(values: dict[str, Any]) -> float | None:
    return keep_alive_seconds(values["keep_alive"]) if "keep_alive" in values else None


def parse_generate_request(body: Any) -> OllamaRequest:
    values = _fields(body, GENERATE_FIELDS)
    if values.get("suffix"):
        raise invalid("suffix: fill-in-the-middle is not supported; send the text before the gap as the prompt")
    if values.get("template"):
        raise invalid("template: a per-request template is not supported; the model's own chat template "
                      "is used (or send raw: true with the prompt already formatted)")
    if values.get("images"):
        raise invalid("images: images are not supported (the models served are text-only)")
    if values.get("context"):
        raise invalid("context: the deprecated context tokens are not supported; send the conversation "
                      "to /api/chat instead")
    sampling, num_ctx = _sampling(values)
    prompt = text("prompt", values.get("prompt", ""))
    raw = values.get("raw", False)
    if not isinstance(raw, bool):
        raise invalid("raw: must be a boolean")
    fmt = _format(values["format"]) if "format" in values else None
    try:
        if raw:
            if fmt is not None or "think" in values:
                raise invalid("raw: cannot be combined with format or think (the prompt is sent as written)")
            return OllamaRequest(values["model"], None,
                                 parse_completion({"model": values["model"], "prompt": prompt, **sampling}), num_ctx,
                                 keep_alive(values))
        messages = [{"role": "system", "content": text("system", values["system"])}] if "system" in values else []
        messages.append({"role": "user", "content": prompt})
        req = parse_chat({"model": values["model"], "messages": messages, **sampling,
                          **({"response_format": fmt} if fmt is not None else {})})
    except (ApiError, InvalidRequest) as exc:
        raise _renamed(exc) from None
    if "think" in values:
        req = replace(req, thinking=_thinking(values["think"]))
    return OllamaRequest(values["model"], req, None, num_ctx, keep_alive(values))


def embed_inputs(body: Any, legacy: bool) -> tuple[str, list[str], float | None]:
    """/api/embed's model, inputs (a string or a list) and keep_alive, or /api/embeddings' one prompt."""
    values = _fields(body, LEGACY_EMBED_FIELDS if legacy else EMBED_FIELDS)
    if "options" in values:
        _options(values["options"])
    if legacy:
        return values["model"], [text("prompt", values.get("prompt"))], keep_alive(values)
    raw = values.get("input")
    if isinstance(raw, str):
        return values["model"], [raw], keep_alive(values)
    inputs = json_array("input", raw)
    if not inputs:
        raise invalid("input: must not be empty")
    return values["model"], [text(f"input[{i}]", s) for i, s in enumerate(inputs)], keep_alive(values)
