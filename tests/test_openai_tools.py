"""Tool calling pieces on their own: recognizing calls in model output (the forms models
write), the grammar that forces a call, and the streaming hold-back rule."""
from __future__ import annotations

import json

import jsonschema
import pytest
from gbnf import Grammar

from llamaserve.tool_calls import Tool, ToolChoice, call_grammar, call_schema, may_become_call, parse_tool_calls

WEATHER = Tool("get_weather", "Weather of a city", {
    "type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["C", "F"]}},
    "required": ["city"]})
TIME = Tool("get_time", None, None)
TOOLS = [WEATHER, TIME]


@pytest.mark.parametrize(("text", "content", "calls"), [
    ('{"name": "get_weather", "arguments": {"city": "Paris"}}', None, [("get_weather", {"city": "Paris"})]),
    ('{"name": "get_weather", "parameters": {"city": "Oslo"}}', None, [("get_weather", {"city": "Oslo"})]),
    ('{"name": "get_weather", "arguments": "{\\"city\\": \\"Rome\\"}"}', None, [("get_weather", {"city": "Rome"})]),
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
])
def test_calls_are_recognized(text, content, calls):
    found_content, found = parse_tool_calls(text, TOOLS)
    assert found_content == content
    assert [(c.name, json.loads(c.arguments)) for c in found] == calls
    assert all(c.id.startswith("call_") and len(c.id) > 20 for c in found)
    assert len({c.id for c in found}) == len(found)


@pytest.mark.parametrize("text", [
    "The weather in Paris is sunny.",
    '{"name": "launch_missiles", "arguments": {}}',  # not an offered tool
    '{"name": "get_weather", "arguments": [1, 2]}',  # arguments must be an object
    '{"answer": 42}',
    "get_weather(__import__('os').system('id'))",  # only literal arguments, never evaluated
    "<tool_call>not json</tool_call>",
    "[1, 2, 3]",
])
def test_plain_text_is_not_a_call(text):
    assert parse_tool_calls(text, TOOLS) == (text, [])


def test_call_to_openai_shape():
    (call,) = parse_tool_calls('{"name": "get_weather", "arguments": {"city": "Zürich"}}', TOOLS)[1]
    shape = call.to_openai()
    assert shape["type"] == "function" and shape["function"]["name"] == "get_weather"
    assert json.loads(shape["function"]["arguments"]) == {"city": "Zürich"}  # a JSON string, unicode kept


def test_forcing_grammar_accepts_only_valid_calls():
    required = Grammar(call_grammar(TOOLS, ToolChoice("required")))
    assert required.accepts('{"name": "get_weather", "arguments": {"city": "Paris"}}')
    assert required.accepts('{"name": "get_weather", "arguments": {"city": "Paris", "unit": "F"}}')
    assert required.accepts('{"name": "get_time", "arguments": {}}')
    assert not required.accepts('{"name": "get_weather", "arguments": {}}')  # city is required
    assert not required.accepts('{"name": "get_weather", "arguments": {"city": "P", "unit": "K"}}')
    assert not required.accepts('{"name": "nope", "arguments": {}}')
    named = Grammar(call_grammar(TOOLS, ToolChoice("function", "get_time")))
    assert named.accepts('{"name": "get_time", "arguments": {}}')
    assert not named.accepts('{"name": "get_time", "arguments": {"any": [1]}}')  # no parameters: no arguments
    assert not named.accepts('{"name": "get_weather", "arguments": {"city": "Paris"}}')
    anything = Grammar(call_grammar([Tool("f", None, {"type": "object"})], ToolChoice("required")))
    assert anything.accepts('{"name": "f", "arguments": {"any": [1]}}')  # an open object schema


def test_call_schema_keeps_each_tools_definitions_apart():
    a = Tool("a", None, {"type": "object", "properties": {"x": {"$ref": "#/$defs/T"}}, "required": ["x"],
                         "$defs": {"T": {"type": "integer"}}})
    b = Tool("b", None, {"type": "object", "properties": {"x": {"$ref": "#/$defs/T"}}, "required": ["x"],
                         "$defs": {"T": {"type": "string"}}})
    schema = call_schema([a, b])
    jsonschema.validate({"name": "a", "arguments": {"x": 1}}, schema)
    jsonschema.validate({"name": "b", "arguments": {"x": "s"}}, schema)
    grammar = Grammar(call_grammar([a, b], ToolChoice("required")))
    assert grammar.accepts('{"name": "a", "arguments": {"x": 1}}')
    assert grammar.accepts('{"name": "b", "arguments": {"x": "s"}}')
    assert not grammar.accepts('{"name": "a", "arguments": {"x": "s"}}')


@pytest.mark.parametrize(("text", "held"), [
    ("", True), ("  ", True), ("{", True), ('{"name"', True), ("<tool", True), ("<tool_call>", True),
    ("``", True), ("[get_", True), ("get_wea", True), ("get_weather(", True),
    ("Hello", False), ("The answer", False), ("<b>", False), ("get_weather is", False),
])
def test_streaming_holds_back_only_what_may_become_a_call(text, held):
    assert may_become_call(text, TOOLS) is held
