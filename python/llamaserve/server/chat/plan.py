"""Planning a chat request for the model it leased: the prompt (its chat template), the tool
format of that template, the grammar (structured output, or a forced call in the format's
own syntax) and the engine arguments of each choice."""
from __future__ import annotations

import asyncio
import json
import functools
import re
from dataclasses import dataclass, replace
from typing import Any

from llamaserve.config import ServerConfig
from llamaserve.engine import Prompt
from llamaserve.errors import InvalidRequest
from llamaserve.generation_params import SEED_MAX
from llamaserve.hosting.loaded import LoadedModel
from llamaserve.json_grammar import SchemaError, json_object_grammar, schema_to_grammar
from llamaserve.server.chat import prompt as prompts
from llamaserve.server.chat.formats import GenericJson, OutputParser, PlainText, ToolFormat, format_for
from llamaserve.server.chat.formats.collect import Parser
from llamaserve.server.chat.formats.reasoning import ReasoningSplit, ThinkingMarkers, markers_for, opens_thinking
from llamaserve.server.chat.request import ChatRequest
from llamaserve.server.chat.thinking import Thinking
from llamaserve.server.chat.tools import Tool
from llamaserve.server.errors import invalid


@dataclass(frozen=True)
class ChatPlan:
    model: LoadedModel  # leased by the request; nothing after planning looks a model up by name
    prompt: Prompt
    arguments: list[dict[str, Any]]  # engine arguments per choice
    tools: list[Tool]  # the tools the model may call ([] with tool_choice none)
    format: ToolFormat
    parallel_tool_calls: bool
    top_logprobs: int | None  # None: no logprobs
    warnings: tuple[str, ...] = ()
    thinking: ThinkingMarkers | None = None  # the template's thinking markers (reasoning split apart)
    thinking_open: bool = False  # the prompt opened the thinking block: the reply starts inside it
    thinking_split: bool = True  # --reasoning-format auto (none: reasoning stays in the content)

    def parser(self) -> Parser:
        """A fresh output parser for one choice's reply: reasoning apart, then tool calls."""
        reads = self.tools or (self.format.reads_reasoning and self.thinking_split)
        calls: Parser = OutputParser(self.format, self.tools, self.parallel_tool_calls) if reads else PlainText()
        if self.thinking is None:
            return calls
        return ReasoningSplit(calls, self.thinking, self.thinking_open)


def _grammar(req: ChatRequest, fmt: ToolFormat) -> str | None:
    if req.tool_choice.forced:
        try:
            return fmt.call_grammar(req.tools, req.tool_choice, req.parallel_tool_calls)
        except SchemaError as exc:
            raise invalid(f"tools: {exc}") from None
    if req.response_format.type == "json_object":
        return json_object_grammar()
    if req.response_format.type == "json_schema":
        try:
            return schema_to_grammar(req.response_format.schema)
        except SchemaError as exc:
            raise invalid(f"response_format.json_schema.schema: {exc}") from None
    return None


# Marker-like strings in a template: <|x|>, <｜x｜>, [X], <x>, </x>.
_MARKER = re.compile(r"<\|[^|<>\s]{1,40}\|>|<｜[^｜\s]{1,40}｜>|\[/?[A-Z_]{2,24}\]|</?[A-Za-z_][\w:.-]{1,30}>")
@functools.lru_cache(maxsize=64)
def template_markers(source: str | None) -> tuple[str, ...]:
    """The marker-like strings a chat template writes: where a model's tool-call and thinking
    markers are found (a template shows earlier calls and thoughts in its own syntax)."""
    return tuple(dict.fromkeys(_MARKER.findall(source or "")))


async def _prepared(model: LoadedModel, arguments: dict[str, Any], grammar_field: str) -> dict[str, Any]:
    """The engine arguments with their heavy work done once, off the loop, for every choice:
    the grammar compiled (refused here, named as the field it came from), the prediction
    tokenized."""
    try:
        return await model.engine.aprepare(arguments)
    except InvalidRequest as exc:
        message = str(exc)
        if message.startswith("grammar: ") and grammar_field != "grammar":  # a grammar the plan wrote
            raise invalid(f"{grammar_field}: the grammar it needs is refused: {message[len('grammar: '):]}") from None
        raise


