"""Tiny random-weight GGUFs, one per llama.cpp architecture behind the spec's models.

Each file has the tensor names, shapes and hyper-parameter keys llama.cpp expects for its
architecture (vendor/llama.cpp/src/models/<arch>.cpp), small dimensions, random F16 matrices
(F32 norms and biases), and a real vocabulary copied from vendor/llama.cpp/models/:

  llama    Llama 2          ggml-vocab-llama-spm (Llama 2's own 32000-token SentencePiece vocab)
  qwen     Qwen 7B/14B chat ggml-vocab-qwen2 (Qwen's 151k byte-level BPE vocab, qwen2 pre-tokenizer)
  gemma    Gemma 2B/7B      ggml-vocab-llama-spm plus Gemma's turn tokens (no Gemma 1 vocab ships
                            with llama.cpp; Gemma's is also a SentencePiece "llama" vocab)
  chatglm  ChatGLM3 6B      ggml-vocab-llama-spm plus ChatGLM3's role tokens (ChatGLM3's vocab is
                            a SentencePiece "llama" vocab too; none ships with llama.cpp)

The weights are noise, so the text is too; the point is that every architecture loads,
tokenizes, decodes, and carries the chat template its family uses (ChatGLM3 deliberately
carries none, so the server's built-in fallback template is exercised).
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import gguf
import numpy as np

VOCAB_DIR = Path(__file__).resolve().parent.parent / "vendor" / "llama.cpp" / "models"

LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}"
    "{% endfor %}"
)

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

GEMMA_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}"
)


@dataclass(frozen=True)
class Family:
    """One architecture's tiny shape."""
    arch: str
    vocab: str  # ggml-vocab-<vocab>.gguf
    n_embd: int
    n_head: int
    n_head_kv: int
    n_ff: int
    n_layer: int = 2
    n_ctx_train: int = 2048
    head_dim: int | None = None  # key/value length when it is not n_embd / n_head
    rope_dim: int | None = None
    chat_template: str | None = None
    extra_tokens: tuple[str, ...] = ()  # control tokens appended to the vocabulary
    extra_keys: dict[str, int | float] = field(default_factory=dict)  # written as uint32 / float32
    # the spec name this family stands in for, and the file name a self-hoster would use
    spec_name: str = ""
    file_name: str = ""


FAMILIES: dict[str, Family] = {
    # Llama 2: GQA, tied output (no output.weight): both valid llama layouts.
    "llama": Family("llama", "llama-spm", n_embd=32, n_head=4, n_head_kv=2, n_ff=64,
                    chat_template=LLAMA2_TEMPLATE, spec_name="llama-2-7b-chat",
                    file_name="llama-2-7b-chat.F16.gguf"),
    # Qwen (v1): fused attn_qkv with bias, separate output, n_ff is twice the FFN width.
    "qwen": Family("qwen", "qwen2", n_embd=16, n_head=2, n_head_kv=2, n_ff=64,
                   chat_template=CHATML_TEMPLATE, spec_name="qwen-7b-chat",
                   file_name="qwen-7b-chat.F16.gguf"),
    # Gemma: head size independent of n_embd (7B: 16 heads x 256 over 3072), tied output.
    "gemma": Family("gemma", "llama-spm", n_embd=32, n_head=4, n_head_kv=1, n_ff=64, head_dim=16,
                    chat_template=GEMMA_TEMPLATE, extra_tokens=("<start_of_turn>", "<end_of_turn>"),
                    spec_name="gemma-2b", file_name="gemma-2b-it.gguf"),
    # ChatGLM3: multi-query attention, fused qkv with bias, rotary on half the head,
    # SwiGLU packed in one ffn_up of twice the width. No template: the fallback is used.
    "chatglm": Family("chatglm", "llama-spm", n_embd=32, n_head=4, n_head_kv=2, n_ff=32, rope_dim=4,
                      extra_tokens=("[MASK]", "[gMASK]", "[sMASK]", "sop", "eop", "<|system|>",
                                    "<|user|>", "<|assistant|>", "<|observation|>"),
                      spec_name="chatglm3-6b", file_name="chatglm3-6b.gguf"),
}


# -- the vocabulary ---------------------------------------------------------------------

_VOCAB_CACHE: dict[str, list[tuple[str, object, gguf.GGUFValueType, gguf.GGUFValueType | None]]] = {}


