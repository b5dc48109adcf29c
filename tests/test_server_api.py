"""The native /api/v1 endpoints, /health and /metrics against the spec, over real HTTP."""
from __future__ import annotations

import contextlib
import io
import re
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

PROMPT = "The three primary colors are"
SPEC = Path(__file__).resolve().parents[2] / "shared" / "spec" / "api-design.md"

# The spec's "Python Client Example", verbatim.
SPEC_CLIENT_EXAMPLE = '''import requests

def generate_text(prompt, model="default"):
    url = "http://localhost:8000/api/v1/generate"
    payload = {
        "prompt": prompt,
        "model": model,
        "max_tokens": 512,
        "temperature": 0.7
    }
    
    response = requests.post(url, json=payload)
    return response.json()

# Usage Example
result = generate_text("Write a poem about spring")
print(result["text"])
'''


def post(base_url: str, path: str, body: object, **kwargs: object) -> httpx.Response:
    return httpx.post(base_url + path, json=body, timeout=120, **kwargs)


def metrics(base_url: str) -> dict:
    """{family name: {(sample name, sorted labels): value}}"""
    text = httpx.get(base_url + "/metrics").text
    return {f.name: {(s.name, tuple(sorted(s.labels.items()))): s.value for s in f.samples}
            for f in text_string_to_metric_families(text)}


def sample(families: dict, family: str, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in families.get(family, {}).items() if n == name and wanted <= set(ls))


# -- /health --------------------------------------------------------------------------

def test_health_reports_model_memory_connections_and_slots(base_url):
    r = httpx.get(base_url + "/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "healthy"
    assert body["model_loaded"] is True
    assert re.fullmatch(r"\d+\.\d+GB/\d+\.\d+GB", body["memory_usage"])
    used, total = (float(x) for x in body["memory_usage"].replace("GB", "").split("/"))
    assert 0 < used < total
    assert body["active_connections"] >= 1  # this request
    assert body["models"] == ["gemma-3-270m-q4_k_m"]
    slots = body["slots"]
    assert slots["total"] == 8 and slots["busy"] + slots["free"] == 8


# -- /api/v1/generate -----------------------------------------------------------------

def test_generate_returns_text_usage_latency_and_finish_reason(base_url):
    r = post(base_url, "/api/v1/generate",
             {"prompt": PROMPT, "model": "default", "max_tokens": 8, "temperature": 0, "stream": False})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert isinstance(body["text"], str) and body["text"].strip()
    usage = body["usage"]
    assert 0 < usage["completion_tokens"] <= 8
    assert usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert isinstance(body["latency"], float) and 0 < body["latency"] < 120
    assert body["finish_reason"] in ("length", "stop")


def test_greedy_is_deterministic_and_seeded_sampling_reproducible(base_url):
    greedy = {"prompt": PROMPT, "max_tokens": 12, "temperature": 0}
    assert post(base_url, "/api/v1/generate", greedy).json()["text"] == \
        post(base_url, "/api/v1/generate", greedy).json()["text"]
    seeded = {"prompt": PROMPT, "max_tokens": 12, "temperature": 0.9, "top_p": 0.95, "top_k": 50,
              "seed": 1234}
    first = post(base_url, "/api/v1/generate", seeded).json()
    assert first["usage"]["completion_tokens"] > 0
    assert post(base_url, "/api/v1/generate", seeded).json()["text"] == first["text"]


def test_stop_string_ends_generation(base_url):
    free = post(base_url, "/api/v1/generate",
                {"prompt": "1, 2, 3, 4,", "max_tokens": 16, "temperature": 0}).json()["text"]
    stop = free.strip().split()[1]  # a word the model will produce
    r = post(base_url, "/api/v1/generate",
             {"prompt": "1, 2, 3, 4,", "max_tokens": 16, "temperature": 0, "stop": [stop]})
    body = r.json()
    assert body["finish_reason"] == "stop"
    assert stop not in body["text"]
    assert free.startswith(body["text"])


def test_model_may_be_named_by_file_stem_or_gguf_name(base_url):
    for name in ("gemma-3-270m-q4_k_m", "Gemma 3 270m", "default"):
        r = post(base_url, "/api/v1/generate", {"prompt": "Hi", "model": name, "max_tokens": 2})
        assert r.status_code == 200, r.text


def test_server_default_max_tokens_applies(base_url):
    # The app is configured with default_max_tokens=32.
    body = post(base_url, "/api/v1/generate",
                {"prompt": PROMPT, "temperature": 0, "ignore_eos": True}).json()
    assert body["usage"]["completion_tokens"] == 32
    assert body["finish_reason"] == "length"


@pytest.fixture(scope="module")
def short_context_url(model_path):
    """A server whose context (128 tokens a request) bounds the spec example's max_tokens=512."""
    from llamaserve.config import ServerConfig
    from llamaserve.server.app import create_app
    from serverutil import LiveServer

    with LiveServer(create_app(ServerConfig(model=str(model_path), n_ctx=128, n_parallel=1))) as server:
        yield server.url


def test_spec_python_client_example_runs_unchanged(short_context_url):
    if SPEC.is_file():  # the copy above must be the spec's own text
        assert SPEC_CLIENT_EXAMPLE.strip() in SPEC.read_text()
    code = SPEC_CLIENT_EXAMPLE.replace("http://localhost:8000", short_context_url)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "spec_client_example.py", "exec"), {"__name__": "spec_example"})
    assert out.getvalue().strip()


