"""Model names per API face and loads on first use, on tiny GGUFs in a models folder: with one
model loaded the OpenAI and Anthropic faces serve any name with it (the response names it),
with several an unknown name is a 404 in each API's shape naming the models and the folder;
Ollama's and the native API's names stay strict; the native API keeps its 409 while the others
load on first use, a load past --load-wait answering 503 with Retry-After."""
from __future__ import annotations

import httpx
from serverutil import LiveServer, wait_for

from llamaserve.config import ServerConfig
from llamaserve.server.app import create_app

CHAT = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}


def serve(tiny_models, tmp_path, **options) -> LiveServer:
    folder = tmp_path / "models"
    folder.mkdir()
    for path in tiny_models.values():
        (folder / path.name).symlink_to(path)
    config = ServerConfig(models_dir=str(folder), model="llama-2-7b-chat", n_ctx=128, n_parallel=1,
                          n_threads=1, default_max_tokens=2, **options)
    return LiveServer(create_app(config)).start()


def post(server: LiveServer, path: str, body: dict) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=120)


def test_one_model_serves_any_name_then_several_are_strict(tiny_models, tmp_path):
    with serve(tiny_models, tmp_path) as server:
        served = "llama-2-7b-chat.f16"
        r = post(server, "/v1/chat/completions", {"model": "gpt-4o", **CHAT})
        assert r.status_code == 200 and r.json()["model"] == served
        r = post(server, "/v1/messages", {"model": "claude-sonnet-4-5", **CHAT})
        assert r.status_code == 200 and r.json()["model"] == served
        listed = {m["id"]: m for m in httpx.get(server.url + "/v1/models").json()["data"]}
        assert "default" in listed[served]["aliases"] and "default" not in listed  # one entry per model
        # Ollama's names and the native API's stay strict.
        r = post(server, "/api/chat", {"model": "gpt-4o", "messages": CHAT["messages"], "stream": False})
        assert r.status_code == 404 and "gpt-4o" in r.json()["error"]
        assert post(server, "/api/v1/generate", {"model": "gpt-4o", "prompt": "Hi"}).status_code == 404
        # The native API does not load on first use (the spec's 409); Ollama's does.
        r = post(server, "/api/v1/generate", {"model": "gemma-2b", "prompt": "Hi", "max_tokens": 2})
        assert r.status_code == 409 and r.json()["error"]["code"] == "MODEL_NOT_LOADED"
        r = post(server, "/api/generate", {"model": "gemma-2b:latest", "prompt": "Hi", "stream": False,
                                           "options": {"num_predict": 2}})
        assert r.status_code == 200 and r.json()["done"] and r.json()["load_duration"] > 0
        assert len(httpx.get(server.url + "/api/ps").json()["models"]) == 2
        # Two models loaded: an unknown name is a 404 in each API's shape, saying what there is.
        r = post(server, "/v1/chat/completions", {"model": "gpt-4o", **CHAT})
        error = r.json()["error"]
        assert r.status_code == 404 and error["code"] == "model_not_found"
        assert "gemma-2b-it" in error["message"] and "models folder" in error["message"]
        r = post(server, "/v1/messages", {"model": "claude-sonnet-4-5", **CHAT})
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"


def test_strict_names_and_a_load_past_load_wait(tiny_models, tmp_path):
    with serve(tiny_models, tmp_path, strict_model_names=True, load_wait=0.0) as server:
        r = post(server, "/v1/chat/completions", {"model": "gpt-4o", **CHAT})
        assert r.status_code == 404 and "gpt-4o" in r.json()["error"]["message"]
        # A load that takes longer than --load-wait: 503 with Retry-After, and the load goes on.
        r = post(server, "/v1/chat/completions", {"model": "gemma-2b", **CHAT})
        assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 1, r.text
        wait_for(lambda: post(server, "/v1/chat/completions", {"model": "gemma-2b", **CHAT}).status_code == 200,
                 timeout=60, interval=0.2)


def test_no_auto_load(tiny_models, tmp_path):
    with serve(tiny_models, tmp_path, auto_load=False) as server:
        r = post(server, "/v1/chat/completions", {"model": "gemma-2b", **CHAT})
        assert r.status_code == 409 and "not loaded" in r.json()["error"]["message"]
