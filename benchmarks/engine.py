#!/usr/bin/env python3
"""llamaserve's engine against llama.cpp's own tools, in one run, same model and threads.

    python benchmarks/engine.py [--threads N] [--tokens 64] [--widths 8 16]

Builds llama-bench and llama-batched-bench from the vendored tree (benchmarks/out/),
then reports decode tok/s and the ratios the engine issue sets as targets:
  single stream: Engine.stream / llama-bench tg                  (target >= 0.97)
  B streams:     Engine aggregate / llama-batched-bench S_TG at B (target >= 0.90)
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import llama_tools  # noqa: E402

import llamaserve  # noqa: E402

PROMPT_TOKENS = 16


def llama_bench_tg(bin_dir: Path, model: Path, threads: int, tokens: int) -> float:
    out = subprocess.run(
        [str(bin_dir / "llama-bench"), "-m", str(model), "-p", "0", "-n", str(tokens),
         "-t", str(threads), "-r", "5", "-o", "json"],
        check=True, capture_output=True, text=True).stdout
    return float(json.loads(out)[0]["avg_ts"])


def batched_bench_s_tg(bin_dir: Path, model: Path, threads: int, tokens: int,
                       widths: list[int]) -> dict[int, float]:
    n_ctx = max(widths) * (PROMPT_TOKENS + tokens) + 64
    out = subprocess.run(
        [str(bin_dir / "llama-batched-bench"), "-m", str(model), "-c", str(n_ctx), "-b", "2048",
         "-ub", "512", "-npp", str(PROMPT_TOKENS), "-ntg", str(tokens),
         "-npl", ",".join(map(str, widths)), "-t", str(threads), "-tb", str(threads),
         "--output-format", "jsonl"],
        check=True, capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return {int(r["pl"]): float(r["speed_tg"]) for r in rows}


def engine_single_stream(model: Path, threads: int, tokens: int, repeats: int = 5) -> float:
    """Decode tok/s of one Engine.stream, from its first token to its last."""
    with llamaserve.Engine.load(model, n_ctx=1024, n_parallel=1, n_threads=threads) as engine:
        engine.generate("warm up", max_tokens=8)
        rates = []
        for _ in range(repeats):
            stream = engine.stream("Once upon a time", max_tokens=tokens + 1, temperature=0,
                                   ignore_eos=True)
            next(stream)
            start = time.perf_counter()
            count = sum(1 for _ in stream)
            rates.append(count / (time.perf_counter() - start))
        return statistics.median(rates)


def engine_aggregate(model: Path, threads: int, tokens: int, width: int, repeats: int = 3) -> float:
    """Aggregate decode tok/s of `width` concurrent astreams once all have their first token."""
    prompt = [2] + [1000 + i for i in range(PROMPT_TOKENS - 1)]

    async def one_round(engine) -> float:
        streams = [engine.astream(prompt, max_tokens=tokens, temperature=0, ignore_eos=True)
                   for _ in range(width)]
        arrivals: list[list[float]] = [[] for _ in streams]

        async def consume(i, stream):
            async for _ in stream:
                arrivals[i].append(time.perf_counter())

        await asyncio.gather(*(consume(i, s) for i, s in enumerate(streams)))
        start = max(a[0] for a in arrivals)
        end = max(a[-1] for a in arrivals)
        after = sum(1 for a in arrivals for t in a if t > start)
        return after / (end - start)

    async def run() -> float:
        with llamaserve.Engine.load(model, n_ctx=PROMPT_TOKENS + tokens + 8, n_parallel=width,
                                    n_threads=threads) as engine:
            await engine.agenerate("warm up", max_tokens=4)
            return statistics.median([await one_round(engine) for _ in range(repeats)])

    return asyncio.run(run())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="GGUF file (default model if omitted)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--widths", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--json", type=Path, default=llama_tools.SCRATCH / "engine.json")
    args = parser.parse_args()
    model = args.model or llamaserve.default_model_path()

    bin_dir = llama_tools.build(["llama-bench", "llama-batched-bench"])
    print(f"model {model.name}, {args.threads} threads, {args.tokens} tokens", flush=True)

    rows = []
    ref = llama_bench_tg(bin_dir, model, args.threads, args.tokens)
    ours = engine_single_stream(model, args.threads, args.tokens)
    rows.append(("single stream / llama-bench tg", ours, ref, 0.97))
    refs = batched_bench_s_tg(bin_dir, model, args.threads, args.tokens, args.widths)
    for width in args.widths:
        ours = engine_aggregate(model, args.threads, args.tokens, width)
        rows.append((f"{width} streams / batched-bench S_TG", ours, refs[width], 0.90))

    print(f"\n| figure | llamaserve tok/s | llama.cpp tok/s | ratio | target |")
    print("|---|---|---|---|---|")
    for name, ours, ref, target in rows:
        ok = "ok" if ours / ref >= target else "MISSED"
        print(f"| {name} | {ours:.1f} | {ref:.1f} | {ours / ref:.3f} | >= {target} {ok} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps([
        {"figure": n, "llamaserve": o, "llama_cpp": r, "ratio": o / r, "target": t}
        for n, o, r, t in rows], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
