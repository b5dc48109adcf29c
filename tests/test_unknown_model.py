"""A model name the server does not have, where the API answers 404 (the native API always;
OpenAI's and Anthropic's with --strict-model-names or several models, see
tests/test_model_names.py): it says which names there are (`default` first) and where a GGUF
file goes (not the folder's path: the client may be anyone), each in its API's own shape;
`default` is listed in /v1/models."""
from __future__ import annotations

import httpx
import openai
import pytest

from llamaserve.config import ServerConfig

ASKED = "qwen-7b-chat"


def check_message(message: str, server_default: str) -> None:
    assert f"no model named '{ASKED}'" in message
    assert "models here: default, " in message and server_default in message
    assert "put its .gguf file in the server's models folder (--models-dir)" in message
    assert "/" not in message.split("models folder")[1]  # not where files live on the server


def test_every_api_names_the_models_there(serve_app, served_model):
    server = serve_app(ServerConfig(strict_model_names=True, default_max_tokens=2))
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="any", max_retries=0)
    try:
        with pytest.raises(openai.NotFoundError) as info:
            client.chat.completions.create(model=ASKED, messages=[{"role": "user", "content": "Hi"}])
    finally:
        client.close()
    check_message(info.value.message, served_model)
    native = httpx.post(server.url + "/api/v1/generate", json={"prompt": "Hi", "model": ASKED})
    assert native.status_code == 404 and native.json()["error"]["code"] == "MODEL_NOT_FOUND"
    check_message(native.json()["error"]["message"], served_model)
    anthropic = httpx.post(server.url + "/v1/messages", json={
        "model": ASKED, "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]})
    assert anthropic.status_code == 404 and anthropic.json()["type"] == "error"
    check_message(anthropic.json()["error"]["message"], served_model)


def test_default_is_listed_among_the_servers_names(default_server, smollm2_path):
    [served, *_] = httpx.get(default_server.url + "/v1/models").json()["data"]
    assert served["id"] == smollm2_path.stem.lower() and served["aliases"][-1] == "default"
