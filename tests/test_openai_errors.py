"""Errors under /v1: OpenAI's JSON shape and the statuses the SDK turns into its exception
classes; auth, rate limits, a model still loading, and GGUFs whose chat templates refuse a
conversation or try to escape the sandbox (tiny random-weight models, tests/tiny_models.py)."""
from __future__ import annotations

import threading

import httpx
import openai
import pytest
from serverutil import LiveServer

from llamaserve import Engine, ModelLoadError
from llamaserve.config import ServerConfig
from llamaserve.server.app import create_app

MESSAGES = [{"role": "user", "content": "Hi"}]


def _error_shape(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


@pytest.fixture(scope="module")
def serve(engine):
    """Start extra servers over the shared engine (or another); all stopped at the end."""
    servers: list[LiveServer] = []

    def start(config: ServerConfig, eng: Engine | None = engine, **kwargs) -> LiveServer:
        server = LiveServer(create_app(config, eng, **kwargs))
        servers.append(server)
        return server.start(ready=kwargs.get("loader") is None)

    yield start
    for server in servers:
        server.stop()


def _client(server: LiveServer, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)


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


def test_not_found(openai_client, base_url):
    with pytest.raises(openai.NotFoundError) as info:
        openai_client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=2)
    assert info.value.code == "model_not_found" and "gpt-4o" in info.value.message
    with pytest.raises(openai.NotFoundError):
        openai_client.completions.create(model="gpt-4o", prompt="x", max_tokens=2)
    response = httpx.get(base_url + "/v1/no/such/endpoint")
    assert response.status_code == 404 and _error_shape(response)["code"] == "not_found"


def test_native_api_keeps_its_own_error_shape(base_url):
    response = httpx.post(base_url + "/api/v1/generate", json={"prompt": "x", "temperature": "hot"})
    assert response.status_code == 400 and set(response.json()["error"]) == {"code", "message", "details"}


def test_authentication(serve, served_model):
    server = serve(ServerConfig(api_keys=("sk-right",), default_max_tokens=4))
    with pytest.raises(openai.AuthenticationError) as info:
        _client(server, "sk-wrong").models.list()
    assert info.value.status_code == 401 and info.value.code == "invalid_api_key"
    assert info.value.body["type"] == "invalid_request_error"
    response = httpx.post(server.url + "/v1/chat/completions", json={"messages": MESSAGES})  # no key at all
    assert response.status_code == 401 and _error_shape(response)["code"] == "invalid_api_key"
    client = _client(server, "sk-right")
    assert served_model in [m.id for m in client.models.list().data]
    r = client.chat.completions.create(model=served_model, messages=MESSAGES, max_tokens=2, temperature=0)
    assert r.choices[0].message.content is not None


def test_rate_limit(serve, served_model):
    server = serve(ServerConfig(rate_limit=2, rate_limit_window=3600))
    client = _client(server)
    client.models.list()
    client.models.list()
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model=served_model, messages=MESSAGES, max_tokens=2)
    error = info.value
    assert error.status_code == 429 and error.code == "rate_limit_exceeded"
    assert error.response.headers["X-RateLimit-Remaining"] == "0" and int(error.response.headers["Retry-After"]) > 0


def test_model_still_loading_is_503(serve):
    release = threading.Event()

    def slow_loader(path, **options):  # never finishes loading (and never owns the shared engine)
        release.wait(30)
        raise ModelLoadError("test: this model never loads")

    server = serve(ServerConfig(), None, loader=slow_loader)
    try:
        with pytest.raises(openai.InternalServerError) as info:
            _client(server).chat.completions.create(model="default", messages=MESSAGES, max_tokens=2)
        assert info.value.status_code == 503 and info.value.code == "model_loading"
        assert info.value.body["type"] == "server_error"
        assert info.value.response.headers["Retry-After"] == "1"
    finally:
        release.set()


# -- chat templates from the GGUF -------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_engine(tmp_path_factory):
    """Load a tiny random-weight GGUF of a family, with a chosen chat template."""
    tiny_models = pytest.importorskip("tiny_models", reason="tests/tiny_models.py writes the tiny GGUFs")
    engines: list[Engine] = []

    def load(family: str, template: str | None = "") -> Engine:
        path = tmp_path_factory.mktemp("gguf") / f"tiny-{family}.gguf"
        tiny_models.write_tiny_model(path, family, chat_template=template)
        eng = Engine.load(path, n_ctx=256, n_parallel=2)
        engines.append(eng)
        return eng

    yield load
    for eng in engines:
        eng.close()


ESCAPING_TEMPLATE = ("{% for m in messages %}{{ m.content }}{% endfor %}"
                     "{{ cycler.__init__.__globals__.os.popen('id').read() }}")


def test_gguf_template_escaping_the_sandbox_is_refused_and_the_server_keeps_serving(serve, tiny_engine):
    eng = tiny_engine("qwen", ESCAPING_TEMPLATE)
    assert eng.metadata["chat_template"] == ESCAPING_TEMPLATE  # really in the GGUF
    server = serve(ServerConfig(default_max_tokens=4), eng)
    client = _client(server)
    for _ in range(2):  # compiled once, refused every time, never crashes
        with pytest.raises(openai.InternalServerError) as info:
            client.chat.completions.create(model="default", messages=MESSAGES, max_tokens=2)
        assert info.value.status_code == 500 and info.value.code == "chat_template_error"
        assert "unsafe" in info.value.message and "uid=" not in info.value.message
    assert client.completions.create(model="default", prompt="Hello", max_tokens=2).choices[0].text is not None
    assert httpx.get(server.url + "/health").json()["status"] == "healthy"


def test_gguf_template_reading_internals_renders_harmlessly(serve, tiny_engine):
    template = "{{ messages.__class__ }}{{ messages[0].content.__globals__ }}<|im_start|>{{ messages[0].content }}"
    server = serve(ServerConfig(default_max_tokens=2), tiny_engine("qwen", template))
    r = _client(server).chat.completions.create(model="default", messages=MESSAGES, max_tokens=2, temperature=0)
    assert r.usage.prompt_tokens == 2  # "<|im_start|>" and "Hi": nothing else reached the prompt


def test_gguf_template_refusing_a_conversation_is_a_bad_request(serve, tiny_engine):
    server = serve(ServerConfig(default_max_tokens=2), tiny_engine("gemma"))  # Gemma's template: no system role
    client = _client(server)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="default", max_tokens=2,
                                       messages=[{"role": "system", "content": "x"}, *MESSAGES])
    assert info.value.param == "messages" and "System role not supported" in info.value.message
    r = client.chat.completions.create(model="default", messages=MESSAGES, max_tokens=2)
    assert r.choices[0].finish_reason in ("stop", "length")
