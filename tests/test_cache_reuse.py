"""Reuse past a divergence (--cache-reuse) and the cache report: a prompt that leaves the cache
at a changed or deleted line and goes on with cached text reuses that text's KV at its new
positions; usage says how many tokens that was and where the prompt left the cache; /metrics
counts both. Real engines: SmolLM2-135M (full attention) and Gemma 3 270M (sliding window:
its KV cannot move, so it never reuses)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest

import llamaserve
from llamaserve.errors import InvalidRequest
from llamaserve.native import MIN_REUSE_CHUNK

BODY = "You are the support assistant of a hardware shop.\n" + "\n".join(
    f"Rule {i}: answer questions about item {i} politely, citing section {i * 7} of the manual." for i in range(8))
QUESTION = "\nCustomer: Do you sell cordless drills?\nAssistant:"


def prompt(header: str | None) -> str:
    return ("" if header is None else f"Request-ID: {header}\n") + BODY + QUESTION


def shared_tokens(engine: llamaserve.Engine, a: str, b: str) -> int:
    return len(os.path.commonprefix([engine.tokenize(a), engine.tokenize(b)]))


def chat_with_header(client):
    """ask(header) -> the usage of a one-token chat whose system prompt starts with that header line."""
    model = client.models.list().data[0].id

    def ask(header: str):
        return client.chat.completions.create(model=model, max_tokens=1, temperature=0, messages=[
            {"role": "system", "content": f"Request-ID: {header}\n{BODY}"},
            {"role": "user", "content": "Do you sell cordless drills?"}]).usage
    return ask


@pytest.fixture(scope="module")
def pooled(smollm2_path):
    """One KV pool: chunks may follow new tokens (the changed line), parked until reached."""
    eng = llamaserve.Engine.load(smollm2_path, n_ctx=2048, n_parallel=2, kv_unified=True, cache_reuse=32,
                                 spec="off")
    yield eng
    eng.close()


def test_a_changed_first_line_reuses_the_rest_and_says_where_it_left(pooled):
    assert pooled.cache_reuse == {"min_chunk": 32, "after_new_tokens": True}
    first = pooled.generate(prompt("A1"), max_tokens=2, temperature=0)
    assert first.usage.reused_tokens == 0 and first.usage.cache_departure is None
    second = pooled.generate(prompt("Z98765"), max_tokens=2, temperature=0)
    left = shared_tokens(pooled, prompt("A1"), prompt("Z98765"))
    u = second.usage
    assert u.cache_departure == left
    assert "Z98765" in u.cache_departure_text and prompt("Z98765").find(u.cache_departure_text.strip()) > 0
    # All but the changed value and the question's last token come from the cache.
    assert u.reused_tokens > u.prompt_tokens - left - 16
    assert u.cached_tokens >= left + u.reused_tokens - 1
    stats = pooled.cache_stats
    assert stats["reused_tokens"] >= u.reused_tokens and stats["requests_departed"] >= 1


def test_reuse_gives_the_recomputed_answer_under_a_grammar(pooled):
    grammar = 'root ::= "yes" | "no"'
    question = "\nCustomer: Is rule 3 about item 3? Answer yes or no.\nAssistant:"
    pooled.generate(prompt("B2") + question, max_tokens=1, temperature=0)
    reused = pooled.generate(prompt("C333") + question, max_tokens=3, temperature=0, grammar=grammar)
    recomputed = pooled.generate(prompt("C333") + question, max_tokens=3, temperature=0, grammar=grammar,
                                 cache_prompt=False)
    assert reused.usage.reused_tokens > 150 and recomputed.usage.cached_tokens == 0
    assert reused.text == recomputed.text and reused.text in ("yes", "no")


def test_a_slot_of_its_own_reuses_past_a_deleted_line(smollm2_path):
    # A share of KV per slot (the default): chunks only directly after the cached prefix, so
    # a deleted line is reused past, a changed one is not (but still reported).
    with llamaserve.Engine.load(smollm2_path, n_ctx=2048, n_parallel=1, cache_reuse=64, spec="off") as eng:
        assert eng.cache_reuse == {"min_chunk": 64, "after_new_tokens": False}
        eng.generate(prompt("D4"), max_tokens=1, temperature=0)
        deleted = eng.generate(prompt(None), max_tokens=1, temperature=0)
        assert deleted.usage.reused_tokens > deleted.usage.prompt_tokens - 16
        assert deleted.usage.cache_departure == shared_tokens(eng, prompt("D4"), prompt(None))
        changed = eng.generate(prompt("E55"), max_tokens=1, temperature=0)
        assert changed.usage.reused_tokens == 0 and changed.usage.cache_departure is not None


def test_a_sliding_window_model_never_moves_its_kv(model_path):
    with llamaserve.Engine.load(model_path, n_ctx=1024, n_parallel=1, kv_unified=True, cache_reuse=32) as eng:
        assert eng.cache_reuse == {"min_chunk": 0, "after_new_tokens": False}  # asked for, refused
        eng.generate(prompt("F6"), max_tokens=1, temperature=0)
        second = eng.generate(prompt("G77"), max_tokens=1, temperature=0)
        assert second.usage.reused_tokens == 0
        assert second.usage.cache_departure == shared_tokens(eng, prompt("F6"), prompt("G77"))


def test_a_chunk_shorter_than_the_floor_is_refused(smollm2_path):
    with pytest.raises(InvalidRequest, match="cache_reuse"):
        llamaserve.Engine.load(smollm2_path, n_ctx=256, n_parallel=1, cache_reuse=MIN_REUSE_CHUNK - 1)


def test_usage_and_metrics_report_the_reuse_and_the_miss(pooled, serve_app, client_for):
    from llamaserve.config import ServerConfig

    server = serve_app(ServerConfig(), eng=pooled)
    ask = chat_with_header(client_for(server.url))
    ask("H8")
    usage = ask("J1234")  # the first line changed, as an agent's request header does
    details = usage.prompt_tokens_details
    assert details.model_extra["reused_tokens"] > usage.prompt_tokens - 40
    assert details.cached_tokens >= details.model_extra["reused_tokens"]
    miss = usage.model_extra["cache_miss"]
    assert miss["token"] > 0 and miss["text"].lstrip().startswith("J")
    metrics = httpx.get(server.url + "/metrics").text
    reused = [line for line in metrics.splitlines() if line.startswith("llamaserve:prefix_cache_reused_total")]
    misses = [line for line in metrics.splitlines() if line.startswith("llamaserve:prefix_cache_misses_total")]
    assert reused and float(reused[0].split()[-1]) >= details.model_extra["reused_tokens"]
    assert misses and float(misses[0].split()[-1]) >= 1
    prefix_cache = httpx.get(server.url + "/health").json()["kv_cache"]["prefix_cache"]
    assert prefix_cache["reuse"] == {"min_chunk": 32, "after_new_tokens": True}
    assert prefix_cache["reused_tokens"] >= details.model_extra["reused_tokens"]


def test_bench_agent_reports_the_reuse_of_a_volatile_first_line(pooled, serve_app, tmp_path):
    from llamaserve.config import ServerConfig

    server = serve_app(ServerConfig(), eng=pooled)
    out = tmp_path / "agent.json"
    run = subprocess.run(
        [sys.executable, "-m", "llamaserve", "bench", "agent", "--url", server.url, "--variant", "volatile",
         "--conversations", "1", "--turns", "2", "--tokens", "4", "--system-words", "50", "--tool-words", "10",
         "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "| volatile |" in run.stdout
    [result] = json.loads(out.read_text())
    assert result["errors"] == 0 and result["turns"] == 2 and result["variant"] == "volatile"
    # Turn 2 changed the first line: the rest of turn 1 came back by reuse (turn 1 had none).
    assert 0.3 < result["reused_fraction"] <= result["cached_fraction"]
    assert "request=0.2\n" in result["cache_miss_example"]["text"]  # the line that changed, turn 2's


def test_the_server_reuses_nothing_by_default_but_says_where_the_cache_missed(default_server, client_for):
    # --cache-reuse is off unless asked for: a changed first line is prefilled again, and usage
    # still names the token and the text where the prompt left the cache.
    ask = chat_with_header(client_for(default_server.url))
    ask("K5")
    usage = ask("L6789")
    details = usage.prompt_tokens_details
    assert details.model_extra["reused_tokens"] == 0
    assert details.cached_tokens < 20  # the template's first tokens and "Request-ID:" only
    miss = usage.model_extra["cache_miss"]
    assert miss["token"] == details.cached_tokens and miss["text"].lstrip().startswith("L")
    reuse = httpx.get(default_server.url + "/health").json()["kv_cache"]["prefix_cache"]["reuse"]
    assert reuse == {"min_chunk": 0, "after_new_tokens": False}
