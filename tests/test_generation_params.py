"""The one request model for generation parameters: a bad value gets the same answer from the
Python engine API, the native HTTP API and the OpenAI-compatible API, naming the parameter;
a good value is accepted by all three."""
from __future__ import annotations

import json

import httpx
import pytest

from llamaserve import InvalidRequest
from llamaserve.generation_params import PARAMETERS, SEED_MAX

BAD_VALUES = [
    ("max_tokens", 0), ("max_tokens", 2.5), ("max_tokens", 2**31),
    ("temperature", -1), ("temperature", 5), ("temperature", "hot"),
    ("top_p", 0), ("top_p", 1.5),
    ("top_k", -1), ("min_p", 2.0), ("repeat_penalty", 0),
    ("presence_penalty", 3.0), ("frequency_penalty", -2.5),
    ("penalty_last_n", -2),
    ("seed", -1), ("seed", 2**40), ("seed", 1e20), ("seed", 10**20),
    ("stop", [""]), ("stop", 5), ("stop", ["\ud800"]),
    ("logit_bias", {"abc": 1}), ("logit_bias", {"99999999999": 5}), ("logit_bias", {"-3": 1}),
    ("logit_bias", {"5": 500}),
    ("ignore_eos", "yes"), ("cache_prompt", 1),
]
GOOD_VALUES = [
    ("temperature", 2), ("temperature", 0), ("top_p", 1), ("penalty_last_n", -1), ("seed", 0),
    ("seed", SEED_MAX), ("stop", "\n\n"), ("logit_bias", {"5": -100}), ("ignore_eos", True),
    ("cache_prompt", False), ("min_p", 0), ("top_k", 0),
]


def post(url, body):
    """JSON as most clients write it: ASCII, so a lone surrogate travels as a \\ud800 escape."""
    return httpx.post(url, content=json.dumps(body), headers={"content-type": "application/json"}, timeout=60)


def _ids(cases):
    return [f"{name}={value!r}"[:40] for name, value in cases]


@pytest.mark.parametrize(("name", "value"), BAD_VALUES, ids=_ids(BAD_VALUES))
def test_a_bad_value_is_refused_alike_by_every_api(engine, base_url, name, value):
    arguments = {"max_tokens": 1, name: value}
    with pytest.raises(InvalidRequest, match=f"^{name}: "):
        engine.generate("Hello", **arguments)

    native = post(base_url + "/api/v1/generate", {"prompt": "Hello", **arguments})
    assert native.status_code == 400, native.text
    assert native.json()["error"]["message"].startswith(f"{name}: ")

    body = {"model": "default", "prompt": "Hello", **arguments}
    openai = post(base_url + "/v1/completions", body)
    assert openai.status_code == 400, openai.text
    error = openai.json()["error"]
    assert error["param"] == name and error["type"] == "invalid_request_error"
    # Same rule, same words.
    assert error["message"] == native.json()["error"]["message"]


@pytest.mark.parametrize(("name", "value"), GOOD_VALUES, ids=_ids(GOOD_VALUES))
def test_a_good_value_is_accepted_by_every_api(engine, base_url, name, value):
    done = engine.generate("Hello", max_tokens=2, **{name: value})
    assert done.finish_reason in ("stop", "length")
    native = post(base_url + "/api/v1/generate", {"prompt": "Hello", "max_tokens": 2, name: value})
    assert native.status_code == 200, native.text
    openai = post(base_url + "/v1/completions", {"model": "default", "prompt": "Hello", "max_tokens": 2, name: value})
    assert openai.status_code == 200, openai.text


def test_lone_surrogates_in_prompts_and_messages_are_400(engine, base_url):
    with pytest.raises(InvalidRequest, match="^prompt: "):
        engine.generate("Hi \ud800", max_tokens=1)
    native = post(base_url + "/api/v1/generate", {"prompt": "\ud800"})
    assert native.status_code == 400 and native.json()["error"]["message"].startswith("prompt: ")
    chat = post(base_url + "/v1/chat/completions",
                {"model": "default", "messages": [{"role": "user", "content": "\udfff"}]})
    assert chat.status_code == 400 and chat.json()["error"]["param"] == "messages[0].content"


def test_token_ids_beyond_int32_are_400_not_500(engine, base_url):
    with pytest.raises(InvalidRequest, match="^prompt: "):
        engine.generate([1, 2, 99999999999], max_tokens=1)
    native = post(base_url + "/api/v1/generate", {"prompt": [1, 2, 99999999999]})
    assert native.status_code == 400 and native.json()["error"]["message"].startswith("prompt")
    openai = post(base_url + "/v1/completions", {"model": "default", "prompt": [1, 2, 99999999999]})
    assert openai.status_code == 400 and openai.json()["error"]["param"] == "prompt"


def test_penalty_last_n_minus_one_penalizes_the_whole_context(engine):
    """llama.cpp's convention: -1 is the whole context, not "off" (0 is off)."""
    prompt = "one two one two one two one two one two one two"
    args = dict(max_tokens=16, temperature=0, ignore_eos=True, repeat_penalty=2.0)
    off = engine.generate(prompt, penalty_last_n=0, **args).text
    whole = engine.generate(prompt, penalty_last_n=-1, **args).text
    assert whole != off


def test_every_parameter_has_a_schema_and_a_description():
    for parameter in PARAMETERS.values():
        assert parameter.schema and parameter.doc
