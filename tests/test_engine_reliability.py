"""What one request does never ends the others: exceptions inside the scheduler end their
own request, cancelled requests let go of the queue and the slot at once, close() wakes
every waiter, and values the native side cannot hold are refused as InvalidRequest."""
from __future__ import annotations

import asyncio
import threading
import time

import pytest

import llamaserve
from llamaserve import InvalidRequest, QueueFull
from llamaserve import _native


def still_serves(engine):
    done = engine.generate("Hello", max_tokens=3, temperature=0, ignore_eos=True)
    assert done.usage.completion_tokens == 3


# -- exceptions in the scheduler end one request --------------------------------------------

@pytest.mark.parametrize("sampling", [
    {"temperature": 0},                         # greedy fast path
    {"temperature": 0.8, "top_k": 40},          # top-k fast path
    {"temperature": 0.8, "top_k": 0},           # the whole chain
    {"temperature": 0, "repeat_penalty": 1.1},  # the chain, greedy
])
def test_a_complete_grammar_with_ignore_eos_stops(engine, sampling):
    # Once "yes" is out the grammar allows only end-of-generation, which ignore_eos bans:
    # this used to throw out of the scheduler thread and abort the process.
    done = engine.generate("Say yes", grammar='root ::= "yes"', ignore_eos=True, max_tokens=16,
                           **sampling)
    assert (done.text, done.finish_reason) == ("yes", "stop")
    still_serves(engine)


@pytest.fixture(scope="module")
def tight(smollm2_path):
    """An engine whose grammars get 1 ms a step: a run of 80 optional letters (allowed, and
    about 20 ms to match the first time) throws inside sampling, on every request."""
    eng = llamaserve.Engine.load(smollm2_path, n_ctx=256, n_parallel=2, grammar_budget_ms=1)
    yield eng
    eng.close()


FAILING = {"grammar": "root ::= " + " ".join(["[a-z]?"] * 80), "temperature": 0}


def test_an_exception_while_sampling_ends_only_that_request(tight):
    bystander = tight.stream("Once upon a time", max_tokens=40, temperature=0, ignore_eos=True)
    assert next(bystander)
    with pytest.raises(InvalidRequest, match="^grammar: matching it took longer than 1 ms for one token"):
        tight.generate("Say yes", max_tokens=8, **FAILING)
    done = bystander.completion()
    assert (done.finish_reason, done.usage.completion_tokens) == ("length", 40)
    still_serves(tight)


def test_the_error_is_in_the_stats(tight):
    async def main():
        stream = tight.astream("Say yes", max_tokens=8, **FAILING)
        with pytest.raises(InvalidRequest):
            await stream.completion()
        return stream.stats

    stats = asyncio.run(main())
    assert (stats["finish_reason"], stats["error_type"]) == ("error", "invalid_request")
    assert stats["error"].startswith("grammar: ")
    still_serves(tight)


# -- cancellation ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def one_slot(model_path):
    eng = llamaserve.Engine.load(model_path, n_ctx=4096, n_parallel=1, max_queue=1)
    yield eng
    eng.close()


def test_a_cancelled_queued_request_leaves_the_queue_at_once(one_slot):
    running = one_slot.stream("Tell a story", max_tokens=3000, temperature=0, ignore_eos=True)
    try:
        assert next(running)
        queued = one_slot.stream("Tell a story", max_tokens=2)
        with pytest.raises(QueueFull):
            one_slot.stream("Tell a story", max_tokens=2)
        queued.cancel()
        assert queued.finished and one_slot.queue_depth == 0
        assert queued.completion().finish_reason == "cancelled"
        after = one_slot.stream("Tell a story", max_tokens=2, temperature=0, ignore_eos=True)
        assert not running.finished  # the queue had room again, not the slot
    finally:
        running.cancel()
    assert after.completion().usage.completion_tokens == 2


def test_cancelling_a_queued_async_stream_wakes_its_reader(one_slot):
    async def main():
        running = one_slot.astream("Tell a story", max_tokens=3000, temperature=0, ignore_eos=True)
        try:
            await running.__anext__()
            queued = one_slot.astream("Tell a story", max_tokens=2)
            reader = asyncio.ensure_future(queued.completion())
            await asyncio.sleep(0.05)
            queued.cancel()
            done = await asyncio.wait_for(reader, 5)
            assert done.finish_reason == "cancelled"
            assert not running.stats["finish_reason"]  # still generating
        finally:
            running.cancel()

    asyncio.run(main())


def slot_freed_after_cancel(engine, stream) -> float:
    started = time.monotonic()
    stream.cancel()
    while engine.busy_slots:
        assert time.monotonic() - started < 30
        time.sleep(0.001)
    return time.monotonic() - started


