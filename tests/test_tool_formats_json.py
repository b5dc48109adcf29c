"""The tool-call formats whose calls are JSON after a family's own markers
(server/chat/formats/json_formats.py) against the vendored templates that use them: each
template renders with tools and is given its format, and replies written in its model's own
syntax read the same whole and in random pieces, arguments streamed, bad replies never
raising anything but MalformedCall; the grammar that forces a call writes what the reader reads."""
from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import pytest

from format_cases import Case, all_cases, outcome, random_pieces, read_raising_only_malformed, reply_in_history, source
from format_cases import parse as parse_with
from gbnf import Grammar
from llamaserve.server.chat.formats import OutputParser, format_for
from llamaserve.server.chat.formats.events import CallArguments, CallStart, MalformedCall
from llamaserve.server.chat.templates import ChatTemplate
from llamaserve.server.chat.tools import Tool, ToolChoice



def _property(kind: str, **more: Any) -> dict[str, Any]:
    return {"type": kind, "description": f"a {kind}", **more}  # Command R+'s template prints each description


TOOLS = [
    Tool("get_weather", "The forecast for a city", {
        "type": "object", "required": ["city"],
        "properties": {"city": _property("string"), "days": _property("integer"),
                       "options": _property("object", additionalProperties={}),
                       "tags": _property("array", items={"type": "string"})}}),
    Tool("save_note", "Save a note", {
        "type": "object", "required": ["text"], "properties": {"text": _property("string"),
                                                               "pinned": _property("boolean")}}),
    Tool("get_time", "The current time", {"type": "object", "properties": {}}),
]

parse = functools.partial(parse_with, tools=TOOLS)
NOTE = 'He said "hi" \\o/\n<b>bold</b> & {braces}: ünïcødé ✓ 日本語, a line\nand another'
CALLS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "simple": [("get_weather", {"city": "Paris", "days": 3})],
    "note": [("save_note", {"text": NOTE, "pinned": True})],
    "object": [("get_weather", {"city": "Łódź", "options": {"hourly": True, "fields": ["temp", {"a": None}]},
                                "tags": ["a", "b"]})],
    "two": [("get_time", {}), ("get_weather", {"city": "New York"})],
}
LEAD = "Let me check that for you.\n\n"


# -- each family's syntax, as its template writes a call ------------------------------------

def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _objects(calls: list, name: str = "name", arguments: str = "arguments") -> list[str]:
    return [_json({name: n, arguments: a}) for n, a in calls]


def llama3(calls: list, lead: str) -> str:
    body = "; ".join(_objects(calls, arguments="parameters"))
    return f"{lead}<|python_tag|>{body}" if lead else body


def mistral(calls: list, lead: str) -> str:
    return lead + "".join(f"[TOOL_CALLS]{n}[ARGS]{_json(a)}" for n, a in calls)


def mistral_small(calls: list, lead: str) -> str:
    return lead + "".join(f"[TOOL_CALLS]{n}[CALL_ID]abcDEF12{i}[ARGS]{_json(a)}" for i, (n, a) in enumerate(calls))


def mistral_nemo(calls: list, lead: str) -> str:
    return lead + "[TOOL_CALLS][" + ", ".join(_json({"name": n, "arguments": a, "id": f"abcDEF12{i}"})
                                              for i, (n, a) in enumerate(calls)) + "]"


DS = ("<｜tool▁calls▁begin｜>", "<｜tool▁call▁begin｜>", "<｜tool▁sep｜>", "<｜tool▁call▁end｜>", "<｜tool▁calls▁end｜>")


def deepseek_r1(calls: list, lead: str) -> str:
    return lead + DS[0] + "\n".join(f"{DS[1]}function{DS[2]}{n}\n```json\n{_json(a)}\n```{DS[3]}"
                                    for n, a in calls) + DS[4]


def deepseek_v31(calls: list, lead: str) -> str:
    return lead + DS[0] + "".join(f"{DS[1]}{n}{DS[2]}{_json(a)}{DS[3]}" for n, a in calls) + DS[4]


