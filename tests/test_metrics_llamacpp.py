"""llama-server's /metrics series (llamacpp:...) beside ours, read as llama-server's own test
suite reads them (tools/server/tests/unit/test_metrics.py): unlabelled samples, each with its
HELP and TYPE lines, counters that follow the traffic."""
from __future__ import annotations

import time

import httpx

COUNTERS = ("prompt_tokens_total", "prompt_tokens_cached_total", "prompt_seconds_total", "tokens_predicted_total",
            "tokens_predicted_seconds_total", "n_decode_total", "n_tokens_max", "spec_decode_num_draft_tokens_total",
            "spec_decode_num_accepted_tokens_total", "spec_decode_num_drafts_total")
GAUGES = ("prompt_tokens_seconds", "predicted_tokens_seconds", "requests_processing", "requests_deferred",
          "n_busy_slots_per_decode")


def scrape(base_url: str, **params: str) -> tuple[httpx.Response, dict[str, tuple[str, float]]]:
    """The response and {llamacpp name: (type, value)}, parsed as llama-server's suite does."""
    r = httpx.get(base_url + "/metrics", params=params)
    types, values = {}, {}
    for line in r.text.splitlines():
        if line.startswith("# TYPE llamacpp:"):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
        elif line.startswith("llamacpp:"):
            name, value = line.split(" ", 1)
            assert "{" not in name and name in types, line  # unlabelled, typed before its sample
            assert f"# HELP {name} " in r.text
            values[name] = (types[name], float(value))
    return r, values


def idle_scrape(base_url: str) -> dict[str, tuple[str, float]]:
    """A scrape once no request of an earlier test is still running (a cancelled one ends soon)."""
    for _ in range(200):
        _, values = scrape(base_url)
        if values["llamacpp:requests_processing"][1] == 0 and values["llamacpp:requests_deferred"][1] == 0:
            return values
        time.sleep(0.05)
    raise AssertionError("requests still running")


def change(before: dict, after: dict, name: str) -> float:
    return after["llamacpp:" + name][1] - before["llamacpp:" + name][1]


def test_llamacpp_series_have_llama_servers_names_and_types_and_follow_the_traffic(base_url):
    before = idle_scrape(base_url)
    assert {n: t for n, (t, _) in before.items()} == \
        {**{"llamacpp:" + n: "counter" for n in COUNTERS}, **{"llamacpp:" + n: "gauge" for n in GAUGES}}
    body = httpx.post(base_url + "/api/v1/generate", timeout=120, json={
        "prompt": "The three primary colors are", "max_tokens": 6, "temperature": 0, "ignore_eos": True,
        "speculative": False}).json()  # a token per decode
    r, after = scrape(base_url)
    assert r.status_code == 200 and int(r.headers["Process-Start-Time-Unix"]) <= time.time()

    def delta(name: str) -> float:
        return change(before, after, name)

    prompt = body["usage"]["prompt_tokens"]
    assert delta("tokens_predicted_total") == 6
    assert delta("prompt_tokens_total") + delta("prompt_tokens_cached_total") == prompt
    assert delta("prompt_tokens_total") >= 1  # the last prompt token is always decoded
    # one decode for the prompt, then one per token but the last (sampled, never decoded)
    assert delta("n_decode_total") == 6
    assert delta("prompt_seconds_total") > 0 and delta("tokens_predicted_seconds_total") > 0
    assert after["llamacpp:n_tokens_max"][1] >= prompt + 5
    assert after["llamacpp:n_busy_slots_per_decode"][1] >= 1
    assert after["llamacpp:requests_processing"][1] == 0
    # throughput since the previous scrape: this request's, then nothing until the next one
    assert after["llamacpp:predicted_tokens_seconds"][1] > 0 and after["llamacpp:prompt_tokens_seconds"][1] > 0
    _, again = scrape(base_url)
    assert again["llamacpp:predicted_tokens_seconds"][1] == 0 == again["llamacpp:prompt_tokens_seconds"][1]
    assert again["llamacpp:tokens_predicted_total"] == after["llamacpp:tokens_predicted_total"]


def test_llamacpp_speculation_series_count_each_verification(base_url):
    before = idle_scrape(base_url)
    body = {"prompt": "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1, 2, 3", "max_tokens": 24,
            "temperature": 0, "ignore_eos": True}  # ngram drafts (the shared server's default) take
    details = httpx.post(base_url + "/api/v1/generate", json=body, timeout=120).json()["usage"][
        "completion_tokens_details"]
    _, after = scrape(base_url)

    def delta(name: str) -> float:
        return change(before, after, "spec_decode_num_" + name)

    # How much is drafted depends on what a step costs on the machine now (a busy one may draft
    # nothing): the series must agree with the request's own figures, whatever they are.
    accepted, rejected = details["accepted_prediction_tokens"], details["rejected_prediction_tokens"]
    assert delta("accepted_tokens_total") == accepted
    assert delta("draft_tokens_total") == accepted + rejected
    assert (delta("drafts_total") >= 1) == (accepted + rejected > 0)
    assert delta("drafts_total") <= accepted + rejected


def test_metrics_of_a_model_named_in_the_query(base_url, served_model):
    """llama-server's router mode names the model whose series it wants: ?model=."""
    r, values = scrape(base_url, model=served_model)
    assert r.status_code == 200 and "llamacpp:n_decode_total" in values
    r = httpx.get(base_url + "/metrics", params={"model": "no-such-model"})
    assert r.status_code == 409
    assert r.json()["error"]["message"] == "model: 'no-such-model' is not loaded"
    assert served_model in r.json()["error"]["details"]
