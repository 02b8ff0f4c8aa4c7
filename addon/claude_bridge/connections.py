"""What the bridge's listeners hold open: a file descriptor per client.

Every client connection takes a descriptor, and a soft limit of 1024 is common: about a thousand idle clients left
no descriptor for anything else, so every request timed out, and asyncio logged each failed accept with a traceback
(over a thousand a second). The bridge raises the soft limit to the hard one and logs failed accepts once a minute.
"""

from __future__ import annotations

import errno
import logging
import time

logger = logging.getLogger(__name__)

# The loggers asyncio's failed accepts reach: mitmproxy's loop exception handler, or asyncio's default one.
ACCEPT_FAILURE_LOGGERS = ("mitmproxy.master", "asyncio")
OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE)


def raise_open_file_limit() -> tuple[int, int] | None:
    """Raise the soft open-file limit as far as the hard one allows; the limits before and after, if it rose."""
    try:
        import resource
    except ImportError:  # Windows: no such limit
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # An unlimited hard limit is refused as a soft one (macOS takes at most 10240 unless raised system-wide).
    for target in (hard, 65536, 10240) if hard == resource.RLIM_INFINITY else (hard,):
        if target == resource.RLIM_INFINITY or target <= soft:
            continue
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            continue
        return soft, target
    return None


class AcceptFailures(logging.Filter):
    """Lets one failure for want of descriptors through per `interval`, as a line that says what to do."""

    def __init__(self, interval: float = 60.0) -> None:
        super().__init__()
        self.interval = interval
        self._quiet_until = 0.0
        self._held = 0

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not (isinstance(error, OSError) and error.errno in OUT_OF_DESCRIPTORS):
            return True
        now = time.monotonic()
        if now < self._quiet_until:
            self._held += 1
            return False
        record.msg = (
            "Out of file descriptors (%s): new connections wait until others close. "
            "Logged at most every %d s; %d more since the last."
        )
        record.args = (error.strerror, self.interval, self._held)
        record.exc_info, record.exc_text = None, None
        self._quiet_until, self._held = now + self.interval, 0
        return True


class Listeners:
    """A child addon of the bridge: the descriptor limit raised at start, and failed accepts logged sparingly."""

    def __init__(self) -> None:
        self.accept_failures = AcceptFailures()

    def running(self) -> None:
        if raised := raise_open_file_limit():
            logger.info("Raised the open-file limit from %d to %d (each client connection takes one).", *raised)
        for name in ACCEPT_FAILURE_LOGGERS:
            logging.getLogger(name).addFilter(self.accept_failures)

    def done(self) -> None:
        for name in ACCEPT_FAILURE_LOGGERS:
            logging.getLogger(name).removeFilter(self.accept_failures)
