"""llama-server's /tokenize and /detokenize, in its shapes, with the same auth and errors."""
from __future__ import annotations

import httpx

from llamaserve.config import ServerConfig


def test_tokenize_and_detokenize_round_trip(base_url, engine):
    text = "What is the capital of France?"
    r = httpx.post(base_url + "/tokenize", json={"content": text})
    assert r.status_code == 200
    tokens = r.json()["tokens"]
    # llama-server's default: no BOS unless asked for
    assert tokens == engine.tokenize(text, add_special=False)
    with_bos = httpx.post(base_url + "/tokenize", json={"content": text, "add_special": True}).json()["tokens"]
    assert with_bos[0] == engine.metadata["bos_token_id"] and with_bos[1:] == tokens
    back = httpx.post(base_url + "/detokenize", json={"tokens": tokens})
    assert back.status_code == 200 and back.json() == {"content": text}
    assert httpx.post(base_url + "/detokenize", json={"tokens": []}).json() == {"content": ""}


def test_with_pieces_gives_text_or_bytes(base_url, engine):
    text = "unicode 媽 and emoji 🤗"
    pieces = httpx.post(base_url + "/tokenize", json={"content": text, "with_pieces": True}).json()["tokens"]
    assert [p["id"] for p in pieces] == engine.tokenize(text, add_special=False)
    raw = b""
    for p in pieces:
        assert isinstance(p["piece"], (str, list))
        raw += p["piece"].encode() if isinstance(p["piece"], str) else bytes(p["piece"])
    assert raw.decode() == text


def test_bad_input_is_400_naming_the_field(base_url, engine):
    cases = [
        ({"content": 5}, "content"), ({}, "content"), ({"content": "x", "with_pieces": "yes"}, "with_pieces"),
        ({"content": "x", "bogus": 1}, "bogus"), ({"tokens": "1 2"}, "tokens"), ({"tokens": [1, -2]}, "tokens"),
        ({"tokens": [engine.metadata["n_vocab"]]}, "tokens"), ({"tokens": [1, 2**40]}, "tokens"),
    ]
    for body, field in cases:
        path = "/detokenize" if "tokens" in body else "/tokenize"
        r = httpx.post(base_url + path, json=body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]["message"].startswith(field)
    surrogate = httpx.post(base_url + "/tokenize", content=b'{"content": "\\ud800"}',
                           headers={"content-type": "application/json"})
    assert surrogate.status_code == 400 and surrogate.json()["error"]["message"].startswith("content")


def test_auth_guards_tokenize(serve_app):
    server = serve_app(ServerConfig(api_keys=("sk-tok",)))
    assert httpx.post(server.url + "/tokenize", json={"content": "hi"}).status_code == 401
    r = httpx.post(server.url + "/tokenize", json={"content": "hi"}, headers={"X-API-Key": "sk-tok"})
    assert r.status_code == 200 and r.json()["tokens"]
