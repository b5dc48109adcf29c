"""Every error the API reports: the spec's {"error": {code, message, details}} shape, the
right status, and a server that keeps serving afterwards."""
from __future__ import annotations

import threading

import httpx
import pytest
from starlette.routing import Route

from llamaserve.config import ServerConfig
from llamaserve.engine import Engine
from llamaserve.server.app import create_app
from serverutil import LiveServer, sse_events, wait_for

GENERATE = "/api/v1/generate"


def error_of(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


def still_serves(url: str) -> None:
    r = httpx.post(url + GENERATE, json={"prompt": "Hello", "max_tokens": 1, "ignore_eos": True}, timeout=60)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 1


# -- 400 ------------------------------------------------------------------------------

@pytest.mark.parametrize("raw, details", [
    (b'{"prompt": "Hi"', "Expecting"),
    (b"", None),
    (b"   ", None),
    (b"not json", "Expecting value"),
    (b'{"prompt": NaN}', "NaN"),
    (b'{"prompt": "Hi", "max_tokens": Infinity}', "Infinity"),
    (b'{"prompt": "Hi", "seed": ' + b"9" * 5000 + b"}", "digits"),
    (b"[" * 100_000 + b"]" * 100_000, None),
    (b'{"prompt": "\xff\xfe"}', None),
], ids=["truncated", "empty", "blank", "not-json", "nan", "infinity", "5000-digits", "deep-nesting",
        "bad-utf8"])
def test_malformed_bodies_are_400(base_url, raw, details):
    r = httpx.post(base_url + GENERATE, content=raw, headers={"content-type": "application/json"})
    error = error_of(r, 400, "INVALID_REQUEST")
    assert error["message"].startswith("body")
    if details:
        assert details in error["details"]
    still_serves(base_url)


@pytest.mark.parametrize("body, field", [
    ([1, 2], "body"),
    ("prompt", "body"),
    ({}, "prompt"),
    ({"prompt": None}, "prompt"),
    ({"prompt": 5}, "prompt"),
    ({"prompt": [1, "a"]}, "prompt"),
    ({"prompt": "Hi", "bogus": 1}, "bogus"),
    ({"prompt": "Hi", "max_tokens": "ten"}, "max_tokens"),
    ({"prompt": "Hi", "max_tokens": 2.5}, "max_tokens"),
    ({"prompt": "Hi", "max_tokens": True}, "max_tokens"),
    ({"prompt": "Hi", "max_tokens": 0}, "max_tokens"),
    ({"prompt": "Hi", "max_tokens": 10**30}, "max_tokens"),
    (b'{"prompt": "Hi", "max_tokens": 1e999}', "max_tokens"),
    (b'{"prompt": "Hi", "temperature": -1e999}', "temperature"),
    ({"prompt": "Hi", "temperature": "hot"}, "temperature"),
    ({"prompt": "Hi", "temperature": -1}, "temperature"),
    ({"prompt": "Hi", "temperature": 1e308}, "temperature"),
    ({"prompt": "Hi", "top_p": 0}, "top_p"),
    ({"prompt": "Hi", "top_k": -5}, "top_k"),
    ({"prompt": "Hi", "seed": -1}, "seed"),
    ({"prompt": "Hi", "seed": 2**70}, "seed"),
    ({"prompt": "Hi", "stop": [1, 2]}, "stop"),
    ({"prompt": "Hi", "stop": [""]}, "stop"),
    ({"prompt": "Hi", "stream": "yes"}, "stream"),
    ({"prompt": "Hi", "model": 7}, "model"),
    ({"prompt": "Hi", "logit_bias": {"99999999": 1}}, "logit_bias"),
    ({"prompt": "Hi", "grammar": "root ::= ("}, "grammar"),
    ({"prompt": ""}, "prompt"),
])
def test_bad_fields_are_400_naming_the_field(base_url, body, field):
    if isinstance(body, bytes):  # what a JSON encoder would refuse to write
        r = httpx.post(base_url + GENERATE, content=body, timeout=60)
    else:
        r = httpx.post(base_url + GENERATE, json=body, timeout=60)
    error = error_of(r, 400, "INVALID_REQUEST")
    assert error["message"].startswith(field), error


def test_prompt_longer_than_the_context_is_400(base_url):
    for path in (GENERATE, "/api/v1/generate/stream"):
        r = httpx.post(base_url + path, json={"prompt": "word " * 2000, "max_tokens": 4}, timeout=60)
        error = error_of(r, 400, "CONTEXT_LENGTH_EXCEEDED")
        assert error["message"].startswith("prompt") and "512" in error["message"]
    still_serves(base_url)


# -- 404 / 405 ------------------------------------------------------------------------

@pytest.mark.parametrize("method, path", [("GET", "/nope"), ("POST", "/api/v1/nope"), ("GET", "/api/v2/models")])
def test_unknown_routes_are_404_not_found(base_url, method, path):
    error_of(httpx.request(method, base_url + path), 404, "NOT_FOUND")


def test_the_specs_bare_generate_path_points_to_the_api(base_url):
    error = error_of(httpx.post(base_url + "/generate", json={"prompt": "Hi"}), 404, "NOT_FOUND")
    assert error["message"] == "no such endpoint: did you mean /api/v1/generate?"
    assert "/api/v1" in error["details"]


def test_wrong_method_is_405_in_the_same_shape(base_url):
    r = httpx.get(base_url + GENERATE)
    error_of(r, 405, "METHOD_NOT_ALLOWED")
    assert "POST" in r.headers["allow"]
    error_of(httpx.delete(base_url + "/health"), 405, "METHOD_NOT_ALLOWED")


def test_unknown_model_is_404_model_not_found(base_url):
    for path in (GENERATE, "/api/v1/generate/stream"):
        r = httpx.post(base_url + path, json={"prompt": "Hi", "model": "llama-2-7b-chat"})
        assert error_of(r, 404, "MODEL_NOT_FOUND")["message"].startswith("model")
    error_of(httpx.post(base_url + "/api/v1/models/llama-2-7b-chat/load"), 404, "MODEL_NOT_FOUND")
    # Names are looked up among the models folder's files, never joined into a path.
    r = httpx.post(base_url + "/api/v1/models/..%2F..%2Fetc%2Fpasswd/load")
    assert r.status_code == 404 and r.json()["error"]["code"] in ("NOT_FOUND", "MODEL_NOT_FOUND")
    still_serves(base_url)


# -- a server with small limits and a route that fails ---------------------------------

@pytest.fixture(scope="module")
def small_url(engine):
    app = create_app(ServerConfig(max_body_bytes=2048), engine)

    async def boom(request):
        raise RuntimeError("secret internals /etc/shadow")

    app.router.routes.append(Route("/boom", boom))
    with LiveServer(app) as server:
        yield server.url


def test_body_over_the_limit_is_413(small_url):
    big = {"prompt": "x" * 4096}
    error_of(httpx.post(small_url + GENERATE, json=big), 413, "REQUEST_TOO_LARGE")

    def chunks():  # no Content-Length: the server counts as it reads
        for _ in range(8):
            yield b" " * 1024

    error_of(httpx.post(small_url + GENERATE, content=chunks()), 413, "REQUEST_TOO_LARGE")
    still_serves(small_url)


def test_unexpected_failure_is_500_without_internals(small_url):
    r = httpx.get(small_url + "/boom")
    error = error_of(r, 500, "INTERNAL_ERROR")
    assert "secret" not in r.text and "Traceback" not in r.text and "RuntimeError" not in r.text
    assert error["message"] == "internal server error"
    still_serves(small_url)


# -- 503 ------------------------------------------------------------------------------

def test_full_queue_is_503_overloaded_with_retry_after(one_slot_url):
    with httpx.stream("POST", one_slot_url + "/api/v1/generate/stream", timeout=60,
                      json={"prompt": "Tell a story", "max_tokens": 500, "ignore_eos": True}) as running:
        events = sse_events(running.iter_lines())  # (dropping the iterator would disconnect)
        assert next(events)["finished"] is False  # it holds the only slot now
        r = httpx.post(one_slot_url + GENERATE, json={"prompt": "Hi", "max_tokens": 2})
        error_of(r, 503, "OVERLOADED")
        assert int(r.headers["retry-after"]) >= 1
    # Closing the stream cancels it; the slot is free at the engine's next step.
    wait_for(lambda: httpx.get(one_slot_url + "/health").json()["slots"]["free"] == 1, timeout=10)
    still_serves(one_slot_url)


def test_batch_items_wait_for_a_slot_instead_of_failing(one_slot_url):
    wait_for(lambda: httpx.get(one_slot_url + "/health").json()["slots"]["free"] == 1, timeout=10)
    r = httpx.post(one_slot_url + "/api/v1/batch/generate", timeout=60, json={"requests": [
        {"prompt": f"Count to {i}", "max_tokens": 3, "ignore_eos": True} for i in range(3)]})
    assert r.status_code == 200
    assert [res["usage"]["completion_tokens"] for res in r.json()["results"]] == [3, 3, 3]


def test_while_loading_health_and_generate_are_503(model_path):
    gate = threading.Event()

    def slow_loader(path, **options):
        gate.wait(30)
        return Engine.load(path, **options)

    with LiveServer(create_app(ServerConfig(model=str(model_path), n_ctx=256, n_parallel=1),
                               loader=slow_loader)).start(ready=False) as server:
        try:
            r = httpx.get(server.url + "/health")
            assert r.status_code == 503
            assert r.json()["status"] == "loading" and r.json()["model_loaded"] is False
            assert r.headers["retry-after"] == "1"
            r = httpx.post(server.url + GENERATE, json={"prompt": "Hi"})
            error_of(r, 503, "MODEL_LOADING")
            assert r.headers["retry-after"] == "1"
        finally:
            gate.set()
        server.wait_ready(timeout=60)
        still_serves(server.url)


def test_a_model_that_fails_to_load_leaves_the_server_unhealthy(tmp_path):
    config = ServerConfig(model=str(tmp_path / "missing.gguf"))
    with LiveServer(create_app(config)).start(ready=False) as server:
        def state() -> str:
            return httpx.get(server.url + "/health").json()["status"]

        wait_for(lambda: state() != "loading", timeout=30)
        r = httpx.get(server.url + "/health")
        assert r.status_code == 503 and r.json()["status"] == "unhealthy"
        assert "missing.gguf" in r.json()["error"]
        error_of(httpx.post(server.url + GENERATE, json={"prompt": "Hi"}), 503, "MODEL_NOT_LOADED")
        assert not any(m["loaded"] for m in httpx.get(server.url + "/api/v1/models").json()["models"])
