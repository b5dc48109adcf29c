"""The markup, channel and Python-style tool-call formats (server/chat/formats/markup_formats.py)
against the vendored templates that use them: each template renders with tools, is given its
format, and replies written in its model's own syntax read the same whole and in random
pieces, string arguments streamed, bad replies never raising anything but MalformedCall."""
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
from llamaserve.server.chat.formats.collect import Collected
from llamaserve.server.chat.formats.events import CallArguments, CallEnd, MalformedCall
from llamaserve.server.chat.templates import ChatTemplate
from llamaserve.server.chat.tools import Tool, ToolChoice


TOOLS = [
    Tool("get_weather", "The forecast for a city", {
        "type": "object", "required": ["city"],
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"},
                       "options": {"type": "object"}, "tags": {"type": "array", "items": {"type": "string"}}}}),
    Tool("save_note", "Save a note", {
        "type": "object", "required": ["text"],
        "properties": {"text": {"type": "string"}, "pinned": {"type": "boolean"}}}),
    Tool("get_time", "The current time", {"type": "object", "properties": {}}),
]

parse = functools.partial(parse_with, tools=TOOLS)
NOTE = 'He said "hi" \\o/\n<b>bold</b> & {braces}: ünïcødé ✓ 日本語, a line\nand another'
CALLS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "simple": [("get_weather", {"city": "Paris", "days": 3})],
    "note": [("save_note", {"text": NOTE, "pinned": True})],
    "object": [("get_weather", {"city": "Łódź", "options": {"hourly": True, "fields": ["temp", "wind"]},
                                "tags": ["a", "b"]})],
    "two": [("get_time", {}), ("get_weather", {"city": "New York"})],
}


# -- each family's syntax, as its template writes a call ------------------------------------

