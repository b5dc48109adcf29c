"""Prefix caching (on by default): a slot's own cache across turns, a prefix shared across
slots, the host-memory tier, the per-request switch, and the KV budget. Real engines:
Gemma 3 270M (sliding-window layers: a snapshot serves only at its own length) and
SmolLM2-135M (full attention: a snapshot can be cut back to any shared prefix)."""
from __future__ import annotations

import threading

import pytest

import llamaserve
from llamaserve.errors import ContextLengthExceeded

SYSTEM = ("You are the support assistant of a hardware shop. " +
          " ".join(f"Rule {i}: answer questions about item {i} politely and briefly." for i in range(16)))


def ask(question: str) -> str:
    return f"{SYSTEM}\nCustomer: {question}\nAssistant:"


def shared_tokens(engine: llamaserve.Engine, a: str, b: str) -> int:
    ta, tb = engine.tokenize(a), engine.tokenize(b)
    n = 0
    while n < min(len(ta), len(tb)) and ta[n] == tb[n]:
        n += 1
    return n


@pytest.fixture(scope="module")
def gemma2(model_path):
    eng = llamaserve.Engine.load(model_path, n_ctx=1024, n_parallel=2)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def smol2(smollm2_path):
    eng = llamaserve.Engine.load(smollm2_path, n_ctx=1024, n_parallel=2)
    yield eng
    eng.close()


def test_the_next_turn_reuses_its_slot_by_default(gemma2):
    first = gemma2.generate(ask("Do you sell drills?"), max_tokens=4, temperature=0)
    assert first.usage.cached_tokens == 0
    follow = ask("Do you sell drills?") + first.text + "\nCustomer: And saws?\nAssistant:"
    second = gemma2.generate(follow, max_tokens=4, temperature=0)
    assert second.usage.cached_tokens >= first.usage.prompt_tokens - 1


def test_a_prefix_crosses_slots_through_the_host_cache(smol2):
    first = smol2.generate(ask("Where is the shop?"), max_tokens=4, temperature=0)
    # A long request on the same prefix takes that slot (its cache serves it best) ...
    holder = smol2.stream(ask("Where is the shop?") + " Tell me a long story.", max_tokens=400,
                          ignore_eos=True)
    next(holder)
    # ... so this one prefills on the other slot, from the snapshot of the first prompt.
    other = smol2.generate(ask("When do you open?"), max_tokens=4, temperature=0)
    holder.cancel()
    shared = shared_tokens(smol2, ask("Where is the shop?"), ask("When do you open?"))
    assert shared > 150
    assert other.usage.cached_tokens >= shared - 1
    assert other.usage.cached_tokens < other.usage.prompt_tokens
    assert smol2.cache_stats["host_hits"] >= 1
    assert first.usage.cached_tokens == 0


def test_concurrent_requests_prefill_a_shared_prefix_once(gemma2):
    before = gemma2.cache_stats
    # A shared part longer than a step's batch (512 tokens), so that the second request
    # arrives while the first is still prefilling it.
    questions = ["What is your return policy?", "Can I pay by card?"]
    prompts = [(SYSTEM + " " + SYSTEM + " " + ask(q)).replace("hardware shop", "garden centre") for q in questions]
    results: dict[int, llamaserve.Completion] = {}

    def run(i: int) -> None:
        results[i] = gemma2.generate(prompts[i], max_tokens=4, temperature=0)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    shared = shared_tokens(gemma2, *prompts)
    cached = sorted(r.usage.cached_tokens for r in results.values())
    # One of them prefilled the shared part (bar the few words earlier prompts share with
    # it); the other waited for its snapshot.
    assert cached[0] < shared // 4 and cached[1] >= shared - 1
    after = gemma2.cache_stats
    assert after["prompt_tokens"] - before["prompt_tokens"] == sum(r.usage.prompt_tokens for r in results.values())
    assert after["cached_tokens"] - before["cached_tokens"] == sum(cached)


