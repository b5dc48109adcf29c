"""Long requests over HTTP: --request-timeout ends them with 504 (or an error event once a
stream has started), --sse-ping keeps a silent stream alive with SSE comments, and a request
the engine cancels is reported as what it is, not as a normal stop."""
from __future__ import annotations

import threading
import time

import httpx
import pytest

import llamaserve
from llamaserve.config import ServerConfig
from llamaserve.server import create_app
from serverutil import LiveServer, sse_events

LONG = {"max_tokens": 400, "ignore_eos": True, "temperature": 0}


def test_request_timeout_is_504_on_both_apis(serve_app):
    server = serve_app(ServerConfig(request_timeout=2))
    started = time.monotonic()
    native = httpx.post(server.url + "/api/v1/generate", json={"prompt": "Count:", **LONG}, timeout=60)
    assert native.status_code == 504 and native.json()["error"]["code"] == "REQUEST_TIMEOUT"
    assert time.monotonic() - started < 8
    openai = httpx.post(server.url + "/v1/completions", json={"model": "default", "prompt": "Count:", **LONG},
                        timeout=60)
    assert openai.status_code == 504 and openai.json()["error"]["type"] == "server_error"
    quick = httpx.post(server.url + "/api/v1/generate", json={"prompt": "Hi", "max_tokens": 2}, timeout=60)
    assert quick.status_code == 200


def test_a_stream_that_times_out_ends_with_an_error_event(serve_app):
    server = serve_app(ServerConfig(request_timeout=2))
    with httpx.stream("POST", server.url + "/api/v1/generate/stream", json={"prompt": "Count:", **LONG},
                      timeout=60) as r:
        events = list(sse_events(r.iter_lines()))
    assert events[-1]["finished"] is True and events[-1]["finish_reason"] == "error"
    assert events[-1]["error"]["code"] == "REQUEST_TIMEOUT"
    with httpx.stream("POST", server.url + "/v1/chat/completions", timeout=60, json={
            "model": "default", "messages": [{"role": "user", "content": "Count to a thousand"}],
            "stream": True, **LONG}) as r:
        chunks = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert '"error"' in chunks[-2] and chunks[-1] == "data: [DONE]"
    assert not any('"finish_reason":"stop"' in c.replace(" ", "") for c in chunks)


def test_silent_streams_send_ping_comments(serve_app, engine):
    server = serve_app(ServerConfig(sse_ping=0.05))
    prompt = engine.detokenize(list(range(1000, 1450)))  # a prefill of ~450 tokens: silent for a while
    with httpx.stream("POST", server.url + "/api/v1/generate/stream", timeout=60,
                      json={"prompt": prompt, "max_tokens": 2}) as r:
        lines = [line for line in r.iter_lines() if line]
    first_data = next(i for i, line in enumerate(lines) if line.startswith("data: "))
    assert ": ping" in lines[:first_data]
    assert list(sse_events(iter(lines)))[-1]["finished"] is True  # clients skip the comments


@pytest.fixture
def own_engine(model_path):
    eng = llamaserve.Engine.load(model_path, n_ctx=512, n_parallel=1)
    yield eng
    eng.close()


def close_once_running(engine: llamaserve.Engine) -> None:
    deadline = time.monotonic() + 30
    while engine.busy_slots == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    engine.close()


def test_a_request_cancelled_by_the_engine_is_not_a_stop(own_engine):
    """Closing the engine under a running /v1 request (as at shutdown) ends it as an error.
    The engine closes once the request runs: a fixed delay raced with a slow first request."""
    with LiveServer(create_app(ServerConfig(), own_engine)) as server:
        closer = threading.Thread(target=close_once_running, args=(own_engine,))
        closer.start()
        r = httpx.post(server.url + "/v1/completions", json={"model": "default", "prompt": "Count:", **LONG},
                       timeout=60)
        closer.join()
    assert r.status_code == 503 and r.json()["error"]["code"] == "cancelled"


def test_a_request_to_a_closed_engine_is_503_not_a_server_error(own_engine):
    """A request that reaches an engine already closed (a shutdown or an unload under way) is
    told to retry (503, not an internal error's 500), on every API's own error shape."""
    own_engine.close()
    with LiveServer(create_app(ServerConfig(), own_engine)) as server:
        openai = httpx.post(server.url + "/v1/completions", json={"model": "default", "prompt": "Hi"}, timeout=60)
        native = httpx.post(server.url + "/api/v1/generate", json={"prompt": "Hi", "max_tokens": 2}, timeout=60)
        anthropic = httpx.post(server.url + "/v1/messages", timeout=60, json={
            "model": "default", "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]})
    assert openai.status_code == 503 and openai.json()["error"]["code"] == "cancelled"
    assert native.status_code == 503 and native.json()["error"]["code"] == "CANCELLED"
    assert anthropic.status_code == 503 and anthropic.json()["type"] == "error"
    assert all("closed" in r.text for r in (openai, native, anthropic))


def test_tokenizing_a_huge_prompt_leaves_the_event_loop_free(base_url, engine):
    """A 3 MB prompt is tokenized in a thread: meanwhile the event loop answers other
    requests (GET /health needs nothing but the loop). Decode speed is not what this
    measures: tokenizing takes a core, whatever thread it runs on."""
    huge = "lorem ipsum dolor sit amet " * 110_000
    started = time.monotonic()
    engine.tokenize(huge)
    cost = time.monotonic() - started
    if cost < 0.3:
        pytest.skip(f"tokenizing took {cost:.2f}s here: too fast for a stall to show")
    result: dict[str, httpx.Response] = {}

    def huge_request() -> None:
        result["r"] = httpx.post(base_url + "/v1/completions", timeout=120,
                                 json={"model": "default", "prompt": huge, "max_tokens": 1})

    sender = threading.Thread(target=huge_request)
    sender.start()
    latencies = []
    while sender.is_alive():
        begin = time.monotonic()
        assert httpx.get(base_url + "/health", timeout=60).status_code == 200
        latencies.append(time.monotonic() - begin)
        time.sleep(0.05)
    sender.join()
    assert result["r"].status_code == 400 and result["r"].json()["error"]["code"] == "context_length_exceeded"
    assert len(latencies) >= 3 and max(latencies) < 0.6 * cost, (cost, max(latencies))
