"""Authentication (API keys, HS256 and RS256 JWTs) and rate limiting, over real HTTP."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from llamaserve.config import ServerConfig
from llamaserve.server.app import create_app
from serverutil import LiveServer

KEYS = ("key-one-0123456789", "key-two-9876543210")
SECRET = "a-test-secret-that-is-long-enough-for-hs256-and-even-for-hs512-too"
MODELS = "/api/v1/models"


def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


PRIVATE = _rsa_key()
OTHER_PRIVATE = _rsa_key()
PUBLIC_PEM = PRIVATE.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def token(key, algorithm: str = "HS256", **claims) -> str:
    now = int(time.time())
    return jwt.encode({"sub": "alice", "iat": now, "exp": now + 300, **claims}, key, algorithm=algorithm)


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


@pytest.fixture(scope="module")
def secure_url(engine, tmp_path_factory):
    key_file = tmp_path_factory.mktemp("keys") / "public.pem"
    key_file.write_text(PUBLIC_PEM)
    config = ServerConfig(api_keys=KEYS, jwt_secret=SECRET, jwt_public_key=str(key_file))
    with LiveServer(create_app(config, engine)) as server:
        yield server.url


def unauthorized(r: httpx.Response, reason: str) -> None:
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == "UNAUTHORIZED"
    assert r.json()["error"]["message"] == reason
    assert r.headers["www-authenticate"].startswith("Bearer")


def test_missing_credentials_are_401(secure_url):
    unauthorized(httpx.get(secure_url + MODELS), "missing API key or token")
    unauthorized(httpx.post(secure_url + "/api/v1/generate", json={"prompt": "Hi"}), "missing API key or token")
    assert httpx.get(secure_url + "/v1/models").status_code == 401  # (/v1 words errors like OpenAI)
    unauthorized(httpx.get(secure_url + MODELS, headers={"Authorization": "Basic abc"}),
                 "missing API key or token")


def test_ollamas_api_takes_the_same_keys_and_answers_in_its_own_shape(secure_url):
    """The ollama client sends the key as a bearer header (Client(headers=...))."""
    import ollama

    r = httpx.get(secure_url + "/api/tags")
    assert r.status_code == 401 and set(r.json()) == {"error"}  # Ollama's error shape
    with ollama.Client(host=secure_url, headers=bearer(KEYS[0])) as client:
        assert client.list().models
    with ollama.Client(host=secure_url) as client, pytest.raises(ollama.ResponseError) as caught:
        client.ps()
    assert caught.value.status_code == 401


def test_wrong_key_is_401(secure_url):
    for headers in (bearer("key-three"), {"X-API-Key": "key-one"}, bearer(KEYS[0] + "x")):
        unauthorized(httpx.get(secure_url + MODELS, headers=headers), "invalid API key or token")


def test_right_key_by_bearer_or_x_api_key(secure_url):
    for headers in (bearer(KEYS[0]), bearer(KEYS[1]), {"X-API-Key": KEYS[1]},
                    {"Authorization": f"bearer {KEYS[0]}"}):
        assert httpx.get(secure_url + MODELS, headers=headers).status_code == 200
    r = httpx.post(secure_url + "/api/v1/generate", headers={"X-API-Key": KEYS[0]},
                   json={"prompt": "Hi", "max_tokens": 2}, timeout=60)
    assert r.status_code == 200 and r.json()["text"] is not None


def test_hs256_and_rs256_tokens(secure_url):
    assert httpx.get(secure_url + MODELS, headers=bearer(token(SECRET))).status_code == 200
    assert httpx.get(secure_url + MODELS, headers=bearer(token(PRIVATE, "RS256"))).status_code == 200


def test_bad_tokens_are_401(secure_url):
    now = int(time.time())
    unauthorized(httpx.get(secure_url + MODELS, headers=bearer(token(SECRET, exp=now - 10))), "token expired")
    unauthorized(httpx.get(secure_url + MODELS, headers=bearer(token(PRIVATE, "RS256", exp=now - 10))),
                 "token expired")
    unauthorized(httpx.get(secure_url + MODELS, headers=bearer(token(SECRET, nbf=now + 600))),
                 "token not valid yet")
    other_secret = "another-secret-that-is-long-enough-for-hs256-and-for-hs512-as-well"
    for bad in (token(other_secret), token(OTHER_PRIVATE, "RS256"), token(SECRET, "HS512"),
                jwt.encode({"sub": "mallory"}, None, algorithm="none"), "a.b.c"):
        r = httpx.get(secure_url + MODELS, headers=bearer(bad))
        assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHORIZED"
    # Algorithm confusion: an HS256 token whose HMAC key is the RS256 public key.
    unauthorized(httpx.get(secure_url + MODELS, headers=bearer(hs256_signed_with(PUBLIC_PEM))),
                 "invalid API key or token")


def hs256_signed_with(key: str) -> str:
    """Sign by hand: PyJWT itself refuses to use a PEM key as an HMAC secret."""
    def b64(raw: bytes) -> bytes:
        return base64.urlsafe_b64encode(raw).rstrip(b"=")

    now = int(time.time())
    signing_input = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + b"." + \
        b64(json.dumps({"sub": "mallory", "exp": now + 300}).encode())
    signature = hmac.new(key.encode(), signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + b64(signature)).decode()


def test_health_is_open_and_metrics_protected_with_auth_on(secure_url):
    assert httpx.get(secure_url + "/health").status_code == 200
    unauthorized(httpx.get(secure_url + "/metrics"), "missing API key or token")
    assert httpx.get(secure_url + "/metrics", headers=bearer(KEYS[0])).status_code == 200


def test_auth_is_off_by_default(base_url):
    assert httpx.get(base_url + MODELS).status_code == 200
    assert httpx.get(base_url + "/metrics").status_code == 200


def test_a_short_jwt_secret_is_refused_at_startup():
    with pytest.raises(ValueError, match="^--jwt-secret"):
        create_app(ServerConfig(jwt_secret="short"))


# -- rate limiting --------------------------------------------------------------------

@pytest.fixture(scope="module")
def limited_url(engine):
    # A day-long window: the test never straddles a window boundary.
    config = ServerConfig(api_keys=KEYS, rate_limit=3, rate_limit_window=86400)
    with LiveServer(create_app(config, engine)) as server:
        yield server.url


def test_rate_limit_headers_then_429(limited_url):
    headers = bearer(KEYS[0])
    remaining = []
    for _ in range(3):
        r = httpx.get(limited_url + MODELS, headers=headers)
        assert r.status_code == 200
        assert r.headers["x-ratelimit-limit"] == "3"
        remaining.append(int(r.headers["x-ratelimit-remaining"]))
        reset = int(r.headers["x-ratelimit-reset"])
        assert time.time() < reset <= time.time() + 86400 + 1
    assert remaining == [2, 1, 0]
    r = httpx.post(limited_url + "/api/v1/generate", headers=headers, json={"prompt": "Hi"})
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "RATE_LIMITED"
    assert set(r.json()["error"]) == {"code", "message", "details"}
    assert 1 <= int(r.headers["retry-after"]) <= 86400
    assert r.headers["x-ratelimit-remaining"] == "0"
    assert int(r.headers["x-ratelimit-reset"]) == reset
    # Another client (another key) has its own budget; /health is never limited.
    other = httpx.get(limited_url + MODELS, headers={"X-API-Key": KEYS[1]})
    assert other.status_code == 200 and other.headers["x-ratelimit-remaining"] == "2"
    for _ in range(5):
        assert httpx.get(limited_url + "/health").status_code == 200


def test_unauthenticated_requests_are_limited_by_ip(limited_url):
    seen = []
    for _ in range(4):
        r = httpx.get(limited_url + MODELS)
        seen.append(r.status_code)
        assert "x-ratelimit-remaining" in r.headers
    assert seen == [401, 401, 401, 429]


def test_cors_preflight_and_headers(engine):
    config = ServerConfig(cors_origins=("http://ui.example",), api_keys=KEYS)
    with LiveServer(create_app(config, engine)) as server:
        preflight = httpx.options(server.url + "/api/v1/generate", headers={
            "Origin": "http://ui.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type"})
        assert preflight.status_code == 200  # no credentials needed for a preflight
        assert preflight.headers["access-control-allow-origin"] == "http://ui.example"
        r = httpx.get(server.url + MODELS, headers={"Origin": "http://ui.example", **bearer(KEYS[0])})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "http://ui.example"
        denied = httpx.get(server.url + MODELS, headers={"Origin": "http://evil.example", **bearer(KEYS[0])})
        assert "access-control-allow-origin" not in denied.headers



def test_cors_default_is_any_local_page_as_llama_server(engine):
    """No --cors-origins: pages this machine serves (any port) may call the API; others may not."""
    with LiveServer(create_app(ServerConfig(), engine)) as server:
        for origin in ("http://localhost:3000", "http://127.0.0.1:8080", "https://[::1]"):
            preflight = httpx.options(server.url + "/completion", headers={
                "Origin": origin, "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type"})
            assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == origin
        for origin in ("http://evil.example", "http://localhost.evil.example"):
            r = httpx.get(server.url + "/v1/models", headers={"Origin": origin})
            assert "access-control-allow-origin" not in r.headers
            preflight = httpx.options(server.url + "/completion", headers={
                "Origin": origin, "Access-Control-Request-Method": "POST"})
            # answered, as llama-server does, without the header that would let the page call
            assert preflight.status_code == 200 and "access-control-allow-origin" not in preflight.headers

