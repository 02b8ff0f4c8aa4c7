"""Codex CLI, unmodified, finishing a task that needs a tool call through the bridge (`codex exec`).

Codex talks to the bridge as a custom Responses provider. Every other address is refused: its proxy
variables point at a closed loopback port, with only loopback exempt, and its analytics are off."""

from __future__ import annotations

import os
import subprocess

import pytest

from conftest import ROOT, free_port
from fake_anthropic import Reply, ToolUse, conversation

CODEX = ROOT / "node_modules" / ".bin" / "codex"


@pytest.fixture
def codex_home(tmp_path, bridge):
    if not CODEX.exists():
        pytest.fail(f"The pinned Codex CLI is missing at {CODEX}: run `npm ci` (scripts/test does).")
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(
        f'''model = "gpt-5.5"
model_provider = "bridge"

[model_providers.bridge]
name = "claude-bridge"
base_url = "{bridge.url}/v1"
wire_api = "responses"
env_key = "BRIDGE_KEY"
request_max_retries = 0
stream_max_retries = 0
'''
    )
    return home


def run_codex(home, workdir, prompt: str) -> subprocess.CompletedProcess[str]:
    refused = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY") and not k.startswith("OPENAI")}
    env |= {"CODEX_HOME": str(home), "BRIDGE_KEY": "sk-any", "HTTPS_PROXY": refused, "HTTP_PROXY": refused,
            "ALL_PROXY": refused, "NO_PROXY": "127.0.0.1,localhost"}  # fmt: skip
    argv = [str(CODEX), "exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox",
            "-c", "analytics.enabled=false", prompt]  # fmt: skip
    return subprocess.run(
        argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120
    )


def test_codex_exec_finishes_a_tool_task(codex_home, tmp_path, fake, bridge):
    workdir = tmp_path / "work"
    workdir.mkdir()
    fake.enqueue(ToolUse((("exec_command", {"cmd": "echo hi-from-codex > out.txt"}),)), Reply(("Wrote out.txt.",)))
    done = run_codex(codex_home, workdir, "Create out.txt containing hi-from-codex.")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Wrote out.txt." in done.stdout
    assert (workdir / "out.txt").read_text().strip() == "hi-from-codex", "Codex ran the call the bridge returned"
    first, second = (request.body for request in fake.requests)
    assert "mcp__app__exec_command" in [tool["name"] for tool in first["tools"]]
    results = [b for _, blocks in conversation(second) for b in blocks if b["type"] == "tool_result"]
    assert len(results) == 1 and "exited with code 0" in str(results[0]["content"])
    assert bridge.claude_children() == []
