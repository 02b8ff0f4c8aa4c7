"""The compatibility probe: the real pinned CLI against the bridge's own stand-in API passes every capability; the
suite's stand-in CLI with one capability broken gets exactly that one broken, with a useful detail and the right
fallback or refusal; verdicts are remembered per version; nothing is left running or on disk."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from claude_bridge import probe
from claude_bridge.claude.invocation import ClaudeSettings
from claude_bridge.claude.standin import StandIn
from claude_bridge.probe import Capability, Compatibility, Verdict
from conftest import _children

ALL_OK = {capability: Verdict(ok=True, detail="fine") for capability in Capability}


@pytest.fixture
def own_temp(tmp_path, monkeypatch) -> Path:
    """The temp dir the probe's run directories and HOME go to, so a test sees every one of them."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    return temp


@pytest.fixture
def stand_in_cli(tmp_path_factory, claude_bin, monkeypatch):
    """tests/stand_in_claude.py as a CLI named `claude`, relaying to the pinned CLI with the fault of a mode."""
    claude = tmp_path_factory.mktemp("stand-in") / "claude"
    claude.write_text(f"#!{sys.executable}\n" + (Path(__file__).parent / "stand_in_claude.py").read_text())
    claude.chmod(0o755)
    monkeypatch.setenv("STAND_IN_REAL_CLAUDE", claude_bin)

    def with_mode(mode: str) -> str:
        monkeypatch.setenv("STAND_IN_CLAUDE_MODE", mode)
        return str(claude)

    return with_mode


async def checked(claude: str, temp: Path) -> Compatibility:
    """The probe's verdicts on `claude`, once it has left no process and no directory behind."""
    before = set(_children(os.getpid()))  # the session's bridges, started by other tests, stay
    started = time.monotonic()
    compatibility = await probe.probe(ClaudeSettings(claude_bin=claude))
    print(f"probe of {claude}: {time.monotonic() - started:.1f} s; {compatibility.summary()}")
    for capability, verdict in compatibility.verdicts.items():
        print(f"  {capability}: {verdict.detail}")
    assert set(_children(os.getpid())) - before == set(), "no CLI process left"
    assert list(temp.iterdir()) == [], "no run directory or HOME left"
    return compatibility


async def test_the_pinned_cli_passes_every_capability(claude_bin, claude_version, own_temp):
    compatibility = await checked(claude_bin, own_temp)
    assert compatibility.version == claude_version
    assert compatibility.broken == [], compatibility.verdicts
    assert "text deltas" in compatibility.verdicts[Capability.PLAIN].detail
    assert "held tool call was answered" in compatibility.verdicts[Capability.LIVE].detail
    assert compatibility.fallbacks() == {}
    assert compatibility.refusal("request") is None and compatibility.refusal("tools") is None


