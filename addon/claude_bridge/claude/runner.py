"""The one owner of CLI processes: the run limit, warm processes and live sessions, under one budget.

`run()` gives a turn its process: the live session its request continues, else a warm one that fits, else a new
one; and afterwards keeps it as the conversation's live session, or stops it. Every process counts against
`max_processes`: a new one makes room by evicting the least recently used live session, then a warm process.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any, NamedTuple

from . import session
from .invocation import ClaudeInvocation, ClaudeSettings
from .limit import RunLimiter
from .pool import ClaudePool
from .run import ClaudeRun, ContinuationRefused
from .session import LiveSession, LiveSessions
from .spawn import StartedClaude, start

logger = logging.getLogger(__name__)

on_behalf_of: contextvars.ContextVar[object | None] = contextvars.ContextVar("on_behalf_of", default=None)
"""Whom the runs started in this task serve, as the task set it (the bridge: the request's flow). The runner keeps it
beside the process while the run lasts (`serving`), so what the process does meanwhile, such as its API calls seen
by the bridge's proxy, can be traced to the request. A context variable, because the request is known only several
layers above the run; the runner never looks inside it."""


@dataclass(frozen=True)
class Limits:
    max_runs: int = 8
    max_queued: int = 32
    pool_size: int = 2
    pool_shapes: int = 3
    pool_idle: float = 600.0
    live_sessions: int = 4
    live_idle: float = 3600.0
    max_processes: int = 16


class Census(NamedTuple):
    """What the runner holds right now, for each log line."""

    runs: int
    queued: int
    warm: int
    live: int


class ClaudeRunner:
    def __init__(self, settings: ClaudeSettings | None = None, limits: Limits | None = None) -> None:
        limits = limits or Limits()
        self.limiter = RunLimiter(limits.max_runs, limits.max_queued)
        self._tasks: set[asyncio.Task[None]] = set()
        self._serving: dict[str, object] = {}
        self._start_under(settings or ClaudeSettings(), limits)

    def configure(self, settings: ClaudeSettings, limits: Limits) -> None:
        """New settings for the runs to come: warm processes and live sessions started under the old ones go
        (runs in flight finish as they are); the run limit changes in place, so its count stays true."""
        old_pool, old_sessions = self.pool, self.sessions.close()
        self.limiter.max_runs, self.limiter.max_queued = limits.max_runs, limits.max_queued
        self._start_under(settings, limits)
        if old_pool.warm or old_pool.starting:
            self._background(old_pool.close())
        for claude in old_sessions:
            self._discard_later(claude)

    def _start_under(self, settings: ClaudeSettings, limits: Limits) -> None:
        """An empty pool and no live sessions, for runs under these settings and limits."""
        self.settings, self.limits = settings, limits
        self.pool = ClaudePool(settings, limits.pool_size, limits.pool_shapes, limits.pool_idle, self._has_room)
        self.sessions = LiveSessions(limits.live_sessions, limits.live_idle, self._discard_later)

    @property
    def census(self) -> Census:
        return Census(self.limiter.running, self.limiter.queued, self.pool.warm, len(self.sessions))

    @property
    def processes(self) -> int:
        return self.limiter.running + self.pool.warm + self.pool.starting + len(self.sessions)

    @contextlib.asynccontextmanager
    async def run(self, invocation: ClaudeInvocation, caller: str) -> AsyncIterator[ClaudeRun]:
        """A turn's process, its input written; kept as a live session if the turn ended well, else stopped."""
        async with self.limiter.slot():
            run = await self._begin(invocation, caller)
            kept = False
            try:
                yield run
                kept = run.keepable() and self.sessions.capacity > 0
            finally:
                self._serving.pop(run.claude.tag, None)
                if kept:
                    self._keep(run, invocation, caller)
                else:
                    await run.claude.discard(self.settings.interrupt_grace)
                self.pool.refill(invocation)

    def serving(self, tag: str) -> object | None:
        """Whom the process tagged `tag` is running a turn for now (`on_behalf_of` of that run), if anyone."""
        return self._serving.get(tag)

    async def close(self) -> None:
        """Stop every warm process and live session, at the bridge's exit (a run ending after is not kept)."""
        await self.pool.close()
        idle = self.sessions.close()
        self.sessions.capacity = 0
        # Awaited, not cancelled: a discard cancelled before its first step would never stop its process.
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(claude.discard(0) for claude in idle), return_exceptions=True)

    async def _begin(self, invocation: ClaudeInvocation, caller: str) -> ClaudeRun:
        live = self.sessions.take(session.continuing_key(invocation, caller))
        if live is not None:
            run = ClaudeRun(live.claude, invocation, self.settings, "the live session", live, time.monotonic())
            try:
                await self._begin_serving(run)
                return run
            except ContinuationRefused:
                self._discard_later(live.claude)
            except BaseException:
                await live.claude.discard(self.settings.interrupt_grace)
                raise
        warm = self.pool.take(invocation)
        if warm is None:
            self._make_room()
        claude = warm or await start(invocation, self.settings)
        ready = time.monotonic() if warm else None  # a new process is ready at its init event
        run = ClaudeRun(claude, invocation, self.settings, "a warm CLI" if warm else "a new CLI", ready=ready)
        try:
            await self._begin_serving(run)
        except BaseException:
            await claude.discard(self.settings.interrupt_grace)
            raise
        return run

    async def _begin_serving(self, run: ClaudeRun) -> None:
        """Write the run's input, its process noted as serving this task's `on_behalf_of` first (its API call may
        reach the proxy before the write returns)."""
        owner = on_behalf_of.get()
        if owner is not None:
            self._serving[run.claude.tag] = owner
        try:
            await run.begin()
        except BaseException:
            self._serving.pop(run.claude.tag, None)
            raise

    def _keep(self, run: ClaudeRun, invocation: ClaudeInvocation, caller: str) -> None:
        assert run.answer is not None
        key = session.kept_key(invocation, caller, run.answer)
        live = LiveSession(run.claude, key, dict(run.held), run.claude_model, run.cost_after)
        self.sessions.keep(live)

    def _has_room(self) -> bool:
        return self.processes < self.limits.max_processes

    def _make_room(self) -> None:
        """Before a new process (its run already counted): over budget, the least recently used live session goes,
        else a warm process."""
        while self.processes > self.limits.max_processes and (self.sessions.evict_oldest() or self.pool.evict_one()):
            pass

    def _discard_later(self, claude: StartedClaude) -> None:
        self._background(claude.discard(0))

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
