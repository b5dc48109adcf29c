"""The public engine facade over the native continuous-batching engine."""
from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy

from llamaserve import _native
from llamaserve.config import DEFAULT_CACHE_REUSE, FLASH_ATTN_MODES, KV_CACHE_TYPES, SPEC_MODES
from llamaserve.default_model import default_model_path
from llamaserve.errors import EngineError, InvalidRequest, QueueFull
from llamaserve.generation_params import (
    PARAMETERS, check_bool, check_choice, check_integer, check_prompt, check_text, check_token_ids, validate)
from llamaserve.results import Completion, Embeddings, TokenLogprob, completion_of

if TYPE_CHECKING:
    from llamaserve.local_chat.api import LocalChat
    from llamaserve.local_chat.results import ChatChunk, ChatReply

Prompt = str | Sequence[int]
DEFAULT_CACHE_RAM = 1 << 30  # host memory for prefix snapshots
_SAMPLING_FIELDS = ("temperature", "top_k", "top_p", "min_p", "repeat_penalty", "presence_penalty",
                   "frequency_penalty", "penalty_last_n", "seed", "grammar")
_OPTION_FIELDS = ("max_tokens", "stop", "ignore_eos", "logprobs", "add_special", "parse_special",
                  "cache_prompt", "speculative", "prediction", "preserved_tokens", "reasoning_start", "reasoning_end",
                  "reasoning_open", "reasoning_budget")


def native_settings(arguments: dict[str, Any], n_ctx: int) -> tuple[_native.SamplingParams,
                                                                    _native.GenerationOptions]:
    """Checked generation arguments (llamaserve.generation_params) as the native structs; a
    prediction that Engine.prepare tokenized goes as it is."""
    prepared = arguments.get("prediction")
    if isinstance(prepared, _native.TokenIds):
        arguments = {name: value for name, value in arguments.items() if name != "prediction"}
    checked = validate(arguments)
    sampling, options = _native.SamplingParams(), _native.GenerationOptions()
    for name in _SAMPLING_FIELDS:
        if name in checked:
            setattr(sampling, name, checked[name])
    if checked.get("penalty_last_n") == -1:  # llama.cpp's convention: the whole context
        sampling.penalty_last_n = n_ctx
    sampling.logit_bias = list(checked.get("logit_bias", {}).items())
    for name in _OPTION_FIELDS:
        if name in checked:
            setattr(options, name, checked[name])
    if isinstance(prepared, _native.TokenIds):
        options.prediction_tokens = prepared
    return sampling, options


def failure_of(stats: dict[str, Any]) -> EngineError | None:
    """The error a finished stream's stats report, typed: InvalidRequest (400) when the request
    was at fault (its grammar ran over its step budget), else EngineError; None if it did not fail."""
    if stats["finish_reason"] != "error":
        return None
    if stats.get("error_type") == "invalid_request":
        return InvalidRequest(stats["error"])
    return EngineError(stats["error"] or "generation failed")


def _raise_if_failed(native: _native.TokenStream) -> None:
    error = failure_of(native.stats())
    if error is not None:
        raise error


class TextStream:
    """Text pieces of one request as they are generated; waiting releases the GIL.

    Leaving it unfinished (break, close(), garbage collection) cancels the request.
    """

    def __init__(self, native: _native.TokenStream) -> None:
        self._native = native
        self._text: list[str] = []

    def __iter__(self) -> TextStream:
        return self

    def __next__(self) -> str:
        try:
            piece = next(self._native)
        except StopIteration:
            _raise_if_failed(self._native)
            raise
        self._text.append(piece)
        return piece

    def cancel(self) -> None:
        self._native.cancel()

    close = cancel

    def __enter__(self) -> TextStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()

    def __del__(self) -> None:
        self._native.cancel()

    @property
    def finished(self) -> bool:
        return self._native.finished

    def take_token_logprobs(self) -> list[TokenLogprob]:
        """With logprobs=N: (token, logprob, top N alternatives) per token since the last call."""
        return self._native.take_logprobs()

    def completion(self) -> Completion:
        """The whole result; consumes what is left of the stream first."""
        for _ in self:
            pass
        return completion_of("".join(self._text), self._native.stats())


