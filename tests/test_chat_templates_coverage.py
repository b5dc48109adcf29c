"""Every vendored chat template, against the chat pipeline's parsers: each template that shows
tools has a reply format with synthesized replies (tests/test_tool_formats_json.py and
tests/test_tool_formats_markup.py) or is one of the Hermes family; and each thinking template
renders with thinking on and off, and reads a reply of reasoning, then text, then tool calls,
the same whole and in random pieces."""
from __future__ import annotations

import functools
import json
import random

import pytest

import test_tool_formats_json as json_formats
from format_cases import TEMPLATES, source
import test_tool_formats_markup as markup_formats
from llamaserve.server.chat.formats import Hermes, OutputParser, format_for
from llamaserve.server.chat.formats.collect import Collected
from llamaserve.server.chat.formats.reasoning import ReasoningSplit, markers_for, opens_thinking
from llamaserve.server.chat.templates import ChatTemplate

ALL = sorted(p.name for p in TEMPLATES.glob("*.jinja"))
WITH_TOOLS = [t for t in ALL if "tools" in source(t)]
HERMES = {*json_formats.HERMES, *markup_formats.HERMES}
CASES = {**{t: (json_formats.TOOLS, c) for t, c in json_formats.CASES.items()},
         **{t: (markup_formats.TOOLS, c) for t, c in markup_formats.CASES.items()}}
# Templates that mention tools but never let the model call one (documentation of a tool-less mode).
NO_CALL_SYNTAX = {"CohereForAI-c4ai-command-r-plus-tool_use.jinja"} - set(CASES)
THINKING = [t for t in ALL if markers_for(source(t)) is not None]
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Paris?"}]
REASONING = "The user wants the weather.\nI should call the tool."


@functools.lru_cache(maxsize=None)
def compiled(template: str) -> ChatTemplate:
    return ChatTemplate.from_source(source(template), bos_token="<s>", eos_token="</s>")


@pytest.mark.parametrize("template", WITH_TOOLS)
def test_every_template_with_tools_has_a_tested_reply_format(template):
    fmt = format_for(source(template))
    assert template in CASES or template in NO_CALL_SYNTAX or (template in HERMES and isinstance(fmt, Hermes)), \
        f"{template}: format {fmt.name} has no synthesized replies"


def render(template: str, **kwargs) -> str:
    return compiled(template).render(MESSAGES, kwargs=kwargs)


@pytest.mark.parametrize("template", THINKING)
def test_thinking_templates_render_with_thinking_on_and_off(template):
    markers = markers_for(source(template))
    on, off = render(template, enable_thinking=True, thinking=True), render(template, enable_thinking=False, thinking=False)
    assert on and off
    if opens_thinking(off, markers):  # a template that cannot switch thinking off opens it both ways
        assert opens_thinking(on, markers)


@functools.lru_cache(maxsize=None)
def starts_open(template: str) -> bool:
    return opens_thinking(render(template), markers_for(source(template)))


def read(template: str, tools, reply: str, pieces: int | None) -> Collected:
    markers, open_ = markers_for(source(template)), starts_open(template)
    parser = ReasoningSplit(OutputParser(format_for(source(template)), tools), markers, open_)
    collected, rnd, i = Collected(), random.Random(pieces), 0
    text = ("" if open_ else markers.opener + "\n") + REASONING + "\n" + markers.closer + "\n\n" + reply
    while i < len(text):
        k = len(text) if pieces is None else rnd.randint(1, 6)
        collected.add(parser.feed(text[i:i + k]))
        i += k
    collected.add(parser.finish())
    return collected


@pytest.mark.parametrize(("template", "index"), [
    pytest.param(t, i, id=f"{t}-{i}") for t in THINKING if t in CASES for i in range(len(CASES[t][1]))])
def test_reasoning_then_text_then_calls_read_the_same_whole_and_in_pieces(template, index):
    tools, cases = CASES[template]
    reply, content, calls = cases[index]
    for pieces in (None, 1, 2, 3):
        collected = read(template, tools, reply, pieces)
        assert "".join(collected.reasoning) == REASONING
        assert collected.content == content
        assert [(c.name, json.loads(c.arguments)) for c in collected.calls] == calls
