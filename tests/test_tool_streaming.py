"""Tool calls streamed as the model writes them, on the default model (SmolLM2, whose template
cannot show tools: they are described in the system prompt and a forced call is a JSON object),
through each API's official client: the call's name first, then its arguments in several
pieces, the name and the first piece one right after the other; the pieces make valid
arguments. Also the agent protocol pieces: count_tokens, input_tokens, hosted tools."""
from __future__ import annotations

import json

import anthropic
import httpx
import jsonschema
import openai
import pytest

WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 24},
                                                   "days": {"type": "integer", "minimum": 1, "maximum": 7}},
                  "required": ["city", "days"], "additionalProperties": False}
CHAT_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather forecast of a city",
                                              "parameters": WEATHER_SCHEMA}}
QUESTION = [{"role": "user", "content": "What will the weather be in Paris for the next 3 days?"}]


@pytest.fixture(scope="module")
def url(default_server):
    return default_server.url


@pytest.fixture
def oai(url):
    with openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0) as client:
        yield client


@pytest.fixture
def claude(url):
    with anthropic.Anthropic(base_url=url, api_key="x", max_retries=0) as client:
        yield client


def test_chat_completions_stream_the_arguments(url, oai):
    client = oai
    stream = client.chat.completions.create(model="default", messages=QUESTION, tools=[CHAT_TOOL],
                                            tool_choice="required", stream=True, temperature=0, max_tokens=60)
    deltas = [c.choices[0].delta for c in stream if c.choices]
    calls = [d.tool_calls[0] for d in deltas if d.tool_calls]
    assert calls[0].function.name == "get_weather" and calls[0].id.startswith("call_") and calls[0].index == 0
    pieces = [c.function.arguments for c in calls if c.function.arguments]
    assert len(pieces) >= 2
    first = deltas.index(next(d for d in deltas if d.tool_calls))
    assert deltas[first + 1].tool_calls and deltas[first + 1].tool_calls[0].function.arguments  # at once
    jsonschema.validate(json.loads("".join(pieces)), WEATHER_SCHEMA)


def test_anthropic_streams_input_json_deltas(url, claude):
    client = claude
    tool = {"name": "get_weather", "description": "Weather forecast of a city", "input_schema": WEATHER_SCHEMA}
    with client.messages.stream(model="default", max_tokens=60, messages=QUESTION, tools=[tool],
                                tool_choice={"type": "any"}) as stream:
        events = list(stream)
        message = stream.get_final_message()
    kinds = [e.type for e in events]
    start = next(i for i, e in enumerate(events) if e.type == "content_block_start"
                 and e.content_block.type == "tool_use")
    assert events[start].content_block.name == "get_weather"
    partial = [e.delta.partial_json for e in events if e.type == "content_block_delta"
               and e.delta.type == "input_json_delta"]
    assert len(partial) >= 2 and kinds[start + 1] == "content_block_delta"
    (block,) = [b for b in message.content if b.type == "tool_use"]
    assert block.input == json.loads("".join(partial)) and message.stop_reason == "tool_use"
    jsonschema.validate(block.input, WEATHER_SCHEMA)


def test_responses_stream_function_call_argument_deltas(url, oai):
    client = oai
    tool = {"type": "function", "name": "get_weather", "description": "Weather forecast of a city",
            "parameters": WEATHER_SCHEMA}
    events = list(client.responses.create(model="default", input=QUESTION, tools=[tool], tool_choice="required",
                                          stream=True, temperature=0, max_output_tokens=60))
    added = next(i for i, e in enumerate(events) if e.type == "response.output_item.added"
                 and e.item.type == "function_call")
    assert events[added].item.name == "get_weather"
    deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert len(deltas) >= 2 and events[added + 1].type == "response.function_call_arguments.delta"
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert done.arguments == "".join(deltas)
    final = events[-1].response
    (call,) = [item for item in final.output if item.type == "function_call"]
    jsonschema.validate(json.loads(call.arguments), WEATHER_SCHEMA)


def test_parallel_tool_calls_false_makes_one_call(url, oai):
    client = oai
    reply = client.chat.completions.create(model="default", messages=QUESTION, tools=[CHAT_TOOL],
                                           tool_choice="required", parallel_tool_calls=False, temperature=0)
    assert len(reply.choices[0].message.tool_calls) == 1 and reply.choices[0].finish_reason == "tool_calls"


def test_count_tokens_and_input_tokens_count_the_prompt(url, claude):
    client = claude
    counted = client.messages.count_tokens(model="default", messages=QUESTION, system="Be brief.")
    message = client.messages.create(model="default", max_tokens=1, messages=QUESTION, system="Be brief.")
    assert counted.input_tokens == message.usage.input_tokens + message.usage.cache_read_input_tokens > 10
    with_tools = client.messages.count_tokens(model="default", messages=QUESTION, tools=[
        {"name": "get_weather", "input_schema": WEATHER_SCHEMA}])
    assert with_tools.input_tokens > counted.input_tokens  # the tools are part of the prompt
    r = httpx.post(url + "/v1/responses/input_tokens", json={"model": "default", "input": QUESTION})
    assert r.status_code == 200 and r.json()["object"] == "response.input_tokens"
    assert r.json()["input_tokens"] > 10
    bad = httpx.post(url + "/v1/messages/count_tokens", json={"model": "default"})
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"


def test_responses_take_what_agent_sdks_send_and_leave_hosted_tools_out(url, oai):
    client = oai
    r = client.responses.create(model="default", input="Hi", max_output_tokens=4, include=["reasoning.encrypted_content"],
                                store=False, truncation="disabled", metadata={"a": "b"}, parallel_tool_calls=True,
                                prompt_cache_key="k", tools=[{"type": "web_search"}])
    assert r.status == "incomplete" or r.status == "completed"
    assert any("web_search" in w for w in r.model_extra["warnings"])
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="default", input="Hi", tools=[{"type": "web_search"}],
                                tool_choice={"type": "web_search"})
    assert info.value.body["param"] == "tool_choice.type"
