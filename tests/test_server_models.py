"""GET /api/v1/models and POST /api/v1/models/{name}/load over a models folder: listing,
loading by name (swapping the engine while requests run), and the model errors."""
from __future__ import annotations

import httpx
import pytest

from llamaserve.config import ServerConfig
from llamaserve.server.app import create_app
from serverutil import LiveServer, sse_events


@pytest.fixture(scope="module")
def models_url(model_path, tmp_path_factory):
    """A models folder with two names for Gemma 3 270M and one broken file; the server
    starts with `alpha`, named (not a path)."""
    folder = tmp_path_factory.mktemp("models")
    (folder / "alpha.gguf").symlink_to(model_path)
    (folder / "beta-q4_k_m.gguf").symlink_to(model_path)
    (folder / "broken.gguf").write_bytes(b"GGUF" + b"\0" * 64)
    (folder / "notes.txt").write_text("not a model")
    config = ServerConfig(model="alpha", models_dir=str(folder), n_ctx=256, n_parallel=2, max_models=1)
    with LiveServer(create_app(config)) as server:
        yield server.url


def models(url: str) -> dict[str, dict]:
    return {m["name"]: m for m in httpx.get(url + "/api/v1/models").json()["models"]}


def generate(url: str, model: str) -> httpx.Response:
    return httpx.post(url + "/api/v1/generate", timeout=60,
                      json={"prompt": "Hi", "model": model, "max_tokens": 2, "ignore_eos": True})


def load(url: str, name: str, body: dict | None = None) -> httpx.Response:
    return httpx.post(url + f"/api/v1/models/{name}/load", json=body, timeout=120)


def test_lists_the_loaded_model_and_the_folder(models_url, smollm2_path):
    listed = models(models_url)
    # and the embedded models: SmolLM2 (the default), and Gemma, which is `alpha` here
    assert set(listed) == {"alpha", "beta-q4_k_m", "broken", smollm2_path.stem.lower()}
    assert listed["alpha"]["loaded"] is True
    assert listed["beta-q4_k_m"]["loaded"] is False and listed["broken"]["loaded"] is False
    for model in listed.values():
        assert set(model) >= {"name", "format", "size", "loaded", "memory_usage"}
        assert model["format"] == "gguf" and model["size"].endswith("GB")
    assert listed["beta-q4_k_m"]["size"] == "0.2GB"


def test_the_default_model_is_described_by_its_own_parameter_count(default_server):
    [row] = [m for m in httpx.get(default_server.url + "/api/v1/models").json()["models"] if m["loaded"]]
    assert 134e6 < row["n_params"] < 136e6
    assert row["description"] == "llama 135M Q4_1"  # llama.cpp's own says "256M"


def test_model_errors(models_url):
    assert generate(models_url, "alpha").status_code == 200
    r = generate(models_url, "beta-q4_k_m")
    assert r.status_code == 409
    assert r.json()["error"] == {"code": "MODEL_NOT_LOADED", "message": "model: 'beta-q4_k_m' is not loaded",
                                 "details": "Please call the load endpoint first"}
    assert generate(models_url, "gamma").json()["error"]["code"] == "MODEL_NOT_FOUND"
    r = load(models_url, "broken")  # the file's fault: a 4xx (issue 11), no longer 500
    assert r.status_code == 422 and r.json()["error"]["code"] == "MODEL_FILE_INVALID"
    assert "/" not in r.json()["error"]["details"]  # no server paths
    r = load(models_url, "beta", {"quantization": "q8_0"})
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("quantization")
    r = load(models_url, "alpha", {"prefer_gpu": "yes"})
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("prefer_gpu")
    # Still serving alpha after all of that.
    assert models(models_url)["alpha"]["loaded"] is True
    assert generate(models_url, "alpha").status_code == 200


def test_load_swaps_the_model_while_a_request_runs(models_url):
    with httpx.stream("POST", models_url + "/api/v1/generate/stream", timeout=60,
                      json={"prompt": "Tell a story", "model": "alpha", "max_tokens": 40,
                            "ignore_eos": True}) as running:
        events = sse_events(running.iter_lines())
        assert next(events)["finished"] is False
        r = load(models_url, "beta", {"quantization": "q4_k_m", "prefer_gpu": False})
        assert r.status_code == 200, r.text
        assert r.json()["name"] == "beta-q4_k_m" and r.json()["status"] == "loaded"
        # The request on the old engine finishes normally.
        last = list(events)[-1]
    assert last["finished"] is True and last["usage"]["completion_tokens"] == 40
    assert models(models_url)["beta-q4_k_m"]["loaded"] is True
    assert models(models_url)["alpha"]["loaded"] is False
    assert generate(models_url, "beta-q4_k_m").status_code == 200
    assert generate(models_url, "default").status_code == 200
    assert generate(models_url, "alpha").status_code == 409
    health = httpx.get(models_url + "/health").json()
    assert health["models"] == ["beta-q4_k_m"] and health["status"] == "healthy"
    # "default" loads the configured model again.
    r = load(models_url, "default")
    assert r.status_code == 200 and r.json()["name"] == "alpha"
    assert load(models_url, "alpha").json()["status"] == "already_loaded"
