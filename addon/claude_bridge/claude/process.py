"""One `claude -p` child process: spawned in its own process group, always reaped.

asyncio's `Process.wait()` and its pipe readers wait for every process holding the CLI's stdout and stderr, and a
process the CLI started can hold them long after the CLI exits. So the CLI's own exit is watched apart from its
pipes, and once it has exited, what is left in them is read for DRAIN_AFTER_EXIT seconds at most.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections.abc import AsyncGenerator, Mapping, Sequence
from pathlib import Path

from .errors import IdleTimeout, LineTooLong, TotalTimeout

logger = logging.getLogger(__name__)

# stream-json lines carry whole assistant messages; the default 64 KiB reader limit is far too small.
LINE_LIMIT = 64 * 1024 * 1024
STDERR_TAIL_LINES = 20
DRAIN_AFTER_EXIT = 2.0
_PR_SET_PDEATHSIG = 1


# Loaded once here: the function below runs in the forked child, where loading libraries is not safe.
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel kills it if the bridge dies, even by SIGKILL."""
    assert _libc is not None
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class _Protocol(asyncio.subprocess.SubprocessStreamProtocol):
    """asyncio's own, and also tells when the CLI itself exits and when its stdout and stderr are closed."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=LINE_LIMIT, loop=loop)
        self.exited = asyncio.Event()
        self.outputs_closed = asyncio.Event()
        self._open_outputs = {1, 2}

    def process_exited(self) -> None:
        super().process_exited()
        self.exited.set()

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        super().pipe_connection_lost(fd, exc)
        self._open_outputs.discard(fd)
        if not self._open_outputs:
            self.outputs_closed.set()


class ClaudeProcess:
    def __init__(self, transport: asyncio.SubprocessTransport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self._proc = asyncio.subprocess.Process(transport, protocol, asyncio.get_running_loop())
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._stderr_task = asyncio.create_task(self._drain_stderr())
        self._drain_task = asyncio.create_task(self._bound_drain())

    @classmethod
    async def spawn(cls, argv: Sequence[str], env: Mapping[str, str], cwd: Path) -> ClaudeProcess:
        """As `asyncio.create_subprocess_exec`, with a protocol that sees the CLI's exit apart from its pipes."""
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.subprocess_exec(
            lambda: _Protocol(loop),
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env=dict(env),
            start_new_session=True,
            preexec_fn=_die_with_parent if _libc is not None else None,
        )
        logger.debug("spawned claude pid %d", transport.get_pid())
        return cls(transport, protocol)

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    @property
    def stderr_tail(self) -> str:
        return "\n".join(self._stderr_tail)

    async def write(self, data: bytes, *, close: bool = False) -> None:
        """Write stdin lines; `close` ends the input, which `-p` needs before it exits after its answer."""
        stdin = self._proc.stdin
        assert stdin
        if stdin.is_closing():
            return
        try:
            stdin.write(data)
            await stdin.drain()
            if close:
                stdin.close()
        except (BrokenPipeError, ConnectionResetError):
            logger.debug("claude pid %d closed stdin early", self.pid)

    async def lines(self, idle_timeout: float, deadline: float) -> AsyncGenerator[bytes]:
        """stdout lines until EOF, each within `idle_timeout` seconds and before the loop-time `deadline`.

        Only the read itself is timed: while the consumer holds a line (writing to a slow client), no clock runs
        that could cancel it somewhere else.
        """
        assert self._proc.stdout
        loop = asyncio.get_running_loop()
        while True:
            idle_end = loop.time() + idle_timeout
            try:
                async with asyncio.timeout_at(min(idle_end, deadline)):
                    line = await self._proc.stdout.readline()
            except TimeoutError:
                raise (TotalTimeout if deadline <= idle_end else IdleTimeout) from None
            except ValueError:  # how asyncio's readline says the line went past the reader's limit
                raise LineTooLong(LINE_LIMIT) from None
            if not line:
                return
            yield line

    async def wait(self) -> int:
        """The CLI's exit code, once it has exited and its output is read (for DRAIN_AFTER_EXIT seconds at most)."""
        await self._drain_task
        await self._stderr_task
        return await self._proc.wait()

    async def stop(self, grace: float) -> None:
        """Interrupt politely (SIGINT lets the CLI end its turn), then kill its group; always reap.

        The group is only signalled while its leader is unreaped, so its id cannot have been reused.
        """
        try:
            if self._proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    self._proc.send_signal(signal.SIGINT)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(grace):
                        await self._protocol.exited.wait()
        finally:
            if self._proc.returncode is None:
                logger.debug("claude pid %d ignored SIGINT for %.1fs; killing its group", self.pid, grace)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self._proc.pid, signal.SIGKILL)
            await asyncio.shield(self.wait())

    async def _bound_drain(self) -> None:
        """Once the CLI has exited, stop whatever still holds its output after DRAIN_AFTER_EXIT, and close our end.

        The group is signalled without its leader: the open pipes mean a process the CLI started lives, and while
        one is in the group Linux does not reuse its id. Only a holder that left with setsid is out of reach; were
        it the only one, the id could in principle have been reused within those seconds.
        """
        await self._protocol.exited.wait()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_AFTER_EXIT):
                await self._protocol.outputs_closed.wait()
                return
        logger.warning(
            "claude pid %d exited, but a process it started still held its output after %.0f s; stopping its group",
            self.pid,
            DRAIN_AFTER_EXIT,
        )
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self._transport.close()  # the readers see the end of the output now

    async def _drain_stderr(self) -> None:
        assert self._proc.stderr
        while line := await self._proc.stderr.readline():
            self._stderr_tail.append(line.decode(errors="replace").rstrip())