def test_cancel_during_prefill_frees_the_slot_within_the_chunk(one_slot):
    # ~3,500 tokens: seven chunks of 512, each 0.3 to 1.6 s on two cores. The decode stops
    # between graph nodes once nobody wants the step (measured: 10 to 30 ms).
    prompt = " ".join(f"word{i % 97}" for i in range(1200))
    assert 3000 < len(one_slot.tokenize(prompt)) < 4000
    stream = one_slot.stream(prompt, max_tokens=4, temperature=0)
    while not one_slot.busy_slots:
        time.sleep(0.001)
    time.sleep(0.5)  # well into the prefill
    assert not stream.finished
    assert slot_freed_after_cancel(one_slot, stream) < 0.25
    assert stream.completion().finish_reason == "cancelled"
    still_serves(one_slot)


# -- close() --------------------------------------------------------------------------------

def test_close_wakes_every_waiter(model_path):
    eng = llamaserve.Engine.load(model_path, n_ctx=512, n_parallel=1, max_queue=4)
    blocking = eng.stream("Tell a story", max_tokens=100000, temperature=0, ignore_eos=True)
    iterated = threading.Event()

    def read_blocking():
        for _ in blocking:
            pass
        iterated.set()

    reader = threading.Thread(target=read_blocking)
    reader.start()

    async def main():
        running = eng.astream("Tell a story", max_tokens=100000, temperature=0, ignore_eos=True)
        queued = eng.astream("Tell a story", max_tokens=2)
        readers = [asyncio.ensure_future(s.completion()) for s in (running, queued)]
        await asyncio.sleep(0.2)
        # From another thread, as a server's shutdown may do.
        await asyncio.get_running_loop().run_in_executor(None, eng.close)
        return await asyncio.wait_for(asyncio.gather(*readers), 10)

    try:
        done = asyncio.run(main())
        assert [d.finish_reason for d in done] == ["cancelled", "cancelled"]
        assert iterated.wait(10)
        assert blocking.completion().finish_reason == "cancelled"
    finally:
        eng.close()
        reader.join(10)


def test_close_from_the_loop_wakes_an_awaiting_stream(model_path):
    eng = llamaserve.Engine.load(model_path, n_ctx=512, n_parallel=1)

    async def main():
        stream = eng.astream("Tell a story", max_tokens=100000, temperature=0, ignore_eos=True)
        reader = asyncio.ensure_future(stream.completion())
        await asyncio.sleep(0.2)
        eng.close()
        return await asyncio.wait_for(reader, 10)

    try:
        assert asyncio.run(main()).finish_reason == "cancelled"
    finally:
        eng.close()


# -- the native boundary refuses what it cannot hold --------------------------------------------

@pytest.mark.parametrize("tokens", [[1, 2, 99999999999], [1, 2**70], [1, -1], [1, "2"]])
def test_native_submit_refuses_token_ids_beyond_int32(engine, tokens):
    with pytest.raises(InvalidRequest, match="^prompt: "):
        engine._native.submit_tokens(tokens, _native.SamplingParams(), _native.GenerationOptions())
    still_serves(engine)


@pytest.mark.parametrize("struct, name, value", [
    (_native.SamplingParams, "logit_bias", [(2**40, 1.0)]),
    (_native.SamplingParams, "logit_bias", [(5, "x")]),
    (_native.SamplingParams, "top_k", 2**31),
    (_native.SamplingParams, "seed", -1),
    (_native.SamplingParams, "seed", 2**70),
    (_native.SamplingParams, "grammar", 'root ::= "\ud800"'),
    (_native.GenerationOptions, "max_tokens", 2**40),
    (_native.GenerationOptions, "stop", ["\udfff"]),
    (_native.GenerationOptions, "stop", "not a list"),
])
def test_native_settings_refuse_what_they_cannot_hold(struct, name, value):
    with pytest.raises(InvalidRequest, match=f"^{name}: "):
        setattr(struct(), name, value)


def test_native_settings_take_what_fits():
    sampling, options = _native.SamplingParams(), _native.GenerationOptions()
    sampling.logit_bias = [(5, 1), (2**31 - 1, -2.5)]
    sampling.seed = 2**32 - 1
    options.stop = ("a", "é")
    assert (sampling.logit_bias, sampling.seed, options.stop) == ([(5, 1.0), (2**31 - 1, -2.5)],
                                                                  2**32 - 1, ["a", "é"])


def test_lone_surrogates_and_huge_ids_are_invalid_requests(engine):
    with pytest.raises(InvalidRequest, match="^prompt: .*Unicode"):
        engine._native.submit("\ud800", _native.SamplingParams(), _native.GenerationOptions())
    with pytest.raises(InvalidRequest, match="^text: .*Unicode"):
        engine.tokenize("a\ud800b")
    with pytest.raises(InvalidRequest, match="unknown token id"):
        engine.detokenize([1, 2**40])
    with pytest.raises(InvalidRequest, match="unknown token id"):
        engine.token_bytes(2**33)
    still_serves(engine)
