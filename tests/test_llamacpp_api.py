"""llama-server's own API on the default weights over the session's server: /completion in
its shape (whole and streamed, tokens, probabilities, timings), its field names mapped onto the
one request model or refused by name, /props, /slots, /apply-template, the older /embeddings,
the /v1-less OpenAI paths answering any model name, and its error shape."""
from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path

import httpx
import openai
import pytest

from llamaserve.config import ServerConfig
from llamaserve.server.app import create_app
from serverutil import LiveServer, sse_events

YES = 'root ::= "yes" | "no"'


@pytest.fixture(scope="module")
def url(default_server):
    return default_server.url


def post(url: str, path: str, body: dict) -> httpx.Response:
    return httpx.post(url + path, json=body, timeout=120)


def test_completion_in_llama_servers_shape(url):
    r = post(url, "/completion", {"prompt": "Once upon a time", "n_predict": 6, "temperature": 0, "ignore_eos": True})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["stop"] is True and out["stop_type"] == "limit" and out["tokens_predicted"] == 6
    assert out["prompt"] == "Once upon a time" and out["tokens_evaluated"] == 4 and out["content"]
    assert out["generation_settings"]["n_predict"] == 6 and out["generation_settings"]["n_ctx"] == 4096
    assert {"token": 2, "bias": None} in out["generation_settings"]["logit_bias"]  # ignore_eos: end tokens banned
    timings = out["timings"]
    assert timings["predicted_n"] == 6 and timings["prompt_n"] + timings["cache_n"] == 4
    assert timings["predicted_ms"] > 0 and timings["predicted_per_second"] > 0
    same = post(url, "/completions", {"prompt": "Once upon a time", "n_predict": 6, "temperature": 0,
                                      "ignore_eos": True}).json()
    assert same["content"] == out["content"]  # /completions is the same route


def test_streamed_completion_adds_up_and_ends_with_the_whole_result(url):
    body = {"prompt": "The sky is", "n_predict": 8, "temperature": 0, "ignore_eos": True}
    whole = post(url, "/completion", body).json()
    with httpx.stream("POST", url + "/completion", json={**body, "stream": True}, timeout=120) as r:
        events = list(sse_events(r.iter_lines()))
    assert all(not e["stop"] for e in events[:-1]) and events[-1]["stop"] and events[-1]["stop_type"] == "limit"
    assert "".join(e["content"] for e in events) == whole["content"]


def test_grammar_json_schema_tokens_and_probabilities(url):
    out = post(url, "/completion", {"prompt": "Is water wet?", "grammar": YES, "return_tokens": True,
                                    "n_probs": 2, "temperature": 0}).json()
    assert out["content"] in ("yes", "no") and out["stop_type"] == "eos"
    assert len(out["tokens"]) == out["tokens_predicted"] and all(isinstance(t, int) for t in out["tokens"])
    [first, *_] = out["completion_probabilities"]
    assert first["id"] == out["tokens"][0] and len(first["top_logprobs"]) == 2
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    answer = post(url, "/completion", {"prompt": "JSON:", "json_schema": schema, "n_predict": 32,
                                       "temperature": 0}).json()
    assert isinstance(json.loads(answer["content"])["a"], int)


@pytest.mark.parametrize(("body", "says"), [
    ({"prompt": "x", "mirostat": 2}, "mirostat"),
    ({"prompt": "x", "typical_p": 0.5}, "typical_p"),
    ({"prompt": "x", "no_such_field": 1}, "no_such_field"),
    ({"prompt": "x", "temperature": 9}, "temperature"),
    ({"n_predict": 4}, "prompt"),
    ({"prompt": "x", "json_schema": {"type": "object"}, "grammar": YES}, "json_schema"),
])
def test_bad_fields_are_400s_in_llama_servers_shape(url, body, says):
    r = post(url, "/completion", body)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == 400 and error["type"] == "invalid_request_error" and error["message"].startswith(says)


