#!/usr/bin/env python3
"""llamaserve against llama-server (and llama-cpp-python's server when installed), side by
side: same machine, model, threads, slots and context, the same HTTP load, in one run.

    python benchmarks/compare.py [--levels 1 8 16] [--threads 2] [--tokens 64]

Each server is started on loopback with as many slots as the concurrency level, loaded
with the same streaming /v1/completions requests (equal output lengths: end-of-sequence
tokens banned), then stopped. Writes results.json, results.md and results.png into
benchmarks/out/ (never committed) and prints the table with the ratios the benchmark issue
targets.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import llama_tools  # noqa: E402
from engine import batched_bench_s_tg  # noqa: E402

import llamaserve  # noqa: E402
from llamaserve.bench import loadgen  # noqa: E402

Command = Callable[[int, int], list[str]]  # (port, slots) -> argv


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            health = httpx.get(url + "/health", timeout=2).status_code
            if health == 200:
                return
            # llama-cpp-python's server has no /health: ready once it lists its model
            if health == 404 and httpx.get(url + "/v1/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError("server did not become ready")


def run_server(name: str, command: Command, spec: loadgen.LoadSpec, level: int,
               requests_per_client: int) -> loadgen.LevelResult:
    port = free_port()
    argv = command(port, level)
    log = open(llama_tools.SCRATCH / f"{name}-{level}.log", "w")
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, process)
        level_spec = loadgen.LoadSpec(**{**spec.__dict__, "url": url})
        print(f"{name}: {level} slots", file=sys.stderr, flush=True)
        return loadgen.run(level_spec, [level], requests_per_client)[0]
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def servers(bin_dir: Path, model: Path, threads: int, n_ctx: int) -> dict[str, Command]:
    found: dict[str, Command] = {
        "llamaserve": lambda port, slots: [
            sys.executable, "-m", "llamaserve", "serve", "--model", str(model),
            "--threads", str(threads), "--parallel", str(slots), "--ctx", str(n_ctx),
            "--port", str(port), "--log-level", "warning"],
        "llama-server": lambda port, slots: [
            str(bin_dir / "llama-server"), "-m", str(model), "-t", str(threads),
            "-tb", str(threads), "-np", str(slots), "-c", str(n_ctx * slots),
            "--host", "127.0.0.1", "--port", str(port), "--no-webui"],
    }
    if importlib.util.find_spec("llama_cpp") is not None:
        found["llama-cpp-python"] = lambda port, slots: [
            sys.executable, "-m", "llama_cpp.server", "--model", str(model),
            "--n_threads", str(threads), "--n_ctx", str(n_ctx), "--port", str(port),
            "--host", "127.0.0.1",
            # by default a new request cuts off the one streaming; queue them instead
            "--interrupt_requests", "False"]
    return found


TARGETS = [  # (label, level, reference server, minimum ratio)
    ("single stream tok/s / llama-server", 1, "llama-server", 1.0),
    ("aggregate tok/s at 8 / llama-server -np 8", 8, "llama-server", 1.0),
    ("aggregate tok/s at 16 / llama-server -np 16", 16, "llama-server", 1.0),
    ("aggregate tok/s at 8 / llama-cpp-python", 8, "llama-cpp-python", 2.7),
]


def table(results: dict[str, dict[int, dict]], s_tg: dict[int, float]) -> str:
    lines = ["| server | concurrency | output tok/s | req/s | TTFT p50 ms | TTFT p99 ms "
             "| ITL p50 ms | ITL p99 ms | errors | client CPU % |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, levels in results.items():
        for level, r in sorted(levels.items()):
            lines.append(
                f"| {name} | {level} | {r['output_tok_s']:.1f} | {r['request_s']:.2f} "
                f"| {r['ttft_p50_ms']:.1f} | {r['ttft_p99_ms']:.1f} | {r['itl_p50_ms']:.1f} "
                f"| {r['itl_p99_ms']:.1f} | {r['errors']} | {r['client_cpu_pct']:.0f} |")
    lines += ["", "| figure | ratio | target |", "|---|---|---|"]
    ours = results.get("llamaserve", {})
    for label, level, ref_name, target in TARGETS:
        ref = results.get(ref_name, {}).get(level)
        if ref and level in ours:
            ratio = ours[level]["output_tok_s"] / ref["output_tok_s"]
            lines.append(f"| {label} | {ratio:.3f} | >= {target} |")
    for level, ref in sorted(s_tg.items()):
        if level in ours:
            ratio = ours[level]["output_tok_s"] / ref
            lines.append(f"| HTTP aggregate at {level} / llama-batched-bench S_TG at B={level} "
                         f"({ref:.1f} tok/s) | {ratio:.3f} | >= 0.95 |")
    if 1 in ours and 1 in results.get("llama-server", {}):
        delta = ours[1]["ttft_p50_ms"] - results["llama-server"][1]["ttft_p50_ms"]
        lines.append(f"| TTFT p50 single stream minus llama-server's | {delta:+.1f} ms | <= +5 ms |")
    return "\n".join(lines)


def plot(results: dict[str, dict[int, dict]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (tps, ttft) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, levels in results.items():
        xs = sorted(levels)
        tps.plot(xs, [levels[x]["output_tok_s"] for x in xs], marker="o", label=name)
        ttft.plot(xs, [levels[x]["ttft_p50_ms"] for x in xs], marker="o", label=name)
    tps.set(xlabel="concurrent clients", ylabel="output tok/s (aggregate)", title="Throughput")
    ttft.set(xlabel="concurrent clients", ylabel="TTFT p50 (ms)", title="Time to first token")
    for ax in (tps, ttft):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--ctx", type=int, default=512, help="context per slot")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--requests-per-client", type=int, default=3)
    args = parser.parse_args()
    model = args.model or llamaserve.default_model_path()

    bin_dir = llama_tools.build(["llama-server", "llama-batched-bench"])
    with llamaserve.Engine.load(model, n_ctx=64, n_parallel=1) as engine:
        banned = tuple(engine.metadata["eog_tokens"])
    spec = loadgen.LoadSpec(url="", model=model.stem, max_tokens=args.tokens, banned_tokens=banned)

    results: dict[str, dict[int, dict]] = {}
    for name, command in servers(bin_dir, model, args.threads, args.ctx).items():
        for level in args.levels:
            r = run_server(name, command, spec, level, args.requests_per_client)
            results.setdefault(name, {})[level] = r.as_dict()

    widths = [level for level in args.levels if level > 1]
    s_tg = batched_bench_s_tg(bin_dir, model, args.threads, args.tokens, widths) if widths else {}

    out = llama_tools.SCRATCH
    machine = f"{os.cpu_count()} CPUs, {args.threads} threads, {model.name}, {args.tokens} output tokens"
    (out / "results.json").write_text(json.dumps(
        {"machine": machine, "results": results, "batched_bench_s_tg": s_tg}, indent=2))
    text = f"Measured on {machine}.\n\n" + table(results, s_tg)
    (out / "results.md").write_text(text + "\n")
    plot(results, out / "results.png", machine)
    print(text)
    print(f"\nwrote {out / 'results.json'}, results.md, results.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
