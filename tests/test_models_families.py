"""Every family behind the spec's models runs on the engine: the tiny random-weight GGUF of
each architecture (llama, qwen, gemma, chatglm) loads, tokenizes with its real vocabulary,
generates, and its conversations render with the family's chat template into the
vocabulary's special tokens; F16 files quantized to Q4_0 and Q8_0 still load and generate.
The default model (gemma3) proves real text elsewhere (tests/test_engine_*.py)."""
from __future__ import annotations

import pytest

import llamaserve
from llamaserve.server.chat import templates as chat
from llamaserve import models as m
from tiny_models import FAMILIES

CONVERSATION = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]

# family -> (template used, the rendered prompt)
EXPECTED_PROMPTS = {
    "llama": ("gguf", "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHello there [/INST]"),
    "qwen": ("gguf", "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello there<|im_end|>\n"
                     "<|im_start|>assistant\n"),
    "gemma": ("gguf", None),  # Gemma's template refuses a system turn; checked separately
    "chatglm": ("chatglm3", "[gMASK]sop<|system|>\n Be brief.<|user|>\n Hello there<|assistant|>"),
}
# family -> the control tokens its template uses, each one vocabulary token
SPECIAL = {
    "llama": ["<s>", "</s>"],
    "qwen": ["<|im_start|>", "<|im_end|>", "<|endoftext|>"],
    "gemma": ["<start_of_turn>", "<end_of_turn>"],
    "chatglm": ["[gMASK]", "sop", "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>"],
}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family_engine(request, tiny_models):
    family = request.param
    eng = llamaserve.Engine.load(tiny_models[family], n_ctx=128, n_parallel=2, n_threads=1)
    yield family, eng
    eng.close()


def test_loads_and_generates(family_engine):
    family, eng = family_engine
    meta = eng.metadata
    assert meta["architecture"] == FAMILIES[family].arch
    out = eng.generate("The weather today is", max_tokens=12, temperature=0, ignore_eos=True)
    assert out.usage.completion_tokens == 12 and out.finish_reason == "length"
    assert out.text  # random words of the real vocabulary
    again = eng.generate("The weather today is", max_tokens=12, temperature=0, ignore_eos=True)
    assert again.text == out.text  # greedy decoding is deterministic
    sampled = eng.generate_batch(["a", "b c", "d e f"], max_tokens=5, temperature=0.8, seed=3, ignore_eos=True)
    assert [c.usage.completion_tokens for c in sampled] == [5, 5, 5]


def test_greedy_picks_the_most_likely_token_over_the_whole_vocabulary(family_engine):
    # The vocabularies here (32000 to 151k tokens, not all multiples of 16) exercise the
    # vectorized argmax's tail; the log-probability ranking is computed separately.
    _, eng = family_engine
    stream = eng.stream("The weather today is", max_tokens=8, temperature=0, ignore_eos=True, logprobs=1)
    stream.completion()
    records = stream.take_token_logprobs()
    assert len(records) == 8
    for token, logprob, [(top_token, top_logprob)] in records:
        assert token == top_token or logprob == top_logprob


def test_real_vocabulary(family_engine):
    family, eng = family_engine
    text = "Hello world, 你好"
    assert eng.detokenize(eng.tokenize(text, add_special=False)) == text
    for token in SPECIAL[family]:
        ids = eng.tokenize(token, add_special=False, parse_special=True)
        assert len(ids) == 1, f"{token!r} is not one token of the {family} vocabulary"


def test_chat_template_applied(family_engine):
    family, eng = family_engine
    template = chat.template_for_engine(eng)
    kind, expected = EXPECTED_PROMPTS[family]
    assert template.name == kind
    if family == "gemma":
        with pytest.raises(chat.TemplateRaised):  # Gemma's own template has no system turn
            template.render(CONVERSATION)
        prompt = template.render(CONVERSATION[1:])
        assert prompt == "<start_of_turn>user\nHello there<end_of_turn>\n<start_of_turn>model\n"
    else:
        prompt = template.render(CONVERSATION)
        assert prompt == expected
    # The markers reach the model as control tokens, not as spelled-out text.
    ids = eng.tokenize(prompt, add_special=True, parse_special=True)
    marker = SPECIAL[family][0] if family != "llama" else "[INST]"
    if family != "llama":
        assert eng.tokenize(marker, add_special=False, parse_special=True)[0] in ids
    out = eng.generate(ids, max_tokens=4, temperature=0, ignore_eos=True)
    assert out.usage.prompt_tokens == len(ids)


def test_template_override(tiny_models):
    """A config's chat_template override (a built-in name) replaces the model's own."""
    with llamaserve.Engine.load(tiny_models["qwen"], n_ctx=64, n_parallel=1, n_threads=1) as eng:
        template = chat.template_for_engine(eng, override="llama2")
        assert template.render(CONVERSATION[1:]) == "[INST] Hello there [/INST]"


@pytest.mark.parametrize("qtype", ["Q4_0", "Q8_0"])
def test_quantized_tiny_models_generate(tiny_models, tmp_path, qtype):
    for family in ("llama", "gemma"):
        out = m.quantize(tiny_models[family], qtype, tmp_path / f"{family}.{qtype}.gguf")
        info = m.read_gguf_info(out)
        assert info.quantization == qtype
        with llamaserve.Engine.load(out, n_ctx=64, n_parallel=1, n_threads=1) as eng:
            assert eng.metadata["weights_size"] == info.weights_size
            assert eng.generate("Hi", max_tokens=6, ignore_eos=True).usage.completion_tokens == 6


def test_registry_ids_load(tiny_models, tmp_path):
    """What the registry lists is what the engine loads: every family's entry loads by name."""
    folder = tmp_path / "models"
    folder.mkdir()
    for path in tiny_models.values():
        (folder / path.name).symlink_to(path)
    reg = m.ModelRegistry(folder, include_default=False, cache_dir=tmp_path / "cache")
    for spec_name in ("qwen-7b-chat", "gemma-2b", "llama-2-7b-chat", "chatglm3-6b"):
        entry = reg.resolve(spec_name)
        with llamaserve.Engine.load(entry.path, n_ctx=32, n_parallel=1, n_threads=1) as eng:
            assert eng.metadata["architecture"] == entry.info.architecture
