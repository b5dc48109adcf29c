"""Chat templates: turn a conversation into one prompt string for the model.

A GGUF's own `tokenizer.chat_template` (Jinja) is rendered in Jinja2's
ImmutableSandboxedEnvironment, with the globals and filters Hugging Face templates expect
(`raise_exception`, `strftime_now`, `tojson`, the `generation` tag, loop controls), no loader
(so no `include`/`import` of files) and bounds on what one expression may build. A model
without a template gets a built-in one chosen by its architecture: Gemma, Llama 2 chat,
ChatML (Qwen) or ChatGLM3.

Messages reach this module already checked and normalized (see server/openai/chat_protocol.py):
dicts with `role`, `content` (a string), and optionally `name`, `tool_calls` (arguments
as objects) and `tool_call_id`.
"""
from __future__ import annotations

import json
import operator
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment

from llamaserve.server.chat.tools import tools_system_prompt

Message = dict[str, Any]

MAX_TEMPLATE_CHARS = 256 * 1024  # a chat template is a few kB; refuse absurd ones
MAX_RENDERED_CHARS = 8 * 1024 * 1024  # no prompt the engine accepts is longer
MAX_BUILT_ITEMS = 1_000_000  # the largest string or list one `*` may build
RENDER_SECONDS = 10.0  # a render this slow is a runaway template (nested huge loops)
_CHECK_EVERY = 1024  # loop iterations between two looks at the clock


class ChatTemplateError(Exception):
    """The conversation could not be turned into a prompt."""


class TemplateRaised(ChatTemplateError):
    """The template refused this conversation (its `raise_exception`): the client's fault."""


class TemplateFailed(ChatTemplateError):
    """The template is broken or tried something the sandbox forbids: the model's fault."""


class PromptTooLong(TemplateRaised):
    """The conversation makes a prompt longer than any the engine accepts: the client's fault."""


# -- the time limit: every loop and call of a render looks at this thread's deadline --------

_render = threading.local()


def _check_deadline() -> None:
    deadline = getattr(_render, "deadline", None)
    if deadline is not None and time.monotonic() > deadline:
        raise TemplateFailed(f"the chat template ran longer than {RENDER_SECONDS:g} s")


def _guarded_loop(iterable: Iterable[Any]) -> Iterator[Any]:
    """What every `for` of a template iterates: the items, with a look at the clock now and then."""
    for i, item in enumerate(iterable):
        if i % _CHECK_EVERY == 0:
            _check_deadline()
        yield item


def _guard_loops(tree: nodes.Template) -> nodes.Template:
    for loop in tree.find_all(nodes.For):
        loop.iter = nodes.Call(nodes.Name("__llamaserve_loop__", "load"), [loop.iter], [], None, None)
    return tree


# -- the sandbox ------------------------------------------------------------------------

class _GenerationTag(Extension):
    """`{% generation %}...{% endgeneration %}` marks assistant text for training masks;
    rendering just outputs the body (as Hugging Face's AssistantTracker does)."""

    tags = {"generation"}

    def parse(self, parser: Any) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


def _tojson(value: Any, indent: int | None = None, ensure_ascii: bool = False,
            separators: Any = None, sort_keys: bool = False) -> str:
    # Like transformers: plain json.dumps, no HTML escaping (templates build text, not HTML);
    # a filter's result (`map`, `select`: generators) is written as the list it yields.
    if isinstance(value, Iterator):
        value = list(value)
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent,
                      separators=tuple(separators) if separators else None, sort_keys=sort_keys)


def _raise_exception(message: Any = "") -> None:
    raise TemplateRaised(str(message)[:500])


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(str(fmt))


def _today() -> dict[str, str]:
    """Today's date under the names templates read it by, which the caller is meant to set:
    date_string (Llama 3.x) and datetime (FireFunction), as llama-server sets them."""
    now = datetime.now()
    return {"date_string": now.strftime("%d %b %Y"), "datetime": now.strftime("%b %d %Y")}


