"""Request and response types of the OpenAI-compatible /v1 API, and their validation.

Every refusal is a 400 whose message starts with the bad parameter (`messages[1].role: ...`);
the /v1 error renderer turns that prefix into OpenAI's `param` field. Parameters OpenAI
clients send by default (user, store, metadata, stream_options, ...) are accepted and
ignored; any other unknown parameter is refused by name.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from llamaserve.server.errors import invalid
from llamaserve.tool_calls import Tool, ToolChoice

MAX_N = 16
MAX_PROMPTS = 64
MAX_TOP_LOGPROBS = 20
MAX_STOP = 12  # the engine takes 16 stop strings; chat templates add their own
MAX_NAME = 256
SEED_RANGE = 2**32 - 1  # the engine's seeds are 0 .. 2**32 - 2
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_.-]{1,64}$")

# Sent by OpenAI SDKs and LangChain, meaningless here: accepted and ignored.
IGNORED = frozenset({"user", "store", "metadata", "service_tier", "parallel_tool_calls",
                     "safety_identifier", "prompt_cache_key", "stream_options"})
_SAMPLING = frozenset({"max_tokens", "temperature", "top_p", "n", "stop", "seed", "presence_penalty",
                       "frequency_penalty", "logit_bias", "stream",
                       # llama.cpp-style extensions
                       "top_k", "min_p", "repeat_penalty", "cache_prompt"})
CHAT_PARAMETERS = _SAMPLING | {"model", "messages", "max_completion_tokens", "logprobs", "top_logprobs",
                               "response_format", "tools", "tool_choice"}
COMPLETION_PARAMETERS = _SAMPLING | {"model", "prompt", "logprobs", "echo", "best_of", "suffix"}
ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})


# -- primitive checks ----------------------------------------------------------------------

def _int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"{name}: must be an integer")
    if not low <= value <= high:
        raise invalid(f"{name}: must be between {low} and {high}, got {value}")
    return value


def _number(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise invalid(f"{name}: must be a number")
    if not low <= value <= high:
        raise invalid(f"{name}: must be between {low:g} and {high:g}, got {value:g}")
    return float(value)


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise invalid(f"{name}: must be true or false")
    return value


def _str(name: str, value: Any, limit: int | None = None) -> str:
    if not isinstance(value, str):
        raise invalid(f"{name}: must be a string")
    if limit is not None and len(value) > limit:
        raise invalid(f"{name}: longer than {limit} characters")
    return value


def _object(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(f"{name}: must be an object")
    return value


def _list(name: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise invalid(f"{name}: must be an array")
    return value


def _present(body: dict[str, Any], allowed: frozenset[str]) -> dict[str, Any]:
    """The body without nulls (null = absent) and ignored parameters; unknown ones refused."""
    values = {}
    for key, value in body.items():
        if key in IGNORED:
            continue
        if key not in allowed:
            if value is None:
                continue
            raise invalid(f"{str(key)[:64]}: unsupported parameter")
        if value is not None:
            values[key] = value
    return values


# -- shared sampling parameters --------------------------------------------------------------

@dataclass(frozen=True)
class Sampling:
    """What the engine gets for each choice (before max_tokens defaults and per-choice seeds)."""
    arguments: dict[str, Any]  # engine generation arguments
    n: int = 1
    stream: bool = False
    include_usage: bool = False


def _stop(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value] if value else []
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise invalid("stop: must be a string or an array of strings")
    if len(value) > MAX_STOP:
        raise invalid(f"stop: at most {MAX_STOP} strings")
    return [s for s in value if s]


def _logit_bias(value: Any) -> dict[int, float]:
    out = {}
    for key, bias in _object("logit_bias", value).items():
        try:
            token = int(key)
        except (TypeError, ValueError):
            raise invalid(f"logit_bias: key {str(key)[:32]!r} is not a token id") from None
        if token < 0:
            raise invalid(f"logit_bias: key {str(key)[:32]!r} is not a token id")
        out[token] = _number("logit_bias", bias, -100, 100)
    return out


def _sampling(values: dict[str, Any], body: dict[str, Any]) -> Sampling:
    args: dict[str, Any] = {}
    if "max_tokens" in values:
        args["max_tokens"] = _int("max_tokens", values["max_tokens"], 1, 2**31 - 1)
    if "temperature" in values:
        args["temperature"] = _number("temperature", values["temperature"], 0, 2)
    if "top_p" in values:
        args["top_p"] = _number("top_p", values["top_p"], 0, 1)
        if args["top_p"] == 0:  # OpenAI allows 0 (greedy in effect); the engine wants > 0
            args["top_p"] = 1e-6
    for name in ("presence_penalty", "frequency_penalty"):
        if name in values:
            args[name] = _number(name, values[name], -2, 2)
    if "seed" in values:
        seed = values["seed"]
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise invalid("seed: must be an integer")
        args["seed"] = seed % SEED_RANGE  # OpenAI takes any 64-bit seed
    if "stop" in values:
        args["stop"] = _stop(values["stop"])
    if "logit_bias" in values:
        args["logit_bias"] = _logit_bias(values["logit_bias"])
    if "top_k" in values:
        args["top_k"] = _int("top_k", values["top_k"], 0, 2**31 - 1)
    if "min_p" in values:
        args["min_p"] = _number("min_p", values["min_p"], 0, 1)
    if "repeat_penalty" in values:
        args["repeat_penalty"] = _number("repeat_penalty", values["repeat_penalty"], 0.01, 10)
    if "cache_prompt" in values:
        args["cache_prompt"] = _bool("cache_prompt", values["cache_prompt"])
    n = _int("n", values.get("n", 1), 1, MAX_N)
    stream = _bool("stream", values.get("stream", False))
    include_usage = False
    options = body.get("stream_options")
    if options is not None:
        options = _object("stream_options", options)
        if options.get("include_usage") is not None:
            include_usage = _bool("stream_options.include_usage", options["include_usage"])
    return Sampling(args, n, stream, include_usage and stream)


def _model(values: dict[str, Any]) -> str | None:
    return _str("model", values["model"], MAX_NAME) if "model" in values else None


# -- chat completions ----------------------------------------------------------------------------

@dataclass(frozen=True)
class ResponseFormat:
    type: str  # text | json_object | json_schema
    schema: dict[str, Any] | None = None
    name: str | None = None


@dataclass(frozen=True)
class ChatRequest:
    model: str | None
    messages: list[dict[str, Any]]  # normalized for chat templates
    sampling: Sampling
    logprobs: bool = False
    top_logprobs: int = 0
    response_format: ResponseFormat = field(default_factory=lambda: ResponseFormat("text"))
    tools: list[Tool] = field(default_factory=list)
    tool_choice: ToolChoice = field(default_factory=lambda: ToolChoice("none"))


def _content(name: str, value: Any, role: str) -> str:
    """A message's content as text: a string, or an array of text parts (joined)."""
    if value is None:
        if role in ("assistant",):
            return ""
        raise invalid(f"{name}: required")
    if isinstance(value, str):
        return value
    parts = _list(name, value)
    texts = []
    for j, part in enumerate(parts):
        part = _object(f"{name}[{j}]", part)
        kind = part.get("type")
        if kind == "text":
            texts.append(_str(f"{name}[{j}].text", part.get("text")))
        elif kind == "refusal" and role == "assistant":
            texts.append(_str(f"{name}[{j}].refusal", part.get("refusal")))
        else:
            raise invalid(f"{name}[{j}].type: only text content is supported, got {str(kind)[:32]!r}")
    return "\n".join(texts)


