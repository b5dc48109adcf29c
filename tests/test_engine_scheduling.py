"""The scheduler: bounded queue, cancellation, the async pump, and the thread count."""
from __future__ import annotations

import asyncio
import os
import time

import pytest

import llamaserve
from llamaserve import QueueFull
from reproducible import FRESH


@pytest.fixture(scope="module")
def one_slot(model_path):
    eng = llamaserve.Engine.load(model_path, n_ctx=4096, n_parallel=1, max_queue=1)
    yield eng
    eng.close()


def thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


def test_queue_bound_refuses_the_excess(one_slot):
    running = one_slot.stream("Tell a story", max_tokens=400, temperature=0, ignore_eos=True)
    waiting = one_slot.stream("Tell a story", max_tokens=2, temperature=0, ignore_eos=True)
    try:
        with pytest.raises(QueueFull, match="slots are busy"):
            one_slot.stream("Tell a story", max_tokens=2)
    finally:
        running.cancel()
    assert waiting.completion().usage.completion_tokens == 2
    assert running.completion().finish_reason == "cancelled"


def test_cancel_frees_the_slot_at_once(one_slot):
    stream = one_slot.stream("Tell a long story", max_tokens=3000, temperature=0, ignore_eos=True)
    assert next(stream) and next(stream)
    stream.cancel()
    started = time.monotonic()
    after = one_slot.generate("Hello", max_tokens=4, temperature=0, ignore_eos=True)
    elapsed = time.monotonic() - started
    assert after.usage.completion_tokens == 4
    # The cancelled request still had ~3000 tokens (tens of seconds) to go.
    assert elapsed < 5.0
    done = stream.completion()
    assert done.finish_reason == "cancelled"
    assert done.usage.completion_tokens < 3000


def test_cancel_during_prefill(one_slot):
    long_prompt = "history " * 3000
    stream = one_slot.stream(long_prompt, max_tokens=50, temperature=0)
    stream.cancel()
    assert stream.completion().finish_reason == "cancelled"
    assert one_slot.generate("Hi", max_tokens=2, ignore_eos=True).usage.completion_tokens == 2


def test_dropping_a_stream_cancels_it(one_slot):
    stream = one_slot.stream("Count to a thousand", max_tokens=3000, ignore_eos=True)
    next(stream)
    del stream
    started = time.monotonic()
    one_slot.generate("Hello", max_tokens=2, ignore_eos=True)
    assert time.monotonic() - started < 5.0


async def test_astream_matches_stream(engine):
    expected = engine.generate("The ocean is", max_tokens=16, temperature=0, **FRESH)
    pieces = [p async for p in engine.astream("The ocean is", max_tokens=16, temperature=0, **FRESH)]
    assert "".join(pieces) == expected.text
    done = await engine.agenerate("The ocean is", max_tokens=16, temperature=0, **FRESH)
    assert done.text == expected.text
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (
        expected.usage.prompt_tokens, expected.usage.completion_tokens)


async def test_64_concurrent_astreams_add_no_threads(engine):
    await engine.agenerate("warm up", max_tokens=2)  # any lazily started threads exist now
    baseline = thread_count()
    peak = baseline
    completed = 0

    async def consume(i):
        nonlocal peak, completed
        count = 0
        async for _ in engine.astream(f"Item {i}:", max_tokens=6, temperature=0.5, seed=i,
                                      ignore_eos=True):
            count += 1
            peak = max(peak, thread_count())
        assert count >= 1
        completed += 1

    await asyncio.gather(*(consume(i) for i in range(64)))
    assert completed == 64
    assert peak == baseline


async def test_breaking_out_of_astream_cancels(one_slot):
    stream = one_slot.astream("Tell a long story", max_tokens=3000, ignore_eos=True)
    async for _ in stream:
        break
    await stream.aclose()
    started = time.monotonic()
    done = await one_slot.agenerate("Hi", max_tokens=3, ignore_eos=True)
    assert done.usage.completion_tokens == 3
    assert time.monotonic() - started < 5.0


