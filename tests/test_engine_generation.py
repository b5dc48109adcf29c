"""Generation through the real engine: determinism, seeds, streaming, concurrency."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import llamaserve
from reproducible import FRESH

PROMPT = "The three primary colors are"


def test_greedy_is_deterministic_across_runs(engine):
    first = engine.generate(PROMPT, max_tokens=24, temperature=0, **FRESH)
    second = engine.generate(PROMPT, max_tokens=24, temperature=0, **FRESH)
    assert first.text == second.text
    assert first.text.strip()
    assert first.usage.completion_tokens == second.usage.completion_tokens > 0


def test_seeded_sampling_is_reproducible_and_seed_dependent(engine):
    args = dict(max_tokens=24, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, ignore_eos=True, **FRESH)
    a = engine.generate(PROMPT, seed=1234, **args).text
    b = engine.generate(PROMPT, seed=1234, **args).text
    c = engine.generate(PROMPT, seed=98765, **args).text
    assert a == b
    assert a != c


def test_stream_pieces_concatenate_to_generate_text(engine):
    # FRESH drafts nothing: how many are drafted (in usage) depends on timing, and a batched
    # verification can flip a near-tie token of Gemma's.
    args = {"max_tokens": 32, "temperature": 0, **FRESH}
    expected = engine.generate(PROMPT, **args)
    stream = engine.stream(PROMPT, **args)
    pieces = list(stream)
    assert len(pieces) > 1
    assert "".join(pieces) == expected.text
    done = stream.completion()
    assert done.finish_reason == expected.finish_reason
    assert done.usage == expected.usage


def test_completion_records_usage_timing_and_finish_reason(engine):
    done = engine.generate(PROMPT, max_tokens=5, temperature=0, ignore_eos=True)
    assert done.finish_reason == "length"
    assert done.usage.completion_tokens == 5
    assert done.usage.prompt_tokens == len(engine.tokenize(PROMPT))
    assert done.usage.total_tokens == done.usage.prompt_tokens + 5
    assert 0 < done.time_to_first_token <= done.latency


def test_end_of_generation_token_ends_with_stop_unless_ignored(engine):
    eos = 1  # Gemma's <eos>; the bias makes it the certain first choice
    done = engine.generate(PROMPT, max_tokens=20, temperature=0, logit_bias={eos: 100})
    assert done.finish_reason == "stop"
    assert done.text == ""
    assert done.usage.completion_tokens == 1
    ignored = engine.generate(PROMPT, max_tokens=20, temperature=0, logit_bias={eos: 100},
                              ignore_eos=True)
    assert ignored.finish_reason == "length"
    assert ignored.usage.completion_tokens == 20


def test_32_concurrent_requests_on_8_slots_all_complete_once(engine):
    # Distinct prompt lengths and token budgets: a token or a count delivered to the
    # wrong request shows up as a mismatch.
    prompts = [f"Request number {i}: " + "tell me more " * (i % 7) for i in range(32)]
    budgets = [6 + i % 5 for i in range(32)]

    def run(i):
        return engine.generate(prompts[i], max_tokens=budgets[i], temperature=0.7, seed=i,
                               ignore_eos=True)

    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(run, range(32)))

    assert len(results) == 32
    for i, done in enumerate(results):
        assert done.finish_reason == "length"
        assert done.usage.completion_tokens == budgets[i]
        assert done.usage.prompt_tokens == len(engine.tokenize(prompts[i]))
        assert done.text and "\ufffd" not in done.text
    assert engine.busy_slots == 0 and engine.queue_depth == 0


def test_generate_batch_keeps_order(engine):
    prompts = ["One", "Two two", "Three three three"]
    results = engine.generate_batch(prompts, max_tokens=4, temperature=0, ignore_eos=True)
    assert [r.usage.prompt_tokens for r in results] == [len(engine.tokenize(p)) for p in prompts]
    assert all(r.usage.completion_tokens == 4 for r in results)


def test_stream_wait_releases_the_gil(engine):
    counter = 0
    stop = threading.Event()

    def count():
        nonlocal counter
        while not stop.is_set():
            counter += 1

    stream = engine.stream(PROMPT, max_tokens=48, temperature=0, ignore_eos=True)
    worker = threading.Thread(target=count)
    worker.start()
    try:
        before = counter
        pieces = list(stream)
        during = counter - before
    finally:
        stop.set()
        worker.join()
    assert len(pieces) == 48
    # With the GIL held while waiting, the counting thread would be frozen for the
    # whole generation (hundreds of milliseconds); released, it counts freely.
    assert during > 10_000


def test_token_prompt_and_tokenize_round_trip(engine):
    tokens = engine.tokenize("Hello world", add_special=False)
    assert engine.detokenize(tokens) == "Hello world"
    bos_prompt = engine.tokenize(PROMPT)
    by_tokens = engine.generate(bos_prompt, max_tokens=8, temperature=0, **FRESH)
    by_text = engine.generate(PROMPT, max_tokens=8, temperature=0, **FRESH)
    assert by_tokens.text == by_text.text


def test_metadata_describes_the_model(engine):
    meta = engine.metadata
    assert meta["architecture"] == "gemma3"
    assert meta["n_vocab"] == 262144
    assert meta["n_params"] > 200_000_000
    assert meta["file_size"] > meta["weights_size"] * 0.9
    assert meta["n_ctx_train"] >= 32768
    assert "Gemma" in meta["name"]


def test_version_is_exposed():
    assert llamaserve.__version__ != "0.0.0"


def test_logprobs_describe_the_sampled_tokens(engine):
    stream = engine.stream(PROMPT, max_tokens=6, temperature=0, ignore_eos=True, logprobs=3)
    text = "".join(stream)
    records = stream.take_token_logprobs()
    assert len(records) == 6
    for token, logprob, top in records:
        assert logprob <= 0.0
        assert len(top) == 3
        # Greedy: the sampled token is the most likely one, and the list is sorted.
        assert top[0][0] == token and abs(top[0][1] - logprob) < 1e-4
        assert top[0][1] >= top[1][1] >= top[2][1]
    rendered = b"".join(engine.token_bytes(t) for t, _, _ in records).decode("utf-8", "replace")
    assert rendered == text
    assert stream.take_token_logprobs() == []


def _first_choices(engine, **arguments):
    """The first sampled token and its top-5 alternatives (greedy)."""
    stream = engine.stream(PROMPT, max_tokens=1, temperature=0, logprobs=5, **arguments)
    stream.completion()
    [(token, _, top)] = stream.take_token_logprobs()
    return token, top


def test_greedy_logit_bias_banning_the_best_token_picks_the_runner_up(engine):
    best, top = _first_choices(engine)
    assert best == top[0][0]
    token, _ = _first_choices(engine, logit_bias={best: -100})
    assert token == top[1][0]
    # Banning the first two leaves the third; biases on one token add up.
    token, _ = _first_choices(engine, logit_bias={best: -100, top[1][0]: -100})
    assert token == top[2][0]


def test_greedy_logit_bias_lifts_a_lower_token_only_past_the_best(engine):
    _, top = _first_choices(engine)
    (best, best_lp), (_, _), (third, third_lp) = top[:3]
    gap = best_lp - third_lp  # log-probabilities differ by exactly the logit gap
    assert _first_choices(engine, logit_bias={third: gap + 0.5})[0] == third
    assert _first_choices(engine, logit_bias={third: gap - 0.5})[0] == best


def test_greedy_ignore_eos_with_other_biases_never_ends_early(engine):
    done = engine.generate(PROMPT, max_tokens=12, temperature=0, ignore_eos=True,
                           logit_bias={1: 50, 106: 50, 7: -100})
    assert done.finish_reason == "length"
    assert done.usage.completion_tokens == 12


# A disabled penalty (penalty_last_n=0 changes nothing) sends a request through llama.cpp's
# whole sampler chain instead of the top-k shortcut: the reference to compare with.
THROUGH_THE_CHAIN = dict(repeat_penalty=1.5, penalty_last_n=0)


def test_top_k_shortcut_samples_exactly_as_the_sampler_chain(engine):
    cases = [dict(top_k=40), dict(top_k=5, top_p=0.8, min_p=0.0, temperature=1.3),
             dict(top_k=128, top_p=1.0, min_p=0.1), dict(top_k=1, temperature=1.0),
             dict(top_k=40, logit_bias={1: -100, 106: -100, 236761: 3.0})]
    for i, case in enumerate(cases):
        args = dict(max_tokens=24, seed=7 + i, ignore_eos=True, **FRESH, **case)
        shortcut = engine.generate(PROMPT, **args).text
        assert shortcut == engine.generate(PROMPT, **args, **THROUGH_THE_CHAIN).text, case


def test_top_k_sampling_stays_within_the_k_most_likely(engine):
    stream = engine.stream(PROMPT, max_tokens=16, temperature=1.5, top_k=3, top_p=1.0, min_p=0.0,
                           seed=11, ignore_eos=True, logprobs=3)
    stream.completion()
    for token, _, top in stream.take_token_logprobs():
        assert token in [t for t, _ in top]


def test_grammar_constrained_sampling_matches_the_sampler_chain(engine):
    import re

    grammar = 'root ::= "The answer is " [0-9]+ (" or " [a-z]+)* "."'
    cases = [dict(temperature=0), dict(temperature=0, logit_bias={236761: 5.0}),
             dict(temperature=0.9, top_k=40, seed=3), dict(temperature=1.5, top_k=10, top_p=0.9, seed=4)]
    for case in cases:
        args = dict(max_tokens=20, grammar=grammar, **FRESH, **case)
        shortcut = engine.generate("Pick a number.", **args)
        assert re.fullmatch(r"The answer is [0-9]+( or [a-z]+)*\.?", shortcut.text), (case, shortcut.text)
        assert shortcut.text == engine.generate("Pick a number.", **args, **THROUGH_THE_CHAIN).text, case