# -- /api/v1/models -------------------------------------------------------------------

def test_models_lists_the_loaded_model_in_spec_shape(base_url):
    r = httpx.get(base_url + "/api/v1/models")
    assert r.status_code == 200
    models = r.json()["models"]
    loaded = [m for m in models if m["loaded"]]
    assert len(loaded) == 1
    model = loaded[0]
    assert model["name"] == "gemma-3-270m-q4_k_m"
    assert model["format"] == "gguf"
    assert re.fullmatch(r"\d+\.\d+GB", model["size"]) and model["size"] == "0.2GB"
    assert re.fullmatch(r"\d+\.\d+GB", model["memory_usage"])


def test_loading_the_loaded_model_is_a_no_op(base_url):
    r = post(base_url, "/api/v1/models/gemma-3-270m-q4_k_m/load", {"quantization": "q4_k_m", "prefer_gpu": False})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "already_loaded" and r.json()["loaded"] is True


# -- /api/v1/batch/generate -----------------------------------------------------------

def test_batch_keeps_input_order(base_url):
    prompts = ["word " * (i + 1) for i in range(4)]
    r = post(base_url, "/api/v1/batch/generate",
             {"requests": [{"prompt": p, "max_tokens": 4 + i, "temperature": 0, "ignore_eos": True}
                           for i, p in enumerate(prompts)]})
    assert r.status_code == 200
    results = r.json()["results"]
    assert len(results) == 4
    prompt_tokens = [res["usage"]["prompt_tokens"] for res in results]
    assert prompt_tokens == sorted(prompt_tokens) and len(set(prompt_tokens)) == 4
    assert [res["usage"]["completion_tokens"] for res in results] == [4, 5, 6, 7]
    assert all(isinstance(res["text"], str) for res in results)


def test_batch_item_errors_stay_with_their_item(base_url):
    r = post(base_url, "/api/v1/batch/generate", {"requests": [
        {"prompt": "Hello", "max_tokens": 3},
        {"prompt": "Hello", "temperature": "hot"},
        {"prompt": "Hello", "bogus": 1},
        {"prompt": "word " * 600, "max_tokens": 3},
        {"prompt": "Hello", "model": "llama-2-7b-chat"},
        "not an object",
        {"prompt": "Bye", "max_tokens": 3},
    ]})
    assert r.status_code == 200
    results = r.json()["results"]
    assert results[0]["usage"]["completion_tokens"] <= 3 and "error" not in results[0]
    codes = [res.get("error", {}).get("code") for res in results]
    assert codes == [None, "INVALID_REQUEST", "INVALID_REQUEST", "CONTEXT_LENGTH_EXCEEDED",
                     "MODEL_NOT_FOUND", "INVALID_REQUEST", None]
    assert results[1]["error"]["message"].startswith("temperature")
    assert results[2]["error"]["message"].startswith("bogus")
    assert results[3]["error"]["message"].startswith("prompt")
    assert set(results[1]["error"]) == {"code", "message", "details"}