def _dsml(block: str) -> Callable[[list, str], str]:
    def write(calls: list, lead: str) -> str:
        return lead + f"<｜DSML｜{block}>\n" + "".join(
            f'<｜DSML｜invoke name="{n}">\n' + "".join(
                f'<｜DSML｜parameter name="{k}" string="{str(isinstance(v, str)).lower()}">'
                f"{v if isinstance(v, str) else _json(v)}</｜DSML｜parameter>\n" for k, v in a.items()) +
            "</｜DSML｜invoke>\n" for n, a in calls) + f"</｜DSML｜{block}>"
    return write


def kimi_k2(calls: list, lead: str) -> str:
    return lead + "<|tool_calls_section_begin|>" + "".join(
        f"<|tool_call_begin|>functions.{n}:{i}<|tool_call_argument_begin|>{_json(a)}<|tool_call_end|>"
        for i, (n, a) in enumerate(calls)) + "<|tool_calls_section_end|>"


def kimi_k3(calls: list, lead: str) -> str:
    def argument(key: str, value: Any) -> str:
        kind = {str: "string", bool: "boolean", int: "number", dict: "object", list: "array"}[type(value)]
        text = value if isinstance(value, str) else _json(value)
        return f'<|open|>argument key="{key}" type="{kind}"<|sep|>{text}<|close|>argument<|sep|>'
    return (f"<|open|>response<|sep|>{lead}<|close|>response<|sep|><|open|>tools<|sep|>" + "".join(
        f'<|open|>call tool="{n}" index="{i + 1}"<|sep|>' + "".join(argument(k, v) for k, v in a.items()) +
        "<|close|>call<|sep|>" for i, (n, a) in enumerate(calls)) + "<|close|>tools<|sep|><|close|>message<|sep|>")


def functionary_v31(calls: list, lead: str) -> str:
    return lead + "".join(f"<function={n}>{_json(a)}</function>" for n, a in calls)


def functionary_v32(calls: list, lead: str) -> str:  # after the generation prompt's ">>>"
    return (f"all\n{lead}>>>" if lead else "") + ">>>".join(f"{n}\n{_json(a)}" for n, a in calls)


def _listed(before: str, after: str, **keys: str) -> Callable[[list, str], str]:
    def write(calls: list, lead: str) -> str:
        return lead + before + "[" + ", ".join(_objects(calls, **keys)) + "]" + after
    return write


def command_r7b(calls: list, lead: str) -> str:
    return lead + "<|START_ACTION|>[\n" + ",\n".join(
        "    " + _json({"tool_call_id": str(i), "tool_name": n, "parameters": a})
        for i, (n, a) in enumerate(calls)) + "\n]<|END_ACTION|>"


def apertus(calls: list, lead: str) -> str:
    return lead + "<|tools_prefix|>[" + ", ".join(_json({n: a}) for n, a in calls) + "]<|tools_suffix|>"


def gigachat3(calls: list, lead: str) -> str:
    return lead + "<|message_sep|>\n\nfunction call<|role_sep|>\n" + _objects(calls)[0]


def gigachat31(calls: list, lead: str) -> str:
    return lead + "<|function_call|>" + _objects(calls)[0]


