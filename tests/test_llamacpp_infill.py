"""llama-server's /infill over a real server: a tiny random coder GGUF with StarCoder's vocabulary
and FIM tokens (the prompt framed as llama-server frames it: repository-level extra files,
prefix, typed prompt, suffix, middle; its budgets), the answer in /completion's shape (whole and
streamed), bad input_extra refused in llama-server's error shape, and the default SmolLM2, which
has no FIM tokens, refused with a 400 naming them. The weights are noise: the tests check the
prompt and the shape, never the text."""
from __future__ import annotations

import httpx
import pytest

from llamaserve import Engine, InvalidRequest
from llamaserve.config import ServerConfig
from llamaserve.server.app import create_app
from serverutil import LiveServer, sse_events
from tiny_models import FIM_CODER, write_tiny_model

PREFIX = "#include <cstdio>\n\nint main() {\n"
SUFFIX = "}\n"
TYPED = "    int n = "
EXTRA = [{"filename": "llama.h", "text": "int32_t llama_n_threads();\n"}]
N_CTX = 2048


@pytest.fixture(scope="module")
def coder_path(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("fim") / FIM_CODER.file_name, FIM_CODER)


@pytest.fixture(scope="module")
def coder(coder_path):
    with Engine.load(coder_path, n_ctx=N_CTX, n_parallel=1, n_batch=64) as engine:
        yield engine


@pytest.fixture(scope="module")
def url(coder_path):
    config = ServerConfig(model=str(coder_path), n_parallel=1, n_ctx=N_CTX, default_max_tokens=4)
    with LiveServer(create_app(config)) as server:
        yield server.url


def post(url: str, path: str, body: dict) -> httpx.Response:
    return httpx.post(url + path, json=body, timeout=120)


def test_the_prompt_is_framed_from_the_fim_tokens(coder):
    meta = coder.metadata
    pre, suf, mid, rep, sep = (meta[f"fim_{k}_token_id"] for k in ("pre", "suf", "mid", "rep", "sep"))
    assert (pre, suf, mid, rep, sep) == (1, 3, 2, 5, 6)  # StarCoder's; <repo_name> and <file_sep> named by the GGUF

    def text(s: str) -> list[int]:
        return coder.tokenize(s, add_special=False, parse_special=False)

    ids = coder.fim_prompt(PREFIX, SUFFIX, prompt=TYPED, input_extra=EXTRA, n_predict=16)
    assert ids == [rep, *text("myproject\n"), sep, *text("llama.h\n"), *text(EXTRA[0]["text"]),
                   sep, *text("filename\n"), pre, *text(PREFIX), *text(TYPED), suf, *text(SUFFIX), mid]
    # Without extra files the repository and current-file lines still open the prompt.
    assert coder.fim_prompt(PREFIX, SUFFIX)[:len(text("myproject\n")) + 1] == [rep, *text("myproject\n")]


def test_the_parts_are_cut_to_llama_servers_budgets(coder):
    """n_batch 64: the prefix keeps its last 48 tokens, the suffix its first 16 - (2 + typed);
    the extra files keep their end, n_ctx - n_batch - 2 * n_predict tokens."""
    words = " ".join(f"w{i}" for i in range(400))
    ids = coder.fim_prompt(words, words, prompt=TYPED, n_predict=16)
    pre, suf = ids.index(coder.metadata["fim_pre_token_id"]), ids.index(coder.metadata["fim_suf_token_id"])
    typed = coder.tokenize(TYPED, add_special=False)
    whole = coder.tokenize(words, add_special=False, parse_special=False)
    assert ids[pre + 1:suf] == whole[-48:] + typed
    assert ids[suf + 1:-1] == whole[:16 - 2 - len(typed)]
    big = coder.fim_prompt("a", "b", input_extra=[{"filename": "big.txt", "text": words}], n_predict=900)
    rep, sep = coder.metadata["fim_rep_token_id"], coder.metadata["fim_sep_token_id"]
    extra = [rep, *coder.tokenize("myproject\n", add_special=False), sep,
             *coder.tokenize("big.txt\n", add_special=False), *whole, sep, *coder.tokenize("filename\n", add_special=False)]
    room = N_CTX - 64 - 2 * 900
    assert room < len(extra) and big[:big.index(coder.metadata["fim_pre_token_id"])] == extra[-room:]


