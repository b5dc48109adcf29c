"""The playground (GET /) in a real browser: headless Chromium from the distribution's
packages (never a browser that playwright downloads), driven through playwright's Python
API, against live servers over the shared engine (Gemma 3 270M)."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from llamaserve.config import ServerConfig
from llamaserve.server.playground import PAGE
from serverutil import health, wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium executable (apt-get install chromium)")

PROMPT = "The three primary colors are"
SPEC = Path(__file__).resolve().parents[2] / "shared" / "spec" / "api-design.md"

# The spec's "JavaScript Client Example", verbatim (checked against the spec when it is here).
SPEC_JS_EXAMPLE = '''async function streamGenerate(prompt) {
    const response = await fetch('/api/v1/generate/stream', {
        method: 'POST',
        headers: {
            'Content-Type': 'application/json',
            'Accept': 'text/event-stream'
        },
        body: JSON.stringify({ prompt })
    });
    
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    
    while (true) {
        const { value, done } = await reader.read();
        if (done) break;
        
        const chunk = decoder.decode(value);
        const data = JSON.parse(chunk.replace('data: ', ''));
        console.log(data.token);
    }
}
'''


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        # /dev/shm is small in containers; Chromium then keeps its shared memory in /tmp.
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--disable-dev-shm-usage"])
        expect.set_options(timeout=60_000)  # generous: the machine is shared
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh tab (its own session storage) that fails the test on any uncaught script error."""
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    page.set_default_timeout(60_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors


def busy(url: str) -> int:
    return health(url)["slots"]["busy"]


def last_reply(page: Page):
    return page.locator(".msg.assistant").last


def set_controls(page: Page, *, max_tokens: int, system: str = "") -> None:
    page.fill("#max-tokens", str(max_tokens))
    page.fill("#system", system)
    page.focus("#temperature")
    page.keyboard.press("Home")  # temperature 0: greedy, so the model's reply is the same every run
    expect(page.locator("#temperature-value")).to_have_text("0")


def send(page: Page, text: str) -> None:
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")


def wait_done(page: Page) -> None:
    expect(last_reply(page)).not_to_have_class(re.compile(r"\bstreaming\b"))


def test_page_is_one_file_from_the_package_and_lists_the_served_model(page, base_url, served_model):
    r = httpx.get(base_url + "/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.text == PAGE.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", r.text)  # no CDN, no web fonts
    origins = []
    page.on("request", lambda request: origins.append(urlsplit(request.url).netloc))
    page.goto(base_url + "/")
    expect(page.locator("#model option").first).to_have_text(served_model)
    assert page.locator("#model").input_value() == served_model
    assert set(origins) == {urlsplit(base_url).netloc}
    for control, name in [("#model", "Model"), ("#system", "System prompt"), ("#temperature", "Temperature"),
                          ("#max-tokens", "Max tokens"), ("#api-key", "API key"), ("#prompt", "Message")]:
        expect(page.locator(control)).to_have_accessible_name(name)


def test_reply_streams_in_with_ttft_and_rate_and_the_conversation_is_resent(page, base_url, served_model):
    page.goto(base_url + "/")
    expect(page.locator("#model option").first).to_have_text(served_model)
    set_controls(page, max_tokens=12, system="You are a helpful assistant.")
    # Record the reply's length at every change of the conversation log.
    page.evaluate("""() => {
        window.lengths = [];
        new MutationObserver(() => {
            const texts = document.querySelectorAll('.msg.assistant .text');
            if (texts.length) window.lengths.push(texts[texts.length - 1].textContent.length);
        }).observe(document.getElementById('log'), {subtree: true, childList: true, characterData: true});
    }""")
    with page.expect_request("**/v1/chat/completions") as first:
        send(page, PROMPT)
    wait_done(page)
    lengths = page.evaluate("window.lengths")
    final = len(last_reply(page).locator(".text").text_content())
    assert final > 0
    assert lengths == sorted(lengths)  # it only grows
    assert len({n for n in lengths if 0 < n < final}) >= 2, lengths  # seen at two lengths before the end
    body = first.value.post_data_json
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert (body["model"], body["temperature"], body["max_tokens"]) == (served_model, 0, 12)
    stats = last_reply(page).locator(".stats").text_content()
    # include_usage gives the exact count (no "≈"); the rate is over the tokens after the first.
    match = re.fullmatch(r"TTFT (\d+) ms · (\d+) tokens · ([\d.]+) tok/s", stats)
    assert match, stats
    assert 0 < int(match[1]) < 60_000 and 1 < int(match[2]) <= 12 and float(match[3]) > 0

    reply = last_reply(page).locator(".text").text_content()
    page.fill("#max-tokens", "2")
    with page.expect_request("**/v1/chat/completions") as second:
        send(page, "And the secondary colors?")
    assert second.value.post_data_json["messages"] == [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": PROMPT},
        {"role": "assistant", "content": reply},
        {"role": "user", "content": "And the secondary colors?"},
    ]
    assert second.value.post_data_json["max_tokens"] == 2
    wait_done(page)
    expect(page.locator(".msg.assistant")).to_have_count(2)
    expect(page.locator("#error")).to_be_hidden()


def test_stop_cancels_the_request_and_frees_the_slot(page, base_url):
    wait_for(lambda: busy(base_url) == 0, timeout=10)
    page.route("**/v1/chat/completions", lambda route: route.continue_(post_data=json.dumps(
        # The base model may end a reply early; ignore_eos (a llama.cpp extension that /v1
        # accepts) keeps this one going until it is stopped.
        {**route.request.post_data_json, "ignore_eos": True})))
    page.goto(base_url + "/")
    set_controls(page, max_tokens=400)
    send(page, PROMPT)
    expect(last_reply(page).locator(".text")).not_to_be_empty()
    assert busy(base_url) == 1
    page.click("#stop")
    wait_for(lambda: busy(base_url) == 0, timeout=5)
    expect(last_reply(page).locator(".stats")).to_contain_text("stopped")
    expect(page.locator("#stop")).to_be_disabled()
    expect(page.locator("#send")).to_be_enabled()
    expect(page.locator("#error")).to_be_hidden()


def test_server_errors_are_shown_and_the_turn_is_left_out(page, base_url):
    page.goto(base_url + "/")
    set_controls(page, max_tokens=8, system="word " * 1000)  # longer than the 512-token context
    page.fill("#prompt", "Hi")
    page.press("#prompt", "Shift+Enter")  # a new line, not a send
    page.locator("#prompt").press_sequentially("there")
    expect(page.locator(".msg")).to_have_count(0)
    page.press("#prompt", "Enter")
    expect(page.locator("#error")).to_contain_text("context_length_exceeded")
    expect(page.locator(".msg.user").last).to_have_class(re.compile(r"\bfailed\b"))
    expect(page.locator("#prompt")).to_have_value("Hi\nthere")  # back in the composer to send again


def test_with_auth_on_a_401_asks_for_the_key_and_it_works_after(page, serve_app, served_model):
    server = serve_app(ServerConfig(api_keys=("playground-key",), default_max_tokens=32))
    page.goto(server.url + "/")
    dialog = page.locator("#key-dialog")
    expect(dialog).to_be_visible()  # GET /v1/models answered 401
    expect(dialog).to_contain_text("missing API key")
    page.fill("#key-input", "wrong-key")
    page.press("#key-input", "Enter")
    expect(dialog).to_contain_text("invalid API key")  # asked again
    page.fill("#key-input", "playground-key")
    page.click("#key-dialog button[value=ok]")
    expect(dialog).to_be_hidden()
    expect(page.locator("#model option").first).to_have_text(served_model)
    assert page.evaluate("sessionStorage.getItem('llamaserve.apiKey')") == "playground-key"
    expect(page.locator("#api-key")).to_have_value("playground-key")
    set_controls(page, max_tokens=4)
    with page.expect_request("**/v1/chat/completions") as sent:
        send(page, PROMPT)
    assert sent.value.headers["authorization"] == "Bearer playground-key"
    wait_done(page)
    expect(last_reply(page).locator(".stats")).to_contain_text("tokens")
    expect(page.locator("#error")).to_be_hidden()


def test_spec_javascript_example_runs_unchanged_in_the_page(page, serve_app):
    # The example sends no max_tokens: a short server default keeps it quick.
    # One token a step: the example takes each read() for one event, and drafted runs can
    # send events faster than the page reads them (two then arrive in one read).
    # Its own engine: spec="off" must reach the engine (the shared one drafts), and few events
    # leave fewer chances of two in one read. One thread: the other core stays free for the
    # browser, which two spinning decode threads would keep waiting past the next event.
    server = serve_app(ServerConfig(default_max_tokens=3, spec="off", n_parallel=1, n_ctx=256, n_threads=1),
                       eng=None)
    if SPEC.is_file():  # the copy above must be the spec's own text
        assert SPEC_JS_EXAMPLE.strip() in SPEC.read_text()
    tokens = []
    page.on("console", lambda message: tokens.append(message.text) if message.type == "log" else None)
    page.goto(server.url + "/")
    # The example parses each read() as one whole event: the engine hands a stream's last
    # piece over with its end, and the server sends them as one final event, so it can.
    page.evaluate(f"async () => {{\n{SPEC_JS_EXAMPLE}\nawait streamGenerate({json.dumps(PROMPT)});\n}}")
    assert len(tokens) >= 2 and "".join(tokens).strip(), tokens


def test_a_reasoning_models_thinking_is_folded_apart_from_the_answer(page, thinking_server):
    """The default weights with a thinking template (tests/conftest.py): the reply starts inside
    its reasoning, which streams into a folded "Reasoning" section, not the answer."""
    page.goto(thinking_server.url + "/")
    set_controls(page, max_tokens=16)
    page.evaluate("""() => {
        window.thoughts = [];
        new MutationObserver(() => {
            const t = document.querySelector('.msg.assistant .thought');
            if (t) window.thoughts.push(t.textContent.length);
        }).observe(document.getElementById('log'), {childList: true, subtree: true, characterData: true});
    }""")
    send(page, "Is 17 prime?")
    wait_done(page)
    reasoning = last_reply(page).locator("details.reasoning")
    expect(reasoning).to_be_visible()
    expect(reasoning).not_to_have_attribute("open", "")  # folded until the user opens it
    thought = reasoning.locator(".thought")
    assert thought.text_content() and "<think>" not in thought.text_content()
    assert "<think>" not in (last_reply(page).locator(".text").text_content() or "")
    assert len(set(page.evaluate("window.thoughts"))) >= 3  # it grew as it streamed


def test_api_docs_page_has_contents_and_no_empty_cells(page, base_url):
    page.goto(base_url + "/docs")
    contents = page.locator("#contents a[href^='#tag-']")
    expect(contents.first).to_be_visible()
    spec = httpx.get(base_url + "/openapi.json").json()
    operations = sum(len(ops) for ops in spec["paths"].values())
    assert page.locator("#contents li li a").count() == operations  # every operation listed
    link = page.locator("#contents li li a").first
    target = link.get_attribute("href")
    link.click()
    expect(page.locator(target)).to_be_in_viewport()
    cells = page.locator("#operations td")
    assert cells.count() > 0
    assert all(text.strip() for text in cells.all_inner_texts())  # a column no field explains is left out


def test_on_a_phone_settings_fold_away_and_enter_during_a_reply_queues(browser, base_url, served_model):
    """400 px wide: the settings start folded (the conversation gets most of the height), New
    chat is always there, the model's whole name shows; Enter during a reply queues the message."""
    context = browser.new_context(viewport={"width": 400, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        page.goto(base_url + "/")
        expect(page.locator("#model-name")).to_have_text(served_model)
        expect(page.locator("#max-tokens")).to_be_hidden()
        expect(page.locator("#new-chat")).to_be_visible()
        log = page.locator("#log").bounding_box()
        assert log["height"] > 0.6 * 800, log
        page.click("#settings-title")  # unfold: every setting reachable
        for control in ("#max-tokens", "#api-key", "#system"):
            page.locator(control).scroll_into_view_if_needed()
            expect(page.locator(control)).to_be_visible()
        page.fill("#max-tokens", "2000")  # replies that outlast the test's steps: stopped by hand
        page.click("#settings-title")
        expect(page.locator("#max-tokens")).to_be_hidden()
        send(page, "Tell me a long story.")
        expect(last_reply(page).locator(".text")).not_to_be_empty()
        send(page, "And another one.")  # while the first reply streams
        expect(page.locator("#activity")).to_contain_text("queued")
        expect(page.locator(".msg.user")).to_have_count(1)
        page.click("#stop")  # the first reply ends: the queued message goes
        expect(page.locator(".msg.user")).to_have_count(2)
        expect(page.locator(".msg.user").last).to_contain_text("And another one.")
        expect(last_reply(page).locator(".text")).not_to_be_empty()
        page.click("#stop")
        wait_done(page)
    finally:
        context.close()
    assert not errors
