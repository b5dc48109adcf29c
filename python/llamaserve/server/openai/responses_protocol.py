"""The Responses request of the OpenAI-compatible /v1 API (POST /v1/responses), and the
shapes it answers with: the response object, its output items, its usage.

A request is read into the ChatRequest it means (input items become chat messages,
instructions the system message, text.format the response format), so it is planned,
templated and constrained exactly like a chat completion. The server is stateless:
previous_response_id is refused, and store is accepted but nothing is stored. Errors name
the parameter as this API spells it (`input[2].call_id: ...`).

Fields the OpenAI SDK and the Agents SDK send that change nothing here are accepted and
ignored (protocol.IGNORED, and `include`); hosted tools (web search, file search, code interpreter,
computer use, MCP, ...) run on OpenAI's side only: they are left out of the prompt and the
response says so in `warnings`, unless tool_choice names one (400).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llamaserve.generation_params import PARAMETERS, check_bool
from llamaserve.json_grammar import SchemaError, schema_to_grammar
from llamaserve.server.chat.request import ChatRequest, ResponseFormat, history_arguments, with_tool_names
from llamaserve.server.chat.thinking import EFFORT_BUDGETS, Thinking, from_effort, template_kwargs
from llamaserve.server.chat.tools import Tool, ToolCall, ToolChoice
from llamaserve.server.errors import invalid
from llamaserve.server.openai.chat_protocol import TOOL_NAME, tool_choice
from llamaserve.server.openai.protocol import GENERATION_PARAMETERS, SAMPLING_SCHEMA, present, sampling
from llamaserve.server.protocol_values import MAX_NAME, json_array, json_object, model_name, text

# OpenAI's names, plus the llama.cpp-style sampling extensions chat accepts (not max_tokens:
# here it is max_output_tokens).
RESPONSES_PARAMETERS = frozenset(GENERATION_PARAMETERS) - {"max_tokens"} | {
    "model", "input", "instructions", "max_output_tokens", "stream", "text", "tools", "tool_choice",
    "truncation", "reasoning", "previous_response_id", "conversation", "background", "include",
    "parallel_tool_calls", "chat_template_kwargs"}
# Tools that run on OpenAI's side (the Responses API's built-in tools).
HOSTED_TOOLS = frozenset({"web_search", "web_search_preview", "web_search_preview_2025_03_11", "file_search",
                          "code_interpreter", "computer_use_preview", "computer_use", "mcp", "image_generation",
                          "local_shell", "shell", "apply_patch", "custom"})
ROLES = ("assistant", "developer", "system", "user")
MAX_METADATA = 16

_CONTENT = {"oneOf": [{"type": "string"}, {"type": "array", "items": {
    "type": "object", "required": ["type"], "properties": {
        "type": {"enum": ["input_text", "output_text", "refusal"]}, "text": {"type": "string"}}}}]}
_ITEM = {"type": "object", "properties": {
    "type": {"enum": ["message", "reasoning", "function_call", "function_call_output"]}, "role": {"enum": list(ROLES)},
    "content": _CONTENT, "call_id": {"type": "string", "maxLength": MAX_NAME}, "name": {"type": "string"},
    "arguments": {"type": "string"}, "output": _CONTENT}}
RESPONSES_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["input"], "additionalProperties": False,
    "properties": {**{k: v for k, v in SAMPLING_SCHEMA.items() if k not in ("n", "max_tokens")},
                   "input": {"oneOf": [{"type": "string"}, {"type": "array", "minItems": 1, "items": _ITEM}]},
                   "instructions": {"type": "string"},
                   "max_output_tokens": SAMPLING_SCHEMA["max_tokens"],
                   "tools": {"type": "array", "items": {"oneOf": [
                       {"type": "object", "required": ["type", "name"], "properties": {
                           "type": {"const": "function"}, "name": {"type": "string", "pattern": TOOL_NAME.pattern},
                           "description": {"type": "string"}, "parameters": {"type": "object"},
                           "strict": {"type": "boolean"}}},
                       {"type": "object", "required": ["type"], "description": "left out, with a warning",
                        "properties": {"type": {"enum": sorted(HOSTED_TOOLS)}}}]}},
                   "include": {"type": "array", "items": {"type": "string", "maxLength": 128},
                               "description": "accepted and ignored"},
                   "tool_choice": {"oneOf": [{"enum": ["none", "auto", "required"]}, {
                       "type": "object", "required": ["type", "name"],
                       "properties": {"type": {"const": "function"}, "name": {"type": "string"}}}]},
                   "text": {"type": "object", "properties": {"format": {"type": "object", "required": ["type"],
                            "properties": {"type": {"enum": ["text", "json_object", "json_schema"]}}}}},
                   "truncation": {"enum": ["auto", "disabled"]},
                   "reasoning": {"type": "object", "properties": {"effort": {"enum": list(EFFORT_BUDGETS)}}},
                   "chat_template_kwargs": {"type": "object", "description": "variables for the chat template"},
                   "parallel_tool_calls": {"type": "boolean"},
                   "metadata": {"type": "object", "maxProperties": MAX_METADATA,
                                "additionalProperties": {"type": "string", "maxLength": 512}},
                   "store": {"type": "boolean", "description": "accepted; nothing is stored (stateless)"}}}


@dataclass(frozen=True)
class ResponsesRequest:
    chat: ChatRequest  # what runs: the chat completion this request means
    echo: dict[str, Any]  # the settings the response object repeats


# -- input items -> chat messages ----------------------------------------------------------------

def _content(name: str, value: Any) -> str:
    """Text, or text parts (joined): input_text, output_text (earlier answers), refusal."""
    if isinstance(value, str):
        return text(name, value)
    texts = []
    for j, raw in enumerate(json_array(name, value)):
        part = json_object(f"{name}[{j}]", raw)
        kind = part.get("type")
        if kind not in ("input_text", "output_text", "refusal"):
            raise invalid(f"{name}[{j}].type: only input_text and output_text content is supported, "
                          f"got {str(kind)[:32]!r}")
        field_ = "refusal" if kind == "refusal" else "text"
        texts.append(text(f"{name}[{j}].{field_}", part.get(field_)))
    return "\n".join(texts)


def _call(name: str, item: dict[str, Any]) -> dict[str, Any]:
    """A function_call item as a chat tool call (arguments parsed: templates show objects)."""
    arguments = history_arguments(text(f"{name}.arguments", item.get("arguments", "{}")))
    return {"type": "function", "id": text(f"{name}.call_id", item.get("call_id"), MAX_NAME),
            "function": {"name": text(f"{name}.name", item.get("name"), 64), "arguments": arguments}}


def _reasoning(name: str, item: dict[str, Any]) -> str:
    """A reasoning item's text: its reasoning_text content, else its summary."""
    parts = item.get("content") or item.get("summary") or []
    if isinstance(parts, str):
        return text(f"{name}.content", parts)
    texts = []
    for j, raw in enumerate(json_array(f"{name}.content", parts)):
        part = json_object(f"{name}.content[{j}]", raw)
        texts.append(text(f"{name}.content[{j}].text", part.get("text", "")))
    return "\n".join(texts)


