"""`from llamaserve import Llama`: llama-cpp-python's Python API on the batching engine. Its
README's examples run with only the import changed (a subprocess, as a user's script runs);
the constructor's and calls' arguments map, or are refused by name; errors are ValueErrors
as llama-cpp-python's are; calls from several threads give what they give one by one."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import llamaserve
from llamaserve import InvalidRequest, Llama
from llamaserve.compat import LlamaGrammar, LlamaPromptLookupDecoding, UnsupportedArgument
from llamaserve.compat.constructor import settings

README_SCRIPT = Path(__file__).with_name("llama_cpp_python_readme.py")
USER_DETAIL = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
               "required": ["name", "age"]}


@pytest.fixture(scope="module")
def llm(smollm2_path):
    with Llama(model_path=str(smollm2_path), n_ctx=512, verbose=False) as model:
        yield model


@pytest.fixture(scope="module")
def readme_examples(smollm2_path, tmp_path_factory):
    script = tmp_path_factory.mktemp("user") / "script.py"
    source = README_SCRIPT.read_text()
    changed = source.replace("from llama_cpp import Llama", "from llamaserve import Llama", 1)
    assert changed.count("llama_cpp") == source.count("llama_cpp") - 1  # the import line, nothing else
    script.write_text(changed)
    done = subprocess.run([sys.executable, str(script), str(smollm2_path)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return {line["example"]: line["output"] for line in map(json.loads, done.stdout.splitlines())}


def test_readme_completion_echoes_the_prompt_and_stops_at_a_stop_string(readme_examples):
    out = readme_examples["completion"]
    assert out["object"] == "text_completion" and out["model"].endswith(".gguf")
    [choice] = out["choices"]
    assert choice["text"].startswith("Q: Name the planets in the solar system? A: ")
    assert "\n" not in choice["text"] and "Q:" not in choice["text"][3:]
    assert choice["finish_reason"] in ("stop", "length")
    usage = out["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] and usage["prompt_tokens"] > 5


def test_readme_chat_json_mode_and_schema_mode(readme_examples):
    chat = readme_examples["chat"]["choices"][0]
    assert chat["message"]["role"] == "assistant" and chat["message"]["content"]
    json.loads(readme_examples["json_mode"]["choices"][0]["message"]["content"])  # JSON, whatever it says
    answer = json.loads(readme_examples["json_schema_mode"]["choices"][0]["message"]["content"])
    assert isinstance(answer["team_name"], str)  # the schema given beside json_object is followed


def test_readme_function_calling_returns_the_forced_call(readme_examples):
    message = readme_examples["function_calling"]["choices"][0]["message"]
    [call] = message["tool_calls"]
    assert call["type"] == "function" and call["function"]["name"] == "UserDetail"
    arguments = json.loads(call["function"]["arguments"])
    assert isinstance(arguments["name"], str) and isinstance(arguments["age"], int)


def test_readme_streaming_and_embeddings(readme_examples):
    assert "".join(readme_examples["stream"]).strip()
    one, several = readme_examples["embeddings"]["one"], readme_examples["embeddings"]["several"]
    assert one["object"] == "list" and len(one["data"]) == 1 and len(several["data"]) == 2
    vector = several["data"][1]["embedding"]
    assert len(vector) == 576 and math.isclose(math.fsum(x * x for x in vector), 1.0, rel_tol=1e-3)
    assert several["usage"]["prompt_tokens"] > 0


def test_threads_at_once_give_what_they_give_one_by_one(llm):
    asks = [[{"role": "user", "content": f"Count to {n}."}] for n in range(3, 11)]

    def ask(messages):
        return llm.create_chat_completion(messages=messages, temperature=0.0, max_tokens=24)["choices"][0]

    alone = [ask(m) for m in asks]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(ask, asks))
    assert [c["message"]["content"] for c in together] == [c["message"]["content"] for c in alone]


def test_streamed_chunks_are_the_openai_shape_and_add_up_to_the_reply(llm):
    messages = [{"role": "user", "content": "Name a color."}]
    whole = llm.create_chat_completion(messages=messages, temperature=0.0, max_tokens=12)
    chunks = list(llm.create_chat_completion(messages=messages, temperature=0.0, max_tokens=12, stream=True))
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == whole["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]


def test_completion_streams_and_takes_token_ids(llm):
    ids = llm.tokenize(b"The sky is")
    assert llm.detokenize(ids) == b"The sky is"
    pieces = [c["choices"][0]["text"] for c in llm(ids, max_tokens=6, temperature=0.0, stream=True) if c["choices"]]
    whole = llm.create_completion(ids, max_tokens=6, temperature=0.0)
    assert "".join(pieces) == whole["choices"][0]["text"] and whole["usage"]["prompt_tokens"] == len(ids)


def test_a_grammar_constrains_the_reply(llm):
    grammar = LlamaGrammar.from_string('root ::= "yes" | "no"')
    reply = llm.create_chat_completion(messages=[{"role": "user", "content": "Is water wet?"}], grammar=grammar)
    assert reply["choices"][0]["message"]["content"] in ("yes", "no")
    schema = LlamaGrammar.from_json_schema(json.dumps(USER_DETAIL))
    out = llm("Jason is 25. As JSON:", grammar=schema, max_tokens=64, temperature=0.0)
    assert set(json.loads(out["choices"][0]["text"])) == {"name", "age"}


def test_the_model_facts(llm, smollm2_path):
    assert llm.n_ctx() == 512 and llm.n_vocab() == 49152 and llm.n_embd() == 576
    assert llm.token_eos() == 2 and llm.metadata["architecture"] == "llama"
    assert llm.model_path == str(smollm2_path)
    assert len(llm.embed(["a", "b"])) == 2 and len(llm.embed("a")) == 576


def test_bad_calls_are_value_errors_naming_the_argument(llm):
    with pytest.raises(ValueError, match=r"messages\[0\]\.role") as bad:
        llm.create_chat_completion(messages=[{"role": "robot", "content": "hi"}])
    assert isinstance(bad.value, InvalidRequest)  # llamaserve's own type too
    with pytest.raises(ValueError, match="mirostat_mode"):
        llm.create_chat_completion(messages=[{"role": "user", "content": "hi"}], mirostat_mode=2)
    with pytest.raises(ValueError, match="context"):
        llm("word " * 2000, max_tokens=4)
    with pytest.raises(ValueError, match="grammar"):
        llm("hi", grammar='root ::= "unclosed', max_tokens=4)
    with pytest.raises(ValueError, match="normalize"):
        llm.embed("hi", normalize=False)
    with pytest.raises(ValueError, match="context"):  # a stream's error comes when the call is made
        llm.create_chat_completion(messages=[{"role": "user", "content": "word " * 2000}], stream=True)


def test_constructor_arguments_map_or_are_refused_by_name(smollm2_path):
    mapped = settings(smollm2_path, {"n_ctx": 0, "type_k": 8, "flash_attn": True, "seed": 7, "n_threads": 2,
                                     "use_mmap": False, "draft_model": LlamaPromptLookupDecoding(num_pred_tokens=3)})
    assert mapped.load["n_ctx"] == 8192  # 0: the context the model was trained for
    assert mapped.load["cache_type_k"] == "q8_0" and mapped.load["flash_attn"] == "on"
    assert mapped.load["spec"] == "ngram" and mapped.load["spec_draft_max"] == 3
    assert mapped.seed == 7 and mapped.ignored == ["use_mmap"]
    assert settings(smollm2_path, {"seed": 0xFFFFFFFF}).seed is None  # llama-cpp-python's "random"
    for name, value in (("chat_handler", object()), ("lora_path", "x.gguf"), ("rope_freq_base", 5e5)):
        with pytest.raises(UnsupportedArgument, match=name):
            settings(smollm2_path, {name: value})
    with pytest.raises(TypeError, match="n_gpus"):
        settings(smollm2_path, {"n_gpus": 2})
    with pytest.raises(ValueError, match="does not exist"):
        Llama(model_path="no/such/model.gguf")
    with pytest.raises(ValueError, match="never downloads"):
        Llama.from_pretrained(repo_id="Qwen/Qwen2-0.5B-Instruct-GGUF", filename="*q8_0.gguf")


def test_the_same_seed_gives_the_same_sampled_reply(smollm2_path):
    with Llama(model_path=str(smollm2_path), seed=42, n_ctx=256, n_parallel=1, verbose=False) as llm:
        first = llm("Once upon a time", max_tokens=12)["choices"][0]["text"]
        assert llm("Once upon a time", max_tokens=12)["choices"][0]["text"] == first
    assert llamaserve.Llama is Llama
