"""POST /v1/chat/completions through the official OpenAI SDK (sync and async), and as the raw
HTTP the spec's old-style SDK example sends; real model, real uvicorn."""
from __future__ import annotations

import json

import httpx
import jsonschema
import openai
import pytest
from serverutil import wait_for

from llamaserve.server.chat.templates import ChatTemplate

QUESTION = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the capital of France?"}]
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                   "required": ["city"], "additionalProperties": False}}}


def _gemma_prompt_tokens(engine, messages) -> int:
    return len(engine.tokenize(ChatTemplate.builtin("gemma").render(messages)))


def _stream_text(chunks) -> tuple[str, dict[int, str]]:
    texts: dict[int, str] = {}
    finish: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
            if choice.finish_reason:
                finish[choice.index] = choice.finish_reason
    return texts.get(0, ""), finish


def test_chat_completion(openai_client, engine, served_model):
    r = openai_client.chat.completions.create(model=served_model, messages=QUESTION, max_tokens=12, temperature=0)
    assert r.id.startswith("chatcmpl-") and r.object == "chat.completion"
    assert r.model == served_model and r.system_fingerprint.startswith("b") and r.created > 0
    (choice,) = r.choices
    assert choice.index == 0 and choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and choice.message.content
    assert choice.finish_reason in ("stop", "length") and choice.message.tool_calls is None
    # No chat template in this GGUF: the built-in Gemma template made the prompt.
    assert r.usage.prompt_tokens == _gemma_prompt_tokens(engine, QUESTION)
    assert 0 < r.usage.completion_tokens <= 12
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_streaming_gives_the_same_text_and_the_chunk_protocol(openai_client, served_model):
    args = dict(model=served_model, messages=QUESTION, max_tokens=12, temperature=0)
    whole = openai_client.chat.completions.create(**args).choices[0]
    chunks = list(openai_client.chat.completions.create(**args, stream=True))
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == whole.finish_reason
    assert all(c.usage is None for c in chunks)  # usage only when asked for
    text, _ = _stream_text(chunks)
    assert text == whole.message.content


async def test_async_client_streaming_and_not(base_url, served_model, openai_client):
    args = dict(model=served_model, messages=QUESTION, max_tokens=10, temperature=0)
    expected = openai_client.chat.completions.create(**args).choices[0].message.content
    async with openai.AsyncOpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0) as client:
        r = await client.chat.completions.create(**args)
        assert r.choices[0].message.content == expected
        text = ""
        async for chunk in await client.chat.completions.create(**args, stream=True):
            for choice in chunk.choices:
                text += choice.delta.content or ""
        assert text == expected


def test_n_choices(openai_client, served_model):
    r = openai_client.chat.completions.create(model=served_model, messages=QUESTION, max_tokens=6,
                                              temperature=0.8, seed=5, n=3)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert all(isinstance(c.message.content, str) and c.finish_reason in ("stop", "length") for c in r.choices)
    assert r.usage.completion_tokens <= 18
    single = openai_client.chat.completions.create(model=served_model, messages=QUESTION, max_tokens=6,
                                                   temperature=0.8, seed=5)
    assert r.usage.prompt_tokens == single.usage.prompt_tokens  # counted once, not per choice
    chunks = list(openai_client.chat.completions.create(model=served_model, messages=QUESTION, max_tokens=6,
                                                        temperature=0.8, n=3, stream=True))
    _, finish = _stream_text(chunks)
    assert sorted(finish) == [0, 1, 2]


