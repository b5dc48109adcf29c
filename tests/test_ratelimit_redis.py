"""--rate-limit-redis: one limit across servers, counted in a real redis-server (the
distribution's package, started here on a loopback port); what happens while Redis is down.

Two apps in this process stand for two processes: each has its own limiter, and only Redis
is shared. The requests are GET /v1/models and /api/v1/models (limited like every API path,
no generation needed). The window is an hour, so no test straddles a window's end."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from llamaserve.config import ServerConfig
from llamaserve.server import ratelimit_redis
from redisutil import RedisServer, redis_binary

pytest.importorskip("redis", reason="the redis client is in the test extra")
WINDOW = 3600.0


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    if redis_binary() is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    if not redis_server.answers():  # a test stopped it
        redis_server.start()
    redis_server.flush()
    if WINDOW - time.time() % WINDOW < 30:  # too close to the window's end: wait for the next
        time.sleep(WINDOW - time.time() % WINDOW + 0.5)
    return redis_server.url


def limited(url: str, fallback: str = "local") -> ServerConfig:
    return ServerConfig(rate_limit=10, rate_limit_window=WINDOW, rate_limit_redis=url,
                        rate_limit_redis_fallback=fallback)


def test_one_limit_across_two_servers(serve_app, redis_url):
    first, second = serve_app(limited(redis_url)), serve_app(limited(redis_url))
    replies = [httpx.get((first if i % 2 else second).url + "/v1/models") for i in range(10)]
    assert [r.status_code for r in replies] == [200] * 10
    assert [int(r.headers["x-ratelimit-remaining"]) for r in replies] == list(range(9, -1, -1))
    assert {r.headers["x-ratelimit-limit"] for r in replies} == {"10"}
    assert len({r.headers["x-ratelimit-reset"] for r in replies}) == 1  # one window, Redis's clock
    assert int(replies[0].headers["x-ratelimit-reset"]) % int(WINDOW) == 0

    over = httpx.get(first.url + "/api/v1/models")  # the 11th, on either server, any API path
    assert over.status_code == 429
    assert over.json()["error"]["code"] == "RATE_LIMITED"
    assert over.headers["x-ratelimit-limit"] == "10" and over.headers["x-ratelimit-remaining"] == "0"
    assert 0 < int(over.headers["retry-after"]) <= WINDOW
    assert over.headers["x-ratelimit-reset"] == replies[0].headers["x-ratelimit-reset"]
    openai_shaped = httpx.get(second.url + "/v1/models")
    assert openai_shaped.status_code == 429 and openai_shaped.json()["error"]["type"]
    assert httpx.get(first.url + "/health").status_code == 200  # not an API path: never limited


def test_concurrent_hits_are_counted_once_each(serve_app, redis_url):
    servers = [serve_app(limited(redis_url)), serve_app(limited(redis_url))]
    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(lambda i: httpx.get(servers[i % 2].url + "/v1/models").status_code, range(40)))
    assert codes.count(200) == 10 and codes.count(429) == 30


def test_redis_down_counts_in_each_process_then_redis_again(serve_app, redis_url, redis_server):
    """The documented default (fallback 'local'): fail open to this process's own window,
    with the headers; Redis is asked again RETRY_AFTER_OUTAGE seconds later."""
    first, second = serve_app(limited(redis_url)), serve_app(limited(redis_url))
    for _ in range(3):
        assert httpx.get(first.url + "/v1/models").status_code == 200
    redis_server.stop()
    started = time.monotonic()
    during = [httpx.get(first.url + "/v1/models") for _ in range(10)]
    assert [r.status_code for r in during] == [200] * 10
    assert int(during[-1].headers["x-ratelimit-remaining"]) == 0  # its own 10, counted locally
    assert time.monotonic() - started < 5  # an outage costs no timeout per request
    local_over = httpx.get(first.url + "/v1/models")
    assert local_over.status_code == 429 and "retry-after" in local_over.headers
    assert httpx.get(second.url + "/v1/models").headers["x-ratelimit-remaining"] == "9"  # each process

    redis_server.start()  # empty: a restarted Redis without persistence
    time.sleep(ratelimit_redis.RETRY_AFTER_OUTAGE + 0.2)
    assert httpx.get(first.url + "/v1/models").headers["x-ratelimit-remaining"] == "9"
    assert httpx.get(second.url + "/v1/models").headers["x-ratelimit-remaining"] == "8"  # shared again


def test_redis_down_with_fallback_deny_is_503(serve_app, redis_url, redis_server):
    server = serve_app(limited(redis_url, fallback="deny"))
    assert httpx.get(server.url + "/api/v1/models").status_code == 200
    redis_server.stop()
    refused = httpx.get(server.url + "/api/v1/models")
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "RATE_LIMIT_UNAVAILABLE"
    assert int(refused.headers["retry-after"]) >= 1
    assert httpx.get(server.url + "/health").status_code == 200
    redis_server.start()
    time.sleep(ratelimit_redis.RETRY_AFTER_OUTAGE + 0.2)
    assert httpx.get(server.url + "/api/v1/models").status_code == 200


def test_settings_are_checked_and_the_url_is_not_printed():
    with pytest.raises(ValueError, match="--rate-limit-redis"):
        ServerConfig(rate_limit_redis="http://127.0.0.1:6379")
    with pytest.raises(ValueError, match="--rate-limit-redis-fallback"):
        ServerConfig(rate_limit_redis_fallback="open")
    assert "hunter2" not in repr(ServerConfig(rate_limit_redis="redis://:hunter2@127.0.0.1:6379/0"))
    assert ServerConfig.from_env({"LLAMASERVE_RATE_LIMIT_REDIS": "redis://h:1/0"}).rate_limit_redis == "redis://h:1/0"
