"""llama-server's /tools and /cors-proxy over real uvicorn: MCP servers as real stdio children
(tests/mcp_tool_server.py, on the MCP SDK), the built-in tools on files under tmp_path, the
proxy against a local http.server; off by default, behind API keys when auth is on, bad
requests as 4xx in llama-server's error shape, and a `serve` that stops at once mid-call."""
from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from llamaserve.config import ServerConfig
from llamaserve.server.app import create_app
from serverutil import sse_events, wait_healthy

MCP_SERVER = str(Path(__file__).with_name("mcp_tool_server.py"))
KEY = "k" * 16


def mcp_json(**servers: dict) -> str:
    return json.dumps({"mcpServers": servers})


def mcp(**extra) -> dict:
    return {"command": sys.executable, "args": [MCP_SERVER], **extra}


def call(url: str, tool: str, params: dict | None = None, headers: dict | None = None, **body) -> httpx.Response:
    return httpx.post(url + "/tools", json={"tool": tool, "params": params or {}, **body}, headers=headers,
                      timeout=60)


def names(url: str) -> set[str]:
    return {t["tool"] for t in httpx.get(url + "/tools").json()}


@pytest.fixture(scope="module")
def mcp_url(engine):
    """One server with two MCP servers (one with a short timeout) and one that cannot start."""
    from serverutil import LiveServer

    config = ServerConfig(mcp_servers_json=mcp_json(
        t=mcp(), slow=mcp(timeout_ms=700), broken={"command": "/nonexistent/mcp-server-xyz"}))
    with LiveServer(create_app(config, engine)) as server:
        yield server.url


@pytest.fixture(scope="module")
def tools_url(engine):
    from serverutil import LiveServer

    with LiveServer(create_app(ServerConfig(tools=("all",)), engine)) as server:
        yield server.url


def test_tools_and_the_proxy_are_off_by_default(serve_app):
    url = serve_app(ServerConfig()).url
    assert httpx.get(url + "/props").json()["cors_proxy_enabled"] is False
    for res in (httpx.get(url + "/tools"), call(url, "read_file", {"path": "/etc/hostname"}),
                httpx.get(url + "/cors-proxy", params={"url": "http://127.0.0.1:1/"})):
        assert res.status_code == 403
        error = res.json()["error"]
        assert error["type"] == "feature_disabled" and "disabled" in error["message"]


def test_mcp_tools_are_listed_as_server_tool_with_their_schema(mcp_url):
    tools = {t["tool"]: t for t in httpx.get(mcp_url + "/tools").json()}
    assert {"t_greet", "t_add", "t_fail", "t_nap", "t_die", "t_pid", "slow_nap"} <= set(tools)
    assert not any(name.startswith("broken_") for name in tools)  # it cannot start: left out, server up
    greet = tools["t_greet"]
    assert greet["type"] == "mcp" and greet["permissions"] == {"write": False}
    function = greet["definition"]["function"]
    assert greet["definition"]["type"] == "function" and function["name"] == "t_greet"
    assert function["description"] == "Say hello to someone."
    assert function["parameters"]["type"] == "object" and "name" in function["parameters"]["properties"]
    assert httpx.get(mcp_url + "/health").status_code == 200


def test_mcp_tools_are_called_and_their_failures_are_results(mcp_url):
    assert call(mcp_url, "t_greet", {"name": "Ada"}).json() == {"plain_text_response": "hello, Ada"}
    assert call(mcp_url, "t_add", {"a": 2, "b": 40}).json() == {"plain_text_response": "42"}
    failed = call(mcp_url, "t_fail", {"reason": "it must"})
    assert failed.status_code == 200 and "error" in failed.json() and "fail" in failed.json()["error"]
    missing = call(mcp_url, "t_greet", {})  # the MCP server refuses the arguments: the model reads why
    assert missing.status_code == 200 and "name" in missing.json()["error"]


