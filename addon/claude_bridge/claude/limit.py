"""A cap on concurrent CLI runs, with a bounded queue: past it, requests are turned away at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from .errors import RunsExhausted

logger = logging.getLogger(__name__)


class RunLimiter:
    def __init__(self, max_runs: int, max_queued: int) -> None:
        self.max_runs = max_runs
        self.max_queued = max_queued
        self.running = 0
        self.queued = 0
        self._free = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the runs; wait in the queue for one, or raise RunsExhausted when the queue is full too."""
        if self.running >= self.max_runs and self.queued >= self.max_queued:
            raise RunsExhausted(self.running, self.queued)
        async with self._free:
            if self.running >= self.max_runs:
                logger.info("queued: %d runs busy, %d waiting before this one", self.running, self.queued)
            self.queued += 1
            try:
                await self._free.wait_for(lambda: self.running < self.max_runs)
            finally:
                self.queued -= 1
            self.running += 1
        try:
            yield
        finally:
            async with self._free:
                self.running -= 1
                self._free.notify()
