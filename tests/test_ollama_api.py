"""Ollama's API (/api) with the official ollama client and httpx, on the default model
(SmolLM2) over the session's server; greedy, so the runs are deterministic."""
from __future__ import annotations

import json

import httpx
import ollama
import pytest

GREEDY = {"temperature": 0, "num_predict": 8, "seed": 1}


@pytest.fixture(scope="module")
def url(default_server):
    return default_server.url


@pytest.fixture(scope="module")
def client(url):
    with ollama.Client(host=url) as client:
        yield client


@pytest.fixture(scope="module")
def name(client):
    """The served model as /api/ps lists it (`<registry name>:latest`)."""
    return client.ps().models[0].model


def test_listings(client, url, name):
    tags = {m.model: m for m in client.list().models}
    assert name.endswith(":latest") and tags[name].details.format == "gguf" and tags[name].size > 0
    running = client.ps().models
    assert [m.model for m in running] == [name] and running[0].context_length == 4096
    shown = client.show(name)
    assert "{%" in shown.template and "completion" in shown.capabilities
    assert httpx.get(url + "/api/version").json()["version"]


def test_chat_whole_and_streamed_agree(client, name):
    messages = [{"role": "user", "content": "Name a colour."}]
    whole = client.chat(name, messages, options=GREEDY)
    assert whole.done and whole.done_reason == "length" and whole.eval_count == 8
    assert whole.message.role == "assistant" and whole.message.content
    assert whole.prompt_eval_count > 5 and whole.total_duration >= whole.eval_duration > 0
    records = list(client.chat(name, messages, options=GREEDY, stream=True))
    assert all(not r.done for r in records[:-1]) and records[-1].done
    assert "".join(r.message.content for r in records) == whole.message.content
    assert records[-1].eval_count == 8 and records[-1].prompt_eval_duration > 0


def test_chat_tool_call_forced_through_format(client, name):
    """Ollama has no tool_choice, and a 135M model calls no tool unforced: a `format` of the
    call's shape forces it, and the output parser reads it as a call, whole and streamed."""
    weather = {"type": "function", "function": {
        "name": "get_weather", "description": "The weather in a city",
        "parameters": {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}}}
    call_shape = {"type": "object", "required": ["name", "arguments"], "properties": {
        "name": {"const": "get_weather"}, "arguments": weather["function"]["parameters"]}}
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    reply = client.chat(name, ask, tools=[weather], format=call_shape, options={"temperature": 0, "num_predict": 64})
    calls = reply.message.tool_calls or []
    assert [(c.function.name, c.function.arguments) for c in calls] == [("get_weather", {"city": "Paris"})]
    records = list(client.chat(name, ask, tools=[weather], format=call_shape, stream=True,
                               options={"temperature": 0, "num_predict": 64}))
    streamed = [c for r in records for c in (r.message.tool_calls or [])]
    assert streamed == calls and records[-1].done


def test_tool_history(client, name):
    """A call and its result go back as history, as Ollama's clients send them (no ids)."""
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    call = {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather",
                                                                           "arguments": {"city": "Paris"}}}]}
    result = {"role": "tool", "content": "sunny and 21 degrees", "tool_name": "get_weather"}
    short = client.chat(name, ask, options={**GREEDY, "num_predict": 1})
    follow = client.chat(name, [*ask, call, result], options={**GREEDY, "num_predict": 1})
    assert follow.done and follow.prompt_eval_count > short.prompt_eval_count + 8  # the call and result are in


def test_format_schema_forces_json(client, name):
    schema = {"type": "object", "required": ["city"], "properties": {"city": {"type": "string", "maxLength": 12}},
              "additionalProperties": False}
    reply = client.chat(name, [{"role": "user", "content": "Which city is the capital of France?"}],
                        format=schema, options={"temperature": 0, "num_predict": 40})
    assert set(json.loads(reply.message.content)) == {"city"}


def test_generate_plain_raw_and_streamed(client, name):
    plain = client.generate(name, "The sky is", system="Answer briefly.", options=GREEDY)
    assert plain.done and plain.response and plain.eval_count == 8
    raw = client.generate(name, "1, 2, 3, 4,", raw=True, options={"temperature": 0, "num_predict": 4})
    assert raw.response.strip().startswith("5")
    streamed = list(client.generate(name, "The sky is", system="Answer briefly.", options=GREEDY, stream=True))
    assert "".join(r.response for r in streamed) == plain.response and streamed[-1].done


