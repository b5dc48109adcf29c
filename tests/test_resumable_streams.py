"""llama-server's resumable chat streams on the default weights over a real server: a streamed
chat request with X-Conversation-Id goes on when its client drops, GET /v1/stream replays it
(from a byte offset, then live), DELETE stops it, /v1/streams/lookup tells the state of named
ids; bad ids and offsets are 400s, unknown ids 404s."""
from __future__ import annotations

import json
import uuid

import httpx
import pytest

from serverutil import wait_for

ONE_WORD = 'root ::= "yes"'


@pytest.fixture(scope="module")
def url(default_server):
    return default_server.url


def chat(tokens: int) -> dict:
    return {"messages": [{"role": "user", "content": "Count to a thousand."}], "stream": True,
            "max_tokens": tokens, "ignore_eos": True, "temperature": 0}


def events_of(raw: bytes) -> list[str]:
    return [line[len("data: "):] for line in raw.decode().splitlines() if line.startswith("data: ")]


def replay(url: str, conv: str, start: int = 0) -> httpx.Response:
    return httpx.get(url + "/v1/stream", params={"conv_id": conv, "from": start}, timeout=120)


def test_a_stream_replays_whole_and_from_an_offset_and_is_stopped_by_delete(url):
    conv = f"conv-{uuid.uuid4()}::org/model:Q8_0"  # slashes and colons travel in the query string
    with httpx.stream("POST", url + "/chat/completions", json=chat(6), timeout=120,  # llama-server's path
                      headers={"X-Conversation-Id": conv}) as r:
        live = r.read()
    assert events_of(live)[-1] == "[DONE]"
    again = replay(url, conv)
    assert again.status_code == 200 and again.headers["content-type"].startswith("text/event-stream")
    assert again.content == live
    assert replay(url, conv, 10).content == live[10:]
    states = httpx.post(url + "/v1/streams/lookup", json={"conversation_ids": [conv, "never-seen"]}).json()
    assert states["sessions"] == [{"conv_id": conv, "done": True, "bytes": len(live), "first_byte": 0}]
    assert httpx.delete(url + "/v1/stream", params={"conv_id": conv}).status_code == 204
    assert replay(url, conv).status_code == 404
    assert httpx.delete(url + "/v1/stream", params={"conv_id": conv}).status_code == 204  # idempotent


def test_the_generation_goes_on_after_its_client_drops(url):
    conv = f"conv-{uuid.uuid4()}"
    with httpx.stream("POST", url + "/v1/chat/completions", json=chat(40), timeout=120,
                      headers={"X-Conversation-Id": conv}) as r:
        next(r.iter_raw())  # the first bytes, then the client goes (a page reload)
    done = lambda: httpx.post(url + "/v1/streams/lookup", json={"conversation_ids": [conv]}).json()  # noqa: E731
    wait_for(lambda: done()["sessions"][0]["done"], timeout=120, interval=0.1)
    events = events_of(replay(url, conv).content)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "length"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text  # all 40 tokens were generated although nobody read them


def test_delete_stops_a_running_generation(url):
    conv = f"conv-{uuid.uuid4()}"
    with httpx.stream("POST", url + "/v1/chat/completions", json=chat(3000), timeout=120,
                      headers={"X-Conversation-Id": conv}) as r:
        next(r.iter_raw())
    assert httpx.delete(url + "/v1/stream", params={"conv_id": conv}).status_code == 204
    # The slot is free again long before 3000 tokens could have been generated.
    wait_for(lambda: httpx.get(url + "/health").json()["slots"]["busy"] == 0, timeout=30, interval=0.05)
    assert httpx.post(url + "/v1/streams/lookup", json={"conversation_ids": [conv]}).json() == {"sessions": []}


def test_a_reader_attaches_while_it_runs_and_gets_everything(url):
    conv = f"conv-{uuid.uuid4()}"
    with httpx.stream("POST", url + "/v1/chat/completions", json=chat(30), timeout=120,
                      headers={"X-Conversation-Id": conv}) as r:
        first = next(r.iter_raw())
        with httpx.stream("GET", url + "/v1/stream", params={"conv_id": conv, "from": len(first)},
                          timeout=120) as reattached:
            rest = reattached.read()  # live bytes until the stream ends
    assert events_of(first + rest)[-1] == "[DONE]" and replay(url, conv).content == first + rest


@pytest.mark.parametrize(("params", "status"), [
    ({}, 400), ({"conv_id": ""}, 400), ({"conv_id": "x" * 600}, 400), ({"conv_id": "unknown"}, 404)])
def test_bad_stream_requests(url, params, status):
    r = httpx.get(url + "/v1/stream", params=params)
    assert r.status_code == status and "message" in r.json()["error"]


def test_bad_offsets_and_lookups(url):
    conv = f"conv-{uuid.uuid4()}"
    with httpx.stream("POST", url + "/v1/chat/completions", json={**chat(2), "grammar": ONE_WORD}, timeout=120,
                      headers={"X-Conversation-Id": conv}) as r:
        r.read()
    for bad in ("-1", "x", "1e3"):
        r = httpx.get(url + "/v1/stream", params={"conv_id": conv, "from": bad})
        assert r.status_code == 400 and r.json()["error"]["message"].startswith("from:")
    assert httpx.post(url + "/v1/streams/lookup", json={"conversation_ids": "x"}).status_code == 400
    assert httpx.post(url + "/v1/streams/lookup", json={}).status_code == 400
