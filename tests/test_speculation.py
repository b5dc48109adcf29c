"""Speculative decoding: drafts from the request's own text (n-gram lookup) and from a draft
model, verified in the decode step; the output is the model's own choice either way. Real
engines: SmolLM2-135M (ChatML, full attention) and Gemma 3 270M (sliding-window layers).

Drafted tokens are verified in a batch of several tokens, and batch numerics can in
principle flip a near-tie; the prompts here are ones where no token is that close, so
equality with speculation off is asserted exactly."""
from __future__ import annotations

import httpx
import pytest

import llamaserve
from llamaserve.config import ServerConfig
from llamaserve.errors import InvalidRequest

CODE = '''def total_price(items, tax_rate):
    subtotal = sum(item.price * item.quantity for item in items)
    tax = subtotal * tax_rate
    return round(subtotal + tax, 2)
'''
PROMPTS = [  # text the answer repeats, so drafts are found and accepted
    f"<|im_start|>user\nRepeat this code exactly:\n{CODE}<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nSay 'red green blue' five times.<|im_end|>\n<|im_start|>assistant\n",
    "The alphabet: a b c d e f g h i j k l m n o p q r s t u v w x y z. Again: a b c",
]
# No end of sequence, so every run has its full length (SmolLM2's end tokens).
GREEDY = {"temperature": 0, "max_tokens": 32, "cache_prompt": False, "logit_bias": {0: -100, 1: -100, 2: -100}}


@pytest.fixture(scope="module")
def spec_on(smollm2_path):
    eng = llamaserve.Engine.load(smollm2_path, n_ctx=1024, n_parallel=4, n_threads=2)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def spec_off(smollm2_path):
    eng = llamaserve.Engine.load(smollm2_path, n_ctx=1024, n_parallel=4, n_threads=2, spec="off")
    yield eng
    eng.close()


def test_ngram_is_the_default_and_greedy_output_is_unchanged(spec_on, spec_off):
    assert spec_on.speculation == "ngram" and spec_off.speculation == "off"
    before = spec_on.speculation_stats
    for prompt in PROMPTS:
        fast, plain = spec_on.generate(prompt, **GREEDY), spec_off.generate(prompt, **GREEDY)
        assert fast.text == plain.text
        assert fast.usage.completion_tokens == plain.usage.completion_tokens == 32
        assert plain.usage.drafted_tokens == 0
        assert 0 <= fast.usage.accepted_tokens <= fast.usage.drafted_tokens
    after = spec_on.speculation_stats
    assert after["accepted"] > before["accepted"], "the repeated text should have been drafted"
    assert after["drafted"] >= after["accepted"]


def test_sampled_output_keeps_its_seed(spec_on, spec_off):
    # One draw per emitted token: a seed gives the same text with drafts as without them.
    args = {"temperature": 0.9, "top_k": 40, "seed": 1234, "max_tokens": 24, "cache_prompt": False}
    texts = {spec_on.generate(PROMPTS[0], **args).text for _ in range(2)}
    assert texts == {spec_off.generate(PROMPTS[0], **args).text}


def test_concurrent_slots_stop_strings_logprobs_and_grammar_match_plain_decoding(spec_on, spec_off):
    brief = {**GREEDY, "max_tokens": 16}
    assert [c.text for c in spec_on.generate_batch(PROMPTS, **brief)] == \
           [c.text for c in spec_off.generate_batch(PROMPTS, **brief)]
    stop = {**GREEDY, "stop": ["tax"]}  # inside a drafted run of the repeated code
    fast, plain = spec_on.generate(PROMPTS[0], **stop), spec_off.generate(PROMPTS[0], **stop)
    assert (fast.text, fast.finish_reason) == (plain.text, plain.finish_reason) and "tax" not in fast.text
    short = {**GREEDY, "max_tokens": 5}
    assert spec_on.generate(PROMPTS[1], **short).usage.completion_tokens == 5
    lp = {**GREEDY, "max_tokens": 16, "logprobs": 2}
    with_drafts, without = spec_on.stream(PROMPTS[1], **lp), spec_off.stream(PROMPTS[1], **lp)
    list(with_drafts), list(without)
    records, plain_records = with_drafts.take_token_logprobs(), without.take_token_logprobs()
    assert [r[0] for r in records] == [r[0] for r in plain_records] and len(records) == 16
    assert all(abs(a[1] - b[1]) < 1e-3 for a, b in zip(records, plain_records))
    grammar = {**GREEDY, "grammar": 'root ::= ("red " | "green " | "blue ")+'}
    assert spec_on.generate(PROMPTS[1], **grammar).text == spec_off.generate(PROMPTS[1], **grammar).text


def test_the_request_switch_turns_drafting_off(spec_on):
    out = spec_on.generate(PROMPTS[0], **GREEDY, speculative=False)
    assert out.usage.drafted_tokens == 0
    with pytest.raises(InvalidRequest, match="speculative"):
        spec_on.generate(PROMPTS[0], speculative="no")


