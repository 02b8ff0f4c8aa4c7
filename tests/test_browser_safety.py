"""Web pages in a real browser (headless Chromium): a foreign page cannot spend the subscription, by fetch,
by a posted form or by DNS rebinding; a page from an allowed origin streams an answer.

Chromium resolves evil.example and rebind.example to 127.0.0.1 (--host-resolver-rules), as an attacker's DNS would.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from chromium import chromium

from conftest import free_port

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "from a page"}]}
# Runs in the page; resolves with what the page could see of each request.
FETCH_ALL = """
const [requests, done] = [arguments[0], arguments[arguments.length - 1]];
Promise.all(requests.map(async ([url, init]) => {
  try {
    const response = await fetch(url, init);
    return {status: response.status, type: response.type, body: await response.text()};
  } catch (e) { return {error: String(e)}; }
})).then(done);
"""


class Pages:
    """A web server for the test's pages, on 127.0.0.1 under any name Chromium maps there."""

    def __init__(self, port: int, pages: dict[str, str]) -> None:
        connections: list[socket.socket] = []
        self._connections = connections

        class Handler(BaseHTTPRequestHandler):
            def setup(self) -> None:
                super().setup()
                connections.append(self.connection)

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                page = pages.get(self.path, "<html><body>page</body></html>").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(page)

        self.port = port
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        """Stop serving, on idle connections too: Chromium opens spares ahead of need, and would reuse one."""
        self._httpd.shutdown()
        self._httpd.server_close()
        for connection in self._connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    rules = "--host-resolver-rules=MAP evil.example 127.0.0.1, MAP rebind.example 127.0.0.1"
    with chromium(tmp_path, monkeypatch, rules) as driver:
        driver.set_script_timeout(60)
        yield driver


def in_page(browser: Any, *requests: tuple[str, dict]) -> list[dict]:
    answers: list[dict] = browser.execute_async_script(FETCH_ALL, [list(request) for request in requests])
    return answers


def assert_refused(bridge: Any, since: int, count: int) -> None:
    """Exactly `count` requests refused with 403 in the log after byte `since`, once their lines are written (when
    each response has ended, which may be after the page saw it)."""
    refused = "-> 403: refused with 403"
    log = bridge.log_once(lambda log: log.count(refused) >= count, f"{count} refusals", since=since)
    assert log.count(refused) == count, log


def test_a_foreign_page_cannot_make_the_cli_run_by_fetch(bridge, fake, browser):
    pages = Pages(free_port(), {})
    try:
        browser.get(f"http://evil.example:{pages.port}/")
        endpoint = f"http://127.0.0.1:{bridge.port}/v1/chat/completions"
        simple = {"method": "POST", "mode": "no-cors", "headers": {"Content-Type": "text/plain"}}
        as_json = {"method": "POST", "headers": {"Content-Type": "application/json", "Authorization": "Bearer x"}}
        since = bridge.log.stat().st_size
        no_cors, preflighted, health = in_page(
            browser,
            (endpoint, {**simple, "body": json.dumps(CHAT)}),
            (endpoint, {**as_json, "body": json.dumps(CHAT)}),
            (f"http://127.0.0.1:{bridge.port}/health", {}),
        )
    finally:
        pages.close()
    assert no_cors == {"status": 0, "type": "opaque", "body": ""}  # sent, and nothing readable came back
    assert "Failed to fetch" in preflighted["error"]  # the preflight was refused
    assert "Failed to fetch" in health["error"]  # no CORS header: the page cannot read it
    assert_refused(bridge, since, 3)
    assert fake.requests == []


def test_a_foreign_page_cannot_make_the_cli_run_with_a_posted_form(bridge, fake, browser):
    # A text/plain form can carry a JSON body: name and value joined by "=".
    name, value = json.dumps(CHAT)[:-1] + ', "pad": "', '"}'
    action = f"http://127.0.0.1:{bridge.port}/v1/chat/completions"
    form = f"""<form id="f" method="POST" enctype="text/plain" action="{action}">
      <input type="hidden" name='{name}' value='{value}'></form>
      <script>document.getElementById("f").submit()</script>"""
    pages = Pages(free_port(), {"/form": form})
    try:
        since = bridge.log.stat().st_size
        browser.get(f"http://evil.example:{pages.port}/form")
        answer = browser.find_element("tag name", "body").text  # the browser shows the bridge's answer
    finally:
        pages.close()
    assert json.loads(answer)["error"]["code"] == "origin_not_allowed"
    assert_refused(bridge, since, 1)
    assert fake.requests == []


def test_a_rebinding_page_reads_no_answer(start_bridge, fake, browser):
    """The page is served as rebind.example:PORT; then that name's PORT is the bridge (same origin, to the page)."""
    port = free_port()
    pages = Pages(port, {})
    browser.get(f"http://rebind.example:{port}/")
    pages.close()
    start_bridge(port=port)
    post = {"method": "POST", "headers": {"Content-Type": "application/json"}, "body": json.dumps(CHAT)}
    answers = in_page(browser, ("/health", {}), ("/v1/models", {}), ("/v1/chat/completions", post))
    for answer in answers:
        assert answer["status"] == 403, answer
        body = json.loads(answer["body"])
        assert list(body) == ["error"]  # no CLI path, no model list, no answer: only why not
        assert body["error"]["code"] in ("host_not_allowed", "origin_not_allowed")
    assert fake.requests == []


def test_a_page_from_an_allowed_origin_streams_an_answer(bridge, fake, browser):
    pages = Pages(free_port(), {})
    try:
        browser.get(f"http://localhost:{pages.port}/")  # a loopback page: allowed by default
        streamed = {
            "method": "POST",
            "headers": {"Content-Type": "application/json", "Authorization": "Bearer x"},  # preflighted
            "body": json.dumps({**CHAT, "stream": True}),
        }
        (answer,) = in_page(browser, (f"http://127.0.0.1:{bridge.port}/v1/chat/completions", streamed))
    finally:
        pages.close()
    assert answer["status"] == 200, answer
    chunks = [json.loads(line[6:]) for line in answer["body"].splitlines() if line.startswith("data: {")]
    assert "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks if chunk["choices"]) == (
        "ECHO: from a page"
    )
    assert len(fake.requests) == 1