Writer = Callable[[list, str], str]
FAMILIES: dict[str, tuple[str, Writer]] = {  # template -> (format, how its model writes calls)
    "meta-llama-Llama-3.1-8B-Instruct.jinja": ("llama3", llama3),
    "meta-llama-Llama-3.2-3B-Instruct.jinja": ("llama3", llama3),
    "meta-llama-Llama-3.3-70B-Instruct.jinja": ("llama3", llama3),
    "Mistral-Small-3.2-24B-Instruct-2506.jinja": ("mistral", mistral_small),
    "unsloth-mistral-Devstral-Small-2507.jinja": ("mistral", mistral),
    "mistralai-Ministral-3-14B-Reasoning-2512.jinja": ("mistral", mistral),
    "mistralai-Mistral-Nemo-Instruct-2407.jinja": ("mistral-nemo", mistral_nemo),
    "llama-cpp-deepseek-r1.jinja": ("deepseek-r1", deepseek_r1),
    "deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja": ("deepseek-r1", deepseek_r1),
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja": ("deepseek-r1", deepseek_r1),
    "deepseek-ai-DeepSeek-V3.1.jinja": ("deepseek-v3.1", deepseek_v31),
    "deepseek-ai-DeepSeek-V3.2.jinja": ("deepseek-v3.2", _dsml("function_calls")),
    "deepseek-ai-DeepSeek-V4.jinja": ("deepseek-v4", _dsml("tool_calls")),
    "deepseek-ai-DeepSeek-V4-Flash-0731.jinja": ("deepseek-v4", _dsml("tool_calls")),
    "moonshotai-Kimi-K2.jinja": ("kimi-k2", kimi_k2),
    "Kimi-K2-Instruct.jinja": ("kimi-k2", kimi_k2),
    "Kimi-K2-Thinking.jinja": ("kimi-k2", kimi_k2),
    "Kimi-K3.jinja": ("kimi-k3", kimi_k3),
    "meetkai-functionary-medium-v3.1.jinja": ("functionary-v3.1", functionary_v31),
    "meetkai-functionary-medium-v3.2.jinja": ("functionary-v3.2", functionary_v32),
    "fireworks-ai-llama-3-firefunction-v2.jinja": ("firefunction-v2", _listed(" functools", "")),
    "ibm-granite-granite-3.3-2B-Instruct.jinja": ("granite", _listed("<|tool_call|>", "")),
    "CohereForAI-c4ai-command-r7b-12-2024-tool_use.jinja": ("command-r7b", command_r7b),
    "Cohere2MoE.jinja": ("command-r7b", command_r7b),
    "CohereForAI-c4ai-command-r-plus-tool_use.jinja": (
        "command-r-plus", _listed("Action:\n```json\n", "\n```", name="tool_name", arguments="parameters")),
    "Apertus-8B-Instruct.jinja": ("apertus", apertus),
    "unsloth-Apriel-1.5.jinja": ("apriel", _listed("<tool_calls>", "</tool_calls>")),
    "Apriel-1.6-15b-Thinker-fixed.jinja": ("apriel", _listed("<tool_calls>", "</tool_calls>")),
    "NVIDIA-Nemotron-Nano-v2.jinja": ("nemotron-nano-v2", _listed("<TOOLCALL>", "</TOOLCALL>")),
    "GigaChat3-10B-A1.8B.jinja": ("gigachat-3", gigachat3),
    "GigaChat3.1-10B-A1.8B.jinja": ("gigachat-3.1", gigachat31),
}
ONE_CALL = {"gigachat-3", "gigachat-3.1"}  # families whose reply holds one call
# Templates that never show the tools (the planner gives them the generic format instead).
NO_TOOLS_SHOWN = {"deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja", "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja",
                  "deepseek-ai-DeepSeek-V3.1.jinja"}
# Templates the project's sandbox cannot render with tools yet, and why (outside the formats).
UNRENDERABLE = {
    "fireworks-ai-llama-3-firefunction-v2.jinja": "reads `functions` and `datetime`, which only llama.cpp passes",
}
SHOWS_NO_CALLS = {"ibm-granite-granite-3.3-2B-Instruct.jinja"}  # renders an assistant's content only
CALLS_WITHOUT_CONTENT = {"deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja"}  # renders calls only when content is null
SANDBOX_REFUSES = "its history of calls appends to a list, which the immutable sandbox refuses"
# Other templates whose calls are Hermes' <tool_call>{json}</tool_call>, checked to stay so.
HERMES = ["Bielik-11B-v3.0-Instruct.jinja", "MiMo-VL.jinja", "ibm-granite-granite-4.0.jinja",
          "ibm-granite-granite-4.1.jinja"]



def _cases(fmt: str, write: Writer) -> list[Case]:
    plain = "The weather in Paris is sunny, 22°C."
    cases: list[Case] = [(plain, plain, [])]
    for name, calls in CALLS.items():
        if len(calls) > 1 and fmt in ONE_CALL:
            continue
        lead = "" if name == "note" else LEAD  # one reply is the call alone
        cases.append((write(calls, lead), lead.strip() or None, calls))
    return cases


