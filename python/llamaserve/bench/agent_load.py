"""`llamaserve bench agent`: the agent loop. Several conversations at once, each turn resending
a long system prompt (instructions and tool documentation, ~3,900 tokens by default), the growing
history of the assistant's replies and of tool results (~180 tokens each), as the OpenAI SDK sends
it. In the `volatile` variant the system prompt's first line changes with every request, as the
billing or request header of some coding agents and any timestamped preamble do: a prefix cache
then misses at the first line every turn, and only reuse past a divergence saves the rest.

It reports the time to first token of turn 1 (the whole prompt is new) and of turns 2 and later
(what the server keeps between turns), the wall time, and the prompt tokens the server says it
served from its cache (and, from llamaserve, reused past a divergence)."""
from __future__ import annotations

import asyncio
import random
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from llamaserve.bench.openai_turn import LoadResult, stream_turn

VARIANTS = ("volatile", "stable")

TOOLS = (
    ("read_file", "Read a file of the workspace.", ("path: the file, relative to the workspace root",
                                                    "start_line: the first line to return (default 1)",
                                                    "end_line: the last line to return (default: the end)")),
    ("list_dir", "List a folder.", ("path: the folder", "depth: how many levels to descend (default 1)")),
    ("grep", "Search files for a regular expression.", ("pattern: the expression",
                                                         "path: where to search (default: everywhere)",
                                                         "max_results: how many matches to return")),
    ("edit_file", "Replace one exact span of a file.", ("path: the file", "old: the text to replace, exactly once",
                                                        "new: the replacement")),
    ("write_file", "Create or overwrite a file.", ("path: the file", "content: the whole new content")),
    ("run_tests", "Run the test suite or a part of it.", ("selector: a test file or test id (default: all)",
                                                          "timeout: seconds before the run is stopped")),
    ("run_command", "Run a shell command in the workspace.", ("command: the command line",
                                                              "timeout: seconds before it is stopped")),
    ("git_diff", "Show the uncommitted changes.", ("path: limit to this path (default: all)",)),
    ("search_docs", "Search the project's documentation.", ("query: what to look for",
                                                             "limit: how many passages to return")),
    ("ask_user", "Ask the user a question and wait for the answer.", ("question: one short question",)),
)


def system_prompt(words: int, header: str) -> str:
    """The agent's preamble: a header line, numbered working rules, then the tool documentation
    (the rules repeat with other numbers until the preamble has about `words` words)."""
    docs = []
    for name, summary, params in TOOLS:
        lines = [f"## Tool `{name}`", summary, "Parameters:"]
        lines += [f"- {p}" for p in params]
        lines.append(f'Example: {{"tool": "{name}", "arguments": {{"{params[0].split(":")[0]}": "..."}}}}')
        lines.append(f"Call `{name}` only when its result changes what you do next; never call it twice "
                     "with the same arguments in a row.")
        docs.append("\n".join(lines))
    tool_docs = "# Tools\n" + "\n\n".join(docs)
    rules: list[str] = []
    i = 0
    budget = words - len(tool_docs.split()) - len(header.split())
    while sum(len(r.split()) for r in rules) < budget:
        rules.append(f"Rule {i + 1}: before changing module {i % 23}, read the files it imports, keep "
                     f"the public names of section {i % 11} stable, run the tests of area {i % 7}, and "
                     f"report what you changed in at most {i % 4 + 2} sentences.")
        i += 1
    return (f"{header}\nYou are a coding agent working in a software repository. Follow these rules.\n"
            + "\n".join(rules) + "\n\n" + tool_docs)


def tool_result(conversation: int, turn: int, words: int) -> str:
    """A deterministic tool output of about `words` words (~190 tokens at 36)."""
    tool = TOOLS[(conversation + turn) % len(TOOLS)][0]
    lines = [f"Result of {tool} (call {turn}):"]
    k = 0
    while sum(len(line.split()) for line in lines) < words:
        lines.append(f"src/pkg_{conversation}/module_{k}.py:{17 * k + turn}: def handle_{k}(request, "
                     f"retries={k % 3}): return dispatch(request, area={turn})")
        k += 1
    return "\n".join(lines)


