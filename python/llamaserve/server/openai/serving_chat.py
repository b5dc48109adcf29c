"""/v1/chat/completions: a request becomes a prompt (the model's chat template) and engine
arguments (stop strings, grammar for response_format or a forced tool call); engine output
becomes a chat.completion or a stream of chat.completion.chunk events."""
from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from llamaserve.chat import ChatTemplate, TemplateFailed, TemplateRaised, template_for_engine
from llamaserve.errors import EngineError
from llamaserve.json_grammar import SchemaError, json_object_grammar, schema_to_grammar
from llamaserve.server import sse
from llamaserve.server.errors import ApiError, invalid, to_api_error
from llamaserve.server.openai.errors import openai_body
from llamaserve.hosting.loaded import LoadedModel
from llamaserve.server.openai.chat_protocol import ChatRequest
from llamaserve.server.openai.choices import Output, Run, choice_arguments, finish_reason
from llamaserve.server.openai.logprobs import TokenText, chat_logprobs
from llamaserve.server.openai.responses import Envelope, chat_choice, chat_delta
from llamaserve.server.usage import drafts, usage
from llamaserve.tool_calls import Tool, call_grammar, may_become_call, parse_tool_calls, tools_system_prompt

_TEMPLATES: weakref.WeakKeyDictionary[LoadedModel, ChatTemplate | TemplateFailed] = weakref.WeakKeyDictionary()
_TEXTS: weakref.WeakKeyDictionary[LoadedModel, TokenText] = weakref.WeakKeyDictionary()


def template_error(exc: TemplateFailed) -> ApiError:
    return ApiError(500, "CHAT_TEMPLATE_ERROR", f"the model's chat template failed: {exc}",
                    "fix or replace the model's tokenizer.chat_template")


def _compiled(model: LoadedModel) -> ChatTemplate | TemplateFailed:
    try:
        return template_for_engine(model.engine, override=model.chat_template)  # models config
    except TemplateFailed as exc:
        return exc


async def template_of(model: LoadedModel) -> ChatTemplate:
    """The model's chat template, compiled once, in a thread (a big Jinja template takes a
    while); a broken one fails every chat request."""
    cached = _TEMPLATES.get(model)
    if cached is None:
        cached = _TEMPLATES[model] = await asyncio.to_thread(_compiled, model)
    if isinstance(cached, TemplateFailed):
        raise template_error(cached)
    return cached


def token_text(model: LoadedModel) -> TokenText:
    text = _TEXTS.get(model)
    if text is None:
        text = _TEXTS[model] = TokenText(model.engine)
    return text


@dataclass(frozen=True)
class ChatPlan:
    prompt: str
    arguments: list[dict[str, Any]]  # engine arguments per choice
    tools: list[Tool]
    tool_mode: str  # none | auto | forced
    top_logprobs: int | None  # None: no logprobs


def _grammar(req: ChatRequest) -> str | None:
    if req.tool_choice.mode in ("required", "function"):
        try:
            return call_grammar(req.tools, req.tool_choice)
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