def test_a_prompt_too_long_is_exceed_context_size_error(url):
    r = post(url, "/completion", {"prompt": "word " * 5000, "n_predict": 4})
    assert r.status_code == 400 and r.json()["error"]["type"] == "exceed_context_size_error"


def test_props_slots_template_and_embeddings(url):
    props = httpx.get(url + "/props").json()
    assert props["total_slots"] == 2 and props["model_path"].endswith(".gguf")
    assert props["default_generation_settings"]["n_ctx"] == 4096 and "im_start" in props["chat_template"]
    slots = httpx.get(url + "/slots").json()
    assert [s["id"] for s in slots] == [0, 1] and all(s["n_ctx"] == 4096 for s in slots)
    prompt = post(url, "/apply-template", {"messages": [{"role": "user", "content": "Hi"}]}).json()["prompt"]
    assert prompt.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    [row] = post(url, "/embeddings", {"content": "Hi"}).json()
    assert row["index"] == 0 and len(row["embedding"][0]) == 576


def test_openai_paths_without_v1_answer_any_model_name(url):
    client = openai.OpenAI(base_url=url, api_key="x")  # no /v1 in the base URL, as some scripts have
    reply = client.chat.completions.create(model="gpt-3.5-turbo", max_tokens=4,
                                           messages=[{"role": "user", "content": "Hi"}])
    assert reply.choices[0].message.content and reply.model != "gpt-3.5-turbo"  # the served model's name
    assert [m.id for m in client.models.list()][0] == reply.model


def test_v1_takes_a_grammar(url):
    client = openai.OpenAI(base_url=url + "/v1", api_key="x")
    reply = client.chat.completions.create(model="default", messages=[{"role": "user", "content": "Is water wet?"}],
                                           extra_body={"grammar": YES})
    assert reply.choices[0].message.content in ("yes", "no")
    with pytest.raises(openai.BadRequestError, match="grammar"):
        client.chat.completions.create(model="default", messages=[{"role": "user", "content": "Hi"}],
                                       response_format={"type": "json_object"}, extra_body={"grammar": YES})


def test_llama_servers_own_prompt_and_bias_forms(url):
    ids = httpx.post(url + "/tokenize", json={"content": "The sky is"}).json()["tokens"]
    both = post(url, "/completion", {"prompt": [ids, {"prompt_string": "The sky is"}], "n_predict": 4,
                                     "temperature": 0}).json()
    assert isinstance(both, list) and both[0]["content"] == both[1]["content"]
    plain = post(url, "/completion", {"prompt": "The sky is", "n_predict": 4, "temperature": 0}).json()["content"]
    first_word = plain.split()[0]
    banned = post(url, "/completion", {"prompt": "The sky is", "n_predict": 4, "temperature": 0,
                                       "logit_bias": [[" " + first_word, False]]}).json()["content"]
    assert not banned.startswith(" " + first_word)  # a text's tokens banned, as llama-server reads it
    r = post(url, "/completion", {"prompt": [{"prompt_string": "x", "multimodal_data": ["aGk="]}]})
    assert r.status_code == 400 and "multimodal_data" in r.json()["error"]["message"]


def test_v1_health_is_public_like_health(default_server, engine):
    assert httpx.get(default_server.url + "/v1/health").json()["status"] == "healthy"
    with LiveServer(create_app(ServerConfig(api_keys=("k" * 16,)), engine)) as server:
        assert httpx.get(server.url + "/v1/health").status_code == 200  # no key needed, as llama-server
        assert httpx.get(server.url + "/v1/models").status_code == 401


def test_slots_answer_501_under_no_slots(engine):
    with LiveServer(create_app(ServerConfig(slots_endpoint=False), engine)) as server:
        r = httpx.get(server.url + "/slots")
        assert r.status_code == 501  # llama-server's --no-slots answer, in its error shape
        assert r.json()["error"]["type"] == "not_supported_error" and "--no-slots" in r.json()["error"]["message"]


