"""Issue 22, finding 8: limits at the door. `llamaserve serve` (a real process, the default
model) with one-second header and body timeouts and a cap of 24 connections, probed with raw
loopback sockets as a slowloris client would: incomplete request lines, headers dribbled a
byte at a time, a body shorter than its Content-Length, oversized headers, more connections
than the cap. Each is answered (408, 431, 503 in its API's error shape) or closed in time,
while /health answers at once; whole requests, slow-but-in-time ones and long streams are
served as before."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from contextlib import closing

import httpx
import pytest

from serverutil import sse_events, wait_for

HEADER_TIMEOUT = BODY_TIMEOUT = 1.0
MAX_CONNECTIONS = 24
SLACK = 1.5  # seconds beyond a timeout that a busy 2-core machine may take to act on it


def free_port() -> int:
    with closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def url(smollm2_path, tmp_path_factory):
    port = free_port()
    log = (tmp_path_factory.mktemp("door") / "serve.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "llamaserve", "serve", "--port", str(port), "--model", str(smollm2_path),
         "--parallel", "1", "--ctx", "512", "--header-timeout", str(HEADER_TIMEOUT),
         "--body-timeout", str(BODY_TIMEOUT), "--max-connections", str(MAX_CONNECTIONS),
         "--log-level", "warning"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert process.poll() is None, "the server exited"
        try:
            return httpx.get(url + "/health").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(healthy, timeout=60, interval=0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def connect(url: str) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])))
    s.settimeout(HEADER_TIMEOUT + BODY_TIMEOUT + 2 * SLACK)
    return s


def answer(s: socket.socket) -> tuple[bytes, float]:
    """What the server sends before it closes, and when it closed (monotonic seconds)."""
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return data, time.monotonic()


def status_and_body(data: bytes) -> tuple[int, dict]:
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def health_is_quick(url: str) -> None:
    started = time.monotonic()
    assert httpx.get(url + "/health").status_code == 200
    assert time.monotonic() - started < 0.5


def test_incomplete_request_lines_are_closed_in_time(url):
    started = time.monotonic()
    sockets = [connect(url) for _ in range(MAX_CONNECTIONS - 4)]
    for s in sockets:
        s.sendall(b"GET /heal")
    health_is_quick(url)  # the slow ones hold no one up
    for s in sockets:
        data, closed = answer(s)
        s.close()
        assert closed - started < HEADER_TIMEOUT + SLACK
        status, body = status_and_body(data)
        assert status == 408 and body["error"]["code"] == "REQUEST_TIMEOUT"


def test_headers_dribbled_byte_by_byte_are_cut_at_the_deadline(url):
    s = connect(url)
    started = time.monotonic()
    request = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 100
    try:
        for byte in request:  # every byte in time for any per-read timeout: only a deadline helps
            s.sendall(bytes([byte]))
            time.sleep(0.05)
    except OSError:
        pass  # closed on us, as it should be
    data, closed = answer(s)
    s.close()
    assert closed - started < HEADER_TIMEOUT + SLACK
    assert data.startswith(b"HTTP/1.1 408")


@pytest.mark.parametrize("path, shape", [("/api/v1/generate", "native"), ("/v1/completions", "openai"),
                                         ("/v1/messages", "anthropic")])
def test_a_body_shorter_than_its_length_is_408_in_the_api_shape(url, path, shape):
    s = connect(url)
    started = time.monotonic()
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              f"Content-Length: 100\r\n\r\n".encode() + b'{"prompt": ')
    data, closed = answer(s)
    s.close()
    assert closed - started < BODY_TIMEOUT + SLACK
    status, body = status_and_body(data)
    assert status == 408
    if shape == "native":
        assert body["error"]["code"] == "REQUEST_TIMEOUT"
    elif shape == "openai":
        assert body["error"]["code"] == "request_timeout" and "message" in body["error"]
    else:
        assert body["type"] == "error" and "message" in body["error"]
    health_is_quick(url)


def test_oversized_headers_are_431(url):
    s = connect(url)
    try:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 100_000 + b"\r\n")
    except OSError:
        pass  # refused mid-send
    data, _ = answer(s)
    s.close()
    assert data.startswith(b"HTTP/1.1 431")


def test_connections_beyond_the_cap_are_503_at_once(url):
    held = [connect(url) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.2)  # all accepted
        extra = connect(url)
        started = time.monotonic()
        data, closed = answer(extra)
        extra.close()
        assert closed - started < 1.0
        status, body = status_and_body(data)
        assert status == 503 and body["error"]["code"] == "OVERLOADED"
    finally:
        for s in held:
            s.close()
    wait_for(lambda: httpx.get(url + "/health").status_code == 200, timeout=5)


def test_whole_requests_slow_but_in_time_and_long_streams_are_served(url):
    s = connect(url)
    for piece in (b"GET /health HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n"):  # 0.6 s in all: in time
        s.sendall(piece)
        time.sleep(0.3)
    data = s.recv(65536)
    s.close()
    assert data.startswith(b"HTTP/1.1 200")
    with httpx.Client(base_url=url, timeout=60) as client:  # keep-alive: several on one connection
        for _ in range(3):
            assert client.get("/health").status_code == 200
            time.sleep(0.4)
        with client.stream("POST", "/api/v1/generate/stream",
                           json={"prompt": "Once upon a time", "max_tokens": 64, "ignore_eos": True}) as r:
            lines = r.iter_lines()
            first = next(sse_events(lines))
            time.sleep(HEADER_TIMEOUT + BODY_TIMEOUT + 0.5)  # a slow reader, past every door timeout
            events = [first, *sse_events(lines)]
        assert events[-1]["finish_reason"] == "length" and events[-1]["usage"]["completion_tokens"] == 64


def test_a_big_body_sent_with_its_head_is_no_oversized_head(url):
    body = b'{"content": "' + b"hello " * 30_000 + b'"}'  # 180 KB, in the same write as the head
    s = connect(url)
    s.sendall(b"POST /tokenize HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
              b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    data, _ = answer(s)
    s.close()
    assert data.startswith(b"HTTP/1.1 200")


def test_header_names_are_written_capitalized(url):
    # Clients that read headers through a plain dict look them up as llama-server writes them.
    response = httpx.get(url + "/health", headers={"Origin": "http://localhost:3000"})
    names = [name for name, _ in response.headers.raw]
    assert b"Content-Type" in names and b"Access-Control-Allow-Origin" in names