def _sized(value: Any) -> int:
    return len(value) if isinstance(value, (str, list, tuple, bytes)) else 1


class _Sandbox(ImmutableSandboxedEnvironment):
    """Immutable sandbox, plus: `*` may not build huge strings or lists, `**` may not
    build huge numbers (the stock sandbox bounds only range())."""

    intercepted_binops = frozenset({"*", "**"})

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        return _guard_loops(super()._parse(source, name, filename))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805 (jinja's signature)
        _check_deadline()  # macros and recursive loops come through here
        return super().call(__context, __obj, *args, **kwargs)

    def call_binop(self, context: Any, op: str, left: Any, right: Any) -> Any:
        if op == "*":
            counts = [v for v in (left, right) if isinstance(v, int) and not isinstance(v, bool)]
            if counts and max(_sized(left), _sized(right)) * max(counts) > MAX_BUILT_ITEMS:
                raise TemplateFailed("the chat template builds a value that is too large")
            return operator.mul(left, right)
        if op == "**":
            if isinstance(right, (int, float)) and abs(right) > 1024:
                raise TemplateFailed("the chat template computes a number that is too large")
            return operator.pow(left, right)
        return super().call_binop(context, op, left, right)


def _environment() -> _Sandbox:
    env = _Sandbox(trim_blocks=True, lstrip_blocks=True, autoescape=False,
                   extensions=[_GenerationTag, "jinja2.ext.loopcontrols"])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals["__llamaserve_loop__"] = _guarded_loop
    return env


_ENV = _environment()


def compile_template(source: str) -> jinja2.Template:
    """Compile a Jinja chat template in the sandbox; TemplateFailed if it is not valid."""
    if not isinstance(source, str) or not source.strip():
        raise TemplateFailed("the chat template is empty")
    if len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateFailed("the chat template is too long")
    try:
        return _ENV.from_string(source)
    except jinja2.TemplateError as exc:
        raise TemplateFailed(f"the chat template does not compile: {exc}") from None
    except (RecursionError, MemoryError):
        raise TemplateFailed("the chat template does not compile: too complex") from None


def render_jinja(template: jinja2.Template, messages: Sequence[Message], *,
                 tools: Sequence[dict[str, Any]] | None = None, add_generation_prompt: bool = True,
                 bos_token: str = "", eos_token: str = "", **extra: Any) -> str:
    """Render a compiled template; every failure becomes a ChatTemplateError."""
    context: dict[str, Any] = dict(messages=list(messages), add_generation_prompt=add_generation_prompt,
                                   bos_token=bos_token, eos_token=eos_token, **_today(), **extra)
    if tools:  # absent, not None: templates written for tools iterate `tools` unguarded
        context["tools"] = list(tools)
    _render.deadline = time.monotonic() + RENDER_SECONDS
    try:
        text = template.render(**context)
    except ChatTemplateError:
        raise
    except jinja2.exceptions.SecurityError as exc:
        raise TemplateFailed(f"the chat template tried an unsafe operation: {str(exc)[:200]}") from None
    except (RecursionError, MemoryError):
        raise TemplateFailed("the chat template failed: too deep or too large") from None
    except Exception as exc:  # noqa: BLE001 - any template bug is the template's failure
        raise TemplateFailed(f"the chat template failed: {type(exc).__name__}: {str(exc)[:200]}") from None
    finally:
        _render.deadline = None
    if len(text) > MAX_RENDERED_CHARS:
        raise PromptTooLong(f"the conversation makes a prompt of over {MAX_RENDERED_CHARS} characters")
    return text


# -- built-in templates for models without one ---------------------------------------------

def _text(message: Message) -> str:
    """What a built-in template shows for one message, tool calls and results included."""
    content = message.get("content") or ""
    calls = message.get("tool_calls") or []
    parts = [content] if content else []
    for call in calls:
        function = call.get("function", call)
        parts.append(json.dumps({"name": function.get("name"), "arguments": function.get("arguments")},
                                ensure_ascii=False))
    if message.get("role") == "tool":
        return f"<tool_response>\n{content}\n</tool_response>"
    return "\n".join(parts)


def _tools_preamble(tools: Sequence[dict[str, Any]] | None) -> str:
    """For built-in templates: describe the tools and how to call one (the model sees this
    as part of the system prompt)."""
    return tools_system_prompt(tools) if tools else ""


def _system_and_turns(messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None
                      ) -> tuple[str, list[Message]]:
    systems = [m.get("content") or "" for m in messages if m["role"] == "system"]
    preamble = _tools_preamble(tools)
    system = "\n\n".join(s for s in [*systems, preamble] if s)
    return system, [m for m in messages if m["role"] != "system"]


def _gemma(messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None, add_generation_prompt: bool) -> str:
    system, turns = _system_and_turns(messages, tools)
    out = []
    for i, m in enumerate(turns):
        role = "model" if m["role"] == "assistant" else "user"
        text = _text(m)
        if i == 0 and system:
            text = f"{system}\n\n{text}"
        out.append(f"<start_of_turn>{role}\n{text.strip()}<end_of_turn>\n")
    if not turns and system:
        out.append(f"<start_of_turn>user\n{system.strip()}<end_of_turn>\n")
    if add_generation_prompt:
        out.append("<start_of_turn>model\n")
    return "".join(out)


def _llama2(messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None, add_generation_prompt: bool) -> str:
    system, turns = _system_and_turns(messages, tools)
    out = []
    pending_system = f"<<SYS>>\n{system}\n<</SYS>>\n\n" if system else ""
    open_inst = False
    for m in turns:
        if m["role"] == "assistant":
            if not open_inst:
                out.append("[INST]  [/INST]")
            out.append(f" {_text(m).strip()} </s>")
            open_inst = False
        else:
            prefix = "" if not out else "<s>"
            out.append(f"{prefix}[INST] {pending_system}{_text(m).strip()} [/INST]")
            pending_system = ""
            open_inst = True
    if pending_system:  # only a system message
        out.append(f"[INST] {pending_system.rstrip()} [/INST]")
    # Llama 2 has no separate generation prompt: the open [INST] ... [/INST] is it.
    return "".join(out)


def _chatml(messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None, add_generation_prompt: bool) -> str:
    system, turns = _system_and_turns(messages, tools)
    out = [f"<|im_start|>system\n{system}<|im_end|>\n"] if system else []
    for m in turns:
        role = "user" if m["role"] == "tool" else m["role"]
        out.append(f"<|im_start|>{role}\n{_text(m)}<|im_end|>\n")
    if add_generation_prompt:
        out.append("<|im_start|>assistant\n")
    return "".join(out)


def _chatglm3(messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None, add_generation_prompt: bool) -> str:
    system, turns = _system_and_turns(messages, tools)
    out = ["[gMASK]sop"]
    if system:
        out.append(f"<|system|>\n {system}")
    for m in turns:
        role = {"assistant": "assistant", "tool": "observation"}.get(m["role"], "user")
        out.append(f"<|{role}|>\n {_text(m)}")
    if add_generation_prompt:
        out.append("<|assistant|>")
    return "".join(out)


def _llama3(messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None, add_generation_prompt: bool) -> str:
    system, turns = _system_and_turns(messages, tools)
    roles = [("system", system)] if system else []
    roles += [("ipython" if m["role"] == "tool" else m["role"], _text(m)) for m in turns]
    out = [f"<|start_header_id|>{role}<|end_header_id|>\n\n{text.strip()}<|eot_id|>" for role, text in roles]
    if add_generation_prompt:
        out.append("<|start_header_id|>assistant<|end_header_id|>\n\n")
    return "".join(out)


_COMMAND_R_ROLES = {"system": "SYSTEM", "assistant": "CHATBOT"}  # the rest speak as the user


def _command_r(messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None,
               add_generation_prompt: bool) -> str:
    system, turns = _system_and_turns(messages, tools)
    roles = [("system", system)] if system else []
    roles += [(m["role"], _text(m)) for m in turns]
    out = [f"<|START_OF_TURN_TOKEN|><|{_COMMAND_R_ROLES.get(role, 'USER')}_TOKEN|>{text.strip()}<|END_OF_TURN_TOKEN|>"
           for role, text in roles]
    if add_generation_prompt:
        out.append("<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>")
    return "".join(out)


Renderer = Callable[[Sequence[Message], Sequence[dict[str, Any]] | None, bool], str]


@dataclass(frozen=True)
class BuiltinTemplate:
    name: str
    render: Renderer
    stop: tuple[str, ...]
    adds_bos: bool = True  # the prompt relies on the tokenizer adding BOS


BUILTIN_TEMPLATES: dict[str, BuiltinTemplate] = {
    "gemma": BuiltinTemplate("gemma", _gemma, ("<end_of_turn>", "<start_of_turn>")),
    "llama2": BuiltinTemplate("llama2", _llama2, ("</s>", "[INST]")),
    "chatml": BuiltinTemplate("chatml", _chatml, ("<|im_end|>", "<|im_start|>")),
    "chatglm3": BuiltinTemplate("chatglm3", _chatglm3, ("<|user|>", "<|observation|>")),
    "llama3": BuiltinTemplate("llama3", _llama3, ("<|eot_id|>", "<|start_header_id|>")),
    "command-r": BuiltinTemplate("command-r", _command_r, ("<|END_OF_TURN_TOKEN|>", "<|START_OF_TURN_TOKEN|>")),
}

_ARCHITECTURE_TEMPLATES = {
    "gemma": "gemma", "gemma2": "gemma", "gemma3": "gemma", "gemma3n": "gemma",
    "llama": "llama2",
    "qwen": "chatml", "qwen2": "chatml", "qwen2moe": "chatml", "qwen3": "chatml", "qwen3moe": "chatml",
    "chatglm": "chatglm3",
    "command-r": "command-r", "cohere2": "command-r",
}


def builtin_for(architecture: str | None) -> BuiltinTemplate:
    """The built-in template for a GGUF architecture (ChatML when unknown)."""
    return BUILTIN_TEMPLATES[_ARCHITECTURE_TEMPLATES.get((architecture or "").lower(), "chatml")]


# End-of-turn markers a Jinja template may use; those it contains become stop strings (the
# engine already stops at the vocabulary's end-of-generation tokens; these catch a model
# that spells the marker out as text).
_TURN_END_MARKERS = ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|end|>", "<|endoftext|>",
                     "<|end_of_text|>", "<|user|>", "<|observation|>", "</s>", "<|END_OF_TURN_TOKEN|>")


