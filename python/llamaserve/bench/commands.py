"""`llamaserve bench serve|chat|spec|engine`: the load generators and the in-process figures."""
from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _report(results: list[Any], json_path: str | None, failed: Callable[[Any], str]) -> int:
    """The first error of each failed run, the JSON file if asked for, and the exit status."""
    for r in results:
        if r.first_error:
            print(f"{failed(r)}; the first: {r.first_error}")
    if json_path:
        Path(json_path).write_text(json.dumps([r.as_dict() for r in results], indent=2))
    return 1 if any(r.errors for r in results) else 0


def _banned(args: argparse.Namespace) -> tuple[int, ...]:
    """--ban, else the served model's own end tokens (asked of the server)."""
    if args.ban is not None:
        return tuple(args.ban)
    from llamaserve.bench.end_tokens import served_end_tokens

    ids = served_end_tokens(args.url, args.model, args.api_key)
    print(f"banned end tokens: {', '.join(map(str, ids))}" if ids else
          "the server has no /tokenize: no end tokens banned (--ban gives their ids)")
    return ids


def _serve(args: argparse.Namespace) -> int:
    from llamaserve.bench import loadgen

    spec = loadgen.LoadSpec(url=args.url.rstrip("/"), model=args.model,
                            prompts=tuple(args.prompt or loadgen.PROMPTS),
                            max_tokens=args.tokens, banned_tokens=_banned(args),
                            api_key=args.api_key)
    results = loadgen.run(spec, args.levels, args.requests_per_client)
    print(f"model {results[0].model or '?'} (as the server names it), {args.tokens} tokens")
    print("| concurrency | output tok/s | req/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms "
          "| ITL p99 ms | errors | retried | client CPU % |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r.concurrency} | {r.output_tok_s:.1f} | {r.request_s:.2f} | {r.ttft_p50_ms:.1f} "
              f"| {r.ttft_p99_ms:.1f} | {r.itl_p50_ms:.1f} | {r.itl_p99_ms:.1f} | {r.errors} "
              f"| {r.retried} | {r.client_cpu_pct:.0f} |")
    return _report(results, args.json, lambda r: f"concurrency {r.concurrency}: {r.errors} failed")


def _chat(args: argparse.Namespace) -> int:
    from llamaserve.bench import chat_load

    spec = chat_load.ChatSpec(url=args.url.rstrip("/"), model=args.model, clients=args.clients,
                              turns=args.turns, max_tokens=args.tokens, system_words=args.system_words,
                              banned_tokens=_banned(args), api_key=args.api_key)
    runs = [chat_load.run(spec) for _ in range(args.runs)]
    print(f"{args.clients} clients x {args.turns} turns sharing one system prompt, {args.tokens} tokens a turn")
    print("| run | TTFT p50, turn 1 s | TTFT p50, later turns s | output tok/s | wall s | cached prompt tokens | errors |")
    print("|---|---|---|---|---|---|---|")
    for k, r in enumerate(runs, 1):
        print(f"| {k} | {r.ttft_turn1_p50_s:.2f} | {r.ttft_later_p50_s:.2f} | {r.output_tok_s:.1f} "
              f"| {r.wall_s:.1f} | {r.cached_fraction:.0%} | {r.errors} |")
    return _report(runs, args.json, lambda r: f"{r.errors} turns failed")


