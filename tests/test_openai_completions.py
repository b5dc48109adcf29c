"""POST /v1/completions and GET /v1/models through the official OpenAI SDK."""
from __future__ import annotations

import openai
import pytest

PROMPT = "The capital of France is"


def test_completion_matches_the_engine(openai_client, engine, served_model):
    r = openai_client.completions.create(model=served_model, prompt=PROMPT, max_tokens=8, temperature=0)
    assert r.id.startswith("cmpl-") and r.object == "text_completion" and r.model == served_model
    assert r.system_fingerprint.startswith("b")
    direct = engine.generate(PROMPT, max_tokens=8, temperature=0)
    (choice,) = r.choices
    assert (choice.index, choice.text, choice.finish_reason) == (0, direct.text, direct.finish_reason)
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (direct.usage.prompt_tokens,
                                                                 direct.usage.completion_tokens)


def test_several_prompts_times_n(openai_client, engine, served_model):
    prompts = ["One, two,", "The sky is"]
    r = openai_client.completions.create(model=served_model, prompt=prompts, max_tokens=5, temperature=0, n=2)
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    for p, prompt in enumerate(prompts):  # choice p * n + j belongs to prompt p
        expected = engine.generate(prompt, max_tokens=5, temperature=0).text
        assert [r.choices[2 * p].text, r.choices[2 * p + 1].text] == [expected, expected]
    assert r.usage.prompt_tokens == sum(len(engine.tokenize(p)) for p in prompts)
    assert r.usage.completion_tokens <= 20


def test_token_id_prompt(openai_client, engine, served_model):
    ids = engine.tokenize(PROMPT)
    # No drafts: a batched verification can flip a near-tie greedy token of Gemma's.
    fixed = dict(model=served_model, max_tokens=6, temperature=0, extra_body={"speculative": False})
    by_ids = openai_client.completions.create(prompt=ids, **fixed)
    by_text = openai_client.completions.create(prompt=PROMPT, **fixed)
    assert by_ids.choices[0].text == by_text.choices[0].text


def test_streaming_completion(openai_client, served_model):
    # No drafts: they can flip a near-tie token, and their count (in usage) depends on timing.
    args = dict(model=served_model, prompt=PROMPT, max_tokens=8, temperature=0, extra_body={"speculative": False})
    whole = openai_client.completions.create(**args)
    chunks = list(openai_client.completions.create(**args, stream=True, stream_options={"include_usage": True}))
    assert all(c.object == "text_completion" and c.id == chunks[0].id for c in chunks)
    assert "".join(ch.text for c in chunks for ch in c.choices) == whole.choices[0].text
    finals = [ch.finish_reason for c in chunks for ch in c.choices if ch.finish_reason]
    assert finals == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.model_dump() == whole.usage.model_dump()


def test_completion_logprobs(openai_client, served_model):
    r = openai_client.completions.create(model=served_model, prompt=PROMPT, max_tokens=6, temperature=0, logprobs=2)
    choice = r.choices[0]
    lp = choice.logprobs
    assert "".join(lp.tokens) == choice.text
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == r.usage.completion_tokens
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:k]) for k in range(len(lp.tokens))]
    for token, logprob, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert logprob <= 0 and len(top) == 2 and top[token] == logprob  # greedy: the best one


def test_echo(openai_client, served_model):
    plain = openai_client.completions.create(model=served_model, prompt=PROMPT, max_tokens=4, temperature=0)
    echoed = openai_client.completions.create(model=served_model, prompt=PROMPT, max_tokens=4, temperature=0,
                                              echo=True)
    assert echoed.choices[0].text == PROMPT + plain.choices[0].text


def test_stop_and_seed(openai_client, served_model):
    args = dict(model=served_model, prompt="Once upon a time", max_tokens=12, temperature=1.0)
    first = openai_client.completions.create(**args, seed=99).choices[0].text
    assert openai_client.completions.create(**args, seed=99).choices[0].text == first
    greedy = openai_client.completions.create(model=served_model, prompt=PROMPT, max_tokens=8, temperature=0)
    text = greedy.choices[0].text
    stop = text[len(text) // 2:len(text) // 2 + 2]
    cut = openai_client.completions.create(model=served_model, prompt=PROMPT, max_tokens=8, temperature=0, stop=stop)
    assert cut.choices[0].text == text[:text.index(stop)] and cut.choices[0].finish_reason == "stop"


def test_models_list_and_retrieve(openai_client, served_model):
    models = openai_client.models.list()
    ids = [m.id for m in models.data]
    assert served_model in ids
    model = openai_client.models.retrieve(served_model)
    assert (model.id, model.object, model.owned_by) == (served_model, "model", "llamaserve")
    assert model.created > 0
    with pytest.raises(openai.NotFoundError) as info:
        openai_client.models.retrieve("no-such-model")
    assert info.value.code == "model_not_found"


@pytest.mark.parametrize("sampling", [
    {"presence_penalty": 1.5}, {"frequency_penalty": 2.0}, {"temperature": 0.9, "top_p": 0.5, "seed": 3},
])
def test_sampling_parameters_reach_the_engine(openai_client, engine, served_model, sampling):
    prompt, sampling = "a a a a a a a a", {"temperature": 0, **sampling}
    r = openai_client.completions.create(model=served_model, prompt=prompt, max_tokens=8, **sampling)
    assert r.choices[0].text == engine.generate(prompt, max_tokens=8, **sampling).text
    if "frequency_penalty" in sampling:  # and it changes this result
        assert r.choices[0].text != engine.generate(prompt, max_tokens=8, temperature=0).text


def test_logit_bias_bans_a_token(openai_client, engine, served_model):
    greedy = openai_client.completions.create(model=served_model, prompt=PROMPT, max_tokens=1, temperature=0,
                                              logprobs=0)
    first = greedy.choices[0].logprobs.tokens[0]
    (token_id,) = engine.tokenize(first, add_special=False)
    banned = openai_client.completions.create(model=served_model, prompt=PROMPT, max_tokens=1, temperature=0,
                                              logprobs=0, logit_bias={str(token_id): -100})
    assert banned.choices[0].logprobs.tokens[0] != first
