"""`llamaserve bench serve|engine` and the load generator behind them, against the real
engine and server."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys

from llamaserve.bench import loadgen

GEMMA_END_TOKENS = (1, 106)


def test_bench_serve_reports_every_level_with_equal_output_lengths(base_url, served_model, tmp_path):
    out = tmp_path / "levels.json"
    run = subprocess.run(
        [sys.executable, "-m", "llamaserve", "bench", "serve", "--url", base_url,
         "--model", served_model, "--levels", "1", "3", "--tokens", "6",
         "--requests-per-client", "2", "--json", str(out)],
        capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "concurrency 3: 6/6 requests" in run.stderr  # progress while it runs
    assert "| concurrency | output tok/s |" in run.stdout
    assert f"model {served_model} (as the server names it)" in run.stdout
    levels = json.loads(out.read_text())
    assert [level["concurrency"] for level in levels] == [1, 3]
    assert {level["model"] for level in levels} == {served_model}
    for level in levels:
        assert level["errors"] == 0 and level["requests"] == 2 * level["concurrency"]
        # End-of-sequence banned: every request produced exactly --tokens tokens.
        produced = level["output_tok_s"] * level["wall_s"]
        assert abs(produced - 6 * level["requests"]) < 1e-6 * produced
        assert 0 < level["ttft_p50_ms"] <= level["ttft_p99_ms"]
        assert 0 < level["itl_p50_ms"] <= level["itl_p99_ms"]
        assert level["client_cpu_pct"] >= 0


def test_bench_serve_bans_the_served_models_own_end_tokens(default_server):
    """Against the README's server (SmolLM2, which ends a reply at once when it can), with no
    --ban: the ids come from the server's /tokenize, and every request has --tokens tokens."""
    run = subprocess.run(
        [sys.executable, "-m", "llamaserve", "bench", "serve", "--url", default_server.url,
         "--levels", "1", "--tokens", "4", "--requests-per-client", "1",
         "--prompt", "Reply with one word: yes."],
        capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "banned end tokens: 2, 1, 0" in run.stdout  # <|im_end|>, <|im_start|>, <|endoftext|>
    row = next(line for line in run.stdout.splitlines() if line.startswith("| 1 |"))
    assert row.split("|")[8].strip() == "0"  # no errors


def test_bench_chat_runs_multi_turn_conversations_that_reuse_their_prefix(base_url, served_model, tmp_path):
    out = tmp_path / "chat.json"
    run = subprocess.run(
        [sys.executable, "-m", "llamaserve", "bench", "chat", "--url", base_url, "--model", served_model,
         "--clients", "2", "--turns", "2", "--tokens", "5", "--system-words", "120", "--runs", "1",
         "--json", str(out)],
        capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "| run | TTFT p50, turn 1 s | TTFT p50, later turns s |" in run.stdout
    [result] = json.loads(out.read_text())
    assert result["errors"] == 0 and result["clients"] == 2 and result["turns"] == 2
    assert 0 < result["ttft_turn1_p50_s"] and 0 < result["ttft_later_p50_s"]
    assert abs(result["output_tok_s"] * result["wall_s"] - 2 * 2 * 5) < 1e-6  # equal lengths: EOS banned
    # Each second turn resends the first: the server served most of it from its cache.
    assert result["cached_fraction"] > 0.3


def test_loadgen_sends_the_api_key(serve_app, served_model):
    from llamaserve.config import ServerConfig

    server = serve_app(ServerConfig(api_keys=("bench-key",)))
    spec = loadgen.LoadSpec(url=server.url, model=served_model, max_tokens=3, api_key="bench-key")
    [level] = loadgen.run(spec, [2], 1, progress=False)
    assert level.errors == 0 and level.output_tok_s > 0
    without = asyncio.run(loadgen.run_level(loadgen.LoadSpec(url=server.url, max_tokens=3), 1, 1,
                                            progress=False))
    assert without.errors == 1 and without.first_error.startswith("HTTP 401")


def test_loadgen_counts_a_failing_server_as_errors(base_url):
    spec = loadgen.LoadSpec(url=base_url, max_tokens=-1)  # refused: every request fails
    level = asyncio.run(loadgen.run_level(spec, 2, 1, progress=False))
    assert level.errors == level.requests == 2
    assert level.first_error.startswith("HTTP 400")


class OneResponsePerConnection:
    """Serves an SSE completion, then closes the connection without saying so (as a server
    with a short keep-alive does): the client's next request on it finds it gone."""

    def __init__(self) -> None:
        self.handlers: list[asyncio.Task] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.handlers.append(asyncio.current_task())
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length"))
        await reader.readexactly(length)
        events = [{"choices": [{"index": 0, "text": "hi"}]},
                  {"choices": [], "usage": {"completion_tokens": 1}}]
        body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: "
                     + str(len(body)).encode() + b"\r\n\r\n" + body)
        await writer.drain()
        await asyncio.sleep(0.05)  # let the client pool the connection first
        writer.close()
        await writer.wait_closed()


def test_loadgen_resends_a_request_whose_keep_alive_connection_was_closed():
    async def main() -> loadgen.LevelResult:
        peer = OneResponsePerConnection()
        server = await asyncio.start_server(peer.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            spec = loadgen.LoadSpec(url=f"http://127.0.0.1:{port}", max_tokens=1)
            level = await loadgen.run_level(spec, 1, 3, progress=False)
            await asyncio.gather(*peer.handlers)
        return level

    level = asyncio.run(main())
    assert level.errors == 0 and level.requests == 3
    assert level.retried >= 1


def test_bench_engine_prints_in_process_figures(smollm2_path):
    """Without --model it runs the default model (what the set-up fetched), and says so."""
    run = subprocess.run(
        [sys.executable, "-m", "llamaserve", "bench", "engine", "--threads", "2", "--tokens", "4",
         "--widths", "2"],
        capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith(f"model smollm2-135m-instruct ({smollm2_path.name}), 2 threads")
    for label in ("single-stream decode:", "batched decode, 2 streams:", "prompt processing (512 tokens):"):
        [line] = [x for x in lines if x.startswith(label)]
        assert float(line.split(":")[1].split()[0]) > 0


def test_sse_client_reassembles_events_however_the_body_is_split():
    from llamaserve.bench.sse_client import _events

    body = b'data: {"a": 1}\r\n\r\n: comment\n\ndata:{"b": 2}\n\nevent: x\ndata: [DONE]\n\n'

    async def split(size: int) -> list[bytes]:
        async def pieces():
            for i in range(0, len(body), size):
                yield body[i:i + size]
        return [data async for data in _events(pieces())]

    for size in (1, 2, 3, 7, len(body)):
        assert asyncio.run(split(size)) == [b'{"a": 1}', b'{"b": 2}', b"[DONE]"], size


def test_loadgen_reports_a_peer_that_does_not_speak_http_as_an_error():
    async def not_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n")
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main() -> loadgen.LevelResult:
        server = await asyncio.start_server(not_http, "127.0.0.1", 0)
        async with server:
            spec = loadgen.LoadSpec(url=f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
            return await loadgen.run_level(spec, 1, 2, progress=False)

    level = asyncio.run(main())
    assert level.errors == level.requests == 2
    assert "not an HTTP response" in level.first_error
