#!/usr/bin/env python3
"""The agent loop across a server restart (issue 28's target: turn N+1's time to first token after
a restart <= 2x the same turn without one): one conversation of `bench agent`'s stable variant (a
~3,900-token system prompt, replies and ~190-token tool results), served by `llamaserve serve`.

    python benchmarks/disk_restart.py [--turns 2] [--tokens 32] [--system-words 2630] [--ctx 6144]

Three runs of the same conversation, each on a fresh server and a fresh --cache-dir:
- no restart: turns 1..N, then turn N+1 on the same server (its slot holds the conversation);
- restart with --cache-dir: turns 1..N, the server killed (SIGKILL, once its snapshot is on disk),
  started again on the same folder, then turn N+1;
- restart without a disk tier: the same, the second server without --cache-dir (it prefills all).
Replies are greedy with end tokens banned, so the three turn N+1 prompts are the same text.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from llamaserve.bench.agent_load import system_prompt, tool_result
from llamaserve.bench.end_tokens import served_end_tokens
from llamaserve.bench.openai_turn import StreamedTurn, stream_turn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`llamaserve serve` in a subprocess, one slot, optionally with a --cache-dir."""

    def __init__(self, args: argparse.Namespace, folder: Path | None, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "llamaserve", "serve", "--port", str(self.port), "--parallel", "1",
                   "--ctx", str(args.ctx), "--log-level", "warning"]
        if folder is not None:
            command += ["--cache-dir", str(folder)]
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server ended: {log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not get ready")
            time.sleep(0.1)

    def disk(self) -> dict[str, int]:
        return httpx.get(self.url + "/health").json()["kv_cache"]["prefix_cache"]["disk"]

    def kill_once_written(self, writes: int) -> None:
        deadline = time.monotonic() + 300
        while self.disk()["writes"] + self.disk()["skipped"] < writes:
            if time.monotonic() > deadline:
                raise RuntimeError("the snapshots were not written")
            time.sleep(0.05)
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=60)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=120)


async def turn(server: Server, messages: list[dict[str, str]], args: argparse.Namespace,
               banned: tuple[int, ...]) -> StreamedTurn:
    from openai import AsyncOpenAI

    async with AsyncOpenAI(base_url=server.url + "/v1", api_key="unused", timeout=1800, max_retries=0) as client:
        result = await stream_turn(client, "default", messages, args.tokens, banned)
    if result.error:
        raise RuntimeError(result.error)
    return result


def run(args: argparse.Namespace, restart: str, scratch: Path) -> dict[str, object]:
    """restart: "none", "disk" or "cold". Returns turn N+1's figures and the turns' TTFTs."""
    folder = scratch / f"snapshots-{restart}"
    log = scratch / f"serve-{restart}.log"
    server = Server(args, folder, log)
    messages = [{"role": "system", "content": system_prompt(args.system_words, "x-agent-header: session=stable")},
                {"role": "user", "content": "Task 1: the tests of area 0 fail since the last change to module 0. "
                                            "Find the cause and fix it."}]
    banned = served_end_tokens(server.url)
    ttfts = []
    try:
        for k in range(1, args.turns + 1):
            t = asyncio.run(turn(server, messages, args, banned))
            ttfts.append(round(t.ttft, 3))
            messages += [{"role": "assistant", "content": t.text}, {"role": "user", "content": tool_result(0, k, 36)}]
        if restart != "none":
            server.kill_once_written(args.turns)  # a snapshot per turn (the prompt before its last token)
            server = Server(args, folder if restart == "disk" else None, log)
        started = time.perf_counter()
        last = asyncio.run(turn(server, messages, args, banned))
        disk = server.disk()
    finally:
        server.stop()
    return {"restart": restart, "turns_ttft_s": ttfts, "ttft_s": round(last.ttft, 3),
            "wall_s": round(time.perf_counter() - started, 3), "prompt_tokens": last.prompt_tokens,
            "cached_tokens": last.cached_tokens, "disk_hits": disk["hits"], "text": last.text}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=2, help="turns before the restart (N)")
    parser.add_argument("--tokens", type=int, default=32, help="output tokens per turn")
    parser.add_argument("--system-words", type=int, default=2630, help="~3,900 tokens of SmolLM2's vocabulary")
    parser.add_argument("--ctx", type=int, default=6144)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        rows = [run(args, restart, Path(scratch)) for restart in ("none", "disk", "cold")]
    base = rows[0]["ttft_s"]
    print(f"turn {args.turns + 1} of one agent conversation, {rows[0]['prompt_tokens']} prompt tokens, "
          f"{args.tokens} tokens a turn (default weights, one slot)")
    print("| run | turn N+1 TTFT s | vs no restart | cached prompt tokens | restored from disk | turns 1..N TTFT s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['restart']} | {r['ttft_s']:.2f} | {r['ttft_s'] / base:.2f}x | {r['cached_tokens']} "
              f"| {r['disk_hits']} | {r['turns_ttft_s']} |")
    same = len({r["text"] for r in rows}) == 1
    print(f"turn N+1 replies identical in the three runs: {same}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