def test_v1_takes_llama_servers_fields(url):
    """What llama-server's clients send to its OpenAI routes: n_predict, json_schema, n_probs,
    id_slot and cache_prompt (no effect here), verbose; answers carry its timings."""
    body = {"messages": [{"role": "user", "content": "Say anything."}], "n_predict": 3, "temperature": 0,
            "id_slot": 1, "cache_prompt": True, "verbose": True, "n_probs": 2}
    out = post(url, "/v1/chat/completions", body).json()
    assert out["usage"]["completion_tokens"] <= 3 and out["choices"][0]["finish_reason"] in ("length", "stop")
    assert out["timings"]["predicted_n"] == out["usage"]["completion_tokens"]
    assert "<|im_start|>user\nSay anything.<|im_end|>" in out["__verbose"]["prompt"]
    assert all(len(t["top_logprobs"]) == 2 for t in out["choices"][0]["logprobs"]["content"])
    assert "__verbose" not in post(url, "/v1/chat/completions", {**body, "verbose": False}).json()
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    answer = post(url, "/chat/completions", {"messages": [{"role": "user", "content": "A number as JSON"}],
                                             "json_schema": schema, "n_predict": 24, "temperature": 0}).json()
    assert isinstance(json.loads(answer["choices"][0]["message"]["content"])["n"], int)
    completion = post(url, "/v1/completions", {"prompt": "The sky is", "n_predict": 4, "n_probs": 1,
                                               "temperature": 0}).json()
    assert completion["usage"]["completion_tokens"] == 4 and len(completion["choices"][0]["logprobs"]["tokens"]) == 4
    assert completion["timings"]["predicted_n"] == 4
    refused = post(url, "/v1/chat/completions", {**body, "mirostat": 2})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "mirostat"


def test_v1_streams_timings_per_token_and_counts_input_tokens(url):
    body = {"messages": [{"role": "user", "content": "test"}], "max_tokens": 5, "stream": True,
            "stream_options": {"include_usage": True}, "timings_per_token": True, "temperature": 0}
    with httpx.stream("POST", url + "/chat/completions", json=body, timeout=120) as r:
        events = list(sse_events(line for line in r.iter_lines() if line != "data: [DONE]"))
    first, *middle, last = events
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": None} and "timings" not in first
    assert middle and all("timings" in e for e in middle)
    assert last["choices"] == [] and last["timings"]["predicted_n"] == last["usage"]["completion_tokens"]
    counted = post(url, "/chat/completions/input_tokens", {"messages": body["messages"]}).json()
    assert counted["input_tokens"] == last["usage"]["prompt_tokens"]


def test_a_final_assistant_message_is_continued(url):
    """As llama-server (and vLLM's continue_final_message): the reply goes on from its text."""
    messages = [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "My favourite is"}]
    out = post(url, "/v1/chat/completions", {"messages": messages, "max_tokens": 2, "verbose": True}).json()
    assert out["__verbose"]["prompt"].endswith("<|im_start|>assistant\nMy favourite is")
    same = post(url, "/v1/chat/completions", {"messages": messages, "max_tokens": 2, "verbose": True,
                                              "add_generation_prompt": False, "continue_final_message": True}).json()
    assert same["__verbose"]["prompt"] == out["__verbose"]["prompt"]
    answered = post(url, "/v1/chat/completions", {"messages": messages, "max_tokens": 2, "verbose": True,
                                                  "continue_final_message": False}).json()
    assert answered["__verbose"]["prompt"].endswith("My favourite is<|im_end|>\n<|im_start|>assistant\n")
    both = post(url, "/v1/chat/completions", {"messages": messages, "add_generation_prompt": True,
                                              "continue_final_message": True})
    assert both.status_code == 400 and both.json()["error"]["param"] == "continue_final_message"
    two = post(url, "/v1/chat/completions", {"messages": [*messages, {"role": "assistant", "content": "blue"}]})
    assert two.status_code == 400 and "two assistant messages" in two.json()["error"]["message"]


