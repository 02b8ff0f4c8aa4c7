"""Does the user's Claude CLI still do what the bridge relies on? A check that spends nothing.

Claude Code updates itself most weeks, and the bridge leans on details that are no public contract: the stream-json
events, the flags it passes, the in-process MCP server, `--resume` of a transcript it writes, more turns on a running
process's stdin. The probe runs the user's CLI through the bridge's own run code (runner, run, session, turn) against
a loopback stand-in of the API (claude/standin.py: nothing billed, no login needed, a temporary HOME) and gives a
verdict per capability, remembered per CLI version in the confdir. A broken capability says what the bridge must do:
fall back where it can (flatten history, no live sessions) or refuse with a message naming the CLI version (tool
requests, or every request).

It lives beside doctor.py, not in claude/: it drives `translate.turn`, which sits above the CLI runner.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import json
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, RootModel, ValidationError

from .claude import events, mcp, rundir
from .claude.invocation import ClaudeInvocation, ClaudeSettings, HistoryMessage, ToolSpec
from .claude.run import ClaudeRun
from .claude.runner import ClaudeRunner, Limits
from .claude.standin import INPUT_TOKENS, PROBE_TOOL, TOOL_WORD, StandIn
from .openai.errors import OpenAIError
from .translate.turn import TurnEnd, TurnItem, TurnReport, TurnText, TurnToolArguments, TurnToolCall, turn

logger = logging.getLogger(__name__)

TESTED = ("2.1.331", "2.1.332")  # the range CI runs the suite against (README, Tests); a fix line offers the newest
INSTALL = "npm install -g @anthropic-ai/claude-code@{version}"
FILE = "claude-compat.json"  # in the confdir
MODEL = "sonnet"
CALLER = "claude-bridge-probe"
DUMMY_TOKEN = "sk-ant-oat01-claude-bridge-probe"  # the stand-in takes any login; the user's is never needed
IDLE_TIMEOUT = 30.0
CHECK_TIMEOUT = 60.0
PROXY_VARIABLES = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}


class Capability(enum.StrEnum):
    PLAIN = "plain"  # one short turn: the event shapes, and every flag the bridge always passes
    TOOLS = "tools"  # the client's tool called through the bridge's MCP server; its result replayed to a new CLI
    RESUME = "resume"  # a conversation's history through `--resume` of the transcript file the bridge writes
    LIVE = "live"  # a running CLI continued on its stdin: a follow-up user turn, a held tool call answered


WHAT = {
    Capability.PLAIN: "answer a plain turn",
    Capability.TOOLS: "call the client's tools",
    Capability.RESUME: "resume a conversation's history",
    Capability.LIVE: "continue a running CLI (live sessions)",
}


class Verdict(BaseModel):
    model_config = ConfigDict(frozen=True)

    ok: bool
    detail: str


class Compatibility(BaseModel):
    """The verdicts on one CLI version, and what the bridge must do about them."""

    model_config = ConfigDict(frozen=True)

    version: str | None  # None: the CLI did not say (`--version` failed)
    checked: datetime
    verdicts: dict[Capability, Verdict]

    def works(self, capability: Capability) -> bool:
        verdict = self.verdicts.get(capability)
        return verdict is not None and verdict.ok

    @property
    def broken(self) -> list[Capability]:
        return [capability for capability in Capability if not self.works(capability)]

    def fallbacks(self) -> dict[str, Any]:
        """Option overrides that keep the bridge working without a broken capability it can do without."""
        overrides: dict[str, Any] = {}
        if not self.works(Capability.RESUME):
            overrides["bridge_history"] = "flatten"
        if not self.works(Capability.LIVE):
            overrides["claude_live_sessions"] = 0
        return overrides

    def refusal(self, kind: Literal["request", "tools"]) -> str | None:
        """The error message for a request of this kind the CLI cannot serve (`tools`: one offering tools), or
        None when it can. Past what `fallbacks` covers, the bridge refuses rather than answer wrong."""
        needed = [Capability.PLAIN] + ([Capability.TOOLS] if kind == "tools" else [])
        broken = next((capability for capability in needed if not self.works(capability)), None)
        if broken is None:
            return None
        verdict = self.verdicts.get(broken)
        why = verdict.detail if verdict else "not checked"
        still = " Requests without tools still work." if broken is Capability.TOOLS else ""
        return (
            f"claude-bridge cannot use the Claude Code CLI {self.version or '(version unknown)'} to "
            f"{WHAT[broken]}: {why}.{still} Versions known to work: {', '.join(TESTED)}; install one "
            f"({self.fix()}) or point --claude-bin at it, then restart the bridge."
        )

    def fix(self) -> str:
        """The command that installs a version known to work (for doctor's fix line)."""
        return INSTALL.format(version=TESTED[-1])

    def summary(self) -> str:
        """One line for the start-up log and doctor."""
        parts = [f"{c} {'ok' if self.works(c) else 'BROKEN'}" for c in Capability]
        return f"Claude Code CLI {self.version or '(version unknown)'}: " + ", ".join(parts)


class _Entry(BaseModel):
    checked: datetime
    verdicts: dict[Capability, Verdict]


_Remembered = RootModel[dict[str, _Entry]]


def load(confdir: Path, version: str) -> Compatibility | None:
    """The remembered verdicts on `version`; None when it was never checked (or not for every capability: a
    newer bridge checks more), or the file is unreadable."""
    entry = _read(confdir).get(version)
    if entry is None or set(entry.verdicts) != set(Capability):
        return None
    return Compatibility(version=version, checked=entry.checked, verdicts=entry.verdicts)


def remember(confdir: Path, compatibility: Compatibility) -> None:
    """Keep the verdicts for their version (an unknown version is not kept: it would be checked again anyway)."""
    if compatibility.version is None:
        return
    remembered = _read(confdir)
    remembered[compatibility.version] = _Entry(checked=compatibility.checked, verdicts=compatibility.verdicts)
    confdir.mkdir(parents=True, exist_ok=True)
    data = _Remembered(remembered).model_dump_json(indent=2)
    # Whole or not at all: another bridge on the same confdir may read it meanwhile.
    fd, temporary = tempfile.mkstemp(prefix=f".{FILE}.", dir=confdir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(data + "\n")
        os.replace(temporary, confdir / FILE)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _read(confdir: Path) -> dict[str, _Entry]:
    try:
        return _Remembered.model_validate_json((confdir / FILE).read_bytes()).root
    except FileNotFoundError:
        return {}
    except (OSError, ValidationError) as e:
        logger.warning("%s is unreadable (%s): the CLI will be checked again", confdir / FILE, type(e).__name__)
        return {}


async def cli_version(claude_bin: str) -> str | None:
    """What `claude --version` says (its first word), or None if it does not answer."""
    try:
        process = await asyncio.create_subprocess_exec(
            claude_bin, "--version", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
    except OSError:
        return None
    try:
        async with asyncio.timeout(IDLE_TIMEOUT):
            out, _ = await process.communicate()
    except TimeoutError:
        return None
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    words = out.decode(errors="replace").split()
    return words[0] if process.returncode == 0 and words else None


async def probe(settings: ClaudeSettings, version: str | None = None) -> Compatibility:
    """Check every capability of the CLI `settings` name, against the stand-in API: a few seconds, nothing billed.

    `version` is what `--version` said, if the caller has asked already. Raises only on the probe's own faults.
    """
    version = version or await cli_version(settings.claude_bin)
    home = Path(tempfile.mkdtemp(prefix=f"{rundir.PREFIX}{os.getpid()}-probe-home-"))
    try:
        async with StandIn() as api:
            verdicts = await _check_all(_settings(settings, api.url, home))
    finally:
        shutil.rmtree(home, ignore_errors=True)
    compatibility = Compatibility(version=version, checked=datetime.now(UTC), verdicts=verdicts)
    logger.log(logging.INFO if not compatibility.broken else logging.WARNING, compatibility.summary())
    return compatibility


def _settings(settings: ClaudeSettings, api_url: str, home: Path) -> ClaudeSettings:
    """The user's CLI, pointed at the stand-in: no login, settings, proxy or config of the user's reaches it."""
    own = ("CLAUDE", "ANTHROPIC", "XDG_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(own) and k.lower() not in PROXY_VARIABLES}
    env |= {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "ANTHROPIC_BASE_URL": api_url,
        "CLAUDE_CODE_OAUTH_TOKEN": DUMMY_TOKEN,
        "NO_PROXY": "127.0.0.1",
    }
    return dataclasses.replace(
        settings,
        max_retries=0,
        idle_timeout=IDLE_TIMEOUT,
        total_timeout=CHECK_TIMEOUT,
        allow_api_key=False,
        environment=tuple(sorted(env.items())),
        api_proxy=None,  # nor the bridge's own inspection listener (bridge_inspect_claude)
    )


class _Broken(Exception):
    """A check found the capability broken; the message says how."""


class _RunFailed(_Broken):
    """A turn failed as the bridge would fail a client's request (which says nothing of the other capabilities)."""


async def _check_all(settings: ClaudeSettings) -> dict[Capability, Verdict]:
    plain, ran = await _verdict(settings, _plain)
    if not ran:  # no turn runs at all: every other check would fail the same way, or wait as long
        skipped = Verdict(ok=False, detail="not checked: the CLI cannot run a plain turn")
        return {Capability.PLAIN: plain} | dict.fromkeys(
            [Capability.TOOLS, Capability.RESUME, Capability.LIVE], skipped
        )
    (tools, _), (resume, _) = await asyncio.gather(_verdict(settings, _tools), _verdict(settings, _resume))
    live, _ = await _verdict(settings, _live_follow_up)
    if live.ok and tools.ok:
        held, _ = await _verdict(settings, _live_tool_call)
        live = held if not held.ok else Verdict(ok=True, detail=f"{live.detail}; {held.detail}")
    elif live.ok:
        live = Verdict(ok=True, detail=f"{live.detail}; held tool calls not checked (tools are broken)")
    return {Capability.PLAIN: plain, Capability.TOOLS: tools, Capability.RESUME: resume, Capability.LIVE: live}


async def _verdict(settings: ClaudeSettings, check: Callable[[_Watching], Awaitable[str]]) -> tuple[Verdict, bool]:
    """Run one check on a runner of its own (one process at a time, a live session kept for the next turn); and
    whether its turns ran (a failed run, unlike a wrong answer, says nothing of the other capabilities)."""
    runner = _Watching(settings, Limits(max_runs=1, pool_size=0, live_sessions=1, max_processes=2))
    try:
        async with asyncio.timeout(CHECK_TIMEOUT + IDLE_TIMEOUT):
            return Verdict(ok=True, detail=await check(runner)), True
    except _Broken as e:
        return Verdict(ok=False, detail=str(e)), not isinstance(e, _RunFailed)
    except TimeoutError:
        return Verdict(ok=False, detail=f"no answer within {CHECK_TIMEOUT + IDLE_TIMEOUT:.0f} s"), False
    finally:
        await runner.close()


class _Watching(ClaudeRunner):
    """The bridge's runner, keeping the events its latest run read: the checks look at their shapes too."""

    seen: list[events.Event]

    @contextlib.asynccontextmanager
    async def run(self, invocation: ClaudeInvocation, caller: str) -> AsyncIterator[ClaudeRun]:
        self.seen = []
        async with super().run(invocation, caller) as run:
            yield _WatchedRun(run, self.seen)  # type: ignore[misc]  # a ClaudeRun in all but its class


class _WatchedRun:
    def __init__(self, run: ClaudeRun, seen: list[events.Event]) -> None:
        self._run = run
        self._seen = seen

    def __getattr__(self, name: str) -> Any:
        return getattr(self._run, name)

    async def events(self) -> AsyncIterator[events.Event]:
        async with contextlib.aclosing(self._run.events()) as stream:
            async for event in stream:
                self._seen.append(event)
                yield event


@dataclasses.dataclass
class _Turn:
    items: list[TurnItem]
    seen: list[events.Event]
    report: TurnReport

    @property
    def text(self) -> str:
        return "".join(item.text for item in self.items if isinstance(item, TurnText))

    @property
    def stop_reason(self) -> str | None:
        return next((item.stop_reason for item in self.items if isinstance(item, TurnEnd)), None)

    def of(self, kind: type[Any]) -> list[Any]:
        return [event for event in self.seen if isinstance(event, kind)]


async def _turn(runner: _Watching, invocation: ClaudeInvocation, step: str) -> _Turn:
    """One turn as the bridge runs a client's request; failing as it would fail one, named by its `step`."""
    report = TurnReport()
    try:
        items = [item async for item in turn(invocation, runner, report, caller=CALLER)]
    except OpenAIError as e:
        raise _RunFailed(f"{step} failed: {e.error.message.rstrip('.')}") from None
    return _Turn(items, runner.seen, report)


def _expect(condition: object, broken: str) -> None:
    if not condition:
        raise _Broken(broken)


def _text(text: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": text}]


def _answered(got: _Turn, expected: str) -> None:
    _expect(got.text == expected, f"the answer came back as {got.text[:200]!r}, not {expected!r}")


async def _plain(runner: _Watching) -> str:
    """One short turn with every flag the bridge always passes: the event lines it reads, in their shapes."""
    invocation = ClaudeInvocation(MODEL, _text("Say w-plain."), system_prompt="You are the probe.", effort="low")
    got = await _turn(runner, invocation, "a plain turn")
    init = got.of(events.SystemInit)
    _expect(init, "no system/init line")
    deltas = got.of(events.TextDelta)
    _expect(deltas, "no stream_event text deltas: answers would not stream")
    _answered(got, "heard user:w-plain")
    _expect(any(a.text == got.text for a in got.of(events.AssistantMessage)), "no assistant line with the answer")
    results = got.of(events.Result)
    _expect(results, "no result line")
    result = results[-1]
    _expect({"usage", "total_cost_usd"} <= result.model_fields_set, "the result line has no usage or total_cost_usd")
    counts = (result.usage.input_tokens, result.usage.output_tokens)
    _expect(counts == (INPUT_TOKENS, len(deltas)), f"the result counts {counts} tokens in and out, not the API's")
    _expect(got.stop_reason == "end_turn", f"the turn ended with {got.stop_reason!r}, not end_turn")
    return (
        f"{init[0].model or 'a model'} answered in {len(deltas)} text deltas; result with usage and cost "
        f"(${result.total_cost_usd:.6f} at API prices, not billed)"
    )


TOOL = ToolSpec(
    PROBE_TOOL,
    "Echoes its text back.",
    {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
)
ASK = _text("Call the tool with w-tool.")


async def _called(runner: _Watching) -> _Turn:
    """A turn in which the model calls the probe's tool; the call must reach the client as the client's tool."""
    got = await _turn(runner, ClaudeInvocation(MODEL, ASK, tools=(TOOL,)), "the turn calling a tool")
    calls = [item for item in got.items if isinstance(item, TurnToolCall)]
    names = [call.name for call in calls]
    _expect(names == [PROBE_TOOL], f"the model's call came back as {names or 'no call'}, not [{PROBE_TOOL!r}]")
    arguments = "".join(item.fragment for item in got.items if isinstance(item, TurnToolArguments))
    with contextlib.suppress(ValueError):
        arguments = json.loads(arguments)
    _expect(arguments == {"text": TOOL_WORD}, f"the call's arguments came back as {arguments!r}")
    _expect(got.stop_reason == "tool_use", f"the turn ended with {got.stop_reason!r}, not tool_use")
    return got


def _call_and_result(got: _Turn) -> tuple[HistoryMessage, list[dict[str, Any]]]:
    """The client's next request after the call: the call as the client echoes it, and its result."""
    call = next(item for item in got.items if isinstance(item, TurnToolCall))
    use = {"type": "tool_use", "id": call.id, "name": mcp.served_name(PROBE_TOOL), "input": {"text": TOOL_WORD}}
    result = {"type": "tool_result", "tool_use_id": call.id, "content": _text("w-pong")}
    return HistoryMessage("assistant", [use]), [result]


async def _tools(runner: _Watching) -> str:
    """The model calls the client's tool through the MCP server; its result goes to a new CLI (replayed on stdin,
    as with live sessions off) and the model's answer comes back."""
    call, result = _call_and_result(await _called(runner))
    got = await _turn(runner, ClaudeInvocation(MODEL, result, tools=(TOOL,), replay=call), "the tool's result")
    _answered(got, "tool said w-pong")
    return "called through the MCP server; the result reached the API with the call replayed"


async def _resume(runner: _Watching) -> str:
    """A history through `--resume`: the API must get each earlier turn, in order, in its own role."""
    history = (HistoryMessage("user", _text("Remember w-alpha.")), HistoryMessage("assistant", _text("Noted w-beta.")))
    got = await _turn(runner, ClaudeInvocation(MODEL, _text("And w-gamma?"), history=history), "the resumed turn")
    _answered(got, "heard user:w-alpha assistant:w-beta user:w-gamma")
    return "the API got the resumed history, each turn in its role"


async def _live_follow_up(runner: _Watching) -> str:
    """A finished turn's CLI kept, and the conversation's next user turn written to its stdin."""
    first = ClaudeInvocation(MODEL, _text("Hello w-one."))
    _answered(await _turn(runner, first, "the first turn"), "heard user:w-one")
    history = (HistoryMessage("user", first.prompt), HistoryMessage("assistant", _text("heard user:w-one")))
    got = await _turn(runner, ClaudeInvocation(MODEL, _text("Then w-two."), history=history), "the follow-up")
    _expect(got.report.served == "the live session", f"the follow-up was served by {got.report.served}")
    _answered(got, "heard user:w-one assistant:w-one user:w-two")
    return "a follow-up continued the running CLI"


async def _live_tool_call(runner: _Watching) -> str:
    """A call of the client's tool held open in the running CLI, and answered with the client's result."""
    call, result = _call_and_result(await _called(runner))
    follow_up = ClaudeInvocation(MODEL, result, tools=(TOOL,), history=(HistoryMessage("user", ASK),), replay=call)
    got = await _turn(runner, follow_up, "the tool's result")
    _expect(got.report.served == "the live session", f"the tool's result was served by {got.report.served}")
    _answered(got, "tool said w-pong")
    return "a held tool call was answered in it"