def test_concurrent_calls_share_one_server_process(mcp_url):
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: call(mcp_url, "t_greet", {"name": str(i)}).json(), range(16)))
    assert answers == [{"plain_text_response": f"hello, {i}"} for i in range(16)]
    pids = {call(mcp_url, "t_pid").json()["plain_text_response"] for _ in range(3)}
    assert len(pids) == 1


def test_a_slow_tool_times_out_as_a_result(mcp_url):
    started = time.monotonic()
    res = call(mcp_url, "slow_nap", {"seconds": 5})
    assert res.status_code == 200 and "timed out" in res.json()["error"]
    assert time.monotonic() - started < 4


def test_a_server_that_died_is_spawned_again(mcp_url):
    before = call(mcp_url, "t_pid").json()["plain_text_response"]
    died = call(mcp_url, "t_die")
    assert died.status_code == 200 and "error" in died.json()
    after = call(mcp_url, "t_pid").json()
    assert after["plain_text_response"] != before
    assert call(mcp_url, "t_greet", {"name": "again"}).json() == {"plain_text_response": "hello, again"}


@pytest.mark.parametrize("body, status, says", [
    ({"tool": "t_nope", "params": {}}, 404, 'unknown tool "t_nope"'),
    ({"tool": "broken_anything"}, 404, "unknown tool"),
    ({"params": {}}, 400, "tool"),
    ({"tool": "t_greet", "params": [1]}, 400, "params"),
    ({"tool": "t_greet", "params": {"name": "x"}, "stream": True}, 404, "does not support stream"),
    ({"tool": "t_greet", "stream": "yes"}, 400, "stream"),
    ([1, 2], 400, "JSON object"),
])
def test_bad_calls_are_4xx_in_llama_servers_shape(mcp_url, body, status, says):
    res = httpx.post(mcp_url + "/tools", json=body)
    assert res.status_code == status
    error = res.json()["error"]
    assert error["code"] == status and says in error["message"]
    assert error["type"] == ("not_found_error" if status == 404 else "invalid_request_error")
    malformed = httpx.post(mcp_url + "/tools", content=b"{not json", headers={"content-type": "application/json"})
    assert malformed.status_code == 400


@pytest.mark.parametrize("text, flag, says", [
    ("not valid json", "--mcp-servers-json", "not valid JSON"),
    ('{"mcpServers": {"x": {"command": "c", "args": "no"}}}', "--mcp-servers-json", "args"),
    ('{"mcpServers": {"x": {"command": "c", "timeout_ms": -1}}}', "--mcp-servers-json", "timeout_ms"),
])
def test_bad_mcp_definitions_stop_the_server_from_starting(text, flag, says):
    with pytest.raises(ValueError, match=flag) as info:
        create_app(ServerConfig(mcp_servers_json=text))
    assert says in str(info.value)
    with pytest.raises(ValueError, match="--mcp-servers-config: cannot read"):
        create_app(ServerConfig(mcp_servers_config="/nonexistent/mcp.json"))
    with pytest.raises(ValueError, match="--tools: unknown tool rm_rf"):
        ServerConfig(tools=("read_file", "rm_rf"))


def test_mcp_servers_from_a_file_and_inline_together(serve_app, tmp_path):
    path = tmp_path / "mcp.json"
    path.write_text(mcp_json(files=mcp(), both=mcp(), nocommand={"args": ["x"]}))
    inline = mcp_json(both={"command": "/nonexistent/second-definition"}, inline=mcp())
    url = serve_app(ServerConfig(mcp_servers_config=str(path), mcp_servers_json=inline)).url
    listed = names(url)
    assert {"files_greet", "inline_greet", "both_greet"} <= listed  # "both": the file's definition wins
    assert not any(name.startswith("nocommand_") for name in listed)  # no command: skipped
    assert call(url, "both_add", {"a": 1, "b": 1}).json() == {"plain_text_response": "2"}


