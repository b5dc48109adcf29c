"""llama-cpp-python's API from several threads: N threads calling
Llama.create_chat_completion at once against the same N calls one after another, on one
`llamaserve.Llama` (llama-cpp-python itself serves one call at a time: ratio 1.0).

    python benchmarks/compat_threads.py [--model PATH] [--threads 8] [--max-tokens 96]
"""
from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

from llamaserve import Llama, default_model_path

# Asks for long answers, so every reply runs to max_tokens: the two ways do the same work.
QUESTIONS = [f"Write a long story about {topic}." for topic in
             ("a lighthouse", "a dragon", "the sea", "a robot", "a garden", "a city", "a train", "winter")]


def ask(llm: Llama, i: int, max_tokens: int) -> int:
    reply = llm.create_chat_completion(messages=[{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}],
                                       max_tokens=max_tokens, temperature=0.0)
    return reply["usage"]["completion_tokens"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(default_model_path()))
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--n-threads", type=int, default=0, help="CPU threads for the engine (0: all)")
    args = parser.parse_args()
    llm = Llama(model_path=args.model, n_ctx=1024, n_threads=args.n_threads or None, verbose=False)
    ask(llm, 0, 8)  # warm-up
    start = time.perf_counter()
    sequential = sum(ask(llm, i, args.max_tokens) for i in range(args.threads))
    one_by_one = time.perf_counter() - start
    start = time.perf_counter()
    with ThreadPoolExecutor(args.threads) as pool:
        together = sum(pool.map(lambda i: ask(llm, i, args.max_tokens), range(args.threads)))
    at_once = time.perf_counter() - start
    print(f"model: {args.model}")
    print(f"{args.threads} calls one after another: {one_by_one:.2f} s ({sequential} tokens)")
    print(f"{args.threads} calls from {args.threads} threads at once: {at_once:.2f} s ({together} tokens)")
    print(f"ratio (target <= 0.6): {at_once / one_by_one:.2f}")
    llm.close()


if __name__ == "__main__":
    main()
