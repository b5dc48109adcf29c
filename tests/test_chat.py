"""Chat templates: the built-in ones (exact prompts), Jinja rendering of real templates from
vendor/llama.cpp/models/templates, the globals templates expect, and the sandbox."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from llamaserve.server.chat import templates as chat
from llamaserve.server.chat.templates import ChatTemplate, TemplateFailed, TemplateRaised

TEMPLATES = Path(__file__).resolve().parent.parent / "vendor" / "llama.cpp" / "models" / "templates"

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "2+2?"},
]
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                           "required": ["city"]}}}
TOOL_ROUND = [
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
    {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "sunny, 21C"},
]


def _template(name: str) -> str:
    path = TEMPLATES / name
    if not path.is_file():
        pytest.skip(f"{name} is not in the vendored llama.cpp tree (run scripts/vendor_llama.py)")
    return path.read_text()


# -- built-in templates --------------------------------------------------------------------------

def test_gemma_folds_the_system_prompt_into_the_first_user_turn():
    prompt = ChatTemplate.builtin("gemma").render(CONVERSATION)
    assert prompt == ("<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
                      "<start_of_turn>model\nHello!<end_of_turn>\n"
                      "<start_of_turn>user\n2+2?<end_of_turn>\n"
                      "<start_of_turn>model\n")


def test_llama2_chat_format():
    prompt = ChatTemplate.builtin("llama2").render(CONVERSATION)
    assert prompt == ("[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s>"
                      "<s>[INST] 2+2? [/INST]")


def test_chatml_format():
    prompt = ChatTemplate.builtin("chatml").render(CONVERSATION)
    assert prompt == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                      "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
                      "<|im_start|>assistant\n")


def test_chatglm3_format():
    prompt = ChatTemplate.builtin("chatglm3").render(CONVERSATION)
    assert prompt == "[gMASK]sop<|system|>\n Be brief.<|user|>\n Hi<|assistant|>\n Hello!<|user|>\n 2+2?<|assistant|>"


def test_llama3_and_command_r_formats_as_llama_cpp_writes_them():
    assert ChatTemplate.builtin("llama3").render(CONVERSATION) == (
        "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert ChatTemplate.builtin("command-r").render(CONVERSATION) == (
        "<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>Be brief.<|END_OF_TURN_TOKEN|>"
        "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>Hi<|END_OF_TURN_TOKEN|>"
        "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>Hello!<|END_OF_TURN_TOKEN|>"
        "<|START_OF_TURN_TOKEN|><|USER_TOKEN|>2+2?<|END_OF_TURN_TOKEN|>"
        "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>")


def test_generation_prompt_can_be_left_out():
    assert not ChatTemplate.builtin("gemma").render(CONVERSATION, add_generation_prompt=False).endswith(
        "<start_of_turn>model\n")
    assert not ChatTemplate.builtin("chatml").render(CONVERSATION, add_generation_prompt=False).endswith(
        "<|im_start|>assistant\n")


@pytest.mark.parametrize(("architecture", "name"), [
    ("gemma", "gemma"), ("gemma2", "gemma"), ("gemma3", "gemma"), ("llama", "llama2"), ("qwen", "chatml"),
    ("qwen2", "chatml"), ("chatglm", "chatglm3"), ("command-r", "command-r"), ("cohere2", "command-r"),
    ("mamba", "chatml"), (None, "chatml")])
def test_builtin_chosen_by_architecture(architecture, name):
    template = ChatTemplate.for_model({"architecture": architecture, "chat_template": None})
    assert template.name == name
    assert template.stop == chat.BUILTIN_TEMPLATES[name].stop


@pytest.mark.parametrize("name", sorted(chat.BUILTIN_TEMPLATES))
def test_builtins_show_tools_calls_and_results(name):
    prompt = ChatTemplate.builtin(name).render(TOOL_ROUND, tools=[WEATHER])
    assert "get_weather" in prompt and "Weather of a city" in prompt  # the tool is described
    assert '{"name": "get_weather", "arguments": {"city": "Paris"}}' in prompt  # the call
    assert "sunny, 21C" in prompt  # the result


def test_default_model_has_no_template_so_gemma_is_used(engine):
    assert engine.metadata["chat_template"] is None
    template = chat.template_for_engine(engine)
    assert template.name == "gemma" and "<end_of_turn>" in template.stop
    # The markers of the built-in are real special tokens of this vocabulary.
    prompt = template.render([{"role": "user", "content": "Hi"}])
    assert engine.tokenize(prompt) == [2, 105, 2364, 107, 10979, 106, 107, 105, 4368, 107]


def test_special_tokens_of_the_default_model(engine):
    bos, eos, adds_bos = chat.special_tokens(engine)
    assert (bos, eos, adds_bos) == ("<bos>", "<eos>", True)


# -- Jinja templates ------------------------------------------------------------------------------

def test_gemma2_template_renders_and_strips_the_bos_the_tokenizer_adds():
    template = ChatTemplate.from_source(_template("google-gemma-2-2b-it.jinja"), bos_token="<bos>",
                                        eos_token="<eos>", strip_bos=True)
    prompt = template.render(CONVERSATION[1:])
    assert prompt == ("<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n"
                      "<start_of_turn>user\n2+2?<end_of_turn>\n<start_of_turn>model\n")
    assert template.stop == ("<end_of_turn>",)
    kept = ChatTemplate.from_source(_template("google-gemma-2-2b-it.jinja"), bos_token="<bos>")
    assert kept.render(CONVERSATION[1:]).startswith("<bos><start_of_turn>user")


def test_raise_exception_in_a_template_is_the_clients_error():
    template = ChatTemplate.from_source(_template("google-gemma-2-2b-it.jinja"))
    with pytest.raises(TemplateRaised, match="System role not supported"):
        template.render(CONVERSATION)


def test_qwen25_template_with_tools_and_a_tool_round_trip():
    template = ChatTemplate.from_source(_template("Qwen-Qwen2.5-7B-Instruct.jinja"))
    assert template.supports_tools and "<|im_end|>" in template.stop
    prompt = template.render(TOOL_ROUND, tools=[WEATHER])
    assert json.dumps(WEATHER) in prompt  # tojson without HTML escaping, key order kept
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' in prompt
    assert "<tool_response>\nsunny, 21C\n</tool_response>" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    plain = template.render(CONVERSATION)
    assert plain.startswith("<|im_start|>system\nBe brief.<|im_end|>\n") and "# Tools" not in plain


def test_llama31_template_multi_turn():
    template = ChatTemplate.from_source(_template("meta-llama-Llama-3.1-8B-Instruct.jinja"),
                                        bos_token="<|begin_of_text|>", strip_bos=True)
    prompt = template.render(CONVERSATION)
    assert not prompt.startswith("<|begin_of_text|>")
    assert "<|start_header_id|>system<|end_header_id|>\n\n" in prompt and "Be brief." in prompt
    assert "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>" in prompt
    assert prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert "<|eot_id|>" in template.stop


def test_strftime_now_is_available():
    template = ChatTemplate.from_source(_template("meta-llama-Llama-3.2-3B-Instruct.jinja"))
    prompt = template.render(CONVERSATION)
    assert "Today Date:" in prompt and "26 Jul 2024" not in prompt  # a real date from strftime_now


def test_string_arguments_fallback_for_templates_that_concatenate_them():
    source = ("{% for m in messages %}{% for c in m.tool_calls or [] %}"
              "{{ c.function.name + '(' + c.function.arguments + ')' }}{% endfor %}{% endfor %}")
    prompt = ChatTemplate.from_source(source).render(TOOL_ROUND)
    assert prompt == 'get_weather({"city": "Paris"})'


def test_generation_tag_and_loop_controls():
    source = ("{% for m in messages %}{% if loop.index > 2 %}{% break %}{% endif %}"
              "{% generation %}{{ m.content }}{% endgeneration %};{% endfor %}")
    assert ChatTemplate.from_source(source).render(CONVERSATION) == "Be brief.;Hi;"


def test_every_vendored_template_compiles():
    sources = sorted(TEMPLATES.glob("*.jinja"))
    if not sources:
        pytest.skip("no vendored templates (run scripts/vendor_llama.py)")
    for path in sources:
        chat.compile_template(path.read_text())


# -- the sandbox ----------------------------------------------------------------------------------

ESCAPES = [
    "{{ messages.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ joiner.__init__.__globals__['__builtins__']['open']('/etc/passwd').read() }}",
    "{{ lipsum.__globals__['os'].listdir('/') }}",
    "{{ self.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ raise_exception.__globals__['__builtins__'] }}",
    "{% include '/etc/passwd' %}",
    "{% import 'os' as os %}{{ os }}",
    "{% extends '/etc/passwd' %}",
    "{{ open('/etc/passwd').read() }}",
    "{{ __import__('os').system('id') }}",
    "{{ messages.append({'role': 'system'}) }}",
    "{{ messages[0].update({'content': 'x'}) }}",
    "{{ 'x' * 100000000 }}",
    "{{ ['x'] * 100000000 }}",
    "{{ 9 ** 9 ** 9 }}",
    "{% for i in range(10 ** 9) %}{% endfor %}",
    "{{ '{0.__class__.__mro__}'.format(messages) }}",
    "{{ (messages|attr('__class__')).__mro__ }}",
]


@pytest.mark.parametrize("source", ESCAPES)
def test_templates_cannot_escape_the_sandbox(source):
    messages = [{"role": "user", "content": "hi"}]
    try:
        template = ChatTemplate.from_source(source)
        prompt = template.render(messages)
    except TemplateFailed:
        return  # refused, with the typed error the server turns into a 500
    # ... or rendered harmlessly: nothing from Python internals or the file system leaks.
    for leak in ("root:", "<class", "<module", "uid=", "function", "built-in", "__"):
        assert leak not in prompt
    assert messages == [{"role": "user", "content": "hi"}]  # and nothing was mutated


def test_sandbox_errors_are_typed_and_say_what_happened():
    with pytest.raises(TemplateFailed, match="unsafe"):
        ChatTemplate.from_source("{{ cycler.__init__.__globals__ }}").render([])
    with pytest.raises(TemplateFailed, match="too large"):
        ChatTemplate.from_source("{{ 'x' * 100000000 }}").render([])
    with pytest.raises(TemplateFailed, match="does not compile"):
        ChatTemplate.from_source("{% if %}")
    with pytest.raises(TemplateFailed, match="empty"):
        ChatTemplate.from_source("  ")


def test_a_template_error_leaves_the_renderer_usable():
    with pytest.raises(TemplateFailed):
        ChatTemplate.from_source("{{ lipsum.__globals__.os }}").render([])
    assert ChatTemplate.from_source("{{ messages[0].content }}").render([{"role": "user", "content": "ok"}]) == "ok"


def test_override_picks_a_builtin_or_jinja_source():
    assert ChatTemplate.for_model({"architecture": "gemma3"}, override="chatml").name == "chatml"
    jinja = ChatTemplate.for_model({"architecture": "gemma3"}, override="{{ messages[0].content }}")
    assert jinja.name == "gguf" and jinja.render([{"role": "user", "content": "x"}]) == "x"
