"""Hypothesis against the one request model (generation_params.PARAMETERS): every parameter
gets values drawn from its own JSON schema, values just beyond it (out of range, too long, too
many, keys that are no token id), and junk (wrong types, NaN and infinities, huge integers,
lone surrogates, nested lists and objects, for the Python API also bytes, tuples, sets and
plain objects).

- The Python engine API answers each with a completion or a typed error (InvalidRequest whose
  message starts with the parameter's name, ContextLengthExceeded, QueueFull), never another
  exception or a crash; it serves as before afterwards.
- Both HTTP APIs answer the same value the way the engine does: 200, or a 400 in their own
  error shape that names the same parameter in the same words.

Derandomized with no example database: the same cases on every run."""
from __future__ import annotations

import json
import math
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llamaserve import ContextLengthExceeded, InvalidRequest, QueueFull
from llamaserve.generation_params import INT32_MAX, PARAMETERS, PROMPT_SCHEMA
from llamaserve.server.native.protocol import GENERATION_FIELDS
from llamaserve.server.openai.protocol import COMPLETION_PARAMETERS, MAX_STOP
from serverutil import sse_events

FUZZ = settings(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
MAX_TOKENS = 3  # a valid max_tokens is drawn at most this large: a larger one runs to the context's end
GRAMMARS = ('root ::= "yes" | "no"', "root ::= [a-z]+", 'root ::= "a" root?', "root ::= [^\\x00]*")
OPENAI_FIELDS = tuple(name for name in PARAMETERS if name in COMPLETION_PARAMETERS)

# -- values ---------------------------------------------------------------------------------

SURROGATE = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"])
CHARACTER = st.characters()  # any code point but a surrogate
TEXT = st.text(CHARACTER, max_size=12)
BAD_TEXT = st.tuples(TEXT, SURROGATE, TEXT).map("".join)  # cannot become UTF-8
HUGE = st.one_of(st.integers(min_value=INT32_MAX + 1), st.integers(max_value=-INT32_MAX - 2),
                 st.sampled_from([2**63, 2**64, -(2**63) - 1, 10**400, -(10**400)]))
ODD_FLOAT = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                      st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308]))
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), HUGE, ODD_FLOAT, TEXT, BAD_TEXT)
JSON_JUNK = st.recursive(SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(st.one_of(TEXT, BAD_TEXT), inner, max_size=4)),
                         max_leaves=10)