class _Waiter:
    """Lets one async stream sleep until the pump says its native stream has news."""

    __slots__ = ("future", "ready")

    def __init__(self) -> None:
        self.future: asyncio.Future[None] | None = None
        self.ready = False

    def wake(self) -> None:
        self.ready = True
        if self.future is not None and not self.future.done():
            self.future.set_result(None)

    async def wait(self) -> None:
        if not self.ready:
            self.future = asyncio.get_running_loop().create_future()
            try:
                await self.future
            finally:
                self.future = None
        self.ready = False


class _AsyncPump:
    """One per engine and event loop: the loop watches one pipe, and each wake-up hands
    every stream with news to its waiter. No thread per stream, no thread at all."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.notifier = _native.AsyncNotifier()
        self.waiters: dict[int, _Waiter] = {}
        loop.add_reader(self.notifier.fd, self._on_ready)

    def _on_ready(self) -> None:
        for stream_id in self.notifier.take_ready():
            waiter = self.waiters.get(stream_id)
            if waiter is not None:
                waiter.wake()

    def close(self) -> None:
        """Stop watching the pipe and wake every waiter: called once their streams have all
        ended (the native engine is closed), so each one sees its end. Any thread may call it."""
        if self.loop.is_closed():
            return

        def wake_all() -> None:
            self.loop.remove_reader(self.notifier.fd)
            for waiter in list(self.waiters.values()):
                waiter.wake()

        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            wake_all()
        else:
            self.loop.call_soon_threadsafe(wake_all)


class AsyncTextStream:
    """Async iterator of text pieces; breaking out of it or aclose() cancels the request."""

    def __init__(self, native: _native.TokenStream, pump: _AsyncPump) -> None:
        self._native = native
        self._pump = pump
        self._waiter = _Waiter()
        pump.waiters[native.id] = self._waiter
        self._pieces: deque[str] = deque()
        self._text: list[str] = []
        self._finished = False
        self._failure: EngineError | None = None

    def __aiter__(self) -> AsyncTextStream:
        return self

    async def _fill(self) -> bool:
        """Wait until some pieces are buffered; False once the stream is over."""
        while not self._pieces or self._failure is not None:
            if self._failure is not None:
                self._release()
                raise self._failure
            if self._finished:
                self._release()
                _raise_if_failed(self._native)
                return False
            pieces, self._finished = self._native.drain()
            self._pieces.extend(pieces)
            self._text.extend(pieces)
            if not pieces and not self._finished:
                await self._waiter.wait()
        return True

    async def next_pieces(self) -> list[str]:
        """Everything generated since the last call (at least one piece); [] at the end."""
        if not await self._fill():
            return []
        out = list(self._pieces)
        self._pieces.clear()
        return out

    async def __anext__(self) -> str:
        if not await self._fill():
            raise StopAsyncIteration
        return self._pieces.popleft()

    def _release(self) -> None:
        self._pump.waiters.pop(self._native.id, None)

    def cancel(self) -> None:
        """Stop generating; a coroutine awaiting this stream sees it end (as cancelled)."""
        self._native.cancel()
        self._waiter.wake()

    def fail(self, error: EngineError) -> None:
        """Cancel the request and raise `error` to whoever reads the stream next (a server's
        request timeout, say), instead of ending it quietly as cancelled."""
        self._failure = error
        self.cancel()

    async def aclose(self) -> None:
        self.cancel()

    def __del__(self) -> None:
        self._native.cancel()
        self._release()

    @property
    def stats(self) -> dict[str, Any]:
        return self._native.stats()

    @property
    def token_times(self) -> list[float]:
        """Seconds from submit at which each generated token came (its inter-token gaps)."""
        return self._native.token_times()

    @property
    def drained(self) -> bool:
        """The engine has finished and every piece has been read: what next_pieces() just
        returned was the end (the engine hands over a request's last piece with its end)."""
        return self._finished and not self._pieces and self._failure is None

    def take_token_logprobs(self) -> list[TokenLogprob]:
        """With logprobs=N: (token, logprob, top N alternatives) per token since the last call."""
        return self._native.take_logprobs()

    async def completion(self) -> Completion:
        async for _ in self:
            pass
        return completion_of("".join(self._text), self._native.stats())


class Engine:
    """One loaded model with n_parallel slots decoded together by a native scheduler."""

    def __init__(self, native: _native.Engine) -> None:
        self._native = native
        self._embedder: _native.Embedder | None = None  # made on the first embeddings()
        self._embedder_lock = threading.Lock()
        self._pumps: dict[asyncio.AbstractEventLoop, _AsyncPump] = {}
        self._chat: LocalChat | None = None  # made on the first chat()
        self._chat_lock = threading.Lock()

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, *, n_ctx: int = 4096,
             n_parallel: int = 4, n_batch: int = 512, n_threads: int = 0,
             n_gpu_layers: int = 0, max_queue: int = 256, kv_unified: bool = False,
             n_kv: int = 0, cache_ram: int = DEFAULT_CACHE_RAM, cache_reuse: int = DEFAULT_CACHE_REUSE,
             cache_type_k: str = "f16",
             cache_type_v: str = "f16", flash_attn: str = "auto", swa_full: bool = False,
             spec: str | None = None, draft_model: str | os.PathLike[str] | None = None,
             spec_draft_max: int = 16, grammar_budget_ms: int = 250, verbose: bool = False) -> Engine:
        """Load a GGUF file (the default model when path is None). n_ctx bounds one request;
        n_kv is the KV cells in all (0: n_ctx per slot), an equal share per slot or, with
        kv_unified, one pool taken by need; cache_ram is the host memory for prefix snapshots.
        cache_reuse is the shortest cached chunk reused past a divergence (0: off; README,
        "Reuse past a divergence").
        spec is the speculative decoding: "ngram" (the default without a draft_model), "draft"
        (the default with one) or "off"; spec_draft_max bounds one slot's draft per step.
        grammar_budget_ms is the time one request's grammar may take in one step (0: no limit);
        past it the request fails with InvalidRequest, and the other slots go on."""
        options = _native.EngineOptions()
        options.n_ctx = check_integer("n_ctx", n_ctx, 8, 2**24)
        options.n_parallel = check_integer("n_parallel", n_parallel, 1, 1024)
        options.n_batch = check_integer("n_batch", n_batch, 1, 2**16)
        options.n_threads = check_integer("n_threads", n_threads, 0, 1024)
        options.n_gpu_layers = check_integer("n_gpu_layers", n_gpu_layers, -1, 100000)
        options.max_queue = check_integer("max_queue", max_queue, 0, 2**20)
        options.kv_unified = check_bool("kv_unified", kv_unified)
        options.n_kv = check_integer("n_kv", n_kv, 0, 2**31 - 1)
        options.cache_ram = check_integer("cache_ram", cache_ram, 0, 2**62)
        options.cache_reuse = check_integer("cache_reuse", cache_reuse, 0, 2**20)
        options.type_k = check_choice("cache_type_k", cache_type_k, KV_CACHE_TYPES)
        options.type_v = check_choice("cache_type_v", cache_type_v, KV_CACHE_TYPES)
        options.flash_attn = check_choice("flash_attn", flash_attn, FLASH_ATTN_MODES)
        options.swa_full = check_bool("swa_full", swa_full)
        if draft_model is not None:
            options.draft_model = str(Path(draft_model))
        default_spec = "ngram" if draft_model is None else "draft"
        options.spec = check_choice("spec", default_spec if spec is None else spec, SPEC_MODES)
        options.spec_draft_max = check_integer("spec_draft_max", spec_draft_max, 1, _native.MAX_STEP_DRAFTS)
        options.grammar_budget_ms = check_integer("grammar_budget_ms", grammar_budget_ms, 0, 60_000)
        _native.set_verbose(verbose)
        model_path = Path(path) if path is not None else default_model_path()
        return cls(_native.Engine(str(model_path), options))

    # -- model facts ------------------------------------------------------------------

    @property
    def metadata(self) -> dict[str, Any]:
        return self._native.metadata

    @property
    def n_ctx(self) -> int:
        return self._native.n_ctx

    @property
    def n_parallel(self) -> int:
        return self._native.n_parallel

    @property
    def memory_use(self) -> list[dict[str, Any]]:
        """What llama.cpp allocated, per buffer type: model, context (KV) and compute bytes."""
        return self._native.memory_use

    @property
    def cache_stats(self) -> dict[str, int]:
        """KV cells (in all, used, reserved for running requests) and prefix-cache counters."""
        return self._native.cache_stats

    @property
    def speculation(self) -> str:
        """The speculative decoding in effect: off, ngram or draft (off for a model whose
        KV cannot be cut back, recurrent or hybrid)."""
        return self._native.speculation

    @property
    def cache_reuse(self) -> dict[str, int | bool]:
        """The reuse past a divergence in effect: min_chunk, the shortest chunk reused (0: off,
        as asked or because this model's KV cannot move: a sliding window without swa_full, a
        recurrent state), and after_new_tokens: whether a chunk may follow new tokens (a changed
        line; one KV pool) or only the cached prefix (a deleted span)."""
        return self._native.cache_reuse

    @property
    def speculation_stats(self) -> dict[str, int]:
        """Drafted tokens verified since the engine started, and how many were accepted."""
        return self._native.speculation_stats

    @property
    def decode_stats(self) -> dict[str, int | float]:
        """What the decode loop has done since the engine started (llama-server's metrics):
        decodes, busy_slots (summed over them), verify_steps, prompt_tokens and generated_tokens
        with prompt_seconds and generation_seconds (a step's time shared by its tokens), and
        longest_sequence."""
        return self._native.decode_stats

    @property
    def busy_slots(self) -> int:
        return self._native.busy_slots

    @property
    def queue_depth(self) -> int:
        return self._native.queue_depth

    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = True) -> list[int]:
        return self._native.tokenize(text, add_special, parse_special)

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self._native.detokenize(list(tokens))

    def token_bytes(self, token: int) -> bytes:
        """The raw bytes of one token (a piece of a UTF-8 character, possibly)."""
        return self._native.token_bytes(token)

    # -- embeddings -------------------------------------------------------------------

    def embeddings(self, inputs: str | Sequence[str | Sequence[int]]) -> Embeddings:
        """L2-normalized embeddings, one row per input (a text, or a list of token ids),
        pooled as the GGUF says (mean for a generative model). They run on a context of
        their own on the calling thread, with the GIL released: the slots go on decoding."""
        if isinstance(inputs, str) or (isinstance(inputs, Sequence) and inputs
                                       and all(isinstance(t, int) for t in inputs)):
            inputs = [inputs]  # one text, or one list of token ids
        if not isinstance(inputs, Sequence) or not inputs:
            raise InvalidRequest("input: must be a text, a list of texts or of token-id lists")
        tokens = [self._native.tokenize(check_text(f"input[{i}]", x), True, False) if isinstance(x, str)
                  else check_token_ids(f"input[{i}]", x) for i, x in enumerate(inputs)]
        return Embeddings(self._embedding_context().embed(tokens), [len(t) for t in tokens])

    @property
    def n_embd(self) -> int:
        """The length of an embedding."""
        return self._embedding_context().n_embd

    def _embedding_context(self) -> _native.Embedder:
        with self._embedder_lock:
            if self._embedder is None:
                self._embedder = _native.Embedder(self._native, self.n_ctx)
            return self._embedder

    def embed(self, inputs: str | Sequence[str | Sequence[int]]) -> numpy.ndarray:
        """embeddings(inputs).vectors: a float32 array of shape (inputs, n_embd)."""
        return self.embeddings(inputs).vectors

    # -- generation -------------------------------------------------------------------

    def check_grammar(self, grammar: str) -> None:
        """Compile a GBNF grammar as a request would; InvalidRequest ("grammar: ...") if it is not
        one or is over a limit (size, nesting, ambiguity). Compiled grammars are kept, so a
        request that follows with the same grammar finds it ready. "" is no grammar, as in a request."""
        if check_text("grammar", grammar):
            self._native.check_grammar(grammar)

    def prepare(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """The arguments with their heavy work done once for every choice that shares them: the
        prediction tokenized, the grammar compiled (InvalidRequest if refused). It blocks: call
        it in a thread, as aprepare does."""
        out = dict(arguments)
        prediction = out.get("prediction")
        if prediction is not None and not isinstance(prediction, _native.TokenIds):
            text = PARAMETERS["prediction"](prediction)
            out["prediction"] = self._native.prediction_tokens(text) if text else None
        if out.get("grammar"):
            self.check_grammar(out["grammar"])
        return out

    async def aprepare(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """prepare() off the event loop (in a thread), when there is anything to prepare."""
        if arguments.get("prediction") is None and not arguments.get("grammar"):
            return arguments
        return await asyncio.to_thread(self.prepare, arguments)

    def _submit(self, prompt: Prompt, arguments: dict[str, Any],
                notifier: _native.AsyncNotifier | None = None) -> _native.TokenStream:
        params, options = native_settings(arguments, self.n_ctx)
        prompt = check_prompt("prompt", prompt)
        if isinstance(prompt, str):
            return self._native.submit(prompt, params, options, notifier)
        return self._native.submit_tokens(list(prompt), params, options, notifier)

    def stream(self, prompt: Prompt, **arguments: Any) -> TextStream:
        """Text pieces as they are generated (a blocking iterator that frees the GIL)."""
        return TextStream(self._submit(prompt, arguments))

    def generate(self, prompt: Prompt, **arguments: Any) -> Completion:
        return self.stream(prompt, **arguments).completion()

    def generate_batch(self, prompts: Iterable[Prompt], **arguments: Any) -> list[Completion]:
        """Run every prompt concurrently through the slots; results keep the input order."""
        prompts = list(prompts)
        validate(arguments)  # a bad argument fails before anything runs
        streams: list[TextStream] = []
        try:
            for prompt in prompts:
                while True:
                    try:
                        streams.append(self.stream(prompt, **arguments))
                        break
                    except QueueFull:
                        # Wait for our oldest running request (others may be filling the
                        # queue too), then try again.
                        running = next((s for s in streams if not s.finished), None)
                        if running is None:
                            time.sleep(0.01)
                        else:
                            running.completion()
            return [s.completion() for s in streams]
        finally:
            for s in streams:
                s.cancel()

    def _pump(self) -> _AsyncPump:
        loop = asyncio.get_running_loop()
        pump = self._pumps.get(loop)
        if pump is None:
            for stale in [lp for lp in self._pumps if lp.is_closed()]:
                del self._pumps[stale]
            pump = self._pumps[loop] = _AsyncPump(loop)
        return pump

    def astream(self, prompt: Prompt, **arguments: Any) -> AsyncTextStream:
        """Async text pieces; must be called from a running event loop."""
        pump = self._pump()
        return AsyncTextStream(self._submit(prompt, arguments, pump.notifier), pump)

    async def agenerate(self, prompt: Prompt, **arguments: Any) -> Completion:
        return await self.astream(prompt, **arguments).completion()

    # -- lifecycle --------------------------------------------------------------------

    # -- chat: the server's chat pipeline, in this process (llamaserve/local_chat) --

    def chat(self, messages: list[dict[str, Any]], *, stream: bool = False,
             **options: Any) -> ChatReply | Iterator[ChatChunk]:
        """A reply to `messages` (OpenAI chat messages) through the model's chat template, made
        as the server makes it: `options` are the OpenAI chat fields (tools, tool_choice,
        response_format, max_tokens, temperature, seed, stop, reasoning_effort, ...). A
        ChatReply (content, reasoning, tool_calls), or with stream=True an iterator of
        ChatChunk. Calls from several threads run together in the batch."""
        chat = self.local_chat()
        req = chat.request(messages, options)
        return chat.blocking_iterator(chat.chunks(req)) if stream else chat.blocking(chat.reply(req))

    async def achat(self, messages: list[dict[str, Any]], *, stream: bool = False,
                    **options: Any) -> ChatReply | AsyncIterator[ChatChunk]:
        """chat() on the running event loop; with stream=True an async iterator of ChatChunk."""
        chat = self.local_chat()
        req = chat.request(messages, options)
        return chat.chunks(req) if stream else await chat.reply(req)

    def local_chat(self) -> LocalChat:
        """This engine's chat pipeline in process (what chat() and llamaserve.compat run on)."""
        with self._chat_lock:
            if self._chat is None:
                from llamaserve.local_chat.api import LocalChat

                self._chat = LocalChat(self)
            return self._chat

    def close(self) -> None:
        """Stop the scheduler; unfinished requests end as cancelled, and whoever waits on one
        (a blocking iterator, an awaiting async stream) sees it end."""
        self._native.close()
        if self._chat is not None:
            self._chat.close()
        for pump in self._pumps.values():
            pump.close()
        self._pumps.clear()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
