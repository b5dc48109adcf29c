"""Where models run: the build's compute backends and devices, the one line a server logs
about them, and each model's bytes per device on /health and /metrics (a GPU user sees
that offload happened; here, a CPU build, everything is on the CPU)."""
from __future__ import annotations

import logging

import httpx

from llamaserve.config import ServerConfig
from llamaserve.hosting.devices import device_notice, gpu_builds, placement
from llamaserve.native import compute_backends
from llamaserve.server.app import create_app
from serverutil import LiveServer


def test_the_build_names_its_backends_and_devices():
    backends = {b["name"]: b for b in compute_backends()}
    [cpu] = backends["CPU"]["devices"]
    assert cpu["type"] == "cpu" and cpu["memory_total"] > 0


def test_health_and_metrics_say_where_the_model_is(default_server):
    device = httpx.get(default_server.url + "/health").json()["device"]
    assert device["backend"] == "CPU"
    [cpu] = device["devices"]
    assert cpu["device"] == "CPU" and cpu["weights_bytes"] > 50_000_000 and cpu["kv_bytes"] > 0
    metrics = httpx.get(default_server.url + "/metrics").text
    line = next(x for x in metrics.splitlines() if x.startswith("llamaserve:model_memory_bytes")
                and 'kind="weights"' in x)
    assert 'device="CPU"' in line and float(line.split()[-1]) == cpu["weights_bytes"]


def test_placement_of_an_offloaded_model_reads_llama_cpps_buffers():
    """The buffers a CUDA build reports for a fully offloaded model: weights and KV on the GPU,
    the token embeddings and the output staging in host memory."""
    buffers = [{"buffer": "CUDA0", "model": 900, "context": 300, "compute": 50},
               {"buffer": "CPU_Mapped", "model": 100, "context": 0, "compute": 0},
               {"buffer": "CUDA_Host", "model": 0, "context": 0, "compute": 8}]
    where = placement(buffers)
    assert where["backend"] == "CUDA0"
    assert where["devices"] == [{"device": "CPU", "weights_bytes": 100, "kv_bytes": 0, "compute_bytes": 8},
                                {"device": "CUDA0", "weights_bytes": 900, "kv_bytes": 300, "compute_bytes": 50}]


def test_asking_for_gpu_layers_on_a_cpu_build_is_one_clear_line(smollm2_path, caplog):
    assert gpu_builds() == []  # this test machine's build: CPU (a CUDA build runs test_cuda_build.py)
    assert device_notice(0) is None
    with caplog.at_level(logging.INFO, logger="llamaserve"):
        config = ServerConfig(model=str(smollm2_path), n_gpu_layers=-1, n_parallel=1, n_ctx=256)
        with LiveServer(create_app(config)) as server:
            r = httpx.post(server.url + "/v1/completions", json={"prompt": "Hi", "max_tokens": 2})
            assert r.status_code == 200
    said = [r.getMessage() for r in caplog.records if "--gpu-layers" in r.getMessage()]
    assert said == ["--gpu-layers -1: this build has no GPU backend, so models run on the CPU "
                    "(build the CUDA wheel: scripts/build_cuda_wheel.sh)"]
