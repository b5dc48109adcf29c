#!/usr/bin/env python3
"""llamaserve against llama-server (and llama-cpp-python's server when installed), side by
side: same machine, model, threads, slots and context, the same HTTP load, in one run.

    python benchmarks/compare.py [--model gemma-3-270m] [--levels 1 8 16] [--threads 2] [--tokens 64] [--rounds 3]
    python benchmarks/compare.py --chat [--rounds 1]   # the multi-turn chat load instead

Each server is started on loopback with as many slots as the concurrency level, loaded
with the same streaming /v1/completions requests (equal output lengths: end-of-sequence
tokens banned), then stopped. Shared machines drift, so the run is repeated in rounds, each
round running every server at every level back to back: a ratio is the median of the
per-round ratios (both sides measured minutes apart at most), with their range.
llama-cpp-python's server serializes requests, so it runs in the first round only.
Writes results.json, results.md and results.png into benchmarks/out/ (never committed) and
prints the table with the ratios the benchmark issue targets.

--chat runs `llamaserve bench chat`'s load instead (8 clients x 4 turns sharing a ~1,500-token
system prompt, sent as the OpenAI SDK sends it, 32 tokens a turn) against each server started
fresh with 8 slots of 4096 tokens: its first run is the cold one, its second the warm one. It
also reports each server's resident memory once loaded (the KV cache is allocated then) and
after the load.

--agent runs `llamaserve bench agent`'s load (4 conversations at once x 5 turns, a ~3,900-token
system prompt of instructions and tool documentation, the growing history and ~190-token tool
results; both variants: `volatile`, whose first line changes every request, and `stable`) against
each server started fresh with 4 slots of 8192 tokens: llamaserve at its defaults and with
--cache-reuse 64 --kv-unified (reuse past a divergence, which follows new tokens in one KV
pool), llama-server at its defaults and with --cache-reuse 256. --conversations, --turns and --system-words shrink it.
Writes agent-results.json and agent-results.md:

    python benchmarks/compare.py --agent --threads 2 [--variants volatile stable] [--rounds 1]

--spec measures speculative decoding with `llamaserve bench spec`'s load (one client, a fresh
prompt every run, 256 tokens, greedy): `edit` (repeat code with one rename) and `quote` (a
summary quoting its source), both ~450-token prompts, and `free` (free writing, where drafts
mostly fail), against each server started fresh with 1 slot of 4096 tokens, 2 threads,
SmolLM2-135M-Instruct Q4_1 unless --model/--threads say otherwise: llama-server without
speculation and with each n-gram --spec-type, llamaserve --spec off and at its default (n-gram
drafts), and with --draft-model F both servers with that draft model. Each round runs every
server on every workload (a cell is the best of --runs runs); every server of a round gets the
same prompts. Writes spec-results.json and spec-results.md, and prints the target ratios:

    python benchmarks/compare.py --spec [--draft-model F] [--runs 3] [--rounds 1] [--workloads edit quote free]
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import llama_tools  # noqa: E402
from engine import batched_bench_s_tg, llama_bench_tg  # noqa: E402

import llamaserve  # noqa: E402
from llamaserve.bench import agent_load, chat_load, loadgen, spec_load, spec_prompts  # noqa: E402
from llamaserve.default_model import BENCHMARK_MODEL, MODEL_HELP, named_model  # noqa: E402

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


@contextlib.contextmanager
def started(command: Command, slots: int, log_name: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """A server on a free loopback port, ready, logging into the scratch folder; stopped after."""
    port = free_port()
    with open(llama_tools.SCRATCH / log_name, "w") as log:
        process = subprocess.Popen(command(port, slots), stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_ready(url, process)
            yield url, process
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def run_server(name: str, command: Command, spec: loadgen.LoadSpec, level: int,
               requests_per_client: int) -> loadgen.LevelResult:
    with started(command, level, f"{name}-{level}.log") as (url, _):
        level_spec = loadgen.LoadSpec(**{**spec.__dict__, "url": url})
        print(f"{name}: {level} slots", file=sys.stderr, flush=True)
        return loadgen.run(level_spec, [level], requests_per_client)[0]


def resident_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def kv_cache_bytes(name: str, command: Command, slots: int) -> int:
    """The KV cache a server allocates, as llama.cpp sizes it: llamaserve lists it with its
    model; llama-server logs it at verbosity 4 (so it is started once more, just for that)."""
    port = free_port()
    argv = command(port, slots) + (["-lv", "4"] if name == "llama-server" else [])
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, process)
        if name == "llamaserve":
            models = httpx.get(url + "/api/v1/models", timeout=10).json()["models"]
            return sum(m["memory"].get("kv_cache", 0) for m in models if m.get("loaded"))
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=30)
    sizes = [float(line.split("size =")[1].split("MiB")[0]) for line in out.splitlines()
             if "llama_kv_cache: size =" in line]
    return int(sum(sizes) * 2**20)


def run_chat_server(name: str, command: Command, spec: chat_load.ChatSpec, runs: int) -> dict:
    with started(command, spec.clients, f"{name}-chat.log") as (url, process):
        idle = resident_bytes(process.pid)  # weights, KV cache and buffers, before any request
        print(f"{name}: chat load, {spec.clients} slots", file=sys.stderr, flush=True)
        results = [chat_load.run(chat_load.ChatSpec(**{**spec.__dict__, "url": url})).as_dict()
                   for _ in range(runs)]
        return {"runs": results, "rss_idle_bytes": idle, "rss_bytes": resident_bytes(process.pid)}


CHAT_TARGETS = [  # (label, figure, run: 0 cold / 1 warm, ours / theirs at most (or at least, for tok/s))
    ("TTFT p50 of turns 2-4 / llama-server's", "ttft_later_p50_s", 0, 0.5),
    ("TTFT p50 of turn 1, cold / llama-server's cold", "ttft_turn1_p50_s", 0, 0.3),
    ("TTFT p50 of turn 1, warm / llama-server's warm", "ttft_turn1_p50_s", 1, 1.0),
    ("output tok/s of the chat load / llama-server's", "output_tok_s", 0, 1.2),
]


def chat_main(args: argparse.Namespace, bin_dir: Path, model: Path, banned: tuple[int, ...]) -> int:
    spec = chat_load.ChatSpec(url="", model=model.stem, banned_tokens=banned)
    commands = servers(bin_dir, model, args.threads, 4096)
    rounds: dict[str, list[dict]] = {}
    for round_index in range(args.rounds):
        print(f"round {round_index + 1} of {args.rounds}", file=sys.stderr, flush=True)
        for name in ("llamaserve", "llama-server"):
            rounds.setdefault(name, []).append(run_chat_server(name, commands[name], spec, runs=2))
    lines = ["| server | run | TTFT p50, turns 2-4 s | TTFT p50, turn 1 s | output tok/s | wall s "
             "| cached prompt tokens | errors |", "|---|---|---|---|---|---|---|---|"]
    for name, per_round in rounds.items():
        for r in per_round:
            for k, run in enumerate(r["runs"]):
                lines.append(f"| {name} | {('cold', 'warm')[k]} | {run['ttft_later_p50_s']:.2f} "
                             f"| {run['ttft_turn1_p50_s']:.2f} | {run['output_tok_s']:.1f} | {run['wall_s']:.1f} "
                             f"| {run['cached_fraction']:.0%} | {run['errors']} |")
    lines += ["", "| server | resident MB, loaded and idle | resident MB, after the load (prompt caches) |",
              "|---|---|---|"]
    for name, per_round in rounds.items():
        r = per_round[-1]
        lines.append(f"| {name} | {r['rss_idle_bytes'] / 2**20:.0f} | {r['rss_bytes'] / 2**20:.0f} |")
    lines += ["", "| figure | ratio | target |", "|---|---|---|"]
    for label, figure, run, target in CHAT_TARGETS:
        values = [o["runs"][run][figure] / t["runs"][run][figure]
                  for o, t in zip(rounds["llamaserve"], rounds["llama-server"])]
        lines.append(f"| {label} | {spread(values, '.3f')} | {'>=' if figure == 'output_tok_s' else '<='} {target} |")
    kv = {name: kv_cache_bytes(name, commands[name], spec.clients) for name in rounds}
    lines.append(f"| KV cache bytes ({kv['llamaserve'] / 2**20:.0f} MiB) / llama-server -np 8 -c 32768's "
                 f"({kv['llama-server'] / 2**20:.0f} MiB) | {kv['llamaserve'] / kv['llama-server']:.3f} | <= 1.0 |")
    idle = [o["rss_idle_bytes"] / t["rss_idle_bytes"] for o, t in zip(rounds["llamaserve"], rounds["llama-server"])]
    lines.append(f"| resident memory, loaded and idle / llama-server's (Python included) | {spread(idle, '.3f')} "
                 "| reference |")
    text = (f"Measured on {os.cpu_count()} CPUs, {args.threads} threads, {model.name}, "
            f"{spec.clients} clients x {spec.turns} turns, {spec.max_tokens} tokens a turn\n\n" + "\n".join(lines))
    (llama_tools.SCRATCH / "chat-results.json").write_text(json.dumps(rounds, indent=2))
    (llama_tools.SCRATCH / "chat-results.md").write_text(text + "\n")
    print(text)
    return 0


AGENT_ROWS = {  # row name -> (server, extra flags)
    "llamaserve": ("llamaserve", []),
    "llamaserve --cache-reuse 64 --kv-unified": ("llamaserve", ["--cache-reuse", "64", "--kv-unified"]),
    "llama-server": ("llama-server", []),
    "llama-server --cache-reuse 256": ("llama-server", ["--cache-reuse", "256"]),
}


def agent_main(args: argparse.Namespace, bin_dir: Path, model: Path, banned: tuple[int, ...]) -> int:
    commands = servers(bin_dir, model, args.threads, 8192)
    spec = agent_load.AgentSpec(url="", model=model.stem, conversations=args.conversations, turns=args.turns,
                                max_tokens=args.tokens, system_words=args.system_words, banned_tokens=banned)
    runs: dict[str, dict[str, list[dict]]] = {}  # row -> variant -> one result per round
    for round_index in range(args.rounds):
        for variant in args.variants:
            for row, (server, extra) in AGENT_ROWS.items():
                if args.servers and row not in args.servers:
                    continue
                print(f"round {round_index + 1}: {row}, {variant}", file=sys.stderr, flush=True)
                log = f"{row.replace(' ', '').replace('-', '')}-agent-{variant}.log"
                with started(_plus(commands[server], extra), spec.conversations, log) as (url, _):
                    result = agent_load.run(replace(spec, url=url, variant=variant)).as_dict()
                runs.setdefault(row, {}).setdefault(variant, []).append(result)
                (llama_tools.SCRATCH / "agent-results.json").write_text(json.dumps(runs, indent=2))  # so far
    lines = ["| server | variant | TTFT p50, turns 2+ s | TTFT p50, turn 1 s | wall s | prompt tokens, last turn "
             "| cached prompt tokens | reused past a divergence | errors |", "|---|---|---|---|---|---|---|---|---|"]
    for row, variants in runs.items():
        for variant, results in variants.items():
            for r in results:
                reused = "" if r["reused_fraction"] != r["reused_fraction"] else f"{r['reused_fraction']:.0%}"
                lines.append(f"| {row} | {variant} | {r['ttft_later_p50_s']:.2f} | {r['ttft_turn1_p50_s']:.2f} "
                             f"| {r['wall_s']:.1f} | {r['prompt_tokens_mean']:.0f} | {r['cached_fraction']:.0%} "
                             f"| {reused} | {r['errors']} |")

    def ratio(row: str, variant: str, ref_row: str, ref_variant: str, figure: str) -> str:
        ours, theirs = runs.get(row, {}).get(variant), runs.get(ref_row, {}).get(ref_variant)
        if not ours or not theirs:
            return "n/a"
        return spread([o[figure] / t[figure] for o, t in zip(ours, theirs)], ".3f")

    lines += ["", "| figure | " + " | ".join(r for r in AGENT_ROWS if r.startswith("llamaserve")) + " | target |",
              "|---|---|---|---|"]
    targets = [  # (label, variant, reference row, reference variant, figure, target)
        ("volatile, TTFT p50 turns 2+ / llama-server's", "volatile", "llama-server", "volatile", "ttft_later_p50_s",
         "<= 0.3"),
        ("volatile, TTFT p50 turns 2+ / llama-server --cache-reuse 256's", "volatile",
         "llama-server --cache-reuse 256", "volatile", "ttft_later_p50_s", "<= 1.0"),
        ("volatile, wall / llama-server's", "volatile", "llama-server", "volatile", "wall_s", "<= 0.5"),
        ("stable, TTFT p50 turns 2+ / llama-server's", "stable", "llama-server", "stable", "ttft_later_p50_s",
         "<= 0.5"),
    ]
    for label, variant, ref_row, ref_variant, figure, target in targets:
        cells = [ratio(row, variant, ref_row, ref_variant, figure) for row in AGENT_ROWS if row.startswith("llamaserve")]
        lines.append(f"| {label} | {' | '.join(cells)} | {target} |")
    own = [ratio(row, "volatile", row, "stable", "ttft_later_p50_s") for row in AGENT_ROWS if row.startswith("llamaserve")]
    lines.append(f"| volatile / own stable, TTFT p50 turns 2+ | {' | '.join(own)} | <= 1.5 |")
    text = (f"Measured on {os.cpu_count()} CPUs, {args.threads} threads, {model.name}, {spec.conversations} "
            f"conversations x {spec.turns} turns at once, {spec.max_tokens} tokens a turn, system prompt of "
            f"{spec.system_words} words\n\n" + "\n".join(lines))
    (llama_tools.SCRATCH / "agent-results.json").write_text(json.dumps(runs, indent=2))
    (llama_tools.SCRATCH / "agent-results.md").write_text(text + "\n")
    print(text)
    return 0


LLAMA_SPEC_TYPES = ("ngram-simple", "ngram-map-k", "ngram-cache", "ngram-mod")  # llama-server --spec-type


def _plus(command: Command, extra: list[str]) -> Command:
    return lambda port, slots: command(port, slots) + extra


def spec_rows(commands: dict[str, Command], draft: Path | None) -> dict[str, tuple[Command, dict]]:
    """Row name -> (server command, request fields the row adds). A row is a server's command
    line plus options; add one here to measure another setting."""
    ours, theirs = commands["llamaserve"], commands["llama-server"]
    rows: dict[str, tuple[Command, dict]] = {"llama-server": (theirs, {})}
    for spec_type in LLAMA_SPEC_TYPES:
        rows[f"llama-server --spec-type {spec_type}"] = (_plus(theirs, ["--spec-type", spec_type]), {})
    rows["llamaserve --spec off"] = (_plus(ours, ["--spec", "off"]), {})
    rows["llamaserve"] = (ours, {})  # the default: --spec ngram
    if draft is not None:
        # A plain model as the draft: llama-server infers no type from it, so it is named.
        rows["llama-server --spec-draft-model"] = (
            _plus(theirs, ["--spec-type", "draft-simple", "--spec-draft-model", str(draft)]), {})
        rows["llamaserve --draft-model"] = (_plus(ours, ["--draft-model", str(draft)]), {})
    return rows


SpecRuns = dict[str, list[dict]]  # row -> one entry per round: {"workloads": {name: result}} or {"error": ...}


def run_spec_row(name: str, command: Command, spec: spec_load.SpecLoadSpec) -> dict:
    """One fresh server with 1 slot, every workload; a server that does not start is a failed
    row (its log says why), not the end of the run."""
    log = "spec-" + "".join(c if c.isalnum() else "-" for c in name).strip("-") + ".log"
    print(f"{name}: {', '.join(spec.workloads)}", file=sys.stderr, flush=True)
    try:
        with started(command, 1, log) as (url, _):
            results = spec_load.run(replace(spec, url=url))
    except RuntimeError as exc:
        print(f"{name}: {exc} (see {llama_tools.SCRATCH / log})", file=sys.stderr, flush=True)
        return {"error": f"{exc} (see {log})"}
    return {"workloads": {r.workload: r.as_dict() for r in results}}


SPEC_TARGETS = [  # (label, workload, our row, reference row (None: the best llama-server --spec-type), target)
    ("edit: llamaserve / the best llama-server --spec-type", "edit", "llamaserve", None, ">= 1.2"),
    ("edit: llamaserve / llamaserve --spec off", "edit", "llamaserve", "llamaserve --spec off", ">= 2.0"),
    ("free: llamaserve / llamaserve --spec off", "free", "llamaserve", "llamaserve --spec off",
     ">= 1.0 (within noise)"),
    ("quote: llamaserve / llamaserve --spec off", "quote", "llamaserve", "llamaserve --spec off", "reference"),
    ("quote: llamaserve / the best llama-server --spec-type", "quote", "llamaserve", None, "reference"),
    ("edit: llamaserve --draft-model / llama-server --spec-draft-model", "edit", "llamaserve --draft-model",
     "llama-server --spec-draft-model", "reference"),
]


def _best(entry: dict, workload: str) -> float | None:
    result = entry.get("workloads", {}).get(workload)
    if not result or result["best_tok_s"] != result["best_tok_s"]:  # missing, or NaN: every run failed
        return None
    return result["best_tok_s"]


def spec_ratio_rows(runs: SpecRuns, workloads: list[str], rounds: int) -> list[tuple[str, str, str]]:
    """(figure, median of the per-round ratios with their range, target), for each figure
    whose workload and rows ran."""
    out = []
    for label, workload, ours, ref, target in SPEC_TARGETS:
        if workload not in workloads or ours not in runs or (ref is not None and ref not in runs):
            continue
        values, best_names = [], []
        for k in range(rounds):
            mine = _best(runs[ours][k], workload)
            if ref is not None:
                refs = {ref: _best(runs[ref][k], workload)}
            else:
                refs = {name: _best(runs[name][k], workload) for name in runs
                        if name.startswith("llama-server --spec-type ")}
            refs = {name: v for name, v in refs.items() if v}
            if mine is not None and refs:
                best = max(refs, key=refs.get)
                values.append(mine / refs[best])
                best_names.append(best.removeprefix("llama-server --spec-type "))
        if ref is None and best_names:
            label += f" ({', '.join(sorted(set(best_names)))})"
        out.append((label, spread(values, ".3f") if values else "n/a (a row failed or did not run)", target))
    return out


def spec_table(runs: SpecRuns, workloads: list[str]) -> str:
    """A row per server and workload: the best tok/s of each round (their median and range),
    the median run's, and drafts summed over every run."""
    def summed(values: list[int | None]) -> int | None:
        reported = [v for v in values if v is not None]
        return sum(reported) if reported else None

    lines = ["| server | workload | best tok/s | median tok/s | drafted | accepted | accepted % | errors |",
             "|---|---|---|---|---|---|---|---|"]
    for name, per_round in runs.items():
        failed = [e["error"] for e in per_round if "error" in e]
        if failed:
            lines.append(f"| {name} | | | | | | | {failed[0]} |")
        for workload in workloads:
            cells = [e["workloads"][workload] for e in per_round if workload in e.get("workloads", {})]
            if not cells:
                continue
            best = [c["best_tok_s"] for c in cells if c["best_tok_s"] == c["best_tok_s"]]
            medians = [c["median_tok_s"] for c in cells if c["median_tok_s"] == c["median_tok_s"]]
            drafted, accepted = summed([c["drafted"] for c in cells]), summed([c["accepted"] for c in cells])
            share = f"{accepted / drafted:.0%}" if drafted and accepted is not None else ""
            lines.append(f"| {name} | {workload} | {spread(best, '.1f') if best else 'n/a'} "
                         f"| {format(statistics.median(medians), '.1f') if medians else 'n/a'} "
                         f"| {'' if drafted is None else drafted} | {'' if accepted is None else accepted} "
                         f"| {share} | {sum(c['errors'] for c in cells)} |")
    return "\n".join(lines)