def _tool_call(name: str, value: Any) -> dict[str, Any]:
    call = _object(name, value)
    function = _object(f"{name}.function", call.get("function"))
    fname = _str(f"{name}.function.name", function.get("name"), 64)
    raw = function.get("arguments", "{}")
    arguments: Any = raw
    if isinstance(raw, str):
        try:
            arguments = json.loads(raw) if raw.strip() else {}
        except ValueError:
            arguments = raw  # templates show it as written
    elif not isinstance(raw, dict):
        raise invalid(f"{name}.function.arguments: must be a JSON string")
    call_id = call.get("id")
    out = {"type": "function", "function": {"name": fname, "arguments": arguments}}
    if call_id is not None:
        out["id"] = _str(f"{name}.id", call_id, MAX_NAME)
    return out


def _message(i: int, value: Any, tools: dict[str, Tool] | None = None) -> dict[str, Any]:
    name = f"messages[{i}]"
    message = _object(name, value)
    role = message.get("role")
    if role not in ROLES:
        raise invalid(f"{name}.role: must be one of {', '.join(sorted(ROLES))}")
    role = "system" if role == "developer" else role
    out: dict[str, Any] = {"role": role}
    out["content"] = _content(f"{name}.content", message.get("content"), role)
    if message.get("name") is not None:
        out["name"] = _str(f"{name}.name", message["name"], MAX_NAME)
    if role == "assistant" and message.get("tool_calls") is not None:
        calls = _list(f"{name}.tool_calls", message["tool_calls"])
        out["tool_calls"] = [_tool_call(f"{name}.tool_calls[{j}]", c) for j, c in enumerate(calls)]
    if role == "tool":
        out["tool_call_id"] = _str(f"{name}.tool_call_id", message.get("tool_call_id"), MAX_NAME)
    return out