def test_embed(client, url, name):
    out = client.embed(name, ["hello", "world"])
    assert len(out.embeddings) == 2 and len(out.embeddings[0]) > 100 and out.prompt_eval_count >= 2
    legacy = httpx.post(url + "/api/embeddings", json={"model": name, "prompt": "hello"}).json()
    assert legacy["embedding"] == pytest.approx(out.embeddings[0], abs=1e-5)


def test_names_map_onto_the_registry(client, name):
    bare = name.removesuffix(":latest")
    assert client.chat(bare, [{"role": "user", "content": "Hi"}], options=GREEDY).model == bare


@pytest.mark.parametrize(("path", "body", "says"), [
    ("/api/chat", {"model": "M", "messages": [{"role": "user", "content": "x"}], "options": {"temperature": 9}},
     "options.temperature"),
    ("/api/chat", {"model": "M", "messages": [{"role": "user", "content": "x", "images": ["aGk="]}]}, "images"),
    ("/api/chat", {"model": "M", "messages": [{"role": "user", "content": "x"}], "format": "xml"}, "format"),
    ("/api/chat", {"model": "M", "messages": [{"role": "user", "content": "x"}], "think": "lots"}, "think"),
    ("/api/chat", {"model": "M", "messages": [{"role": "user", "content": "x"}],
                   "options": {"num_ctx": 1_000_000}}, "num_ctx"),
    ("/api/generate", {"model": "M", "prompt": "x", "suffix": "y"}, "suffix"),
    ("/api/generate", {"model": "M", "prompt": "x", "template": "{{ .Prompt }}"}, "template"),
    ("/api/generate", {"model": "M", "prompt": "x", "images": ["aGk="]}, "images"),
    ("/api/chat", [1, 2], "body"),
])
def test_bad_input_is_a_400_in_ollamas_shape(url, name, path, body, says):
    if isinstance(body, dict):
        body = {**body, "model": name, "stream": False}
    answer = httpx.post(url + path, json=body)
    assert answer.status_code == 400, answer.text
    assert set(answer.json()) == {"error"} and says in answer.json()["error"]


def test_errors_reach_the_client_as_response_error(client):
    with pytest.raises(ollama.ResponseError) as caught:
        client.chat("no-such-model:7b", [{"role": "user", "content": "x"}])
    assert caught.value.status_code == 404 and "no-such-model" in caught.value.error
    with pytest.raises(ollama.ResponseError) as caught:
        client.pull("smollm2:135m")
    assert caught.value.status_code == 400 and "models folder" in caught.value.error


def test_unknown_option_is_ignored_and_logged(client, name, caplog):
    with caplog.at_level("INFO", logger="llamaserve.server.ollama"):
        reply = client.chat(name, [{"role": "user", "content": "Hi"}], options={**GREEDY, "num_thread": 2})
    assert reply.done and reply.eval_count == 8 and "num_thread" in caplog.text


def test_stream_is_ndjson_and_an_empty_request_loads(url, name):
    with httpx.stream("POST", url + "/api/generate", json={"model": name, "prompt": "Hi", "options": GREEDY}) as r:
        assert r.headers["content-type"] == "application/x-ndjson"
        records = [json.loads(line) for line in r.iter_lines() if line]
    assert records[-1]["done"] and records[-1]["done_reason"] == "length"
    loaded = httpx.post(url + "/api/chat", json={"model": name, "messages": []}).json()
    assert loaded["done"] and loaded["done_reason"] == "load"


def test_think(thinking_server):
    """A reasoning model's thinking comes back apart (message.thinking, streamed too); think
    false closes the block in the prompt."""
    with ollama.Client(host=thinking_server.url) as client:
        model = client.ps().models[0].model
        ask = [{"role": "user", "content": "Is 7 prime?"}]
        thought = client.chat(model, ask, think=True, options={"temperature": 0, "num_predict": 24})
        assert thought.message.thinking and "<think>" not in (thought.message.content or "")
        streamed = list(client.chat(model, ask, think=True, stream=True, options={"temperature": 0, "num_predict": 24}))
        assert "".join(r.message.thinking or "" for r in streamed) == thought.message.thinking
        plain = client.chat(model, ask, think=False, options={"temperature": 0, "num_predict": 24})
        assert not plain.message.thinking and plain.message.content
