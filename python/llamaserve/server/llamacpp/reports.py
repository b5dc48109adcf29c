"""What llama-server's clients read from an OpenAI-shaped answer besides OpenAI's fields:
`timings` (always, as llama-server), `__verbose` (the prompt the template made, with
verbose: true) and, streamed with timings_per_token, timings in every chunk; with
return_progress, the prompt's progress while it is processed."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, TypeVar

from llamaserve.engine import Prompt
from llamaserve.server.chat.stream import Choice, Update
from llamaserve.server.chat.token_text import TokenText
from llamaserve.server.llamacpp.timings import RunningTimings, prompt_timings, timings

Limited = TypeVar("Limited")  # a chat or completion request (each has .sampling)


@dataclass(frozen=True)
class Reports:
    """What llama-server's fields in a request ask its answer to carry."""
    verbose: bool = False
    timings_per_token: bool = False
    unlimited: bool = False  # n_predict -1: the request's max_tokens is the context
    return_progress: bool = False  # streamed: the prompt's progress as it is processed

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

    def applied(self, request: Limited, n_ctx: int) -> Limited:
        """`request` with what the engine does for these: n_predict -1 (up to the end of the
        context), return_progress (reported while streaming)."""
        asked = {**({"max_tokens": n_ctx} if self.unlimited else {}),
                 **({"return_progress": True} if self.return_progress and request.sampling.stream else {})}
        if not asked:
            return request
        return replace(request, sampling=replace(request.sampling, arguments={**request.sampling.arguments, **asked}))

    def progress_reports(self, update: Update) -> list[dict[str, Any]]:
        """The update's prompt progress as llama-server's `prompt_progress` fields (with its
        `timings` under timings_per_token), one dict per report."""
        out = []
        for total, cache, processed, ms in update.progress if self.return_progress else ():
            fields: dict[str, Any] = {"prompt_progress": {"total": total, "cache": cache, "processed": processed,
                                                          "time_ms": ms}}
            if self.timings_per_token:
                fields["timings"] = prompt_timings(cache, processed - cache, ms / 1000)
            out.append(fields)
        return out

    @staticmethod
    def running(choices: int, prompt: Prompt) -> RunningTimings:
        return RunningTimings(choices, 0 if isinstance(prompt, str) else len(prompt))