def spec_main(args: argparse.Namespace, bin_dir: Path, model_name: str, model: Path,
              banned: tuple[int, ...]) -> int:
    draft = Path(args.draft_model).expanduser() if args.draft_model else None
    spec = spec_load.SpecLoadSpec(url="", model=model.stem, workloads=tuple(args.workloads), runs=args.runs,
                                  max_tokens=args.tokens, banned_tokens=banned)
    rows = spec_rows(servers(bin_dir, model, args.threads, 4096), draft)
    runs: SpecRuns = {}
    for round_index in range(args.rounds):
        print(f"round {round_index + 1} of {args.rounds}", file=sys.stderr, flush=True)
        for name, (command, fields) in rows.items():
            if args.servers and name not in args.servers:
                continue
            # every server of a round gets the same prompts; each round new ones
            row_spec = replace(spec, fields=fields, seed=f"round-{round_index}")
            runs.setdefault(name, []).append(run_spec_row(name, command, row_spec))
    ratios = spec_ratio_rows(runs, list(args.workloads), args.rounds)
    machine = (f"{os.cpu_count()} CPUs, {args.threads} threads, {model_name} ({model.name})"
               + (f", draft {draft.name}" if draft else "") + f", 1 slot, 4096 context, {args.tokens} output "
               f"tokens, one client, best of {args.runs} runs a cell, {args.rounds} round(s)")
    text = "\n".join([
        f"Measured on {machine}; tok/s is completion tokens over the request's wall time (prefill "
        "included); drafted and accepted are summed over the runs.", "",
        spec_table(runs, list(args.workloads)),
        *(["", "| figure | ratio | target |", "|---|---|---|"] if ratios else []),
        *(f"| {label} | {value} | {target} |" for label, value, target in ratios)])
    out = llama_tools.SCRATCH
    (out / "spec-results.json").write_text(json.dumps(
        {"machine": machine, "model": {"name": model_name, "file": model.name},
         "draft_model": str(draft) if draft else None, "workloads": list(args.workloads), "runs_per_cell": args.runs,
         "tokens": args.tokens, "banned_tokens": list(banned), "rounds": args.rounds, "results": runs,
         "ratios": ratios}, indent=2))
    (out / "spec-results.md").write_text(text + "\n")
    print(text)
    print(f"\nwrote {out / 'spec-results.json'}, spec-results.md")
    return 0 if all("error" not in e for rs in runs.values() for e in rs) else 1