def test_infill_answers_in_completions_shape(url, coder):
    body = {"input_prefix": PREFIX, "input_suffix": SUFFIX, "prompt": TYPED, "input_extra": EXTRA,
            "n_predict": 4, "temperature": 0, "ignore_eos": True}
    r = post(url, "/infill", body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["stop"] is True and out["stop_type"] == "limit" and out["tokens_predicted"] == 4
    assert out["tokens_evaluated"] == len(coder.fim_prompt(PREFIX, SUFFIX, prompt=TYPED, input_extra=EXTRA,
                                                           n_predict=4))
    assert PREFIX + TYPED in out["prompt"] and out["generation_settings"]["n_predict"] == 4
    again = post(url, "/infill", body).json()
    assert again["content"] == out["content"]  # greedy: the same prompt, the same middle
    with httpx.stream("POST", url + "/infill", json={**body, "stream": True}, timeout=120) as streamed:
        events = list(sse_events(streamed.iter_lines()))
    assert events[-1]["stop"] and "".join(e["content"] for e in events) == out["content"]


def test_token_ids_mix_with_text_in_the_prefix(url, coder):
    head, ids = "#include <cstdio>\n\n", coder.tokenize("int main() {\n", add_special=False)
    framed = coder.fim_prompt([head, *ids], SUFFIX, n_predict=1)
    pre = framed.index(coder.metadata["fim_pre_token_id"])
    assert framed[pre + 1:framed.index(coder.metadata["fim_suf_token_id"])] == [
        *coder.tokenize(head, add_special=False, parse_special=False), *ids]
    out = post(url, "/infill", {"input_prefix": [head, *ids], "input_suffix": SUFFIX, "n_predict": 1,
                                "temperature": 0}).json()
    assert out["tokens_evaluated"] == len(framed)


@pytest.mark.parametrize("body, field", [
    ({"input_extra": [{}]}, "input_extra[0].text"),
    ({"input_extra": [{"filename": "ok"}]}, "input_extra[0].text"),
    ({"input_extra": [{"filename": 123}]}, "input_extra[0].text"),
    ({"input_extra": [{"filename": 123, "text": "abc"}]}, "input_extra[0].filename"),
    ({"input_extra": [{"filename": "a", "text": 456}]}, "input_extra[0].text"),
    ({"input_extra": {"text": "abc"}}, "input_extra"),
    ({"input_extra": ["abc"]}, "input_extra"),
    ({"input_prefix": None}, "input_prefix"),
    ({"input_suffix": 5}, "input_suffix"),
    ({"input_prefix": ["a", 1.5]}, "input_prefix[1]"),
    ({"prompt": ["a"]}, "prompt"),
    ({"n_predict": "many"}, "max_tokens"),
    ({"mirostat": 2}, "mirostat"),
])
def test_bad_input_is_a_400_naming_the_field(url, body, field):
    r = post(url, "/infill", {"input_prefix": PREFIX, "input_suffix": SUFFIX, **body})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == 400 and error["type"] == "invalid_request_error" and error["message"].startswith(field)


def test_a_model_without_fim_tokens_is_a_clear_400(default_server):
    r = post(default_server.url, "/infill", {"input_prefix": PREFIX, "input_suffix": SUFFIX})
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert "SmolLM2-135M-Instruct" in message and "no FIM prefix, suffix, middle token" in message


def test_the_python_api_refuses_what_the_route_refuses(coder, smollm2_path):
    with pytest.raises(InvalidRequest, match=r"input_extra\[0\]\.text: required"):
        coder.fim_prompt(PREFIX, SUFFIX, input_extra=[{"filename": "a"}])
    with Engine.load(smollm2_path, n_ctx=64, n_parallel=1) as smol, pytest.raises(InvalidRequest, match="no FIM"):
        smol.fim_prompt(PREFIX, SUFFIX)
