"""The Messages request and the message and event shapes of Anthropic's API.

A request becomes the chat request that /v1/chat/completions runs (server/openai/
chat_protocol.py): messages normalized for chat templates (text blocks joined, tool_use blocks
as tool calls, tool_result blocks as tool messages), tools and tool_choice, and Anthropic's
names for the one request model's parameters (llamaserve.generation_params), which checks
them. Every refusal is a 400 whose message starts with the bad field (`messages[0].role: ...`);
unknown fields are refused by name, `metadata` is accepted and ignored.
"""
from __future__ import annotations

import json
import re
from typing import Any

from llamaserve.generation_params import INT32_MAX, PARAMETERS, check_bool, check_integer, check_number, properties_schema
from llamaserve.server import sse
from llamaserve.server.errors import invalid
from llamaserve.server.chat.request import ChatRequest, Sampling
from llamaserve.server.chat.thinking import Thinking
from llamaserve.server.chat.tools import Tool, ToolCall, ToolChoice
from llamaserve.server.protocol_values import MAX_NAME, MAX_STOP, json_array, json_object, model_name, text

# Anthropic's names for the request model's parameters.
GENERATION = {"max_tokens": "max_tokens", "temperature": "temperature", "top_p": "top_p", "top_k": "top_k",
              "stop_sequences": "stop"}
FIELDS = frozenset({*GENERATION, "model", "messages", "system", "stream", "tools", "tool_choice", "thinking"})
IGNORED = frozenset({"metadata"})
REQUIRED = ("max_tokens", "messages")  # no model: the server's (llama-server's habit)
MAX_TEMPERATURE = 1.0  # Anthropic's documented range is 0 to 1, inside the request model's 0 to 2
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
# Anthropic's tool_choice types as the chat request's modes.
_TOOL_MODES = {"auto": "auto", "any": "required", "tool": "function", "none": "none"}

_TEXT_BLOCK = {"type": "object", "required": ["type", "text"],
               "properties": {"type": {"const": "text"}, "text": {"type": "string"}}}
_BLOCK = {"type": "object", "required": ["type"],
          "properties": {"type": {"enum": ["text", "tool_use", "tool_result", "thinking", "redacted_thinking"]}}}
MESSAGES_SCHEMA: dict[str, Any] = {
    "type": "object", "required": list(REQUIRED), "additionalProperties": False,
    "properties": {
        **{theirs: properties_schema([ours])[ours] for theirs, ours in GENERATION.items()},
        "temperature": {**properties_schema(["temperature"])["temperature"], "maximum": MAX_TEMPERATURE},
        "stop_sequences": {**PARAMETERS["stop"].schema["oneOf"][1], "maxItems": MAX_STOP},
        "model": {"type": "string", "minLength": 1, "maxLength": MAX_NAME},
        "messages": {"type": "array", "items": {
            "type": "object", "required": ["role", "content"], "properties": {
                "role": {"enum": ["user", "assistant"]},
                "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": _BLOCK}]}}}},
        "system": {"oneOf": [{"type": "string"}, {"type": "array", "items": _TEXT_BLOCK}]},
        "stream": {"type": "boolean"},
        "tools": {"type": "array", "items": {"type": "object", "required": ["name", "input_schema"]}},
        "tool_choice": {"type": "object", "required": ["type"],
                        "properties": {"type": {"enum": list(_TOOL_MODES)}, "name": {"type": "string"},
                                       "disable_parallel_tool_use": {"type": "boolean"}}},
        "metadata": {"type": "object"},
        "thinking": {"type": "object", "required": ["type"], "properties": {
            "type": {"enum": ["enabled", "adaptive", "disabled"]},
            "budget_tokens": {"type": "integer", "minimum": 1}}}}}

# count_tokens: the same request, max_tokens optional.
COUNT_SCHEMA: dict[str, Any] = {**MESSAGES_SCHEMA, "required": ["messages"]}

def _fields(body: Any, required: tuple[str, ...]) -> dict[str, Any]:
    """The body without nulls (null = absent) and ignored fields; unknown ones refused."""
    body = json_object("body", body)
    for key, value in body.items():
        if key not in FIELDS | IGNORED and value is not None:
            raise invalid(f"{str(key)[:64]}: unsupported parameter")
    values = {k: v for k, v in body.items() if v is not None and k not in IGNORED}
    for name in required:
        if name not in values:
            raise invalid(f"{name}: required")
    return values