def test_host_cache_round_trip_after_the_slot_was_reused(model_path):
    with llamaserve.Engine.load(model_path, n_ctx=1024, n_parallel=1) as one:
        prompt = ask("Is the drill cordless?")
        first = one.generate(prompt, max_tokens=6, temperature=0)
        one.generate("An unrelated question about the weather", max_tokens=2)  # takes the only slot
        again = one.generate(prompt, max_tokens=6, temperature=0)
        assert again.usage.cached_tokens == first.usage.prompt_tokens - 1
        stats = one.cache_stats
        assert stats["host_hits"] == 1 and stats["host_entries"] >= 1 and 0 < stats["host_bytes"] <= stats["host_budget"]


def test_cache_prompt_false_recomputes_the_prompt(gemma2):
    prompt = ask("Do you deliver?")
    gemma2.generate(prompt, max_tokens=2, temperature=0)
    plain = gemma2.generate(prompt, max_tokens=2, temperature=0, cache_prompt=False)
    assert plain.usage.cached_tokens == 0


def test_without_a_host_cache_only_slots_reuse(model_path):
    with llamaserve.Engine.load(model_path, n_ctx=1024, n_parallel=1, cache_ram=0) as one:
        prompt = ask("Is it on sale?")
        one.generate(prompt, max_tokens=2)
        one.generate("Something else entirely", max_tokens=2)
        # Only the BOS token both prompts start with is still in the slot.
        assert one.generate(prompt, max_tokens=2).usage.cached_tokens <= 1
        assert one.cache_stats["host_entries"] == 0


def test_a_shared_pool_makes_long_requests_wait_not_fail(smollm2_path):
    # 4 slots, 512 cells in one pool: each request may grow to ~300 cells, so they take turns.
    with llamaserve.Engine.load(smollm2_path, n_ctx=512, n_kv=512, n_parallel=4, kv_unified=True) as pool:
        prompts = [ask(f"Question number {i}?") for i in range(4)]
        streams = [pool.stream(p, max_tokens=100, ignore_eos=True, cache_prompt=False) for p in prompts]
        peak = 0
        for s in streams:
            for _ in s:
                peak = max(peak, pool.cache_stats["kv_cells_reserved"])
        done = [s.completion() for s in streams]
        assert all(c.finish_reason == "length" and c.usage.completion_tokens == 100 for c in done)
        assert 0 < peak <= 512
        with pytest.raises(ContextLengthExceeded):
            pool.generate("word " * 600, max_tokens=1)


def test_per_slot_shares_refuse_what_a_share_cannot_hold(smollm2_path):
    with llamaserve.Engine.load(smollm2_path, n_ctx=1024, n_kv=1024, n_parallel=4) as shares:
        assert shares.n_ctx == 256
        with pytest.raises(ContextLengthExceeded):
            shares.generate(SYSTEM + ask("Too long for a quarter of the cells?"), max_tokens=1)


def test_kv_cache_options_are_checked(smollm2_path):
    with pytest.raises(llamaserve.InvalidRequest, match="cache_type_k"):
        llamaserve.Engine.load(smollm2_path, cache_type_k="q3_weird")
    with pytest.raises(llamaserve.InvalidRequest, match="flash_attn"):
        llamaserve.Engine.load(smollm2_path, flash_attn="sometimes")
    with pytest.raises(llamaserve.InvalidRequest, match="KV cells"):
        llamaserve.Engine.load(smollm2_path, n_ctx=2**24, n_parallel=1024)
    with llamaserve.Engine.load(smollm2_path, n_ctx=512, n_parallel=1, cache_type_k="q8_0",
                                cache_type_v="q8_0", flash_attn="on") as quantized:
        assert quantized.generate("The capital of France is", max_tokens=3).usage.completion_tokens == 3


def test_http_usage_health_and_metrics_report_the_cache(openai_client, served_model, base_url):
    import httpx

    system = {"role": "system", "content": " ".join(f"Fact {i}: the shop sells tool {i}." for i in range(30))}
    first = openai_client.chat.completions.create(
        model=served_model, messages=[system, {"role": "user", "content": "Hello"}], max_tokens=3)
    second = openai_client.chat.completions.create(
        model=served_model, messages=[system, {"role": "user", "content": "Goodbye"}], max_tokens=3)
    assert first.usage.prompt_tokens > 150
    assert second.usage.prompt_tokens_details.cached_tokens > 150
    health = httpx.get(base_url + "/health").json()["kv_cache"]
    assert 0 < health["cells_used"] <= health["cells"] and 0 <= health["usage"] <= 1
    assert health["prefix_cache"]["cached_tokens"] >= second.usage.prompt_tokens_details.cached_tokens
    metrics = httpx.get(base_url + "/metrics").text
    for name in ("llamaserve:kv_cache_usage_perc", "llamaserve:kv_cache_cells_used", "llamaserve:prefix_cache_queries_total",
                 "llamaserve:prefix_cache_hits_total"):
        assert f"\n{name}{{" in metrics, name


