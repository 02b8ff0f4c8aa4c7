"""Live sessions: a CLI kept running after its turn, continued by the request that carries its whole conversation.

Each follow-up through a new CLI pays its start-up and, resumed from a transcript, reads only the system prompt back
from Anthropic's prompt cache; one process fed turn after turn on its stdin reads the whole earlier conversation
(measured on 2.1.331: 87-92% of follow-up input, against 9%). So a finished turn's process is kept, keyed by what
the next request must carry to continue it: the same start-up shape (model, system prompt, tools, schema, limits),
the same caller, and the exact conversation so far, the answer included as the client echoes it back. A turn that
ended in calls of the client's tools keeps those calls held open in the CLI; the follow-up's tool results answer
them, and the CLI carries on the same agent turn. Anything else (an edited history, a regenerated answer, other
tools) does not find the session, and starts as before.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .invocation import ClaudeInvocation, ContentBlockParam, HistoryMessage
from .process import ClaudeProcess
from .spawn import StartedClaude


@dataclass(frozen=True)
class HeldCall:
    """A `tools/call` of the client's tool the CLI waits on: answered by the follow-up's tool result."""

    request_id: str  # the control request's
    rpc_id: Any  # the JSON-RPC message's
    tool_use_id: str


@dataclass(eq=False)
class LiveSession:
    claude: StartedClaude
    key: str  # shape, caller and conversation: what a request must match to continue it
    held: dict[str, HeldCall] = field(default_factory=dict)  # by tool_use id
    claude_model: str | None = None
    cost_so_far: float = 0.0  # the CLI reports its cost summed over the process's turns
    last_used: float = field(default_factory=time.monotonic)

    @property
    def process(self) -> ClaudeProcess:
        return self.claude.process


def shape(invocation: ClaudeInvocation, caller: str) -> dict[str, Any]:
    """What the CLI was started with and for whom: a session serves only requests that agree on all of it."""
    fields = dataclasses.asdict(invocation)
    for moved in ("prompt", "history", "replay"):
        fields.pop(moved)
    fields["tools"] = sorted(fields["tools"], key=lambda tool: tool["name"])  # MCP-backed agents reorder them
    return {"caller": caller, **fields}


def continuing_key(invocation: ClaudeInvocation, caller: str) -> str | None:
    """The key of the session this request would continue: its conversation before the new turn."""
    earlier = [*invocation.history, *([invocation.replay] if invocation.replay else [])]
    return _key(shape(invocation, caller), earlier) if earlier else None


def kept_key(invocation: ClaudeInvocation, caller: str, answer: HistoryMessage) -> str:
    """The key a session gets after this request's turn: the conversation with the new turn and its answer."""
    conversation = [
        *invocation.history,
        *([invocation.replay] if invocation.replay else []),
        HistoryMessage("user", invocation.prompt),
        answer,
    ]
    return _key(shape(invocation, caller), conversation)


def _key(shape: dict[str, Any], conversation: Sequence[HistoryMessage]) -> str:
    canonical = json.dumps([shape, [_canonical(message) for message in conversation]], sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def _canonical(message: HistoryMessage) -> Any:
    """A message as a client echoes it: an answer with tool calls by its calls (clients often drop the text around
    them), any other answer by its text, a user turn by its blocks."""
    if message.role != "assistant":
        return ["user", message.content]
    calls = [[b["id"], b["name"], b.get("input") or {}] for b in message.content if b.get("type") == "tool_use"]
    if calls:
        return ["assistant", "calls", calls]
    return ["assistant", "".join(b.get("text", "") for b in message.content if b.get("type") == "text")]


def tool_results(prompt: Sequence[ContentBlockParam]) -> dict[str, ContentBlockParam] | None:
    """The tool results that make up a new turn, by call id; None when the turn holds anything else."""
    if not prompt or any(block.get("type") != "tool_result" for block in prompt):
        return None
    return {block["tool_use_id"]: block for block in prompt}


class LiveSessions:
    """Idle live sessions: at most `capacity`, each for at most `idle` seconds, the least recently used evicted first.

    Taking a session removes it, so two requests can never continue one session at once (the second starts anew).
    Whatever leaves (taken by nobody, expired, evicted) is handed to `discard`.
    """

    def __init__(self, capacity: int, idle: float, discard: Callable[[StartedClaude], None]) -> None:
        self.capacity = capacity
        self.idle = idle
        self._discard = discard
        self._sessions: collections.OrderedDict[str, LiveSession] = collections.OrderedDict()
        self._expiry: dict[str, asyncio.TimerHandle] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def take(self, key: str | None) -> LiveSession | None:
        session = self._sessions.pop(key, None) if key else None
        if session is not None:
            self._expiry.pop(key).cancel()  # type: ignore[arg-type]
            if session.process.returncode is not None:  # died while idle
                self._discard(session.claude)
                return None
        return session

    def keep(self, session: LiveSession) -> None:
        if self.capacity <= 0:
            self._discard(session.claude)
            return
        if session.key in self._sessions:  # the same conversation twice: the newer one serves it
            self._drop(session.key)
        while len(self._sessions) >= self.capacity:
            self.evict_oldest()
        session.last_used = time.monotonic()
        self._sessions[session.key] = session
        loop = asyncio.get_running_loop()
        self._expiry[session.key] = loop.call_later(self.idle, self._drop, session.key)

    def evict_oldest(self) -> bool:
        """Make room: drop the least recently used session, if any."""
        if not self._sessions:
            return False
        self._drop(next(iter(self._sessions)))
        return True

    def close(self) -> Iterable[StartedClaude]:
        """Every session's process, for the caller to stop; none is kept after."""
        for timer in self._expiry.values():
            timer.cancel()
        self._expiry.clear()
        sessions, self._sessions = list(self._sessions.values()), collections.OrderedDict()
        return [session.claude for session in sessions]

    def _drop(self, key: str) -> None:
        session = self._sessions.pop(key, None)
        timer = self._expiry.pop(key, None)
        if timer is not None:
            timer.cancel()
        if session is not None:
            self._discard(session.claude)
