"""What llama-server's clients read from an OpenAI-shaped answer besides OpenAI's fields:
`timings` (always, as llama-server), `__verbose` (the prompt the template made, with
verbose: true) and, streamed with timings_per_token, timings in every chunk."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, TypeVar

from llamaserve.engine import Prompt
from llamaserve.server.chat.stream import Choice
from llamaserve.server.chat.token_text import TokenText
from llamaserve.server.llamacpp.timings import RunningTimings, timings

Limited = TypeVar("Limited")  # a chat or completion request (each has .sampling)


@dataclass(frozen=True)
class Reports:
    """What llama-server's fields in a request ask its answer to carry."""
    verbose: bool = False
    timings_per_token: bool = False
    unlimited: bool = False  # n_predict -1: the request's max_tokens is the context

    def add_to(self, answer: dict[str, Any], choices: list[Choice], prompt: Prompt,
               text_of: TokenText) -> dict[str, Any]:
        first = next((c.stats for c in choices if c.stats is not None), None)
        if first is not None:
            answer["timings"] = timings(first)
        if self.verbose:
            text = prompt if isinstance(prompt, str) else text_of.engine.detokenize(prompt)
            answer["__verbose"] = {"prompt": text, "content": "".join(choices[0].raw) if choices else "",
                                   **({"timings": answer["timings"]} if "timings" in answer else {})}
        return answer

    def limited(self, request: Limited, n_ctx: int) -> Limited:
        """`request` with n_predict -1 applied: up to the end of the context."""
        if not self.unlimited:
            return request
        return replace(request, sampling=replace(request.sampling, arguments={**request.sampling.arguments,
                                                                               "max_tokens": n_ctx}))

    @staticmethod
    def running(choices: int, prompt: Prompt) -> RunningTimings:
        return RunningTimings(choices, 0 if isinstance(prompt, str) else len(prompt))