def test_serve_names_the_bad_flag_and_exits():
    proc = subprocess.run([sys.executable, "-m", "llamaserve", "serve", "--mcp-servers-json", "{oops", "--port", "0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "--mcp-servers-json" in proc.stderr and "Traceback" not in proc.stderr


def test_file_tools_write_read_edit(tools_url, tmp_path):
    path = str(tmp_path / "sub" / "notes.txt")
    wrote = call(tools_url, "write_file", {"path": path, "content": "one\ntwo\nthree\n"}).json()
    assert wrote["result"] == "file written successfully" and wrote["bytes"] == 14
    assert call(tools_url, "read_file", {"path": path}).json() == {"plain_text_response": "one\ntwo\nthree\n"}
    ranged = call(tools_url, "read_file", {"path": path, "start_line": 2, "end_line": 3, "append_loc": True}).json()
    assert ranged["plain_text_response"] == "2\u2192two\n3\u2192three\n"
    edited = call(tools_url, "edit_file", {"path": path, "edits": [
        {"old_text": "two", "new_text": "2"}, {"old_text": "three\n", "new_text": "three\nfour\n"}]}).json()
    assert edited["result"] == "file edited successfully" and edited["edits_applied"] == 2
    assert Path(path).read_text() == "one\n2\nthree\nfour\n"
    Path(path).write_text("dup dup\n")
    assert "unique" in call(tools_url, "edit_file", {"path": path, "edits": [
        {"old_text": "dup", "new_text": "x"}]}).json()["error"]
    assert "overlap" in call(tools_url, "edit_file", {"path": path, "edits": [
        {"old_text": "dup dup", "new_text": "x"}, {"old_text": "p d", "new_text": "y"}]}).json()["error"]
    assert "cannot stat" in call(tools_url, "read_file", {"path": str(tmp_path / "none")}).json()["error"]
    assert "not a regular file" in call(tools_url, "read_file", {"path": "/dev/zero"}).json()["error"]
    assert Path(path).read_text() == "dup dup\n"  # a refused edit changes nothing


def test_search_tools_and_the_cwd_header(tools_url, tmp_path):
    (tmp_path / "src" / "deep").mkdir(parents=True)
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "node_modules" / "skip.py").write_text("needle\n")
    (tmp_path / "src" / "a.py").write_text("x = 1\nneedle = 2\n")
    (tmp_path / "src" / "deep" / "b.py").write_text("needle\n")
    (tmp_path / "top.txt").write_text("no match\n")
    found = call(tools_url, "file_glob_search", {"path": str(tmp_path), "include": "*.py"}).json()
    assert [e["path"] for e in found["entries"]] == ["src/a.py", "src/deep/b.py"]
    assert "Total matches: 2" in found["plain_text_response"]
    dirs = call(tools_url, "file_glob_search", {"path": str(tmp_path), "type": "dir", "max_depth": 1}).json()
    assert {e["path"] for e in dirs["entries"]} == {"src", "node_modules"}
    assert "invalid type" in call(tools_url, "file_glob_search", {"path": str(tmp_path), "type": "x"}).json()["error"]
    grep = call(tools_url, "grep_search", {"path": ".", "pattern": "needle", "return_line_numbers": True},
                headers={"x-tool-cwd": str(tmp_path)}).json()["plain_text_response"]
    assert "src/a.py:2:needle = 2" in grep and "src/deep/b.py:1:needle" in grep
    assert "skip.py" not in grep and "Total matches: 2" in grep
    header_wins = call(tools_url, "read_file", {"path": "top.txt", "cwd": "/nonexistent"},
                       headers={"x-tool-cwd": str(tmp_path)}).json()
    assert header_wins == {"plain_text_response": "no match\n"}
    assert "invalid regex" in call(tools_url, "grep_search", {"path": str(tmp_path), "pattern": "("}).json()["error"]


def test_shell_command_whole_and_streamed(tools_url, tmp_path):
    res = call(tools_url, "exec_shell_command", {"command": "pwd; echo oops >&2; exit 3"},
               headers={"x-tool-cwd": str(tmp_path)}).json()["plain_text_response"]
    assert res == f"{tmp_path}\noops\n\n[exit code: 3]"
    with httpx.stream("POST", tools_url + "/tools", json={
            "tool": "exec_shell_command", "params": {"command": "echo one; sleep 0.3; echo two"}, "stream": True},
            timeout=30) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = list(sse_events(stream.iter_lines()))
    assert events[-1] == {"done": True}
    text = "".join(e["chunk"] for e in events[:-1])
    assert text == "one\ntwo\n\n[exit code: 0]" and len(events) >= 3  # pieces as they came
    slow = call(tools_url, "exec_shell_command", {"command": "sleep 30", "timeout": 1}).json()["plain_text_response"]
    assert "[exit due to timed out]" in slow


@pytest.mark.parametrize("params, headers, says", [
    ({}, None, 'missing param "path"'),
    ({"path": 3}, None, 'param "path" must be a string'),
    ({"path": "x"}, {"x-tool-runtime": "fake:thing"}, "unknown tool runtime"),
    ({"path": "x"}, {"x-tool-runtime": "ssh:-oProxyCommand=x"}, "invalid ssh target"),
    ({"path": "x"}, {"x-tool-runtime": "docker-container:--privileged"}, "invalid container id"),
])
def test_bad_params_and_runtimes_are_400s(tools_url, params, headers, says):
    res = call(tools_url, "read_file", params, headers=headers)
    assert res.status_code == 400 and says in res.json()["error"]["message"]


def test_a_shell_command_cannot_read_the_servers_secrets(tools_url, monkeypatch):
    monkeypatch.setenv("LLAMASERVE_API_KEYS", "secret-key-from-the-environment")
    monkeypatch.setenv("LLAMASERVE_PUBLIC_NOTE", "visible")
    out = call(tools_url, "exec_shell_command", {"command": "env"}).json()["plain_text_response"]
    assert "LLAMASERVE_PUBLIC_NOTE=visible" in out and "secret-key-from-the-environment" not in out


def test_only_the_named_tools_are_served_and_they_need_a_key_when_auth_is_on(serve_app, tmp_path):
    url = serve_app(ServerConfig(tools=("read_file", "get_info"), api_keys=(KEY,))).url
    assert httpx.get(url + "/tools").status_code == 401
    assert call(url, "read_file", {"path": "/etc/hostname"}).status_code == 401
    auth = {"Authorization": f"Bearer {KEY}"}
    listed = {t["tool"] for t in httpx.get(url + "/tools", headers=auth).json()}
    assert listed == {"read_file", "get_info"}
    refused = call(url, "write_file", {"path": str(tmp_path / "x"), "content": "x"}, headers=auth)
    assert refused.status_code == 404 and not (tmp_path / "x").exists()
    assert call(url, "get_info", headers=auth).json()["cwd"] == os.getcwd()


def test_cors_allows_local_pages_only_by_default(tools_url):
    def preflight(origin: str, path: str = "/tools", headers: str = "content-type, x-tool-cwd") -> httpx.Response:
        return httpx.options(tools_url + path, headers={
            "Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": headers})
    local = preflight("http://localhost:5173")
    assert local.status_code == 200 and local.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert "x-tool-cwd" in local.headers["access-control-allow-headers"].lower()
    proxied = preflight("http://127.0.0.1:8080", "/cors-proxy", "x-llama-server-proxy-header-mcp-session-id")
    assert proxied.status_code == 200
    assert "x-llama-server-proxy-header-mcp-session-id" in proxied.headers["access-control-allow-headers"]
    assert preflight("http://localhost", headers="x-not-allowed").status_code == 400
    assert "access-control-allow-origin" not in preflight("https://evil.example").headers


class _Target(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/big":  # says it is larger than the proxy passes on
            self.send_response(200)
            self.send_header("Content-Length", str(40 * 1024 * 1024))
            self.end_headers()
            self.wfile.write(b"x" * 1024)
            return
        if self.path == "/events":  # an event stream that stays open a while (an MCP server's)
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for n in (1, 2):
                self.wfile.write(f"data: {n}\n\n".encode())
                self.wfile.flush()
                time.sleep(1.5)
            return
        body = json.dumps({"path": self.path, "x-foo": self.headers.get("x-foo"),
                           "authorization": self.headers.get("authorization")}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Secret-Upstream", "not passed back")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        got = self.rfile.read(length)
        if got == b"nothing":
            self.send_response(204)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(got)))
        self.end_headers()
        self.wfile.write(got[::-1])

    def log_message(self, *args):
        pass


@pytest.fixture
def target():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Target)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


