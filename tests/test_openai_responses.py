"""POST /v1/responses (the OpenAI Responses API, stateless) through the official OpenAI SDK:
text and item input, incomplete output, the typed event stream, a function tool round trip,
structured output, errors, disconnects; real model, real uvicorn."""
from __future__ import annotations

import json

import httpx
import jsonschema
import openai
import pytest
from serverutil import health, wait_for

from llamaserve.server.chat.templates import ChatTemplate
from llamaserve.config import ServerConfig

QUESTION = "What is the capital of France?"
WEATHER_TOOL = {"type": "function", "name": "get_weather", "description": "Current weather of a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                               "required": ["city"], "additionalProperties": False}}
TEXT_EVENTS = ["response.created", "response.in_progress", "response.output_item.added",
               "response.content_part.added", "response.output_text.delta", "response.output_text.done",
               "response.content_part.done", "response.output_item.done", "response.completed"]


def _gemma_prompt_tokens(engine, messages) -> int:
    return len(engine.tokenize(ChatTemplate.builtin("gemma").render(messages)))


def _deduplicated(types: list[str]) -> list[str]:
    return [t for i, t in enumerate(types) if i == 0 or t != types[i - 1]]


def test_text_input_answers_as_chat_does(openai_client, engine, served_model):
    # Both requests without the prefix cache: their texts are compared (README, "Prefix caching").
    exact = {"cache_prompt": False}
    r = openai_client.responses.create(model=served_model, input=QUESTION, max_output_tokens=12, temperature=0,
                                       extra_body=exact)
    assert r.id.startswith("resp_") and r.object == "response" and r.created_at > 0
    assert r.model == served_model and r.error is None and r.tools == [] and r.parallel_tool_calls is True
    (message,) = r.output
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    (part,) = message.content
    assert part.type == "output_text" and part.annotations == [] and part.text and r.output_text == part.text
    messages = [{"role": "user", "content": QUESTION}]
    assert r.usage.input_tokens == _gemma_prompt_tokens(engine, messages)  # the chat template made the prompt
    assert 0 < r.usage.output_tokens <= 12 and r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert r.usage.output_tokens_details.reasoning_tokens == 0 and r.usage.input_tokens_details.cached_tokens >= 0
    chat = openai_client.chat.completions.create(model=served_model, messages=messages, max_tokens=12, temperature=0,
                                                 extra_body=exact)
    assert r.output_text == chat.choices[0].message.content


def test_items_and_instructions(openai_client, engine, served_model):
    r = openai_client.responses.create(
        model=served_model, instructions="Be brief.", max_output_tokens=4, temperature=0,
        metadata={"ticket": "42"}, store=False, user="u1", truncation="disabled", reasoning={"effort": "low"},
        input=[{"role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
               {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello!"}]},
               {"role": "developer", "content": "Answer in French."},
               {"role": "user", "content": QUESTION}])
    assert r.instructions == "Be brief." and r.metadata == {"ticket": "42"} and r.max_output_tokens == 4
    assert r.temperature == 0 and r.truncation == "disabled"
    assert r.usage.input_tokens == _gemma_prompt_tokens(engine, [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"}, {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": QUESTION}])


def test_max_output_tokens_leaves_it_incomplete(openai_client, served_model):
    args = dict(model=served_model, input=QUESTION, max_output_tokens=2, temperature=0)
    r = openai_client.responses.create(**args)
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.usage.output_tokens == 2 and r.output[0].status == "incomplete"
    events = list(openai_client.responses.create(**args, stream=True))
    assert events[-1].type == "response.incomplete" and events[-1].response.status == "incomplete"
    assert events[-1].response.output_text == r.output_text


def test_streaming_events_and_text(openai_client, base_url, served_model):
    # Gemma 270M is a base model that never ends a turn: a stop string (an extension) does.
    # Both computed from scratch: a prefix reused from the first would put the second's greedy
    # tokens through other batch shapes, where a near tie 20 tokens on may go either way.
    args = dict(model=served_model, input=QUESTION, max_output_tokens=24, temperature=0,
                extra_body={"stop": "\n", "cache_prompt": False})
    whole = openai_client.responses.create(**args)
    events = list(openai_client.responses.create(**args, stream=True))
    assert _deduplicated([e.type for e in events]) == TEXT_EVENTS
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].response.status == "in_progress" and events[0].response.output == []
    assert all(e.response.id == events[0].response.id for e in events if hasattr(e, "response"))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == whole.output_text
    done = next(e for e in events if e.type == "response.output_text.done")
    assert done.text == text and events[-1].response.output_text == text
    assert events[-1].response.usage.output_tokens == whole.usage.output_tokens
    # The SDK's stream helper assembles the same response.
    with openai_client.responses.stream(**args) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == text and final.status == "completed"
    # On the wire: an `event:` line naming each `data:` line's type, and no [DONE].
    raw = {k: v for k, v in args.items() if k != "extra_body"} | args["extra_body"] | {"stream": True}
    with httpx.stream("POST", base_url + "/v1/responses", json=raw, timeout=60) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line]
    assert [json.loads(line[6:])["type"] for line in lines[1::2]] == [line[7:] for line in lines[0::2]]
    assert all(line.startswith("event: ") for line in lines[0::2])


