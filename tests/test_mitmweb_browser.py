"""`claude-bridge --web` in a real browser: bridged flows as mitmweb shows them, in headless Chromium.

`UPDATE_SCREENSHOT=1` makes the test rewrite docs/mitmweb.png, the README's picture of mitmweb.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from chromium import chromium
from test_tools_e2e import WEATHER

from claude_bridge.redact import REDACTED
from conftest import ROOT, free_port
from conftest import wait_for as conftest_wait_for
from fake_anthropic import TEST_TOKEN, ToolUse

SCREENSHOT = ROOT / "docs" / "mitmweb.png"
WIDTH, HEIGHT = 1400, 760
PASSWORD = "browser-test-token"
URL = "https://api.openai.com/v1/chat/completions"
ROWS = ".flow-table tbody tr.has-request"
PARIS = {"city": "Paris", "unit": "c"}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
WAIT = 20  # seconds any one thing may take to appear on the page


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with chromium(tmp_path, monkeypatch, f"--window-size={WIDTH},{HEIGHT}") as driver:
        # The page itself WIDTH x HEIGHT (--window-size counts the headless window's frame too).
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
        )
        yield driver


def wait_for(browser: Any, what: str, found: Callable[[], Any]) -> Any:
    """Poll until `found()` is truthy (element lookups that fail count as not yet); fail saying `what` was awaited."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(
        browser, WAIT, poll_frequency=0.1, ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
    )
    try:
        return wait.until(lambda _: found())
    except TimeoutException:
        page = browser.find_element("tag name", "body").text
        pytest.fail(f"mitmweb did not show {what} within {WAIT} s; the page said:\n{page}")


def open_mitmweb(browser: Any, web_port: int) -> None:
    """Open mitmweb and clear the list (the fixture's /health probes are flows too), as a user would."""
    from selenium.webdriver.common.by import By

    browser.get(f"http://127.0.0.1:{web_port}/?token={PASSWORD}")
    wait_for(
        browser, "its connection", lambda: browser.find_element(By.CSS_SELECTOR, ".connection-indicator.established")
    )
    if browser.find_elements(By.CSS_SELECTOR, ROWS):
        browser.find_element(By.XPATH, "//header//nav/a[normalize-space()='File']").click()
        # Menu labels are "&nbsp;Clear All" after an icon: normalize-space() would not match them.
        clear_all = "//header//li/a[contains(., 'Clear All')]"
        wait_for(browser, "File > Clear All", lambda: browser.find_element(By.XPATH, clear_all)).click()
        wait_for(browser, "the clear-all confirmation", lambda: browser.switch_to.alert).accept()
    # With no flows mitmweb shows no table at all, only this.
    wait_for(browser, "an empty flow list", lambda: browser.find_element(By.CSS_SELECTOR, ".capture-setup"))


def select_flow(browser: Any, url: str) -> Any:
    """Click the (only) row of `url` once its response is in, and return it."""
    from selenium.webdriver.common.by import By

    row = wait_for(
        browser,
        f"a row for {url}",
        lambda: browser.find_element(
            By.XPATH, f"//div[@class='flow-table']//tr[td[@class='col-path'][contains(., '{url}')]]"
        ),
    )
    wait_for(browser, "status 200 on the row", lambda: row.find_element(By.CSS_SELECTOR, "td.col-status").text == "200")
    row.find_element(By.CSS_SELECTOR, "td.col-path").click()
    wait_for(browser, "the flow's detail view", lambda: browser.find_element(By.CSS_SELECTOR, ".flow-detail"))
    return row


def tab(browser: Any, name: str) -> None:
    from selenium.webdriver.common.by import By

    browser.find_element(By.XPATH, f"//div[@class='flow-detail']/nav/a[normalize-space()='{name}']").click()
    wait_for(browser, f"the {name} tab", lambda: re.search(rf"/flows/[0-9a-f-]+/{name.lower()}$", browser.current_url))


def content(browser: Any, section: str, expected: str) -> tuple[str, str]:
    """The name of the view mitmweb picked for the request's or response's body, and its text once it shows
    `expected`."""
    from selenium.webdriver.common.by import By

    view = f"section.{section} .contentview"
    text = wait_for(
        browser,
        f"{expected!r} in the {section} body",
        lambda: expected in (pre := browser.find_element(By.CSS_SELECTOR, f"{view} pre").text) and pre,
    )
    return browser.find_element(By.CSS_SELECTOR, f"{view} .controls h5").text, text


