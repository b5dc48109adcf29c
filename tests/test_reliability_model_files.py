"""Issue 22, finding 1: a damaged GGUF must never kill or 500 the server. Copies of the default
model with the issue's damaged headers (tests/damaged_gguf.py) sit in a models folder of a real
server: loading each is 422 MODEL_FILE_INVALID naming what llama.cpp said (the signal and the
assert for the one it aborts on), the server lives on and serves, and the listing then shows
each file's error. A file is probed once (the verdict persists), quantizing a damaged file is
refused the same way, and a damaged --model leaves the server up and saying why."""
from __future__ import annotations

import shutil
import time

import httpx
import pytest

from llamaserve.config import ServerConfig
from llamaserve.models import ModelFileError, ModelRegistry
from llamaserve.models.probe import FileProbe
from llamaserve.models.verdicts import VerdictStore
from llamaserve.server.app import create_app
from damaged_gguf import damaged_copies
from serverutil import LiveServer, wait_for

# What llama.cpp says of each (the one it aborts on, and the error line of each it refuses).
SAYS = {
    "experts-over-count": "GGML_ASSERT(n_expert_used_max <= hparams.n_expert) failed",
    "head-count-kv-0": "tensor 'blk.0.attn_k.weight' has wrong shape",
    "head-count-0": "tensor 'blk.0.attn_q.weight' has wrong shape",
    "head-count-7": "invalid n_rot: 64, expected 82",
    "block-count-99": "tensor 'blk.30.attn_norm.weight' not found",
    "embedding-length-1": "invalid n_rot: 64, expected 0",
    "rope-dimensions-4096": "invalid n_rot: 4096, expected 64",
    "tensor-shape-swapped": "tensor 'blk.0.attn_k.weight' has wrong shape",
}


@pytest.fixture(scope="module")
def damaged(smollm2_path, tmp_path_factory):
    return damaged_copies(smollm2_path, tmp_path_factory.mktemp("damaged") / "models")


@pytest.fixture(scope="module")
def server(damaged, smollm2_path, tmp_path_factory):
    folder = next(iter(damaged.values())).parent
    config = ServerConfig(model=str(smollm2_path), models_dir=str(folder), n_ctx=256, n_parallel=1,
                          default_max_tokens=4, quantize_cache=str(tmp_path_factory.mktemp("quantized")))
    with LiveServer(create_app(config)) as live:
        yield live


def load(server: LiveServer, name: str, **body) -> httpx.Response:
    return httpx.post(f"{server.url}/api/v1/models/{name}/load", json=body, timeout=120)


@pytest.mark.parametrize("name", SAYS)
def test_a_damaged_file_is_422_and_the_server_lives(server, name):
    r = load(server, name)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "MODEL_FILE_INVALID"
    assert SAYS[name] in error["details"]
    if name == "experts-over-count":  # the abort, named, from the child that took it
        assert "SIGABRT" in error["message"] + error["details"]
    assert "/" not in error["message"] + error["details"]  # no paths: where files live is not said
    assert httpx.get(server.url + "/health").status_code == 200
    r = httpx.post(server.url + "/api/v1/generate", json={"prompt": "Hi", "max_tokens": 2}, timeout=60)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] >= 1


def test_the_listing_then_shows_why_and_a_second_load_is_refused_at_once(server, damaged):
    for name in damaged:  # every one judged (by the test above, or now)
        load(server, name)
    rows = {row["name"]: row for row in httpx.get(server.url + "/api/v1/models").json()["models"]}
    for name, says in SAYS.items():
        assert says in rows[name]["error"], rows[name]
    started = time.perf_counter()
    r = load(server, "experts-over-count")
    assert r.status_code == 422 and "SIGABRT" in r.json()["error"]["details"]
    assert time.perf_counter() - started < 2  # the verdict, not another probe


def test_quantizing_a_damaged_file_is_refused_before_the_quantizer_opens_it(server, damaged):
    # A copy no probe has seen: llama.cpp's quantizer would abort on its header too.
    fresh = damaged["experts-over-count"].with_name("moe-fresh.gguf")
    shutil.copyfile(damaged["experts-over-count"], fresh)
    try:
        r = load(server, "moe-fresh", quantization="q8_0", allow_requantize=True)
        assert r.status_code == 422, r.text
        assert "SIGABRT" in r.json()["error"]["message"]
        assert httpx.get(server.url + "/health").status_code == 200
    finally:
        fresh.unlink()


def test_a_good_file_is_probed_once_and_the_verdict_persists(smollm2_path, damaged, tmp_path):
    good = tmp_path / "good.gguf"
    shutil.copyfile(smollm2_path, good)
    verdicts = tmp_path / "probes.json"
    probe = FileProbe(VerdictStore(verdicts), timeout=120)
    started = time.perf_counter()
    probe.check(good)
    first = time.perf_counter() - started
    probe.check(good)
    assert probe.runs == 1 and verdicts.is_file()
    again = FileProbe(VerdictStore(verdicts), timeout=120)  # a restarted server
    again.check(good)
    assert again.runs == 0 and again.known(good).ok
    print(f"probe of the default model: {first:.2f}s")
    good.touch()  # a changed file is judged again
    again.check(good)
    assert again.runs == 1
    with pytest.raises(ModelFileError, match="SIGABRT"):
        again.check(damaged["experts-over-count"])
    # `llamaserve models` (a registry) lists what the probes found.
    registry = ModelRegistry(damaged["experts-over-count"].parent, include_default=False, verdicts_file=verdicts)
    row = next(e for e in registry.scan() if e.id == "experts-over-count")
    assert not row.ok and "SIGABRT" in row.error


def test_a_damaged_model_at_start_leaves_the_server_up_and_saying_why(damaged):
    config = ServerConfig(model=str(damaged["experts-over-count"]), n_ctx=256, n_parallel=1)
    with LiveServer(create_app(config)).start(ready=False) as live:
        wait_for(lambda: httpx.get(live.url + "/health").json()["status"] == "unhealthy", timeout=60)
        body = httpx.get(live.url + "/health").json()
        assert "SIGABRT" in body["error"] and "GGML_ASSERT" in body["error"]
        r = httpx.post(live.url + "/api/v1/generate", json={"prompt": "Hi"})
        assert r.status_code == 503
