"""The CLI can do nothing but answer: whatever tools the model asks for, none runs and no file is touched.

The fake API plays a model that asks for Bash, Read, Write and an MCP server's tool (none of them offered),
with paths outside the run directory and a secret to leak. Were the CLI run with its tools on, Bash and Write
would create files under HOME and Read would carry the secret to the API in a tool result.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
from pydantic import BaseModel
from test_tools_e2e import ASK, WEATHER

from fake_anthropic import Recorded, ToolUse, conversation


@pytest.fixture(scope="module")
def sandbox_bridge(start_bridge):
    return start_bridge()


class Home:
    """The bridge's HOME, with a secret in it, and the files the model's calls would make there."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.secret = f"SECRET-{uuid.uuid4().hex}"
        self.secret_file = path / "secret.txt"
        self.secret_file.write_text(self.secret)
        self.marker = path / "bash-ran"
        self.leak = path / "bash-leak.txt"
        self.written = path / "written.txt"
        self.before = self.snapshot()

    def calls(self) -> tuple[tuple[str, dict[str, str]], ...]:
        return (
            ("Bash", {"command": f"touch {self.marker}; cat {self.secret_file} > {self.leak}"}),
            ("Read", {"file_path": str(self.secret_file)}),
            ("Write", {"file_path": str(self.written), "content": "written by the model"}),
            ("mcp__filesystem__read_file", {"path": str(self.secret_file)}),
        )

    def snapshot(self) -> dict[str, tuple[int, int]]:
        """Every file under HOME but the CLI's own state and the bridge's log, with its size and mtime."""
        return {
            str(path.relative_to(self.path)): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in self.path.rglob("*")
            if path.is_file() and not self._expected(path.relative_to(self.path))
        }

    @staticmethod
    def _expected(relative: Path) -> bool:
        """The CLI's settings and caches (under HOME and its temporary directory), and the bridge's log and spend
        ledger (CONFDIR/claude-bridge.sqlite and its journal, written as requests end)."""
        cli_temp = {("tmp", "cc-socks"), ("tmp", f"claude-{os.getuid()}")}
        ledger = relative.parts[0] == "certs" and relative.name.startswith("claude-bridge.sqlite")
        return (
            relative.parts[0] in {".claude", ".claude.json", "bridge.log"} or relative.parts[:2] in cli_temp or ledger
        )


@pytest.fixture
def home(sandbox_bridge):
    home = Home(sandbox_bridge.tmpdir.parent)
    yield home
    home.secret_file.unlink()


def blocks(request: Recorded, kind: str) -> list[dict]:
    """The request's content blocks of this type, in order."""
    return [block for _role, content in conversation(request.body) for block in content if block["type"] == kind]


def assert_nothing_ran(bridge, fake, home: Home) -> None:
    """No file made or changed under HOME, no secret in any request the CLI made, each tool result an error."""
    assert not home.marker.exists() and not home.leak.exists() and not home.written.exists()
    assert home.snapshot() == home.before, "nothing under HOME changed but the CLI's own state"
    assert home.secret not in json.dumps([request.body for request in fake.requests])
    results = [block for request in fake.requests for block in blocks(request, "tool_result")]
    assert all(result["is_error"] for result in results), results
    bridge.wait_idle()


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_tools_the_model_was_not_given_run_not_and_the_answer_is_its_text(sandbox_bridge, fake, home, stream):
    fake.enqueue(ToolUse(home.calls(), text="Let me look around."))
    client = sandbox_bridge.client()
    if stream:
        chunks = list(client.chat.completions.create(model="sonnet", messages=ASK, stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices][-1]
        assert not any(c.choices[0].delta.tool_calls for c in chunks if c.choices)
    else:
        choice = client.chat.completions.create(model="sonnet", messages=ASK).choices[0]
        text, finish = choice.message.content, choice.finish_reason
        assert choice.message.tool_calls is None
    assert (text, finish) == ("Let me look around.", "stop")
    assert_nothing_ran(sandbox_bridge, fake, home)


def test_among_the_models_calls_only_the_clients_own_tool_comes_back(sandbox_bridge, fake, home):
    fake.enqueue(ToolUse((*home.calls(), ("get_weather", {"city": "Paris"}))))
    completion = sandbox_bridge.client().chat.completions.create(model="sonnet", messages=ASK, tools=[WEATHER])
    (call,) = completion.choices[0].message.tool_calls
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})
    assert completion.choices[0].finish_reason == "tool_calls"
    assert_nothing_ran(sandbox_bridge, fake, home)


class City(BaseModel):
    name: str


def test_refused_calls_go_back_to_the_model_as_errors_without_the_secret(sandbox_bridge, fake, home):
    """With a response schema the CLI gets more than one turn, so the model sees what came of its calls."""
    fake.enqueue(ToolUse(home.calls()), ToolUse((("StructuredOutput", {"name": "Paris"}),)))
    completion = sandbox_bridge.client().chat.completions.parse(model="sonnet", messages=ASK, response_format=City)
    assert completion.choices[0].message.parsed == City(name="Paris")
    _, follow_up = fake.requests
    asked = [block["id"] for block in blocks(follow_up, "tool_use")]
    answered = [block["tool_use_id"] for block in blocks(follow_up, "tool_result")]
    assert len(asked) == 4 and sorted(answered) == sorted(asked), "each call answered"
    assert_nothing_ran(sandbox_bridge, fake, home)
