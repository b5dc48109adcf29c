"""The streaming output parser with the generic format (templates that cannot show tools, and
unknown call syntaxes) and Hermes' tags: calls recognized in the forms models write, the
same events whole or in any piece boundaries, arguments streamed while generated, text never
held longer than it may be a call, and the grammar that forces a call."""
from __future__ import annotations

import json
import random

import jsonschema
import pytest
from gbnf import Grammar

from llamaserve.server.chat.formats import GenericJson, Hermes, OutputParser, PlainText, format_for
from llamaserve.server.chat.formats.collect import Collected, parse_whole
from llamaserve.server.chat.formats.events import CallArguments, CallStart, MalformedCall, TextDelta
from llamaserve.server.chat.formats.grammar import call_schema, json_call_grammar, wrapped_json_call_grammar
from llamaserve.server.chat.tools import Tool, ToolChoice

WEATHER = Tool("get_weather", "Weather of a city", {
    "type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["C", "F"]}},
    "required": ["city"]})
TIME = Tool("get_time", None, None)
TOOLS = [WEATHER, TIME]


def fed_in_pieces(fmt, text: str, seed: int, tools=TOOLS, parallel=True) -> tuple[Collected, list]:
    rnd, parser, collected, events, i = random.Random(seed), OutputParser(fmt, tools, parallel), Collected(), [], 0
    while i < len(text):
        k = rnd.randint(1, 6)
        events += parser.feed(text[i:i + k])
        i += k
    events += parser.finish()
    collected.add(events)
    return collected, events


def calls_of(collected: Collected) -> list[tuple[str, dict]]:
    return [(c.name, json.loads(c.arguments)) for c in collected.calls]


@pytest.mark.parametrize(("text", "content", "calls"), [
    ('{"name": "get_weather", "arguments": {"city": "Paris"}}', None, [("get_weather", {"city": "Paris"})]),
    ('{"name": "get_weather", "parameters": {"city": "Oslo"}}', None, [("get_weather", {"city": "Oslo"})]),
    ('{"name": "get_weather", "arguments": "{\\"city\\": \\"Rome\\"}"}', None, [("get_weather", {"city": "Rome"})]),
    ('{"arguments": {"city": "Nice"}, "name": "get_weather"}', None, [("get_weather", {"city": "Nice"})]),
    ('[{"name": "get_time", "arguments": {}}, {"name": "get_weather", "arguments": {"city": "Lima"}}]', None,
     [("get_time", {}), ("get_weather", {"city": "Lima"})]),
    ('Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
     "Let me check.", [("get_weather", {"city": "Paris"})]),
    ('<tool_call>{"name": "get_time", "arguments": {}}</tool_call><tool_call>{"name": "get_weather", '
     '"arguments": {"city": "Bern"}}</tool_call>', None, [("get_time", {}), ("get_weather", {"city": "Bern"})]),
    ('<tool_call>\n{"name": "get_time", "arguments": {}}', None, [("get_time", {})]),  # ended at EOS
    ('```json\n{"name": "get_weather", "arguments": {"city": "Paris", "unit": "C"}}\n```', None,
     [("get_weather", {"city": "Paris", "unit": "C"})]),
    ('```tool_code\nget_weather(city="Paris", unit="F")\n```', None,
     [("get_weather", {"city": "Paris", "unit": "F"})]),
    ('[get_time(), get_weather(city="Kyiv")]', None, [("get_time", {}), ("get_weather", {"city": "Kyiv"})]),
    ('{"type": "function", "function": {"name": "get_time", "arguments": {}}}', None, [("get_time", {})]),
    ('{"name": "get_weather", "arguments": {"city": "Zürich \\"Ost\\"", "nested": {"a": [1, {"b": null}]}}}', None,
     [("get_weather", {"city": 'Zürich "Ost"', "nested": {"a": [1, {"b": None}]}})]),
])
def test_calls_are_recognized_whole_and_in_any_pieces(text, content, calls):
    whole = parse_whole(OutputParser(GenericJson(), TOOLS), text)
    assert whole.content == content and calls_of(whole) == calls
    assert all(c.id.startswith("call_") and len(c.id) > 20 for c in whole.calls)
    for seed in range(8):
        pieces, _ = fed_in_pieces(GenericJson(), text, seed)
        assert (pieces.content, calls_of(pieces)) == (content, calls)


@pytest.mark.parametrize("text", [
    "The weather in Paris is sunny.",
    '{"name": "launch_missiles", "arguments": {}}',  # not an offered tool
    '{"answer": 42}',
    "get_weather(__import__('os').system('id'))",  # only literal arguments, never evaluated
    "<tool_call>not json</tool_call>",
    "[1, 2, 3]",
    "Use ```python\nprint(1)\n``` for that.",
    "</tool_call>",
    "[" * 1100,  # no recursion on model output
])
def test_what_is_no_call_stays_text(text):
    assert parse_whole(OutputParser(GenericJson(), TOOLS), text).content == text
    for seed in range(4):
        pieces, _ = fed_in_pieces(GenericJson(), text, seed)
        assert pieces.content == text and pieces.calls == []


@pytest.mark.parametrize("text", [
    '{"name": "get_weather", "arguments": [1, 2]}',  # arguments must be an object
    '{"name": "get_weather", "arguments": {"city": "Par',  # cut off
    '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}} trailing</tool_call>',
    '{"name": "get_weather", "arguments": ' + "[" * 1100,
])
def test_a_started_call_that_cannot_finish_is_malformed_streamed_and_text_whole(text):
    assert parse_whole(OutputParser(GenericJson(), TOOLS), text).content == text
    with pytest.raises(MalformedCall):
        fed_in_pieces(GenericJson(), text, 0)