def test_server_wide_seed_temperature_and_template(engine, tmp_path):
    template = tmp_path / "plain.jinja"
    template.write_text("{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}"
                        "{% if add_generation_prompt %}[assistant] {% endif %}")
    config = ServerConfig(default_seed=7, default_temperature=1.5, chat_template_file=str(template))
    with LiveServer(create_app(config, engine)) as server:
        params = httpx.get(server.url + "/props").json()["default_generation_settings"]["params"]
        assert params["seed"] == 7 and params["temperature"] == 1.5 and params["top_k"] == 40
        body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "verbose": True}
        assert post(server.url, "/v1/chat/completions", body).json()["__verbose"]["prompt"] == "[user] Hi\n[assistant] "
        settings = post(server.url, "/completion", {"prompt": "Hi", "n_predict": 1}).json()["generation_settings"]
        assert settings["seed"] == 7 and settings["temperature"] == 1.5  # what a request naming none runs with
    with pytest.raises(ValueError, match="--chat-template: must be a built-in"):
        ServerConfig(chat_template="command-r7b")


TEMPLATES = Path(__file__).parents[1] / "vendor/llama.cpp/models/templates"


def applied(server: LiveServer, body: dict) -> str:
    r = post(server.url, "/apply-template", {"messages": [{"role": "user", "content": "What is today?"}], **body})
    assert r.status_code == 200, r.text
    return r.json()["prompt"]


def test_reasoning_switch_as_llama_server(engine):
    r1 = str(TEMPLATES / "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja")  # reads enable_thinking
    with LiveServer(create_app(ServerConfig(chat_template_file=r1), engine)) as server:  # --reasoning auto
        assert applied(server, {}).endswith("<\uff5cAssistant\uff5c><think>\n")
        assert applied(server, {"reasoning_effort": "none"}).endswith("<think>\n</think>")  # the request wins
    with LiveServer(create_app(ServerConfig(chat_template_file=r1, reasoning="off"), engine)) as server:
        assert applied(server, {}).endswith("<think>\n</think>")
        assert applied(server, {"chat_template_kwargs": {"enable_thinking": True}}).endswith("<think>\n")
    with pytest.raises(ValueError, match="--reasoning: must be on, off or auto"):
        ServerConfig(reasoning="maybe")


def test_post_sampling_probs_are_the_chains_own(url, engine):
    body = {"prompt": "Today was the day. Today I would finally become a", "n_probs": 10, "temperature": 1.0,
            "n_predict": 5, "seed": 3, "post_sampling_probs": True}
    out = post(url, "/completion", body).json()["completion_probabilities"]
    assert len(out) == 5
    for tok in out:
        assert 0.0 < tok["prob"] <= 1.0 and "logprob" not in tok
        probs = [alt["prob"] for alt in tok["top_probs"]]
        assert probs == sorted(probs, reverse=True) and 0.0 < sum(probs) <= 1.0 + 1e-6
    model = post(url, "/completion", {**body, "post_sampling_probs": False}).json()["completion_probabilities"]
    # The chain keeps top_k 40 and renormalizes: the same first choices, each likelier than the model says.
    assert out[0]["top_probs"][0]["id"] == model[0]["top_logprobs"][0]["id"]
    assert out[0]["top_probs"][0]["prob"] > math.exp(model[0]["top_logprobs"][0]["logprob"])
    greedy = post(url, "/completion", {**body, "temperature": 0}).json()["completion_probabilities"]
    assert all(tok["prob"] == 1.0 and len(tok["top_probs"]) == 1 for tok in greedy)
    # Asked for every token the chain keeps (top_k 20), they add up to one.
    stream = engine.stream(body["prompt"], max_tokens=1, temperature=1.0, top_k=20, logprobs=20,
                           post_sampling_probs=True)
    "".join(stream)
    [(_, _, kept)] = stream.take_token_logprobs()
    assert abs(sum(math.exp(lp) for _, lp in kept) - 1.0) < 1e-4