@dataclass
class AgentSpec:
    url: str  # server root; the OpenAI client talks to <url>/v1
    variant: str = "volatile"  # volatile: the first line changes every request; stable: it never does
    model: str = "default"
    conversations: int = 4
    turns: int = 5
    max_tokens: int = 32
    system_words: int = 2630  # about 3,900 tokens of SmolLM2-135M's vocabulary
    tool_words: int = 36  # about 190 tokens (code-like lines are dense)
    banned_tokens: tuple[int, ...] = ()  # end-of-sequence ids, banned (logit_bias) so lengths are equal
    api_key: str | None = None
    timeout: float = 1800.0
    seed: int = 0  # of the volatile headers


@dataclass
class AgentTurn:
    conversation: int
    turn: int  # 1-based
    ttft: float
    tokens: int
    prompt_tokens: int
    cached_tokens: int | None
    reused_tokens: int | None
    error: str = ""


@dataclass
class AgentResult(LoadResult):
    variant: str
    conversations: int
    turns: int
    wall_s: float
    ttft_turn1_p50_s: float
    ttft_later_p50_s: float  # turns 2 and later
    prompt_tokens_mean: float  # of the last turns: the depth the loop reached
    cached_fraction: float  # of all prompt tokens, where the server reports cached_tokens
    reused_fraction: float  # of all prompt tokens, where the server reports reused_tokens (llamaserve)
    errors: int
    cache_miss_example: dict[str, Any] | None = None  # one usage.cache_miss the server sent
    first_error: str = ""
    results: list[AgentTurn] = field(default_factory=list)


async def _conversation(client: Any, spec: AgentSpec, index: int, headers: random.Random,
                        misses: list[dict[str, Any]]) -> list[AgentTurn]:
    stable = system_prompt(spec.system_words, "x-agent-header: session=stable")
    history: list[dict[str, str]] = [
        {"role": "user", "content": f"Task {index + 1}: the tests of area {index} fail since the last change "
                                    f"to module {index * 5}. Find the cause and fix it."}]
    out: list[AgentTurn] = []
    for turn in range(1, spec.turns + 1):
        if spec.variant == "volatile":
            header = f"x-agent-header: cch={headers.getrandbits(40):010x}; request={index}.{turn}"
            system = system_prompt(spec.system_words, header)
        else:
            system = stable
        t = await stream_turn(client, spec.model, [{"role": "system", "content": system}, *history],
                              spec.max_tokens, spec.banned_tokens)
        out.append(AgentTurn(index, turn, t.ttft, t.tokens, t.prompt_tokens, t.cached_tokens, t.reused_tokens,
                             t.error))
        if t.cache_miss:
            misses.append(t.cache_miss)
        history.append({"role": "assistant", "content": t.text})
        history.append({"role": "user", "content": tool_result(index, turn, spec.tool_words)})
    return out


def _p50(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _fraction(part: list[AgentTurn], attr: str) -> float:
    reported = [r for r in part if getattr(r, attr) is not None]
    if not reported:
        return float("nan")
    return sum(getattr(r, attr) for r in reported) / max(1, sum(r.prompt_tokens for r in reported))


async def _run(spec: AgentSpec) -> AgentResult:
    from openai import AsyncOpenAI

    if spec.variant not in VARIANTS:
        raise ValueError(f"variant: must be one of {', '.join(VARIANTS)}")
    headers = random.Random(spec.seed)
    misses: list[dict[str, Any]] = []
    async with AsyncOpenAI(base_url=spec.url.rstrip("/") + "/v1", api_key=spec.api_key or "unused",
                           timeout=spec.timeout, max_retries=0) as client:
        started = time.perf_counter()
        per = await asyncio.gather(*(_conversation(client, spec, i, headers, misses)
                                     for i in range(spec.conversations)))
        wall = time.perf_counter() - started
    results = [r for rs in per for r in rs]
    good = [r for r in results if not r.error]
    failed = [r for r in results if r.error]
    last = [r for r in good if r.turn == spec.turns]
    return AgentResult(
        variant=spec.variant, conversations=spec.conversations, turns=spec.turns, wall_s=wall,
        ttft_turn1_p50_s=_p50([r.ttft for r in good if r.turn == 1]),
        ttft_later_p50_s=_p50([r.ttft for r in good if r.turn > 1]),
        prompt_tokens_mean=statistics.fmean(r.prompt_tokens for r in last) if last else float("nan"),
        cached_fraction=_fraction(good, "cached_tokens"), reused_fraction=_fraction(good, "reused_tokens"),
        errors=len(failed), cache_miss_example=misses[-1] if misses else None,
        first_error=failed[0].error if failed else "", results=results)


def run(spec: AgentSpec) -> AgentResult:
    return asyncio.run(_run(spec))
