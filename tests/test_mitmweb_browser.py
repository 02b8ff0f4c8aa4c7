"""`claude-bridge --web` in a real browser: a bridged flow as mitmweb shows it, in Debian's headless Chromium.

`UPDATE_SCREENSHOT=1` makes the test rewrite docs/mitmweb.png, the README's picture of mitmweb.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from chromium import chromium

from conftest import ROOT, free_port

SCREENSHOT = ROOT / "docs" / "mitmweb.png"
WIDTH, HEIGHT = 1400, 760
PASSWORD = "browser-test-token"
URL = "https://api.openai.com/v1/chat/completions"
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


def test_mitmweb_lists_the_bridged_flow_with_its_response_and_comment(start_bridge, fake, browser):
    from selenium.webdriver.common.by import By

    web_port = free_port()
    bridge = start_bridge("web_open_browser=false", f"web_port={web_port}", f"web_password={PASSWORD}", web=True)

    # Open mitmweb first and clear the list (the fixture's /health probes are flows too), as a user would.
    browser.get(f"http://127.0.0.1:{web_port}/?token={PASSWORD}")
    wait_for(
        browser, "its connection", lambda: browser.find_element(By.CSS_SELECTOR, ".connection-indicator.established")
    )
    rows = ".flow-table tbody tr.has-request"
    if browser.find_elements(By.CSS_SELECTOR, rows):
        browser.find_element(By.XPATH, "//header//nav/a[normalize-space()='File']").click()
        # Menu labels are "&nbsp;Clear All" after an icon: normalize-space() would not match them.
        clear_all = "//header//li/a[contains(., 'Clear All')]"
        wait_for(browser, "File > Clear All", lambda: browser.find_element(By.XPATH, clear_all)).click()
        wait_for(browser, "the clear-all confirmation", lambda: browser.switch_to.alert).accept()
    # With no flows mitmweb shows no table at all, only this.
    wait_for(browser, "an empty flow list", lambda: browser.find_element(By.CSS_SELECTOR, ".capture-setup"))

    stream = bridge.client().chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hello browser"}], stream=True
    )
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices) == "ECHO: hello browser"

    # The flow arrives live, listed under the URL the client meant, not the bridge's own address.
    row = wait_for(
        browser,
        f"a row for {URL}",
        lambda: browser.find_element(
            By.XPATH, f"//div[@class='flow-table']//tr[td[@class='col-path'][contains(., '{URL}')]]"
        ),
    )
    assert row.find_element(By.CSS_SELECTOR, "td.col-method").text == "POST"
    wait_for(browser, "status 200 on the row", lambda: row.find_element(By.CSS_SELECTOR, "td.col-status").text == "200")
    assert len(browser.find_elements(By.CSS_SELECTOR, rows)) == 1
    row.find_element(By.CSS_SELECTOR, "td.col-path").click()

    def tab(name: str) -> None:
        browser.find_element(By.XPATH, f"//div[@class='flow-detail']/nav/a[normalize-space()='{name}']").click()
        wait_for(
            browser, f"the {name} tab", lambda: re.search(rf"/flows/[0-9a-f-]+/{name.lower()}$", browser.current_url)
        )

    # Request: the client's own request line and body.
    wait_for(browser, "the flow's detail view", lambda: browser.find_element(By.CSS_SELECTOR, ".flow-detail"))
    tab("Request")
    request_line = wait_for(browser, "the request line", lambda: browser.find_element(By.CSS_SELECTOR, ".first-line"))
    assert request_line.text.split() == ["POST", URL, "HTTP/1.1"]
    request_body = wait_for(
        browser, "the request body", lambda: browser.find_element(By.CSS_SELECTOR, ".contentview pre")
    )
    assert "hello browser" in request_body.text

    # Comment: the bridge's one-line summary of the run.
    tab("Comment")
    comment = wait_for(
        browser,
        "the bridge's comment",
        lambda: browser.find_element(By.XPATH, "//div[@class='flow-detail']//h4[.='Comment']/following-sibling::*[1]"),
    ).text
    assert re.match(r"claude-bridge: claude-[\w.-]+ finished \(end_turn\)", comment), comment

    # Response: the synthesized SSE stream, chunk by chunk, ending in [DONE].
    tab("Response")
    status_line = wait_for(
        browser, "the response line", lambda: browser.find_element(By.CSS_SELECTOR, ".response-line")
    )
    assert status_line.text.split()[:2] == ["HTTP/1.1", "200"]
    headers = browser.find_element(By.CSS_SELECTOR, "section.response .headers").text
    assert "text/event-stream" in headers
    body = wait_for(
        browser,
        "the response body ending in data: [DONE]",
        lambda: (
            (pre := browser.find_element(By.CSS_SELECTOR, "section.response .contentview pre"))
            .text.rstrip()
            .endswith("data: [DONE]")
            and pre.text
        ),
    )
    # One <div> a line, blank lines as <div>&nbsp;</div>: WebDriver's text puts that space before the next line.
    lines = [line.strip() for line in body.splitlines()]
    events = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert {chunk["model"] for chunk in chunks} == {"gpt-4o"}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "ECHO"}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == "ECHO: hello browser"

    if os.environ.get("UPDATE_SCREENSHOT") == "1":
        take_screenshot(browser)


def take_screenshot(browser: Any) -> None:
    """docs/mitmweb.png: the list and the selected flow's response, scrolled to where the text deltas are."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    # Give the response the room: move the list/detail splitter left, as far as the list still shows the URL.
    handle = browser.find_element(By.CSS_SELECTOR, ".splitter-x > div")
    ActionChains(browser).drag_and_drop_by_offset(handle, 650 - handle.location["x"], 0).perform()
    # SSE lines are far wider than any window: scroll the body sideways so the chunks' "delta" field shows.
    scrolled = browser.execute_script(
        """
        const pre = document.querySelector("section.response .contentview pre");
        const line = pre.querySelector("div").firstChild;
        const range = document.createRange();
        const at = line.textContent.indexOf('"model"');
        range.setStart(line, at);
        range.setEnd(line, at + 1);
        const box = pre.scrollWidth > pre.clientWidth ? pre : pre.parentElement;
        box.scrollLeft += range.getBoundingClientRect().left - box.getBoundingClientRect().left - 8;
        return box.scrollLeft;
        """
    )
    assert scrolled > 0
    SCREENSHOT.parent.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT))
