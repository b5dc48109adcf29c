"""Real agent frameworks call a tool through llamaserve, on the default model (SmolLM2-135M),
each unchanged but for its base URL: the OpenAI Agents SDK (its Chat Completions and its default
Responses model class, streamed and not), pydantic-ai, smolagents, LangChain `bind_tools`.
(The anthropic SDK's tool streaming helper is tests/test_tool_streaming.py's.)

A 135M model does not choose a tool unforced, so each client forces one its own way (tool_choice
required), and the server's grammar makes the call valid JSON for the tool's schema. Every test
asserts that the tool function really ran, with the model's arguments, and that those validate
against the tool's schema. No network: each client gets a dummy key and the loopback server;
tracing and telemetry are off."""
from __future__ import annotations

import json

import httpx
import jsonschema
import openai
import pytest

pytestmark = pytest.mark.timeout(120)

QUESTION = "What will the weather be in Paris for the next 3 days?"
# What every client derives from get_weather's signature (city: str, days: int).
ARGS_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
               "required": ["city", "days"]}


def forecast(city: str, days: int) -> str:
    return f"Sunny in {city} for {days} days"


@pytest.fixture(scope="module")
def v1(default_server):
    return default_server.url + "/v1"


@pytest.fixture
def offline(monkeypatch):
    """What the clients read from the environment, for this test only: a dummy key, no other
    base URL, no tracing (Agents SDK), no hub (smolagents' huggingface_hub)."""
    monkeypatch.setenv("OPENAI_API_KEY", "dummy")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("OPENAI_AGENTS_DISABLE_TRACING", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")


def check_call(calls: list[tuple[str, int]]) -> dict:
    """The tool ran (at least once); its arguments validate against its schema."""
    assert calls, "the tool function never ran"
    city, days = calls[0]
    args = {"city": city, "days": days}
    jsonschema.validate(args, ARGS_SCHEMA)
    assert city.strip()
    return args


# -- (1) the OpenAI Agents SDK -----------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True], ids=["run", "run_streamed"])
@pytest.mark.parametrize("model_class", ["OpenAIChatCompletionsModel", "OpenAIResponsesModel"])
async def test_openai_agents_sdk_calls_the_tool(v1, offline, model_class, stream):
    agents = pytest.importorskip("agents", reason="the OpenAI Agents SDK (openai-agents) is not installed")
    calls = []

    @agents.function_tool
    def get_weather(city: str, days: int) -> str:
        """Weather forecast of a city.

        Args:
            city: The city.
            days: Number of days.
        """
        calls.append((city, days))
        return forecast(city, days)

    client = openai.AsyncOpenAI(base_url=v1, api_key="dummy", max_retries=0)
    model = getattr(agents, model_class)(model="default", openai_client=client)
    # The forced call, then the loop ends with the tool's result as the run's output.
    agent = agents.Agent(name="weather", instructions="Answer with the tool.", model=model, tools=[get_weather],
                         model_settings=agents.ModelSettings(tool_choice="required", temperature=0, max_tokens=60),
                         tool_use_behavior="stop_on_first_tool")
    config = agents.RunConfig(tracing_disabled=True)
    async with client:
        if stream:
            result = agents.Runner.run_streamed(agent, QUESTION, run_config=config, max_turns=2)
            events = [event async for event in result.stream_events()]
            assert any(e.type == "run_item_stream_event" and e.name == "tool_called" for e in events)
        else:
            result = await agents.Runner.run(agent, QUESTION, run_config=config, max_turns=2)
    args = check_call(calls)
    (called,) = [item for item in result.new_items if item.type == "tool_call_item"]
    assert called.raw_item.name == "get_weather" and json.loads(called.raw_item.arguments) == args
    assert result.final_output == forecast(**args)


# -- (2) pydantic-ai ---------------------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True], ids=["run", "run_stream"])
async def test_pydantic_ai_calls_the_tool(v1, offline, stream):
    pytest.importorskip("pydantic_ai", reason="pydantic-ai-slim[openai] is not installed")
    from pydantic_ai import Agent, RunContext
    from pydantic_ai.messages import ToolReturnPart
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    def settings(ctx: RunContext) -> dict:
        # pydantic-ai refuses a static tool_choice "required" (the agent could never answer); its
        # documented way is per-step settings: force the tool on the first request, then let the
        # model answer in text, given the tool's result.
        return {"tool_choice": "required" if ctx.run_step <= 1 else "none", "temperature": 0, "max_tokens": 40}

    client = openai.AsyncOpenAI(base_url=v1, api_key="dummy", max_retries=0)  # ours, to close it
    model = OpenAIChatModel("default", provider=OpenAIProvider(openai_client=client))
    agent = Agent(model, instructions="Answer with the tool.", model_settings=settings)
    calls = []

    @agent.tool_plain
    def get_weather(city: str, days: int) -> str:
        """Weather forecast of a city."""
        calls.append((city, days))
        return forecast(city, days)

    async with client:
        if stream:
            async with agent.run_stream(QUESTION) as result:
                output = await result.get_output()
        else:
            result = await agent.run(QUESTION)
            output = result.output
    args = check_call(calls)
    assert len(calls) == 1
    returns = [part for message in result.all_messages() for part in message.parts
               if isinstance(part, ToolReturnPart)]
    assert [(r.tool_name, r.content) for r in returns] == [("get_weather", forecast(**args))]
    assert isinstance(output, str) and output.strip()  # the second request, with the result, answered


# -- (3) smolagents ----------------------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True], ids=["run", "stream_outputs"])
def test_smolagents_tool_calling_agent_calls_the_tool(v1, offline, stream):
    smolagents = pytest.importorskip("smolagents", reason="smolagents is not installed")
    tool = smolagents.tool  # spelled @tool: it reads the function's source and refuses other decorators
    calls = []

    @tool
    def get_weather(city: str, days: int) -> str:
        """Weather forecast of a city.

        Args:
            city: The city.
            days: Number of days.
        """
        calls.append((city, days))
        return forecast(city, days)

    # ToolCallingAgent sends tool_choice "required" on every step by itself, with two tools: ours
    # and its own final_answer. Which one is the model's choice, so the task names ours (greedy:
    # the name's first token beats any other by more than 2.7 nats on the default model).
    model = smolagents.OpenAIServerModel("default", api_base=v1, api_key="dummy", temperature=0, max_tokens=60)
    agent = smolagents.ToolCallingAgent(tools=[get_weather], model=model, max_steps=2, stream_outputs=stream,
                                        verbosity_level=smolagents.LogLevel.OFF)
    with model.client:  # the OpenAI client it made, closed at the end
        output = agent.run("Call get_weather to get the weather in Paris for the next 3 days.")
    args = check_call(calls)
    first = next(step for step in agent.memory.steps if isinstance(step, smolagents.ActionStep))
    assert [call.name for call in first.tool_calls] == ["get_weather"]
    assert first.tool_calls[0].arguments == args and forecast(**args) in first.observations
    assert isinstance(output, str) and output.strip()


# -- (4) LangChain bind_tools --------------------------------------------------------------------

def test_langchain_bind_tools_invoke_and_stream(v1, offline):
    langchain_openai = pytest.importorskip("langchain_openai", reason="langchain-openai is not installed")
    from langchain_core.tools import tool

    calls = []

    @tool
    def get_weather(city: str, days: int) -> str:
        """Weather forecast of a city."""
        calls.append((city, days))
        return forecast(city, days)

    http = httpx.Client()  # its connections, closed at the end (its default client is never closed)
    chat = langchain_openai.ChatOpenAI(base_url=v1, api_key="dummy", model="default", temperature=0,
                                       max_tokens=60, max_retries=0, http_client=http)
    bound = chat.bind_tools([get_weather], tool_choice="required")

    message = bound.invoke(QUESTION)
    (call,) = message.tool_calls
    assert call["name"] == "get_weather" and message.response_metadata["finish_reason"] == "tool_calls"
    jsonschema.validate(call["args"], ARGS_SCHEMA)
    result = get_weather.invoke(call)  # the ToolMessage that answers this call
    assert result.tool_call_id == call["id"] and result.content == forecast(**call["args"])
    assert calls == [(call["args"]["city"], call["args"]["days"])]

    chunks = list(bound.stream(QUESTION))
    pieces = [c.tool_call_chunks[0] for c in chunks if c.tool_call_chunks]
    assert pieces[0]["name"] == "get_weather" and pieces[0]["id"]
    assert sum(1 for p in pieces if p["args"]) >= 2  # the arguments arrive in pieces
    merged = sum(chunks[1:], chunks[0])
    (streamed,) = merged.tool_calls
    assert streamed["name"] == "get_weather" and streamed["args"] == call["args"]  # greedy: the same call
    http.close()
