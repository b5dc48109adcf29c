"""Embeddings: Engine.embed in process, POST /v1/embeddings with the OpenAI SDK and LangChain,
the native POST /api/v1/embeddings, and generation streams that keep going meanwhile.
Gemma 3 270M: a real model whose GGUF names no pooling, so the mean is used."""
from __future__ import annotations

import base64
import threading
import time

import httpx
import numpy as np
import openai
import pytest

from llamaserve import InvalidRequest

SIMILAR = ["The cat sat on the mat.", "A cat was sitting on the mat."]


def same(a, b) -> bool:
    """The same embedding, up to the numerics of another batch (a different packing of
    the inputs reorders float sums)."""
    return float(np.dot(a, b)) > 0.999
OTHER = "Stock markets fell sharply today."


def test_engine_embed_is_normalized_and_meaningful(engine):
    vectors = engine.embed([*SIMILAR, OTHER])
    assert vectors.shape == (3, engine.n_embd) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    similar, unrelated = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert similar > unrelated + 0.1
    # one text alone, or its tokens, give the same vector as in a batch
    alone = engine.embed(SIMILAR[0])
    tokens = engine.embed([engine.tokenize(SIMILAR[0], add_special=True, parse_special=False)])
    assert same(alone[0], vectors[0]) and np.allclose(tokens[0], alone[0], atol=1e-5)


def test_engine_embed_refuses_bad_input(engine):
    with pytest.raises(InvalidRequest, match=r"^input\[0\]: unknown token id"):
        engine.embed([[engine.metadata["n_vocab"]]])
    with pytest.raises(InvalidRequest, match=r"^input\[1\]"):
        engine.embed(["ok", "\ud800"])
    with pytest.raises(InvalidRequest, match="^input"):
        engine.embed([])


def test_openai_sdk_embeddings(openai_client, served_model, engine):
    reply = openai_client.embeddings.create(model=served_model, input=[*SIMILAR, OTHER])  # base64 by default
    assert [d.index for d in reply.data] == [0, 1, 2]
    got = np.array([d.embedding for d in reply.data])
    assert np.allclose(got, engine.embed([*SIMILAR, OTHER]), atol=1e-5)
    assert reply.usage.prompt_tokens == reply.usage.total_tokens > 6
    floats = openai_client.embeddings.create(model=served_model, input=OTHER, encoding_format="float")
    assert same(floats.data[0].embedding, got[2])
    ids = engine.tokenize(OTHER, add_special=True, parse_special=False)
    assert np.allclose(openai_client.embeddings.create(model=served_model, input=ids).data[0].embedding,
                       floats.data[0].embedding, atol=1e-5)


def test_openai_embeddings_errors(openai_client, served_model, base_url, engine):
    with pytest.raises(openai.BadRequestError) as info:
        openai_client.embeddings.create(model=served_model, input="hi", dimensions=64)
    assert info.value.param == "dimensions" and str(engine.n_embd) in info.value.message
    for body, param in [({"input": ""}, "input"), ({"input": [1, "a"]}, "input[0]"), ({}, "input"),
                        ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
                        ({"input": [[engine.metadata["n_vocab"]]]}, "input[0]")]:
        r = httpx.post(base_url + "/v1/embeddings", json={"model": served_model, **body})
        assert r.status_code == 400 and r.json()["error"]["param"] == param, (body, r.text)
    raw = httpx.post(base_url + "/v1/embeddings", json={"model": served_model, "input": "hi"}).json()
    assert isinstance(raw["data"][0]["embedding"], list)  # float unless asked for base64
    b64 = httpx.post(base_url + "/v1/embeddings",
                     json={"model": served_model, "input": "hi", "encoding_format": "base64"}).json()
    decoded = np.frombuffer(base64.b64decode(b64["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(decoded, raw["data"][0]["embedding"], atol=1e-6)


def test_langchain_embeddings(base_url, served_model):
    from langchain_openai import OpenAIEmbeddings

    # check_embedding_ctx_length=False: send the text itself, not tiktoken's ids for OpenAI's models
    embedder = OpenAIEmbeddings(model=served_model, base_url=base_url + "/v1", api_key="unused",
                                check_embedding_ctx_length=False, max_retries=0)
    docs = embedder.embed_documents(SIMILAR)
    query = embedder.embed_query(OTHER)
    assert len(docs) == 2 and len(docs[0]) == len(query)
    assert np.dot(docs[0], docs[1]) > np.dot(docs[0], query)


def test_native_embeddings(base_url, engine):
    r = httpx.post(base_url + "/api/v1/embeddings", json={"input": SIMILAR})
    assert r.status_code == 200
    body = r.json()
    assert body["dimensions"] == engine.n_embd and len(body["embeddings"]) == 2
    assert body["usage"]["prompt_tokens"] > 0
    bad = httpx.post(base_url + "/api/v1/embeddings", json={"input": 5})
    assert bad.status_code == 400 and bad.json()["error"]["message"].startswith("input")


def test_streams_keep_going_while_embedding(base_url, served_model):
    """Embeddings run on a context of their own: a generation streams tokens meanwhile."""
    arrivals: list[float] = []
    started = threading.Event()

    def stream() -> None:
        with httpx.stream("POST", base_url + "/api/v1/generate/stream", timeout=120, json={
                "prompt": "Count: one, two,", "max_tokens": 200, "ignore_eos": True, "temperature": 0}) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    arrivals.append(time.monotonic())
                    started.set()

    reader = threading.Thread(target=stream)
    reader.start()
    assert started.wait(60)
    begin = time.monotonic()
    r = httpx.post(base_url + "/v1/embeddings", timeout=120,
                   json={"model": served_model, "input": [f"sentence number {i} about the sea" for i in range(48)]})
    end = time.monotonic()
    reader.join()
    assert r.status_code == 200 and len(r.json()["data"]) == 48
    during = [t for t in arrivals if begin < t < end]
    assert end - begin > 0.3 and len(during) >= 3, (end - begin, len(during))
