"""Engine.chat and Engine.achat on the default weights: the model's chat template, tool calls
and structured output read by the server's own output parsers, streamed or whole, from
several threads at once; bad input raises typed errors. And `llamaserve chat` in a terminal."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

import llamaserve
from llamaserve import InvalidRequest

WEATHER = [{"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def smol(smollm2_path):
    with llamaserve.Engine.load(smollm2_path, n_ctx=1024, n_parallel=4) as engine:
        yield engine


def test_a_reply_goes_through_the_chat_template(smol):
    reply = smol.chat([{"role": "user", "content": "What is the capital of France?"}], seed=7, max_tokens=24)
    assert reply.content == "The capital of France is Paris."  # README's reply to the same request
    assert reply.finish_reason == "stop" and reply.tool_calls == [] and reply.reasoning is None
    assert reply.usage.prompt_tokens == 37 and reply.usage.completion_tokens == 8
    assert reply.message() == {"role": "assistant", "content": "The capital of France is Paris."}


def test_a_forced_tool_call_comes_back_parsed_and_the_conversation_goes_on(smol):
    reply = smol.chat(ASK, tools=WEATHER, tool_choice="required", temperature=0)
    assert reply.finish_reason == "tool_calls"
    [call] = reply.tool_calls
    assert call.name == "get_weather" and call.id.startswith("call_")
    assert set(reply.arguments()) == {"city"}
    follow = [*ASK, reply.message(), {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"}]
    answer = smol.chat(follow, tools=WEATHER, temperature=0, max_tokens=16)
    assert answer.usage.prompt_tokens > reply.usage.prompt_tokens  # the call and its result are in the prompt


def test_streamed_call_arrives_in_pieces_that_add_up(smol):
    chunks = list(smol.chat(ASK, tools=WEATHER, tool_choice="required", temperature=0, stream=True))
    pieces = [d for c in chunks for d in c.tool_calls]
    assert pieces[0].name == "get_weather" and pieces[0].id
    assert len([p for p in pieces if p.arguments]) >= 2
    assert set(json.loads("".join(p.arguments for p in pieces))) == {"city"}
    assert chunks[-1].finish_reason == "tool_calls" and chunks[-1].usage.completion_tokens > 0


def test_structured_output_matches_its_schema(smol):
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    reply = smol.chat([{"role": "user", "content": "Invent a person."}], temperature=0, max_tokens=48,
                      response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}})
    person = json.loads(reply.content)
    assert set(person) == {"name", "age"} and isinstance(person["age"], int)


def test_threads_chat_at_once_and_each_gets_its_own_reply(smol):
    questions = [f"Write the number {n} in words." for n in range(6)]

    def ask(q: str):
        return smol.chat([{"role": "user", "content": q}], temperature=0, max_tokens=12)

    with ThreadPoolExecutor(6) as pool:
        together = list(pool.map(ask, questions))
    assert all(r.content and r.usage.completion_tokens > 0 for r in together)
    assert together[3].content == ask(questions[3]).content  # greedy: the same reply alone


def test_achat_whole_and_streamed(smol):
    async def both():
        whole = await smol.achat([{"role": "user", "content": "Say hello."}], temperature=0, max_tokens=8)
        stream = await smol.achat([{"role": "user", "content": "Say hello."}], temperature=0, max_tokens=8,
                                  stream=True)
        return whole, [c async for c in stream]

    whole, chunks = asyncio.run(both())
    assert "".join(c.content for c in chunks) == whole.content and whole.content
    assert chunks[-1].finish_reason == whole.finish_reason


@pytest.mark.parametrize("messages, options, field", [
    ([], {}, "messages"),
    ([{"role": "wizard", "content": "hi"}], {}, "messages"),
    (ASK, {"temperature": 5}, "temperature"),
    (ASK, {"tools": WEATHER, "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    (ASK, {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 3}}}},
     "response_format"),
    (ASK, {"model": "gpt-4o"}, "model"),
    (ASK, {"surprise": 1}, "surprise"),
])
def test_bad_input_raises_invalid_request_naming_the_field(smol, messages, options, field):
    with pytest.raises(InvalidRequest, match=f"^{field}"):
        smol.chat(messages, **options)


def test_llamaserve_chat_keeps_the_conversation_in_the_terminal():
    done = subprocess.run([sys.executable, "-m", "llamaserve", "chat", "--seed", "7", "--max-tokens", "30"],
                          input="What is the capital of France?\nAnd of Italy?\n/exit\n",
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["The capital of France is Paris.", "The capital of Italy is Rome."]
