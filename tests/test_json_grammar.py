"""JSON Schema -> GBNF: what the grammars accept and refuse (checked with a small GBNF
recognizer, tests/gbnf.py), that llama.cpp parses every grammar, the errors for schemas it
cannot express, and one real constrained generation that validates."""
from __future__ import annotations

import json

import jsonschema
import pytest
from gbnf import Grammar

from llamaserve.json_grammar import SchemaError, json_object_grammar, json_value_grammar, schema_to_grammar

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 130},
        "email": {"type": "string", "format": "email"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "kind": {"enum": ["admin", "user", None]},
        "nick": {"type": ["string", "null"]},
    },
    "required": ["name", "age", "kind"],
    "additionalProperties": False,
}
TREE = {  # recursive through $defs
    "$defs": {"node": {"type": "object", "properties": {
        "value": {"type": "integer"},
        "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
        "required": ["value"]}},
    "$ref": "#/$defs/node",
}
UNION = {
    "type": "object",
    "properties": {"shape": {"oneOf": [
        {"type": "object", "properties": {"kind": {"const": "circle"}, "r": {"type": "number"}},
         "required": ["kind", "r"]},
        {"type": "object", "properties": {"kind": {"const": "square"}, "side": {"type": "number", "minimum": 0}},
         "required": ["kind", "side"]},
    ]}},
    "required": ["shape"],
}
COMBINED = {"allOf": [{"$ref": "#/definitions/base"},
                      {"type": "object", "properties": {"b": {"type": "boolean"}}, "required": ["b"]}],
            "definitions": {"base": {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}}}
TUPLE = {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": False, "minItems": 2}
BOUNDED = {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 2, "maxItems": 3}
FORMATS = {"type": "object", "properties": {
    "day": {"type": "string", "format": "date"}, "at": {"type": "string", "format": "date-time"},
    "id": {"type": "string", "format": "uuid"}}, "required": ["day", "at", "id"]}
OPEN = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"],
        "additionalProperties": {"type": "string"}}

CASES = [
    (PERSON,
     [{"name": "Ann", "age": 30, "kind": "admin"},
      {"name": "Bob", "age": 0, "email": "b@x.org", "tags": ["a", "b"], "kind": None, "nick": None},
      {"name": "Cy", "age": 130, "tags": [], "kind": "user", "nick": "c"}],
     ['{"name": "", "age": 3, "kind": "user"}',  # minLength
      '{"name": "Ann", "age": 131, "kind": "user"}',  # maximum
      '{"name": "Ann", "age": -1, "kind": "user"}',  # minimum
      '{"name": "Ann", "kind": "user"}',  # required age missing
      '{"name": "Ann", "age": 3, "kind": "root"}',  # not in enum
      '{"name": "Ann", "age": 3, "kind": "user", "x": 1}',  # additional property
      '{"name": "Ann", "age": 3, "kind": "user", "tags": ["a", "b", "c", "d"]}',  # maxItems
      '{"name": "Ann", "age": 3.5, "kind": "user"}']),  # not an integer
    (TREE, [{"value": 1}, {"value": 1, "children": [{"value": 2, "children": []}, {"value": -3}]}],
     ['{"children": []}', '{"value": 1, "children": [{"value": "x"}]}']),
    (UNION, [{"shape": {"kind": "circle", "r": 1.5}}, {"shape": {"kind": "square", "side": 2}}],
     ['{"shape": {"kind": "circle", "side": 2}}', '{"shape": {"kind": "square", "side": -2}}']),
    (COMBINED, [{"a": 1, "b": True}], ['{"a": 1}', '{"b": true}', '{"a": true, "b": true}']),
    (TUPLE, [["x", 1]], ['["x"]', '["x", 1, 2]', '[1, "x"]']),
    (BOUNDED, [[1, 2], [3, 4, 5]], ["[1]", "[1, 2, 3, 4]", "[0, 1]"]),
    (FORMATS, [{"day": "2024-02-29", "at": "2024-02-29T12:30:00Z", "id": "123e4567-e89b-12d3-a456-426614174000"}],
     ['{"day": "2024-13-01", "at": "2024-02-29T12:30:00Z", "id": "123e4567-e89b-12d3-a456-426614174000"}',
      '{"day": "2024-02-29", "at": "2024-02-29 12:30", "id": "123e4567-e89b-12d3-a456-426614174000"}']),
    (OPEN, [{"a": 1}, {"a": 1, "note": "x", "more": "y"}], ['{"a": 1, "note": 2}', '{"note": "x"}']),
]


def _validate(doc: object, schema: object) -> None:
    jsonschema.validate(doc, schema, format_checker=jsonschema.FormatChecker())


def _layouts(doc: object) -> list[str]:
    return [json.dumps(doc), json.dumps(doc, separators=(",", ":")), json.dumps(doc, indent=2)]


@pytest.mark.parametrize(("schema", "valid", "invalid"), CASES,
                         ids=["person", "tree", "union", "allof", "tuple", "bounded", "formats", "open"])
def test_grammar_accepts_exactly_valid_documents(schema, valid, invalid):
    grammar = Grammar(schema_to_grammar(schema))
    for doc in valid:
        _validate(doc, schema)  # the fixture itself is right
        for text in _layouts(doc):
            assert grammar.accepts(text), text
    for text in invalid:
        with pytest.raises(jsonschema.ValidationError):
            _validate(json.loads(text), schema)
        assert not grammar.accepts(text), text


def test_properties_come_in_schema_order_and_optional_ones_may_be_skipped():
    grammar = Grammar(schema_to_grammar(PERSON))
    assert grammar.accepts('{"name": "A", "age": 1, "tags": ["x"], "kind": "user"}')
    assert not grammar.accepts('{"age": 1, "name": "A", "kind": "user"}')  # stricter than the schema


def test_whitespace_is_bounded():
    grammar = Grammar(json_object_grammar())
    assert grammar.accepts('{\n' + " " * 20 + '"a": 1}')
    assert not grammar.accepts('{\n' + " " * 21 + '"a": 1}')
    assert not grammar.accepts('{\n\n"a": 1}')
    assert not grammar.accepts(' {"a": 1}')  # nothing before the document
    assert not grammar.accepts('{"a": 1}\n')  # nor after: the model must stop


def test_numbers_are_json_numbers_with_bounded_digits():
    grammar = Grammar(schema_to_grammar({"type": "number"}))
    for text in ("0", "-1", "3.25", "1e5", "-2.5E-3", "1234567890123456"):
        assert grammar.accepts(text), text
    for text in ("01", "1.", ".5", "+1", "NaN", "Infinity", "1" * 17):
        assert not grammar.accepts(text), text


def test_strings_escape_properly():
    grammar = Grammar(schema_to_grammar({"type": "string"}))
    assert grammar.accepts(json.dumps('quote " backslash \\ newline \n tab \t unicode é ✓'))
    assert grammar.accepts('"\\u00e9"')
    assert not grammar.accepts('"raw\nnewline"')
    assert not grammar.accepts('"bad \\q escape"')


def test_generic_grammars():
    obj, value = Grammar(json_object_grammar()), Grammar(json_value_grammar())
    assert obj.accepts('{"a": [1, {"b": null}], "c": "d"}')
    assert not obj.accepts("[1]")
    assert value.accepts("[1, true, null]") and value.accepts('"x"')


def test_enum_and_const_values_are_literal_json():
    schema = {"enum": ["a\"b", 1, True, None, {"k": [1]}]}
    grammar = Grammar(schema_to_grammar(schema))
    for value in schema["enum"]:
        assert grammar.accepts(json.dumps(value, separators=(",", ":")))
    assert not grammar.accepts('"ab"')
    assert Grammar(schema_to_grammar({"const": "x"})).accepts('"x"')


@pytest.mark.parametrize(("schema", "named"), [
    ({"type": "string", "pattern": "^a+$"}, "pattern"),
    ({"type": "object", "properties": {"a": {"type": "array", "uniqueItems": True}}}, "uniqueItems"),
    ({"type": "object", "patternProperties": {"^x": {}}}, "patternProperties"),
    ({"not": {"type": "string"}}, "not"),
    ({"type": "number", "maximum": 5}, "maximum"),
    ({"type": "integer", "minimum": 5}, "minimum"),
    ({"type": "number", "multipleOf": 2}, "multipleOf"),
    ({"$ref": "https://example.org/schema.json"}, "$ref"),
    ({"$ref": "#/$defs/missing"}, "no such definition"),
    ({"type": "thing"}, "type"),
    ({"type": "string", "maxLength": 100000}, "maxLength"),
    ({"type": "object", "properties": {"a": {}}, "required": ["b"]}, "'b'"),
])
def test_unsupported_schemas_raise_naming_the_keyword(schema, named):
    with pytest.raises(SchemaError) as info:
        schema_to_grammar(schema)
    assert named in str(info.value)


def test_error_says_where():
    with pytest.raises(SchemaError, match=r"/properties/a/properties/b"):
        schema_to_grammar({"type": "object", "properties": {"a": {"type": "object", "properties": {
            "b": {"type": "string", "pattern": "x"}}}}})


def test_annotations_are_ignored():
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "T", "description": "d",
              "type": "object", "properties": {"a": {"type": "integer", "default": 1, "examples": [2],
                                                     "description": "an a"}}, "required": ["a"]}
    assert Grammar(schema_to_grammar(schema)).accepts('{"a": 2}')


