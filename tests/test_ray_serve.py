"""llamaserve as a Ray Serve application: a real local Ray (one cluster for every test here),
two replicas of the default model behind the gateway, real HTTP clients (httpx, the OpenAI
SDK), a real redis-server for the shared rate limit. Which replica served a response is in
its X-Llamaserve-Replica header.

The tests run in file order: the rate-limited application (started by `llamaserve serve
--ray`) replaces the first one last."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from llamaserve.config import ServerConfig
from redisutil import RedisServer, free_port, redis_binary
from serverutil import sse_events, wait_for

with warnings.catch_warnings():  # Ray's own imports warn (pydantic deprecations)
    warnings.simplefilter("ignore")
    ray = pytest.importorskip("ray", reason="Ray Serve is the optional extra llamaserve[ray]")
    from ray import serve
    from ray.serve._private.common import DeploymentID, ReplicaID

    from llamaserve.ray import build_application

pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")]

REPLICA = "x-llamaserve-replica"
# Small and quick: one thread and one CPU per replica (two cores), a short context.
BASE = dict(replicas=2, n_threads=1, replica_cpus=1, n_ctx=1024, n_parallel=4, default_max_tokens=8)
LONG_PREFIX = ("You are a meticulous assistant for a company that sells garden tools. "
               "Answer briefly, name the tool, its price and where it is kept in the shop. ") * 12


@pytest.fixture(scope="module")
def cluster():
    """One local Ray instance and Serve's HTTP proxy on a free loopback port."""
    started = time.monotonic()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    print(f"\nRay and Serve started in {time.monotonic() - started:.1f}s")
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()
    ray.shutdown()


def deploy(name: str, config: ServerConfig) -> float:
    started = time.monotonic()
    serve.run(build_application(config), name=name, route_prefix="/")
    return time.monotonic() - started


@pytest.fixture(scope="module")
def url(cluster):
    seconds = deploy("main", ServerConfig(**BASE))
    print(f"two replicas ready in {seconds:.1f}s")
    return cluster


def replica_ids(app: str = "main") -> set[str]:
    """The engine replicas Serve runs, healthy, once the deployment is (else empty)."""
    status = serve.status().applications[app].deployments["LlamaServer"]
    if status.status != "HEALTHY":
        return set()
    prefix = f"SERVE_REPLICA::{app}#LlamaServer#"
    return {a["name"][len(prefix):] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith(prefix)}


def replica_actor(unique_id: str, app: str = "main"):  # noqa: ANN201 - an actor handle
    name = ReplicaID(unique_id=unique_id, deployment_id=DeploymentID(name="LlamaServer", app_name=app))
    return ray.get_actor(name.to_full_id_str(), namespace="serve")


def chat(url: str, content: str, stream: bool, **extra) -> tuple[int, str, str]:
    """(status, replica, text) of one /v1/chat/completions request."""
    body = {"messages": [{"role": "user", "content": content}], "max_tokens": 8, "stream": stream, **extra}
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=120) as reply:
        if not stream:
            reply.read()
            return reply.status_code, reply.headers[REPLICA], reply.json()["choices"][0]["message"]["content"]
        lines = list(reply.iter_lines())
        assert lines[-2:] == ["data: [DONE]", ""] or lines[-1] == "data: [DONE]"
        text = "".join(e["choices"][0]["delta"].get("content") or "" for e in sse_events(iter(lines[:-2]))
                       if e.get("choices"))
        return reply.status_code, reply.headers[REPLICA], text


def test_sixteen_concurrent_requests_streamed_and_not_use_both_replicas(url):
    import openai

    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)

    def one(i: int) -> tuple[int, str]:
        if i % 2:  # the OpenAI SDK, not streamed
            raw = client.chat.completions.with_raw_response.create(
                model="default", messages=[{"role": "user", "content": f"Say hello number {i}"}], max_tokens=8)
            assert raw.parse().choices[0].message.content is not None
            return raw.status_code, raw.headers[REPLICA]
        status, replica, text = chat(url, f"Name a colour, number {i}", stream=True)
        assert text
        return status, replica

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(16)))
    client.close()
    assert [status for status, _ in results] == [200] * 16
    served = {replica for _, replica in results}
    assert len(served) == 2, served