def progress_of(url: str, path: str, body: dict) -> tuple[list[dict], list[dict]]:
    """The streamed events of a request, and among them the progress reports (before any text)."""
    with httpx.stream("POST", url + path, json={**body, "stream": True}, timeout=120) as r:
        events = list(sse_events(line for line in r.iter_lines() if line != "data: [DONE]"))
    return events, [e for e in events if "prompt_progress" in e]


def test_return_progress_reports_the_prompt_as_it_is_processed(url):
    body = {"prompt": "the quick brown fox jumps over the lazy dog " * 8, "n_predict": 2, "return_progress": True,
            "timings_per_token": True, "cache_prompt": False}
    events, reports = progress_of(url, "/completion", body)
    first, *_, last = [e["prompt_progress"] for e in reports]
    assert first["total"] > 60 and first["processed"] == first["cache"] and first["time_ms"] == 0.0
    assert last["processed"] == last["total"] and last["time_ms"] > 0
    assert reports[0]["timings"]["prompt_n"] == 0 and reports[-1]["timings"]["prompt_n"] == last["total"] - last["cache"]
    assert events.index(reports[-1]) < next(i for i, e in enumerate(events) if e["content"])  # before the text
    chat = {"messages": [{"role": "user", "content": "This is a test" * 10}], "max_tokens": 2, "return_progress": True}
    progress_of(url, "/v1/chat/completions", chat)
    events, reports = progress_of(url, "/v1/chat/completions", chat)  # the same prompt again: cached
    assert reports and all(e["choices"] == [] for e in reports)
    assert reports[0]["prompt_progress"]["cache"] > 0 and reports[-1]["prompt_progress"]["processed"] == \
        reports[-1]["prompt_progress"]["total"]
    assert not progress_of(url, "/v1/chat/completions", {**chat, "return_progress": False})[1]  # only when asked


def test_slot_files_save_erase_and_restore(url, engine, tmp_path):
    off = post(url, "/slots/0?action=save", {"filename": "a.bin"})  # no --slot-save-path
    assert off.status_code == 403 and off.json()["error"]["type"] == "feature_disabled"
    assert post(url, "/slots/0?action=erase", {}).json()["id_slot"] == 0  # erase needs no folder
    prompt = "Slot files keep a prompt: " + "the quick brown fox jumps over the lazy dog. " * 4
    with LiveServer(create_app(ServerConfig(slot_save_path=str(tmp_path)), engine)) as server:
        for i in range(8):  # the shared engine's slots hold other tests' prompts
            post(server.url, f"/slots/{i}?action=erase", {})
        first = post(server.url, "/completion", {"prompt": prompt, "n_predict": 1, "id_slot": 5}).json()
        assert first["timings"]["prompt_n"] > 40
        saved = [post(server.url, f"/slots/{i}?action=save", {"filename": f"s{i}.bin"}).json() for i in range(8)]
        [kept] = [s for s in saved if s["n_saved"] > 0]  # the slot that served the prompt: the one it asked for
        assert kept["id_slot"] == 5
        assert kept["n_written"] > 0 and kept["timings"]["save_ms"] >= 0 and (tmp_path / kept["filename"]).is_file()
        for i in range(8):  # every slot forgets: the prompt is now only in the file (and the host cache)
            post(server.url, f"/slots/{i}?action=erase", {})
        other = (kept["id_slot"] + 1) % 8
        restored = post(server.url, f"/slots/{other}?action=restore", {"filename": kept["filename"]}).json()
        assert restored["n_restored"] == kept["n_saved"] and restored["n_read"] == kept["n_written"]
        again = post(server.url, "/completion", {"prompt": prompt, "n_predict": 1, "cache_prompt": True}).json()
        assert again["timings"]["cache_n"] >= kept["n_saved"] - 1
        (tmp_path / "junk.bin").write_bytes(b"not a slot file" * 10)
        for path, body, what in [
                ("/slots/0?action=restore", {"filename": "junk.bin"}, "filename"),
                ("/slots/0?action=restore", {"filename": "missing.bin"}, "filename"),
                ("/slots/0?action=save", {"filename": "../escape.bin"}, "filename"),
                ("/slots/0?action=save", {}, "filename"),
                ("/slots/0?action=nap", {}, "action"),
                ("/slots/99?action=erase", {}, "slot")]:
            r = post(server.url, path, body)
            assert r.status_code == 400 and r.json()["error"]["message"].startswith(what + ":"), (path, r.text)
        assert not (tmp_path.parent / "escape.bin").exists()


