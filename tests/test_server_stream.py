"""Server-sent events: incremental delivery, equality with the non-streaming text, and
cancellation when the client goes away."""
from __future__ import annotations

import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from serverutil import health, sse_events, wait_for

PROMPT = "The three primary colors are"
SSE = {"Accept": "text/event-stream"}


def read_stream(url: str, body: dict) -> tuple[list[dict], list[float]]:
    """The events and the time (from sending) each arrived."""
    started = time.perf_counter()
    events, times = [], []
    with httpx.stream("POST", url, json=body, headers=SSE, timeout=120) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache"
        for event in sse_events(r.iter_lines()):
            events.append(event)
            times.append(time.perf_counter() - started)
    return events, times


def test_events_arrive_one_at_a_time_and_end_with_usage(base_url):
    # One token a step (drafts accepted together arrive together, as one event).
    events, times = read_stream(base_url + "/api/v1/generate/stream",
                                {"prompt": PROMPT, "max_tokens": 24, "temperature": 0, "ignore_eos": True,
                                 "speculative": False})
    *pieces, last = events
    assert all(e["finished"] is False and isinstance(e["token"], str) for e in pieces)
    assert len(pieces) >= 20  # one event per piece (a piece may hold several tokens' text)
    assert last["finished"] is True
    assert last["finish_reason"] == "length"
    assert last["usage"]["completion_tokens"] == 24
    assert last["usage"]["total_tokens"] == last["usage"]["prompt_tokens"] + 24
    # Flushed as generated: the first event comes long before the last, and the events
    # arrive spread over the generation rather than in one lump at the end.
    assert times[0] < 0.5 * times[-1], times
    assert len({round(t, 3) for t in times}) >= 10


def test_streamed_tokens_equal_the_non_streaming_text(base_url):
    body = {"prompt": PROMPT, "max_tokens": 24, "temperature": 0}
    text = httpx.post(base_url + "/api/v1/generate", json=body, timeout=120).json()["text"]
    events, _ = read_stream(base_url + "/api/v1/generate/stream", body)
    assert "".join(e["token"] for e in events) == text
    assert text.strip()


def test_generate_with_stream_true_streams_like_the_stream_endpoint(base_url):
    # Without the prefix cache or drafts: a reused prompt or a batched verification can flip
    # a near-tie greedy token (and how many tokens are drafted depends on timing).
    body = {"prompt": PROMPT, "max_tokens": 12, "temperature": 0, "cache_prompt": False, "speculative": False}
    plain, _ = read_stream(base_url + "/api/v1/generate/stream", body)
    streamed, _ = read_stream(base_url + "/api/v1/generate", {**body, "stream": True})
    strip = lambda events: [{k: v for k, v in e.items() if k != "latency"} for e in events]  # noqa: E731
    assert strip(streamed) == strip(plain)


def test_stream_without_accept_header_still_streams(base_url):
    with httpx.stream("POST", base_url + "/api/v1/generate/stream",
                      json={"prompt": "Hi", "max_tokens": 3}, timeout=120) as r:
        events = list(sse_events(r.iter_lines()))
    assert events[-1]["finished"] is True and len(events) >= 2


def test_bad_stream_request_is_a_json_400_not_an_event_stream(base_url):
    r = httpx.post(base_url + "/api/v1/generate/stream", headers=SSE,
                   json={"prompt": "Hi", "top_p": 7}, timeout=30)
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]["message"].startswith("top_p")


def busy(url: str) -> int:
    return health(url)["slots"]["busy"]