_SCALARS = {  # GGUF value type -> struct format
    gguf.GGUFValueType.UINT8: "<B", gguf.GGUFValueType.INT8: "<b", gguf.GGUFValueType.UINT16: "<H",
    gguf.GGUFValueType.INT16: "<h", gguf.GGUFValueType.UINT32: "<I", gguf.GGUFValueType.INT32: "<i",
    gguf.GGUFValueType.FLOAT32: "<f", gguf.GGUFValueType.BOOL: "<?", gguf.GGUFValueType.UINT64: "<Q",
    gguf.GGUFValueType.INT64: "<q", gguf.GGUFValueType.FLOAT64: "<d",
}


def _vocab_fields(name: str):
    """The tokenizer.* keys of a vocab-only GGUF as (key, value, type, array item type).

    A small direct reader of the key/value section: gguf.GGUFReader builds a numpy view per
    array item, which takes seconds for a 150k-token vocabulary."""
    if name in _VOCAB_CACHE:
        return _VOCAB_CACHE[name]
    data = (VOCAB_DIR / f"ggml-vocab-{name}.gguf").read_bytes()
    if data[:4] != b"GGUF":
        raise ValueError(f"ggml-vocab-{name}.gguf is not a GGUF file")
    _, n_kv = struct.unpack_from("<QQ", data, 8)
    pos = 24

    def string() -> bytes:
        nonlocal pos
        (n,) = struct.unpack_from("<Q", data, pos)
        pos += 8 + n
        return data[pos - n:pos]

    def scalar(vtype: gguf.GGUFValueType) -> object:
        nonlocal pos
        fmt = _SCALARS[vtype]
        (v,) = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return v

    out = []
    for _ in range(n_kv):
        key = string().decode()
        vtype = gguf.GGUFValueType(struct.unpack_from("<I", data, pos)[0])
        pos += 4
        sub = None
        if vtype == gguf.GGUFValueType.ARRAY:
            sub = gguf.GGUFValueType(struct.unpack_from("<I", data, pos)[0])
            (n,) = struct.unpack_from("<Q", data, pos + 4)
            pos += 12
            if sub == gguf.GGUFValueType.STRING:
                value: object = [string() for _ in range(n)]
            else:
                fmt = _SCALARS[sub]
                size = struct.calcsize(fmt)
                value = np.frombuffer(data, dtype=np.dtype(fmt), count=n, offset=pos).tolist()
                pos += n * size
        elif vtype == gguf.GGUFValueType.STRING:
            value = string().decode()
        else:
            value = scalar(vtype)
        if key.startswith("tokenizer.") and key != "tokenizer.chat_template":
            out.append((key, value, vtype, sub))
    _VOCAB_CACHE[name] = out
    return out


def _vocabulary(family: Family) -> tuple[list, int]:
    """The tokenizer keys for the family and the vocabulary size."""
    fields = []
    n_vocab = 0
    for key, value, main, sub in _vocab_fields(family.vocab):
        if family.extra_tokens and isinstance(value, list):
            if key == "tokenizer.ggml.tokens":
                value = value + [t.encode() for t in family.extra_tokens]
            elif key == "tokenizer.ggml.scores":
                value = value + [0.0] * len(family.extra_tokens)
            elif key == "tokenizer.ggml.token_type":
                value = value + [int(gguf.TokenType.CONTROL)] * len(family.extra_tokens)
        if key == "tokenizer.ggml.tokens":
            n_vocab = len(value)
        fields.append((key, value, main, sub))
    return fields, n_vocab


# -- the tensors ------------------------------------------------------------------------