EDGES = [{"type": "array", "items": {"type": "integer"}, "maxItems": 1},
         {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 1},
         {"type": "string", "maxLength": 0}, {"type": "object", "properties": {}}, {"type": "array", "items": False}]


def test_edge_bounds():
    one = Grammar(schema_to_grammar(EDGES[0]))
    assert one.accepts("[]") and one.accepts("[7]") and not one.accepts("[1,2]")
    exactly_one = Grammar(schema_to_grammar(EDGES[1]))
    assert exactly_one.accepts("[7]") and not exactly_one.accepts("[]")
    assert Grammar(schema_to_grammar(EDGES[2])).accepts('""')
    assert Grammar(schema_to_grammar(EDGES[3])).accepts("{}")
    assert not Grammar(schema_to_grammar(EDGES[3])).accepts('{"a": 1}')
    assert Grammar(schema_to_grammar(EDGES[4])).accepts("[]")


@pytest.mark.parametrize("schema", [PERSON, TREE, UNION, COMBINED, TUPLE, BOUNDED, FORMATS, OPEN, {}, True, *EDGES],
                         ids=["person", "tree", "union", "allof", "tuple", "bounded", "formats", "open",
                              "empty", "true", "max1", "exactly1", "maxlen0", "no-properties", "no-items"])
def test_llama_cpp_parses_every_grammar(engine, schema):
    # The grammar is parsed when the request is submitted; a bad one raises right there.
    stream = engine.stream("x", max_tokens=1, grammar=schema_to_grammar(schema))
    stream.cancel()
    stream = engine.stream("x", max_tokens=1, grammar=json_object_grammar())
    stream.cancel()


def test_constrained_generation_validates(engine):
    schema = {"type": "object", "properties": {"answer": {"enum": ["yes", "no"]},
                                               "confidence": {"type": "integer", "minimum": 0, "maximum": 9}},
              "required": ["answer", "confidence"], "additionalProperties": False}
    prompt = "<start_of_turn>user\nIs the sky blue? Reply in JSON.<end_of_turn>\n<start_of_turn>model\n"
    result = engine.generate(prompt, max_tokens=32, temperature=0, grammar=schema_to_grammar(schema))
    assert result.finish_reason == "stop", result
    jsonschema.validate(json.loads(result.text), schema)