def test_stop(openai_client, served_model):
    args = dict(model=served_model, messages=QUESTION, max_tokens=24, temperature=0)
    baseline = openai_client.chat.completions.create(**args).choices[0].message.content
    assert len(baseline) > 12, baseline
    stop = baseline[len(baseline) // 2:len(baseline) // 2 + 3]
    cut = baseline[:baseline.index(stop)]
    for value in (stop, [stop, "never-generated-stop"]):
        r = openai_client.chat.completions.create(**args, stop=value)
        assert r.choices[0].message.content == cut and r.choices[0].finish_reason == "stop"


def test_seed_reproducibility(openai_client, served_model):
    args = dict(model=served_model, messages=[{"role": "user", "content": "Tell me a story."}],
                max_tokens=12, temperature=1.0, top_p=0.95)
    first = openai_client.chat.completions.create(**args, seed=1234).choices[0].message.content
    again = openai_client.chat.completions.create(**args, seed=1234).choices[0].message.content
    assert first == again


def test_parameters_clients_send_by_default_are_accepted(openai_client, served_model):
    r = openai_client.chat.completions.create(
        model=served_model, messages=QUESTION, max_tokens=2, temperature=0, user="user-1", store=False,
        metadata={"k": "v"}, service_tier="auto", parallel_tool_calls=True, stream_options=None,
        extra_body={"safety_identifier": "x", "prompt_cache_key": "y"})
    assert r.usage.completion_tokens == 2


def test_max_completion_tokens(openai_client, served_model):
    r = openai_client.chat.completions.create(model=served_model, messages=QUESTION, max_completion_tokens=3,
                                              temperature=0)
    assert r.usage.completion_tokens == 3 and r.choices[0].finish_reason == "length"


def test_logprobs(openai_client, served_model):
    args = dict(model=served_model, messages=QUESTION, max_tokens=6, temperature=0, logprobs=True, top_logprobs=3)
    r = openai_client.chat.completions.create(**args)
    choice = r.choices[0]
    entries = choice.logprobs.content
    assert len(entries) == r.usage.completion_tokens
    assert "".join(e.token for e in entries) == choice.message.content
    for e in entries:
        assert e.logprob <= 0 and e.bytes == list(e.token.encode())
        assert len(e.top_logprobs) == 3
        assert [t.logprob for t in e.top_logprobs] == sorted((t.logprob for t in e.top_logprobs), reverse=True)
        # Greedy: the chosen token is the most likely one.
        assert (e.top_logprobs[0].token, e.top_logprobs[0].logprob) == (e.token, e.logprob)
    streamed = []
    for chunk in openai_client.chat.completions.create(**args, stream=True):
        for c in chunk.choices:
            if c.logprobs is not None:
                streamed.extend(c.logprobs.content)
    # The second request reuses the first one's cached prompt: a reused prefix may move a
    # log-probability a little (batch numerics; README, "Prefix caching").
    assert [e.token for e in streamed] == [e.token for e in entries]
    assert [e.logprob for e in streamed] == pytest.approx([e.logprob for e in entries], abs=0.1)
    plain = openai_client.chat.completions.create(model=served_model, messages=QUESTION, max_tokens=2, temperature=0)
    assert plain.choices[0].logprobs is None


def test_include_usage(openai_client, served_model):
    # No drafts: how many tokens are drafted (usage counts them) depends on timing.
    args = dict(model=served_model, messages=QUESTION, max_tokens=5, temperature=0,
                extra_body={"speculative": False})
    whole = openai_client.chat.completions.create(**args)
    chunks = list(openai_client.chat.completions.create(**args, stream=True, stream_options={"include_usage": True}))
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.model_dump() == whole.usage.model_dump()
    assert all(c.usage is None for c in chunks[:-1])


def test_response_format_json_schema(openai_client, served_model):
    schema = {"type": "object", "properties": {
        "city": {"type": "string", "maxLength": 12},
        "population": {"type": "integer", "minimum": 0, "maximum": 999},
        "capital": {"type": "boolean"}},
        "required": ["city", "population", "capital"], "additionalProperties": False}
    r = openai_client.chat.completions.create(
        model=served_model, temperature=0, max_tokens=64,
        messages=[{"role": "user", "content": "Describe Paris as JSON."}],
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema, "strict": True}})
    assert r.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(r.choices[0].message.content), schema)


def test_response_format_json_object_streamed(openai_client, served_model):
    chunks = openai_client.chat.completions.create(
        model=served_model, temperature=0, max_tokens=12, stream=True, response_format={"type": "json_object"},
        messages=[{"role": "user", "content": "Give a JSON object with your name."}])
    text, finish = _stream_text(chunks)
    if finish[0] == "length":  # the grammar allows long strings; then the text is a prefix
        assert text.startswith("{")
    else:
        assert isinstance(json.loads(text), dict)


