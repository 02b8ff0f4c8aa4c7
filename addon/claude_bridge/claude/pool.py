"""Warm CLIs: processes spawned ahead for the request shapes seen lately, so a request skips the CLI's start-up.

A warm process is spawned exactly as a fresh one would be for its shape (model, system prompt and the other
start-up flags), in a private directory of its own, and serves one conversation only (after its first request it
may live on as that conversation's live session): no request ever meets another's state. Requests with history,
tool results, tools or a schema need start-up flags of their own and start a fresh CLI, as does every request
while the pool is empty. Warm processes are spawned only while the runner's process budget has room.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from .invocation import ClaudeInvocation, ClaudeSettings
from .spawn import StartedClaude, start

logger = logging.getLogger(__name__)

Shape = tuple[Any, ...]


@dataclasses.dataclass(eq=False)
class _Warm:
    """A warm process and the timer that stops it if no request comes (cancelled when one does)."""

    claude: StartedClaude
    expiry: asyncio.TimerHandle | None = None

    def cancel_expiry(self) -> None:
        if self.expiry is not None:
            self.expiry.cancel()


def shape(invocation: ClaudeInvocation) -> Shape | None:
    """What a warm process must have been started with to serve `invocation`; None if it takes a fresh one."""
    if invocation.history or invocation.replay or invocation.tools or invocation.json_schema is not None:
        return None
    return (
        invocation.model,
        invocation.system_prompt,
        invocation.max_output_tokens,
        invocation.effort,
        invocation.thinking,
    )


class ClaudePool:
    def __init__(
        self, settings: ClaudeSettings, size: int, shapes: int, idle_expiry: float, has_room: Callable[[], bool]
    ) -> None:
        self.settings = settings
        self._has_room = has_room
        self.size = size  # warm processes per shape
        self.shapes = shapes  # shapes kept warm, the most recently used first
        self.idle_expiry = idle_expiry
        self._templates: collections.OrderedDict[Shape, ClaudeInvocation] = collections.OrderedDict()
        self._idle: dict[Shape, list[_Warm]] = {}
        self._starting: dict[Shape, int] = collections.Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def warm(self) -> int:
        return sum(len(idle) for idle in self._idle.values())

    @property
    def starting(self) -> int:
        return sum(self._starting.values())

    def evict_one(self) -> bool:
        """Give up the longest-waiting warm process, to make room for a process a request needs now."""
        for idle in self._idle.values():
            if idle:
                warm = idle.pop(0)
                warm.cancel_expiry()
                self._spawn_task(warm.claude.discard(0))
                return True
        return False

    def take(self, invocation: ClaudeInvocation) -> StartedClaude | None:
        """A warm process for `invocation` if one is ready; either way its shape is kept warm from now on
        (`refill` once the run is over: a spawn during the run would compete with it for the CPU)."""
        key = shape(invocation)
        if key is None or self._closed or self.size == 0:
            return None
        self._templates[key] = dataclasses.replace(invocation, prompt=[])
        self._templates.move_to_end(key)
        while len(self._templates) > self.shapes:
            self._retire(self._templates.popitem(last=False)[0])
        taken = None
        idle = self._idle.setdefault(key, [])
        while idle and taken is None:
            warm = idle.pop(0)  # the longest-waiting: the most surely done with its start-up
            warm.cancel_expiry()
            if warm.claude.process.returncode is None:
                taken = warm.claude
            else:
                self._spawn_task(warm.claude.discard(0))
        return taken

    def refill(self, invocation: ClaudeInvocation) -> None:
        """Top the shape of `invocation` up again, in the background."""
        key = shape(invocation)
        if key is not None and not self._closed:
            self._spawn_task(self._refill(key))

    async def close(self) -> None:
        """Stop every warm process (also at the bridge's exit; the kernel kills them if the bridge dies)."""
        self._closed = True
        idle = [warm for entries in self._idle.values() for warm in entries]
        self._idle.clear()
        for warm in idle:
            warm.cancel_expiry()  # before any await: a timer firing meanwhile would start a discard nobody awaits
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*(warm.claude.discard(0) for warm in idle), return_exceptions=True)

    async def _refill(self, key: Shape) -> None:
        """Spawn up to `size` warm processes for `key`, off the request's path."""
        template = self._templates.get(key)
        while (
            template is not None
            and not self._closed
            and len(self._idle.get(key, ())) + self._starting[key] < self.size
            and self._has_room()
        ):
            self._starting[key] += 1
            try:
                claude = await start(template, self.settings)
            except Exception as e:  # a missing CLI shows on the request that needs it, with its own message
                logger.debug("could not warm a CLI: %r", e)
                return
            finally:
                self._starting[key] -= 1
            if self._closed or key not in self._templates:
                await claude.discard(0)
                return
            warm = _Warm(claude)
            warm.expiry = asyncio.get_running_loop().call_later(self.idle_expiry, self._expire, key, warm)
            self._idle.setdefault(key, []).append(warm)

    def _expire(self, key: Shape, warm: _Warm) -> None:
        idle = self._idle.get(key, [])
        if warm in idle:
            idle.remove(warm)
            self._spawn_task(warm.claude.discard(0))

    def _retire(self, key: Shape) -> None:
        for warm in self._idle.pop(key, []):
            warm.cancel_expiry()
            self._spawn_task(warm.claude.discard(0))

    def _spawn_task(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