def test_disconnect_mid_stream_frees_the_slot(base_url):
    wait_for(lambda: busy(base_url) == 0, timeout=10)
    with httpx.stream("POST", base_url + "/api/v1/generate/stream", headers=SSE, timeout=120,
                      json={"prompt": PROMPT, "max_tokens": 400, "temperature": 0, "ignore_eos": True}) as r:
        lines = r.iter_lines()
        received = [e for _, e in zip(range(3), sse_events(lines))]
        assert len(received) == 3 and not received[-1]["finished"]
        assert busy(base_url) == 1
    # Leaving the block closed the connection mid-stream (~400 tokens were still to come).
    freed_in = wait_for(lambda: busy(base_url) == 0, timeout=2.0)
    assert freed_in < 2.0
    # The server goes on serving.
    assert httpx.post(base_url + "/api/v1/generate", json={"prompt": "Hi", "max_tokens": 2},
                      timeout=60).status_code == 200


def test_disconnect_during_a_non_streaming_request_frees_the_slot(base_url):
    wait_for(lambda: busy(base_url) == 0, timeout=10)
    started = time.monotonic()
    try:
        httpx.post(base_url + "/api/v1/generate", timeout=httpx.Timeout(60, read=1.0),
                   json={"prompt": PROMPT, "max_tokens": 400, "temperature": 0, "ignore_eos": True})
        raise AssertionError("400 tokens came back within a second")
    except httpx.ReadTimeout:
        pass  # the client gave up and closed the connection
    assert time.monotonic() - started < 30
    wait_for(lambda: busy(base_url) == 0, timeout=2.0)


def test_disconnect_during_prefill_cancels_before_the_first_token(one_slot_url):
    """A long prompt (~1900 tokens: four prefill chunks of 512) is cancelled when its client
    leaves before anything was sent: the slot frees after the chunk in progress, long before
    the prefill would have ended, and no first token ever comes."""
    def families() -> dict:
        return {f.name: f for f in text_string_to_metric_families(httpx.get(one_slot_url + "/metrics").text)}

    def count(fams: dict, family: str, sample: str, **labels: str) -> float:
        return sum(s.value for s in fams[family].samples
                   if s.name == sample and labels.items() <= s.labels.items())

    wait_for(lambda: busy(one_slot_url) == 0, timeout=10)
    # How long the whole prefill takes here and now (another prompt: nothing is cached).
    full = httpx.post(one_slot_url + "/api/v1/generate", timeout=300,
                      json={"prompt": "term " * 1900, "max_tokens": 1}).json()["time_to_first_token"]
    wait_for(lambda: busy(one_slot_url) == 0, timeout=10)
    before = families()
    with httpx.stream("POST", one_slot_url + "/api/v1/generate/stream", headers=SSE, timeout=300,
                      json={"prompt": "word " * 1900, "max_tokens": 8}) as r:
        assert r.status_code == 200  # the headers come at once, before any token
        wait_for(lambda: busy(one_slot_url) == 1, timeout=10)
        left = time.monotonic()
    wait_for(lambda: busy(one_slot_url) == 0, timeout=full + 60)
    freed_in = time.monotonic() - left
    assert freed_in < 0.6 * full, (freed_in, full)
    after = families()
    ttft = ("llamaserve:time_to_first_token_seconds", "llamaserve:time_to_first_token_seconds_count")
    assert count(after, *ttft) == count(before, *ttft)
    finished = ("llamaserve:request_finished", "llamaserve:request_finished_total")
    assert count(after, *finished, finished_reason="cancelled") == count(before, *finished, finished_reason="cancelled") + 1


def test_text_events_match_encoding_the_whole_event():
    import json

    from llamaserve.server import sse

    shape = {"id": "x", "choices": [{"index": 3, "delta": {"content": sse.TEXT_HOLE}, "logprobs": None}]}
    events = sse.TextEvents(shape)
    for text in ["plain", 'quo"te\\', "line\nbreak\t", "ünïcødé 你好 🙂", "\x00\x1f", ""]:
        raw = events(text)
        assert raw.startswith(b"data: ") and raw.endswith(b"\n\n")
        expected = {"id": "x", "choices": [{"index": 3, "delta": {"content": text}, "logprobs": None}]}
        assert json.loads(raw[6:]) == expected