def test_default_kv_cells_never_exceed_the_free_memory(model_path, caplog):
    from llamaserve.config import ServerConfig
    from llamaserve.hosting.kv_sizing import available_memory, kv_bytes_per_cell, kv_cells
    from llamaserve.models import read_gguf_info

    info = read_gguf_info(model_path)
    config = ServerConfig()
    free = available_memory()
    assert free is not None and kv_bytes_per_cell(info, config) > 0
    # What fits is left as it is (0: the engine's n_ctx per slot) ...
    assert kv_cells(config, info, 4096, 4, 0) == 0
    # ... what does not is cut to what the free memory holds, and said so.
    wanted = 2 * free // int(kv_bytes_per_cell(info, config)) // 4
    with caplog.at_level("WARNING", logger="llamaserve.hosting"):
        cells = kv_cells(config, info, 1024, 4 * (wanted // 1024 + 1), 0)
    assert 1024 <= cells and cells * kv_bytes_per_cell(info, config) < free
    assert "more than the" in caplog.text
    # A quantized cache needs fewer bytes a cell.
    assert kv_bytes_per_cell(info, ServerConfig(cache_type_k="q8_0", cache_type_v="q8_0")) < kv_bytes_per_cell(info, config)



def _next_turn(engine: llamaserve.Engine, first: str) -> str:
    """The turn after `first`: its reply and ~100 more tokens of tool output, enough for a
    snapshot of its own (the whole prompt but its last token)."""
    reply = engine.generate(first, max_tokens=4, temperature=0).text
    tool = " ".join(f"stock[{i}] = {i * 7} units at shelf {i % 5};" for i in range(12))
    second = f"{first}{reply}\nTool: {tool}\nAssistant:"
    engine.generate(second, max_tokens=2, temperature=0)
    return second


def test_a_conversations_next_turn_replaces_its_earlier_snapshot(smollm2_path):
    # Full attention: the second turn's snapshot, cut back, serves all the first one did, so
    # memory keeps one snapshot per conversation; the dropped one's buffer is kept for the
    # next snapshot to fill (its pages already faulted in).
    with llamaserve.Engine.load(smollm2_path, n_ctx=1024, n_parallel=1) as one:
        first = ask("Is the drill cordless?")
        _next_turn(one, first)
        stats = one.cache_stats
        assert stats["host_entries"] == 1
        one.generate("An unrelated question about the weather", max_tokens=2)  # takes the only slot
        # Another way on from the first turn: served from the longer snapshot, cut back.
        branch = one.generate(f"{first} Yes.\nCustomer: And the battery?\nAssistant:", max_tokens=2)
        assert branch.usage.cached_tokens >= len(one.tokenize(first)) - 1
        assert one.cache_stats["host_hits"] == 1


def test_a_replaced_snapshot_leaves_its_buffer_for_the_next(smollm2_path):
    with llamaserve.Engine.load(smollm2_path, n_ctx=1024, n_parallel=1) as one:
        first = ask("Is the drill cordless?")
        one.generate(first, max_tokens=4, temperature=0)
        alone = one.cache_stats
        assert alone["host_entries"] == 1 and alone["host_spare_bytes"] == 0
        first_state = alone["host_bytes"] - (len(one.tokenize(first)) - 1) * 4  # less its token ids
        _next_turn(one, first)
        assert one.cache_stats["host_spare_bytes"] == first_state


def test_a_sliding_window_model_keeps_each_turns_snapshot(model_path):
    # Gemma 3's window layers cannot be cut back: the first turn's snapshot is the only one
    # that serves a prompt going on from the first turn, so it stays.
    with llamaserve.Engine.load(model_path, n_ctx=1024, n_parallel=1) as one:
        _next_turn(one, ask("Is the drill cordless?"))
        assert one.cache_stats["host_entries"] == 2