# What only Python can pass: the engine API takes any object.
PY_JUNK = st.one_of(JSON_JUNK, st.binary(max_size=8), st.tuples(SCALAR, SCALAR), st.frozensets(st.integers(), max_size=3),
                    st.dictionaries(st.one_of(st.integers(), HUGE, st.none(), st.booleans(), ODD_FLOAT), SCALAR, max_size=3),
                    st.builds(object))


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values the JSON schema allows (the subset of JSON Schema the table uses)."""
    if "oneOf" in schema:
        return st.one_of(*(from_schema(s) for s in schema["oneOf"]))
    if "const" in schema:
        return st.just(schema["const"])
    kind = schema.get("type")
    if kind == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if kind == "number":
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        return st.floats(low, schema.get("maximum"), exclude_min="exclusiveMinimum" in schema)
    if kind == "boolean":
        return st.booleans()
    if kind == "string":
        return st.text(CHARACTER, min_size=schema.get("minLength", 0), max_size=min(schema.get("maxLength", 16), 16))
    if kind == "array":
        return st.lists(from_schema(schema["items"]), min_size=schema.get("minItems", 0),
                        max_size=min(schema.get("maxItems", 8), 8))
    if kind == "object" and "properties" in schema:  # fixed fields (prediction's object form)
        return st.fixed_dictionaries({k: from_schema(v) for k, v in schema["properties"].items()})
    if kind == "object":
        keys = st.from_regex(schema["propertyNames"]["pattern"], fullmatch=True)
        return st.dictionaries(keys, from_schema(schema["additionalProperties"]), max_size=8)
    raise AssertionError(f"a schema this test does not read: {schema}")


def beyond_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values of the schema's type just outside it: out of range, too short or long, too many,
    keys that are no token id, a lone surrogate in a string."""
    if "oneOf" in schema:
        return st.one_of(*(beyond_schema(s) for s in schema["oneOf"]))
    kind = schema.get("type")
    if kind in ("integer", "number"):
        low, high = schema.get("minimum", schema.get("exclusiveMinimum")), schema["maximum"]
        out = [st.floats(max_value=low, exclude_max="minimum" in schema),
               st.floats(min_value=high, exclude_min=True),
               st.integers(max_value=math.ceil(low) - 1), st.integers(min_value=math.floor(high) + 1)]
        if kind == "integer":  # a number where an integer belongs
            out.append(st.floats(low, high).filter(lambda v: not v.is_integer()))
        return st.one_of(*out)
    if kind == "boolean":
        return st.sampled_from([0, 1, "true", "false"])
    if kind == "string":
        out = [BAD_TEXT]
        if schema.get("minLength"):
            out.append(st.just(""))
        if "maxLength" in schema:
            out.append(st.text(CHARACTER, min_size=schema["maxLength"] + 1, max_size=schema["maxLength"] + 4))
        return st.one_of(*out)
    if kind == "array":
        items = schema["items"]
        out = [st.lists(beyond_schema(items), min_size=1, max_size=3)]
        if "maxItems" in schema:
            out.append(st.lists(from_schema(items), min_size=schema["maxItems"] + 1, max_size=schema["maxItems"] + 3))
        if schema.get("minItems"):
            out.append(st.just([]))
        return st.one_of(*out)
    if kind == "object" and "properties" in schema:  # a field missing, or of another type
        fields = schema["properties"]
        return st.one_of(st.just({}), *(st.fixed_dictionaries({k: JSON_JUNK}) for k in fields),
                         st.fixed_dictionaries({k: beyond_schema(v) if "const" not in v else st.just("other")
                                                for k, v in fields.items()}))
    if kind == "object":
        values = schema["additionalProperties"]
        bad_keys = st.one_of(st.integers(max_value=-1).map(str), st.integers(min_value=INT32_MAX + 1).map(str),
                             TEXT.filter(lambda k: not k.isdigit()), BAD_TEXT)
        too_many = {str(i): 0 for i in range(schema["maxProperties"] + 1)}
        return st.one_of(st.dictionaries(bad_keys, from_schema(values), min_size=1, max_size=3),
                         st.dictionaries(st.integers(0, 262143).map(str), beyond_schema(values), min_size=1, max_size=3),
                         st.just(too_many))
    raise AssertionError(f"a schema this test does not read: {schema}")


def valid(name: str) -> st.SearchStrategy[Any]:
    if name == "max_tokens":
        return st.integers(1, MAX_TOKENS)
    if name == "grammar":  # a random string is no grammar: add some that are
        return st.one_of(from_schema(PARAMETERS[name].schema), st.sampled_from(GRAMMARS))
    return from_schema(PARAMETERS[name].schema)