def comment(browser: Any) -> str:
    from selenium.webdriver.common.by import By

    tab(browser, "Comment")
    return wait_for(
        browser,
        "the bridge's comment",
        lambda: browser.find_element(By.XPATH, "//div[@class='flow-detail']//h4[.='Comment']/following-sibling::*[1]"),
    ).text


def test_mitmweb_lists_the_bridged_flow_with_its_answer_and_comment(start_bridge, fake, browser):
    from selenium.webdriver.common.by import By

    web_port = free_port()
    bridge = start_bridge("web_open_browser=false", f"web_port={web_port}", f"web_password={PASSWORD}", web=True)
    open_mitmweb(browser, web_port)

    stream = bridge.client().chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hello browser"}], stream=True
    )
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices) == "ECHO: hello browser"

    # The flow arrives live, listed under the URL the client meant, not the bridge's own address.
    row = select_flow(browser, URL)
    assert row.find_element(By.CSS_SELECTOR, "td.col-method").text == "POST"
    assert len(browser.find_elements(By.CSS_SELECTOR, ROWS)) == 1

    # Request: the client's own request line, its body read as a conversation.
    tab(browser, "Request")
    request_line = wait_for(browser, "the request line", lambda: browser.find_element(By.CSS_SELECTOR, ".first-line"))
    assert request_line.text.split() == ["POST", URL, "HTTP/1.1"]
    view, text = content(browser, "request", "hello browser")
    assert view == "OpenAI"
    assert text.splitlines()[0] == "Chat Completions request for gpt-4o, streamed"
    assert "hello browser" in text.split("── user ")[1]

    # Comment: the bridge's one-line summary of the run, time to first token split at the CLI's start (and, as
    # the bridge's first run, the plan's limits the CLI reported).
    assert re.match(
        r"claude-bridge: claude-[\w.-]+ finished \(end_turn\) by a new CLI; .*first token \d+ ms "
        r"\(start-up \d+ \+ API \d+\)(; plan limits: allowed)?$",
        comment(browser),
    ), comment(browser)

    # Response: the synthesized stream, assembled into the answer.
    tab(browser, "Response")
    status_line = wait_for(
        browser, "the response line", lambda: browser.find_element(By.CSS_SELECTOR, ".response-line")
    )
    assert status_line.text.split()[:2] == ["HTTP/1.1", "200"]
    assert "text/event-stream" in browser.find_element(By.CSS_SELECTOR, "section.response .headers").text
    view, text = content(browser, "response", "finish reason: stop")
    assert view == "OpenAI"
    assert re.match(r"claude-bridge: claude-[\w.-]+ finished \(end_turn\), served by a new CLI\n", text), text
    assert "Chat Completions answer from gpt-4o, streamed in " in text
    answer = text.split("── answer ")[1].splitlines()[1:2]
    assert [line.strip() for line in answer] == ["ECHO: hello browser"]


def test_a_tool_call_reads_as_the_call_with_its_arguments(start_bridge, fake, browser):
    web_port = free_port()
    bridge = start_bridge("web_open_browser=false", f"web_port={web_port}", f"web_password={PASSWORD}", web=True)
    open_mitmweb(browser, web_port)
    fake.enqueue(ToolUse((("get_weather", PARIS),), text="Let me check the weather."))
    stream = bridge.client().chat.completions.create(model="gpt-4o", messages=ASK, tools=[WEATHER], stream=True)
    assert [call for chunk in stream for call in chunk.choices[0].delta.tool_calls or ()] != []

    select_flow(browser, URL)
    tab(browser, "Request")
    view, text = content(browser, "request", "tools offered: 1")
    assert view == "OpenAI"
    assert "get_weather(city*, unit): Current weather for a city" in text
    tab(browser, "Response")
    view, text = content(browser, "response", "finish reason: tool_calls")
    assert view == "OpenAI"
    assert "Let me check the weather." in text
    call = text.split("── tool call get_weather (")[1].split("\n", 1)[1].split("finish reason")[0]
    assert json.loads(call) == PARIS
    assert '"city": "Paris",' in call.splitlines()[1], "pretty-printed, one argument a line"

    if os.environ.get("UPDATE_SCREENSHOT") == "1":
        take_screenshot(browser)


