"""Many idle clients, as a web page can open: the bridge keeps answering, closes them, and keeps its log readable."""

from __future__ import annotations

import contextlib
import errno
import http.client
import json
import logging
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import taddons, tflow

from claude_bridge import connections
from claude_bridge.addon import ClaudeBridge
from conftest import Bridge
from tls_server import TlsServer

CHAT = b'{"model": "sonnet", "messages": [{"role": "user", "content": "%s"}]}'


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


def closed_by_the_bridge(sock: socket.socket) -> bool:
    """Waits (up to the socket's timeout) for the bridge to close `sock`."""
    return sock.recv(1) == b""


def still_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    finally:
        sock.setblocking(True)


def test_idle_clients_past_the_soft_open_file_limit_leave_room_for_a_real_one(start_bridge, fake):
    bridge = start_bridge(wrapper=("prlimit", "--nofile=256:4096", "--"))
    with idle_connections(bridge, 300):
        assert answered(bridge, "past 256") == "ECHO: past 256"
    assert open_files_limit(bridge.process.pid) == (4096, 4096), "the soft limit is raised to the hard one at start"


def test_clients_carrying_no_request_are_closed_after_the_idle_timeout_and_busy_ones_are_not(start_bridge, fake):
    bridge = start_bridge("bridge_idle_timeout=1")
    with socket.create_connection(("127.0.0.1", bridge.port), timeout=30) as busy:
        body = CHAT % b"[[fake:hang]]"
        head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        busy.sendall(head + b"Content-Length: %d\r\n\r\n" % len(body))
        busy.sendall(body)
        deadline = time.monotonic() + 30
        while not fake.requests and time.monotonic() < deadline:  # the run is waiting for the API
            time.sleep(0.05)
        assert fake.requests
        keep_alive = http.client.HTTPConnection("127.0.0.1", bridge.port, timeout=30)
        keep_alive.request("GET", "/health")
        assert json.loads(keep_alive.getresponse().read())["status"] == "ok"
        with socket.create_connection(("127.0.0.1", bridge.port), timeout=30) as silent:
            assert closed_by_the_bridge(silent), "no request yet"
            assert closed_by_the_bridge(keep_alive.sock), "no request since the last"
            assert still_open(busy), "its answer is still coming"
    bridge.wait_idle()


def test_a_tunnel_passed_through_untouched_outlives_the_idle_timeout_and_a_decrypted_one_does_not(
    start_bridge, fake, tmp_path
):
    bridge = start_bridge("bridge_idle_timeout=1", mode="regular")
    with TlsServer(tmp_path) as stand_in:
        tunnel = http.client.HTTPSConnection(
            "127.0.0.1", bridge.port, timeout=30, context=ssl.create_default_context(cafile=stand_in.ca)
        )
        tunnel.set_tunnel("localhost", stand_in.port)
        tunnel.request("GET", "/before")
        assert json.loads(tunnel.getresponse().read())["path"] == "/before"
        decrypted = http.client.HTTPSConnection(
            "127.0.0.1", bridge.port, timeout=30, context=ssl.create_default_context(cafile=bridge.ca_cert)
        )
        decrypted.set_tunnel("api.openai.com", 443)
        decrypted.request("GET", "/v1/models", headers={"Authorization": f"Bearer {bridge.api_key}"})
        assert decrypted.getresponse().read()
        assert closed_by_the_bridge(decrypted.sock), "no request since the last"
        tunnel.request("GET", "/after")
        assert json.loads(tunnel.getresponse().read())["path"] == "/after", "another app's quiet connection"


def test_running_out_of_descriptors_is_one_log_line_a_minute_not_a_traceback_per_accept(start_bridge, fake):
    bridge = start_bridge(wrapper=("prlimit", "--nofile=128:128", "--"))
    with idle_connections(bridge, 150):  # asyncio tries to accept each waiting one, many times a second
        bridge.log_once(lambda log: "Out of file descriptors" in log, "the out-of-descriptors line")
    assert answered(bridge, "room again") == "ECHO: room again"
    log = bridge.log.read_text()
    assert "Traceback" not in log
    assert log.count("Out of file descriptors") == 1, log[-3000:]


async def test_the_idle_timer_runs_only_while_a_connection_carries_nothing():
    bridge = ClaudeBridge()
    with taddons.context(Proxyserver(), bridge):
        listeners = bridge.listeners
        regular = tflow.tclient_conn()
        listeners.client_connected(regular)
        assert listeners._clients[regular.id].timer is not None, "a regular-mode client speaks HTTP first"
        listeners.http_connect(tflow.tflow(client_conn=regular))
        assert listeners._clients[regular.id].timer is None, "a tunnel is busy until a request shows up inside it"
        inside = tflow.tflow(client_conn=regular)
        listeners.requestheaders(inside)
        assert listeners._clients[regular.id].timer is None
        listeners.response(inside)
        assert listeners._clients[regular.id].timer is not None, "decrypted: idle between requests"
        transparent = tflow.tclient_conn()
        transparent.proxy_mode = ProxyMode.parse("transparent")
        listeners.client_connected(transparent)
        assert transparent.id not in listeners._clients, "it may carry another app's quiet protocol"
        listeners.done()


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
