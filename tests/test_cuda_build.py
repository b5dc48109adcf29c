"""A CUDA build on a machine without a GPU (scripts/build_cuda_wheel.sh, installed in a venv):
it imports, `llamaserve serve` starts, says in one line that no CUDA device was found and the
model runs on the CPU, and answers a chat, with --gpu-layers -1 too. Runs only where a CUDA
build is installed; CI and the default install are CPU builds."""
from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from llamaserve.hosting.devices import gpu_builds, gpu_devices
from serverutil import wait_healthy

pytestmark = pytest.mark.skipif("CUDA" not in gpu_builds(),
                                reason="not a CUDA build (scripts/build_cuda_wheel.sh makes one)")


def test_serves_on_the_cpu_and_says_so_once(tmp_path, smollm2_path):
    if gpu_devices():
        pytest.skip("this machine has a GPU: scripts/gpu_check.sh measures the offloaded build")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "llamaserve", "serve", "--model", str(smollm2_path),
                                 "--port", str(port), "--gpu-layers", "-1", "--ctx", "512", "--parallel", "1"],
                                env=os.environ, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, url, log_path, timeout=120)
        reply = httpx.post(url + "/v1/chat/completions", timeout=120, json={
            "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8})
        assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"]
        assert httpx.get(url + "/health").json()["device"]["backend"] == "CPU"
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    said = [line for line in log_path.read_text().splitlines() if "no CUDA device was found" in line]
    assert len(said) == 1 and "models run on the CPU" in said[0] and "--gpu-layers -1" in said[0], said