def _tensors(family: Family, n_vocab: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """ggml shapes are {ne0, ne1}; numpy's are reversed: a {n_embd, n_vocab} tensor is
    an array of shape (n_vocab, n_embd)."""
    e, ff = family.n_embd, family.n_ff
    head = family.head_dim or e // family.n_head
    q_dim, kv_dim = head * family.n_head, head * family.n_head_kv

    def mat(ne0: int, ne1: int) -> np.ndarray:
        return (rng.standard_normal((ne1, ne0)) * 0.5).astype(np.float16)

    def vec(n: int, around: float = 1.0) -> np.ndarray:
        return (around + 0.1 * rng.standard_normal(n)).astype(np.float32)

    t: dict[str, np.ndarray] = {"token_embd.weight": mat(e, n_vocab), "output_norm.weight": vec(e)}
    if family.arch in ("qwen", "chatglm"):
        t["output.weight"] = mat(e, n_vocab)
    for i in range(family.n_layer):
        b = f"blk.{i}."
        t[b + "attn_norm.weight"] = vec(e)
        t[b + "ffn_norm.weight"] = vec(e)
        if family.arch == "qwen":
            t[b + "attn_qkv.weight"] = mat(e, 3 * e)
            t[b + "attn_qkv.bias"] = vec(3 * e, 0.0)
            t[b + "attn_output.weight"] = mat(e, e)
            t[b + "ffn_gate.weight"] = mat(e, ff // 2)
            t[b + "ffn_up.weight"] = mat(e, ff // 2)
            t[b + "ffn_down.weight"] = mat(ff // 2, e)
        elif family.arch == "chatglm":
            t[b + "attn_qkv.weight"] = mat(e, q_dim + 2 * kv_dim)
            t[b + "attn_qkv.bias"] = vec(q_dim + 2 * kv_dim, 0.0)
            t[b + "attn_output.weight"] = mat(e, e)
            t[b + "ffn_up.weight"] = mat(e, 2 * ff)
            t[b + "ffn_down.weight"] = mat(ff, e)
        else:  # llama, gemma: separate q/k/v
            t[b + "attn_q.weight"] = mat(e, q_dim)
            t[b + "attn_k.weight"] = mat(e, kv_dim)
            t[b + "attn_v.weight"] = mat(e, kv_dim)
            t[b + "attn_output.weight"] = mat(q_dim, e)
            t[b + "ffn_gate.weight"] = mat(e, ff)
            t[b + "ffn_up.weight"] = mat(e, ff)
            t[b + "ffn_down.weight"] = mat(ff, e)
    return t


def n_params(family: Family) -> int:
    """The parameter count of a tiny model of this family (for checking the registry)."""
    _, n_vocab = _vocabulary(family)
    return sum(a.size for a in _tensors(family, n_vocab, np.random.default_rng(0)).values())


# -- writing ----------------------------------------------------------------------------

def write_tiny_model(path: str | os.PathLike[str], family: str | Family, *, seed: int = 0,
                     name: str | None = None, chat_template: str | None = "",
                     f32: bool = False) -> Path:
    """Write a tiny random model of `family` to `path` (chat_template None: none at all;
    "": the family's own)."""
    fam = FAMILIES[family] if isinstance(family, str) else family
    path = Path(path)
    rng = np.random.default_rng(seed)
    vocab, n_vocab = _vocabulary(fam)
    tensors = _tensors(fam, n_vocab, rng)
    if f32:
        tensors = {k: v.astype(np.float32) for k, v in tensors.items()}

    arch = fam.arch
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(name or f"tiny-{arch}")
    w.add_description(f"tiny random-weight {arch} model for tests")
    w.add_file_type(int(gguf.LlamaFileType.ALL_F32 if f32 else gguf.LlamaFileType.MOSTLY_F16))
    w.add_context_length(fam.n_ctx_train)
    w.add_embedding_length(fam.n_embd)
    w.add_block_count(fam.n_layer)
    w.add_feed_forward_length(fam.n_ff)
    w.add_head_count(fam.n_head)
    w.add_head_count_kv(fam.n_head_kv)
    w.add_layer_norm_rms_eps(1e-6)
    head = fam.head_dim or fam.n_embd // fam.n_head
    if fam.head_dim:
        w.add_key_length(fam.head_dim)
        w.add_value_length(fam.head_dim)
    w.add_rope_dimension_count(fam.rope_dim or head)
    w.add_rope_freq_base(10000.0)
    if arch == "llama":
        w.add_vocab_size(n_vocab)
    for key, value, main, sub in vocab:
        w.add_key_value(key, value, main, sub)
    for key, value in fam.extra_keys.items():
        if isinstance(value, int):
            w.add_uint32(key, value)
        else:
            w.add_float32(key, value)
    template = fam.chat_template if chat_template == "" else chat_template
    if template:
        w.add_chat_template(template)
    return _finish(w, tensors, path)


def _finish(w: gguf.GGUFWriter, tensors: dict[str, np.ndarray], path: Path) -> Path:
    """Add the tensors and write the file."""
    for tname, array in tensors.items():
        w.add_tensor(tname, array)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


# StarCoder's vocabulary has <fim_prefix>, <fim_suffix>, <fim_middle> (llama.cpp finds them by
# their spelling) and <repo_name>, <file_sep> (it does not: the GGUF names them, as a converter does).
FIM_CODER = Family("llama", "starcoder", n_embd=32, n_head=4, n_head_kv=2, n_ff=64,
                   extra_keys={"tokenizer.ggml.fim_rep_token_id": 5, "tokenizer.ggml.fim_sep_token_id": 6},
                   file_name="tiny-fim-coder.gguf")


def write_tiny_reranker(path: str | os.PathLike[str], *, seed: int = 0, n_ctx_train: int = 128,
                        rerank_template: str | None = None, score_layer: bool = True) -> Path:
    """A tiny random BERT cross-encoder as llama.cpp's converter writes a reranker (a BERT
    sequence classifier): pooling type rank, the classification head (cls: dense + tanh) and
    its one-score output layer (cls.output), on BERT's own WordPiece vocabulary. With
    rerank_template, the GGUF's "rerank" prompt ({query}, {document}) frames the pair. Without
    score_layer, no cls.output: the head is one dense layer, as jina-reranker-v1-tiny's."""
    e, ff, n_layer = 32, 64, 2
    rng = np.random.default_rng(seed)
    vocab = _vocab_fields("bert-bge")
    n_vocab = next(len(v) for k, v, _, _ in vocab if k == "tokenizer.ggml.tokens")

    def mat(ne0: int, ne1: int) -> np.ndarray:
        return (rng.standard_normal((ne1, ne0)) * 0.5).astype(np.float16)

    def vec(n: int, around: float = 0.0) -> np.ndarray:
        return (around + 0.1 * rng.standard_normal(n)).astype(np.float32)

    # The token-type table is added as it is: F32, as the converter writes it.
    t = {"token_embd.weight": mat(e, n_vocab), "token_types.weight": mat(e, 2).astype(np.float32),
         "position_embd.weight": mat(e, n_ctx_train),
         "token_embd_norm.weight": vec(e, 1.0), "token_embd_norm.bias": vec(e),
         "cls.weight": mat(e, e), "cls.bias": vec(e)}
    if score_layer:
        t["cls.output.weight"], t["cls.output.bias"] = mat(e, 1), vec(1)
    for i in range(n_layer):
        b = f"blk.{i}."
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            t[b + name + ".weight"], t[b + name + ".bias"] = mat(e, e), vec(e)
        t[b + "ffn_up.weight"], t[b + "ffn_up.bias"] = mat(e, ff), vec(ff)
        t[b + "ffn_down.weight"], t[b + "ffn_down.bias"] = mat(ff, e), vec(e)
        for norm in ("attn_output_norm", "layer_output_norm"):
            t[b + norm + ".weight"], t[b + norm + ".bias"] = vec(e, 1.0), vec(e)

    path = Path(path)
    w = gguf.GGUFWriter(str(path), "bert")
    w.add_name("tiny-reranker")
    w.add_description("tiny random-weight BERT reranker for tests")
    w.add_file_type(int(gguf.LlamaFileType.MOSTLY_F16))
    w.add_context_length(n_ctx_train)
    w.add_embedding_length(e)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(ff)
    w.add_head_count(4)
    w.add_layer_norm_eps(1e-12)
    w.add_causal_attention(False)
    w.add_pooling_type(gguf.PoolingType.RANK)
    for key, value, main, sub in vocab:
        w.add_key_value(key, value, main, sub)
    if rerank_template is not None:
        w.add_chat_template([{"name": "rerank", "template": rerank_template}])
    return _finish(w, t, path)


def write_all(folder: str | os.PathLike[str]) -> dict[str, Path]:
    """Every family's tiny model under its conventional file name; {family: path}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return {key: write_tiny_model(folder / fam.file_name, key) for key, fam in FAMILIES.items()}


if __name__ == "__main__":  # python tests/tiny_models.py OUT_DIR
    import sys

    for key, p in write_all(sys.argv[1] if len(sys.argv) > 1 else ".").items():
        print(f"{key:8s} {p} {p.stat().st_size / 1e6:.1f} MB")
