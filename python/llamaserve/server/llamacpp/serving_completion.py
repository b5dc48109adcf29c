"""llama-server's /completion answers: one result per prompt (a list for several) with its
content, stop type, token counts, timings and the settings used; streamed, an SSE event per
piece of text ({"content", "stop": false}) and the whole result last, with no [DONE]."""
from __future__ import annotations

import math
from typing import Any

from llamaserve.server import sse
from llamaserve.server.chat.formats.events import TextDelta
from llamaserve.server.chat.stream import ChatRun, Choice, FamilyStream, Update
from llamaserve.server.chat.token_text import TokenText
from llamaserve.server.errors import ApiError
from llamaserve.server.llamacpp.errors import llamacpp_body
from llamaserve.server.llamacpp.reports import Reports
from llamaserve.server.llamacpp.timings import timings
from llamaserve.server.openai.serving_completions import CompletionPlan


_ABSENT = object()


class Shape:
    """What every result of one request shares: the model, its settings, the token reader."""

    def __init__(self, model_name: str, plan: CompletionPlan, text_of: TokenText, n_ctx: int, return_tokens: bool,
                 n_probs: int | None, fields: tuple[str, ...] = ()) -> None:
        self.model_name, self.plan, self.text_of = model_name, plan, text_of
        self.n_ctx, self.return_tokens, self.n_probs, self.fields = n_ctx, return_tokens, n_probs, fields

    def selected(self, result: dict[str, Any]) -> dict[str, Any]:
        """response_fields: only those (a path a/b names b inside a, and is its key), as llama-server."""
        if not self.fields:
            return result
        out = {}
        for field in self.fields:
            value: Any = result
            for key in field.split("/"):
                value = value.get(key, _ABSENT) if isinstance(value, dict) else _ABSENT
            if value is not _ABSENT:
                out[field] = value
        return out

    def settings(self, i: int) -> dict[str, Any]:
        arguments = self.plan.arguments[i]
        keep = ("temperature", "top_k", "top_p", "min_p", "seed", "stop", "presence_penalty", "frequency_penalty",
                "repeat_penalty", "penalty_last_n", "ignore_eos", "max_tokens")
        settings = {name: arguments[name] for name in keep if name in arguments}
        if "max_tokens" in settings:
            settings["n_predict"] = settings.pop("max_tokens")
        if "penalty_last_n" in settings:
            settings["repeat_last_n"] = settings.pop("penalty_last_n")
        settings["logit_bias"] = self.logit_bias(arguments)
        return {"n_ctx": self.n_ctx, "model": self.model_name, **settings}

    def logit_bias(self, arguments: dict[str, Any]) -> list[dict[str, Any]]:
        """llama-server's list, -inf as null; ignore_eos shows as every end token banned, as there."""
        bias = {int(token): value for token, value in (arguments.get("logit_bias") or {}).items()}
        if arguments.get("ignore_eos"):
            bias.update({token: -math.inf for token in self.text_of.engine.metadata.get("eog_tokens", ())})
        return [{"token": token, "bias": None if math.isinf(value) else value} for token, value in bias.items()]

    def prompt(self, i: int) -> str:
        prompt = self.plan.prompts[i]
        return prompt if isinstance(prompt, str) else self.text_of.engine.detokenize(prompt)

    def tokens(self, choice: Choice | Update) -> list[int]:
        return [record[0] for record in choice.records] if self.return_tokens else []

    def probabilities(self, records: list[Any]) -> list[dict[str, Any]]:
        """Each token's log-probability and its top alternatives'; after the sampler chain
        (post_sampling_probs) as probabilities, `prob` and `top_probs`, as llama-server."""
        post = bool(self.plan.arguments[0].get("post_sampling_probs"))
        value, top = ("prob", "top_probs") if post else ("logprob", "top_logprobs")

        def entry(token: int, logprob: float) -> dict[str, Any]:
            raw, text = self.text_of(token)
            return {"id": token, "token": text, "bytes": list(raw), value: math.exp(logprob) if post else logprob}

        return [{**entry(token, logprob), top: [entry(alt, lp) for alt, lp in alternatives[: self.n_probs or 0]]}
                for token, logprob, alternatives in records]

    def result(self, i: int, content: str, choice: Choice) -> dict[str, Any]:
        stats = choice.stats or {}
        # The engine does not tell an end token from a stop string: both are "eos" here.
        stop_type = "limit" if choice.finish == "length" else "eos"
        out = {"index": i, "content": content, "tokens": self.tokens(choice), "id_slot": -1, "stop": True,
               "model": self.model_name, "tokens_predicted": stats.get("completion_tokens", 0),
               "tokens_evaluated": stats.get("prompt_tokens", 0), "generation_settings": self.settings(i),
               "prompt": self.prompt(i), "has_new_line": "\n" in content, "truncated": False,
               "stop_type": stop_type, "stopping_word": "",
               "tokens_cached": stats.get("cached_tokens", 0), "timings": timings(stats)}
        if self.n_probs:
            out["completion_probabilities"] = self.probabilities(choice.records)
        return out


def body(shape: Shape, choices: list[Choice]) -> dict[str, Any] | list[dict[str, Any]]:
    results = [shape.selected(shape.result(i, "".join(c.raw), c)) for i, c in enumerate(choices)]
    return results[0] if len(results) == 1 else results


class CompletionEvents(FamilyStream):
    def __init__(self, chat: ChatRun, shape: Shape, reports: Reports | None = None) -> None:
        super().__init__(chat)
        self.shape, self.reports = shape, reports
        self.predicted = [0] * chat.choices
        self._piece = sse.ChoiceTextEvents(lambda i: {"index": i, "content": sse.TEXT_HOLE, "tokens": [],
                                                      "stop": False, "id_slot": -1})

    def opening(self) -> bytes:
        return b""

    def update(self, update: Update) -> bytes:
        i, out = update.choice, []
        for fields in self.reports.progress_reports(update) if self.reports is not None else ():
            out.append(sse.event({"index": i, "content": "", "tokens": [], "stop": False, "id_slot": -1, **fields}))
        text = "".join(e.text for e in update.events if isinstance(e, TextDelta))
        if text or update.records:
            if self.shape.return_tokens or self.shape.n_probs:
                event = {"index": i, "content": text, "tokens": self.shape.tokens(update), "stop": False, "id_slot": -1}
                if self.shape.n_probs:
                    event["completion_probabilities"] = self.shape.probabilities(update.records)
                out.append(sse.event(event))
            else:
                out.append(self._piece(i, text))
        if update.stats is not None:
            choice = Choice(stats=update.stats, finish=update.finish or "stop")
            out.append(sse.event(self.shape.result(i, "", choice)))
        return b"".join(out)

    def closing(self) -> bytes:
        return b""

    def error_event(self, error: ApiError) -> bytes:
        return sse.event(llamacpp_body(error))
