#!/usr/bin/env python3
"""What reuse past a divergence changes in the output: greedy replies with reuse against a full
recompute of the same prompts, on the agent load and the chat load.

    python benchmarks/cache_reuse_drift.py [--replies 20] [--tokens 32] [--system-words 800] [--cache-reuse 64]

Two engines load the same model: one reuses past a divergence (one KV pool, --cache-reuse N),
the other never does (its cache serves only the prompt's unchanged prefix, exactly). Each load is
a chain of `--replies` requests, every one departing from the one before it where real clients do:

- agent: the system prompt's first line changes every request (bench agent's volatile variant),
  and the conversation grows by the reply and a tool result each turn (the last --window turns
  are kept, as agents that compact their history do: the oldest turn leaving is a second
  divergence, mid-prompt);
- chat: the first user message of a conversation with a long system prompt and four turns of
  history is edited, as a user editing an earlier message does; the history after it is resent.

Both engines get the same prompts (the history carries the full recompute's replies). Reported
per load: how many replies are token for token the same, where the others first differ, and the
mean |difference| of the chosen tokens' log-probabilities over the tokens both chose alike.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import llamaserve
from llamaserve.bench.agent_load import system_prompt as agent_system
from llamaserve.bench.agent_load import tool_result
from llamaserve.bench.chat_load import FOLLOW_UPS, TOPICS
from llamaserve.bench.chat_load import system_prompt as chat_system
from llamaserve.default_model import named_model


def chatml(messages: list[tuple[str, str]]) -> str:
    """SmolLM2's template (ChatML), rendered here so that both engines see identical text."""
    return "".join(f"<|im_start|>{role}\n{text}<|im_end|>\n" for role, text in messages) + "<|im_start|>assistant\n"


def reply(engine: llamaserve.Engine, prompt: str, tokens: int) -> tuple[list[int], list[float], dict]:
    stream = engine.stream(prompt, max_tokens=tokens, temperature=0, logprobs=0, ignore_eos=True)
    completion = stream.completion()
    records = stream.take_token_logprobs()
    return [r[0] for r in records], [r[1] for r in records], {
        "text": completion.text, "cached": completion.usage.cached_tokens,
        "reused": completion.usage.reused_tokens, "ttft": completion.time_to_first_token,
        "prompt_tokens": completion.usage.prompt_tokens}


def agent_prompts(window: int, system_words: int, history: list[str]) -> Callable[[int], str]:
    def prompt(i: int) -> str:
        messages = [("system", agent_system(system_words, f"x-agent-header: cch={(7919 * (i + 1)) ** 3 % 10**10:010d}")),
                    ("user", "Task: the tests of area 3 fail since the last change to module 15. Fix it.")]
        first = max(0, len(history) - window)
        for k in range(first, len(history)):  # the replies so far (the full recompute's)
            messages += [("assistant", history[k]), ("user", tool_result(0, k + 1, 36))]
        return chatml(messages)
    return prompt


def chat_prompts(window: int, system_words: int, history: list[str]) -> Callable[[int], str]:
    fixed = ["I ordered it two weeks ago.", "The order number is 4417.", "Yes, the address is right.",
             "Thank you, that helps."]

    def prompt(i: int) -> str:
        messages = [("system", chat_system(system_words)),
                    ("user", f"Hello, I need help with {TOPICS[i % len(TOPICS)]}, case {i}.")]
        for k, text in enumerate(fixed):
            messages += [("assistant", text), ("user", FOLLOW_UPS[k % len(FOLLOW_UPS)])]
        return chatml(messages)
    return prompt


def run_load(name: str, make, reuse: llamaserve.Engine, ref: llamaserve.Engine, args) -> dict:  # noqa: ANN001
    history: list[str] = []
    prompt = make(args.window, args.system_words, history)
    reply(reuse, prompt(0), 1)  # the cache every later request departs from
    reply(ref, prompt(0), 1)
    cases = []
    for i in range(1, args.replies + 1):
        ids_r, lps_r, info_r = reply(reuse, prompt(i), args.tokens)
        ids_f, lps_f, info_f = reply(ref, prompt(i), args.tokens)
        history.append(info_f["text"])
        same = 0
        while same < min(len(ids_r), len(ids_f)) and ids_r[same] == ids_f[same]:
            same += 1
        cases.append({"same": ids_r == ids_f, "first_difference": None if ids_r == ids_f else same,
                      "mean_abs_dlogprob": statistics.fmean(abs(a - b) for a, b in zip(lps_r[:same], lps_f[:same]))
                      if same else None,
                      "prompt_tokens": info_r["prompt_tokens"], "reused": info_r["reused"],
                      "cached": info_r["cached"], "ttft_reuse": info_r["ttft"], "ttft_full": info_f["ttft"]})
        print(f"{name} {i}: same={cases[-1]['same']} first_difference={cases[-1]['first_difference']} "
              f"reused={info_r['reused']}/{info_r['prompt_tokens']}", file=sys.stderr, flush=True)
    dlp = [c["mean_abs_dlogprob"] for c in cases if c["mean_abs_dlogprob"] is not None]
    return {"load": name, "replies": len(cases), "same": sum(c["same"] for c in cases),
            "first_difference_median": statistics.median([c["first_difference"] for c in cases if not c["same"]] or [0]),
            "mean_abs_dlogprob": statistics.fmean(dlp) if dlp else None,
            "reused_fraction": sum(c["reused"] for c in cases) / sum(c["prompt_tokens"] for c in cases),
            "ttft_reuse_p50": statistics.median(c["ttft_reuse"] for c in cases),
            "ttft_full_p50": statistics.median(c["ttft_full"] for c in cases), "cases": cases}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--replies", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=32, help="tokens per reply")
    parser.add_argument("--system-words", type=int, default=800, help="system prompt length (800: ~1,200 tokens)")
    parser.add_argument("--window", type=int, default=3, help="agent: the turns of history kept")
    parser.add_argument("--cache-reuse", type=int, default=64, help="the shortest chunk reused")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--loads", nargs="+", choices=["agent", "chat"], default=["agent", "chat"])
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    name, model = named_model(args.model)
    common = {"n_ctx": 8192, "n_parallel": 1, "n_threads": args.threads, "spec": "off"}
    reuse = llamaserve.Engine.load(model, kv_unified=True, cache_reuse=args.cache_reuse, **common)
    ref = llamaserve.Engine.load(model, cache_reuse=0, **common)
    makers = {"agent": agent_prompts, "chat": chat_prompts}
    results = [run_load(load, makers[load], reuse, ref, args) for load in args.loads]
    reuse.close()
    ref.close()
    print(f"{name} ({model.name}), {args.threads} threads, --cache-reuse {args.cache_reuse}, "
          f"{args.replies} replies of {args.tokens} tokens a load, greedy")
    print("| load | replies the same | first difference (median token) | mean abs d logprob | "
          "prompt tokens reused | TTFT p50 reuse s | TTFT p50 recompute s |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        dlp = "n/a" if r["mean_abs_dlogprob"] is None else f"{r['mean_abs_dlogprob']:.4f}"
        print(f"| {r['load']} | {r['same']}/{r['replies']} | {r['first_difference_median']} | {dlp} "
              f"| {r['reused_fraction']:.0%} | {r['ttft_reuse_p50']:.2f} | {r['ttft_full_p50']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