def _text(value: Any) -> str:
    """A parameter's value as the XML-style templates write it: strings as they are."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def qwen(calls: list) -> str:
    return "".join(f"<tool_call>\n<function={n}>\n" + "".join(f"<parameter={k}>\n{_text(v)}\n</parameter>\n"
                                                              for k, v in a.items()) + "</function>\n</tool_call>\n"
                   for n, a in calls)


def seed(calls: list) -> str:
    return "".join(f"<seed:tool_call>\n<function={n}>\n" + "".join(f"<parameter={k}>{_text(v)}</parameter>\n"
                                                                   for k, v in a.items()) +
                   "</function>\n</seed:tool_call>" for n, a in calls)


def glm(calls: list, newline: str = "\n") -> str:
    return "".join(f"<tool_call>{n}{newline}" + "".join(f"<arg_key>{k}</arg_key>{newline}<arg_value>{_text(v)}"
                                                        f"</arg_value>{newline}" for k, v in a.items()) + "</tool_call>"
                   for n, a in calls)


def hy3(calls: list) -> str:
    return "<tool_calls:opensource>\n" + "".join(
        f"<tool_call:opensource>{n}<tool_sep:opensource>\n" + "".join(
            f"<arg_key:opensource>{k}</arg_key:opensource>\n<arg_value:opensource>{_text(v)}</arg_value:opensource>\n"
            for k, v in a.items()) + "</tool_call:opensource>\n" for n, a in calls) + "</tool_calls:opensource>"


def minimax_m1(calls: list) -> str:
    return "<tool_calls>\n" + "".join(json.dumps({"name": n, "arguments": a}, ensure_ascii=False) + "\n"
                                      for n, a in calls) + "</tool_calls>"


def minimax_m2(calls: list) -> str:
    return "<minimax:tool_call>\n" + "".join(
        f'<invoke name="{n}">\n' + "".join(f'<parameter name="{k}">{_text(v)}</parameter>\n' for k, v in a.items()) +
        "</invoke>\n" for n, a in calls) + "</minimax:tool_call>"


M3 = "]<]minimax[>["


def _m3_xml(value: Any) -> str:
    if isinstance(value, dict):
        return "".join(f"{M3}<{k}>{_m3_xml(v)}{M3}</{k}>" for k, v in value.items())
    if isinstance(value, list):
        return "".join(f"{M3}<item>{_m3_xml(v)}{M3}</item>" for v in value)
    return json.dumps(value) if isinstance(value, bool) else str(value)


def minimax_m3(calls: list) -> str:
    return f"{M3}<tool_call>\n" + "".join(f'{M3}<invoke name="{n}">{_m3_xml(a)}{M3}</invoke>\n'
                                          for n, a in calls) + f"{M3}</tool_call>"


def minicpm(calls: list) -> str:
    def value(v: Any) -> str:
        text = _text(v)
        return f"<![CDATA[{text}]]>" if isinstance(v, str) and any(c in v for c in "<&\n") else text
    return "\n".join(f'<function name="{n}">' + "".join(f'<param name="{k}">{value(v)}</param>' for k, v in a.items())
                     + "</function>" for n, a in calls)


def harmony(calls: list) -> str:
    return "<|channel|>analysis<|message|>The user wants a tool.<|end|>" + "".join(
        f"<|start|>assistant<|channel|>commentary to=functions.{n} <|constrain|>json<|message|>"
        f"{json.dumps(a, ensure_ascii=False)}<|call|>" for n, a in calls)


def muse(calls: list) -> str:
    return " to=self<|message|>The user wants a tool.<|eom|>" + "<|eom|>".join(
        f'<|start|>assistant to={n}<|message|><atem:function_calls>\n<atem:invoke name="{n}">\n' +
        "".join(f'<atem:parameter name="{k}">{_text(v)}</atem:parameter>\n' for k, v in a.items()) +
        "</atem:invoke>\n</atem:function_calls>" for n, a in calls)


def solar(calls: list) -> str:
    return "<|think|>The user wants a tool.<|end|><|begin|>assistant<|tool_calls|>" + "".join(
        f"<|tool_call:begin|>a1b2c3d4e{i}<|tool_call:name|>{n}<|tool_call:args|>{json.dumps(a, ensure_ascii=False)}"
        "<|tool_call:end|>" for i, (n, a) in enumerate(calls)) + "<|calls|>"


def _gemma_value(value: Any) -> str:
    if isinstance(value, str):
        return f'<|"|>{value}<|"|>'
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_gemma_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_gemma_value(v) for v in value) + "]"
    return json.dumps(value)


def gemma4(calls: list) -> str:
    return "".join(f"<|tool_call>call:{n}{_gemma_value(a)}<tool_call|>" for n, a in calls)


def lfm2(calls: list) -> str:
    def value(v: Any) -> str:  # LFM2.5's template: strings in quotes as they are, objects as JSON
        return f"'{v}'" if isinstance(v, str) and "'" not in v else json.dumps(v) if isinstance(v, dict) else repr(v)
    return "<|tool_call_start|>[" + ", ".join(f"{n}(" + ", ".join(f"{k}={value(v)}" for k, v in a.items()) + ")"
                                              for n, a in calls) + "]<|tool_call_end|>"


Writer = Callable[[list], str]
FAMILIES: dict[str, tuple[str, Writer]] = {  # template -> (format, how its model writes calls)
    "Qwen3-Coder.jinja": ("qwen3-coder", qwen),
    "Qwen3.5-4B.jinja": ("qwen3-coder", qwen),
    "NVIDIA-Nemotron-3-Nano-30B-A3B-BF16.jinja": ("qwen3-coder", qwen),
    "StepFun3.5-Flash.jinja": ("qwen3-coder", qwen),
    "ByteDance-Seed-OSS.jinja": ("seed-oss", seed),
    "GLM-4.6.jinja": ("glm", glm),
    "GLM-4.7-Flash.jinja": ("glm", lambda calls: glm(calls, "")),
    "Spark2.5.jinja": ("glm", lambda calls: glm(calls, "")),
    "poolside-Laguna-S-2.1.jinja": ("glm", lambda calls: glm(calls, "")),
    "poolside-Laguna-XS-2.1.jinja": ("glm", glm),
    "poolside-Laguna-XS.2.jinja": ("glm", glm),
    "inclusionai-ling-3.0-flash.jinja": ("glm", glm),
    "tencent-Hy3.jinja": ("hy3", hy3),
    "MiniMax-M1.jinja": ("minimax-m1", minimax_m1),
    "MiniMax-M2.jinja": ("minimax-m2", minimax_m2),
    "MiniMax-M3.jinja": ("minimax-m3", minimax_m3),
    "openbmb-MiniCPM5-1B.jinja": ("minicpm5", minicpm),
    "openai-gpt-oss-120b.jinja": ("harmony", harmony),
    "muse-glimmer.jinja": ("muse-glimmer", muse),
    "upstage-Solar-Open-100B.jinja": ("solar-open", solar),
    "google-gemma-4-31B-it.jinja": ("gemma4", gemma4),
    "google-gemma-4-31B-it-interleaved.jinja": ("gemma4", gemma4),
    "LFM2-8B-A1B.jinja": ("lfm2", lfm2),
    "LFM2.5-8B-A1B.jinja": ("lfm2", lfm2),
    "LFM2.5-Instruct.jinja": ("lfm2", lfm2),
}
SHOW_NO_CALLS = {"LFM2-8B-A1B.jinja", "LFM2.5-Instruct.jinja"}  # templates that render an assistant's content only
CHANNELS = {"harmony", "muse-glimmer", "solar-open"}  # formats whose replies are messages, not text and tags
# Templates read as Hermes' <tool_call>{json}</tool_call>, checked to stay so.
HERMES = ["Reka-Edge.jinja", "Qwen-QwQ-32B.jinja", "Qwen-Qwen2.5-7B-Instruct.jinja", "Qwen-Qwen3-0.6B.jinja",
          "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja", "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja"]



def _cases(fmt: str, write: Writer) -> list[Case]:
    lead = "" if fmt in CHANNELS else "Let me check that for you.\n\n"
    cases: list[Case] = [("The weather in Paris is sunny, 22°C.", "The weather in Paris is sunny, 22°C.", [])]
    for name, calls in CALLS.items():
        text = lead if name != "note" else ""  # one reply is the call alone
        cases.append((text + write(calls), text.strip() or None, calls))
    return cases


CASES: dict[str, list[Case]] = {template: _cases(fmt, write) for template, (fmt, write) in FAMILIES.items()}


# -- helpers -----------------------------------------------------------------------------











# -- tests -------------------------------------------------------------------------------

@pytest.mark.parametrize("template", list(CASES))
def test_template_renders_with_tools(template: str) -> None:
    chat = ChatTemplate.from_source(source(template), bos_token="<s>", eos_token="</s>")
    prompt = chat.render([{"role": "user", "content": "Weather in Paris?"}], tools=[t.to_openai() for t in TOOLS])
    assert "get_weather" in prompt and "Weather in Paris?" in prompt


@pytest.mark.parametrize("template", list(CASES) + HERMES)
def test_template_gets_its_format(template: str) -> None:
    assert format_for(source(template)).name == FAMILIES.get(template, ("hermes",))[0]


@pytest.mark.parametrize("template", [t for t in CASES if t not in SHOW_NO_CALLS])
def test_calls_rendered_by_the_template_read_back(template: str) -> None:
    """What follows the generation prompt in a rendered history is a reply in the model's own
    syntax: read with the template's format, it gives back the calls put in."""
    chat = ChatTemplate.from_source(source(template), bos_token="<s>", eos_token="</s>")
    calls = CALLS["simple"] + CALLS["note"]
    if template == "openai-gpt-oss-120b.jinja":
        calls = calls[:1]  # its template renders one call per message
    collected, _ = parse(format_for(chat.source), reply_in_history(chat, TOOLS, calls))
    assert outcome(collected)[1] == calls


