"""The compatibility check at start, end to end: a CLI version new to the bridge is probed once and remembered;
a broken capability falls back or refuses the requests that need it, with a 503 that says which CLI works."""

from __future__ import annotations

import json

import openai
import pytest
from test_probe import stand_in_cli  # noqa: F401  (a fixture)

from fake_anthropic import conversation

ASK = [{"role": "user", "content": "hi"}]
WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}


def test_a_new_cli_version_is_probed_once_and_remembered(start_bridge, fake, tmp_path, claude_version):
    confdir = tmp_path / "certs"
    bridge = start_bridge("claude_probe=true", confdir=confdir)
    bridge.log_once(lambda line: f"Claude Code CLI {claude_version}: plain ok, tools ok, resume ok, live ok" in line)
    assert f"Checking Claude Code CLI {claude_version}" in bridge.log.read_text()
    remembered = json.loads((confdir / "claude-compat.json").read_text())
    assert set(remembered[claude_version]["verdicts"]) == {"plain", "tools", "resume", "live"}
    assert not fake.requests, "the probe never reaches the API the bridge's runs use"
    assert bridge.client().chat.completions.create(model="gpt-4o", messages=ASK).choices[0].message.content
    bridge.stop()
    again = start_bridge("claude_probe=true", confdir=confdir)
    again.log_once(lambda line: f"Claude Code CLI {claude_version}: plain ok" in line)
    assert "Checking Claude Code CLI" not in again.log.read_text(), "a checked version is not probed again"


def test_a_cli_that_cannot_resume_falls_back_to_flattened_history(start_bridge, fake, stand_in_cli):  # noqa: F811
    bridge = start_bridge("claude_probe=true", claude=stand_in_cli("no-resume"))
    bridge.log_once(lambda line: "Falling back to bridge_history=flatten" in line)
    history = [*ASK, {"role": "assistant", "content": "hello"}, {"role": "user", "content": "and now?"}]
    answer = bridge.client().chat.completions.create(model="gpt-4o", messages=history)
    assert answer.choices[0].message.content
    turns = [turn for turn in conversation(fake.requests[-1].body) if turn[0] in ("user", "assistant")]
    assert [role for role, _ in turns] == ["user"], "no resumed history"
    assert "hello" in json.dumps(turns), "earlier turns as text in the new one"


def test_a_cli_whose_tools_are_broken_refuses_tool_requests_only(start_bridge, fake, stand_in_cli):  # noqa: F811
    bridge = start_bridge("claude_probe=true", claude=stand_in_cli("no-mcp"))
    bridge.log_once(lambda line: "tools BROKEN" in line)
    client = bridge.client()
    with pytest.raises(openai.InternalServerError) as refused:
        client.chat.completions.create(model="gpt-4o", messages=ASK, tools=[WEATHER])
    error = refused.value
    assert error.status_code == 503 and error.code == "claude_cli_incompatible"
    assert "2.1.331" in error.message and "npm install -g @anthropic-ai/claude-code@" in error.message
    assert not fake.requests, "refused before any run"
    assert client.chat.completions.create(model="gpt-4o", messages=ASK).choices[0].message.content
