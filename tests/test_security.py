"""Local attackers: who may use the bridge, what its loopback backend serves, and what reaches the log."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

import openai
import pytest

from claude_bridge import backend, redact
from claude_bridge.openai.models import Model
from conftest import bridge_env, first_response, free_port


def test_listening_beyond_loopback_without_an_access_key_refuses_to_start(tmp_path, fake, claude_bin):
    port = free_port()
    argv = [sys.executable, "-m", "claude_bridge", "--listen-host", "0.0.0.0", "--port", str(port)]
    argv += ["--claude-bin", claude_bin, "--confdir", str(tmp_path / "certs")]
    done = subprocess.run(argv, env=bridge_env(tmp_path, fake.url), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"beyond loopback (0.0.0.0:{port}) without an access key" in done.stdout + done.stderr
    assert fake.requests == []


@pytest.fixture(scope="module")
def keyed_bridge(start_bridge):
    """Reachable from the network, so it demands its key."""
    return start_bridge("bridge_access_key=s3cret-bridge-key", args=("--listen-host", "0.0.0.0"))


def test_beyond_loopback_every_request_needs_the_access_key(keyed_bridge, fake):
    for key in ("sk-wrong", "s3cret-bridge-key-but-longer", "s3cret"):
        with pytest.raises(openai.AuthenticationError) as caught:
            keyed_bridge.client(api_key=key).models.list()
        assert caught.value.code == "invalid_api_key"
    answer = keyed_bridge.client(api_key="s3cret-bridge-key").chat.completions.create(
        model="sonnet", messages=[{"role": "user", "content": "let in"}]
    )
    assert answer.choices[0].message.content == "ECHO: let in"
    assert len(fake.requests) == 1


def test_an_undecodable_key_is_refused_not_let_through(keyed_bridge, fake):
    with socket.create_connection(("127.0.0.1", keyed_bridge.port), timeout=10) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer \xff\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 401")


def test_a_caller_without_the_key_gets_401_before_sending_its_body(keyed_bridge, fake):
    head = "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer sk-wrong\r\n"
    with socket.create_connection(("127.0.0.1", keyed_bridge.port), timeout=30) as sock:
        sock.sendall(f"{head}Content-Length: {16 * 1024 * 1024}\r\n\r\n".encode())  # within bridge_max_body
        status, body = first_response(sock)
    assert status == 401
    assert json.loads(body)["error"]["code"] == "invalid_api_key"
    assert fake.requests == []


def backend_ports(pid: int, public_port: int) -> list[int]:
    """The TCP ports process `pid` listens on, other than its public one: the loopback backend's."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = str(fd.readlink()) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return sorted(ports - {public_port})


def test_the_backend_serves_only_jobs_the_addon_parked(bridge, fake):
    (port,) = backend_ports(bridge.process.pid, bridge.port)
    body = b'{"model": "sonnet", "messages": [{"role": "user", "content": "hijack"}]}'
    for path in ("/v1/chat/completions", backend.JOB_PATH_PREFIX + secrets.token_urlsafe(32), "/"):
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST")
        with pytest.raises(urllib.request.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=5)
        assert caught.value.code == 404
    assert fake.requests == []
    assert bridge.claude_children() == []


@pytest.mark.parametrize(
    "framing",
    [b"Content-Length: 419430400\r\n\r\n", b"Transfer-Encoding: chunked\r\n\r\nffffffffffff\r\n"],
    ids=["400-MiB-length", "huge-chunk"],
)
def test_the_backend_refuses_an_unparked_job_without_waiting_for_its_body(bridge, fake, framing):
    (port,) = backend_ports(bridge.process.pid, bridge.port)
    path = backend.JOB_PATH_PREFIX + secrets.token_urlsafe(32)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\n".encode() + framing)
        assert sock.recv(65536).startswith(b"HTTP/1.1 404")
    assert fake.requests == []


async def test_the_backend_drops_a_connection_that_never_finishes_its_request_head():
    served = backend.Backend(head_timeout=0.1)
    await served.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(b"GET /claude-bridge/jobs/")
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
    finally:
        await served.stop()


async def test_a_parked_job_is_served_once():
    served = backend.Backend()
    await served.start()
    try:

        async def reply() -> Model:
            return Model(id="sonnet", created=0, owned_by="anthropic")

        path = served.park(backend.JsonJob(reply))
        first, second = [await _get(served.port, path) for _ in range(2)]
        assert first.startswith(b"HTTP/1.1 200")
        assert second.startswith(b"HTTP/1.1 404")
    finally:
        await served.stop()


async def _get(port: int, path: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    response = await reader.read()
    writer.close()
    return response


def test_keys_and_prompts_stay_out_of_the_log(bridge, fake):
    key, prompt = f"sk-proj-{secrets.token_hex(8)}", f"confidential-{secrets.token_hex(8)}"
    since = bridge.log.stat().st_size  # the session's bridge: earlier tests' lines are in its log
    bridge.client(api_key=key).chat.completions.create(model="sonnet", messages=[{"role": "user", "content": prompt}])
    log = bridge.log_once(lambda log: "POST /v1/chat/completions -> 200" in log, "the request's line", since=since)
    assert "POST /v1/chat/completions -> 200" in log
    assert key not in log
    assert prompt not in log


def test_the_debug_option_logs_prompts_but_never_keys(start_bridge, fake):
    bridge = start_bridge("bridge_log_prompts=true")
    key, prompt = f"sk-proj-{secrets.token_hex(8)}", f"debugging-{secrets.token_hex(8)}"
    bridge.client(api_key=key).chat.completions.create(model="sonnet", messages=[{"role": "user", "content": prompt}])
    log = bridge.log_once(lambda log: "POST /v1/chat/completions -> 200" in log, "the request's line")
    assert prompt in log
    assert key not in log


def test_run_directories_are_private_and_removed(bridge, fake):
    stream = bridge.client().chat.completions.create(
        model="sonnet", messages=[{"role": "user", "content": "[[fake:stall text=wait]]"}], stream=True
    )
    next(iter(stream))
    (run_dir,) = bridge.run_dirs()
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    assert run_dir.stat().st_uid == Path(bridge.tmpdir).stat().st_uid
    stream.close()
    bridge.wait_idle()


def test_a_request_cut_mid_headers_leaves_no_key_and_no_huge_line_in_the_log(bridge, fake):
    secret = "sk-proj-cut-short-0123456789"
    head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {secret}\r\n"
    for extra in (b"", b"X-Padding: " + b"p" * 1_000_000):
        with socket.create_connection(("127.0.0.1", bridge.port), timeout=10) as sock:
            sock.sendall(head.encode() + b"x-api-key: " + secret.encode() + b"\r\n" + extra)
    log = bridge.log_once(lambda log: log.count("before completing request headers") >= 2, "two cut requests")
    cut = [line for line in log.splitlines() if "before completing request headers" in line]
    assert len(cut) == 2
    assert all(secret not in line and "<redacted by claude-bridge>" in line for line in cut)
    assert max(len(line) for line in cut) < 2500


@pytest.mark.parametrize(
    "text",
    [
        repr(b"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-SECRET\r\n"),
        repr(b"GET / HTTP/1.1\r\nproxy-authorization: Basic sk-SECRET"),
        "x-api-key: sk-SECRET\napi-key: sk-SECRET",
        repr(b"authorization: Bearer sk-SECRET'quoted\r\n"),
    ],
)
def test_credentials_in_a_log_line_are_redacted(text):
    assert "SECRET" not in redact.redact_text(text)
