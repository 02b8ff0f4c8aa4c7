"""What the bridge's listeners hold open: a file descriptor per client, and idle clients that would keep them.

Every client connection takes a descriptor, and a soft limit of 1024 is common. mitmproxy closes a connection only
after `tcp_timeout` (600 s) of silence, so about a thousand idle clients left no descriptor for anything else: every
request timed out, and asyncio logged each failed accept with a traceback (over a thousand a second). The bridge
raises the soft limit to the hard one, closes client connections that carry no request for `bridge_idle_timeout`,
and logs failed accepts once a minute. Silence is the wrong measure for the bridge: a client waiting minutes for a
non-streamed answer hears nothing either, so only the time with no request in progress counts.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from dataclasses import dataclass, field

from mitmproxy import connection, ctx, http, tcp
from mitmproxy.proxy.mode_specs import RegularMode, ReverseMode

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
            "Out of file descriptors (%s): new connections wait until idle ones close (option bridge_idle_timeout). "
            "Logged at most every %d s; %d more since the last."
        )
        record.args = (error.strerror, self.interval, self._held)
        record.exc_info, record.exc_text = None, None
        self._quiet_until, self._held = now + self.interval, 0
        return True


@dataclass
class _Client:
    """The flows a client connection carries now, and while it carries none, the timer that will close it."""

    flows: set[str] = field(default_factory=set)
    timer: asyncio.TimerHandle | None = None


class Listeners:
    """A child addon of the bridge: the descriptor limit raised, failed accepts logged sparingly, idle clients closed.

    A connection is watched from its start in reverse and regular mode (their clients speak HTTP first), otherwise
    from its first request: the other modes also carry other apps' connections, some quiet for hours. A CONNECT
    tunnel counts as busy until a request shows up inside it (it was decrypted); tunnels passed through untouched
    are left to mitmproxy's `tcp_timeout`.
    """

    TUNNEL = "tunnel"

    def __init__(self) -> None:
        self.accept_failures = AcceptFailures()
        self._clients: dict[str, _Client] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def running(self) -> None:
        if raised := raise_open_file_limit():
            logger.info("Raised the open-file limit from %d to %d (each client connection takes one).", *raised)
        for name in ACCEPT_FAILURE_LOGGERS:
            logging.getLogger(name).addFilter(self.accept_failures)

    def done(self) -> None:
        for name in ACCEPT_FAILURE_LOGGERS:
            logging.getLogger(name).removeFilter(self.accept_failures)
        for client in self._clients.values():
            if client.timer is not None:
                client.timer.cancel()
        self._clients.clear()

    def client_connected(self, client: connection.Client) -> None:
        if client.transport_protocol == "tcp" and isinstance(client.proxy_mode, RegularMode | ReverseMode):
            self._idle(client.id, self._clients.setdefault(client.id, _Client()))

    def client_disconnected(self, client: connection.Client) -> None:
        if (watched := self._clients.pop(client.id, None)) and watched.timer is not None:
            watched.timer.cancel()

    def http_connect(self, flow: http.HTTPFlow) -> None:
        self._start(flow.client_conn, self.TUNNEL)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        watched = self._start(flow.client_conn, flow.id, watch=flow.client_conn.transport_protocol == "tcp")
        if watched is not None:
            watched.flows.discard(self.TUNNEL)

    def response(self, flow: http.HTTPFlow) -> None:
        self._end(flow.client_conn, flow.id)

    def error(self, flow: http.HTTPFlow) -> None:
        self._end(flow.client_conn, flow.id)

    def websocket_start(self, flow: http.HTTPFlow) -> None:
        self._start(flow.client_conn, flow.id)

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        self._end(flow.client_conn, flow.id)

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        self._start(flow.client_conn, flow.id)

    def tcp_end(self, flow: tcp.TCPFlow) -> None:
        self._end(flow.client_conn, flow.id)

    def tcp_error(self, flow: tcp.TCPFlow) -> None:
        self._end(flow.client_conn, flow.id)

    def _start(self, client: connection.Client, flow_id: str, watch: bool = False) -> _Client | None:
        watched = self._clients.setdefault(client.id, _Client()) if watch else self._clients.get(client.id)
        if watched is not None:
            watched.flows.add(flow_id)
            if watched.timer is not None:
                watched.timer.cancel()
                watched.timer = None
        return watched

    def _end(self, client: connection.Client, flow_id: str) -> None:
        watched = self._clients.get(client.id)
        if watched is not None and flow_id in watched.flows:
            watched.flows.discard(flow_id)
            if not watched.flows:
                self._idle(client.id, watched)

    def _idle(self, client_id: str, watched: _Client) -> None:
        loop = asyncio.get_running_loop()
        watched.timer = loop.call_later(ctx.options.bridge_idle_timeout, self._close, client_id)

    def _close(self, client_id: str) -> None:
        """Closes the connection as mitmproxy's own `tcp_timeout` does (and says so in the log)."""
        proxyserver = ctx.master.addons.get("proxyserver")
        handler = proxyserver.connections.get(client_id) if proxyserver else None
        if handler is not None:
            task = asyncio.get_running_loop().create_task(handler.on_timeout())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
