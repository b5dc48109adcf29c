"""The chat completions request of the OpenAI-compatible /v1 API: messages (text content,
tool calls and results), tools and tool_choice, response_format, log-probabilities."""
from __future__ import annotations

import re
from typing import Any

from llamaserve.generation_params import MAX_TOP_LOGPROBS, check_bool, check_integer
from llamaserve.server.errors import invalid
from llamaserve.server.chat.request import ChatRequest, ResponseFormat, history_arguments, with_tool_names
from llamaserve.server.chat.thinking import EFFORT_BUDGETS, Thinking, from_effort, template_kwargs
from llamaserve.server.chat.tools import Tool, ToolChoice
from llamaserve.server.openai.protocol import SAMPLING_PARAMETERS, SAMPLING_SCHEMA, present, sampling
from llamaserve.server.protocol_values import MAX_NAME, json_array, json_object, model_name, text

CHAT_PARAMETERS = SAMPLING_PARAMETERS | {"model", "messages", "max_completion_tokens", "logprobs", "top_logprobs",
                                         "response_format", "tools", "tool_choice", "parallel_tool_calls",
                                         "chat_template_kwargs", "reasoning_effort", "add_generation_prompt",
                                         "continue_final_message"}
ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_.-]{1,64}$")

_TEXT_PART = {"type": "object", "required": ["type", "text"],
              "properties": {"type": {"const": "text"}, "text": {"type": "string"}}}
_CONTENT = {"oneOf": [{"type": "string"}, {"type": "array", "items": _TEXT_PART}]}
_TOOL_CALL = {"type": "object", "required": ["function"], "properties": {
    "id": {"type": "string", "maxLength": MAX_NAME}, "type": {"const": "function"},
    "function": {"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string", "maxLength": 64}, "arguments": {"type": ["string", "object"]}}}}}
_MESSAGE_SCHEMA = {"type": "object", "required": ["role"], "properties": {
    "role": {"enum": sorted(ROLES)},
    "content": {"oneOf": [*_CONTENT["oneOf"], {"type": "null"}]},
    "name": {"type": "string", "maxLength": MAX_NAME},
    "tool_call_id": {"type": "string", "maxLength": MAX_NAME},
    "tool_calls": {"type": "array", "items": _TOOL_CALL},
    "reasoning_content": {"type": "string"}},
    # Only an assistant may leave its content out; a tool result names the call it answers.
    "anyOf": [{"properties": {"role": {"const": "assistant"}}},
              {"required": ["content"], "properties": {"role": {"enum": ["developer", "system", "user"]},
                                                       "content": _CONTENT}},
              {"required": ["content", "tool_call_id"], "properties": {"role": {"const": "tool"}, "content": _CONTENT}}]}
_TOOL = {"type": "object", "required": ["function"], "properties": {
    "type": {"const": "function"},
    "function": {"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string", "pattern": TOOL_NAME.pattern}, "description": {"type": "string"},
        "parameters": {"type": "object"}}}}}
CHAT_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["messages"], "additionalProperties": False,
    "properties": {**SAMPLING_SCHEMA,
                   "messages": {"type": "array", "minItems": 1, "items": _MESSAGE_SCHEMA},
                   "max_completion_tokens": SAMPLING_SCHEMA["max_tokens"],
                   "logprobs": {"type": "boolean"},
                   "top_logprobs": {"type": "integer", "minimum": 0, "maximum": MAX_TOP_LOGPROBS},
                   "response_format": {"type": "object", "required": ["type"], "properties": {
                       "type": {"enum": ["text", "json_object", "json_schema"]},
                       "schema": {"type": "object", "description": "with json_object: the JSON schema to follow"}}},
                   "tools": {"type": "array", "items": _TOOL},
                   "parallel_tool_calls": {"type": "boolean"},
                   "chat_template_kwargs": {"type": "object", "description": "variables for the chat template"},
                   "reasoning_effort": {"enum": list(EFFORT_BUDGETS)},
                   "add_generation_prompt": {"type": "boolean", "description": "false: the prompt ends with the "
                                             "conversation, no reply opened (a last user message is continued)"},
                   "continue_final_message": {"type": "boolean", "description": "a last assistant message is "
                                              "continued (the default, as llama-server; false: it is answered)"},
                   "tool_choice": {"oneOf": [{"enum": ["none", "auto", "required"]}, {"type": "object"}]}}}



