"""Server settings (defaults, LLAMASERVE_* variables, options) and `llamaserve serve` as a
real process: it serves the default model, and SIGTERM drains in-flight requests."""
from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys

import httpx
import pytest

from llamaserve.cli import build_parser
from llamaserve.config import ServerConfig, env_name, from_arguments
from serverutil import sse_events, wait_healthy


def test_defaults_are_local_and_open():
    config = ServerConfig()
    assert (config.host, config.port) == ("127.0.0.1", 8000)
    assert config.model is None  # the default model
    assert not config.auth_enabled and config.rate_limit == 0 and config.metrics_auth == "key"


def test_environment_then_options():
    env = {"LLAMASERVE_PORT": "9001", "LLAMASERVE_API_KEYS": "k1, k2", "LLAMASERVE_PARALLEL": "2",
           "LLAMASERVE_METRICS_AUTH": "admin", "LLAMASERVE_RATE_LIMIT": "100",
           "LLAMASERVE_CORS_ORIGINS": "http://a.example,http://b.example", "LLAMASERVE_CTX": "1024"}
    config = ServerConfig.from_env(env, port=9002)
    assert config.port == 9002  # the option wins
    assert config.api_keys == ("k1", "k2") and config.auth_enabled
    assert config.n_parallel == 2 and config.n_ctx == 1024 and config.rate_limit == 100
    assert config.metrics_auth == "admin"
    assert config.cors_origins == ("http://a.example", "http://b.example")
    assert "k1" not in repr(config)


def test_every_setting_has_an_option_and_a_variable():
    parser = build_parser()
    for field in dataclasses.fields(ServerConfig):
        assert env_name(field.name).startswith("LLAMASERVE_")
    args = parser.parse_args(["serve", "--port", "7000", "--parallel", "3", "--api-keys", "x",
                              "--metrics-auth", "open", "--max-body-bytes", "1000"])
    config = from_arguments(args, {"LLAMASERVE_PORT": "1", "LLAMASERVE_METRICS_AUTH": "admin",
                                   "LLAMASERVE_MODELS_DIR": "/srv/models"})
    assert config.port == 7000 and config.n_parallel == 3 and config.api_keys == ("x",)
    assert config.metrics_auth == "open" and config.max_body_bytes == 1000
    assert config.models_dir == "/srv/models"
    optional = from_arguments(parser.parse_args(["serve", "--seed", "42", "--temp", "0.5"]), {})
    assert optional.request_defaults == {"max_tokens": 256, "seed": 42, "temperature": 0.5}