def test_batch_runs_concurrently(base_url):
    # Concurrency alone: drafts would speed the lone requests up and not the batch's.
    args = {"max_tokens": 24, "temperature": 0, "ignore_eos": True, "speculative": False}
    def single() -> float:
        started = time.perf_counter()
        assert post(base_url, "/api/v1/generate", {"prompt": PROMPT, **args}).status_code == 200
        return time.perf_counter() - started

    singles = [single(), single()]
    started = time.perf_counter()
    r = post(base_url, "/api/v1/batch/generate",
             {"requests": [{"prompt": f"{PROMPT} ({i})", **args} for i in range(8)]})
    wall = time.perf_counter() - started
    singles.append(single())  # before and after: the machine may be shared
    results = r.json()["results"]
    assert all(res["usage"]["completion_tokens"] == 24 for res in results)
    # Run one after another, the items' latencies would add up to the wall time; run
    # together, each spans most of it.
    assert wall < 0.5 * sum(res["latency"] for res in results)
    assert wall < 6 * sorted(singles)[1], (wall, singles)  # 8 in a row would take 8x


@pytest.mark.parametrize("body, field", [
    ({"requests": [{"prompt": "x"}] * 9}, "requests"),  # the app allows 8
    ({"requests": []}, "requests"),
    ({"requests": {"prompt": "x"}}, "requests"),
    ({}, "requests"),
    ({"requests": [{"prompt": "x"}], "extra": 1}, "extra"),
])
def test_bad_batches_are_400(base_url, body, field):
    r = post(base_url, "/api/v1/batch/generate", body)
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "INVALID_REQUEST"
    assert r.json()["error"]["message"].startswith(field)


# -- /metrics -------------------------------------------------------------------------

def test_metrics_parse_and_have_the_families(base_url):
    post(base_url, "/api/v1/generate", {"prompt": "Hi", "max_tokens": 3})
    r = httpx.get(base_url + "/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    inference = families["model_inference_seconds"]
    assert inference.type == "histogram"
    bounds = {s.labels["le"] for s in inference.samples if s.name.endswith("_bucket")}
    assert {"1.0", "3.0", "5.0", "+Inf"} <= bounds
    assert all(s.labels["model_name"] == "gemma-3-270m-q4_k_m" for s in inference.samples)
    assert families["active_connections"].type == "gauge"
    assert families["active_connections"].samples[0].value >= 1
    # Everything else under one namespace, with vLLM's label, but llama-server's own series
    # (tests/test_metrics_llamacpp.py); no _created series.
    assert set(families) - {"model_inference_seconds", "active_connections"} == \
        {name for name in families if name.startswith(("llamaserve:", "llamacpp:"))}
    assert "_created" not in r.text
    for name in ("time_to_first_token_seconds", "inter_token_latency_seconds"):
        assert families["llamaserve:" + name].type == "histogram"
    for name in ("prompt_tokens", "generation_tokens", "http_requests", "request_finished"):
        assert families["llamaserve:" + name].type == "counter"
    for name in ("num_requests_waiting", "num_requests_running", "slots_total", "kv_cache_usage_perc"):
        assert families["llamaserve:" + name].type == "gauge"
        assert families["llamaserve:" + name].samples[0].labels == {"model_name": "gemma-3-270m-q4_k_m"}


def test_metrics_counters_move_with_traffic(base_url):
    before = metrics(base_url)
    body = post(base_url, "/api/v1/generate",
                {"prompt": PROMPT, "max_tokens": 6, "temperature": 0, "ignore_eos": True}).json()
    httpx.get(base_url + "/no/such/page")
    after = metrics(base_url)

    def delta(family: str, name: str, **labels: str) -> float:
        return sample(after, family, name, **labels) - sample(before, family, name, **labels)

    ns = "llamaserve:"
    assert delta(ns + "generation_tokens", ns + "generation_tokens_total") == 6
    assert delta(ns + "prompt_tokens", ns + "prompt_tokens_total") == body["usage"]["prompt_tokens"]
    assert delta("model_inference_seconds", "model_inference_seconds_count") == 1
    assert delta(ns + "time_to_first_token_seconds", ns + "time_to_first_token_seconds_count") == 1
    assert delta(ns + "inter_token_latency_seconds", ns + "inter_token_latency_seconds_count") == 5  # each gap
    assert delta(ns + "http_requests", ns + "http_requests_total", endpoint="/api/v1/generate", status="200") == 1
    assert delta(ns + "http_requests", ns + "http_requests_total", endpoint="unmatched", status="404") == 1
    assert delta(ns + "request_finished", ns + "request_finished_total", finished_reason="length") == 1