def _content(name: str, value: Any, role: str) -> str:
    """A message's content as text: a string, or an array of text parts (joined)."""
    if value is None:
        if role in ("assistant",):
            return ""
        raise invalid(f"{name}: required")
    if isinstance(value, str):
        return text(name, value)
    parts = json_array(name, value)
    texts = []
    for j, part in enumerate(parts):
        part = json_object(f"{name}[{j}]", part)
        kind = part.get("type")
        if kind == "text":
            texts.append(text(f"{name}[{j}].text", part.get("text")))
        elif kind == "refusal" and role == "assistant":
            texts.append(text(f"{name}[{j}].refusal", part.get("refusal")))
        else:
            raise invalid(f"{name}[{j}].type: only text content is supported, got {str(kind)[:32]!r}")
    return "\n\n".join(texts)  # as llama-server joins them


def _tool_call(name: str, value: Any) -> dict[str, Any]:
    call = json_object(name, value)
    function = json_object(f"{name}.function", call.get("function"))
    fname = text(f"{name}.function.name", function.get("name"), 64)
    raw = function.get("arguments", "{}")
    if not isinstance(raw, (str, dict)):
        raise invalid(f"{name}.function.arguments: must be a JSON string")
    arguments = history_arguments(raw)
    call_id = call.get("id")
    out = {"type": "function", "function": {"name": fname, "arguments": arguments}}
    if call_id is not None:
        out["id"] = text(f"{name}.id", call_id, MAX_NAME)
    return out


def _message(i: int, value: Any, tools: dict[str, Tool] | None = None) -> dict[str, Any]:
    name = f"messages[{i}]"
    message = json_object(name, value)
    role = message.get("role")
    if role not in ROLES:
        raise invalid(f"{name}.role: must be one of {', '.join(sorted(ROLES))}")
    role = "system" if role == "developer" else role
    out: dict[str, Any] = {"role": role}
    out["content"] = _content(f"{name}.content", message.get("content"), role)
    if message.get("name") is not None:
        out["name"] = text(f"{name}.name", message["name"], MAX_NAME)
    if role == "assistant" and message.get("tool_calls") is not None:
        calls = json_array(f"{name}.tool_calls", message["tool_calls"])
        out["tool_calls"] = [_tool_call(f"{name}.tool_calls[{j}]", c) for j, c in enumerate(calls)]
    for field_ in ("reasoning_content", "reasoning"):  # an earlier turn's thinking, for templates that show it
        if role == "assistant" and message.get(field_) is not None:
            out["reasoning_content"] = text(f"{name}.{field_}", message[field_])
    if role == "tool":
        out["tool_call_id"] = text(f"{name}.tool_call_id", message.get("tool_call_id"), MAX_NAME)
    return out


def _response_format(value: Any) -> ResponseFormat:
    fmt = json_object("response_format", value)
    kind = fmt.get("type")
    if kind == "json_object" and fmt.get("schema") is not None:  # llama-server's and llama-cpp-python's form
        return _schema_format("response_format.schema", fmt["schema"], None)
    if kind in ("text", "json_object"):
        return ResponseFormat(kind)
    if kind != "json_schema":
        raise invalid("response_format.type: must be text, json_object or json_schema")
    spec = json_object("response_format.json_schema", fmt.get("json_schema"))
    name = spec.get("name")
    return _schema_format("response_format.json_schema.schema", spec.get("schema", {}),
                          text("response_format.json_schema.name", name, 64) if name is not None else None)


def _schema_format(field: str, schema: Any, name: str | None) -> ResponseFormat:
    if not isinstance(schema, (dict, bool)):
        raise invalid(f"{field}: must be a JSON schema object")
    return ResponseFormat("json_schema", schema if schema is not True else {}, name)