def control_tokens(engine: Any, markers: tuple[str, ...]) -> list[int]:
    """The markers that are single control tokens of this model's vocabulary (as text they
    would come out as nothing): the engine writes these out for the parser."""
    found = []
    for marker in markers:
        tokens = engine.tokenize(marker, add_special=False, parse_special=True)
        if len(tokens) == 1 and tokens != engine.tokenize(marker, add_special=False, parse_special=False):
            found.append(tokens[0])
    return found


def choice_arguments(arguments: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """Per-choice engine arguments: with a seed, choice i gets seed + i."""
    if "seed" not in arguments:
        return [dict(arguments) for _ in range(n)]
    return [{**arguments, "seed": (arguments["seed"] + i) % (SEED_MAX + 1)} for i in range(n)]


def _thinking(req: ChatRequest, config: ServerConfig) -> Thinking:
    """The request's reasoning settings; thinking on or off as the server's --reasoning says when
    the request does not say."""
    if req.thinking.enabled is not None:
        return req.thinking
    return replace(req.thinking, enabled=config.reasoning != "off")


def _budget(req: ChatRequest, config: ServerConfig) -> int:
    """Most thinking tokens: the request's and the server's, the smaller; 0 when thinking is off
    (a template that always opens it is closed at once); -1: no limit."""
    thinking = _thinking(req, config)
    if thinking.enabled is False:
        return 0
    limits = [b for b in (thinking.budget, config.reasoning_budget) if b is not None and b >= 0]
    return min(limits) if limits else -1


def _template_kwargs(req: ChatRequest, config: ServerConfig, fmt: ToolFormat) -> dict[str, Any]:
    """The variables the tool format's templates need, the server's --chat-template-kwargs, what
    the reasoning settings mean for the template, and its own chat_template_kwargs, the last winning."""
    server = json.loads(config.chat_template_kwargs) if config.chat_template_kwargs else {}
    return {**fmt.template_variables(req.offered_tools), **server, **_thinking(req, config).template_kwargs(),
            **req.template_kwargs}


async def plan(req: ChatRequest, model: LoadedModel, config: ServerConfig, *, as_tokens: bool = False) -> ChatPlan:
    """The plan of `req` on the leased `model`; `as_tokens`: the prompt as token ids (to count them)."""
    template = await prompts.template_of(model)
    # A template that cannot show tools gets them in the system prompt, asking for a JSON call.
    fmt = format_for(template.source) if template.supports_tools else GenericJson()
    grammar = await asyncio.to_thread(_grammar, req, fmt)  # a big schema takes a while to compile
    prompt, tail = await prompts.render(model, template, req, _template_kwargs(req, config, fmt), as_tokens)
    thinking = markers_for(template.source) if config.reasoning_format == "auto" else None
    if thinking is not None and fmt.reads_reasoning:
        thinking = None  # the format's own reader finds the reasoning (channels)
    arguments = {**config.request_defaults, **req.sampling.arguments}
    split = config.reasoning_format == "auto"
    # Markers the parser reads must reach it as text; the template's end-of-turn strings stop
    # the text, unless the format reads them (harmony's <|end|> between channels).
    read = (*(fmt.preserved if req.offered_tools or (split and fmt.reads_reasoning) else ()),
            *((thinking.opener, thinking.closer) if thinking is not None else ()))
    ends = [s for s in template.stop if s not in read]
    arguments["stop"] = list(dict.fromkeys([*arguments.get("stop", []), *ends]))
    # With tools, every marker the template writes (the format's, wherever they are listed).
    if preserved := control_tokens(model.engine, (*read, *(template_markers(template.source) if req.offered_tools else ()))):
        arguments["preserved_tokens"] = preserved
    if grammar is not None:
        arguments["grammar"] = grammar
    if req.logprobs:
        arguments["logprobs"] = req.top_logprobs
    opened = thinking is not None and opens_thinking(tail, thinking)
    if thinking is not None:  # the engine counts the thinking, and ends it at its budget
        arguments.update(reasoning_start=thinking.opener, reasoning_end=thinking.closer, reasoning_open=opened,
                         reasoning_budget=_budget(req, config))
    grammar_field = "tools" if req.tool_choice.forced else "response_format" if grammar is not None else "grammar"
    arguments = await _prepared(model, arguments, grammar_field)
    return ChatPlan(model, prompt, choice_arguments(arguments, req.sampling.n), req.offered_tools, fmt,
                    req.parallel_tool_calls, req.top_logprobs if req.logprobs else None, req.warnings,
                    thinking, opened, split)