def test_slot_files_refuse_a_busy_slot_and_a_closed_engine(smollm2_path, tmp_path):
    from llamaserve import Engine
    from llamaserve.errors import EngineError, InvalidRequest

    eng = Engine.load(str(smollm2_path), n_ctx=256, n_parallel=1)
    try:
        stream = eng.stream("Count to a hundred:", max_tokens=200, ignore_eos=True)
        next(iter(stream))  # the one slot is generating
        with pytest.raises(InvalidRequest, match="slot 0 is busy"):
            eng.save_slot(0, tmp_path / "busy.bin")
        stream.cancel()
    finally:
        eng.close()
    with pytest.raises(EngineError, match="closed"):
        eng.save_slot(0, tmp_path / "closed.bin")


def test_id_slot_waits_for_its_slot_while_others_go_by(smollm2_path, url):
    from llamaserve import Engine

    for bad in (99, -2):
        r = post(url, "/completion", {"prompt": "Hi", "n_predict": 1, "id_slot": bad})
        assert r.status_code == 400 and r.json()["error"]["message"].startswith("id_slot:")
    eng = Engine.load(str(smollm2_path), n_ctx=256, n_parallel=2)
    try:
        long = eng.stream("Count:", max_tokens=60, ignore_eos=True, id_slot=0)
        next(iter(long))  # slot 0 is busy
        pinned = eng.stream("Hello", max_tokens=2, ignore_eos=True, id_slot=0)  # waits for slot 0
        free = eng.stream("Hello", max_tokens=2, ignore_eos=True)  # slot 1 is free: goes first
        done = free.completion()
        assert not long.finished and not pinned.finished
        long.completion()
        # Submitted before the free one, it got its first token only after the free one had ended.
        assert pinned.completion().time_to_first_token > done.latency
    finally:
        eng.close()


