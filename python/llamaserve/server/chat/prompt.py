"""A chat request's prompt: the leased model's chat template (compiled once per model),
rendered off the event loop in an executor of its own (a slow or runaway template, stopped
by its time limit in templates.py, never holds the threads other routes use), with the tools
shown by the template or described in the system prompt; message text is never read as
control tokens."""
from __future__ import annotations

import asyncio
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from llamaserve.engine import Prompt
from llamaserve.hosting.loaded import LoadedModel
from llamaserve.server.chat.request import ChatRequest
from llamaserve.server.chat.templates import (
    MAX_RENDERED_CHARS, ChatTemplate, PromptTooLong, TemplateFailed, TemplateRaised, template_for_engine)
from llamaserve.server.chat.tools import tools_system_prompt
from llamaserve.server.errors import ApiError, invalid
from llamaserve.server.generation import LONG_PROMPT

_RENDERERS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="chat-template")
_TEMPLATES: weakref.WeakKeyDictionary[LoadedModel, ChatTemplate | TemplateFailed] = weakref.WeakKeyDictionary()
# Roles whose text is the user's (or a tool's) words, never the model's own markup.
_PROTECTED_ROLES = frozenset({"system", "user", "tool"})
_HOLE = "\ue000{}\ue001"  # a private-use placeholder for a protected text while rendering
TAIL_CHARS = 256


def template_error(exc: TemplateFailed) -> ApiError:
    return ApiError(500, "CHAT_TEMPLATE_ERROR", f"the model's chat template failed: {exc}",
                    "fix or replace the model's tokenizer.chat_template")


def _compiled(model: LoadedModel) -> ChatTemplate | TemplateFailed:
    try:
        return template_for_engine(model.engine, override=model.chat_template)  # models config
    except TemplateFailed as exc:
        return exc


async def template_of(model: LoadedModel) -> ChatTemplate:
    """The model's chat template, compiled once (a big Jinja template takes a while); a
    broken one fails every chat request."""
    cached = _TEMPLATES.get(model)
    if cached is None:
        cached = _TEMPLATES[model] = await asyncio.get_running_loop().run_in_executor(_RENDERERS, _compiled, model)
    if isinstance(cached, TemplateFailed):
        raise template_error(cached)
    return cached


def _with_tools_prompt(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For templates that cannot show tools: describe them in the system message."""
    prompt = tools_system_prompt(tools)
    if messages and messages[0]["role"] == "system":
        return [{**messages[0], "content": f"{messages[0]['content']}\n\n{prompt}"}, *messages[1:]]
    return [{"role": "system", "content": prompt}, *messages]


def _holds_control_tokens(engine: Any, text: str) -> bool:
    return engine.tokenize(text, add_special=False, parse_special=True) != engine.tokenize(
        text, add_special=False, parse_special=False)


def _protect(engine: Any, messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Messages whose text would tokenize into control tokens (a user typing <|im_start|>)
    get a placeholder instead, to be tokenized as plain text after rendering."""
    holes: dict[str, str] = {}
    out = []
    for m in messages:
        content = m.get("content")
        if m["role"] in _PROTECTED_ROLES and isinstance(content, str) and content and \
                _holds_control_tokens(engine, content):
            hole = _HOLE.format(len(holes))
            holes[hole] = content
            m = {**m, "content": hole}
        out.append(m)
    return out, holes


def _tokenized(engine: Any, rendered: str, holes: dict[str, str]) -> list[int]:
    """The rendered prompt as tokens: the template's text with control tokens parsed, each
    protected text without."""
    tokens: list[int] = []
    rest, first = rendered, True
    while rest:
        at, hole = min(((rest.find(h), h) for h in holes if h in rest), default=(-1, ""))
        head = rest if at < 0 else rest[:at]
        if head:
            tokens += engine.tokenize(head, add_special=first, parse_special=True)
            first = False
        if at < 0:
            break
        tokens += engine.tokenize(holes[hole], add_special=False, parse_special=False)
        rest = rest[at + len(hole):]
    return tokens


def _render(model: LoadedModel, template: ChatTemplate, req: ChatRequest, kwargs: dict[str, Any],
            as_tokens: bool) -> tuple[Prompt, str]:
    messages = req.messages
    if sum(len(m.get("content") or "") for m in messages) > MAX_RENDERED_CHARS:  # before any work on it
        raise PromptTooLong(f"the conversation makes a prompt of over {MAX_RENDERED_CHARS} characters")
    tools = [t.to_openai() for t in req.offered_tools] or None
    if tools and not template.supports_tools:
        messages, tools = _with_tools_prompt(messages, tools), None
    continued = req.continued
    if continued is not None:  # the conversation before it, the reply's opening, then its text
        messages = messages[:-1]
    messages, holes = _protect(model.engine, messages)
    rendered = template.render(messages, tools=tools, kwargs=kwargs,
                               add_generation_prompt=req.add_generation_prompt or continued is not None)
    if continued is not None:
        rendered, holes = _continue(model.engine, rendered, continued, holes)
    tail = rendered[-TAIL_CHARS:]
    if holes:
        return _tokenized(model.engine, rendered, holes), tail
    # A long prompt is tokenized here too: the engine would do it on the event loop.
    return (model.engine.tokenize(rendered) if as_tokens or len(rendered) >= LONG_PROMPT else rendered), tail


def _continue(engine: Any, rendered: str, text: str, holes: dict[str, str]) -> tuple[str, dict[str, str]]:
    """`rendered` followed by `text`, kept from becoming control tokens as any message is."""
    if not _holds_control_tokens(engine, text):
        return rendered + text, holes
    hole = _HOLE.format(len(holes))
    return rendered + hole, {**holes, hole: text}


async def render(model: LoadedModel, template: ChatTemplate, req: ChatRequest, kwargs: dict[str, Any],
                 as_tokens: bool = False) -> tuple[Prompt, str]:
    """The prompt of `req` for the leased model: text, or tokens (always with `as_tokens`;
    where message text had to be kept from becoming control tokens; for a long prompt); and
    the end of its text (where the generation prompt may have opened a thinking block)."""
    try:
        return await asyncio.get_running_loop().run_in_executor(_RENDERERS, _render, model, template, req, kwargs,
                                                                as_tokens)
    except TemplateRaised as exc:
        raise invalid(f"messages: {exc}" if str(exc).startswith("the conversation")
                      else f"messages: the model's chat template refused them: {exc}") from None
    except TemplateFailed as exc:
        raise template_error(exc) from None