def test_tool_call_round_trip(openai_client, engine, served_model):
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    r = openai_client.chat.completions.create(model=served_model, messages=messages, tools=[WEATHER_TOOL],
                                              tool_choice="required", temperature=0, max_tokens=32)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.id.startswith("call_") and call.type == "function" and call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, WEATHER_TOOL["function"]["parameters"])

    # Back to the model: its own message object, then the tool's result.
    messages += [choice.message, {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"}]
    answer = openai_client.chat.completions.create(model=served_model, messages=messages, tools=[WEATHER_TOOL],
                                                   tool_choice="none", temperature=0, max_tokens=8)
    assert answer.choices[0].finish_reason in ("stop", "length")
    assert isinstance(answer.choices[0].message.content, str)
    expected_prompt = ("<start_of_turn>user\nWhat is the weather in Paris?<end_of_turn>\n"
                       f"<start_of_turn>model\n{json.dumps({'name': 'get_weather', 'arguments': arguments})}"
                       "<end_of_turn>\n"
                       "<start_of_turn>user\n<tool_response>\nsunny, 21C\n</tool_response><end_of_turn>\n"
                       "<start_of_turn>model\n")
    assert answer.usage.prompt_tokens == len(engine.tokenize(expected_prompt))


def test_named_tool_call_streams_as_tool_call_deltas(openai_client, served_model):
    chunks = list(openai_client.chat.completions.create(
        model=served_model, messages=[{"role": "user", "content": "Weather in Rome?"}], tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}}, temperature=0, max_tokens=32,
        stream=True))
    calls = [tc for c in chunks for ch in c.choices for tc in (ch.delta.tool_calls or [])]
    assert calls and calls[0].index == 0 and calls[0].id.startswith("call_")
    assert calls[0].function.name == "get_weather"
    arguments = json.loads("".join(tc.function.arguments or "" for tc in calls))
    assert isinstance(arguments["city"], str)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_tool_choice_auto_streams_like_it_answers(openai_client, served_model):
    args = dict(model=served_model, messages=[{"role": "user", "content": "Hello there"}], tools=[WEATHER_TOOL],
                temperature=0, max_tokens=12)
    whole = openai_client.chat.completions.create(**args).choices[0]
    chunks = list(openai_client.chat.completions.create(**args, stream=True))
    text, finish = _stream_text(chunks)
    streamed_calls = [tc for c in chunks for ch in c.choices for tc in (ch.delta.tool_calls or [])]
    assert finish[0] == whole.finish_reason
    if whole.message.tool_calls:
        assert [tc.function.name for tc in streamed_calls] == [tc.function.name for tc in whole.message.tool_calls]
    else:
        assert text == whole.message.content and not streamed_calls


def test_text_content_parts(openai_client, served_model, engine):
    parts = [{"type": "text", "text": "What is the capital"}, {"type": "text", "text": "of France?"}]
    r = openai_client.chat.completions.create(model=served_model, messages=[{"role": "user", "content": parts}],
                                              max_tokens=2, temperature=0)
    joined = [{"role": "user", "content": "What is the capital\nof France?"}]
    assert r.usage.prompt_tokens == _gemma_prompt_tokens(engine, joined)


def test_spec_old_style_sdk_request_as_raw_http(base_url, served_model):
    # What `openai.ChatCompletion.create(model=..., messages=...)` (SDK 0.x) sends.
    body = {"model": "qwen-7b-chat", "messages": [
        {"role": "system", "content": "You are a helpful assistant"},
        {"role": "user", "content": "Please explain the concept of artificial intelligence"}]}
    headers = {"Authorization": "Bearer any-key", "Content-Type": "application/json"}
    # One model served: it answers any name, and the response names it (tests/test_model_names.py).
    other = httpx.post(base_url + "/v1/chat/completions", json={**body, "max_tokens": 2}, headers=headers, timeout=60)
    assert other.status_code == 200 and other.json()["model"] == served_model

    response = httpx.post(base_url + "/v1/chat/completions", json={**body, "model": served_model},
                          headers=headers, timeout=60)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    response = response.json()
    content = response["choices"][0]["message"]["content"]  # how that SDK's example reads it
    assert isinstance(content, str) and content
    assert response["object"] == "chat.completion" and response["choices"][0]["message"]["role"] == "assistant"
    assert 0 < response["usage"]["completion_tokens"] <= 32  # the server's default max_tokens


def _cancelled(base_url: str) -> float:
    text = httpx.get(base_url + "/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("llamaserve:request_finished_total{") and 'finished_reason="cancelled"' in line)


def test_client_disconnect_cancels_generation(base_url, served_model, engine):
    body = {"model": served_model, "messages": QUESTION, "max_tokens": 480, "temperature": 0}
    before = _cancelled(base_url)
    with httpx.Client(timeout=60) as client:  # streaming: leave after the first content
        with client.stream("POST", base_url + "/v1/chat/completions", json={**body, "stream": True}) as response:
            events = (json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {"))
            assert next(e for e in events if e["choices"][0]["delta"].get("content"))
    assert wait_for(lambda: engine.busy_slots == 0, timeout=10) < 5
    wait_for(lambda: _cancelled(base_url) == before + 1, timeout=5)
    with pytest.raises(httpx.ReadTimeout):  # not streaming: give up waiting for the answer
        httpx.post(base_url + "/v1/chat/completions", json=body, timeout=httpx.Timeout(60, read=1.0))
    assert wait_for(lambda: engine.busy_slots == 0, timeout=10) < 5
    wait_for(lambda: _cancelled(base_url) == before + 2, timeout=5)


@pytest.mark.parametrize("messages", [
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"}],
    [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
])
def test_multi_turn_and_developer_role(openai_client, served_model, engine, messages):
    r = openai_client.chat.completions.create(model=served_model, messages=messages, max_tokens=1, temperature=0)
    normalized = [{**m, "role": "system" if m["role"] == "developer" else m["role"]} for m in messages]
    assert r.usage.prompt_tokens == _gemma_prompt_tokens(engine, normalized)
