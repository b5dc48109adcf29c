"""Chat templates read from GGUFs, through the server: each of the seed's families (tiny
random-weight models, tests/tiny_models.py) gets its own template or the built-in fallback,
and templates that refuse a conversation or try to escape the sandbox are contained while
the server keeps serving."""
from __future__ import annotations

import httpx
import openai
import pytest

from llamaserve import Engine
from llamaserve.config import ServerConfig

MESSAGES = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module")
def tiny_engine(tmp_path_factory):
    """load(family, template) -> an engine over a tiny GGUF of that family carrying `template`
    ("": the family's own, None: none)."""
    from tiny_models import write_tiny_model

    engines: list[Engine] = []

    def load(family: str, template: str | None = "", name: str | None = None) -> Engine:
        path = tmp_path_factory.mktemp("gguf") / f"tiny-{family}.gguf"
        write_tiny_model(path, family, chat_template=template, name=name)
        eng = Engine.load(path, n_ctx=256, n_parallel=2)
        engines.append(eng)
        return eng

    yield load
    for eng in engines:
        eng.close()


# The prompt each family's GGUF should produce for MESSAGES, written out by hand.
EXPECTED_PROMPTS = {
    "llama": "[INST] Hi [/INST]",  # its template writes bos_token first; the tokenizer adds BOS itself
    "qwen": ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
             "<|im_start|>assistant\n"),
    "gemma": "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n",
    "chatglm": "[gMASK]sop<|user|>\n Hi<|assistant|>",  # no template in the GGUF: the built-in ChatGLM3
}


@pytest.mark.parametrize("family", sorted(EXPECTED_PROMPTS))
def test_each_family_gets_its_chat_template(serve_app, client_for, tiny_engine, family):
    eng = tiny_engine(family)
    assert (eng.metadata["chat_template"] is None) == (family == "chatglm")
    server = serve_app(ServerConfig(default_max_tokens=2), eng)
    r = client_for(server.url).chat.completions.create(model="default", messages=MESSAGES, max_tokens=2)
    assert r.usage.prompt_tokens == len(eng.tokenize(EXPECTED_PROMPTS[family]))
    assert r.choices[0].finish_reason in ("stop", "length")


def test_tools_reach_a_template_that_cannot_show_them(serve_app, client_for, tiny_engine):
    eng = tiny_engine("qwen")  # its template ignores `tools`: the server describes them in the system message
    server = serve_app(ServerConfig(default_max_tokens=2), eng)
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}
    client = client_for(server.url)
    plain = client.chat.completions.create(model="default", messages=MESSAGES, max_tokens=1)
    with_tools = client.chat.completions.create(model="default", messages=MESSAGES, max_tokens=1, tools=[tool])
    ignored = client.chat.completions.create(model="default", messages=MESSAGES, max_tokens=1, tools=[tool],
                                             tool_choice="none")
    assert with_tools.usage.prompt_tokens > plain.usage.prompt_tokens == ignored.usage.prompt_tokens


def test_spec_example_request_unchanged(serve_app, tiny_engine):
    """The spec's old-style SDK example (`openai.ChatCompletion.create(model="qwen-7b-chat", ...)`)
    as the raw HTTP it sends, against a Qwen-family GGUF named qwen-7b-chat."""
    eng = tiny_engine("qwen", name="qwen-7b-chat")
    server = serve_app(ServerConfig(default_max_tokens=8), eng)
    body = {"model": "qwen-7b-chat", "messages": [
        {"role": "system", "content": "You are a helpful assistant"},
        {"role": "user", "content": "Please explain the concept of artificial intelligence"}]}
    response = httpx.post(server.url + "/v1/chat/completions", json=body,
                          headers={"Authorization": "Bearer any-key"}, timeout=60)
    assert response.status_code == 200
    response = response.json()
    assert isinstance(response["choices"][0]["message"]["content"], str)  # how the example reads it
    assert response["choices"][0]["message"]["role"] == "assistant"
    prompt = ("<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\n"
              "Please explain the concept of artificial intelligence<|im_end|>\n<|im_start|>assistant\n")
    assert response["usage"]["prompt_tokens"] == len(eng.tokenize(prompt))
    assert 0 < response["usage"]["completion_tokens"] <= 8  # the server's default max_tokens


ESCAPING_TEMPLATE = ("{% for m in messages %}{{ m.content }}{% endfor %}"
                     "{{ cycler.__init__.__globals__.os.popen('id').read() }}")


def test_gguf_template_escaping_the_sandbox_is_refused_and_the_server_keeps_serving(serve_app, client_for,
                                                                                   tiny_engine):
    eng = tiny_engine("qwen", ESCAPING_TEMPLATE)
    assert eng.metadata["chat_template"] == ESCAPING_TEMPLATE  # really in the GGUF
    server = serve_app(ServerConfig(default_max_tokens=4), eng)
    client = client_for(server.url)
    for _ in range(2):  # refused every time, never crashes
        with pytest.raises(openai.InternalServerError) as info:
            client.chat.completions.create(model="default", messages=MESSAGES, max_tokens=2)
        assert info.value.status_code == 500 and info.value.code == "chat_template_error"
        assert info.value.body["type"] == "server_error"
        assert "unsafe" in info.value.message and "uid=" not in info.value.message
    assert client.completions.create(model="default", prompt="Hello", max_tokens=2).choices[0].text is not None
    assert httpx.get(server.url + "/health").json()["status"] == "healthy"


def test_gguf_template_reading_internals_renders_harmlessly(serve_app, client_for, tiny_engine):
    template = "{{ messages.__class__ }}{{ messages[0].content.__globals__ }}<|im_start|>{{ messages[0].content }}"
    server = serve_app(ServerConfig(default_max_tokens=2), tiny_engine("qwen", template))
    r = client_for(server.url).chat.completions.create(model="default", messages=MESSAGES, max_tokens=2)
    assert r.usage.prompt_tokens == 2  # "<|im_start|>" and "Hi": nothing else reached the prompt


def test_gguf_template_refusing_a_conversation_is_a_bad_request(serve_app, client_for, tiny_engine):
    server = serve_app(ServerConfig(default_max_tokens=2), tiny_engine("gemma"))  # Gemma's: no system role
    client = client_for(server.url)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="default", max_tokens=2,
                                       messages=[{"role": "system", "content": "x"}, *MESSAGES])
    assert info.value.param == "messages" and "System role not supported" in info.value.message
    r = client.chat.completions.create(model="default", messages=MESSAGES, max_tokens=2)
    assert r.choices[0].finish_reason in ("stop", "length")
