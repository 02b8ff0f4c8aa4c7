"""One CLI run from spawn to reaping: private directory, stdin, events, watchdogs, cleanup."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from . import events, mcp, rundir, transcript
from .events import ControlRequest
from .invocation import (
    MAX_TURNS,
    MAX_TURNS_STRUCTURED,
    SAFE_FLAGS,
    ClaudeInvocation,
    ClaudeSettings,
    HistoryMessage,
    child_env,
)
from .process import ClaudeProcess

logger = logging.getLogger(__name__)

SCHEMA_REQUEST_ID = "claude-bridge-schema"


class ClaudeNotFound(Exception):
    pass


class ClaudeExited(Exception):
    """The CLI ended without its `result` line."""

    def __init__(self, returncode: int | None, stderr: str) -> None:
        super().__init__(f"exit code {returncode}: {stderr or 'no output on stderr'}")
        self.returncode = returncode
        self.stderr = stderr


@dataclass
class StartedClaude:
    """A spawned CLI waiting for its input, and the private directory it runs in."""

    process: ClaudeProcess
    directory: Path

    async def discard(self, grace: float) -> None:
        """Stop and reap the process, then remove its directory; safe against a second cancellation."""
        try:
            await self.process.stop(grace)
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


async def start(invocation: ClaudeInvocation, settings: ClaudeSettings) -> StartedClaude:
    """Spawn the CLI for `invocation` (everything but its input, which `ClaudeRun` writes)."""
    directory = rundir.create()
    try:
        with rundir.writing(directory.parent):
            argv, env, cwd = _prepare(invocation, settings, directory)
        try:
            process = await ClaudeProcess.spawn(argv, env, cwd)
        except (FileNotFoundError, PermissionError) as e:
            raise ClaudeNotFound(settings.claude_bin) from e
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return StartedClaude(process, directory)


class ClaudeRun:
    """Use as `async with ClaudeRun(...) as run: async for event in run.events(): ...`.

    Leaving the block by any path (end, error, cancellation on client disconnect) stops the process,
    waits for it and removes its directory, so no request leaves a `claude` process or file behind.
    A warm process from the pool is used when one fits; each serves one request only.
    """

    def __init__(self, invocation: ClaudeInvocation, settings: ClaudeSettings) -> None:
        self.invocation = invocation
        self.settings = settings
        self._started = asyncio.get_running_loop().time()
        self._claude: StartedClaude | None = None

    async def __aenter__(self) -> ClaudeRun:
        pool = self.settings.pool
        self._claude = (pool.take(self.invocation) if pool else None) or await start(self.invocation, self.settings)
        try:
            # With tools, stdin stays open until the CLI has listed them (it gives up on the server otherwise).
            await self._claude.process.write(_input_lines(self.invocation), close=not self.invocation.tools)
        except BaseException:
            await self._claude.discard(self.settings.interrupt_grace)
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._claude is not None:
                await self._claude.discard(self.settings.interrupt_grace)
        finally:
            if self.settings.pool is not None:
                self.settings.pool.refill(self.invocation)

    async def events(self) -> AsyncGenerator[events.Event]:
        """Parsed stdout events until the `result` line; raises on timeouts or an exit without a result."""
        assert self._claude
        process = self._claude.process
        deadline = self._started + self.settings.total_timeout
        async for line in process.lines(self.settings.idle_timeout, deadline):
            event = events.parse(line)
            if isinstance(event, events.ControlRequest):
                await self._answer(event)
                continue
            if event is not None:
                yield event
            if isinstance(event, events.Result):
                return
        await process.wait()
        raise ClaudeExited(process.returncode, process.stderr_tail)

    async def _answer(self, control: ControlRequest) -> None:
        """Answer for the in-process tool server; once the tools are listed, the input is complete."""
        assert self._claude
        response = mcp.control_response(control.request_id, self.invocation.tools, control.request)
        listed = (control.request.get("message") or {}).get("method") == "tools/list"
        await self._claude.process.write(json.dumps(response).encode() + b"\n", close=listed)


def _prepare(
    invocation: ClaudeInvocation, settings: ClaudeSettings, run_dir: Path
) -> tuple[list[str], dict[str, str], Path]:
    """Files go beside the working directory, which stays empty: nothing there for the model to find."""
    inv = invocation
    cwd = run_dir / "work"
    cwd.mkdir()
    # Always a system prompt of our own (empty when the client sent none): Claude Code's default prompt
    # describes a coding agent with tools, which is not what an OpenAI client asked for.
    prompt_file = run_dir / "system-prompt.txt"
    # Lone surrogates (text a JavaScript client cut mid-emoji) cannot be UTF-8: they become U+FFFD.
    prompt_file.write_text(inv.system_prompt or "", encoding="utf-8", errors="replace")
    argv = [settings.claude_bin, *SAFE_FLAGS, "--model", inv.model, "--system-prompt-file", str(prompt_file)]
    argv += ["--max-turns", str(MAX_TURNS_STRUCTURED if inv.json_schema is not None else MAX_TURNS)]
    if inv.tools:
        argv += ["--mcp-config", mcp.CONFIG]
    if inv.effort:
        argv += ["--effort", inv.effort]
    if inv.history:
        transcript_file = run_dir / "transcript.jsonl"
        transcript.write(inv.history, transcript_file)
        argv += ["--resume", str(transcript_file)]
    return argv, child_env(settings, inv), cwd


def _input_lines(invocation: ClaudeInvocation) -> bytes:
    """Stream-json lines: the JSON schema if any, the replayed assistant turn if any (an assistant line starts
    no turn), then the prompt."""
    lines: list[dict[str, Any]] = []
    if invocation.json_schema is not None:
        # As `--json-schema` it would be readable by every local user in /proc and fail past 128 KiB (E2BIG).
        initialize = {"subtype": "initialize", "jsonSchema": invocation.json_schema}
        lines.append({"type": "control_request", "request_id": SCHEMA_REQUEST_ID, "request": initialize})
    messages = [invocation.replay] if invocation.replay else []
    messages.append(HistoryMessage("user", invocation.prompt))
    lines += [{"type": m.role, "message": {"role": m.role, "content": m.content}} for m in messages]
    # ASCII-only JSON carries any string, lone surrogates included, as escapes the CLI reads back.
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)
