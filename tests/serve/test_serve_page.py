"""herd serve's chat page in a real headless Chromium, against the real server running a tiny random model.

What a user does (load the page, watch a reply stream in, stop one, hold a conversation with a system
prompt, use a narrow screen) and what a reply must never do: run the markup it contains. The page is
plain HTML/CSS/JS with nothing fetched from elsewhere, so every request must go to the server itself.
Skipped only where Chromium or Playwright is missing. (docs/images/serve-chat.png is the same page
answering with SmolLM2-135M-Instruct.)
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from serve_helpers import serving

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Request, Route

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1100, "height": 750}
STARTUP_S = 180
REPLY_MS = 60_000
UNAUTHORIZED = {
    "error": {"message": "Invalid API key", "type": "invalid_request_error", "param": None, "code": None}
}

if CHROMIUM is None:
    pytest.skip("no chromium on PATH (apt install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed")

# About 15 s of it is the server starting (importing PyTorch, building the model) on 2 shared cores.
pytestmark = pytest.mark.slow


@dataclass
class Server:
    """A running ``herd serve``: where it listens and the model it names."""

    url: str
    model: str


@dataclass
class Tab:
    """A page with what it asked the network for, the chat requests it sent and the errors it logged."""

    page: Page
    requests: list[str] = field(default_factory=list)
    chats: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def record(self, request: Request) -> None:
        self.requests.append(request.url)
        if request.url.endswith("/v1/chat/completions"):
            self.chats.append(json.loads(request.post_data or "null"))


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``herd serve llama2-tiny --random`` on a free port, stopped with SIGTERM at the end."""
    with serving(tmp_path_factory.mktemp("serve"), "llama2-tiny", startup_s=STARTUP_S) as running:
        yield Server(url=running.url, model=get_json(f"{running.url}/v1/models")["data"][0]["id"])


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def open_tab(browser: Browser, server: Server, viewport: dict[str, int]) -> Tab:
    """The chat page loaded in a fresh context, with its requests, console errors and dialogs recorded."""
    context = browser.new_context(viewport=viewport)
    tab = Tab(page=context.new_page())
    tab.page.on("request", tab.record)
    tab.page.on("console", lambda message: message.type == "error" and tab.errors.append(message.text))
    tab.page.on("pageerror", lambda error: tab.errors.append(str(error)))
    tab.page.on("dialog", lambda dialog: tab.dialogs.append(dialog.message))
    tab.page.goto(server.url + "/")
    sync_api.expect(tab.page.locator("#model")).to_have_text(server.model)
    return tab


@pytest.fixture
def tab(browser: Browser, server: Server) -> Iterator[Tab]:
    opened = open_tab(browser, server, DESKTOP)
    yield opened
    opened.page.context.close()


def send(page: Page, text: str) -> None:
    page.fill("#input", text)
    page.press("#input", "Enter")


def wait_idle(page: Page) -> None:
    """Until no request runs: Stop is disabled again."""
    page.wait_for_selector("#stop:disabled", state="attached", timeout=REPLY_MS)


def last_reply(page: Page) -> str:
    return page.eval_on_selector_all(".message.assistant", "els => els.at(-1).textContent")


def shown_as(page: Page, markdown: str) -> str:
    """The text the page shows for a reply of ``markdown`` (random bytes may hold newlines or asterisks)."""
    return page.evaluate("(text) => window.herdChat.renderMarkdown(text).textContent", markdown)


def test_page_loads_offline_and_names_the_model(tab: Tab, server: Server) -> None:
    page = tab.page
    assert page.title() == "herd chat"
    assert page.locator("#stop").is_disabled()
    assert page.input_value("#temperature") == "0.7"
    assert page.input_value("#max-tokens") == "256"
    assert {"/", "/static/chat.js", "/static/chat.css", "/v1/models"} <= {
        url.removeprefix(server.url) for url in tab.requests
    }
    assert [url for url in tab.requests if not url.startswith(server.url + "/")] == []
    assert tab.errors == []


def test_a_reply_streams_in_as_it_is_generated(tab: Tab) -> None:
    page = tab.page
    page.fill("#max-tokens", "32")
    page.evaluate(
        """() => {
            window.replyLengths = [];
            new MutationObserver(() => {
                const replies = document.querySelectorAll('.message.assistant');
                if (replies.length) window.replyLengths.push(replies[replies.length - 1].textContent.length);
            }).observe(document.getElementById('messages'), {childList: true, subtree: true, characterData: true});
        }"""
    )
    send(page, "Hello there")
    sync_api.expect(page.locator(".message.user")).to_have_text("Hello there")
    sync_api.expect(page.locator("#stop")).to_be_enabled()
    wait_idle(page)
    lengths = [n for n in page.evaluate("window.replyLengths") if n]
    assert last_reply(page)
    assert len(set(lengths)) >= 2, f"the reply did not grow while streaming: lengths seen {lengths}"
    assert page.locator(".message.error").count() == 0
    assert tab.chats[0]["max_tokens"] == 32
    assert tab.chats[0]["stream"] is True


