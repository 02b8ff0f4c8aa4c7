"""Which web pages and Host names the bridge lets in (pure functions; the browser itself is in test_browser_safety)."""

from __future__ import annotations

import socket

import pytest

from claude_bridge import origins


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://localhost:5173", True),
        ("http://127.0.0.1", True),
        ("https://[::1]:8443", True),
        ("app://obsidian.md", True),
        ("vscode-webview://1234abcd", True),
        ("file://", True),
        ("null", False),  # sandboxed frames and data: URLs: any page
        ("https://evil.example", False),
        ("http://localhost.evil.example", False),
        ("http://127.0.0.1.nip.io:3000", False),
        ("http://localhost:80@evil.example", False),
        ("http://localhost:99999", False),
        ("http://LOCALHOST:3000", True),
        ("", False),
    ],
)
def test_pages_from_this_machine_and_desktop_apps_are_allowed_by_default(origin, allowed):
    assert origins.origin_allowed(origin, origins.DEFAULT_ORIGINS) is allowed


def test_an_origin_the_user_allows_is_allowed():
    assert origins.origin_allowed("https://chat.example.com", ["https://chat.example.com"])
    assert not origins.origin_allowed("https://chat.example.com.evil", ["https://chat.example.com"])


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("localhost:3456", True),
        ("127.0.0.1:3456", True),
        ("[::1]:3456", True),
        ("app.localhost", True),
        (socket.gethostname(), True),
        ("rebind.example:3456", False),
        ("127.0.0.1.nip.io:3456", False),
        ("mybox.lan", True),  # allowed by the option below
        ("bad host", False),
    ],
)
def test_a_host_header_must_name_this_machine(host, allowed):
    assert origins.host_allowed(host, ["mybox.lan"]) is allowed


@pytest.mark.parametrize(
    ("content_type", "json"),
    [("application/json", True), ("Application/JSON; charset=utf-8", True), ("text/plain", False), (None, False)],
)
def test_only_json_bodies_count_as_json(content_type, json):
    assert origins.is_json(content_type) is json