def values(name: str, junk: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    out = [valid(name), junk]
    if name != "grammar":  # any string is of its schema
        out.insert(1, beyond_schema(PARAMETERS[name].schema))
    return st.one_of(*out)


# Control tokens written out: parse_special reads them as the tokens (Gemma's pad is id 0).
SPECIAL = st.sampled_from(["<pad>", "<bos>", "<eos>", "<unk>", "<start_of_turn>", "<end_of_turn>", "<mask>"])
PROMPTS = st.one_of(from_schema(PROMPT_SCHEMA), beyond_schema(PROMPT_SCHEMA), PY_JUNK,
                    st.lists(st.one_of(SPECIAL, TEXT), min_size=1, max_size=4).map("".join),
                    st.just("many words " * 400))  # longer than the context


# -- the Python engine API ---------------------------------------------------------------------

def few_tokens(arguments: dict[str, Any]) -> dict[str, Any]:
    """max_tokens 1 unless drawn: an absent (or null) one runs to the context's end."""
    return {**arguments, "max_tokens": 1} if arguments.get("max_tokens") is None else arguments


def run_engine(engine, prompt: Any, arguments: dict[str, Any]) -> InvalidRequest | None:
    """Generate; the InvalidRequest it raised, None when it ran (or the context or queue was
    full). Any other exception fails the test."""
    try:
        done = engine.generate(prompt, **arguments)
    except InvalidRequest as exc:
        return exc
    except (ContextLengthExceeded, QueueFull):
        return None
    assert done.finish_reason in ("stop", "length"), done
    assert done.usage.completion_tokens <= arguments["max_tokens"]
    return None


@settings(FUZZ, max_examples=300)
@given(name=st.sampled_from(sorted(PARAMETERS)), data=st.data())
def test_one_parameter_on_the_engine(engine, name, data):
    arguments = few_tokens({name: data.draw(values(name, PY_JUNK), label="value")})
    refused = run_engine(engine, "Hello", arguments)
    assert refused is None or str(refused).startswith(f"{name}: "), refused


@settings(FUZZ, max_examples=150)
@given(prompt=PROMPTS, arguments=st.fixed_dictionaries({}, optional={name: values(name, PY_JUNK) for name in PARAMETERS}))
def test_many_parameters_and_a_prompt_on_the_engine(engine, prompt, arguments):
    refused = run_engine(engine, prompt, few_tokens(arguments))
    assert refused is None or str(refused).split(":")[0] in {"prompt", *arguments}, refused


def test_the_engine_still_serves(engine):
    done = engine.generate("Hello", max_tokens=3, temperature=0, ignore_eos=True)
    assert done.usage.completion_tokens == 3
    assert engine.busy_slots == 0 and engine.queue_depth == 0


# -- both HTTP APIs ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def http():
    with httpx.Client(timeout=60) as client:
        yield client


def post(http, url: str, body: dict[str, Any]) -> httpx.Response:
    """JSON as Python writes it: NaN and Infinity unquoted (the server must refuse them), a
    lone surrogate as a \\ud800 escape."""
    return http.post(url, content=json.dumps(body), headers={"content-type": "application/json"})


def json_ready(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:
        return False
    return True


@settings(FUZZ, max_examples=150)
@given(name=st.sampled_from(sorted(set(GENERATION_FIELDS) | set(OPENAI_FIELDS))), data=st.data())
def test_one_parameter_on_both_http_apis(engine, base_url, http, name, data):
    value = data.draw(values(name, JSON_JUNK), label="value")
    arguments = few_tokens({name: value})
    refused = run_engine(engine, "Hello", arguments)
    if name in GENERATION_FIELDS:
        native = post(http, base_url + "/api/v1/generate", {"prompt": "Hello", **arguments})
        if not json_ready(value):
            assert native.status_code == 400 and native.json()["error"]["message"].startswith("body: "), native.text
        elif refused is None:
            assert native.status_code == 200, native.text
        else:
            assert native.status_code == 400, native.text
            assert set(native.json()["error"]) == {"code", "message", "details"}
            assert native.json()["error"]["message"] == str(refused)
    if name in OPENAI_FIELDS:
        openai = post(http, base_url + "/v1/completions", {"model": "default", "prompt": "Hello", **arguments})
        error = openai.json().get("error")
        if not json_ready(value):
            assert openai.status_code == 400 and error["param"] is None and error["message"].startswith("body: ")
        elif refused is None and not (name == "stop" and isinstance(value, list) and len(value) > MAX_STOP):
            assert openai.status_code == 200, openai.text
        else:  # refused by the request model, or more stop strings than OpenAI's API takes
            assert openai.status_code == 400, openai.text
            assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
            assert error["param"] == name
            assert refused is None or error["message"] == str(refused)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_the_request_that_aborted_the_server_is_answered(base_url, http, stream):
    """Issue 11's first example: a grammar that is complete while ignore_eos bans the end
    used to throw out of the scheduler thread and abort the process."""
    request = {"prompt": "Say yes", "grammar": 'root ::= "yes"', "ignore_eos": True, "temperature": 0,
               "max_tokens": 8, "stream": stream}
    native = post(http, base_url + "/api/v1/generate", request)
    assert native.status_code == 200, native.text
    if stream:
        events = list(sse_events(native.text.splitlines()))
        assert ("".join(e["token"] for e in events), events[-1]["finish_reason"]) == ("yes", "stop")
    else:
        assert (native.json()["text"], native.json()["finish_reason"]) == ("yes", "stop")
    assert http.get(base_url + "/health").status_code == 200


def test_the_server_still_serves(base_url, http):
    assert http.get(base_url + "/health").status_code == 200
    done = post(http, base_url + "/api/v1/generate", {"prompt": "Hello", "max_tokens": 2, "ignore_eos": True})
    assert done.status_code == 200 and done.json()["usage"]["completion_tokens"] == 2
