"""Scale-out on one machine: llamaserve as a Ray Serve application (N replicas x T threads)
against one `llamaserve serve` process (N*T threads, as many slots), same model, same load;
and the prefix-affinity router's hit rate on a chat load, against Serve's power of two choices.

    python benchmarks/ray_scaleout.py                 # default model, 2 x 1 against 1 x 2
    python benchmarks/ray_scaleout.py --duration 30 --clients 8 --replicas 2 --threads 1

Throughput load: `--clients` clients, each sending non-streamed /v1/completions (distinct
prompts, --max-tokens output tokens, end of sequence ignored) back to back for --duration s.
Chat load: --conversations users at once, each --turns turns long with --think seconds
(on average) between them, sharing one long system prompt; a turn is an affinity hit when
the replica that served the previous turn serves it (X-Llamaserve-Replica), and the cached
fraction is cached prompt tokens over prompt tokens (usage.prompt_tokens_details). Prints one JSON object (and writes it with --out).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import httpx

SYSTEM = ("You are the assistant of a garden centre. Answer in one sentence, name the product, "
          "its price and the aisle it is in. Be polite and never invent a product. ") * 8
QUESTIONS = ["Where are the rakes?", "How much is the big one?", "Do you have gloves?",
             "And seeds for tomatoes?", "Which hose is the longest?"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def throughput(url: str, clients: int, duration: float, max_tokens: int) -> dict[str, float]:
    done = tokens = errors = 0
    deadline = time.monotonic() + duration

    async def client(index: int, http: httpx.AsyncClient) -> None:
        nonlocal done, tokens, errors
        n = 0
        while time.monotonic() < deadline:
            n += 1
            reply = await http.post(url + "/v1/completions", json={
                "prompt": f"Client {index} request {n}: write a story about a garden.",
                "max_tokens": max_tokens, "ignore_eos": True, "temperature": 0.8, "seed": n})
            if reply.status_code != 200:
                errors += 1
                continue
            done += 1
            tokens += reply.json()["usage"]["completion_tokens"]

    started = time.monotonic()
    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=clients)) as http:
        await asyncio.gather(*(client(i, http) for i in range(clients)))
    elapsed = time.monotonic() - started
    return {"requests_per_s": round(done / elapsed, 3), "output_tok_per_s": round(tokens / elapsed, 1),
            "requests": done, "errors": errors, "seconds": round(elapsed, 1)}


async def chat_affinity(url: str, conversations: int, turns: int, think: float) -> dict[str, Any]:
    hits = follow_ups = prompt_tokens = cached = 0
    cached_reported = False
    served: dict[str, int] = {}

    async def conversation(index: int, http: httpx.AsyncClient) -> None:
        nonlocal hits, follow_ups, prompt_tokens, cached, cached_reported
        messages = [{"role": "system", "content": SYSTEM},
                    {"role": "user", "content": f"I am customer {index}. {QUESTIONS[0]}"}]
        last = None
        rng = random.Random(index)
        for turn in range(turns):
            # Users read and type between turns (and do not all start at once): without it a
            # closed loop sends each next turn to the replica that just freed a slot.
            await asyncio.sleep(rng.uniform(0, 2 * think))
            reply = await http.post(url + "/v1/chat/completions", json={
                "messages": messages, "max_tokens": 12, "seed": index})  # as the OpenAI SDK sends it
            reply.raise_for_status()
            replica = reply.headers.get("x-llamaserve-replica")
            served[replica] = served.get(replica, 0) + 1
            if last is not None:
                follow_ups += 1
                hits += replica == last
            last = replica
            usage = reply.json()["usage"]
            prompt_tokens += usage["prompt_tokens"]
            details = usage.get("prompt_tokens_details") or {}
            if "cached_tokens" in details:
                cached_reported = True
                cached += details["cached_tokens"]
            messages += [reply.json()["choices"][0]["message"],
                         {"role": "user", "content": QUESTIONS[(turn + 1) % len(QUESTIONS)]}]

    async with httpx.AsyncClient(timeout=300) as http:
        await asyncio.gather(*(conversation(i, http) for i in range(conversations)))
    return {"affinity_hit_rate": round(hits / max(1, follow_ups), 3), "follow_up_turns": follow_ups,
            "cached_prompt_fraction": round(cached / prompt_tokens, 3) if cached_reported else None,
            "turns_per_replica": sorted(served.values(), reverse=True)}


def wait_healthy(url: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not become healthy")


def ray_rows(args: argparse.Namespace) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import ray
        from ray import serve

        from llamaserve.config import ServerConfig
        from llamaserve.ray import build_application

    rows: dict[str, Any] = {}
    started = time.monotonic()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    rows["ray_and_serve_start_s"] = round(time.monotonic() - started, 1)
    url = f"http://127.0.0.1:{port}"
    base = dict(model=args.model, replicas=args.replicas, n_threads=args.threads, replica_cpus=args.threads,
                n_parallel=args.slots, n_ctx=args.ctx)
    try:
        started = time.monotonic()
        serve.run(build_application(ServerConfig(**base)), name="bench", route_prefix="/")
        rows["replicas_ready_s"] = round(time.monotonic() - started, 1)
        rows["throughput"] = asyncio.run(throughput(url, args.clients, args.duration, args.max_tokens))
        rows["chat_prefix_affinity"] = asyncio.run(chat_affinity(url, args.conversations, args.turns, args.think))
        serve.run(build_application(ServerConfig(**base, prefix_affinity=False)), name="bench", route_prefix="/")
        rows["chat_power_of_two"] = asyncio.run(chat_affinity(url, args.conversations, args.turns, args.think))
    finally:
        serve.shutdown()
        ray.shutdown()
    return rows


def process_rows(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    threads, slots = args.replicas * args.threads, args.replicas * args.slots
    command = [sys.executable, "-m", "llamaserve", "serve", "--port", str(port), "--threads", str(threads),
               "--parallel", str(slots), "--ctx", str(args.ctx), "--log-level", "warning"]
    if args.model:
        command += ["--model", args.model]
    started = time.monotonic()
    server = subprocess.Popen(command)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url)
        ready = round(time.monotonic() - started, 1)
        return {"ready_s": ready, "threads": threads, "slots": slots,
                "throughput": asyncio.run(throughput(url, args.clients, args.duration, args.max_tokens))}
    finally:
        server.terminate()
        server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="GGUF file (default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="threads per replica")
    parser.add_argument("--slots", type=int, default=4, help="slots per replica")
    parser.add_argument("--ctx", type=int, default=2048)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--conversations", type=int, default=8)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--think", type=float, default=0.5, help="mean seconds a user waits between turns")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    ray_side = ray_rows(args)
    one_process = process_rows(args)
    result = {
        "machine": {"cpus": os.cpu_count()},
        "load": {"clients": args.clients, "max_tokens": args.max_tokens, "duration_s": args.duration},
        f"ray_{args.replicas}x{args.threads}_threads": ray_side,
        f"one_process_{args.replicas * args.threads}_threads": one_process,
        "ratio_tok_per_s": round(ray_side["throughput"]["output_tok_per_s"]
                                 / max(1e-9, one_process["throughput"]["output_tok_per_s"]), 3),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
