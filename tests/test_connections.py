"""Many idle clients, as a web page can open: the bridge keeps answering and keeps its log readable."""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

from claude_bridge import connections
from conftest import Bridge


def open_files_limit(pid: int) -> tuple[int, int]:
    (line,) = [line for line in Path(f"/proc/{pid}/limits").read_text().splitlines() if "open files" in line]
    soft, hard = line.split()[3:5]
    return int(soft), int(hard)


@contextlib.contextmanager
def idle_connections(bridge: Bridge, count: int) -> Iterator[list[socket.socket]]:
    """`count` connections that never send a byte (past the listen backlog they wait in the kernel, unaccepted)."""
    opened = [socket.create_connection(("127.0.0.1", bridge.port), timeout=30) for _ in range(count)]
    try:
        yield opened
    finally:
        for sock in opened:
            sock.close()


def answered(bridge: Bridge, text: str) -> str | None:
    answer = bridge.client(timeout=30).chat.completions.create(
        model="sonnet", messages=[{"role": "user", "content": text}]
    )
    return answer.choices[0].message.content


def test_idle_clients_past_the_soft_open_file_limit_leave_room_for_a_real_one(start_bridge, fake):
    bridge = start_bridge(wrapper=("prlimit", "--nofile=256:4096", "--"))
    with idle_connections(bridge, 300):
        assert answered(bridge, "past 256") == "ECHO: past 256"
    assert open_files_limit(bridge.process.pid) == (4096, 4096), "the soft limit is raised to the hard one at start"


def test_running_out_of_descriptors_is_one_log_line_a_minute_not_a_traceback_per_accept(start_bridge, fake):
    bridge = start_bridge(wrapper=("prlimit", "--nofile=128:128", "--"))
    with idle_connections(bridge, 150):  # asyncio tries to accept each waiting one, many times a second
        bridge.wait_for_log("Out of file descriptors")
    assert answered(bridge, "room again") == "ECHO: room again"
    log = bridge.log.read_text()
    assert "Traceback" not in log
    assert log.count("Out of file descriptors") == 1, log[-3000:]


def test_running_out_of_descriptors_is_logged_once_per_interval_and_other_errors_as_they_come():
    failures = connections.AcceptFailures(interval=3600)

    def record(error: OSError) -> logging.LogRecord:
        exc_info = (type(error), error, None)
        return logging.LogRecord("mitmproxy.master", logging.ERROR, __file__, 1, "Unhandled error.", None, exc_info)

    first = record(OSError(errno.EMFILE, "Too many open files"))
    assert failures.filter(first)
    assert first.exc_info is None
    assert first.getMessage().startswith("Out of file descriptors (Too many open files)")
    assert not failures.filter(record(OSError(errno.ENFILE, "Too many open files in system")))
    other = record(OSError(errno.ECONNRESET, "Connection reset by peer"))
    assert failures.filter(other)
    assert other.exc_info is not None
