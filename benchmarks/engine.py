#!/usr/bin/env python3
"""llamaserve's engine against llama.cpp's own tools, in one run, same model and threads.

    python benchmarks/engine.py [--model gemma-3-270m] [--threads N] [--tokens 64] [--widths 8 16]

Builds llama-bench and llama-batched-bench from the vendored tree (benchmarks/out/),
then reports decode tok/s and the ratios the engine issue sets as targets:
  single stream: Engine.stream / llama-bench tg                  (target >= 0.97)
  B streams:     Engine aggregate / llama-batched-bench S_TG at B (target >= 0.90)
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import llama_tools  # noqa: E402

from llamaserve.bench import engine_bench  # noqa: E402
from llamaserve.default_model import BENCHMARK_MODEL, MODEL_HELP, named_model  # noqa: E402


def llama_bench_tg(bin_dir: Path, model: Path, threads: int, tokens: int) -> float:
    out = subprocess.run(
        [str(bin_dir / "llama-bench"), "-m", str(model), "-p", "0", "-n", str(tokens),
         "-t", str(threads), "-r", "5", "-o", "json"],
        check=True, capture_output=True, text=True).stdout
    return float(json.loads(out)[0]["avg_ts"])


def batched_bench_s_tg(bin_dir: Path, model: Path, threads: int, tokens: int,
                       widths: list[int]) -> dict[int, float]:
    pp = engine_bench.PROMPT_TOKENS
    out = subprocess.run(
        [str(bin_dir / "llama-batched-bench"), "-m", str(model),
         "-c", str(max(widths) * (pp + tokens) + 64), "-b", "2048", "-ub", "512",
         "-npp", str(pp), "-ntg", str(tokens), "-npl", ",".join(map(str, widths)),
         "-t", str(threads), "-tb", str(threads), "--output-format", "jsonl"],
        check=True, capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return {int(r["pl"]): float(r["speed_tg"]) for r in rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=BENCHMARK_MODEL, help=MODEL_HELP)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--widths", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved runs of each side")
    parser.add_argument("--json", type=Path, default=llama_tools.SCRATCH / "engine.json")
    args = parser.parse_args()
    model_name, model = named_model(args.model)

    bin_dir = llama_tools.build(["llama-bench", "llama-batched-bench"])
    print(f"model {model_name} ({model.name}), {args.threads} threads, {args.tokens} tokens", flush=True)

    # Shared machines drift: interleave the two sides and compare medians.
    refs, ours = [], []
    for _ in range(args.rounds):
        refs.append(llama_bench_tg(bin_dir, model, args.threads, args.tokens))
        ours.append(engine_bench.single_stream_decode(model, args.threads, args.tokens))
    rows = [("single stream / llama-bench tg", statistics.median(ours), statistics.median(refs), 0.97)]
    for width in args.widths:
        refs, ours = [], []
        for _ in range(args.rounds):
            refs.append(batched_bench_s_tg(bin_dir, model, args.threads, args.tokens, [width])[width])
            ours.append(engine_bench.batched_decode(model, args.threads, args.tokens, width))
        rows.append((f"{width} streams / batched-bench S_TG", statistics.median(ours),
                     statistics.median(refs), 0.90))

    print("\n| figure | llamaserve tok/s | llama.cpp tok/s | ratio | target |")
    print("|---|---|---|---|---|")
    for name, ours, ref, target in rows:
        verdict = "met" if ours / ref >= target else "MISSED"
        print(f"| {name} | {ours:.1f} | {ref:.1f} | {ours / ref:.3f} | >= {target} ({verdict}) |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"model": {"name": model_name, "file": model.name}, "rows": [
        {"figure": n, "llamaserve": o, "llama_cpp": r, "ratio": o / r, "target": t}
        for n, o, r, t in rows]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
