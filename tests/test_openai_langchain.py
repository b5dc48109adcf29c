"""LangChain's OpenAI integrations against /v1 with only base_url changed: ChatOpenAI (chat
completions) and OpenAI (the completions endpoint): invoke, stream, batch."""
from __future__ import annotations

import pytest

langchain_openai = pytest.importorskip("langchain_openai", reason="LangChain's OpenAI integration is not installed")


# These tests compare greedy texts across requests, so they ask for bit-reproducible runs: a
# reused prompt prefix can flip a near-tie token (README, "Prefix caching").
EXACT = {"cache_prompt": False}


@pytest.fixture(scope="module")
def chat(base_url, served_model):
    return langchain_openai.ChatOpenAI(base_url=base_url + "/v1", api_key="unused", model=served_model,
                                       temperature=0, max_tokens=8, max_retries=0, extra_body=EXACT)


@pytest.fixture(scope="module")
def llm(base_url, served_model):
    return langchain_openai.OpenAI(base_url=base_url + "/v1", api_key="unused", model=served_model,
                                   temperature=0, max_tokens=8, max_retries=0, extra_body=EXACT)


def test_chat_openai_invoke_stream_batch(chat, openai_client, served_model):
    question = "What is the capital of France?"
    expected = openai_client.chat.completions.create(
        model=served_model, messages=[{"role": "user", "content": question}], temperature=0,
        max_tokens=8, extra_body=EXACT).choices[0].message.content
    message = chat.invoke(question)
    assert message.content == expected
    assert message.response_metadata["finish_reason"] in ("stop", "length")
    assert message.usage_metadata["output_tokens"] <= 8
    assert "".join(chunk.content for chunk in chat.stream(question)) == expected
    answers = chat.batch([question, "Name a color."])
    assert answers[0].content == expected and isinstance(answers[1].content, str)


def test_chat_openai_with_a_system_message(chat):
    from langchain_core.messages import HumanMessage, SystemMessage

    reply = chat.invoke([SystemMessage("Be brief."), HumanMessage("Hi")])
    assert isinstance(reply.content, str) and reply.response_metadata["model_name"]


def test_openai_llm_invoke_stream_batch(llm, engine):
    prompt = "The capital of France is"
    expected = engine.generate(prompt, max_tokens=8, temperature=0, **EXACT).text
    assert llm.invoke(prompt) == expected
    assert "".join(llm.stream(prompt)) == expected
    # batch() sends both prompts in one /v1/completions request (a list prompt).
    assert llm.batch([prompt, "One, two,"]) == [expected, engine.generate("One, two,", max_tokens=8,
                                                                           temperature=0, **EXACT).text]