def _thinking_only(messages: list[dict[str, Any]]) -> bool:
    last = messages[-1] if messages else None
    return last is not None and last["role"] == "assistant" and "reasoning_content" in last and not last["content"] \
        and not last.get("tool_calls")


def _messages(value: Any, instructions: str | None) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [] if instructions is None else [{"role": "system", "content": instructions}]
    if isinstance(value, str):
        return [*messages, {"role": "user", "content": text("input", value)}]
    items = json_array("input", value)
    if not items:
        raise invalid("input: must not be empty")
    for i, raw in enumerate(items):
        name = f"input[{i}]"
        item = json_object(name, raw)
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role not in ROLES:
                raise invalid(f"{name}.role: must be one of {', '.join(ROLES)}")
            content = _content(f"{name}.content", item.get("content"))
            if role == "assistant" and _thinking_only(messages):  # the answer that followed its reasoning
                messages[-1]["content"] = content
            else:
                messages.append({"role": "system" if role == "developer" else role, "content": content})
        elif kind == "reasoning":  # an earlier turn's thinking, for templates that show it
            messages.append({"role": "assistant", "content": "", "reasoning_content": _reasoning(name, item)})
        elif kind == "function_call":
            if messages and messages[-1]["role"] == "assistant":  # calls of one turn share its message
                messages[-1].setdefault("tool_calls", []).append(_call(name, item))
            else:
                messages.append({"role": "assistant", "content": "", "tool_calls": [_call(name, item)]})
        elif kind == "function_call_output":
            messages.append({"role": "tool", "tool_call_id": text(f"{name}.call_id", item.get("call_id"), MAX_NAME),
                             "content": _content(f"{name}.output", item.get("output"))})
        else:
            raise invalid(f"{name}.type: must be message, reasoning, function_call or function_call_output, "
                          f"got {str(kind)[:32]!r}")
    return with_tool_names(messages)


