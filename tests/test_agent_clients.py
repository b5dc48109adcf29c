"""Agent frameworks call a tool through llamaserve, unchanged but for the base URL: the OpenAI
Agents SDK (its Chat Completions and its default Responses model class, streamed and not),
pydantic-ai, smolagents and LangChain's bind_tools, on the default model (SmolLM2-135M). A
135M model does not choose tools by itself, so each forces one (tool_choice required); the
server's grammar makes the call valid for the tool's schema, and the tool really runs with
the model's arguments."""
from __future__ import annotations

import asyncio

import httpx
import jsonschema
import openai
import pytest

QUESTION = "What will the weather be in Paris for the next 3 days?"
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
          "required": ["city", "days"]}


@pytest.fixture(scope="module")
def url(default_server):
    return default_server.url + "/v1"


@pytest.fixture
def no_network_keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "unused")
    monkeypatch.setenv("OPENAI_AGENTS_DISABLE_TRACING", "1")


def weather_calls() -> tuple[list[dict], object]:
    """A tool that records its calls (checked against its schema), and the calls list."""
    calls: list[dict] = []

    def get_weather(city: str, days: int) -> str:
        """Weather forecast of a city.

        Args:
            city: The city.
            days: Number of days.
        """
        jsonschema.validate({"city": city, "days": days}, SCHEMA)
        calls.append({"city": city, "days": days})
        return f"Sunny in {city} for {days} days"

    return calls, get_weather


@pytest.mark.parametrize("kind", ["chat", "responses"])
@pytest.mark.parametrize("streamed", [False, True])
def test_openai_agents_sdk(url, no_network_keys, kind, streamed):
    from agents import (Agent, ModelSettings, OpenAIChatCompletionsModel, OpenAIResponsesModel, Runner,
                        function_tool, set_tracing_disabled)

    set_tracing_disabled(True)
    calls, get_weather = weather_calls()
    client = openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0)
    model_class = OpenAIChatCompletionsModel if kind == "chat" else OpenAIResponsesModel
    agent = Agent(name="weather", instructions="Answer with the tool.", tools=[function_tool(get_weather)],
                  model=model_class(model="default", openai_client=client),
                  model_settings=ModelSettings(tool_choice="required", max_tokens=60, temperature=0),
                  tool_use_behavior="stop_on_first_tool")

    async def run():
        async with client:  # closed before the loop ends
            if not streamed:
                return await Runner.run(agent, QUESTION)
            result = Runner.run_streamed(agent, QUESTION)
            async for _ in result.stream_events():
                pass
            return result

    result = asyncio.run(run())
    assert len(calls) == 1 and result.final_output == f"Sunny in {calls[0]['city']} for {calls[0]['days']} days"


def test_pydantic_ai(url):
    """pydantic-ai refuses tool_choice required with function tools (its loop could never end),
    so the forced call is its structured output: an output tool whose call it validates."""
    from pydantic import BaseModel
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    class Forecast(BaseModel):
        city: str
        days: int

    client = openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=0)
    model = OpenAIChatModel("default", provider=OpenAIProvider(openai_client=client))
    agent = Agent(model, output_type=Forecast, instructions="Give the forecast request.")

    async def run():
        async with client:  # closed before the loop ends
            return await agent.run(QUESTION, model_settings={"max_tokens": 60, "temperature": 0})

    result = asyncio.run(run())
    assert isinstance(result.output, Forecast)
    (call,) = [part for message in result.all_messages() for part in getattr(message, "parts", [])
               if type(part).__name__ == "ToolCallPart"]
    assert call.tool_name == "final_result" and call.args_as_dict() == result.output.model_dump()


def test_smolagents(url):
    from smolagents import OpenAIServerModel, ToolCallingAgent, tool

    calls, get_weather = weather_calls()
    # "required" lets it pick its own final_answer tool: the weather tool is named instead.
    model = OpenAIServerModel(model_id="default", api_base=url, api_key="unused", max_tokens=60, temperature=0,
                              tool_choice={"type": "function", "function": {"name": "get_weather"}})
    agent = ToolCallingAgent(tools=[tool(get_weather)], model=model, max_steps=1, verbosity_level=0)
    with model.client:  # its OpenAI client, closed at the end
        agent.run(QUESTION)
    assert len(calls) == 1


@pytest.mark.parametrize("streamed", [False, True])
def test_langchain_bind_tools(url, streamed):
    from langchain_openai import ChatOpenAI

    http = httpx.Client()  # its connections, closed at the end
    llm = ChatOpenAI(base_url=url, api_key="unused", model="default", temperature=0, max_tokens=60, max_retries=0,
                     http_client=http)
    bound = llm.bind_tools([{"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA,
                                                             "description": "Weather forecast of a city"}}],
                           tool_choice="required")
    if streamed:
        chunks = list(bound.stream(QUESTION))
        assert sum(1 for c in chunks if c.tool_call_chunks) >= 2  # the arguments came in pieces
        message = chunks[0]
        for chunk in chunks[1:]:
            message += chunk
    else:
        message = bound.invoke(QUESTION)
    http.close()
    (call,) = message.tool_calls
    assert call["name"] == "get_weather"
    jsonschema.validate(call["args"], SCHEMA)