def _sampling(values: dict[str, Any]) -> Sampling:
    if "stop_sequences" in values:
        json_array("stop_sequences", values["stop_sequences"])  # Anthropic's is a list only
    arguments = {ours: PARAMETERS[ours].check(theirs, values[theirs])
                 for theirs, ours in GENERATION.items() if theirs in values}
    if "temperature" in arguments:
        check_number("temperature", arguments["temperature"], 0.0, MAX_TEMPERATURE)
    if len(arguments.get("stop", ())) > MAX_STOP:
        raise invalid(f"stop_sequences: at most {MAX_STOP} strings")
    return Sampling(arguments, stream=check_bool("stream", values.get("stream", False)))


def _block(where: str, value: Any, kinds: tuple[str, ...]) -> dict[str, Any]:
    block = json_object(where, value)
    if block.get("type") not in kinds:
        raise invalid(f"{where}.type: only {' and '.join(kinds)} blocks are supported here, "
                      f"got {str(block.get('type'))[:32]!r}")
    return block


def _plain(name: str, value: Any) -> str:
    """A string, or a list of text blocks (joined): system prompts and tool results."""
    if isinstance(value, str):
        return text(name, value)
    blocks = [_block(f"{name}[{j}]", b, ("text",)) for j, b in enumerate(json_array(name, value))]
    return "\n".join(text(f"{name}[{j}].text", b.get("text")) for j, b in enumerate(blocks))


def _tool_use(where: str, block: dict[str, Any], call_names: dict[str, str]) -> dict[str, Any]:
    call_id = text(f"{where}.id", block.get("id"), MAX_NAME)
    call_names[call_id] = text(f"{where}.name", block.get("name"), MAX_NAME)
    return {"id": call_id, "type": "function", "function": {
        "name": call_names[call_id], "arguments": json_object(f"{where}.input", block.get("input"))}}


def _tool_result(where: str, block: dict[str, Any], call_names: dict[str, str]) -> dict[str, Any]:
    call_id = text(f"{where}.tool_use_id", block.get("tool_use_id"), MAX_NAME)
    result = {"role": "tool", "tool_call_id": call_id, "content": _plain(f"{where}.content", block.get("content", ""))}
    if call_id in call_names:  # templates often show the name of the call a result answers
        result["name"] = call_names[call_id]
    return result


def _from_blocks(name: str, role: str, blocks: list[Any], call_names: dict[str, str]) -> list[dict[str, Any]]:
    """An assistant's blocks as one message with its tool calls; a user's as a tool message
    per tool_result, then its text as one user message."""
    texts, calls, results, thoughts = [], [], [], []
    kinds = ("text", "tool_use", "thinking", "redacted_thinking") if role == "assistant" else ("text", "tool_result")
    for j, raw in enumerate(blocks):
        where = f"{name}[{j}]"
        block = _block(where, raw, kinds)
        if block["type"] == "text":
            texts.append(text(f"{where}.text", block.get("text")))
        elif block["type"] == "thinking":  # an earlier turn's thinking, for templates that show it
            thoughts.append(text(f"{where}.thinking", block.get("thinking")))
        elif block["type"] == "redacted_thinking":
            continue  # encrypted by Anthropic: nothing a local model can read
        elif block["type"] == "tool_use":
            calls.append(_tool_use(where, block, call_names))
        else:
            results.append(_tool_result(where, block, call_names))
    if role == "user":
        return results + ([{"role": "user", "content": "\n".join(texts)}] if texts else [])
    message = {"role": "assistant", "content": "\n".join(texts), **({"tool_calls": calls} if calls else {})}
    if thoughts:
        message["reasoning_content"] = "\n".join(thoughts)
    return [message]


def _messages(system: Any, raw: list[Any]) -> list[dict[str, Any]]:
    messages = [{"role": "system", "content": _plain("system", system)}] if system is not None else []
    call_names: dict[str, str] = {}  # tool_use id -> tool name
    for i, value in enumerate(raw):
        name = f"messages[{i}]"
        message = json_object(name, value)
        role, content = message.get("role"), message.get("content")
        if role not in ("user", "assistant"):
            raise invalid(f"{name}.role: must be user or assistant")
        if content is None:
            raise invalid(f"{name}.content: required")
        if isinstance(content, str):
            messages.append({"role": role, "content": text(f"{name}.content", content)})
        else:
            messages += _from_blocks(f"{name}.content", role, json_array(f"{name}.content", content), call_names)
    return messages


def _tools(value: Any) -> list[Tool]:
    tools = []
    for i, raw in enumerate(json_array("tools", value)):
        where = f"tools[{i}]"
        tool = json_object(where, raw)
        if tool.get("type") not in (None, "custom"):
            raise invalid(f"{where}.type: only custom tools are supported")
        name = text(f"{where}.name", tool.get("name"))
        if not _TOOL_NAME.match(name):
            raise invalid(f"{where}.name: must be 1 to 128 letters, digits, '_' or '-'")
        description = tool.get("description")
        tools.append(Tool(name, None if description is None else text(f"{where}.description", description),
                          json_object(f"{where}.input_schema", tool.get("input_schema"))))
    if len({t.name for t in tools}) != len(tools):
        raise invalid("tools: names must be unique")
    return tools


