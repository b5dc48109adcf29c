"""SIGTERM ends a real `llamaserve serve` within its drain time (issue 22, finding 2: a grammar
held the engine thread, and SIGTERM could not stop the server), while a grammar request
streams on past the drain time and a hostile grammar has just been refused."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from serverutil import sse_events

DRAIN = 2.0  # seconds: --drain-timeout
ISSUE_GRAMMAR = "root ::= " + " ".join(["[a-z]?"] * 1900)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sigterm_ends_the_server_within_its_drain_time(smollm2_path, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "llamaserve", "serve", "--model", str(smollm2_path), "--port", str(port),
             "--parallel", "2", "--ctx", "4096", "--drain-timeout", str(DRAIN), "--log-level", "warning"],
            stdout=subprocess.DEVNULL, stderr=out)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, log.read_text()[-2000:]
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)

        events: list[dict] = []

        def stream() -> None:  # far longer than the drain time
            body = {"prompt": "Count:", "grammar": 'root ::= ([0-9] " ")+', "max_tokens": 3000,
                    "ignore_eos": True, "stream": True}
            try:
                with httpx.stream("POST", url + "/api/v1/generate", json=body, timeout=60) as r:
                    events.extend(sse_events(r.iter_lines()))
            except httpx.TransportError:
                pass  # the server cut it at the end of the drain

        streaming = threading.Thread(target=stream)
        streaming.start()
        while not events:
            time.sleep(0.05)
        refused = httpx.post(url + "/api/v1/generate", json={"prompt": "Hi", "grammar": ISSUE_GRAMMAR}, timeout=30)
        assert refused.status_code == 400, refused.text

        sent = time.monotonic()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=DRAIN + 15)
        took = time.monotonic() - sent
        streaming.join(timeout=10)
        assert not streaming.is_alive()
        assert took < DRAIN + 10, f"SIGTERM took {took:.1f} s"
        # uvicorn re-raises the signal once it has shut down, so the parent sees SIGTERM.
        assert server.returncode in (0, -signal.SIGTERM), log.read_text()[-2000:]
    finally:
        if server.poll() is None:
            os.kill(server.pid, signal.SIGKILL)
            server.wait()


def start_serving(smollm2_path, tmp_path, drain: float) -> tuple[subprocess.Popen, str, object]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "llamaserve", "serve", "--model", str(smollm2_path), "--port", str(port),
         "--parallel", "1", "--ctx", "4096", "--drain-timeout", str(drain)],
        stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 60
    while True:
        assert server.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return server, url, log
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.1)


# SmolLM2's end tokens banned, so the reply runs far past the drain time.
ENDLESS = {"messages": [{"role": "user", "content": "Count to a million."}], "max_tokens": 3000,
           "stream": True, "logit_bias": {"0": -100, "1": -100, "2": -100}}


@pytest.mark.parametrize("interrupts, drain", [(1, 1.0), (2, 60.0)], ids=["drain-over", "second-ctrl-c"])
def test_ctrl_c_ends_an_open_stream_with_its_error_event_and_done(smollm2_path, tmp_path, interrupts, drain):
    """Past the drain (or at a second Ctrl-C) a stream still running ends with the OpenAI
    error event and [DONE], not cut off; the server exits without a traceback."""
    server, url, log = start_serving(smollm2_path, tmp_path, drain)
    lines: list[str] = []
    try:
        def stream() -> None:
            with httpx.stream("POST", url + "/v1/chat/completions", json=ENDLESS, timeout=60) as r:
                lines.extend(line for line in r.iter_lines() if line)

        reader = threading.Thread(target=stream)
        reader.start()
        while len(lines) < 3:
            time.sleep(0.05)
        for _ in range(interrupts):
            server.send_signal(signal.SIGINT)
            time.sleep(0.3)
        server.wait(timeout=drain + 20)
        reader.join(timeout=10)
        assert not reader.is_alive()
        assert lines[-1] == "data: [DONE]"
        error = json.loads(lines[-2].removeprefix("data: "))["error"]
        assert "shutting down" in error["message"]
        assert server.returncode == 0
        text = (tmp_path / "serve.log").read_text()
        assert "Traceback" not in text and "CancelledError" not in text, text[-3000:]
    finally:
        log.close()
        if server.poll() is None:
            os.kill(server.pid, signal.SIGKILL)
            server.wait()