@pytest.mark.parametrize("env, field", [
    ({"LLAMASERVE_PORT": "eighty"}, "LLAMASERVE_PORT"),
    ({"LLAMASERVE_PORT": "70000"}, "--port"),
    ({"LLAMASERVE_KV_UNIFIED": "maybe"}, "LLAMASERVE_KV_UNIFIED"),
    ({"LLAMASERVE_METRICS_AUTH": "maybe"}, "--metrics-auth"),
    ({"LLAMASERVE_LOG_LEVEL": "loud"}, "--log-level"),
    ({"LLAMASERVE_PARALLEL": "0"}, "--parallel"),
    ({"LLAMASERVE_CACHE_DISK": "0"}, "--cache-disk"),
    ({"LLAMASERVE_CACHE_DISK": "lots"}, "--cache-disk"),
])
def test_bad_settings_name_themselves(env, field):
    with pytest.raises(ValueError, match=f"^{field}"):
        ServerConfig.from_env(env)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_bad_setting_stops_serve_before_it_starts():
    done = subprocess.run([sys.executable, "-m", "llamaserve", "serve", "--jwt-secret", "short"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--jwt-secret" in done.stderr


def test_serve_answers_curl_and_drains_on_sigterm(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "LLAMASERVE_PORT": str(port), "LLAMASERVE_CTX": "512",
           "LLAMASERVE_PARALLEL": "2", "LLAMASERVE_DEFAULT_MAX_TOKENS": "8"}
    with open(tmp_path / "serve.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "llamaserve", "serve", "--log-level", "warning"],
                                env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_healthy(proc, url, tmp_path / "serve.log")
        # The README's curl: `curl localhost:8000/api/v1/generate -d '{"prompt":"Hi"}'`
        # (curl -d sends a form content type).
        r = httpx.post(url + "/api/v1/generate", content=b'{"prompt":"Hi"}',
                       headers={"content-type": "application/x-www-form-urlencoded"}, timeout=60)
        assert r.status_code == 200 and r.json()["text"]
        assert r.json()["usage"]["completion_tokens"] <= 8  # LLAMASERVE_DEFAULT_MAX_TOKENS

        with httpx.stream("POST", url + "/api/v1/generate/stream", timeout=60,
                          json={"prompt": "Tell a story", "max_tokens": 24, "ignore_eos": True}) as running:
            events = sse_events(running.iter_lines())
            assert next(events)["finished"] is False
            proc.send_signal(signal.SIGTERM)
            rest = list(events)  # the in-flight request runs to its end
        assert rest[-1]["finished"] is True
        assert rest[-1]["finish_reason"] == "length" and rest[-1]["usage"]["completion_tokens"] == 24
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
        with pytest.raises(httpx.ConnectError):
            httpx.get(url + "/health")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# -- the first minute: argument errors, --help, and a serve that cannot work ends at once --

def test_an_argument_error_is_one_line_naming_the_flag(capsys):
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(["serve", "--port", "abc"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1
    assert "--port" in err and "'abc'" in err and "usage" not in err


def test_help_is_grouped_by_section_with_defaults():
    from llamaserve.cli_options import SECTIONS

    listed = [name for names in SECTIONS.values() for name in names]
    assert sorted(listed) == sorted(f.name for f in dataclasses.fields(ServerConfig))  # each once
    text = build_parser()._subparsers._group_actions[0].choices["serve"].format_help()
    assert text.index("\nmodel:") < text.index("\nengine:") < text.index("\nauth:")
    for default in ("(default: 127.0.0.1)", "(default: 8000)", "(default: 4)", "(default: 4096)"):
        assert default in " ".join(text.split())


def serve_fails(capsys, *argv: str) -> str:
    from llamaserve.cli import main

    assert main(["serve", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


def test_serve_ends_at_once_when_its_model_or_folder_is_not_there(capsys, tmp_path):
    err = serve_fails(capsys, "--model", "no/such/model.gguf", "--models-dir", str(tmp_path))
    assert "--model: no/such/model.gguf: no such file" in err and str(tmp_path) in err
    (tmp_path / "tiny.gguf").write_bytes(b"")  # listed by name in the error
    err = serve_fails(capsys, "--model", "qwen-7b-chat", "--models-dir", str(tmp_path))
    assert "no model named 'qwen-7b-chat'" in err and str(tmp_path) in err and "tiny" in err
    err = serve_fails(capsys, "--models-dir", str(tmp_path / "nonexistent"))
    assert "--models-dir:" in err and "is not a folder" in err
    (tmp_path / "a-file").write_bytes(b"")
    err = serve_fails(capsys, "--cache-dir", str(tmp_path / "a-file"))
    assert "--cache-dir:" in err and "cannot be a folder" in err


def test_serve_names_a_bad_address_and_a_busy_port_before_loading(capsys):
    assert "--host: '300.1.1.1'" in serve_fails(capsys, "--host", "300.1.1.1")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "llamaserve", "serve", "--port", str(port)],
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and f"--port: 127.0.0.1:{port} is already in use" in done.stderr
    assert "loaded" not in done.stderr  # the port is checked before the model loads


def test_several_listen_addresses_share_one_port():
    from llamaserve.server.listen import bind

    if not socket.has_ipv6:
        pytest.skip("this machine has no IPv6 to listen on ::1")
    sockets = bind("127.0.0.1,::1", 0)
    try:
        assert [s.family for s in sockets] == [socket.AF_INET, socket.AF_INET6]
        assert sockets[0].getsockname()[1] == sockets[1].getsockname()[1]
    finally:
        for s in sockets:
            s.close()