def test_function_tool_round_trip(openai_client, engine, served_model):
    question = [{"role": "user", "content": "What is the weather in Paris?"}]
    r = openai_client.responses.create(model=served_model, input=question, tools=[WEATHER_TOOL],
                                       tool_choice={"type": "function", "name": "get_weather"},
                                       temperature=0, max_output_tokens=32)
    assert r.status == "completed" and r.tool_choice.name == "get_weather" and r.tools[0].name == "get_weather"
    (call,) = r.output
    assert call.type == "function_call" and call.id.startswith("fc_") and call.call_id.startswith("call_")
    assert call.name == "get_weather" and call.status == "completed"
    arguments = json.loads(call.arguments)
    jsonschema.validate(arguments, WEATHER_TOOL["parameters"])

    # Back to the model: its own output item, then the tool's result.
    answer = openai_client.responses.create(
        model=served_model, tools=[WEATHER_TOOL], tool_choice="none", temperature=0, max_output_tokens=8,
        input=[*question, *r.output, {"type": "function_call_output", "call_id": call.call_id,
                                      "output": "sunny, 21C"}])
    assert answer.output[0].type == "message" and isinstance(answer.output_text, str)
    expected_prompt = ("<start_of_turn>user\nWhat is the weather in Paris?<end_of_turn>\n"
                       f"<start_of_turn>model\n{json.dumps({'name': 'get_weather', 'arguments': arguments})}"
                       "<end_of_turn>\n"
                       "<start_of_turn>user\n<tool_response>\nsunny, 21C\n</tool_response><end_of_turn>\n"
                       "<start_of_turn>model\n")
    assert answer.usage.input_tokens == len(engine.tokenize(expected_prompt))  # as chat renders it

    events = list(openai_client.responses.create(model=served_model, input=question, tools=[WEATHER_TOOL],
                                                 tool_choice="required", temperature=0, max_output_tokens=32,
                                                 stream=True))
    assert _deduplicated([e.type for e in events]) == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "response.completed"]
    streamed = events[-1].response.output[0]
    # The same call; its whitespace may differ: this prompt's prefix now comes from the cache,
    # and logits computed past a cached prefix differ in the last bits from a whole prefill.
    assert streamed.name == "get_weather" and json.loads(streamed.arguments) == arguments
    assert "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta") == streamed.arguments


def test_structured_output(openai_client, served_model):
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 10}},
              "required": ["city"], "additionalProperties": False}
    r = openai_client.responses.create(
        model=served_model, input=QUESTION, temperature=0, max_output_tokens=30,
        text={"format": {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}})
    jsonschema.validate(json.loads(r.output_text), schema)
    assert r.text.format.type == "json_schema" and r.text.format.name == "answer"


@pytest.mark.parametrize(("extra", "param", "fragment"), [
    ({"temperature": 5}, "temperature", "between 0 and 2"),
    ({"max_output_tokens": 0}, "max_output_tokens", "between 1"),
    ({"previous_response_id": "resp_123"}, "previous_response_id", "stateless"),
    ({"max_tokens": 5}, "max_tokens", "unsupported parameter"),
    ({"input": []}, "input", "empty"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
     "input[0].content[0].type", "input_text"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type", "function_call_output"),
    ({"tools": [{"type": "telepathy"}]}, "tools[0].type", "function"),
    ({"tools": [{"type": "web_search"}], "tool_choice": {"type": "web_search"}}, "tool_choice.type", "hosts"),
    ({"tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "name": "nope"}}, "tool_choice.name", "no tool"),
    ({"text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "string", "pattern": "^a$"}}}},
     "text.format.schema", "'pattern'"),
])
def test_bad_requests_name_the_parameter(openai_client, served_model, extra, param, fragment):
    body = {"input": "Hi", "max_output_tokens": 2, **extra}
    with pytest.raises(openai.BadRequestError) as info:
        openai_client.responses.create(model=served_model, extra_body=body)
    assert info.value.status_code == 400 and info.value.param == param
    assert fragment in info.value.message


def test_disconnect_frees_the_slot(base_url, served_model):
    body = {"model": served_model, "input": QUESTION, "max_output_tokens": 400, "temperature": 0,
            "ignore_eos": True}
    wait_for(lambda: health(base_url)["slots"]["busy"] == 0, timeout=10)
    with httpx.stream("POST", base_url + "/v1/responses", json={**body, "stream": True}, timeout=60) as response:
        lines = response.iter_lines()  # held: dropping the iterator would close the connection
        assert next(line for line in lines if line == "event: response.output_text.delta")
        assert health(base_url)["slots"]["busy"] == 1
    assert wait_for(lambda: health(base_url)["slots"]["busy"] == 0, timeout=5) < 2
    with pytest.raises(httpx.ReadTimeout):  # not streaming: give up waiting for the answer
        httpx.post(base_url + "/v1/responses", json=body, timeout=httpx.Timeout(60, read=1.0))
    assert wait_for(lambda: health(base_url)["slots"]["busy"] == 0, timeout=5) < 2


def test_a_stream_that_fails_ends_with_an_error_event(serve_app, client_for, served_model):
    client = client_for(serve_app(ServerConfig(request_timeout=1)).url)
    events = list(client.responses.create(model=served_model, input=QUESTION, max_output_tokens=400, temperature=0,
                                          stream=True, extra_body={"ignore_eos": True}))
    assert events[-1].type == "error" and events[-1].code == "request_timeout"
    assert not any(e.type in ("response.completed", "response.incomplete") for e in events)