def test_cors_proxy_forwards_method_body_and_named_headers_only(serve_app, target):
    server = serve_app(ServerConfig(ui_mcp_proxy=True))
    assert httpx.get(server.url + "/props").json()["cors_proxy_enabled"] is True
    url = server.url + "/cors-proxy"
    got = httpx.get(url, params={"url": target + "/mcp?x=1"}, headers={
        "x-llama-server-proxy-header-x-foo": "bar", "authorization": "Bearer mine"})
    assert got.status_code == 201 and got.headers["content-type"] == "application/json"
    assert got.json() == {"path": "/mcp?x=1", "x-foo": "bar", "authorization": None}
    assert "x-secret-upstream" not in got.headers
    posted = httpx.post(url, params={"url": target}, content=b"abc")
    assert posted.status_code == 200 and posted.content == b"cba"
    empty = httpx.post(url, params={"url": target}, content=b"nothing")
    assert empty.status_code == 204 and empty.content == b""
    for bad, says in ((None, "url"), ("ftp://127.0.0.1/", "scheme"), ("http://u:p@127.0.0.1/", "authentication"),
                      ("http:///nohost", "host")):
        res = httpx.get(url, params={"url": bad} if bad else None)
        assert res.status_code == 400 and says in res.json()["error"]["message"]
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    assert httpx.get(url, params={"url": f"http://127.0.0.1:{dead}/"}).status_code == 502
    started = time.monotonic()
    with httpx.stream("GET", url, params={"url": target + "/events"}, timeout=30) as events:
        assert events.headers["content-type"] == "text/event-stream"
        lines = events.iter_lines()
        assert next(lines) == "data: 1" and time.monotonic() - started < 1.2  # relayed as it came
        assert [line for line in lines if line] == ["data: 2"]
    big = httpx.get(url, params={"url": target + "/big"})
    assert big.status_code == 502 and "larger than" in big.json()["error"]["message"]


