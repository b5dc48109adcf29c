"""Engine: one loaded model, its slots decoded together by the native scheduler; generation,
embeddings, tokens, and chat through the server's pipeline in this process."""
from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llamaserve import _native
from llamaserve.config import DEFAULT_CACHE_REUSE, FLASH_ATTN_MODES, KV_CACHE_TYPES, SPEC_MODES
from llamaserve.default_model import default_model_path
from llamaserve.errors import InvalidRequest, QueueFull
from llamaserve.generation_params import (
    PARAMETERS, check_bool, check_choice, check_integer, check_prompt, check_text, check_token_ids, validate)
from llamaserve.engine import fim
from llamaserve.engine.arguments import Prompt, native_settings
from llamaserve.engine.rerank import check_documents, pair_tokens, ranked
from llamaserve.engine.streams import AsyncPump, AsyncTextStream, TextStream
from llamaserve.results import Completion, Embeddings, Reranking, SlotFile

if TYPE_CHECKING:
    import numpy
    from llamaserve.local_chat.api import LocalChat
    from llamaserve.local_chat.results import ChatChunk, ChatReply

DEFAULT_CACHE_RAM = 1 << 30  # host memory for prefix snapshots
DEFAULT_CACHE_DISK = 8 << 30  # disk for prefix snapshots, when there is a cache_dir