# -- tools, tool_choice, text.format ---------------------------------------------------------

def _tools(value: Any) -> tuple[list[Tool], list[dict[str, Any]], list[str]]:
    """The function tools, how the response repeats them, and the hosted tools left out."""
    tools, shown, hosted = [], [], []
    for i, raw in enumerate(json_array("tools", value)):
        name = f"tools[{i}]"
        tool = json_object(name, raw)
        kind = tool.get("type")
        if kind in HOSTED_TOOLS:
            hosted.append(str(kind))
            shown.append(tool)
            continue
        if kind != "function":
            raise invalid(f"{name}.type: must be function or one of OpenAI's hosted tools, got {str(kind)[:32]!r}")
        fname = text(f"{name}.name", tool.get("name"))
        if not TOOL_NAME.match(fname):
            raise invalid(f"{name}.name: must be 1 to 64 letters, digits, '_', '-' or '.'")
        description = None if tool.get("description") is None else text(f"{name}.description", tool["description"])
        parameters = None if tool.get("parameters") is None else json_object(f"{name}.parameters", tool["parameters"])
        strict = None if tool.get("strict") is None else check_bool(f"{name}.strict", tool["strict"])
        tools.append(Tool(fname, description, parameters))
        shown.append({"type": "function", "name": fname, "description": description, "parameters": parameters,
                      "strict": strict})
    if len({t.name for t in tools}) != len(tools):
        raise invalid("tools: function names must be unique")
    return tools, shown, hosted


def _choice(value: Any, tools: list[Tool]) -> ToolChoice:
    if not isinstance(value, dict):  # absent, or none / auto / required: as in chat
        if value == "auto" and not tools:  # only hosted tools were offered
            return ToolChoice("none")
        return tool_choice(value, tools)
    if value.get("type") in HOSTED_TOOLS:
        raise invalid(f"tool_choice.type: {str(value['type'])[:32]!r} is a tool OpenAI hosts; this server "
                      "cannot run it")
    if value.get("type") != "function":
        raise invalid("tool_choice.type: must be function (or none, auto, required)")
    name = text("tool_choice.name", value.get("name"))
    if name not in {t.name for t in tools}:
        raise invalid(f"tool_choice.name: no tool named {name[:64]!r}")
    return ToolChoice("function", name)


def _format(value: Any) -> tuple[ResponseFormat, dict[str, Any]]:
    """text.format, and how the response repeats it."""
    fmt = json_object("text.format", json_object("text", value).get("format") or {"type": "text"})
    kind = fmt.get("type")
    if kind in ("text", "json_object"):
        return ResponseFormat(kind), {"type": kind}
    if kind != "json_schema":
        raise invalid("text.format.type: must be text, json_object or json_schema")
    name = text("text.format.name", fmt.get("name"), 64)
    schema = json_object("text.format.schema", fmt.get("schema"))
    try:  # refused here, under this API's name, rather than when the chat plan compiles it
        schema_to_grammar(schema)
    except SchemaError as exc:
        raise invalid(f"text.format.schema: {exc}") from None
    strict = None if fmt.get("strict") is None else check_bool("text.format.strict", fmt["strict"])
    return ResponseFormat("json_schema", schema, name), {
        "type": "json_schema", "name": name, "schema": schema, "strict": strict}


def _metadata(value: Any) -> dict[str, str]:
    metadata = json_object("metadata", value)
    if len(metadata) > MAX_METADATA:
        raise invalid(f"metadata: at most {MAX_METADATA} keys")
    return {text("metadata", key, 64): text(f"metadata.{key}", v, 512) for key, v in metadata.items()}


