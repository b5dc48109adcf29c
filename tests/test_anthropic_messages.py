"""POST /v1/messages through the official anthropic SDK and as raw HTTP: messages, system
prompts, stop sequences, max_tokens, streaming (the SDK's helper and the raw event order),
tool use, errors in Anthropic's shape, x-api-key, and a disconnect that frees its slot.

This SDK has no sampling arguments of its own any more; temperature goes in extra_body."""
from __future__ import annotations

import json

import anthropic
import httpx
import jsonschema
import pytest
from serverutil import health, wait_for

from llamaserve.config import ServerConfig

GREEDY = {"temperature": 0}
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
WEATHER = {"name": "get_weather", "description": "Current weather of a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                            "required": ["city"], "additionalProperties": False}}


@pytest.fixture(scope="module")
def client(base_url):
    """The SDK pointed at the live server (no retries: errors surface at once)."""
    with anthropic.Anthropic(base_url=base_url, api_key="unused", max_retries=0) as c:
        yield c


def _text(message) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


def prompt_tokens(usage) -> int:
    """Anthropic counts prompt tokens read from the cache apart from input_tokens."""
    assert usage.cache_creation_input_tokens == 0
    return usage.input_tokens + usage.cache_read_input_tokens


def _chat_prompt_tokens(openai_client, model, messages) -> int:
    """What /v1/chat/completions counts for the same conversation (the same template path)."""
    r = openai_client.chat.completions.create(model=model, messages=messages, max_tokens=1, temperature=0)
    return r.usage.prompt_tokens


def test_message(client, served_model, openai_client):
    m = client.messages.create(model=served_model, max_tokens=8, messages=QUESTION, extra_body=GREEDY)
    assert m.id.startswith("msg_") and m.type == "message" and m.role == "assistant"
    assert m.model == served_model
    assert [b.type for b in m.content] == ["text"] and _text(m)
    assert m.stop_reason in ("end_turn", "max_tokens") and m.stop_sequence is None
    assert 0 < m.usage.output_tokens <= 8
    assert prompt_tokens(m.usage) == _chat_prompt_tokens(openai_client, served_model, QUESTION)


def test_system_prompt_as_a_string_or_text_blocks(client, served_model, openai_client):
    as_string = client.messages.create(model=served_model, max_tokens=4, system="Be brief.", messages=QUESTION,
                                       extra_body=GREEDY)
    as_blocks = client.messages.create(model=served_model, max_tokens=4, messages=QUESTION, extra_body=GREEDY,
                                       system=[{"type": "text", "text": "Be brief."}])
    system = {"role": "system", "content": "Be brief."}
    expected = _chat_prompt_tokens(openai_client, served_model, [system, *QUESTION])
    assert prompt_tokens(as_string.usage) == prompt_tokens(as_blocks.usage) == expected
    assert _text(as_string) == _text(as_blocks)


def test_stop_sequences_and_max_tokens(client, served_model):
    free = client.messages.create(model=served_model, max_tokens=16, messages=QUESTION, extra_body=GREEDY)
    assert free.stop_reason == "max_tokens" and free.usage.output_tokens == 16
    text = _text(free)
    stop = text.strip()[2:5]  # a piece of what greedy decoding writes anyway
    m = client.messages.create(model=served_model, max_tokens=16, messages=QUESTION, extra_body=GREEDY,
                               stop_sequences=["never-written-0", stop])
    assert (m.stop_reason, m.stop_sequence) == ("stop_sequence", stop)
    assert _text(m) == text[:text.index(stop)]
    assert m.usage.output_tokens < 16


def test_streaming_helper_gives_the_same_message(client, served_model):
    args = dict(model=served_model, max_tokens=10, messages=QUESTION, extra_body=GREEDY)
    # Both compared runs reuse the same cached prefix (the first call leaves it): computed in
    # the same batch shape, a near tie cannot go two ways (tests/reproducible.py).
    client.messages.create(**args)
    whole = client.messages.create(**args)
    with client.messages.stream(**args) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 1 and "".join(pieces) == _text(whole) == _text(final)
    assert final.id.startswith("msg_") and final.stop_reason == whole.stop_reason
    assert prompt_tokens(final.usage) == prompt_tokens(whole.usage)
    assert final.usage.output_tokens == whole.usage.output_tokens


def _raw_events(response: httpx.Response) -> list[tuple[str, dict]]:
    """(event name, data) of each SSE message; each has both lines, the name is the data's type."""
    events, name = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[len("event: "):]
        elif line.startswith("data: "):
            data = json.loads(line[len("data: "):])
            assert name == data["type"]
            events.append((name, data))
            name = None
    return events


def test_raw_event_order(base_url, served_model):
    body = {"model": served_model, "max_tokens": 6, "messages": QUESTION, "stream": True, "temperature": 0,
            "stop_sequences": ["never-written"]}
    with httpx.stream("POST", base_url + "/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"},
                      timeout=60) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        events = _raw_events(response)
    names = [name for name, _ in events]
    deltas = names.count("content_block_delta")
    assert names == ["message_start", "content_block_start", "ping", *["content_block_delta"] * deltas,
                     "content_block_stop", "message_delta", "message_stop"] and deltas > 0
    start = events[0][1]["message"]
    assert start["id"].startswith("msg_") and start["content"] == [] and start["stop_reason"] is None
    assert start["usage"]["input_tokens"] > 0 and start["usage"]["output_tokens"] == 0
    assert events[1][1] == {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    assert all(d["index"] == 0 and d["delta"]["type"] == "text_delta" for n, d in events if n == "content_block_delta")
    end = events[-2][1]
    assert end["delta"] == {"stop_reason": "max_tokens", "stop_sequence": None}
    assert end["usage"]["output_tokens"] == 6


def test_tool_use_round_trip(client, served_model, openai_client):
    question = [{"role": "user", "content": "What is the weather in Paris?"}]
    m = client.messages.create(model=served_model, max_tokens=32, messages=question, tools=[WEATHER],
                               tool_choice={"type": "tool", "name": "get_weather"}, extra_body=GREEDY)
    assert m.stop_reason == "tool_use"
    (call,) = m.content
    assert call.type == "tool_use" and call.name == "get_weather" and call.id.startswith("toolu_")
    jsonschema.validate(call.input, WEATHER["input_schema"])

    # Back to the model: its own content, then the tool's result.
    result = {"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21C"}
    conversation = [*question, {"role": "assistant", "content": m.content}, {"role": "user", "content": [result]}]
    answer = client.messages.create(model=served_model, max_tokens=4, messages=conversation, tools=[WEATHER],
                                    tool_choice={"type": "none"}, extra_body=GREEDY)
    assert answer.stop_reason in ("end_turn", "max_tokens") and _text(answer)
    # The same conversation in OpenAI's words makes the same prompt.
    openai_call = {"id": call.id, "type": "function",
                   "function": {"name": call.name, "arguments": json.dumps(call.input)}}
    assert prompt_tokens(answer.usage) == _chat_prompt_tokens(openai_client, served_model, [
        *question, {"role": "assistant", "content": None, "tool_calls": [openai_call]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"}])


def test_forced_tool_use_streams_as_input_json(client, served_model):
    with client.messages.stream(model=served_model, max_tokens=32, messages=QUESTION, tools=[WEATHER],
                                tool_choice={"type": "any"}, extra_body=GREEDY) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert "input_json" in kinds and final.stop_reason == "tool_use"
    (call,) = final.content
    assert call.type == "tool_use" and isinstance(call.input["city"], str)


def _error(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"type", "error"} and body["type"] == "error" and set(body["error"]) == {"type", "message"}
    return body["error"]


@pytest.mark.parametrize(("extra", "field"), [
    ({"temperature": 1.5}, "temperature"),  # Anthropic's range: 0 to 1
    ({"max_tokens": None}, "max_tokens"),
    ({"top_p": 0}, "top_p"),
    ({"stop_sequences": "x"}, "stop_sequences"),
    ({"frobnicate": 1}, "frobnicate"),
    ({"messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]}, "messages[0].content[0].type"),
    ({"tools": [{"name": "f"}]}, "tools[0].input_schema"),
    ({"tools": [WEATHER], "tool_choice": {"type": "tool", "name": "g"}}, "tool_choice.name"),
])
def test_bad_requests_name_the_field(client, base_url, served_model, extra, field):
    body = {"model": served_model, "max_tokens": 2, "messages": QUESTION, **extra}
    response = httpx.post(base_url + "/v1/messages", json={k: v for k, v in body.items() if v is not None})
    assert response.status_code == 400
    error = _error(response)
    assert error["type"] == "invalid_request_error" and error["message"].startswith(field + ":")
    with pytest.raises(anthropic.BadRequestError) as info:  # the SDK's class for it
        client.messages.create(model=served_model, max_tokens=2, messages=body["messages"],
                               extra_body={k: v for k, v in extra.items() if k != "messages"})
    assert info.value.type == "invalid_request_error"


def test_llama_server_leniencies_no_model_and_empty_messages(base_url, served_model):
    # Clients written for llama-server send no model, and may send no messages.
    answer = httpx.post(base_url + "/v1/messages", json={"max_tokens": 2, "messages": QUESTION}, timeout=60)
    assert answer.status_code == 200 and answer.json()["model"] == served_model
    empty = httpx.post(base_url + "/v1/messages", json={"max_tokens": 2, "messages": []}, timeout=60)
    assert empty.status_code == 200 and empty.json()["type"] == "message"
    count = httpx.post(base_url + "/v1/messages/count_tokens", json={"messages": QUESTION}, timeout=60)
    assert count.status_code == 200 and count.json()["input_tokens"] > 0


def test_unknown_model_and_endpoint(client, base_url, served_model):
    # One model served: any name is served by it (unknown names: tests/test_model_names.py).
    assert client.messages.create(model="claude-sonnet-4-5", max_tokens=2, messages=QUESTION).model == served_model
    response = httpx.post(base_url + "/v1/messages/nowhere", json={})
    assert response.status_code == 404 and _error(response)["type"] == "not_found_error"


def test_keys_rate_limit_and_body_limit(serve_app, served_model):
    server = serve_app(ServerConfig(api_keys=("sk-right",), rate_limit=3, rate_limit_window=3600,
                                    max_body_bytes=4096))
    body = {"model": served_model, "max_tokens": 2, "messages": QUESTION}
    with anthropic.Anthropic(base_url=server.url, api_key="sk-wrong", max_retries=0) as wrong:
        with pytest.raises(anthropic.AuthenticationError) as info:
            wrong.messages.create(**body)
    assert info.value.type == "authentication_error"
    headers = {"x-api-key": "sk-right", "anthropic-version": "2023-06-01"}  # as Anthropic's clients send them
    assert httpx.post(server.url + "/v1/messages", json=body, headers=headers, timeout=60).status_code == 200
    too_large = httpx.post(server.url + "/v1/messages", headers=headers,
                           json={**body, "system": "x" * 5000})
    assert too_large.status_code == 413 and _error(too_large)["type"] == "invalid_request_error"
    with anthropic.Anthropic(base_url=server.url, api_key="sk-right", max_retries=0) as right:
        assert right.messages.create(**body).usage.output_tokens > 0
        with pytest.raises(anthropic.RateLimitError) as info:
            right.messages.create(**body)
    assert info.value.type == "rate_limit_error" and int(info.value.response.headers["Retry-After"]) > 0
    metrics = httpx.get(server.url + "/metrics", headers={"Authorization": "Bearer sk-right"})  # guarded with keys
    counted = [line for line in metrics.text.splitlines()
               if line.startswith("llamaserve:http_requests_total{") and 'endpoint="/v1/messages"' in line]
    assert any('status="200"' in line for line in counted)  # by endpoint, like /v1


def _cancelled(base_url: str) -> float:
    text = httpx.get(base_url + "/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("llamaserve:request_finished_total{") and 'finished_reason="cancelled"' in line)


def test_disconnect_mid_stream_frees_the_slot(base_url, served_model):
    wait_for(lambda: health(base_url)["slots"]["busy"] == 0, timeout=10)
    before = _cancelled(base_url)
    body = {"model": served_model, "max_tokens": 400, "messages": QUESTION, "stream": True, "temperature": 0}
    with httpx.stream("POST", base_url + "/v1/messages", json=body, timeout=60) as response:
        lines = response.iter_lines()
        assert next(line for line in lines if line == "event: content_block_delta")
    assert wait_for(lambda: health(base_url)["slots"]["busy"] == 0, timeout=10) < 5
    wait_for(lambda: _cancelled(base_url) == before + 1, timeout=5)


def test_a_stream_that_times_out_ends_with_an_error_event(serve_app, served_model):
    server = serve_app(ServerConfig(request_timeout=1))
    body = {"model": served_model, "max_tokens": 400, "messages": QUESTION, "stream": True, "temperature": 0}
    with httpx.stream("POST", server.url + "/v1/messages", json=body, timeout=60) as response:
        events = _raw_events(response)
    assert events[0][0] == "message_start" and "message_stop" not in [name for name, _ in events]
    name, error = events[-1]
    assert name == "error" and error["error"]["type"] == "timeout_error"
    assert "--request-timeout" in error["error"]["message"]
    timed_out = httpx.post(server.url + "/v1/messages", json={**body, "stream": False}, timeout=60)
    assert timed_out.status_code == 504 and _error(timed_out)["type"] == "timeout_error"
