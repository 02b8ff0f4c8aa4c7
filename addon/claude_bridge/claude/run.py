"""One turn on a CLI process: its input written, its events read under the watchdogs, its tool calls held.

The process comes from the runner: freshly started, warm from the pool, or a live session continued. A fresh one
gets the request's first input (schema, replayed tool calls, the prompt); a live session gets only what is new
(a user line, or the answers to the tool calls it holds). The input is never closed: a turn that ends well leaves
the process ready for the conversation's next request, and the runner decides whether to keep it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator
from typing import Any

from . import events, mcp, session
from .errors import ClaudeExited
from .events import ControlRequest
from .invocation import ClaudeInvocation, ClaudeSettings, HistoryMessage
from .session import HeldCall, LiveSession
from .spawn import StartedClaude

logger = logging.getLogger(__name__)

SCHEMA_REQUEST_ID = "claude-bridge-schema"


class ContinuationRefused(Exception):
    """A live session cannot take this turn as it is (its held calls and the turn's results do not match)."""


class ClaudeRun:
    """How a turn went, for the runner: `keep(answer)` marks it as ended well, with the answer the client got."""

    def __init__(
        self,
        claude: StartedClaude,
        invocation: ClaudeInvocation,
        settings: ClaudeSettings,
        served: str,
        live: LiveSession | None = None,
        ready: float | None = None,
    ) -> None:
        self.claude = claude
        self.invocation = invocation
        self.settings = settings
        self.served = served  # "a new CLI", "a warm CLI" or "the live session"
        # When the process could start on this turn (time.monotonic()); a new one's is its init event, read later.
        self.ready = ready
        self.claude_model = live.claude_model if live else None
        self.cost_before = live.cost_so_far if live else 0.0
        self.cost_after = self.cost_before
        self.held: dict[str, HeldCall] = {}
        self.answer: HistoryMessage | None = None
        self._live = live
        self._started = asyncio.get_running_loop().time()

    async def begin(self) -> None:
        """Write this turn's input: all of it on a fresh process, only what is new on a live session."""
        process = self.claude.process
        if self._live is None:
            await process.write(_first_input(self.invocation))
        elif self._live.held:
            results = session.tool_results(self.invocation.prompt)
            if results is None or results.keys() != self._live.held.keys():
                raise ContinuationRefused
            answers = [
                mcp.call_result(c.request_id, c.rpc_id, results[c.tool_use_id]) for c in self._live.held.values()
            ]
            await process.write(_lines(answers))
        elif session.tool_results(self.invocation.prompt) is not None:
            raise ContinuationRefused  # results for calls this process never held
        else:
            await process.write(_user_line(self.invocation.prompt))

    def keep(self, answer: HistoryMessage) -> None:
        """The turn ended well and the client got `answer`: the process may serve the conversation's next turn."""
        self.answer = answer

    def keepable(self) -> bool:
        """Whether the process can continue: it ended well, and holds exactly the calls the client was given."""
        if self.answer is None or self.claude.process.returncode is not None:
            return False
        calls = {block["id"] for block in self.answer.content if block.get("type") == "tool_use"}
        return calls == self.held.keys()

    async def events(self) -> AsyncGenerator[events.Event]:
        """Parsed stdout events until the turn's `result` line; raises on timeouts or an exit without a result.

        A turn that ends in tool calls has no `result` yet: its consumer stops reading at the calls.
        """
        process = self.claude.process
        deadline = self._started + self.settings.total_timeout
        async for line in process.lines(self.settings.idle_timeout, deadline):
            event = events.parse(line)
            if isinstance(event, events.ControlRequest):
                await self._control(event)
                continue
            if isinstance(event, events.SystemInit):
                self.claude_model = event.model
            if isinstance(event, events.Result):
                self.cost_after = event.total_cost_usd
            if event is not None:
                yield event
            if isinstance(event, events.Result):
                return
        await process.wait()
        raise ClaudeExited(process.returncode, process.stderr_tail)

    async def _control(self, control: ControlRequest) -> None:
        """Hold a call of the client's tool for the client; answer what else the in-process tool server is asked."""
        message: dict[str, Any] = control.request.get("message") or {}
        if mcp.is_tool_call(control.request):
            tool_use_id = ((message.get("params") or {}).get("_meta") or {}).get("claudecode/toolUseId")
            if tool_use_id:
                self.held[tool_use_id] = HeldCall(control.request_id, message.get("id"), tool_use_id)
                return
        response = mcp.control_response(control.request_id, self.invocation.tools, control.request)
        await self.claude.process.write(_lines([response]))


def _first_input(invocation: ClaudeInvocation) -> bytes:
    """Stream-json lines: the JSON schema if any, the replayed assistant turn if any (an assistant line starts
    no turn), then the prompt."""
    lines: list[dict[str, Any]] = []
    if invocation.json_schema is not None:
        # As `--json-schema` it would be readable by every local user in /proc and fail past 128 KiB (E2BIG).
        initialize = {"subtype": "initialize", "jsonSchema": invocation.json_schema}
        lines.append({"type": "control_request", "request_id": SCHEMA_REQUEST_ID, "request": initialize})
    if invocation.replay:
        lines.append(_message_line(invocation.replay))
    return _lines(lines) + _user_line(invocation.prompt)


def _user_line(prompt: list[Any]) -> bytes:
    return _lines([_message_line(HistoryMessage("user", prompt))])


def _lines(objects: list[dict[str, Any]]) -> bytes:
    """Stream-json lines for the CLI's stdin. ASCII-only JSON carries any string, lone surrogates included, as
    escapes the CLI reads back."""
    return b"".join(json.dumps(obj).encode() + b"\n" for obj in objects)


def _message_line(message: HistoryMessage) -> dict[str, Any]:
    return {"type": message.role, "message": {"role": message.role, "content": message.content}}