def test_a_prediction_is_drafted_from_and_its_object_form_is_accepted(spec_on, spec_off):
    # OpenAI's predicted outputs: the client sends the text it expects back (the file it
    # asks to edit); the prompt here does not contain it.
    prompt = "<|im_start|>user\nWrite a Python function that adds two numbers.<|im_end|>\n<|im_start|>assistant\n"
    plain = spec_off.generate(prompt, **GREEDY)
    guided = spec_on.generate(prompt, **GREEDY, prediction={"type": "content", "content": plain.text})
    assert guided.text == plain.text
    assert guided.usage.accepted_tokens >= 8
    parts = {"type": "content", "content": [{"type": "text", "text": plain.text}]}
    assert spec_on.generate(prompt, **GREEDY, prediction=parts).text == plain.text
    assert spec_on.generate(prompt, **GREEDY, prediction=plain.text).text == plain.text
    with pytest.raises(InvalidRequest, match="prediction: its type"):
        spec_on.generate(prompt, prediction={"type": "file", "content": "x"})


def test_gemma_with_its_sliding_window_drafts_correctly(model_path):
    # Rejected drafts are cut off a window cache too (its cells for them are the newest).
    prompts = ["1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1, 2, 3",
               "The cat sat on the mat. The cat sat on the mat. The cat sat"]
    args = {"temperature": 0, "max_tokens": 24, "cache_prompt": False, "ignore_eos": True}
    on = llamaserve.Engine.load(model_path, n_ctx=512, n_parallel=2, n_threads=2)
    off = llamaserve.Engine.load(model_path, n_ctx=512, n_parallel=2, n_threads=2, spec="off")
    try:
        # One request at a time: a lone decoding slot is where drafts pay most.
        assert [on.generate(p, **args).text for p in prompts] == [off.generate(p, **args).text for p in prompts]
        assert on.speculation_stats["accepted"] > 0
    finally:
        on.close()
        off.close()


def test_a_draft_model_of_the_same_vocabulary(smollm2_path, spec_off):
    # The model drafting for itself: a draft is the target's own greedy choice, but for the
    # end-of-sequence tokens the request bans (the draft model proposes them, the target
    # may not emit them).
    eng = llamaserve.Engine.load(smollm2_path, n_ctx=1024, n_parallel=2, n_threads=2,
                                 draft_model=smollm2_path)
    try:
        assert eng.speculation == "draft"
        for prompt in PROMPTS[:2]:
            out = eng.generate(prompt, **GREEDY)
            assert out.text == spec_off.generate(prompt, **GREEDY).text
        stats = eng.speculation_stats
        assert stats["drafted"] > 0 and stats["accepted"] >= 0.75 * stats["drafted"]
    finally:
        eng.close()


def test_a_draft_model_of_another_vocabulary_is_refused_at_load(smollm2_path, model_path):
    with pytest.raises(InvalidRequest, match="draft_model: .*cannot draft for"):
        llamaserve.Engine.load(smollm2_path, n_ctx=256, n_parallel=1, draft_model=model_path)
    with pytest.raises(InvalidRequest, match="spec"):
        llamaserve.Engine.load(smollm2_path, n_ctx=256, n_parallel=1, spec="fast")
    with pytest.raises(ValueError, match="draft needs a --draft-model"):
        ServerConfig(spec="draft")


def test_http_usage_metrics_and_health_report_drafts(base_url):
    prompt = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1, 2, 3"
    body = {"prompt": prompt, "max_tokens": 24, "temperature": 0, "ignore_eos": True}
    usage = httpx.post(f"{base_url}/v1/completions", json=body, timeout=60).json()["usage"]
    details = usage["completion_tokens_details"]
    assert details["accepted_prediction_tokens"] > 0 and details["rejected_prediction_tokens"] >= 0
    off = httpx.post(f"{base_url}/v1/completions", json={**body, "speculative": False}, timeout=60).json()
    assert off["usage"]["completion_tokens_details"] == {"reasoning_tokens": 0, "accepted_prediction_tokens": 0,
                                                        "rejected_prediction_tokens": 0}
    bad = httpx.post(f"{base_url}/v1/completions", json={**body, "speculative": "yes"}, timeout=60)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "speculative"
    native = httpx.post(f"{base_url}/api/v1/generate", json=body, timeout=60).json()
    assert native["usage"]["completion_tokens_details"]["accepted_prediction_tokens"] > 0
    metrics = httpx.get(f"{base_url}/metrics").text
    accepted = [line for line in metrics.splitlines() if line.startswith("llamaserve:spec_decode_num_accepted_tokens_total{")]
    assert accepted and float(accepted[0].rsplit(" ", 1)[1]) >= details["accepted_prediction_tokens"]
    health = httpx.get(f"{base_url}/health").json()["speculation"]
    assert health["mode"] == "ngram" and health["accepted"] >= details["accepted_prediction_tokens"]


def test_the_openai_sdk_sends_a_prediction(openai_client, served_model):
    client = openai_client
    # A prompt without near-ties: Gemma's batched numerics move log-probabilities by ~0.01.
    messages = [{"role": "user", "content": "Repeat after me: one two three four five six seven eight nine ten"}]
    fresh = {"cache_prompt": False}  # both prefill the whole prompt (see the module's note)
    plain = client.chat.completions.create(model=served_model, messages=messages, max_tokens=24, temperature=0,
                                           extra_body=fresh)
    text = plain.choices[0].message.content
    guided = client.chat.completions.create(model=served_model, messages=messages, max_tokens=24, temperature=0,
                                            prediction={"type": "content", "content": text}, extra_body=fresh)
    assert guided.choices[0].message.content == text
    assert guided.usage.completion_tokens_details.accepted_prediction_tokens > 0
