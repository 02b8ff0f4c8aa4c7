"""Every way a CLI run can fail, in one hierarchy (the translate layer maps each to an OpenAI error):

ClaudeError
├── ClaudeNotFound        the CLI could not be started
├── RunDirUnwritable      the temp dir would not take the run's private directory
├── RunsExhausted         every run slot is taken and the queue is full
├── ClaudeExited          the CLI ended without its `result` line
├── IdleTimeout           it printed nothing for longer than the idle limit
├── TotalTimeout          the run went past its deadline
├── LineTooLong           a stdout line longer than any stream-json line
└── MalformedLine         a stdout line that is not one of its stream-json lines
"""

from __future__ import annotations

from pathlib import Path


class ClaudeError(Exception):
    """A CLI run failed; the subclass says how, its attributes say enough for a message a person can act on."""


class ClaudeNotFound(ClaudeError):
    def __init__(self, claude_bin: str) -> None:
        super().__init__(claude_bin)
        self.claude_bin = claude_bin


class RunDirUnwritable(ClaudeError):
    """Full, over quota, read-only, or gone."""

    def __init__(self, parent: Path, error: OSError) -> None:
        super().__init__(f"{parent}: {error.strerror or error}")
        self.parent = parent
        self.errno = error.errno
        self.strerror = error.strerror or str(error)


class RunsExhausted(ClaudeError):
    def __init__(self, running: int, queued: int) -> None:
        super().__init__(f"{running} runs, {queued} queued")
        self.running = running
        self.queued = queued


class ClaudeExited(ClaudeError):
    def __init__(self, returncode: int | None, stderr: str) -> None:
        super().__init__(f"exit code {returncode}: {stderr or 'no output on stderr'}")
        self.returncode = returncode
        self.stderr = stderr


class IdleTimeout(ClaudeError):
    pass


class TotalTimeout(ClaudeError):
    pass


class LineTooLong(ClaudeError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"a stdout line longer than {limit // 2**20} MiB")
        self.limit = limit


class MalformedLine(ClaudeError):
    """The message says what the CLI printed."""