def test_with_inspect_claude_the_anthropic_call_is_listed_beside_its_request_without_the_login(
    start_bridge, fake, browser
):
    from selenium.webdriver.common.by import By

    web_port = free_port()
    bridge = start_bridge(
        "bridge_inspect_claude=true",
        "web_open_browser=false",
        f"web_port={web_port}",
        f"web_password={PASSWORD}",
        web=True,
    )
    open_mitmweb(browser, web_port)
    ask = [{"role": "user", "content": "hello Claude side"}]
    assert bridge.client().chat.completions.create(model="gpt-4o", messages=ask).choices[0].message.content

    select_flow(browser, URL)
    chat, chat_comment = flow_id(browser), comment(browser)
    select_flow(browser, f"{fake.url}/v1/messages")
    call, call_comment = flow_id(browser), comment(browser)
    assert len(browser.find_elements(By.CSS_SELECTOR, ROWS)) == 2
    assert f"| run {chat[:8]}: Claude API flows {call[:8]}" in chat_comment, chat_comment
    assert f"({call[:8]}) of run {chat[:8]}: POST /v1/chat/completions" in call_comment, call_comment

    # The Anthropic call's request, read by the bridge's view; its login shown as the placeholder, nowhere else.
    tab(browser, "Request")
    view, text = content(browser, "request", "hello Claude side")
    assert view == "Anthropic Messages"
    assert text.splitlines()[0].startswith("Anthropic Messages request for ")
    headers = browser.find_element(By.CSS_SELECTOR, "section.request .headers").text
    assert re.search(rf"(?im)^authorization:\s*{re.escape(REDACTED)}$", headers), headers
    assert TEST_TOKEN not in browser.page_source


def flow_id(browser: Any) -> str:
    """The selected flow's id, from the address mitmweb shows it at."""
    return re.search(r"/flows/([0-9a-f-]+)/", browser.current_url)[1]  # type: ignore[index]


def test_a_saved_flow_file_opens_in_mitmweb_with_the_same_views(start_bridge, fake, browser, tmp_path):
    saved = tmp_path / "flows.mitm"
    bridge = start_bridge(f"save_stream_file={saved}")
    fake.enqueue(ToolUse((("get_weather", PARIS),), text="Let me check the weather."))
    bridge.client().chat.completions.create(model="gpt-4o", messages=ASK, tools=[WEATHER])
    bridge.stop()

    web_port = free_port()
    argv = [str(Path(sys.executable).parent / "mitmweb"), "-s", str(ROOT / "addon" / "bridge.py")]
    argv += ["--rfile", str(saved), "--listen-host", "127.0.0.1", "--listen-port", str(free_port())]
    argv += ["--set", f"confdir={tmp_path / 'certs'}", "--set", "web_open_browser=false"]
    argv += ["--set", f"web_port={web_port}", "--set", f"web_password={PASSWORD}"]
    env = {**os.environ, "HOME": str(tmp_path)}
    with (tmp_path / "mitmweb.log").open("wb") as log:
        mitmweb = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        conftest_wait_for(lambda: _listening(web_port) or mitmweb.poll() is not None, "mitmweb to listen")
        assert mitmweb.poll() is None, (tmp_path / "mitmweb.log").read_text()
        browser.get(f"http://127.0.0.1:{web_port}/?token={PASSWORD}")
        select_flow(browser, URL)
        tab(browser, "Response")
        view, text = content(browser, "response", "finish reason: tool_calls")
        assert view == "OpenAI"
        assert "Chat Completions answer from gpt-4o, not streamed" in text
        assert "served by a new CLI" in text.splitlines()[0], "the run's record is saved with the flow"
        assert json.loads(text.split("── tool call get_weather (")[1].split("\n", 1)[1].split("finish")[0]) == PARIS
    finally:
        mitmweb.terminate()
        mitmweb.wait(10)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def take_screenshot(browser: Any) -> None:
    """docs/mitmweb.png: the list and the selected flow's response, read by the bridge's view."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    # Give the response the room: move the list/detail splitter left, as far as the list still shows the URL.
    handle = browser.find_element(By.CSS_SELECTOR, ".splitter-x > div")
    ActionChains(browser).drag_and_drop_by_offset(handle, 650 - handle.location["x"], 0).perform()
    SCREENSHOT.parent.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT))