def _tools(value: Any) -> list[Tool]:
    tools = []
    for i, raw in enumerate(json_array("tools", value)):
        name = f"tools[{i}]"
        tool = json_object(name, raw)
        if tool.get("type", "function") != "function":
            raise invalid(f"{name}.type: only function tools are supported")
        function = json_object(f"{name}.function", tool.get("function"))
        fname = text(f"{name}.function.name", function.get("name"))
        if not TOOL_NAME.match(fname):
            raise invalid(f"{name}.function.name: must be 1 to 64 letters, digits, '_', '-' or '.'")
        description = function.get("description")
        parameters = function.get("parameters")
        tools.append(Tool(fname,
                          text(f"{name}.function.description", description) if description is not None else None,
                          json_object(f"{name}.function.parameters", parameters) if parameters is not None else None))
    if len({t.name for t in tools}) != len(tools):
        raise invalid("tools: function names must be unique")
    return tools


def tool_choice(value: Any, tools: list[Tool]) -> ToolChoice:
    if value is None:
        return ToolChoice("auto" if tools else "none")
    if isinstance(value, str):
        if value not in ("none", "auto", "required"):
            raise invalid("tool_choice: must be none, auto, required or a function")
        if value != "none" and not tools:
            raise invalid(f"tool_choice: {value!r} needs tools")
        return ToolChoice(value)
    choice = json_object("tool_choice", value)
    function = json_object("tool_choice.function", choice.get("function"))
    name = text("tool_choice.function.name", function.get("name"))
    if name not in {t.name for t in tools}:
        raise invalid(f"tool_choice.function.name: no tool named {name[:64]!r}")
    return ToolChoice("function", name)


def parse_chat(body: Any) -> ChatRequest:
    body = json_object("body", body)
    values = present(body, CHAT_PARAMETERS)
    if "max_completion_tokens" in values:  # the newer name wins
        values["max_tokens"] = values.pop("max_completion_tokens")
    raw_messages = json_array("messages", values.get("messages"))
    if not raw_messages:
        raise invalid("messages: must not be empty")
    tools = _tools(values["tools"]) if "tools" in values else []
    messages = with_tool_names([_message(i, m) for i, m in enumerate(raw_messages)])
    logprobs = check_bool("logprobs", values.get("logprobs", False))
    top_logprobs = check_integer("top_logprobs", values.get("top_logprobs", 0), 0, MAX_TOP_LOGPROBS)
    if "top_logprobs" in values and not logprobs:
        raise invalid("top_logprobs: needs logprobs set to true")
    fmt = _response_format(values["response_format"]) if "response_format" in values else ResponseFormat("text")
    choice = tool_choice(values.get("tool_choice"), tools)
    if fmt.type != "text" and choice.mode in ("required", "function"):
        raise invalid("response_format: cannot be combined with a forced tool_choice")
    if "grammar" in values and (fmt.type != "text" or choice.mode in ("required", "function")):
        raise invalid("grammar: cannot be combined with response_format or a forced tool_choice")
    parallel = check_bool("parallel_tool_calls", values.get("parallel_tool_calls", True))
    kwargs = template_kwargs("chat_template_kwargs", values["chat_template_kwargs"]) \
        if "chat_template_kwargs" in values else {}
    thinking = from_effort("reasoning_effort", values["reasoning_effort"]) if "reasoning_effort" in values else Thinking()
    add_generation_prompt = check_bool("add_generation_prompt", values.get("add_generation_prompt", True))
    continue_final = check_bool("continue_final_message", values.get("continue_final_message", True))
    if values.get("continue_final_message") and "add_generation_prompt" in values and add_generation_prompt:
        raise invalid("continue_final_message: cannot be combined with add_generation_prompt true")
    if values.get("continue_final_message") and messages[-1]["role"] != "assistant":
        raise invalid("continue_final_message: the last message must be the assistant's")
    if continue_final and len(messages) > 1 and all(m["role"] == "assistant" for m in messages[-2:]):
        raise invalid(f"messages[{len(messages) - 1}]: two assistant messages at the end (the last one "
                      "is continued: which reply goes on is unclear)")
    return ChatRequest(model_name(values), messages, sampling(values, body), logprobs, top_logprobs,
                       fmt, tools, choice, parallel, template_kwargs=kwargs, thinking=thinking,
                       add_generation_prompt=add_generation_prompt, continue_final=continue_final)