@pytest.mark.parametrize(("template", "index"), all_cases(CASES))
def test_reply_reads_the_same_whole_and_in_pieces(template: str, index: int) -> None:
    reply, content, calls = CASES[template][index]
    fmt = format_for(source(template))
    whole, _ = parse(fmt, reply)
    assert outcome(whole) == (content, calls)
    for seed in range(4):
        assert outcome(parse(fmt, reply, random_pieces(reply, seed))[0]) == (content, calls)
    if FAMILIES[template][0] in CHANNELS and calls:
        assert "".join(whole.reasoning) == "The user wants a tool."


@pytest.mark.parametrize("template", list(CASES))
def test_string_arguments_stream_in_pieces(template: str) -> None:
    reply = next(case[0] for case in CASES[template] if case[2] == CALLS["note"])
    _, events = parse(format_for(source(template)), reply, [reply[i:i + 3] for i in range(0, len(reply), 3)])
    value = json.dumps(NOTE, ensure_ascii=False)[1:-1]
    inside = [e.text for e in events if isinstance(e, CallArguments) and e.text and e.text in value]
    assert len(inside) >= 2 and len(max(inside, key=len)) < len(value)


@pytest.mark.parametrize("template", list(CASES))
def test_unknown_tool_names_are_text(template: str) -> None:
    fmt_name, write = FAMILIES[template]
    reply = write([("launch_rockets", {"target": "moon"})])
    for pieces in (None, random_pieces(reply, 1)):
        collected, _ = parse(format_for(source(template)), reply, pieces)
        assert collected.calls == []
        text = "".join(collected.text)
        assert text == reply if fmt_name not in CHANNELS else "moon" in text