def shared_prefix_requests(url: str) -> list[httpx.Response]:
    replies = []
    for question in ["a rake", "a spade", "a hoe", "shears", "a trowel"]:
        reply = httpx.post(url + "/api/v1/generate", timeout=120, json={
            "prompt": LONG_PREFIX + f"Question: where is {question}?", "max_tokens": 4,
            "temperature": 0, "cache_prompt": True})
        assert reply.status_code == 200, reply.text
        replies.append(reply)
    return replies


def test_requests_sharing_a_long_prefix_land_on_one_replica(url):
    served = [reply.headers[REPLICA] for reply in shared_prefix_requests(url)]
    assert len(set(served)) == 1, served

    # A conversation: each turn repeats the last one's messages, so it finds the same replica.
    messages = [{"role": "system", "content": LONG_PREFIX}]
    turns = []
    for question in ["Where is the rake?", "And the spade?", "What does it cost?"]:
        messages.append({"role": "user", "content": question})
        reply = httpx.post(url + "/v1/chat/completions", timeout=120,
                           json={"messages": messages, "max_tokens": 6, "cache_prompt": True})
        assert reply.status_code == 200, reply.text
        turns.append(reply.headers[REPLICA])
        messages.append(reply.json()["choices"][0]["message"])
    assert len(set(turns)) == 1, turns