CASES: dict[str, list[Case]] = {template: _cases(fmt, write) for template, (fmt, write) in FAMILIES.items()}


# -- helpers -----------------------------------------------------------------------------











def chat(template: str) -> ChatTemplate:
    return ChatTemplate.from_source(source(template), bos_token="<s>", eos_token="</s>")


# -- tests -------------------------------------------------------------------------------

@pytest.mark.parametrize("template", [pytest.param(t, marks=pytest.mark.xfail(reason=UNRENDERABLE[t], strict=True))
                                      if t in UNRENDERABLE else t for t in CASES])
def test_template_renders_with_tools(template: str) -> None:
    template_chat = chat(template)
    prompt = template_chat.render([{"role": "user", "content": "Weather in Paris?"}],
                                  tools=[t.to_openai() for t in TOOLS])
    assert "Weather in Paris?" in prompt
    assert ("get_weather" in prompt) == template_chat.supports_tools == (template not in NO_TOOLS_SHOWN)


@pytest.mark.parametrize("template", list(CASES) + HERMES)
def test_template_gets_its_format(template: str) -> None:
    assert format_for(source(template)).name == FAMILIES.get(template, ("hermes",))[0]


@pytest.mark.parametrize("template", [
    pytest.param(t, marks=pytest.mark.xfail(reason=SANDBOX_REFUSES, strict=True)) if t.startswith("Kimi-K2") else t
    for t in CASES if t not in UNRENDERABLE and t not in SHOWS_NO_CALLS])
def test_calls_rendered_by_the_template_read_back(template: str) -> None:
    """What follows the generation prompt in a rendered history is a reply in the model's own
    syntax: read with the template's format, it gives back the calls put in."""
    calls = CALLS["simple"] + CALLS["note"]
    if "Llama-3" in template or FAMILIES[template][0] in ONE_CALL:
        calls = calls[:1]  # their templates render one call
    reply = reply_in_history(chat(template), TOOLS, calls, ids="abcDEF12{}",  # Mistral's ids are 9 characters
                             content=None if template in CALLS_WITHOUT_CONTENT else "")
    collected, _ = parse(format_for(source(template)), reply)
    assert outcome(collected)[1] == calls


@pytest.mark.parametrize(("template", "index"), all_cases(CASES))
def test_reply_reads_the_same_whole_and_in_pieces(template: str, index: int) -> None:
    reply, content, calls = CASES[template][index]
    fmt = format_for(source(template))
    assert outcome(parse(fmt, reply)[0]) == (content, calls)
    for seed in range(4):
        assert outcome(parse(fmt, reply, random_pieces(reply, seed))[0]) == (content, calls)


@pytest.mark.parametrize("template", list(CASES))
def test_arguments_stream_in_pieces(template: str) -> None:
    """Fed token-sized pieces, a call's arguments go out in many pieces as they come."""
    reply = next(case[0] for case in CASES[template] if case[2] == CALLS["note"])
    _, events = parse(format_for(source(template)), reply, [reply[i:i + 3] for i in range(0, len(reply), 3)])
    pieces = [e.text for e in events if isinstance(e, CallArguments) and e.text]
    whole = "".join(pieces)
    assert json.loads(whole) == CALLS["note"][0][1]
    assert len(pieces) >= 10 and len(max(pieces, key=len)) < len(whole) // 4


@pytest.mark.parametrize("template", list(CASES))
def test_the_name_goes_out_before_the_arguments_end(template: str) -> None:
    reply = next(case[0] for case in CASES[template] if case[2] == CALLS["note"])
    events = OutputParser(format_for(source(template)), TOOLS).feed(reply[:reply.index("a line")])
    assert [e.name for e in events if isinstance(e, CallStart)] == ["save_note"]
    assert any(isinstance(e, CallArguments) for e in events)


@pytest.mark.parametrize("template", list(CASES))
def test_unknown_tool_names_are_text(template: str) -> None:
    reply = FAMILIES[template][1]([("launch_rockets", {"target": "moon"})], LEAD)
    for pieces in (None, random_pieces(reply, 1)):
        collected, _ = parse(format_for(source(template)), reply, pieces)
        assert collected.calls == [] and "launch_rockets" in "".join(collected.text)