async def test_the_probe_never_hands_the_users_login_or_api_to_the_cli(claude_bin, own_temp, monkeypatch):
    # Were any of these passed on, the CLI would bill them or call out; the stand-in would then hear nothing.
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-api03-users-own")
    monkeypatch.setenv("CLAUDE_CODE_OAUTH_TOKEN", "sk-ant-oat01-users-own")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")  # loopback, nothing listening: never reached
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    settings = ClaudeSettings(claude_bin=claude_bin, allow_api_key=True)
    compatibility = await probe.probe(settings)
    assert compatibility.verdicts[Capability.PLAIN].ok, compatibility.verdicts[Capability.PLAIN]
    environment = dict(probe._settings(settings, "http://127.0.0.1:1", own_temp / "home").environment or ())
    assert "ANTHROPIC_API_KEY" not in environment and "HTTPS_PROXY" not in environment
    assert environment["CLAUDE_CODE_OAUTH_TOKEN"] == probe.DUMMY_TOKEN
    assert environment["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:1"


@pytest.mark.parametrize(
    ("mode", "broken", "detail", "fallbacks"),
    [
        ("no-resume", [Capability.RESUME], "unknown option '--resume'", {"bridge_history": "flatten"}),
        ("no-mcp", [Capability.TOOLS], "could not list the request's tools", {}),
        ("no-live", [Capability.LIVE], "a second user turn on stdin", {"claude_live_sessions": 0}),
        ("garbage-events", list(Capability), "printed a line that is not JSON: b'<stand-in garbage>",
         {"bridge_history": "flatten", "claude_live_sessions": 0}),
    ],
)  # fmt: skip
async def test_a_cli_with_one_capability_broken_gets_that_verdict_and_its_fallback(
    stand_in_cli, own_temp, mode, broken, detail, fallbacks
):
    compatibility = await checked(stand_in_cli(mode), own_temp)
    assert compatibility.broken == broken, compatibility.verdicts
    assert detail in compatibility.verdicts[broken[0]].detail
    assert compatibility.fallbacks() == fallbacks
    if Capability.PLAIN in broken:
        assert all(compatibility.verdicts[c].detail.startswith("not checked") for c in broken[1:])
        refusal = compatibility.refusal("request")
        assert refusal is not None and "Claude Code CLI 2.1.331 to answer a plain turn" in refusal
        assert f"npm install -g @anthropic-ai/claude-code@{probe.TESTED[-1]}" in refusal and detail in refusal
    elif Capability.TOOLS in broken:
        assert compatibility.refusal("request") is None
        refusal = compatibility.refusal("tools")
        assert refusal is not None and "Claude Code CLI 2.1.331 to call the client's tools" in refusal
        assert (
            "Requests without tools still work" in refusal
            and f"Versions known to work: {', '.join(probe.TESTED)}" in refusal
        )
    else:
        assert compatibility.refusal("request") is None and compatibility.refusal("tools") is None


def test_verdicts_are_remembered_per_version(tmp_path):
    confdir = tmp_path / "confdir"
    checked = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    good = Compatibility(version="2.1.331", checked=checked, verdicts=ALL_OK)
    worse = Compatibility(
        version="2.1.400", checked=checked, verdicts={**ALL_OK, Capability.RESUME: Verdict(ok=False, detail="gone")}
    )
    assert probe.load(confdir, "2.1.331") is None
    probe.remember(confdir, good)
    probe.remember(confdir, worse)
    assert probe.load(confdir, "2.1.331") == good
    assert probe.load(confdir, "2.1.400") == worse
    assert probe.load(confdir, "2.1.401") is None
    stored = json.loads((confdir / probe.FILE).read_text())
    assert set(stored) == {"2.1.331", "2.1.400"}
    assert stored["2.1.400"]["verdicts"]["resume"] == {"ok": False, "detail": "gone"}
    assert stored["2.1.400"]["checked"].startswith("2026-11-27T12:00:00")
    assert [path.name for path in confdir.iterdir()] == [probe.FILE], "no temporary file left"


def test_a_version_checked_for_fewer_capabilities_is_checked_again(tmp_path):
    older = {"2.1.331": {"checked": "2026-11-27T12:00:00Z", "verdicts": {"plain": {"ok": True, "detail": "fine"}}}}
    (tmp_path / probe.FILE).write_text(json.dumps(older))
    assert probe.load(tmp_path, "2.1.331") is None


def test_an_unreadable_verdict_file_means_unchecked_and_is_replaced(tmp_path, caplog):
    (tmp_path / probe.FILE).write_text("{not json")
    with caplog.at_level(logging.WARNING):
        assert probe.load(tmp_path, "2.1.331") is None
    assert "will be checked again" in caplog.text
    compatibility = Compatibility(version="2.1.331", checked=datetime.now(UTC), verdicts=ALL_OK)
    probe.remember(tmp_path, compatibility)
    assert probe.load(tmp_path, "2.1.331") == compatibility


def test_an_unknown_version_is_not_remembered(tmp_path):
    probe.remember(tmp_path, Compatibility(version=None, checked=datetime.now(UTC), verdicts=ALL_OK))
    assert not (tmp_path / probe.FILE).exists()


def test_a_missing_cli_breaks_plain_and_says_where_it_looked(tmp_path, own_temp):
    missing = str(tmp_path / "nowhere" / "claude")
    compatibility = asyncio.run(probe.probe(ClaudeSettings(claude_bin=missing)))
    assert compatibility.version is None
    assert compatibility.broken == list(Capability)
    assert missing in compatibility.verdicts[Capability.PLAIN].detail
    refusal = compatibility.refusal("request")
    assert refusal is not None and "(version unknown)" in refusal


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["content-type"], response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["content-type"], e.read()


async def test_the_stand_in_api_streams_answers_json_and_keeps_no_credentials(caplog):
    secret = "sk-ant-oat01-a-users-real-token"
    headers = {"authorization": f"Bearer {secret}", "x-api-key": secret, "content-type": "application/json"}
    asked = {"model": "m", "messages": [{"role": "user", "content": "Hi w-one"}]}
    with caplog.at_level(logging.DEBUG):
        async with StandIn() as api:
            url = api.url + "/v1/messages?beta=true"
            whole = await asyncio.to_thread(post, url, json.dumps(asked).encode(), headers)
            streamed = await asyncio.to_thread(post, url, json.dumps({**asked, "stream": True}).encode(), headers)
            missing = await asyncio.to_thread(post, api.url + "/v1/other", b"{}", headers)
            not_json = await asyncio.to_thread(post, url, b"[1]", headers)
            heard = list(api.heard)
    status, content_type, body = whole
    assert (status, content_type) == (200, "application/json")
    message = json.loads(body)
    assert message["content"] == [{"type": "text", "text": "heard user:w-one"}]
    assert message["usage"]["output_tokens"] == 4  # 16 characters, as 4-character deltas would stream them
    status, content_type, body = streamed
    assert (status, content_type) == (200, "text/event-stream")
    data = [json.loads(line[6:]) for line in body.decode().splitlines() if line.startswith("data: ")]
    assert [event["type"] for event in data[:2]] == ["message_start", "content_block_start"]
    assert [event["type"] for event in data[-2:]] == ["message_delta", "message_stop"]
    assert "".join(e["delta"]["text"] for e in data if e["type"] == "content_block_delta") == "heard user:w-one"
    assert (missing[0], json.loads(missing[2])["error"]["type"]) == (404, "not_found_error")
    assert (not_json[0], json.loads(not_json[2])["error"]["type"]) == (400, "invalid_request_error")
    assert [(h.streamed, h.said) for h in heard] == [(False, "heard user:w-one"), (True, "heard user:w-one")]
    assert secret not in repr(heard) and secret not in caplog.text