def servers(bin_dir: Path, model: Path, threads: int, n_ctx: int, gpu_layers: int = 0) -> dict[str, Command]:
    """gpu_layers: layers both servers offload (-1: all; a CUDA build of each, scripts/gpu_check.sh)."""
    found: dict[str, Command] = {
        "llamaserve": lambda port, slots: [
            sys.executable, "-m", "llamaserve", "serve", "--model", str(model),
            "--threads", str(threads), "--parallel", str(slots), "--ctx", str(n_ctx),
            "--port", str(port), "--log-level", "warning", "--gpu-layers", str(gpu_layers)],
        "llama-server": lambda port, slots: [
            str(bin_dir / "llama-server"), "-m", str(model), "-t", str(threads),
            "-tb", str(threads), "-np", str(slots), "-c", str(n_ctx * slots),
            "--host", "127.0.0.1", "--port", str(port), "--no-webui", "-ngl", str(gpu_layers)],
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

Runs = dict[str, dict[int, list[dict]]]  # server -> level -> one result per round


def median_run(runs: list[dict]) -> dict:
    """The run with the median throughput (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda r: r["output_tok_s"])
    return ordered[(len(ordered) - 1) // 2]


def paired(ours: list[float], refs: list[float], combine: Callable[[float, float], float]) -> list[float]:
    """combine(ours, ref) for each round that measured both."""
    return [combine(o, r) for o, r in zip(ours, refs)]


def spread(values: list[float], fmt: str) -> str:
    text = format(statistics.median(values), fmt)
    if len(values) > 1:
        text += f" ({format(min(values), fmt)} to {format(max(values), fmt)}, {len(values)} rounds)"
    return text


def ratio_rows(runs: Runs, s_tg: list[dict[int, float]], tg: list[float]) -> list[tuple[str, str, str]]:
    """(figure, median of the per-round values with their range, target)."""
    rows = []
    ours = runs.get("llamaserve", {})
    tok_s = {name: {level: [r["output_tok_s"] for r in rs] for level, rs in levels.items()}
             for name, levels in runs.items()}
    for label, level, ref_name, target in TARGETS:
        refs = tok_s.get(ref_name, {}).get(level)
        if refs and level in ours:
            values = paired(tok_s["llamaserve"][level], refs, lambda o, r: o / r)
            rows.append((label, spread(values, ".3f"), f">= {target}"))
    if 1 in ours and tg:
        values = paired(tok_s["llamaserve"][1], tg, lambda o, r: o / r)
        rows.append((f"HTTP single stream / llama-bench tg ({statistics.median(tg):.1f} tok/s, "
                     "no HTTP, no prompt)", spread(values, ".3f"), "reference"))
    for level in sorted(ours):
        refs = [round_s_tg[level] for round_s_tg in s_tg if level in round_s_tg]
        if refs:
            values = paired(tok_s["llamaserve"][level], refs, lambda o, r: o / r)
            rows.append((f"HTTP aggregate at {level} / llama-batched-bench S_TG at B={level} "
                         f"({statistics.median(refs):.1f} tok/s)", spread(values, ".3f"), ">= 0.95"))
    if 1 in ours and 1 in runs.get("llama-server", {}):
        values = paired([r["ttft_p50_ms"] for r in ours[1]],
                        [r["ttft_p50_ms"] for r in runs["llama-server"][1]], lambda o, r: o - r)
        rows.append(("TTFT p50 single stream minus llama-server's (ms)", spread(values, "+.1f"), "<= +5"))
    return rows


def table(results: dict[str, dict[int, dict]], ratios: list[tuple[str, str, str]]) -> str:
    lines = ["| server | concurrency | output tok/s | req/s | TTFT p50 ms | TTFT p99 ms "
             "| ITL p50 ms | ITL p99 ms | errors | retried | client CPU % |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, levels in results.items():
        for level, r in sorted(levels.items()):
            lines.append(
                f"| {name} | {level} | {r['output_tok_s']:.1f} | {r['request_s']:.2f} "
                f"| {r['ttft_p50_ms']:.1f} | {r['ttft_p99_ms']:.1f} | {r['itl_p50_ms']:.1f} "
                f"| {r['itl_p99_ms']:.1f} | {r['errors']} | {r['retried']} | {r['client_cpu_pct']:.0f} |")
    lines += ["", "| figure | ratio | target |", "|---|---|---|"]
    lines += [f"| {label} | {value} | {target} |" for label, value, target in ratios]
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
    ttft.set(xlabel="concurrent clients", ylabel="TTFT p50 (ms, log scale)", title="Time to first token",
             yscale="log")
    for ax in (tps, ttft):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def spec_banned(engine: llamaserve.Engine) -> tuple[int, ...]:
    """End-of-generation tokens, and ChatML's markers where the vocabulary has them (the spec
    prompts are ChatML): SmolLM2's 0, 1, 2 among them."""
    banned = set(engine.metadata["eog_tokens"])
    for marker in ("<|im_start|>", "<|im_end|>"):
        ids = engine.tokenize(marker, add_special=False)
        if len(ids) == 1:
            banned.add(ids[0])
    return tuple(sorted(banned))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help=MODEL_HELP + " (--spec, --agent: default, SmolLM2-135M-Instruct)")
    parser.add_argument("--threads", type=int, help="default: every CPU (--spec: 2)")
    parser.add_argument("--tokens", type=int, help="output tokens per request (default 64; --spec: 256)")
    parser.add_argument("--ctx", type=int, default=512, help="context per slot")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument("--requests-per-client", type=int, default=3)
    parser.add_argument("--rounds", type=int, help="repeats of the whole run, interleaved (default 3; --spec: 1)")
    parser.add_argument("--servers", nargs="+", help="only these (default: every one found; "
                        "--spec: row names, e.g. 'llamaserve --spec off')")
    parser.add_argument("--gpu-layers", type=int, default=0,
                        help="layers both servers offload to the GPU (-1: all); CUDA builds of both "
                             "(scripts/gpu_check.sh), the load rows only")
    parser.add_argument("--chat", action="store_true", help="the multi-turn chat load (see above)")
    parser.add_argument("--spec", action="store_true", help="speculative decoding, one client (see above)")
    parser.add_argument("--agent", action="store_true", help="the agent loop, both variants (see above)")
    parser.add_argument("--variants", nargs="+", choices=list(agent_load.VARIANTS), default=list(agent_load.VARIANTS),
                        help="--agent: the variants")
    parser.add_argument("--conversations", type=int, default=4, help="--agent: conversations at once")
    parser.add_argument("--turns", type=int, default=5, help="--agent: turns of each conversation")
    parser.add_argument("--system-words", type=int, default=agent_load.AgentSpec.system_words,
                        help="--agent: system prompt length in words")
    parser.add_argument("--draft-model", help="--spec: also both servers with this GGUF as the draft model")
    parser.add_argument("--workloads", nargs="+", choices=list(spec_prompts.WORKLOADS), default=list(spec_prompts.WORKLOADS),
                        help="--spec: the workloads")
    parser.add_argument("--runs", type=int, default=3, help="--spec: runs per cell (the best counts)")
    args = parser.parse_args()
    args.model = args.model or ("default" if args.spec or args.agent else BENCHMARK_MODEL)
    args.threads = args.threads or (2 if args.spec else os.cpu_count() or 2)
    args.tokens = args.tokens or (256 if args.spec else 32 if args.agent else 64)
    args.rounds = args.rounds or (1 if args.spec or args.agent else 3)
    model_name, model = named_model(args.model)
    print(f"model {model_name} ({model.name})", file=sys.stderr, flush=True)

    tools = ["llama-server"] if args.spec or args.agent else ["llama-server", "llama-bench", "llama-batched-bench"]
    bin_dir = llama_tools.build(tools)
    with llamaserve.Engine.load(model, n_ctx=64, n_parallel=1) as engine:
        banned = spec_banned(engine) if args.spec else tuple(engine.metadata["eog_tokens"])
    if args.spec:
        return spec_main(args, bin_dir, model_name, model, banned)
    if args.chat:
        return chat_main(args, bin_dir, model, banned)
    if args.agent:
        return agent_main(args, bin_dir, model, banned)
    spec = loadgen.LoadSpec(url="", model=model.stem, max_tokens=args.tokens, banned_tokens=banned)

    widths = [level for level in args.levels if level > 1]
    runs: Runs = {}
    s_tg: list[dict[int, float]] = []
    tg: list[float] = []
    for round_index in range(args.rounds):
        print(f"round {round_index + 1} of {args.rounds}", file=sys.stderr, flush=True)
        for name, command in servers(bin_dir, model, args.threads, args.ctx, args.gpu_layers).items():
            if args.servers and name not in args.servers:
                continue
            if name == "llama-cpp-python" and round_index > 0:
                continue
            for level in args.levels:
                r = run_server(name, command, spec, level, args.requests_per_client)
                runs.setdefault(name, {}).setdefault(level, []).append(r.as_dict())
        if args.gpu_layers:  # llama-bench's rows are the CPU engine's reference
            continue
        if 1 in args.levels:
            tg.append(llama_bench_tg(bin_dir, model, args.threads, args.tokens))
        if widths:
            s_tg.append(batched_bench_s_tg(bin_dir, model, args.threads, args.tokens, widths))

    results = {name: {level: median_run(rs) for level, rs in levels.items()}
               for name, levels in runs.items()}
    ratios = ratio_rows(runs, s_tg, tg)
    out = llama_tools.SCRATCH
    machine = (f"{os.cpu_count()} CPUs, {args.threads} threads, {model_name} ({model.name}), "
               f"{args.tokens} output tokens" + (f", --gpu-layers {args.gpu_layers}" if args.gpu_layers else ""))
    (out / "results.json").write_text(json.dumps(
        {"machine": machine, "model": {"name": model_name, "file": model.name}, "rounds": args.rounds, "results": results, "runs": runs,
         "llama_bench_tg": tg, "batched_bench_s_tg": s_tg, "ratios": ratios}, indent=2))
    text = (f"Measured on {machine}; each row is the median of {args.rounds} rounds "
            f"(llama-cpp-python: one).\n\n" + table(results, ratios))
    (out / "results.md").write_text(text + "\n")
    print(text)
    try:
        plot(results, out / "results.png", machine)
        print(f"\nwrote {out / 'results.json'}, results.md, results.png")
    except ImportError:  # matplotlib is optional
        print(f"\nwrote {out / 'results.json'}, results.md (no results.png: matplotlib is not installed)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
