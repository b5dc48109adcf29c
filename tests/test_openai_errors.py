"""Errors under /v1: OpenAI's JSON shape and the statuses the SDK turns into its exception
classes (400, 401, 404, 429, 500/503), with auth, rate limits and a model still loading."""
from __future__ import annotations

import threading

import httpx
import openai
import pytest

from llamaserve import ModelLoadError
from llamaserve.config import ServerConfig

MESSAGES = [{"role": "user", "content": "Hi"}]


def _error_shape(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


@pytest.mark.parametrize(("extra", "param", "fragment"), [
    ({"temperature": 5}, "temperature", "between 0 and 2"),
    ({"n": 0}, "n", "between 1"),
    ({"top_logprobs": 2}, "top_logprobs", "logprobs"),
    ({"frobnicate": True}, "frobnicate", "unsupported parameter"),
    ({"functions": [{"name": "f"}]}, "functions", "unsupported parameter"),
    ({"messages": []}, "messages", "empty"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role", "must be one of"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "x"},
                                                {"type": "image_url", "image_url": {"url": "x"}}]}]},
     "messages[0].content[1].type", "only text"),
    ({"tool_choice": "required"}, "tool_choice", "needs tools"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}],
      "tool_choice": {"type": "function", "function": {"name": "g"}}}, "tool_choice.function.name", "no tool"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "string", "pattern": "^a$"}}}}, "response_format.json_schema.schema", "'pattern'"),
    ({"response_format": {"type": "xml"}}, "response_format.type", "json_schema"),
    ({"logit_bias": {"not-a-token": 1}}, "logit_bias", "token id"),
    ({"stop": 5}, "stop", "string"),
    ({"stop": [str(i) for i in range(13)]}, "stop", "at most"),
    ({"stop": ["x" * 600]}, "stop", "characters"),  # the engine's own check, same shape
])
def test_bad_requests_name_the_parameter(openai_client, base_url, served_model, extra, param, fragment):
    body = {"model": served_model, "messages": MESSAGES, "max_tokens": 2, **extra}
    response = httpx.post(base_url + "/v1/chat/completions", json=body)
    assert response.status_code == 400
    error = _error_shape(response)
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert fragment in error["message"]
    with pytest.raises(openai.BadRequestError) as info:  # the SDK's class for it
        openai_client.chat.completions.create(
            model=body["model"], messages=body["messages"],
            extra_body={k: v for k, v in body.items() if k not in ("model", "messages")})
    assert info.value.param == param


def test_engine_range_checks_come_back_as_bad_requests(openai_client, served_model):
    with pytest.raises(openai.BadRequestError) as info:  # the engine knows the vocabulary size
        openai_client.chat.completions.create(model=served_model, messages=MESSAGES, max_tokens=2,
                                              logit_bias={"999999999": 1})
    assert info.value.param == "logit_bias"


def test_malformed_json_body(base_url):
    response = httpx.post(base_url + "/v1/chat/completions", content=b"{not json",
                          headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and _error_shape(response)["type"] == "invalid_request_error"


def test_context_length_exceeded(openai_client, served_model):
    long_text = "word " * 2000  # far beyond the 512-token context
    with pytest.raises(openai.BadRequestError) as info:
        openai_client.chat.completions.create(model=served_model, messages=[{"role": "user", "content": long_text}],
                                              max_tokens=2)
    assert info.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as info:
        openai_client.completions.create(model=served_model, prompt=long_text, max_tokens=2)
    assert info.value.code == "context_length_exceeded"


def test_not_found(openai_client, base_url, served_model):
    # One model served: any name is served by it (unknown names: tests/test_model_names.py).
    reply = openai_client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=2)
    assert reply.model == served_model
    response = httpx.get(base_url + "/v1/no/such/endpoint")
    assert response.status_code == 404 and _error_shape(response)["code"] == "not_found"


def test_native_api_keeps_its_own_error_shape(base_url):
    response = httpx.post(base_url + "/api/v1/generate", json={"prompt": "x", "temperature": "hot"})
    assert response.status_code == 400 and set(response.json()["error"]) == {"code", "message", "details"}


def test_authentication(serve_app, client_for, served_model):
    server = serve_app(ServerConfig(api_keys=("sk-right",), default_max_tokens=4))
    with pytest.raises(openai.AuthenticationError) as info:
        client_for(server.url, "sk-wrong").models.list()
    assert info.value.status_code == 401 and info.value.code == "invalid_api_key"
    assert info.value.body["type"] == "invalid_request_error"
    response = httpx.post(server.url + "/v1/chat/completions", json={"messages": MESSAGES})  # no key at all
    assert response.status_code == 401 and _error_shape(response)["code"] == "invalid_api_key"
    client = client_for(server.url, "sk-right")
    assert served_model in [m.id for m in client.models.list().data]
    r = client.chat.completions.create(model=served_model, messages=MESSAGES, max_tokens=2, temperature=0)
    assert r.choices[0].message.content is not None


def test_rate_limit(serve_app, client_for, served_model):
    server = serve_app(ServerConfig(rate_limit=2, rate_limit_window=3600))
    client = client_for(server.url)
    client.models.list()
    client.models.list()
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model=served_model, messages=MESSAGES, max_tokens=2)
    error = info.value
    assert error.status_code == 429 and error.code == "rate_limit_exceeded"
    assert error.response.headers["X-RateLimit-Remaining"] == "0" and int(error.response.headers["Retry-After"]) > 0


def test_model_still_loading_is_503(serve_app, client_for):
    release = threading.Event()

    def slow_loader(path, **options):  # never finishes loading (and never owns the shared engine)
        release.wait(30)
        raise ModelLoadError("test: this model never loads")

    server = serve_app(ServerConfig(), None, loader=slow_loader)
    try:
        with pytest.raises(openai.InternalServerError) as info:
            client_for(server.url).chat.completions.create(model="default", messages=MESSAGES, max_tokens=2)
        assert info.value.status_code == 503 and info.value.code == "model_loading"
        assert info.value.body["type"] == "server_error"
        assert info.value.response.headers["Retry-After"] == "1"
    finally:
        release.set()


def test_body_too_large_in_openai_shape(serve_app, client_for, served_model):
    server = serve_app(ServerConfig(max_body_bytes=200))  # refused by middleware, before any handler
    with pytest.raises(openai.APIStatusError) as info:
        client_for(server.url).chat.completions.create(model=served_model, max_tokens=2,
                                                       messages=[{"role": "user", "content": "x" * 500}])
    assert info.value.status_code == 413 and info.value.code == "request_too_large"
    assert info.value.body["type"] == "invalid_request_error"