def test_arguments_stream_as_they_are_generated():
    text = '{"name": "get_weather", "arguments": {"city": "Paris", "unit": "C"}}'
    parser, seen = OutputParser(GenericJson(), TOOLS), []
    for i in range(0, len(text), 3):  # token-sized pieces
        seen.append(parser.feed(text[i:i + 3]))
    seen.append(parser.finish())
    flat = [e for step in seen for e in step]
    start = next(i for i, step in enumerate(seen) if any(isinstance(e, CallStart) for e in step))
    arguments = [e for e in flat if isinstance(e, CallArguments)]
    assert len(arguments) >= 5 and "".join(a.text for a in arguments) == '{"city": "Paris", "unit": "C"}'
    # the name goes out with the first piece of the arguments, and each later piece at once
    assert seen[start][0] == CallStart(0, seen[start][0].id, "get_weather")
    assert isinstance(seen[start][1], CallArguments)
    assert all(any(isinstance(e, CallArguments) for e in step) for step in seen[start + 1:-2])


def test_text_goes_out_at_once_and_only_a_possible_marker_is_held():
    parser = OutputParser(Hermes(), TOOLS)
    assert parser.feed("Hello") == [TextDelta("Hello")]
    assert parser.feed(" there <tool") == [TextDelta(" there")]  # " <tool" may begin a call
    assert parser.feed("box>") == [TextDelta(" <toolbox>")]


def test_parallel_tool_calls_false_reads_one_call_and_is_done():
    text = '<tool_call>{"name": "get_time", "arguments": {}}</tool_call><tool_call>{"name": "get_weather", ' \
           '"arguments": {"city": "Bern"}}</tool_call>'
    collected, _ = fed_in_pieces(Hermes(), text, 1, parallel=False)
    assert calls_of(collected) == [("get_time", {})]
    parser = OutputParser(Hermes(), TOOLS, parallel=False)
    parser.feed(text[:60])
    assert parser.done  # the engine may stop generating


def test_plain_text_parser_passes_everything():
    parser = PlainText()
    assert parser.feed("<tool_call>{") == [TextDelta("<tool_call>{")] and parser.finish() == []


def test_hermes_is_chosen_by_its_template_and_forces_its_own_tags():
    assert isinstance(format_for("{% if tools %}<tool_call>{{ x }}</tool_call>{% endif %}"), Hermes)
    assert isinstance(format_for("{{ messages }}"), GenericJson) and isinstance(format_for(None), GenericJson)
    grammar = Grammar(Hermes().call_grammar(TOOLS, ToolChoice("required"), True))
    sentence = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    assert grammar.accepts(sentence) and not grammar.accepts('{"name": "get_time", "arguments": {}}')
    assert calls_of(parse_whole(OutputParser(Hermes(), TOOLS), sentence)) == [("get_weather", {"city": "Paris"})]


def test_forcing_grammar_accepts_only_valid_calls():
    required = Grammar(json_call_grammar(TOOLS, ToolChoice("required")))
    assert required.accepts('{"name": "get_weather", "arguments": {"city": "Paris"}}')
    assert required.accepts('{"name": "get_weather", "arguments": {"city": "Paris", "unit": "F"}}')
    assert required.accepts('{"name": "get_time", "arguments": {}}')
    assert not required.accepts('{"name": "get_weather", "arguments": {}}')  # city is required
    assert not required.accepts('{"name": "get_weather", "arguments": {"city": "P", "unit": "K"}}')
    assert not required.accepts('{"name": "nope", "arguments": {}}')
    named = Grammar(json_call_grammar(TOOLS, ToolChoice("function", "get_time")))
    assert named.accepts('{"name": "get_time", "arguments": {}}')
    assert not named.accepts('{"name": "get_time", "arguments": {"any": [1]}}')  # no parameters: no arguments
    assert not named.accepts('{"name": "get_weather", "arguments": {"city": "Paris"}}')
    anything = Grammar(json_call_grammar([Tool("f", None, {"type": "object"})], ToolChoice("required")))
    assert anything.accepts('{"name": "f", "arguments": {"any": [1]}}')  # an open object schema
    tagged = Grammar(wrapped_json_call_grammar(TOOLS, ToolChoice("function", "get_time"), "<x>", "</x>"))
    assert tagged.accepts('<x>{"name": "get_time", "arguments": {}}</x>')


def test_call_schema_keeps_each_tools_definitions_apart():
    a = Tool("a", None, {"type": "object", "properties": {"x": {"$ref": "#/$defs/T"}}, "required": ["x"],
                         "$defs": {"T": {"type": "integer"}}})
    b = Tool("b", None, {"type": "object", "properties": {"x": {"$ref": "#/$defs/T"}}, "required": ["x"],
                         "$defs": {"T": {"type": "string"}}})
    schema = call_schema([a, b])
    jsonschema.validate({"name": "a", "arguments": {"x": 1}}, schema)
    jsonschema.validate({"name": "b", "arguments": {"x": "s"}}, schema)
    grammar = Grammar(json_call_grammar([a, b], ToolChoice("required")))
    assert grammar.accepts('{"name": "a", "arguments": {"x": 1}}')
    assert grammar.accepts('{"name": "b", "arguments": {"x": "s"}}')
    assert not grammar.accepts('{"name": "a", "arguments": {"x": "s"}}')