def _with_tools_prompt(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For templates that cannot show tools: describe them in the system message."""
    prompt = tools_system_prompt(tools)
    if messages and messages[0]["role"] == "system":
        return [{**messages[0], "content": f"{messages[0]['content']}\n\n{prompt}"}, *messages[1:]]
    return [{"role": "system", "content": prompt}, *messages]


async def render(template: ChatTemplate, req: ChatRequest) -> str:
    tools = [t.to_openai() for t in req.tools] if req.tool_choice.mode != "none" else None
    messages = req.messages
    if tools and not template.supports_tools:
        messages, tools = _with_tools_prompt(messages, tools), None
    try:  # a thread: a slow template must not stall the event loop
        return await asyncio.to_thread(template.render, messages, tools=tools)
    except TemplateRaised as exc:
        raise invalid(f"messages: the model's chat template refused them: {exc}") from None
    except TemplateFailed as exc:
        raise template_error(exc) from None


async def plan(req: ChatRequest, model: LoadedModel, default_max_tokens: int) -> ChatPlan:
    template = await template_of(model)
    grammar = _grammar(req)
    prompt = await render(template, req)
    arguments = {"max_tokens": default_max_tokens, **req.sampling.arguments}
    arguments["stop"] = list(dict.fromkeys([*arguments.get("stop", []), *template.stop]))
    if grammar is not None:
        arguments["grammar"] = grammar
    if req.logprobs:
        arguments["logprobs"] = req.top_logprobs
    mode = {"none": "none", "auto": "auto"}.get(req.tool_choice.mode, "forced")
    return ChatPlan(prompt, choice_arguments(arguments, req.sampling.n), req.tools, mode,
                    req.top_logprobs if req.logprobs else None)


# -- results --------------------------------------------------------------------------------------

def _usage(outputs: list[Output]) -> dict[str, int]:
    stats = [o.stats for o in outputs if o.stats is not None]
    return usage(max((s["prompt_tokens"] for s in stats), default=0), sum(s["completion_tokens"] for s in stats),
                 max((s["cached_tokens"] for s in stats), default=0), drafts(stats))


def body(env: Envelope, chat: ChatPlan, outputs: list[Output], text_of: TokenText) -> dict[str, Any]:
    choices = []
    for i, out in enumerate(outputs):
        assert out.stats is not None
        content: str | None = out.joined
        calls = []
        if chat.tool_mode != "none":
            content, calls = parse_tool_calls(out.joined, chat.tools)
        logprobs = None if chat.top_logprobs is None else chat_logprobs(out.logprobs, text_of, chat.top_logprobs)
        choices.append(chat_choice(i, content, "tool_calls" if calls else finish_reason(out.stats),
                                   tool_calls=[c.to_openai() for c in calls], logprobs=logprobs))
    return env.chat(choices, _usage(outputs))


class ChatEvents:
    """The SSE events of a streamed chat completion; aclose() ends the run even if the
    stream was never iterated."""

    def __init__(self, run: Run, env: Envelope, chat: ChatPlan, include_usage: bool, text_of: TokenText) -> None:
        self.run, self.env, self.chat = run, env, chat
        self.include_usage = include_usage
        self.text_of = text_of
        self._iterator: AsyncIterator[bytes] | None = None
        self._content_event = sse.ChoiceTextEvents(
            lambda i: env.chat_chunk([chat_delta(i, {"content": sse.TEXT_HOLE})]))

    def __aiter__(self) -> AsyncIterator[bytes]:
        self._iterator = self._iterate()
        return self._iterator

    def _content_chunk(self, i: int, text: str, records: list[Any]) -> bytes:
        if self.chat.top_logprobs is not None:
            return self._chunk(i, {"content": text}, records=records)
        return self._content_event(i, text)

    def _chunk(self, i: int, delta: dict[str, Any], reason: str | None = None,
               records: list[Any] | None = None) -> bytes:
        logprobs = None
        if self.chat.top_logprobs is not None and records is not None:
            logprobs = chat_logprobs(records, self.text_of, self.chat.top_logprobs)
        return sse.event(self.env.chat_chunk([chat_delta(i, delta, reason, logprobs)]))

    async def _iterate(self) -> AsyncIterator[bytes]:
        n = len(self.run.generations)
        outputs = [Output() for _ in range(n)]
        held: list[list[str]] = [[] for _ in range(n)]
        held_records: list[list[Any]] = [[] for _ in range(n)]
        holding = [self.chat.tool_mode != "none"] * n
        for i in range(n):
            yield self._chunk(i, {"role": "assistant", "content": ""})
        try:
            async for i, pieces, records, stats in self.run.events():
                outputs[i].stats = stats
                text = "".join(pieces)
                if holding[i]:
                    held[i].append(text)
                    held_records[i].extend(records)
                    so_far = "".join(held[i])
                    if self.chat.tool_mode == "forced" or may_become_call(so_far, self.chat.tools):
                        if stats is None:
                            continue
                        yield self._finish_held(i, so_far, held_records[i], stats)
                        continue
                    holding[i] = False  # plain content after all: let it out
                    text, records = so_far, held_records[i]
                if text or records:
                    yield self._content_chunk(i, text, records)
                if stats is not None:
                    yield self._chunk(i, {}, finish_reason(stats))
            if self.include_usage:
                yield sse.event(self.env.chat_chunk([], _usage(outputs)))
        except EngineError as exc:  # failed mid-stream: the status line is long sent
            yield sse.event(openai_body(to_api_error(exc)))
        yield b"data: [DONE]\n\n"

    def _finish_held(self, i: int, text: str, records: list[Any], stats: dict[str, Any]) -> bytes:
        content, calls = parse_tool_calls(text, self.chat.tools)
        if not calls:
            out = self._chunk(i, {"content": text}, records=records) if text else b""
            return out + self._chunk(i, {}, finish_reason(stats))
        delta: dict[str, Any] = {"tool_calls": [{"index": k, **c.to_openai()} for k, c in enumerate(calls)]}
        if content:
            delta["content"] = content
        return self._chunk(i, delta) + self._chunk(i, {}, "tool_calls")

    async def aclose(self) -> None:
        if self._iterator is not None:
            await self._iterator.aclose()  # type: ignore[attr-defined]
        self.run.close()