def parse_responses(body: Any) -> ResponsesRequest:
    body = json_object("body", body)
    values = present(body, RESPONSES_PARAMETERS)
    for stateful in ("previous_response_id", "conversation"):
        if stateful in values:
            raise invalid(f"{stateful}: not supported: this server is stateless and keeps no responses; "
                          "send the whole conversation in input")
    if values.get("background"):
        raise invalid("background: not supported: this server answers while the request is open")
    if "include" in values:
        for j, entry in enumerate(json_array("include", values["include"])):
            text(f"include[{j}]", entry, 128)
    if "input" not in values:
        raise invalid("input: required")
    if "max_output_tokens" in values:  # the one request model's max_tokens, under this API's name
        values["max_tokens"] = PARAMETERS["max_tokens"].check("max_output_tokens", values.pop("max_output_tokens"))
    instructions = text("instructions", values["instructions"]) if "instructions" in values else None
    messages = _messages(values["input"], instructions)
    tools, shown_tools, hosted = _tools(values["tools"]) if "tools" in values else ([], [], [])
    choice = _choice(values.get("tool_choice"), tools)
    fmt, shown_format = _format(values["text"]) if "text" in values else (ResponseFormat("text"), {"type": "text"})
    if fmt.type != "text" and choice.mode in ("required", "function"):
        raise invalid("text.format: cannot be combined with a forced tool_choice")
    truncation = values.get("truncation", "disabled")
    if truncation not in ("auto", "disabled"):
        raise invalid("truncation: must be auto or disabled")
    reasoning = json_object("reasoning", values["reasoning"]) if "reasoning" in values else None
    thinking = from_effort("reasoning.effort", reasoning["effort"]) \
        if reasoning is not None and reasoning.get("effort") is not None else Thinking()
    kwargs = template_kwargs("chat_template_kwargs", values["chat_template_kwargs"]) \
        if "chat_template_kwargs" in values else {}
    parallel = check_bool("parallel_tool_calls", values.get("parallel_tool_calls", True))
    sampling_ = sampling(values, body)
    echo = {
        "instructions": instructions, "max_output_tokens": sampling_.arguments.get("max_tokens"),
        "metadata": _metadata(body["metadata"]) if body.get("metadata") is not None else {},
        "parallel_tool_calls": parallel, "previous_response_id": None, "reasoning": reasoning,
        # null: the engine's default
        "temperature": sampling_.arguments.get("temperature"), "top_p": sampling_.arguments.get("top_p"),
        "text": {"format": shown_format}, "tools": shown_tools, "truncation": truncation,
        "tool_choice": choice.mode if choice.mode != "function" else {"type": "function", "name": choice.name},
    }
    warnings = tuple(f"tools: the hosted tool {kind!r} runs only on OpenAI's servers; it was left out"
                     for kind in dict.fromkeys(hosted))
    if warnings:
        echo["warnings"] = list(warnings)
    return ResponsesRequest(ChatRequest(model_name(values), messages, sampling_, response_format=fmt,
                                        tools=tools, tool_choice=choice, parallel_tool_calls=parallel,
                                        warnings=warnings, template_kwargs=kwargs, thinking=thinking), echo)


# -- what the API answers ------------------------------------------------------------------------

@dataclass(frozen=True)
class ResponseShell:
    """What every response object of one request (in every event of its stream) shares."""
    id: str
    created_at: int
    model: str
    echo: dict[str, Any]

    def response(self, status: str, output: list[dict[str, Any]] | None = None,
                 usage: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"id": self.id, "object": "response", "created_at": self.created_at, "status": status,
                "error": None,
                "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
                "model": self.model, "output": output or [], "usage": usage, **self.echo}


def response_usage(stats: dict[str, Any]) -> dict[str, Any]:
    prompt, completion = stats["prompt_tokens"], stats["completion_tokens"]
    return {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": stats.get("cached_tokens", 0)},
            "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": stats.get("reasoning_tokens", 0)},
            "total_tokens": prompt + completion}


def output_text(text_: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text_, "annotations": [], "logprobs": []}


def message_item(item_id: str, texts: list[str], status: str) -> dict[str, Any]:
    return {"id": item_id, "type": "message", "role": "assistant", "status": status,
            "content": [output_text(t) for t in texts]}


def reasoning_item(item_id: str, text_: str | None, status: str) -> dict[str, Any]:
    """A reasoning item; its text as `reasoning_text` content (what open-weight models think
    is shown, not summarized)."""
    content = [] if text_ is None else [{"type": "reasoning_text", "text": text_}]
    return {"id": item_id, "type": "reasoning", "status": status, "summary": [], "content": content}


def function_call_item(item_id: str, call: ToolCall, status: str, arguments: str | None = None) -> dict[str, Any]:
    return {"id": item_id, "type": "function_call", "call_id": call.id, "name": call.name,
            "arguments": call.arguments if arguments is None else arguments, "status": status}