def _stops_in(source: str) -> tuple[str, ...]:
    return tuple(m for m in _TURN_END_MARKERS if m in source)


# -- the template of one model -----------------------------------------------------------

@dataclass
class ChatTemplate:
    """How one model's conversations become prompts."""

    name: str  # "gguf" for the model's own template, else the built-in's name
    stop: tuple[str, ...]
    source: str | None = None  # the Jinja source when name == "gguf"
    bos_token: str = ""
    eos_token: str = ""
    strip_bos: bool = False  # the tokenizer adds BOS, so a rendered leading BOS is dropped
    _compiled: jinja2.Template | None = field(default=None, repr=False)
    _builtin: BuiltinTemplate | None = field(default=None, repr=False)

    @classmethod
    def from_source(cls, source: str, *, bos_token: str = "", eos_token: str = "",
                    strip_bos: bool = False) -> ChatTemplate:
        compiled = compile_template(source)
        return cls("gguf", _stops_in(source), source, bos_token, eos_token, strip_bos, compiled)

    @classmethod
    def builtin(cls, name: str) -> ChatTemplate:
        builtin = BUILTIN_TEMPLATES[name]
        return cls(builtin.name, builtin.stop, _builtin=builtin)

    @classmethod
    def for_model(cls, metadata: dict[str, Any], *, bos_token: str = "", eos_token: str = "",
                  strip_bos: bool = False, override: str | None = None) -> ChatTemplate:
        """The model's own template (or `override`, Jinja source or a built-in's name);
        a built-in chosen by architecture when there is none."""
        source = override if override is not None else metadata.get("chat_template")
        if source and source in BUILTIN_TEMPLATES:
            return cls.builtin(source)
        if source:
            return cls.from_source(source, bos_token=bos_token, eos_token=eos_token, strip_bos=strip_bos)
        return cls.builtin(builtin_for(metadata.get("architecture")).name)

    @property
    def supports_tools(self) -> bool:
        """Whether the template itself shows `tools` to the model (built-ins always do)."""
        return self._builtin is not None or (self.source is not None and "tools" in self.source)

    def render(self, messages: Sequence[Message], *, tools: Sequence[dict[str, Any]] | None = None,
               add_generation_prompt: bool = True, kwargs: dict[str, Any] | None = None) -> str:
        """`kwargs`: variables the template reads beside the conversation (enable_thinking,
        reasoning_effort, ...; chat_template_kwargs); built-in templates read none."""
        if self._builtin is not None:
            return self._builtin.render(messages, tools, add_generation_prompt)
        assert self._compiled is not None
        try:
            text = self._render_jinja(messages, tools, add_generation_prompt, kwargs or {})
        except TemplateFailed:
            # Some templates concatenate tool-call arguments as text rather than an object.
            if not any(m.get("tool_calls") for m in messages):
                raise
            text = self._render_jinja(_arguments_as_text(messages), tools, add_generation_prompt, kwargs or {})
        if self.strip_bos and self.bos_token and text.startswith(self.bos_token):
            text = text[len(self.bos_token):]
        return text


    def _render_jinja(self, messages: Sequence[Message], tools: Sequence[dict[str, Any]] | None,
                      add_generation_prompt: bool, kwargs: dict[str, Any]) -> str:
        assert self._compiled is not None
        return render_jinja(self._compiled, messages, tools=tools, add_generation_prompt=add_generation_prompt,
                            bos_token=self.bos_token, eos_token=self.eos_token, **kwargs)


def _arguments_as_text(messages: Sequence[Message]) -> list[Message]:
    out = []
    for m in messages:
        if m.get("tool_calls"):
            calls = [{**c, "function": {**c["function"], "arguments": json.dumps(c["function"]["arguments"],
                                                                                  ensure_ascii=False)}}
                     if isinstance(c.get("function", {}).get("arguments"), (dict, list)) else c
                     for c in m["tool_calls"]]
            m = {**m, "tool_calls": calls}
        out.append(m)
    return out


def special_tokens(engine: Any) -> tuple[str, str, bool]:
    """(bos text, eos text, whether tokenizing adds BOS) for an engine."""
    meta = engine.metadata
    bos_id = meta["bos_token_id"]
    adds_bos = bos_id >= 0 and engine.tokenize("x", add_special=True)[:1] == [bos_id]
    return meta["bos_token"], meta["eos_token"], adds_bos


def template_for_engine(engine: Any, override: str | None = None) -> ChatTemplate:
    """The chat template of a loaded engine (see ChatTemplate.for_model)."""
    bos, eos, adds_bos = special_tokens(engine)
    return ChatTemplate.for_model(engine.metadata, bos_token=bos, eos_token=eos,
                                  strip_bos=adds_bos, override=override)