def test_stop_keeps_the_text_so_far_and_frees_the_server(tab: Tab, server: Server) -> None:
    page = tab.page
    page.fill("#max-tokens", "150")
    # Press Stop from inside the page the moment the first text shows, so that the stream is surely running.
    page.evaluate(
        """() => new MutationObserver((_, observer) => {
            const reply = document.querySelector('.message.assistant');
            if (reply && reply.textContent) {
                observer.disconnect();
                document.getElementById('stop').click();
            }
        }).observe(document.getElementById('messages'), {childList: true, subtree: true, characterData: true})"""
    )
    send(page, "Tell me a long story")
    wait_idle(page)
    reply = page.locator(".message.assistant").first
    sync_api.expect(reply).to_have_attribute("data-note", "stopped")
    stopped = reply.text_content()
    assert stopped
    page.wait_for_timeout(700)
    assert reply.text_content() == stopped, "the reply kept growing after Stop"
    deadline = time.monotonic() + 5
    while get_json(f"{server.url}/health")["running"]:
        assert time.monotonic() < deadline, "the server still generates the stopped reply"
        time.sleep(0.1)

    page.fill("#max-tokens", "16")
    send(page, "And then?")
    wait_idle(page)
    assert page.locator(".message.assistant").count() == 2
    assert last_reply(page)
    assert page.locator(".message.error").count() == 0
    assert [m["role"] for m in tab.chats[1]["messages"]] == ["user", "assistant", "user"]
    assert shown_as(page, tab.chats[1]["messages"][1]["content"]) == stopped


