"""`Llama`: llama-cpp-python's high-level Python API over llamaserve's batching engine. Code
written for `llama_cpp.Llama` runs with only its import changed; unlike llama-cpp-python,
calls from several threads run at once (the engine decodes them in one batch). Chat and
completions run the server's own OpenAI pipeline in process (compat/runs.py), so the dicts
are the server's responses."""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from llamaserve.compat import calls
from llamaserve.compat.constructor import LOG, settings
from llamaserve.compat.errors import UnsupportedArgument, as_value_errors, checked_chunks
from llamaserve.compat.runs import OpenAIRuns
from llamaserve.engine import Engine

Response = dict[str, Any]


def _checked(result: Response | Iterator[Response]) -> Response | Iterator[Response]:
    return result if isinstance(result, dict) else checked_chunks(result)


class Llama:
    def __init__(self, model_path: str | os.PathLike[str], **options: Any) -> None:
        """llama-cpp-python's constructor arguments (model_path, n_ctx, n_threads, n_gpu_layers,
        n_batch, seed, embedding, verbose, flash_attn, type_k/type_v, draft_model, chat_format,
        ...); n_parallel (llamaserve's own, default 8) is how many calls decode together."""
        self._settings = settings(model_path, options)
        self.model_path = str(model_path)
        self.verbose = self._settings.load["verbose"]
        self._engine = Engine.load(self.model_path, **self._settings.load)
        self._runs = OpenAIRuns(self._engine, self.model_path)
        self.chat_format = self._settings.chat_format
        if self.chat_format is not None:
            LOG.info("chat_format %r: llamaserve formats chats with the model's own chat template",
                     self.chat_format)
        if self._settings.ignored and self.verbose:
            LOG.info("accepted without effect here: %s", ", ".join(sorted(self._settings.ignored)))

    @classmethod
    def from_pretrained(cls, repo_id: str, filename: str | None = None, **_: Any) -> Llama:
        raise UnsupportedArgument(
            f"from_pretrained({repo_id!r}): llamaserve never downloads; put the GGUF file on this machine "
            "and pass Llama(model_path=...)")

    # -- generation ------------------------------------------------------------------------

    def create_completion(self, prompt: str | list[int], suffix: str | None = None, max_tokens: int | None = 16,
                          temperature: float = 0.8, top_p: float = 0.95, min_p: float = 0.05,
                          typical_p: float = 1.0, logprobs: int | None = None, echo: bool = False,
                          stop: str | list[str] | None = None, frequency_penalty: float = 0.0,
                          presence_penalty: float = 0.0, repeat_penalty: float = 1.0, top_k: int = 40,
                          stream: bool = False, seed: int | None = None, tfs_z: float = 1.0,
                          mirostat_mode: int = 0, mirostat_tau: float = 5.0, mirostat_eta: float = 0.1,
                          model: str | None = None, stopping_criteria: Any = None, logits_processor: Any = None,
                          grammar: Any = None, logit_bias: dict[int, float] | None = None
                          ) -> Response | Iterator[Response]:
        """A text completion (a dict), or with stream=True an iterator of its chunks."""
        args = dict(locals())
        del args["self"]
        with as_value_errors():
            return _checked(self._runs.completion(calls.completion_body(args, self._settings.seed, self.n_ctx())))

    __call__ = create_completion

    def create_chat_completion(self, messages: list[dict[str, Any]], functions: list[dict[str, Any]] | None = None,
                               function_call: str | dict[str, Any] | None = None,
                               tools: list[dict[str, Any]] | None = None,
                               tool_choice: str | dict[str, Any] | None = None, temperature: float = 0.2,
                               top_p: float = 0.95, top_k: int = 40, min_p: float = 0.05, typical_p: float = 1.0,
                               stream: bool = False, stop: str | list[str] | None = None, seed: int | None = None,
                               response_format: dict[str, Any] | None = None, max_tokens: int | None = None,
                               presence_penalty: float = 0.0, frequency_penalty: float = 0.0,
                               repeat_penalty: float = 1.0, tfs_z: float = 1.0, mirostat_mode: int = 0,
                               mirostat_tau: float = 5.0, mirostat_eta: float = 0.1, model: str | None = None,
                               logits_processor: Any = None, grammar: Any = None,
                               logit_bias: dict[int, float] | None = None, logprobs: bool | None = None,
                               top_logprobs: int | None = None) -> Response | Iterator[Response]:
        """A chat completion through the model's chat template (tools, tool_choice and
        response_format as OpenAI's), or with stream=True an iterator of its chunks."""
        args = dict(locals())
        del args["self"]
        with as_value_errors():
            return _checked(self._runs.chat(calls.chat_body(args, self._settings.seed, self.n_ctx())))

    # -- embeddings ------------------------------------------------------------------------

    def create_embedding(self, input: str | list[str], model: str | None = None) -> Response:
        """Embeddings in OpenAI's list shape: one L2-normalized vector per input, pooled as the
        model says (mean for a generative model)."""
        with as_value_errors():
            return self._runs.embeddings(input)

    def embed(self, input: str | list[str], normalize: bool = True, truncate: bool = True,
              return_count: bool = False) -> Any:
        """A vector (one input) or a list of vectors, as lists of floats."""
        if not normalize:
            raise UnsupportedArgument("normalize: llamaserve's embeddings are always L2-normalized")
        with as_value_errors():
            result = self._engine.embeddings(input)
        vectors = result.vectors.tolist()
        out = vectors[0] if isinstance(input, str) else vectors
        return (out, sum(result.token_counts)) if return_count else out

    # -- tokens and model facts --------------------------------------------------------------

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        return self._engine.tokenize(text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text,
                                     add_special=add_bos, parse_special=special)

    def detokenize(self, tokens: Sequence[int], prev_tokens: Sequence[int] | None = None,
                   special: bool = False) -> bytes:
        eog = set(self._engine.metadata.get("eog_tokens", ()))
        return b"".join(self._engine.token_bytes(t) for t in tokens if special or t not in eog)

    def n_ctx(self) -> int:
        return self._engine.n_ctx

    def n_embd(self) -> int:
        return self._engine.n_embd

    def n_vocab(self) -> int:
        return int(self._engine.metadata["n_vocab"])

    def token_bos(self) -> int:
        return int(self._engine.metadata.get("bos_token_id", -1))

    def token_eos(self) -> int:
        return int(self._engine.metadata.get("eos_token_id", -1))

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self._engine.metadata)

    def set_seed(self, seed: int) -> None:
        self._settings = replace(self._settings, seed=seed)

    def close(self) -> None:
        self._engine.close()

    def __enter__(self) -> Llama:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