def _adversarial(write: Writer) -> list[str]:
    call = write(CALLS["object"], LEAD)
    nested: Any = 1
    for _ in range(200):
        nested = [nested]
    deep = write([("get_weather", {"city": "x", "tags": nested})], "")
    markers = ("[TOOL_CALLS]", "[ARGS]", "<|python_tag|>", "<｜tool▁calls▁end｜>", "<｜tool▁call▁end｜>",
               "</｜DSML｜parameter>", "</｜DSML｜invoke>", "<|tool_calls_section_end|>", "<|tool_call_end|>",
               "<|close|>call<|sep|>", "<|close|>tools<|sep|>", "</function>", ">>>", "]<|END_ACTION|>", "```",
               "]<|tools_suffix|>", "</tool_calls>", "</TOOLCALL>", "<|message_sep|>", "<|function_call|>")
    return [call[:k] for k in range(1, len(call), 5)] + [
        "[" * 1100, "{" * 1100, deep, deep[:len(deep) // 2], "".join(markers), *markers,
        call.replace('"Łódź"', "[" * 1100), call.replace('"Łódź"', "{" * 1100), call.replace('"Łódź"', "NaN"),
        write([("get_weather", {"city": "<" * 50 + "\\" * 9})], ""), call.replace("get_weather", "get_weather" + "x" * 400),
        call + call[: len(call) // 2], "\x00" + call.replace("Łódź", "\x00"), call.replace('"', "'"),
        call.replace("Łódź", "\\ud800"),
    ]


@pytest.mark.parametrize("template", list(CASES))
def test_bad_replies_raise_nothing_but_malformed_call(template: str) -> None:
    read_raising_only_malformed(format_for(source(template)), _adversarial(FAMILIES[template][1]), TOOLS)


def test_a_truncated_call_is_malformed() -> None:
    for template, (_, write) in FAMILIES.items():
        reply = write(CALLS["object"], LEAD)
        with pytest.raises(MalformedCall):
            parse(format_for(source(template)), reply[:reply.index('"fields"')])


SAMPLE_TEXT = 'Hi <there> "you"\nbye'
SAMPLE_ARGUMENTS = _json({"text": SAMPLE_TEXT, "pinned": False})
SAMPLE_CALL = _json({"name": "save_note", "arguments": {"text": SAMPLE_TEXT, "pinned": False}})
COHERE_CALL = _json({"tool_name": "save_note", "parameters": {"text": SAMPLE_TEXT, "pinned": False}})
GRAMMAR_SAMPLES = {  # format -> a call to save_note as its grammar spells it
    "llama3": _json({"name": "save_note", "parameters": {"text": SAMPLE_TEXT, "pinned": False}}),
    "mistral": f"[TOOL_CALLS]save_note[ARGS]{SAMPLE_ARGUMENTS}",
    "mistral-nemo": f"[TOOL_CALLS][{SAMPLE_CALL}]",
    "deepseek-r1": f"{DS[0]}{DS[1]}function{DS[2]}save_note\n```json\n{SAMPLE_ARGUMENTS}\n```{DS[3]}{DS[4]}",
    "deepseek-v3.1": f"{DS[0]}{DS[1]}save_note{DS[2]}{SAMPLE_ARGUMENTS}{DS[3]}{DS[4]}",
    "deepseek-v3.2": f'<｜DSML｜function_calls>\n<｜DSML｜invoke name="save_note">\n<｜DSML｜parameter name="text" '
                     f'string="true">{SAMPLE_TEXT}</｜DSML｜parameter>\n<｜DSML｜parameter name="pinned" '
                     'string="false">false</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜function_calls>',
    "kimi-k2": "<|tool_calls_section_begin|><|tool_call_begin|>functions.save_note:0<|tool_call_argument_begin|>"
               f"{SAMPLE_ARGUMENTS}<|tool_call_end|><|tool_calls_section_end|>",
    "kimi-k3": '<|open|>tools<|sep|><|open|>call tool="save_note" index="1"<|sep|><|open|>json type="object"<|sep|>'
               f"{SAMPLE_ARGUMENTS}<|close|>json<|sep|><|close|>call<|sep|><|close|>tools<|sep|>",
    "functionary-v3.1": f"<function=save_note>{SAMPLE_ARGUMENTS}</function>",
    "functionary-v3.2": f"save_note\n{SAMPLE_ARGUMENTS}",
    "firefunction-v2": f" functools[{SAMPLE_CALL}]",
    "granite": f"<|tool_call|>[{SAMPLE_CALL}]",
    "command-r7b": f"<|START_ACTION|>[{COHERE_CALL}]<|END_ACTION|>",
    "command-r-plus": f"Action:\n```json\n[{COHERE_CALL}]\n```",
    "apertus": f'<|tools_prefix|>[{{"save_note": {SAMPLE_ARGUMENTS}}}]<|tools_suffix|>',
    "apriel": f"<tool_calls>[{SAMPLE_CALL}]</tool_calls>",
    "nemotron-nano-v2": f"<TOOLCALL>[{SAMPLE_CALL}]</TOOLCALL>",
    "gigachat-3": f"<|message_sep|>\n\nfunction call<|role_sep|>\n{SAMPLE_CALL}",
    "gigachat-3.1": f"<|function_call|>{SAMPLE_CALL}",
}
GRAMMAR_SAMPLES["deepseek-v4"] = GRAMMAR_SAMPLES["deepseek-v3.2"].replace("function_calls", "tool_calls")
ONE_TEMPLATE_PER_FORMAT = {fmt: template for template, (fmt, _) in reversed(list(FAMILIES.items()))}


@pytest.mark.parametrize(("fmt_name", "template"), sorted(ONE_TEMPLATE_PER_FORMAT.items()))
def test_forced_call_grammar_accepts_a_call_the_reader_reads(fmt_name: str, template: str) -> None:
    fmt = format_for(source(template))
    sample = GRAMMAR_SAMPLES[fmt_name]
    for choice in (ToolChoice("required"), ToolChoice("function", "save_note")):
        grammar = Grammar(fmt.call_grammar(TOOLS, choice, parallel=True))
        assert grammar.accepts(sample), sample
        assert not grammar.accepts(sample.replace("save_note", "save_notes"))
    assert not Grammar(fmt.call_grammar(TOOLS, ToolChoice("function", "get_time"), parallel=True)).accepts(sample)
    collected, _ = parse(fmt, sample)
    assert outcome(collected) == (None, [("save_note", {"text": SAMPLE_TEXT, "pinned": False})])


def test_parallel_tool_calls_false_keeps_one_call() -> None:
    for template, (fmt_name, write) in FAMILIES.items():
        if fmt_name not in ONE_CALL:
            collected, _ = parse(format_for(source(template)), write(CALLS["two"], LEAD), parallel=False)
            assert [c.name for c in collected.calls] == ["get_time"], template


def test_mistral_call_ids_are_the_nine_characters_its_templates_take() -> None:
    for template in ("mistralai-Mistral-Nemo-Instruct-2407.jinja", "unsloth-mistral-Devstral-Small-2507.jinja"):
        collected, _ = parse(format_for(source(template)), FAMILIES[template][1](CALLS["two"], ""))
        assert all(len(c.id) == 9 and c.id.isalnum() for c in collected.calls)
    small = "Mistral-Small-3.2-24B-Instruct-2506.jinja"
    collected, _ = parse(format_for(source(small)), mistral_small(CALLS["two"], ""))
    assert [c.id for c in collected.calls] == ["abcDEF120", "abcDEF121"]  # the model's own


def test_kimi_k2_keeps_the_model_call_ids() -> None:
    collected, _ = parse(format_for(source("Kimi-K2-Instruct.jinja")), kimi_k2(CALLS["two"], ""))
    assert [c.id for c in collected.calls] == ["functions.get_time:0", "functions.get_weather:1"]


CODE_TOOLS = [*TOOLS, Tool("python", "Run code", {"type": "object", "properties": {"code": _property("string")}}),
              Tool("brave_search", "Search", {"type": "object", "properties": {"query": _property("string")}})]
CODE = 'import math\nprint(f"{math.pi:.2f}", "\\n")\n'


@pytest.mark.parametrize(("template", "reply", "content", "calls"), [
    ("meta-llama-Llama-3.1-8B-Instruct.jinja", 'Searching.<|python_tag|>brave_search.call(query="Paris \\"weather\\"")',
     "Searching.", [("brave_search", {"query": 'Paris "weather"'})]),
    ("meta-llama-Llama-3.1-8B-Instruct.jinja", f"<|python_tag|>{CODE}", None, [("python", {"code": CODE})]),
    ("meetkai-functionary-medium-v3.1.jinja", f"Running it.<|python_tag|>{CODE}", "Running it.",
     [("python", {"code": CODE})]),
    ("meetkai-functionary-medium-v3.2.jinja", f'all\nRunning it.\n>>>python\n{CODE}>>>get_time\n{{}}>>>all\nDone.',
     "Running it.Done.", [("python", {"code": CODE}), ("get_time", {})]),
])
def test_built_in_tools_and_code(template: str, reply: str, content: str | None, calls: list) -> None:
    fmt = format_for(source(template))
    for pieces in (None, random_pieces(reply, 5, 4)):
        assert outcome(parse(fmt, reply, pieces, tools=CODE_TOOLS)[0]) == (content, calls)
    inside = reply.index(CODE) + len("import ma") if CODE in reply else len(reply) - 3  # the first call's arguments
    events = OutputParser(fmt, CODE_TOOLS).feed(reply[:inside])
    assert [e.name for e in events if isinstance(e, CallStart)] == [calls[0][0]]


@pytest.mark.parametrize("reply", ['<|python_tag|>brave_search.call(query="x"', "<|python_tag|>brave_search.call(q=" +
                                   "[" * 1100, "<|python_tag|>brave_search.call(q=__import__('os').system('id'))"])
def test_a_bad_built_in_call_is_malformed(reply: str) -> None:
    with pytest.raises(MalformedCall):
        parse(format_for(source("meta-llama-Llama-3.1-8B-Instruct.jinja")), reply, tools=CODE_TOOLS)


@pytest.mark.parametrize(("template", "reply", "calls"), [
    ("llama-cpp-deepseek-r1.jinja", f'{DS[1]}function{DS[2]}get_time\n```json\n{{}}{DS[3]}', [("get_time", {})]),
    ("llama-cpp-deepseek-r1.jinja", f'{DS[0]}{DS[1]}get_time{DS[2]}{{}}{DS[3]}{DS[4]}', [("get_time", {})]),
    ("moonshotai-Kimi-K2.jinja", "<|tool_call_begin|>get_time<|tool_call_argument_begin|>{}<|tool_call_end|>",
     [("get_time", {})]),
    ("unsloth-mistral-Devstral-Small-2507.jinja", '[TOOL_CALLS]{"name": "get_time", "arguments": {}}',
     [("get_time", {})]),
    ("meta-llama-Llama-3.2-3B-Instruct.jinja", '{"type": "function", "name": "get_time", "parameters": {}}\n'
     '{"name": "get_weather", "arguments": {"city": "Rome"}}', [("get_time", {}), ("get_weather", {"city": "Rome"})]),
    ("CohereForAI-c4ai-command-r-plus-tool_use.jinja", 'Action: [{"tool_name": "get_time", "parameters": {}}]',
     [("get_time", {})]),
    ("Kimi-K3.jinja", '<|open|>tools<|sep|><|open|>call tool="get_time" index="1"<|sep|><|close|>call<|sep|>'
     '<|close|>tools<|sep|>', [("get_time", {})]),
])
def test_variants_the_models_also_write(template: str, reply: str, calls: list) -> None:
    """A call without a fence's end or a section's tags, V3.1's spelling in an R1 template, ..."""
    for pieces in (None, random_pieces(reply, 6, 4)):
        assert outcome(parse(format_for(source(template)), reply, pieces)[0]) == (None, calls)