def _adversarial(write: Writer) -> list[str]:
    call = write(CALLS["object"])
    nested: Any = 1
    for _ in range(200):
        nested = [nested]
    deep = write([("get_weather", {"city": "x", "tags": nested})])
    return [call[:k] for k in range(1, len(call), 5)] + [
        deep, deep[:len(deep) // 2], write([("get_weather", {"city": "<" * 50 + "\\" * 9})]),
        "</tool_call></function></parameter></invoke><tool_call|><|tool_call_end|><|end|><|call|><|eom|>",
        "<tool_call></tool_call>", call.replace("get_weather", "get_weather" + "x" * 400),
        call + call[: len(call) // 2], "\x00" + call.replace("Łódź", "\x00"),
    ]


@pytest.mark.parametrize("template", list(CASES))
def test_bad_replies_raise_nothing_but_malformed_call(template: str) -> None:
    read_raising_only_malformed(format_for(source(template)), _adversarial(FAMILIES[template][1]), TOOLS)


@pytest.mark.parametrize("template", list(CASES))
def test_forced_call_grammar_accepts_a_call_the_reader_reads(template: str) -> None:
    fmt = format_for(source(template))
    grammar = Grammar(fmt.call_grammar(TOOLS, ToolChoice("required"), parallel=True))
    sample = grammar_sample(FAMILIES[template][0])
    assert grammar.accepts(sample), sample
    collected, _ = parse(fmt, sample)
    assert [(c.name, json.loads(c.arguments)) for c in collected.calls] == [
        ("save_note", {"text": "Hi <there> \"you\"\nbye", "pinned": False})]


def grammar_sample(fmt_name: str) -> str:
    """A call to save_note as each format's grammar spells it."""
    text = 'Hi <there> "you"\nbye'
    xml = {
        "qwen3-coder": f"<tool_call>\n<function=save_note>\n<parameter=text>\n{text}\n</parameter>\n"
                       "<parameter=pinned>\nfalse\n</parameter>\n</function>\n</tool_call>",
        "seed-oss": f"<seed:tool_call>\n<function=save_note>\n<parameter=text>{text}</parameter>\n"
                    "<parameter=pinned>false</parameter>\n</function>\n</seed:tool_call>",
        "glm": f"<tool_call>save_note\n<arg_key>text</arg_key><arg_value>{text}</arg_value>\n"
               "<arg_key>pinned</arg_key><arg_value>false</arg_value>\n</tool_call>",
        "hy3": "<tool_calls:opensource>\n<tool_call:opensource>save_note<tool_sep:opensource>\n"
               f"<arg_key:opensource>text</arg_key:opensource><arg_value:opensource>{text}</arg_value:opensource>\n"
               "<arg_key:opensource>pinned</arg_key:opensource><arg_value:opensource>false</arg_value:opensource>\n"
               "</tool_call:opensource>\n</tool_calls:opensource>",
        "minimax-m2": f'<minimax:tool_call>\n<invoke name="save_note">\n<parameter name="text">{text}</parameter>\n'
                      '<parameter name="pinned">false</parameter>\n</invoke>\n</minimax:tool_call>',
        "minimax-m3": f'{M3}<tool_call>\n{M3}<invoke name="save_note">\n{M3}<text>{text}{M3}</text>\n'
                      f"{M3}<pinned>false{M3}</pinned>\n{M3}</invoke>\n{M3}</tool_call>",
        "minicpm5": f'<function name="save_note">\n<param name="text">{text}</param>\n'
                    '<param name="pinned">false</param>\n</function>',
        "muse-glimmer": f' to=save_note<|message|><atem:function_calls>\n<atem:invoke name="save_note">\n'
                        f'<atem:parameter name="text">{text}</atem:parameter>\n'
                        '<atem:parameter name="pinned">false</atem:parameter>\n</atem:invoke>\n</atem:function_calls>',
    }
    arguments = json.dumps({"text": text, "pinned": False})
    json_call = json.dumps({"name": "save_note", "arguments": {"text": text, "pinned": False}})
    spelled = {
        "minimax-m1": f"<tool_calls>\n{json_call}\n</tool_calls>",
        "harmony": f"<|channel|>commentary to=functions.save_note <|constrain|>json<|message|>{arguments}",
        "solar-open": "<|tool_calls|><|tool_call:begin|>call000001<|tool_call:name|>save_note<|tool_call:args|>"
                      f"{arguments}<|tool_call:end|><|calls|>",
        "gemma4": f"<|tool_call>call:save_note{arguments}<tool_call|>",
        "lfm2": f"<|tool_call_start|>[save_note(text={json.dumps(text)}, pinned=false)]<|tool_call_end|>",
    }
    return {**xml, **spelled}[fmt_name]


def test_a_string_value_may_not_close_early_in_a_forced_call() -> None:
    grammar = Grammar(format_for(source("Qwen3-Coder.jinja")).call_grammar(TOOLS, ToolChoice("function", "save_note"),
                                                                           parallel=True))
    body = "<tool_call>\n<function=save_note>\n<parameter=text>\n{}\n</parameter>\n</function>\n</tool_call>"
    assert grammar.accepts(body.format("a </paramete b"))
    assert not grammar.accepts(body.format("a </parameter> b"))


def test_parallel_tool_calls_false_keeps_one_call() -> None:
    for template, (_, write) in FAMILIES.items():
        reply = write(CALLS["two"])
        parser = OutputParser(format_for(source(template)), TOOLS, parallel=False)
        collected = Collected()
        collected.add(parser.feed(reply) + parser.finish())
        assert [c.name for c in collected.calls] == ["get_time"], template


def test_harmony_reasoning_text_and_built_in_tools() -> None:
    fmt = format_for(source("openai-gpt-oss-120b.jinja"))
    reply = ("<|channel|>analysis<|message|>Think\nhard<|end|><|start|>assistant<|channel|>commentary<|message|>"
             "Checking.<|end|><|start|>assistant to=browser.search<|channel|>commentary<|message|>q<|end|>"
             "<|start|>assistant<|channel|>final<|message|>Sunny.")
    for pieces in (None, random_pieces(reply, 3)):
        collected, events = parse(fmt, reply, pieces)
        assert "".join(collected.reasoning) == "Think\nhard"
        assert collected.content == "Checking.qSunny." and collected.calls == []
    collected, _ = parse(fmt, ' to=functions.get_time<|channel|>commentary json<|message|>{}<|call|>')
    assert outcome(collected) == (None, [("get_time", {})])


def test_truncated_call_is_malformed_and_whole_reply_ends_calls() -> None:
    fmt = format_for(source("Qwen3-Coder.jinja"))
    reply = qwen(CALLS["note"])
    with pytest.raises(MalformedCall):
        parse(fmt, reply[:reply.index("</parameter>")])
    _, events = parse(fmt, reply)
    assert isinstance(events[-1], CallEnd)


def test_optional_parameters_are_separated_in_a_forced_python_call() -> None:
    tool = Tool("t", None, {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}})
    grammar = Grammar(format_for(source("LFM2.5-8B-A1B.jinja")).call_grammar([tool], ToolChoice("required"), True))
    accepted = [s for s in ("t()", "t(a=1)", "t(b=2)", "t(a=1, b=2)", "t(, b=2)", "t(a=1b=2)")
                if grammar.accepts(f"<|tool_call_start|>[{s}]<|tool_call_end|>")]
    assert accepted == ["t()", "t(a=1)", "t(b=2)", "t(a=1, b=2)"]