def test_serve_stops_at_once_with_a_tool_call_in_flight(tmp_path):
    """SIGTERM while an MCP tool runs: the call ends with an error and the process exits well
    inside a second or two (it does not wait out the drain time nor the tool)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    config = mcp_json(t=mcp(timeout_ms=60_000))
    with open(tmp_path / "serve.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "llamaserve", "serve", "--log-level", "warning",
                                 "--port", str(port), "--ctx", "256", "--parallel", "1",
                                 "--mcp-servers-json", config], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_healthy(proc, url, tmp_path / "serve.log")
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pending = pool.submit(call, url, "t_nap", {"seconds": 30})
            time.sleep(1.5)
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)
            assert time.monotonic() - started < 3, (tmp_path / "serve.log").read_text()
            answer = pending.result(timeout=10)
        assert answer.status_code == 200 and "error" in answer.json()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("pattern, path, matches", [
    ("*.py", "a/b/c.py", True),  # no '/': the name, at any depth
    ("*.py", "c.pyc", False),
    ("src/*.py", "x/src/a.py", True),  # with '/': anchored with **/
    ("src/*.py", "src/sub/a.py", False),
    ("/src/*.py", "x/src/a.py", False),  # a leading '/': from the top only
    ("/src/*.py", "src/a.py", True),
    ("src/**/*.cpp", "src/a/b/c.cpp", True),
    ("src/**/*.cpp", "src/c.cpp", True),
    ("**", "any/thing", True),
    ("file?.[ch]", "d/file1.c", True),
    ("file?.[!ch]", "d/file1.c", False),
])
def test_glob_rules(pattern, path, matches):
    from llamaserve.server.tools.listing import glob_match

    assert glob_match(pattern, path) is matches
