"""Issue 22, findings 9 and 10: roles and tokens, over real HTTP. Operator routes (model load,
unload, quantize) want an admin key (--admin-keys, or a JWT with the llamaserve:admin scope):
ordinary keys get 403. Quantizing on load fills at most --quantize-cache-size, the least
recently used results no model uses making room. Every JWT must carry an exp within
--jwt-max-lifetime (10**30 is refused); tokens without a subject are rate-limited each on its
own, not as one "anonymous"; /metrics wants a key when auth is on (--metrics-auth)."""
from __future__ import annotations

import time
from pathlib import Path

import httpx
import jwt
import pytest

from llamaserve.config import ServerConfig
from llamaserve.server.app import create_app
from serverutil import LiveServer

USER, ADMIN = "user-key-0123456789", "admin-key-9876543210"
SECRET = "a-test-secret-that-is-long-enough-for-hs256-and-even-for-hs512-too"
DAY = 86400


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def token(**claims) -> str:
    now = int(time.time())
    return jwt.encode({"sub": "alice", "iat": now, "exp": now + 300, **claims}, SECRET, algorithm="HS256")


@pytest.fixture(scope="module")
def secure_url(engine):
    config = ServerConfig(api_keys=(USER,), admin_keys=(ADMIN,), jwt_secret=SECRET)
    with LiveServer(create_app(config, engine)) as server:
        yield server.url


def test_operator_routes_want_an_admin_key(secure_url, served_model):
    for credential in (USER, token(), token(scope="openid profile")):
        for route in ("/api/v1/models/default/load", "/api/v1/models/default/unload"):
            r = httpx.post(secure_url + route, headers=bearer(credential), json={"quantization": "q4_0"})
            assert r.status_code == 403, r.text
            assert r.json()["error"]["code"] == "FORBIDDEN" and "--admin-keys" in r.json()["error"]["details"]
    # The same keys use the APIs as before.
    assert httpx.get(secure_url + "/api/v1/models", headers=bearer(USER)).status_code == 200
    r = httpx.post(secure_url + "/api/v1/generate", headers=bearer(USER), json={"prompt": "Hi", "max_tokens": 2},
                   timeout=60)
    assert r.status_code == 200
    # Admins get through the gate (and then the usual answers).
    for credential in (ADMIN, token(scope="openid llamaserve:admin"), token(scp=["llamaserve:admin"])):
        r = httpx.post(f"{secure_url}/api/v1/models/{served_model}/load", headers=bearer(credential), timeout=60)
        assert r.status_code == 200 and r.json()["status"] == "already_loaded", r.text
        r = httpx.post(secure_url + "/api/v1/models/no-such-model/unload", headers=bearer(credential))
        assert r.status_code == 404
    # An admin key is an API key too.
    assert httpx.get(secure_url + "/api/v1/models", headers=bearer(ADMIN)).status_code == 200


def test_tokens_must_expire_within_the_max_lifetime(secure_url):
    now = int(time.time())
    refused = {
        "token has no exp: every token must expire": jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256"),
        "token lives too long": token(exp=10**30),
        "token lives too long ": token(exp=now + 2 * DAY),  # the default limit is a day
        "token lives too long  ": token(iat=now - 3 * DAY, exp=now + 60),  # issued for three days
    }
    for reason, credential in refused.items():
        r = httpx.get(secure_url + "/api/v1/models", headers=bearer(credential))
        assert r.status_code == 401 and r.json()["error"]["message"].startswith(reason.strip()), r.text
    assert httpx.get(secure_url + "/api/v1/models", headers=bearer(token(exp=now + DAY - 60))).status_code == 200


def test_metrics_want_a_key_when_auth_is_on(secure_url, engine):
    assert httpx.get(secure_url + "/metrics").status_code == 401
    assert httpx.get(secure_url + "/metrics", headers=bearer(USER)).status_code == 200
    for setting, user, admin in (("admin", 403, 200), ("open", 200, 200)):
        config = ServerConfig(api_keys=(USER,), admin_keys=(ADMIN,), metrics_auth=setting)
        with LiveServer(create_app(config, engine)) as server:
            assert httpx.get(server.url + "/metrics", headers=bearer(USER)).status_code == user
            assert httpx.get(server.url + "/metrics", headers=bearer(ADMIN)).status_code == admin
            assert httpx.get(server.url + "/metrics").status_code == (200 if setting == "open" else 401)


def test_tokens_without_a_subject_are_limited_each_on_its_own(engine):
    config = ServerConfig(jwt_secret=SECRET, rate_limit=3, rate_limit_window=DAY)
    first, second = (jwt.encode({"exp": int(time.time()) + 300, "jti": jti}, SECRET, algorithm="HS256")
                     for jti in ("one", "two"))
    with LiveServer(create_app(config, engine)) as server:
        seen = [httpx.get(server.url + "/api/v1/models", headers=bearer(first)).status_code for _ in range(4)]
        assert seen == [200, 200, 200, 429]
        r = httpx.get(server.url + "/api/v1/models", headers=bearer(second))
        assert r.status_code == 200 and r.headers["x-ratelimit-remaining"] == "2"


def test_quantizing_fills_at_most_the_cache_size(tiny_models, tmp_path):
    folder, cache = tmp_path / "models", tmp_path / "quantized"
    folder.mkdir()
    (folder / tiny_models["llama"].name).symlink_to(tiny_models["llama"])
    # Room for the Q8_0 (1.8 MB) or the Q4_0 (1.3 MB) of the tiny llama, not both.
    config = ServerConfig(models_dir=str(folder), model="llama-2-7b-chat", quantize_cache=str(cache),
                          quantize_cache_size="2.5MB", n_ctx=64, n_parallel=1, n_threads=1)
    with LiveServer(create_app(config)) as server:
        def load(quantization: str) -> httpx.Response:
            return httpx.post(server.url + "/api/v1/models/llama-2-7b-chat/load",
                              json={"quantization": quantization}, timeout=120)

        assert load("q8_0").status_code == 200
        r = load("q4_0")  # the Q8_0 is loaded: it may not make room
        assert r.status_code == 507, r.text
        assert r.json()["error"]["code"] == "QUANTIZE_CACHE_FULL"
        assert "--quantize-cache-size" in r.json()["error"]["details"]
        assert [p.name.split(".")[-2].lower() for p in cache.glob("*.gguf")] == ["q8_0"]
        assert httpx.post(server.url + "/api/v1/models/llama-2-7b-chat.q8_0/unload").status_code == 200
        assert load("q4_0").status_code == 200  # the unused Q8_0 made room
        assert [p.name.split(".")[-2].lower() for p in cache.glob("*.gguf")] == ["q4_0"]
        assert sum(p.stat().st_size for p in Path(cache).glob("*.gguf")) <= 2.5 * 2**20
