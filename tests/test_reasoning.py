"""Reasoning models end to end on real weights: the default SmolLM2 weights with Qwen 3.5's
thinking template (its generation prompt opens <think>, so the reply starts inside the
reasoning), through the openai SDK (streamed and not), the anthropic SDK (thinking blocks) and
the Responses API (reasoning items); thinking switched off by chat_template_kwargs, by
reasoning_effort and by Anthropic's thinking setting; bad settings are 400s naming the field."""
from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

QUESTION = [{"role": "user", "content": "Is 17 prime?"}]
MARKERS = ("<think>", "</think>")


@pytest.fixture(scope="module")
def client(thinking_server):
    with openai.OpenAI(base_url=thinking_server.url + "/v1", api_key="x", max_retries=0) as client:
        yield client


@pytest.fixture
def claude(thinking_server):
    with anthropic.Anthropic(base_url=thinking_server.url, api_key="x", max_retries=0) as client:
        yield client


def free_of_markers(text: str | None) -> bool:
    return not any(m in (text or "") for m in MARKERS)


def test_reasoning_is_apart_from_the_content(client):
    r = client.chat.completions.create(model="default", messages=QUESTION, max_tokens=24, temperature=0)
    message = r.choices[0].message
    assert message.model_extra["reasoning_content"] and free_of_markers(message.model_extra["reasoning_content"])
    assert free_of_markers(message.content)


def test_streamed_reasoning_arrives_as_reasoning_content_deltas(client):
    stream = client.chat.completions.create(model="default", messages=QUESTION, max_tokens=24, temperature=0,
                                            stream=True)
    deltas = [c.choices[0].delta for c in stream if c.choices]
    reasoning = [d.model_extra.get("reasoning_content") for d in deltas if d.model_extra.get("reasoning_content")]
    assert len(reasoning) >= 2 and free_of_markers("".join(reasoning))
    assert free_of_markers("".join(d.content or "" for d in deltas))


@pytest.mark.parametrize("switch", [{"chat_template_kwargs": {"enable_thinking": False}},
                                    {"reasoning_effort": "none"}])
def test_thinking_off_gives_content_only(client, switch):
    r = client.chat.completions.create(model="default", messages=QUESTION, max_tokens=16, temperature=0,
                                       extra_body=switch)
    message = r.choices[0].message
    assert "reasoning_content" not in (message.model_extra or {}) and message.content and free_of_markers(message.content)


def test_anthropic_thinking_blocks(claude):
    client = claude
    message = client.messages.create(model="default", max_tokens=24, messages=QUESTION)
    (thinking,) = [b for b in message.content if b.type == "thinking"]
    assert thinking.thinking and thinking.signature == "" and free_of_markers(thinking.thinking)
    with client.messages.stream(model="default", max_tokens=24, messages=QUESTION) as stream:
        kinds = [e.delta.type for e in stream if e.type == "content_block_delta"]
    assert "thinking_delta" in kinds
    off = client.messages.create(model="default", max_tokens=16, messages=QUESTION, thinking={"type": "disabled"})
    assert [b.type for b in off.content] == ["text"]


def test_responses_reasoning_items(client):
    r = client.responses.create(model="default", input=QUESTION, max_output_tokens=24, temperature=0)
    (item,) = [i for i in r.output if i.type == "reasoning"]
    assert item.content[0].text and free_of_markers(item.content[0].text)
    events = [e.type for e in client.responses.create(model="default", input=QUESTION, max_output_tokens=24,
                                                      temperature=0, stream=True)]
    assert "response.reasoning_text.delta" in events and events[-1] in ("response.completed", "response.incomplete")


def test_earlier_thinking_goes_back_to_the_template(client):
    history = [*QUESTION, {"role": "assistant", "content": "Yes.", "reasoning_content": "17 has no divisors."},
               {"role": "user", "content": "And 18?"}]
    r = client.chat.completions.create(model="default", messages=history, max_tokens=4, temperature=0)
    assert r.usage.prompt_tokens > 0


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/v1/chat/completions", {"reasoning_effort": "extreme"}, "reasoning_effort"),
    ("/v1/chat/completions", {"chat_template_kwargs": ["enable_thinking"]}, "chat_template_kwargs"),
    ("/v1/chat/completions", {"chat_template_kwargs": {"messages": []}}, "chat_template_kwargs.messages"),
    ("/v1/responses", {"reasoning": {"effort": "max"}}, "reasoning.effort"),
    ("/v1/messages", {"max_tokens": 4, "thinking": {"type": "enabled", "budget_tokens": 0}},
     "thinking.budget_tokens"),
])
def test_bad_reasoning_settings_name_the_field(thinking_server, path, body, field):
    base = {"model": "default", **({"input": "Hi"} if path == "/v1/responses" else {"messages": QUESTION})}
    r = httpx.post(thinking_server.url + path, json={**base, **body})
    assert r.status_code == 400 and field in r.text


def test_a_template_refusing_the_conversation_is_a_bad_request(client):
    with pytest.raises(openai.BadRequestError):  # Qwen 3.5 raises on a message role it does not know
        client.chat.completions.create(model="default", messages=[{"role": "tool", "content": "x", "tool_call_id": "1"}],
                                       max_tokens=2)


# -- budgets: the engine closes the thinking itself ---------------------------------------------

@pytest.fixture(scope="module")
def budget_server(thinking_model):
    """The thinking model with --reasoning-budget 8: a 135M model never closes its thinking by
    itself, so the engine does it after 8 tokens, and the answer follows."""
    from llamaserve.config import ServerConfig
    from llamaserve.server.app import create_app
    from serverutil import LiveServer

    config = ServerConfig(model=str(thinking_model), n_parallel=1, n_ctx=2048, reasoning_budget=8)
    with LiveServer(create_app(config)) as server:
        yield server


@pytest.fixture
def budget_client(budget_server):
    with openai.OpenAI(base_url=budget_server.url + "/v1", api_key="x", max_retries=0) as client:
        yield client


def test_server_budget_ends_the_thinking_and_the_answer_follows(budget_client):
    client = budget_client
    r = client.chat.completions.create(model="default", messages=QUESTION, max_tokens=40, temperature=0)
    message = r.choices[0].message
    assert message.model_extra["reasoning_content"] and message.content and free_of_markers(message.content)
    assert 1 <= r.usage.completion_tokens_details.reasoning_tokens <= 8


def test_anthropic_budget_tokens_bounds_the_thinking(claude):
    client = claude
    message = client.messages.create(model="default", max_tokens=40, messages=QUESTION, extra_body={"temperature": 0},
                                     thinking={"type": "enabled", "budget_tokens": 4})
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert free_of_markers(message.content[1].text) and message.content[1].text.strip()


def test_a_json_schema_shapes_the_answer_after_free_reasoning(budget_client):
    import json

    import jsonschema

    schema = {"type": "object", "properties": {"prime": {"type": "boolean"}}, "required": ["prime"],
              "additionalProperties": False}
    client = budget_client
    r = client.chat.completions.create(model="default", messages=QUESTION, max_tokens=40, temperature=0,
                                       response_format={"type": "json_schema",
                                                        "json_schema": {"name": "answer", "schema": schema}})
    message = r.choices[0].message
    assert message.model_extra["reasoning_content"]  # free text: the grammar waited for the answer
    jsonschema.validate(json.loads(message.content), schema)