def _agent(args: argparse.Namespace) -> int:
    from llamaserve.bench import agent_load

    variants = agent_load.VARIANTS if args.variant == "both" else (args.variant,)
    results = []
    for variant in variants:
        spec = agent_load.AgentSpec(url=args.url.rstrip("/"), variant=variant, model=args.model,
                                    conversations=args.conversations, turns=args.turns, max_tokens=args.tokens,
                                    system_words=args.system_words, tool_words=args.tool_words,
                                    banned_tokens=_banned(args), api_key=args.api_key)
        results.append(agent_load.run(spec))
    print(f"{args.conversations} conversations x {args.turns} turns at once, {args.tokens} tokens a turn "
          "(volatile: the system prompt's first line changes every request)")
    print("| variant | TTFT p50, turns 2+ s | TTFT p50, turn 1 s | wall s | prompt tokens, last turn "
          "| cached prompt tokens | reused past a divergence | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        reused = "n/a" if r.reused_fraction != r.reused_fraction else f"{r.reused_fraction:.0%}"
        print(f"| {r.variant} | {r.ttft_later_p50_s:.2f} | {r.ttft_turn1_p50_s:.2f} | {r.wall_s:.1f} "
              f"| {r.prompt_tokens_mean:.0f} | {r.cached_fraction:.0%} | {reused} | {r.errors} |")
    for r in results:
        if r.cache_miss_example:
            print(f"{r.variant}: the server's last cache_miss: {r.cache_miss_example}")
    return _report(results, args.json, lambda r: f"{r.variant}: {r.errors} turns failed")


def _blank(value: int | None) -> str:
    return "" if value is None else str(value)


def _spec(args: argparse.Namespace) -> int:
    from llamaserve.bench import spec_load

    spec = spec_load.SpecLoadSpec(url=args.url.rstrip("/"), model=args.model,
                                  workloads=tuple(args.workloads), runs=args.runs, max_tokens=args.tokens,
                                  banned_tokens=_banned(args), fields=dict(args.field or []),
                                  warmup=not args.no_warmup, api_key=args.api_key)
    results = spec_load.run(spec)
    print(f"one client, {args.tokens} tokens a run, best of {args.runs} runs a workload, a fresh prompt each "
          "(tok/s: completion tokens over the request's wall time, prefill included)")
    print("| workload | best tok/s | median tok/s | drafted | accepted | errors |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r.workload} | {r.best_tok_s:.1f} | {r.median_tok_s:.1f} | {_blank(r.drafted)} "
              f"| {_blank(r.accepted)} | {r.errors} |")
    return _report(results, args.json, lambda r: f"{r.workload}: {r.errors} of {r.runs} runs failed")


def _engine(args: argparse.Namespace) -> int:
    from llamaserve.bench import engine_bench
    from llamaserve.default_model import named_model

    name, model = named_model(args.model)
    print(f"model {name} ({model.name}), {args.threads} threads, {args.tokens} tokens")
    print(f"single-stream decode: {engine_bench.single_stream_decode(model, args.threads, args.tokens):.1f} tok/s")
    for width in args.widths:
        rate = engine_bench.batched_decode(model, args.threads, args.tokens, width)
        print(f"batched decode, {width} streams: {rate:.1f} tok/s")
    print(f"prompt processing (512 tokens): {engine_bench.prompt_processing(model, args.threads):.1f} tok/s")
    return 0


def _token_ids(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()]


def _field(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=JSON, got {text!r}")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        raise argparse.ArgumentTypeError(f"{name}: {value!r} is not JSON") from None


def _add_load_options(parser: argparse.ArgumentParser, unit: str) -> None:
    """What every HTTP load shares: equal lengths, the key, the results file."""
    parser.add_argument("--ban", type=_token_ids,
                        help=f"end-of-sequence token ids to ban so every {unit} has --tokens tokens, "
                             "comma-separated (default: the served model's own, asked of its /tokenize)")
    parser.add_argument("--api-key")
    parser.add_argument("--json", help="also write the results here")


def add_bench_commands(commands: argparse._SubParsersAction) -> None:
    from llamaserve.bench.spec_prompts import WORKLOADS
    from llamaserve.default_model import EMBEDDED

    bench = commands.add_parser("bench", help="benchmarks: HTTP load or in-process engine figures")
    kinds = bench.add_subparsers(dest="bench_command", required=True)

    serve = kinds.add_parser("serve", help="load an OpenAI-compatible server over HTTP")
    serve.add_argument("--url", required=True, help="server root, e.g. http://127.0.0.1:8000")
    serve.add_argument("--model", default="default")
    serve.add_argument("--levels", type=int, nargs="+", default=[1, 4, 8])
    serve.add_argument("--tokens", type=int, default=64, help="output tokens per request")
    serve.add_argument("--requests-per-client", type=int, default=3)
    serve.add_argument("--prompt", action="append",
                       help="a prompt to send (repeat for several, used in turn; default: 16 "
                            "different story prompts)")
    _add_load_options(serve, "output")
    serve.set_defaults(run=_serve)

    chat = kinds.add_parser("chat", help="multi-turn chats sharing a system prompt, as the OpenAI SDK "
                            "sends them, against any OpenAI-compatible server")
    chat.add_argument("--url", required=True, help="server root, e.g. http://127.0.0.1:8000")
    chat.add_argument("--model", default="default")
    chat.add_argument("--clients", type=int, default=8)
    chat.add_argument("--turns", type=int, default=4)
    chat.add_argument("--tokens", type=int, default=32, help="output tokens per turn")
    chat.add_argument("--system-words", type=int, default=1100,
                      help="length of the shared system prompt in words (1100: about 1,500 tokens)")
    chat.add_argument("--runs", type=int, default=2, help="times to run the same conversations "
                      "(the second shows what a server keeps between them)")
    _add_load_options(chat, "turn")
    chat.set_defaults(run=_chat)

    agent = kinds.add_parser("agent", help="the agent loop: conversations resending a long system prompt, "
                             "their history and tool results every turn, against any OpenAI-compatible server")
    agent.add_argument("--url", required=True, help="server root, e.g. http://127.0.0.1:8000")
    agent.add_argument("--model", default="default")
    agent.add_argument("--variant", choices=["volatile", "stable", "both"], default="both",
                       help="volatile: the system prompt's first line changes every request; stable: never")
    agent.add_argument("--conversations", type=int, default=4, help="conversations at once")
    agent.add_argument("--turns", type=int, default=5)
    agent.add_argument("--tokens", type=int, default=32, help="output tokens per turn")
    agent.add_argument("--system-words", type=int, default=2630,
                       help="length of the system prompt in words (2630: about 3,900 tokens)")
    agent.add_argument("--tool-words", type=int, default=36,
                       help="length of each tool result in words (36: about 190 tokens)")
    _add_load_options(agent, "turn")
    agent.set_defaults(run=_agent)

    spec = kinds.add_parser("spec", help="one client, fresh prompts whose output repeats them (or not): "
                            "what speculative decoding buys, against any OpenAI-compatible server")
    spec.add_argument("--url", required=True, help="server root, e.g. http://127.0.0.1:8000")
    spec.add_argument("--model", default="default")
    spec.add_argument("--workloads", nargs="+", choices=list(WORKLOADS), default=list(WORKLOADS),
                      help="edit: repeat code with one rename; quote: a summary quoting its source; "
                           "free: free writing (drafts mostly fail)")
    spec.add_argument("--runs", type=int, default=3, help="runs per workload, each a fresh prompt (the best counts)")
    spec.add_argument("--tokens", type=int, default=256, help="output tokens per run")
    spec.add_argument("--field", type=_field, action="append", metavar="NAME=JSON",
                      help="a server-specific request field to add, e.g. speculative=false (repeatable)")
    spec.add_argument("--no-warmup", action="store_true", help="skip the short untimed request sent first")
    _add_load_options(spec, "run")
    spec.set_defaults(run=_spec)

    engine = kinds.add_parser("engine", help="in-process decode and prompt figures")
    engine.add_argument("--model", default="default",
                        help=f"GGUF file, or an embedded model ({', '.join(['default', *EMBEDDED])}); "
                             "default: the default model, which the set-up fetched")
    engine.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    engine.add_argument("--tokens", type=int, default=64)
    engine.add_argument("--widths", type=int, nargs="+", default=[8, 16])
    engine.set_defaults(run=_engine)