class Engine:
    """One loaded model with n_parallel slots decoded together by a native scheduler."""

    def __init__(self, native: _native.Engine, *, reranking: bool = False) -> None:
        self._native = native
        self._reranking = reranking  # score pairs whatever pooling the GGUF says
        self._embedder: _native.Embedder | None = None  # made on the first embeddings() or rerank()
        self._embedder_lock = threading.Lock()
        self._pumps: dict[asyncio.AbstractEventLoop, AsyncPump] = {}
        self._chat: LocalChat | None = None  # made on the first chat()
        self._chat_lock = threading.Lock()

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, *, n_ctx: int = 4096,
             n_parallel: int = 4, n_batch: int = 512, n_threads: int = 0,
             n_gpu_layers: int = 0, max_queue: int = 256, kv_unified: bool = False,
             n_kv: int = 0, cache_ram: int = DEFAULT_CACHE_RAM,
             cache_dir: str | os.PathLike[str] | None = None, cache_disk: int = DEFAULT_CACHE_DISK,
             cache_reuse: int = DEFAULT_CACHE_REUSE,
             cache_type_k: str = "f16",
             cache_type_v: str = "f16", flash_attn: str = "auto", swa_full: bool = False,
             spec: str | None = None, draft_model: str | os.PathLike[str] | None = None,
             spec_draft_max: int = 16, grammar_budget_ms: int = 250, reranking: bool = False,
             verbose: bool = False) -> Engine:
        """Load a GGUF file (the default model when path is None). n_ctx bounds one request;
        n_kv is the KV cells in all (0: n_ctx per slot), an equal share per slot or, with
        kv_unified, one pool taken by need; cache_ram is the host memory for prefix snapshots.
        cache_dir is a folder for them on disk (made if missing; None: no disk tier), where they
        outlive the engine: another engine of the same model file and KV settings restores them;
        cache_disk bounds the folder's snapshot files in bytes (README, "Prefix cache on disk").
        cache_reuse is the shortest cached chunk reused past a divergence (0: off; README,
        "Reuse past a divergence").
        spec is the speculative decoding: "ngram" (the default without a draft_model), "draft"
        (the default with one) or "off"; spec_draft_max bounds one slot's draft per step.
        grammar_budget_ms is the time one request's grammar may take in one step (0: no limit);
        past it the request fails with InvalidRequest, and the other slots go on.
        reranking scores with pooling type rank whatever the GGUF says (llama-server's
        --reranking: a model without a classification head scores with its last token's first
        hidden value); a GGUF whose pooling type is rank reranks without it."""
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
        options.cache_disk = check_integer("cache_disk", cache_disk, 1, 2**62)
        if cache_dir is not None:
            if not isinstance(cache_dir, (str, os.PathLike)) or not os.fspath(cache_dir):
                raise InvalidRequest("cache_dir: must be the path of a folder")
            options.cache_dir = check_text("cache_dir", os.fspath(cache_dir))
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
        return cls(_native.Engine(str(model_path), options), reranking=check_bool("reranking", reranking))

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
        """KV cells (in all, used, reserved for running requests) and prefix-cache counters
        (host_*: the host-memory tier; disk_*: the cache_dir tier, all zero without one)."""
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
    def n_batch(self) -> int:
        """The most prompt tokens one decoding step takes."""
        return self._native.n_batch

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
                # Not past the training context: a model with learned positions (BERT) has none beyond it.
                n_ctx = min(self.n_ctx, self.metadata["n_ctx_train"] or self.n_ctx)
                self._embedder = _native.Embedder(self._native, n_ctx, self._reranking)
            return self._embedder

    def embed(self, inputs: str | Sequence[str | Sequence[int]]) -> numpy.ndarray:
        """embeddings(inputs).vectors: a float32 array of shape (inputs, n_embd)."""
        return self.embeddings(inputs).vectors

    # -- reranking ----------------------------------------------------------------------

    @property
    def reranker(self) -> bool:
        """Whether rerank() works: the GGUF's pooling type is rank, or the engine was loaded
        with reranking=True."""
        return self._embedding_context().pooling == "rank"

    def rerank(self, query: str, documents: Sequence[str], *, top_n: int | None = None) -> Reranking:
        """The documents by relevance to the query, best first (top_n of them; all when None):
        each (query, document) pair framed as llama-server frames it and scored by the model's
        classification head, on the embeddings' context (the slots go on decoding). A model
        that is not a reranker: InvalidRequest."""
        query = check_text("query", query)
        documents = check_documents("documents", documents)
        if top_n is not None:
            top_n = check_integer("top_n", top_n, 1, 2**31 - 1)
        if not self.reranker:
            raise InvalidRequest(f"{Path(self.metadata['path']).name} is not a reranking model; serve one with "
                                 "pooling type rank (or load it with reranking on: llamaserve serve --reranking)")
        meta = self.metadata
        pairs = [pair_tokens(self._native.tokenize, meta, query, document) for document in documents]
        return ranked(self._embedding_context().score(pairs), [len(p) for p in pairs], top_n)

    # -- fill in the middle -------------------------------------------------------------

    def fim_prompt(self, input_prefix: fim.Pieces, input_suffix: fim.Pieces, *, prompt: Prompt = "",
                   input_extra: Sequence[fim.ExtraFile | dict[str, Any]] = (), n_predict: int = 0) -> list[int]:
        """The token ids of a fill-in-the-middle prompt (code completion at a cursor) framed from
        the model's FIM tokens as llama-server's /infill frames it (llamaserve/engine/fim.py):
        input_prefix and input_suffix are the text before and after the cursor (strings, or
        strings and token ids mixed), prompt what was typed after the prefix, input_extra other
        files of the project (ExtraFile or {"filename", "text"}); n_predict, the tokens the
        completion may take, leaves them room. InvalidRequest when the model has no FIM tokens.
        Generate from it with greedy sampling, e.g. generate(fim_prompt(...), temperature=0)."""
        prefix = fim.check_pieces("input_prefix", input_prefix)
        suffix = fim.check_pieces("input_suffix", input_suffix)
        extra = fim.check_extra("input_extra", input_extra)
        prompt = "" if prompt in ("", []) else check_prompt("prompt", prompt)
        meta = self.metadata
        bos = meta["bos_token_id"] if meta["add_bos"] and meta["bos_token_id"] >= 0 else None
        return fim.fim_prompt(lambda text, special: self._native.tokenize(text, False, special),
                              Path(meta["path"]).name, fim.FimTokens.of(meta), bos, input_prefix=prefix,
                              input_suffix=suffix, input_extra=extra, prompt=prompt, n_batch=self.n_batch,
                              n_ctx=self.n_ctx, n_predict=check_integer("n_predict", n_predict, 0, 2**31 - 1))

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

    def _pump(self) -> AsyncPump:
        loop = asyncio.get_running_loop()
        pump = self._pumps.get(loop)
        if pump is None:
            for stale in [lp for lp in self._pumps if lp.is_closed()]:
                del self._pumps[stale]
            pump = self._pumps[loop] = AsyncPump(loop)
        return pump

    def astream(self, prompt: Prompt, **arguments: Any) -> AsyncTextStream:
        """Async text pieces; must be called from a running event loop."""
        pump = self._pump()
        return AsyncTextStream(self._submit(prompt, arguments, pump.notifier), pump,
                               progress=bool(arguments.get("return_progress")))

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

    # -- slot files (llama-server's /slots?action=...) ------------------------------------------

    def save_slot(self, slot: int, path: str | os.PathLike[str]) -> SlotFile:
        """Write an idle slot's cached prompt to `path` (a snapshot file bound to this model and
        its KV settings). Blocks until the scheduler has done it: call it from a thread."""
        return SlotFile(*self._native.save_slot(check_integer("slot", slot, 0, self.n_parallel - 1), os.fspath(path)))

    def restore_slot(self, slot: int, path: str | os.PathLike[str]) -> SlotFile:
        """Read a slot file back into an idle slot: a prompt starting with its tokens is served
        from it. InvalidRequest for a file of another model or KV settings, or a damaged one."""
        return SlotFile(*self._native.restore_slot(check_integer("slot", slot, 0, self.n_parallel - 1),
                                                   os.fspath(path)))

    def erase_slot(self, slot: int) -> int:
        """Drop an idle slot's cached prompt; the number of tokens it held."""
        return self._native.erase_slot(check_integer("slot", slot, 0, self.n_parallel - 1))

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