def test_a_conversation_with_a_system_prompt(tab: Tab, server: Server, tmp_path: Path) -> None:
    page = tab.page
    system = {"role": "system", "content": "Answer briefly."}
    page.fill("#system", system["content"])
    page.fill("#temperature", "0")
    page.fill("#max-tokens", "16")
    send(page, "What is herd?")
    wait_idle(page)
    first = last_reply(page)
    assert first
    send(page, "Say more.")
    wait_idle(page)
    assert page.locator(".message.error").count() == 0
    sent = tab.chats[1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert [sent[0], sent[1], sent[3]] == [
        system,
        {"role": "user", "content": "What is herd?"},
        {"role": "user", "content": "Say more."},
    ]
    assert shown_as(page, sent[2]["content"]) == first
    assert {k: tab.chats[0][k] for k in ("model", "stream", "temperature", "max_tokens")} == {
        "model": server.model,
        "stream": True,
        "temperature": 0,
        "max_tokens": 16,
    }
    assert page.screenshot(path=tmp_path / "serve-chat.png")[:4] == b"\x89PNG"

    page.click("#new-chat")
    sync_api.expect(page.locator("#messages > *")).to_have_count(0)
    send(page, "Hi")
    wait_idle(page)
    assert tab.chats[2]["messages"] == [system, {"role": "user", "content": "Hi"}]


def canned_stream(pieces: list[str]) -> str:
    """A chat completion stream in the server's format whose deltas are ``pieces``."""
    chunks = [{"delta": {"role": "assistant"}, "finish_reason": None}]
    chunks += [{"delta": {"content": piece}, "finish_reason": None} for piece in pieces]
    chunks += [{"delta": {}, "finish_reason": "stop"}]
    events = [json.dumps({"object": "chat.completion.chunk", "choices": [{"index": 0, **c}]}) for c in chunks]
    return "".join(f"data: {event}\n\n" for event in [*events, "[DONE]"])


def test_markup_in_a_reply_is_shown_as_text_never_run(tab: Tab) -> None:
    page = tab.page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    seen: list[dict[str, str]] = []
    pieces = [
        '<img src=x onerror="window.pwned=1"> <scr',
        "ipt>window.pwned=1</script> <svg onload=window.pwned=1>\n",
        "**bold** and *ital",
        "ic* and `x<b>`\n\n- one\n- two\n\n```python\nprint(1)\n```\n",
    ]

    def reply(route: Route) -> None:
        seen.append(route.request.headers)
        route.fulfill(status=200, content_type="text/event-stream", body=canned_stream(pieces))

    page.route("**/v1/chat/completions", reply)
    page.fill("#api-key", "sk-page-test")
    page.fill("#input", "<b>not bold</b>")
    page.press("#input", "Shift+Enter")
    page.type("#input", "second line")
    assert tab.chats == []
    page.press("#input", "Enter")
    wait_idle(page)
    message = page.locator(".message.assistant")
    text = message.inner_text()
    assert '<img src=x onerror="window.pwned=1">' in text
    assert "<script>window.pwned=1</script>" in text
    assert page.evaluate("window.pwned") is None
    assert page.locator("#messages img, #messages script, #messages svg, #messages b").count() == 0
    assert page.locator(".message.user").text_content() == "<b>not bold</b>\nsecond line"
    assert message.locator("strong").inner_text() == "bold"
    assert message.locator("em").inner_text() == "italic"
    assert message.locator("p code").inner_text() == "x<b>"
    assert message.locator("ul > li").all_inner_texts() == ["one", "two"]
    assert message.locator("pre code").inner_text() == "print(1)"
    message.locator("button.copy").click()
    assert page.evaluate("navigator.clipboard.readText()") == "print(1)"

    assert seen[0]["authorization"] == "Bearer sk-page-test"
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0
    assert page.context.cookies() == []


def test_chat_js_builds_no_html_from_strings() -> None:
    source = (ROOT / "src" / "herd" / "serve" / "static" / "chat.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "Function("):
        assert sink not in source, f"chat.js uses {sink}"


def test_markdown_subset_and_stream_parsing_in_the_page(tab: Tab) -> None:
    page = tab.page
    shape = page.evaluate(
        """(text) => {
            const walk = (node) => node.nodeType === Node.TEXT_NODE ? node.textContent
                : [node.nodeName.toLowerCase(), ...Array.from(node.childNodes, walk)];
            return Array.from(window.herdChat.renderMarkdown(text).childNodes, walk);
        }""",
        "a *b* **c `d`** e\nnext line\n\n- x\n```js\nlet a = '<i>'",
    )
    assert shape == [
        ["p", "a ", ["em", "b"], " ", ["strong", "c ", ["code", "d"]], " e", ["br"], "next line"],
        ["ul", ["li", "x"]],
        ["div", ["div", ["span", "js"], ["button", "copy"]], ["pre", ["code", "let a = '<i>'"]]],
    ]
    stream = 'data: {"a":1}\n\n: a comment\n\ndata: {"b":\r\ndata: 2}\r\n\r\ndata: [DONE]\n\n'
    for size in (1, 3, 7, len(stream)):
        pieces = [stream[i : i + size] for i in range(0, len(stream), size)]
        payloads = page.evaluate(
            """(pieces) => {
                const parser = new window.herdChat.SseParser();
                return pieces.flatMap((piece) => parser.push(piece)).concat(parser.end());
            }""",
            pieces,
        )
        assert payloads == ['{"a":1}', '{"b":\n2}', "[DONE]"], f"pieces of {size} characters"


def test_errors_show_as_lines_in_the_conversation(tab: Tab) -> None:
    page = tab.page
    page.route("**/v1/chat/completions", lambda route: route.fulfill(status=401, json=UNAUTHORIZED))
    send(page, "first try")
    sync_api.expect(page.locator(".message.error")).to_contain_text("Invalid API key")
    assert page.input_value("#input") == "first try"
    assert page.locator(".message.user, .message.assistant").count() == 0

    page.unroute("**/v1/chat/completions")
    page.route("**/v1/chat/completions", lambda route: route.abort("connectionrefused"))
    send(page, "second try")
    sync_api.expect(page.locator(".message.error").nth(1)).to_contain_text("Network error")

    page.fill("#temperature", "3")
    send(page, "third try")
    sync_api.expect(page.locator(".message.error").nth(2)).to_contain_text(
        "Temperature must be a number from 0 to 2"
    )
    assert len(tab.chats) == 2
    assert tab.dialogs == []


def test_the_page_fits_a_narrow_screen(browser: Browser, server: Server) -> None:
    narrow = open_tab(browser, server, {"width": 400, "height": 760})
    page = narrow.page
    try:
        assert page.evaluate("document.documentElement.scrollWidth") <= 400
        for control in ("#input", "#send", "#stop", "#new-chat", "#model"):
            assert page.locator(control).is_visible(), control
        page.click("#settings summary")
        page.fill("#system", "Be terse.")
        page.fill("#max-tokens", "16")
        send(page, "Hi")
        wait_idle(page)
        assert last_reply(page)
        assert page.evaluate("document.documentElement.scrollWidth") <= 400
        assert narrow.chats[0]["messages"][0] == {"role": "system", "content": "Be terse."}
    finally:
        page.context.close()


def test_a_server_with_an_api_key_asks_for_it_and_the_page_retries(browser: Browser, server: Server) -> None:
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()

    def models(route: Route) -> None:
        if route.request.headers.get("authorization") == "Bearer sk-late":
            route.continue_()
        else:
            route.fulfill(status=401, json=UNAUTHORIZED)

    try:
        page.route("**/v1/models", models)
        page.goto(server.url + "/")
        sync_api.expect(page.locator(".message.error")).to_contain_text("Invalid API key (set the API key")
        sync_api.expect(page.locator("#model")).to_have_text("unavailable")
        page.fill("#api-key", "sk-late")
        page.press("#api-key", "Tab")
        sync_api.expect(page.locator("#model")).to_have_text(server.model)
    finally:
        context.close()
