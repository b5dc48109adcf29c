"""A model name the server does not have: every API says which names it has (`default`
first) and where a GGUF file goes (not the folder's path: the client may be anyone), each in
its own error shape; `default` is listed."""
from __future__ import annotations

import httpx
import openai
import pytest

ASKED = "qwen-7b-chat"


def check_message(message: str, server_default: str) -> None:
    assert f"no model named '{ASKED}'" in message
    assert "models here: default, " in message and server_default in message
    assert "put its .gguf file in the server's models folder (--models-dir)" in message
    assert "/" not in message.split("models folder")[1]  # not where files live on the server


def test_openai_and_native_and_anthropic_name_the_models_there(default_server, smollm2_path):
    name = smollm2_path.stem.lower()
    client = openai.OpenAI(base_url=default_server.url + "/v1", api_key="any", max_retries=0)
    try:
        with pytest.raises(openai.NotFoundError) as info:
            client.chat.completions.create(model=ASKED, messages=[{"role": "user", "content": "Hi"}])
    finally:
        client.close()
    check_message(info.value.message, name)
    native = httpx.post(default_server.url + "/api/v1/generate", json={"prompt": "Hi", "model": ASKED})
    assert native.status_code == 404 and native.json()["error"]["code"] == "MODEL_NOT_FOUND"
    check_message(native.json()["error"]["message"], name)
    anthropic = httpx.post(default_server.url + "/v1/messages", json={
        "model": ASKED, "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]})
    assert anthropic.status_code == 404 and anthropic.json()["type"] == "error"
    check_message(anthropic.json()["error"]["message"], name)


def test_default_is_listed_among_the_servers_names(default_server, smollm2_path):
    ids = [m["id"] for m in httpx.get(default_server.url + "/v1/models").json()["data"]]
    assert ids[:2] == [smollm2_path.stem.lower(), "default"]