def test_requests_sharing_a_long_prefix_report_cached_tokens(url):
    """The replica a shared prefix lands on reuses it (cache_prompt: true, sent so that this
    holds whatever the default): the native API's usage counts the reused tokens."""
    usages = [reply.json()["usage"] for reply in shared_prefix_requests(url)]
    prompt_tokens = usages[-1]["prompt_tokens"]
    cached = [u["prompt_tokens_details"]["cached_tokens"] for u in usages]
    assert all(c >= prompt_tokens // 2 for c in cached[1:]), (cached, prompt_tokens)


def busy_slots_of(url: str, replica: str, timeout: float = 10) -> int:
    """Busy slots of one replica: /health through the gateway until that replica answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = httpx.get(url + "/health", timeout=10)
        if reply.headers[REPLICA] == replica:
            return reply.json()["slots"]["busy"]
    raise AssertionError(f"replica {replica} never answered /health")


def long_stream(url: str):
    body = {"prompt": "Count the garden tools one by one:", "max_tokens": 400, "ignore_eos": True}
    return httpx.stream("POST", url + "/api/v1/generate/stream", json=body, timeout=120)


def test_a_client_that_leaves_frees_its_engine_slot(url):
    with long_stream(url) as reply:
        replica = reply.headers[REPLICA]
        events = sse_events(reply.iter_lines())
        assert not next(events)["finished"] and not next(events)["finished"]
    # 400 tokens take several seconds; the slot is free long before, once the cancel arrived.
    started = time.monotonic()
    wait_for(lambda: busy_slots_of(url, replica) == 0, timeout=5, interval=0.1)
    assert time.monotonic() - started < 5


def test_a_killed_replica_fails_its_stream_cleanly_and_is_replaced(url):
    before = replica_ids()
    assert len(before) == 2
    with long_stream(url) as reply:
        victim = reply.headers[REPLICA]
        events = sse_events(reply.iter_lines())
        assert not next(events)["finished"]
        ray.kill(replica_actor(victim), no_restart=True)
        last = list(events)[-1]  # the stream ends, with the native API's error event
    assert last["finished"] and last["finish_reason"] == "error"
    assert last["error"]["code"] == "REPLICA_FAILED"

    # New requests succeed at once (the survivor, or a retry on it) ...
    assert all(chat(url, "Hi", stream=False)[0] == 200 for _ in range(3))
    # ... and Serve starts a replacement; both serve again.
    wait_for(lambda: len(replica_ids()) == 2 and victim not in replica_ids(), timeout=60, interval=0.5)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: chat(url, f"Tell me about flower {i}", stream=bool(i % 2)), range(8)))
    assert {status for status, _, _ in results} == {200}
    assert victim not in {replica for _, replica, _ in results}


@pytest.fixture
def redis_server(tmp_path):
    if redis_binary() is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


def test_serve_ray_with_a_redis_rate_limit_across_two_replicas(cluster, redis_server, tmp_path):
    """`llamaserve serve --ray` (for users who never wrote Ray) joins this cluster (RAY_ADDRESS),
    whose proxy already listens: a limit of 10 counted in Redis lets exactly 10 requests pass
    over both replicas; with Redis stopped, each replica counts on its own (the documented
    fallback); SIGTERM takes the application down."""
    serve.delete("main")  # two more replicas would not fit in the two CPUs
    window = 3600
    if window - time.time() % window < 60:  # no window may end mid-test
        time.sleep(window - time.time() % window + 0.5)
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    command = [sys.executable, "-m", "llamaserve", "serve", "--ray", "--replicas", "2", "--threads", "1",
               "--ctx", "512", "--parallel", "2", "--default-max-tokens", "4", "--rate-limit", "10",
               "--rate-limit-window", str(window), "--rate-limit-redis", redis_server.url]
    log = tmp_path / "serve.log"
    with log.open("w") as stderr:
        server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        ready = server.stdout.readline()
        assert "2 replica(s) ready" in ready, log.read_text()[-3000:]
        with ThreadPoolExecutor(5) as pool:  # concurrent, so the router spreads them
            replies = list(pool.map(lambda _: httpx.get(cluster + "/v1/models", timeout=30), range(10)))
        assert [r.status_code for r in replies] == [200] * 10
        assert sorted(int(r.headers["x-ratelimit-remaining"]) for r in replies) == list(range(10))
        assert len({r.headers[REPLICA] for r in replies}) == 2  # both replicas counted, once each

        over = httpx.get(cluster + "/v1/models", timeout=30)
        assert over.status_code == 429 and over.json()["error"]["code"] == "rate_limit_exceeded"
        assert over.headers["x-ratelimit-limit"] == "10" and over.headers["x-ratelimit-remaining"] == "0"
        assert int(over.headers["retry-after"]) >= 1 and over.headers["x-ratelimit-reset"]

        redis_server.stop()
        during = httpx.post(cluster + "/v1/completions", json={"prompt": "Hello"}, timeout=60)
        assert during.status_code == 200 and during.json()["usage"]["completion_tokens"] <= 4
        assert during.headers["x-ratelimit-limit"] == "10" and during.headers["x-ratelimit-remaining"] == "9"

        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
        assert "llamaserve" not in serve.status().applications
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        server.stdout.close()


def test_serve_run_arguments_become_a_server_config():
    from llamaserve.ray.settings import config_from_args, server_options

    config = config_from_args({"model": "m.gguf", "replicas": 2, "threads": "1", "max-replicas": 4,
                               "prefix_affinity": "false", "api-keys": ["a", "b"], "ctx": None}, environ={})
    assert (config.model, config.replicas, config.n_threads, config.max_replicas) == ("m.gguf", 2, 1, 4)
    assert config.api_keys == ("a", "b") and not config.prefix_affinity
    options = server_options(config)
    assert options["autoscaling_config"]["min_replicas"] == 2
    assert options["autoscaling_config"]["target_ongoing_requests"] == config.n_parallel
    assert options["ray_actor_options"] == {"num_cpus": 1.0, "num_gpus": 0.0}
    assert "request_router_config" not in options
    with pytest.raises(ValueError, match="unknown argument"):
        config_from_args({"modle": "x"}, environ={})
    assert json.dumps(server_options(ServerConfig(replicas=3))["num_replicas"]) == "3"


def test_the_deploy_files_are_valid_serve_configs_that_build():
    """deploy/serve-config.yaml (serve deploy) and the RayService's serveConfigV2 pass Serve's
    own schema, and their args build the application."""
    from pathlib import Path

    import yaml
    from ray.serve.schema import ServeDeploySchema

    import llamaserve.ray

    root = Path(__file__).resolve().parent.parent / "deploy"
    service = yaml.safe_load((root / "rayservice.yaml").read_text())
    assert service["kind"] == "RayService" and service["spec"]["rayClusterConfig"]["rayVersion"] == ray.__version__
    for document in (yaml.safe_load((root / "serve-config.yaml").read_text()),
                     yaml.safe_load(service["spec"]["serveConfigV2"])):
        application = ServeDeploySchema.model_validate(document).applications[0]
        assert application.import_path == "llamaserve.ray:app"
        assert isinstance(llamaserve.ray.app(application.args), serve.Application)


def test_prefix_keys_follow_a_conversation_and_nothing_else():
    from llamaserve.ray.affinity import MAX_KEYS, AffinityMap, prefix_keys
    from llamaserve.server.prompt_pieces import BLOCK_CHARS

    def body(**fields) -> bytes:
        return json.dumps(fields).encode()

    turn1 = [{"role": "system", "content": LONG_PREFIX}, {"role": "user", "content": "Where is the rake?"}]
    turn2 = [*turn1, {"role": "assistant", "content": "On the left."}, {"role": "user", "content": "And the hoe?"}]
    first = prefix_keys("/v1/chat/completions", body(messages=turn1))
    second = prefix_keys("/v1/chat/completions", body(messages=turn2))
    assert len(first) == 2 and second[:2] == first and len(second) == 4  # a key per message
    other_user = [turn1[0], {"role": "user", "content": "Do you sell hoses?"}]
    assert prefix_keys("/v1/chat/completions", body(messages=other_user))[0] == first[0]  # the system prompt
    assert prefix_keys("/v1/chat/completions", body(messages=turn1, model="other"))[0] != first[0]
    assert prefix_keys("/api/v1/generate", body(prompt="short")) == []
    plain = prefix_keys("/api/v1/generate", body(prompt=LONG_PREFIX))
    assert len(plain) == -(-len(LONG_PREFIX) // BLOCK_CHARS) and plain[0] != first[0]
    assert prefix_keys("/api/v1/generate/stream", body(prompt=LONG_PREFIX + "more"))[:-1] == plain[:-1]
    assert prefix_keys("/v1/models", b"") == [] and prefix_keys("/v1/completions", b"not json") == []
    assert len(prefix_keys("/v1/completions", body(prompt="x" * 100_000))) == MAX_KEYS  # bounded
    ollama_keys = prefix_keys("/api/chat", body(messages=turn2))  # Ollama's chat: a key per message too
    assert len(ollama_keys) == 4 and prefix_keys("/api/chat", body(messages=turn1)) == ollama_keys[:2]

    routes = AffinityMap(capacity=3)
    routes.remember(["a", "b"], "r1")
    routes.remember(["a", "c"], "r2")
    assert routes.lookup(["a", "b"], {"r1", "r2"}) == ["r1"]  # the longest known prefix
    assert routes.lookup(["a", "x"], {"r1", "r2"}) == ["r1", "r2"]  # both hold the shared one
    assert routes.lookup(["a", "b"], {"r2"}) == ["r2"]  # r1 is gone
    routes.remember(["d"], "r1")
    assert len(routes) == 3
    routes.forget("r1")
    assert routes.lookup(["d"], {"r1", "r2"}) == [] and routes.lookup(["a"], {"r1", "r2"}) == ["r2"]


def test_the_core_package_never_imports_ray():
    code = ("import sys, llamaserve, llamaserve.cli, llamaserve.server.app, llamaserve.server.serve; "
            "llamaserve.cli.build_parser(); print(sorted(m for m in sys.modules if m.split('.')[0] == 'ray'))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"
    help_text = subprocess.run([sys.executable, "-m", "llamaserve", "serve", "--help"], capture_output=True,
                               text=True, check=True).stdout
    for flag in ("--ray", "--replicas", "--max-replicas", "--replica-gpus", "--rate-limit-redis"):
        assert flag in help_text
