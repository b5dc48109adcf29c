"""`llamaserve bench spec`'s workloads: fresh prompts of the intended lengths in SmolLM2's
tokenizer, and request bodies any OpenAI-compatible server takes as they are. No server is
started (the load itself runs in benchmarks/compare.py --spec)."""
from __future__ import annotations

import pytest

import llamaserve
from llamaserve.bench import spec_load, spec_prompts

LONG = ("edit", "quote")  # prompts of ~450 tokens whose output repeats them


@pytest.fixture(scope="module")
def tokenizer(smollm2_path):
    with llamaserve.Engine.load(smollm2_path, n_ctx=64, n_parallel=1) as engine:
        yield engine


@pytest.mark.parametrize("workload", list(spec_prompts.WORKLOADS))
def test_every_run_gets_a_fresh_prompt_and_a_seed_gives_the_same_ones_again(workload):
    prompts = [spec_prompts.prompt_for(workload, seed, run) for seed in ("a", "b") for run in range(4)]
    assert len(set(prompts)) == len(prompts)
    assert spec_prompts.prompt_for(workload, "a", 2) == prompts[2]  # servers of a round get equal prompts


@pytest.mark.parametrize("workload", list(spec_prompts.WORKLOADS))
def test_prompts_are_chatml_of_the_intended_length(tokenizer, workload):
    for run in range(6):
        prompt = spec_prompts.prompt_for(workload, "length", run)
        assert prompt.startswith(f"<|im_start|>system\n{spec_prompts.SYSTEM}<|im_end|>\n<|im_start|>user\n")
        assert prompt.endswith("<|im_end|>\n<|im_start|>assistant\n")
        tokens = len(tokenizer.tokenize(prompt))
        if workload in LONG:
            assert 420 <= tokens <= 490, tokens
        else:
            assert 40 <= tokens <= 120, tokens


def test_fresh_prompts_differ_early_so_no_prefix_cache_covers_them(tokenizer):
    """Past the fixed system prompt and instruction, two runs' prompts part within a few tokens."""
    for workload in LONG:
        a, b = (tokenizer.tokenize(spec_prompts.prompt_for(workload, "prefix", run)) for run in (0, 1))
        shared = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
        assert shared < 80, (workload, shared)


def test_the_edit_prompt_asks_for_the_rename_of_a_parameter_it_uses():
    prompt = spec_prompts.prompt_for("edit", 1, 0)
    assert "rename the parameter `threshold` to `min_score`" in prompt
    assert prompt.count("threshold") >= 8 and prompt.count("def ") == 2


def test_the_request_body_has_only_openai_fields_unless_a_row_adds_one():
    spec = spec_load.SpecLoadSpec(url="http://127.0.0.1:1")
    body = spec_load.request_body(spec, "hi")
    assert body == {"model": "default", "prompt": "hi", "max_tokens": 256, "temperature": 0,
                    "logit_bias": {"0": -100, "1": -100, "2": -100}}  # SmolLM2's end tokens, banned
    off = spec_load.request_body(spec_load.SpecLoadSpec(url="", fields={"speculative": False},
                                                        banned_tokens=()), "hi")
    assert off["speculative"] is False and "logit_bias" not in off


def test_drafts_are_read_from_either_servers_reply():
    ours = {"usage": {"completion_tokens": 256, "completion_tokens_details": {
        "accepted_prediction_tokens": 150, "rejected_prediction_tokens": 30}}}
    theirs = {"usage": {"completion_tokens": 256}, "timings": {"draft_n": 200, "draft_n_accepted": 120}}
    assert spec_load.drafts(ours) == (180, 150)
    assert spec_load.drafts(theirs) == (200, 120)
    assert spec_load.drafts({"usage": {"completion_tokens": 256}, "timings": {}}) == (None, None)