def _tool_choice(value: Any, tools: list[Tool]) -> ToolChoice:
    if value is None:
        return ToolChoice("auto" if tools else "none")
    choice = json_object("tool_choice", value)
    mode = _TOOL_MODES.get(choice.get("type"))
    if mode is None:
        raise invalid("tool_choice.type: must be auto, any, tool or none")
    if not tools:
        if mode in ("required", "function"):
            raise invalid(f"tool_choice: {choice['type']!r} needs tools")
        return ToolChoice("none")
    if mode != "function":
        return ToolChoice(mode)
    name = text("tool_choice.name", choice.get("name"))
    if name not in {t.name for t in tools}:
        raise invalid(f"tool_choice.name: no tool named {name[:64]!r}")
    return ToolChoice("function", name)


def parse_messages(body: Any, required: tuple[str, ...] = REQUIRED) -> ChatRequest:
    """A Messages request; count_tokens sends one without max_tokens (`required` then omits it)."""
    values = _fields(body, required)
    raw = json_array("messages", values["messages"])  # empty: the template's prompt alone, as llama-server
    tools = _tools(values["tools"]) if "tools" in values else []
    return ChatRequest(model_name(values), _messages(values.get("system"), raw), _sampling(values),
                       tools=tools, tool_choice=_tool_choice(values.get("tool_choice"), tools),
                       parallel_tool_calls=_parallel(values.get("tool_choice")),
                       thinking=_thinking(values["thinking"]) if "thinking" in values else Thinking())


def _thinking(value: Any) -> Thinking:
    """Anthropic's extended thinking: on with a budget of reasoning tokens, or off."""
    setting = json_object("thinking", value)
    kind = setting.get("type")
    if kind == "disabled":
        return Thinking(enabled=False)
    if kind not in ("enabled", "adaptive"):
        raise invalid("thinking.type: must be enabled, adaptive or disabled")
    budget = setting.get("budget_tokens")
    if budget is None:  # Anthropic requires one with "enabled"; here none means no limit
        return Thinking(enabled=True)
    return Thinking(enabled=True, budget=check_integer("thinking.budget_tokens", budget, 1, INT32_MAX))


def _parallel(value: Any) -> bool:
    """Anthropic's tool_choice.disable_parallel_tool_use: at most one tool_use block."""
    if not isinstance(value, dict) or value.get("disable_parallel_tool_use") is None:
        return True
    return not check_bool("tool_choice.disable_parallel_tool_use", value["disable_parallel_tool_use"])


# -- responses -------------------------------------------------------------------------------

def usage(input_tokens: int, output_tokens: int, cache_read: int = 0) -> dict[str, int]:
    """Anthropic counts cached prompt tokens apart: input_tokens are the others."""
    return {"input_tokens": input_tokens - cache_read, "output_tokens": output_tokens,
            "cache_read_input_tokens": cache_read, "cache_creation_input_tokens": 0}


def message(msg_id: str, model: str, content: list[dict[str, Any]], stop_reason: str | None,
            stop_sequence: str | None, usage_: dict[str, int]) -> dict[str, Any]:
    return {"id": msg_id, "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": stop_reason, "stop_sequence": stop_sequence, "usage": usage_}


def text_block(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def tool_use_id(call_id: str) -> str:
    return "toolu_" + call_id.removeprefix("call_")


def tool_use_block(call: ToolCall, with_input: bool = True) -> dict[str, Any]:
    """A call as a tool_use block; streamed ones start with an empty input (its JSON follows)."""
    return {"type": "tool_use", "id": tool_use_id(call.id), "name": call.name,
            "input": json.loads(call.arguments) if with_input else {}}


def thinking_block(value: str) -> dict[str, Any]:
    return {"type": "thinking", "thinking": value, "signature": ""}


def thinking_delta(index: int, value: str) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": {"type": "thinking_delta", "thinking": value}}


def event(name: str, data: dict[str, Any]) -> bytes:
    """One SSE message with Anthropic's `event:` line (the type of its data)."""
    return b"event: " + name.encode() + b"\n" + sse.event(data)


def text_delta(index: int, value: str) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": value}}


def input_json_delta(index: int, partial_json: str) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index,
            "delta": {"type": "input_json_delta", "partial_json": partial_json}}