def test_prompt_cache_reuses_a_finished_requests_prefix(one_slot):
    story = "The lighthouse keeper climbed the stairs every single evening to light the lamp."
    first = one_slot.generate(story, max_tokens=4, temperature=0)
    assert first.usage.cached_tokens <= 1  # the BOS token, which every prompt starts with
    follow = story + " One night he saw a ship"
    second = one_slot.generate(follow, max_tokens=4, temperature=0)
    shared = len(one_slot.tokenize(story))
    assert second.usage.cached_tokens >= shared - 1
    assert second.usage.prompt_tokens == len(one_slot.tokenize(follow))
    # Opted out, nothing is reused (and the slot's cache is dropped).
    plain = one_slot.generate(follow, max_tokens=4, temperature=0, cache_prompt=False)
    assert plain.usage.cached_tokens == 0
    again = one_slot.generate(follow, max_tokens=4, temperature=0)
    assert again.usage.cached_tokens == 0



async def test_cancel_wakes_a_coroutine_waiting_on_the_stream(one_slot):
    stream = one_slot.astream("Tell a long story", max_tokens=3000, ignore_eos=True)
    assert await stream.next_pieces()

    async def read_to_end():
        while await stream.next_pieces():
            pass

    reader = asyncio.ensure_future(read_to_end())
    await asyncio.sleep(0.05)
    stream.cancel()
    await asyncio.wait_for(reader, timeout=10)
    assert stream.stats["finish_reason"] == "cancelled"


def test_a_finished_stream_has_already_freed_its_slot(one_slot):
    # The next submit right after a finish must find the slot free (max_queue is 1 here).
    for _ in range(5):
        one_slot.generate("Hi", max_tokens=2, ignore_eos=True)
        first = one_slot.stream("Hi", max_tokens=2, ignore_eos=True)
        second = one_slot.stream("Hi", max_tokens=2, ignore_eos=True)
        assert first.completion().usage.completion_tokens == 2
        assert second.completion().usage.completion_tokens == 2


async def test_astream_pieces_that_pile_up_are_each_delivered_once(engine):
    expected = engine.generate("The mountain village", max_tokens=24, temperature=0, ignore_eos=True, **FRESH)
    stream = engine.astream("The mountain village", max_tokens=24, temperature=0, ignore_eos=True, **FRESH)
    while not stream.stats["finish_reason"]:  # let every piece pile up before reading
        await asyncio.sleep(0.05)
    pieces = [p async for p in stream]
    assert "".join(pieces) == expected.text
    piled = engine.astream("The mountain village", max_tokens=24, temperature=0, ignore_eos=True, **FRESH)
    while not piled.stats["finish_reason"]:
        await asyncio.sleep(0.05)
    assert (await piled.completion()).text == expected.text


def test_a_long_prompt_is_fed_in_chunks_beside_running_streams(model_path):
    # A step holds n_batch tokens: each decoding stream's next token comes first, prompt
    # chunks take what is left. So a 300-token prompt fed 15 tokens a step cannot hold
    # back a stream already decoding: that one finishes its 8 tokens first.
    with llamaserve.Engine.load(model_path, n_ctx=400, n_parallel=3, n_batch=16) as eng:
        running = eng.stream("Count with me: one, two,", max_tokens=9, temperature=0, ignore_eos=True)
        next(running)
        long_prompt = eng.tokenize("word " * 300)[:300]
        waiting = eng.stream(long_prompt, max_tokens=2, temperature=0, ignore_eos=True)
        done = running.completion()
        assert done.usage.completion_tokens == 9
        assert not waiting.finished
        assert waiting.completion().usage.prompt_tokens == 300


async def test_a_prompt_ending_in_a_step_gets_its_first_token_before_another_prompt_is_fed(model_path):
    # A new prompt is fed in two chunks, all but its last token and then that token (its
    # snapshot is taken between). A chunk of another prompt that does not end in that step
    # waits for the next one, so the first prompt's first token comes after its own prefill,
    # not after the other's too: here about 0.4 of the second prompt's time to first token
    # (holding it back would make the two nearly equal).
    with llamaserve.Engine.load(model_path, n_ctx=2048, n_parallel=2) as eng:
        first = eng.tokenize("The river runs past the mill. " * 80)[:400]
        second = eng.tokenize("A mountain village wakes early. " * 120)[:600]
        a = eng.astream(first, max_tokens=1, temperature=0, ignore_eos=True)
        b = eng.astream(second, max_tokens=1, temperature=0, ignore_eos=True)
        await asyncio.gather(a.completion(), b.completion())
        a_first, b_first = a.stats["time_to_first_token"], b.stats["time_to_first_token"]
        assert a_first < 0.7 * b_first, (a_first, b_first)