def _with_tool_names(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give each tool result the name of the call it answers (templates often show it)."""
    names = {}
    for m in messages:
        for call in m.get("tool_calls", []):
            if "id" in call:
                names[call["id"]] = call["function"]["name"]
    return [{**m, "name": names[m["tool_call_id"]]} if m["role"] == "tool" and "name" not in m
            and m["tool_call_id"] in names else m for m in messages]


def _response_format(value: Any) -> ResponseFormat:
    fmt = _object("response_format", value)
    kind = fmt.get("type")
    if kind in ("text", "json_object"):
        return ResponseFormat(kind)
    if kind != "json_schema":
        raise invalid("response_format.type: must be text, json_object or json_schema")
    spec = _object("response_format.json_schema", fmt.get("json_schema"))
    schema = spec.get("schema", {})
    if not isinstance(schema, (dict, bool)):
        raise invalid("response_format.json_schema.schema: must be a JSON schema object")
    name = spec.get("name")
    return ResponseFormat("json_schema", schema if schema is not True else {},
                          _str("response_format.json_schema.name", name, 64) if name is not None else None)


def _tools(value: Any) -> list[Tool]:
    tools = []
    for i, raw in enumerate(_list("tools", value)):
        name = f"tools[{i}]"
        tool = _object(name, raw)
        if tool.get("type", "function") != "function":
            raise invalid(f"{name}.type: only function tools are supported")
        function = _object(f"{name}.function", tool.get("function"))
        fname = _str(f"{name}.function.name", function.get("name"))
        if not _TOOL_NAME.match(fname):
            raise invalid(f"{name}.function.name: must be 1 to 64 letters, digits, '_', '-' or '.'")
        description = function.get("description")
        parameters = function.get("parameters")
        tools.append(Tool(fname,
                          _str(f"{name}.function.description", description) if description is not None else None,
                          _object(f"{name}.function.parameters", parameters) if parameters is not None else None))
    if len({t.name for t in tools}) != len(tools):
        raise invalid("tools: function names must be unique")
    return tools


def _tool_choice(value: Any, tools: list[Tool]) -> ToolChoice:
    if value is None:
        return ToolChoice("auto" if tools else "none")
    if isinstance(value, str):
        if value not in ("none", "auto", "required"):
            raise invalid("tool_choice: must be none, auto, required or a function")
        if value != "none" and not tools:
            raise invalid(f"tool_choice: {value!r} needs tools")
        return ToolChoice(value)
    choice = _object("tool_choice", value)
    function = _object("tool_choice.function", choice.get("function"))
    name = _str("tool_choice.function.name", function.get("name"))
    if name not in {t.name for t in tools}:
        raise invalid(f"tool_choice.function.name: no tool named {name[:64]!r}")
    return ToolChoice("function", name)


def parse_chat(body: Any) -> ChatRequest:
    body = _object("body", body)
    values = _present(body, CHAT_PARAMETERS)
    if "max_completion_tokens" in values:  # the newer name wins
        values["max_tokens"] = values.pop("max_completion_tokens")
    raw_messages = _list("messages", values.get("messages"))
    if not raw_messages:
        raise invalid("messages: must not be empty")
    tools = _tools(values["tools"]) if "tools" in values else []
    messages = _with_tool_names([_message(i, m) for i, m in enumerate(raw_messages)])
    logprobs = _bool("logprobs", values.get("logprobs", False))
    top_logprobs = _int("top_logprobs", values.get("top_logprobs", 0), 0, MAX_TOP_LOGPROBS)
    if "top_logprobs" in values and not logprobs:
        raise invalid("top_logprobs: needs logprobs set to true")
    fmt = _response_format(values["response_format"]) if "response_format" in values else ResponseFormat("text")
    choice = _tool_choice(values.get("tool_choice"), tools)
    if fmt.type != "text" and choice.mode in ("required", "function"):
        raise invalid("response_format: cannot be combined with a forced tool_choice")
    return ChatRequest(_model(values), messages, _sampling(values, body), logprobs, top_logprobs,
                       fmt, tools, choice)


# -- completions ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class CompletionRequest:
    model: str | None
    prompts: list[str | list[int]]
    sampling: Sampling
    logprobs: int | None = None  # top alternatives per token; None = off
    echo: bool = False


def _prompts(value: Any) -> list[str | list[int]]:
    if isinstance(value, str):
        return [value]
    items = _list("prompt", value)
    if not items:
        raise invalid("prompt: must not be empty")
    if all(isinstance(t, int) and not isinstance(t, bool) for t in items):
        return [items]  # one prompt of token ids
    prompts: list[str | list[int]] = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            prompts.append(item)
        elif isinstance(item, list) and item and all(isinstance(t, int) and not isinstance(t, bool) for t in item):
            prompts.append(item)
        else:
            raise invalid(f"prompt[{i}]: must be a string or an array of token ids")
    if len(prompts) > MAX_PROMPTS:
        raise invalid(f"prompt: at most {MAX_PROMPTS} prompts in one request")
    return prompts


def parse_completion(body: Any) -> CompletionRequest:
    body = _object("body", body)
    values = _present(body, COMPLETION_PARAMETERS)
    if "prompt" not in values:
        raise invalid("prompt: required")
    prompts = _prompts(values["prompt"])
    sampling = _sampling(values, body)
    if "best_of" in values and _int("best_of", values["best_of"], 1, MAX_N) != sampling.n:
        raise invalid("best_of: only best_of equal to n is supported")
    if values.get("suffix"):
        raise invalid("suffix: not supported")
    logprobs = _int("logprobs", values["logprobs"], 0, MAX_TOP_LOGPROBS) if "logprobs" in values else None
    echo = _bool("echo", values.get("echo", False))
    if len(prompts) * sampling.n > MAX_N * 4:
        raise invalid(f"n: at most {MAX_N * 4} choices in one request (prompts times n)")
    return CompletionRequest(_model(values), prompts, sampling, logprobs, echo)


# -- responses -----------------------------------------------------------------------------------

def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def model_object(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "llamaserve"}


@dataclass(frozen=True)
class Envelope:
    """What every response and chunk of one request shares."""
    id: str
    created: int
    model: str
    system_fingerprint: str

    def chat(self, choices: list[dict[str, Any]], usage_: dict[str, int]) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                "system_fingerprint": self.system_fingerprint, "choices": choices, "usage": usage_}

    def chat_chunk(self, choices: list[dict[str, Any]], usage_: dict[str, int] | None = None) -> dict[str, Any]:
        chunk = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                 "system_fingerprint": self.system_fingerprint, "choices": choices}
        if usage_ is not None:
            chunk["usage"] = usage_
        return chunk

    def completion(self, choices: list[dict[str, Any]], usage_: dict[str, int] | None) -> dict[str, Any]:
        body = {"id": self.id, "object": "text_completion", "created": self.created, "model": self.model,
                "system_fingerprint": self.system_fingerprint, "choices": choices}
        if usage_ is not None:
            body["usage"] = usage_
        return body


def chat_choice(index: int, content: str | None, finish_reason: str, *, tool_calls: list[dict[str, Any]] | None = None,
                logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"index": index, "message": message,
            "logprobs": None if logprobs is None else {"content": logprobs, "refusal": None},
            "finish_reason": finish_reason}


def chat_delta(index: int, delta: dict[str, Any], finish_reason: str | None = None,
               logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"index": index, "delta": delta,
            "logprobs": None if logprobs is None else {"content": logprobs, "refusal": None},
            "finish_reason": finish_reason}


def completion_choice(index: int, text: str, finish_reason: str | None,
                      logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}