def test_server_verbose_puts_the_prompt_in_every_answer(engine):
    body = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
    with LiveServer(create_app(ServerConfig(verbose=True, chat_template="llama3"), engine)) as server:
        shown = post(server.url, "/chat/completions", body).json()["__verbose"]["prompt"]
        assert shown.endswith("Hi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
        assert "__verbose" not in post(server.url, "/chat/completions", {**body, "verbose": False}).json()
        parts = [{"role": "user", "content": [{"type": "text", "text": "Wh"}, {"type": "text", "text": "ill"}]}]
        shown = post(server.url, "/chat/completions", {**body, "messages": parts}).json()["__verbose"]["prompt"]
        assert "Wh\n\nill<|eot_id|>" in shown  # text parts joined as llama-server joins them


def test_templates_get_todays_date_and_firefunction_its_functions(engine):
    llama = str(TEMPLATES / "meta-llama-Llama-3.3-70B-Instruct.jinja")
    with LiveServer(create_app(ServerConfig(chat_template_file=llama), engine)) as server:
        assert f"Today Date: {date.today().strftime('%d %b %Y')}" in applied(server, {})
    fire = str(TEMPLATES / "fireworks-ai-llama-3-firefunction-v2.jinja")
    tool = {"type": "function", "function": {"name": "get_time", "description": "the time in a city",
                                             "parameters": {"type": "object", "properties": {}}}}
    with LiveServer(create_app(ServerConfig(chat_template_file=fire), engine)) as server:
        plain = applied(server, {})
        assert f"Today is {date.today().strftime('%b %d %Y')}." in plain and "get_time" not in plain
        assert '"name": "get_time"' in applied(server, {"tools": [tool]})  # its `functions` variable


def test_models_are_listed_once_with_aliases_and_tags_and_no_ui_is_404(engine):
    config = ServerConfig(served_model_name=("tiny", "fim"), model_tags=("chat", "small"), ui=False)
    with LiveServer(create_app(config, engine)) as server:
        [model, *_] = httpx.get(server.url + "/models").json()["data"]
        assert model["id"] == "tiny" and model["aliases"] == ["tiny", "fim", "default"]
        assert model["tags"] == ["chat", "small"]
        assert httpx.get(server.url + "/v1/models/fim").json()["aliases"][0] == "tiny"
        assert httpx.get(server.url + "/").status_code == 404  # --no-ui


def test_generation_rate_is_over_the_steps_after_the_first_token_and_no_metrics_is_501(url, engine):
    one = post(url, "/completion", {"prompt": "I believe", "n_predict": 1, "ignore_eos": True}).json()["timings"]
    assert one["predicted_n"] == 1 and one["predicted_per_second"] == 0.0 and one["predicted_per_token_ms"] == 0.0
    many = post(url, "/completion", {"prompt": "I believe", "n_predict": 9, "ignore_eos": True}).json()["timings"]
    assert abs(many["predicted_per_second"] - 8 * 1000 / many["predicted_ms"]) < 1e-6  # 8 decode steps
    assert "Process-Start-Time-Unix" in httpx.get(url + "/metrics").headers
    with LiveServer(create_app(ServerConfig(metrics=False), engine)) as server:
        assert httpx.get(server.url + "/metrics").status_code == 501


def test_vertex_ai_predict_route_dispatches_each_instance(engine, monkeypatch):
    monkeypatch.setenv("AIP_MODE", "PREDICTION")
    monkeypatch.setenv("AIP_HEALTH_ROUTE", "/vertex-health")
    with LiveServer(create_app(ServerConfig(api_keys=("k" * 16,)), engine)) as server:
        key = {"Authorization": "Bearer " + "k" * 16}
        chat = {"@requestFormat": "chatCompletions", "max_tokens": 3, "stream": True,
                "messages": [{"role": "user", "content": "Hi"}]}
        tokens = {"@requestFormat": "/tokenize", "content": "Hello"}
        r = httpx.post(server.url + "/predict", json={"instances": [chat, tokens, {"max_tokens": 1}]},
                       headers=key, timeout=120)
        first, second, third = r.json()["predictions"]
        assert first["object"] == "chat.completion" and first["choices"][0]["message"]["role"] == "assistant"
        assert second["tokens"] and "@requestFormat" in third["error"]["message"]
        assert httpx.post(server.url + "/predict", json={"instances": [tokens]}).status_code == 401
        assert httpx.post(server.url + "/predict", json={"instances": "x"}, headers=key).status_code == 400
        assert httpx.get(server.url + "/vertex-health").status_code == 200


def test_completion_response_fields_and_texts_among_token_ids(url):
    out = post(url, "/completion", {"prompt": "The sky is", "n_predict": 3, "temperature": 0,
                                    "response_fields": ["content", "generation_settings/n_predict", "no/such"]}).json()
    assert set(out) == {"content", "generation_settings/n_predict"} and out["generation_settings/n_predict"] == 3
    ids = httpx.post(url + "/tokenize", json={"content": "The sky"}).json()["tokens"]
    spliced = post(url, "/completion", {"prompt": [*ids, " is"], "n_predict": 3, "temperature": 0}).json()
    assert spliced["content"] == out["content"] and spliced["tokens_evaluated"] == len(ids) + 1
