"""Clients leaving at every phase of a run, the bridge shutting down under load, and restarting after a crash."""

from __future__ import annotations

import functools
import json
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

import conftest
from conftest import alive


def open_chat(bridge, content: str, *, stream: bool = True) -> socket.socket:
    """A raw client connection with a chat request sent, so the test decides to the byte when it hangs up."""
    body = json.dumps({"model": "sonnet", "stream": stream, "messages": [{"role": "user", "content": content}]})
    sock = socket.create_connection(("127.0.0.1", bridge.port), timeout=10)
    head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(body)}\r\n"
    sock.sendall(f"{head}Content-Type: application/json\r\n\r\n{body}".encode())
    return sock


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    received = b""
    while marker not in received:
        data = sock.recv(65536)
        assert data, f"connection closed before {marker!r}: {received!r}"
        received += data
    return received


wait_for = functools.partial(conftest.wait_for, seconds=10.0, interval=0.005)


@pytest.fixture(scope="module")
def one_run_bridge(start_bridge):
    """One run at a time, so a queued request is easy to make."""
    return start_bridge("claude_max_runs=1", "claude_max_queued=4", "claude_max_retries=0")


def leave_while_queued(bridge) -> None:
    running = open_chat(bridge, "[[fake:stall text=busy]]")
    read_until(running, b"data:")
    queued = open_chat(bridge, "queued")
    wait_for(lambda: bridge.health()["runs_queued"] == 1)
    queued.close()
    wait_for(lambda: bridge.health()["runs_queued"] == 0)
    running.close()


def leave_while_spawning(bridge) -> None:
    sock = open_chat(bridge, "[[fake:reply text=unread delay=1]]")
    wait_for(bridge.claude_children)
    sock.close()


def leave_while_streaming(bridge) -> None:
    sock = open_chat(bridge, "[[fake:reply text=streaming-for-a-while delay=0.2]]")
    read_until(sock, b"data:")
    sock.close()


def leave_after_the_last_chunk(bridge) -> None:
    sock = open_chat(bridge, "all of it")
    assert b'"finish_reason":"stop"' in read_until(sock, b"data: [DONE]")
    sock.close()


def leave_while_waiting_for_a_json_answer(bridge) -> None:
    sock = open_chat(bridge, "[[fake:hang]]", stream=False)
    wait_for(bridge.claude_children)
    time.sleep(0.5)
    sock.close()


@pytest.mark.parametrize(
    "leave",
    [
        leave_while_queued,
        leave_while_spawning,
        leave_while_streaming,
        leave_after_the_last_chunk,
        leave_while_waiting_for_a_json_answer,
    ],
)
def test_a_client_leaving_at_any_phase_leaves_no_process_and_frees_its_slot(one_run_bridge, fake, leave):
    leave(one_run_bridge)
    one_run_bridge.wait_idle()
    # The single slot is free again: the next request runs at once.
    answer = one_run_bridge.client(timeout=30).chat.completions.create(
        model="sonnet", messages=[{"role": "user", "content": "next"}]
    )
    assert answer.choices[0].message.content == "ECHO: next"


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_shutdown_ends_every_run_and_tells_each_client(start_bridge, fake, signal_name):
    bridge = start_bridge("claude_max_retries=0")
    client = bridge.client(timeout=30)
    streaming = client.chat.completions.create(
        model="sonnet", messages=[{"role": "user", "content": "[[fake:stall text=partial]]"}], stream=True
    )
    first = next(iter(streaming))
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(
            client.chat.completions.create, model="sonnet", messages=[{"role": "user", "content": "[[fake:hang]]"}]
        )
        wait_for(lambda: len(bridge.claude_children()) == 2)
        pids = bridge.claude_children()
        bridge.process.send_signal(getattr(signal, signal_name))
        with pytest.raises(openai.APIError) as in_stream:
            list(streaming)
        with pytest.raises(openai.APIStatusError) as before_text:
            waiting.result()
    assert first.choices[0].delta.role == "assistant"
    assert "shutting down" in in_stream.value.message
    assert before_text.value.status_code == 503
    assert before_text.value.code == "bridge_shutting_down"
    assert bridge.process.wait(10) == 0
    assert "cancelled: the bridge is shutting down" in bridge.log.read_text()
    assert not any(alive(pid) for pid in pids)
    assert bridge.run_dirs() == []


def test_a_restart_after_a_crash_finds_no_stale_state(start_bridge, fake):
    crashed = start_bridge()
    stream = crashed.client().chat.completions.create(
        model="sonnet", messages=[{"role": "user", "content": "[[fake:stall text=stuck]]"}], stream=True
    )
    next(iter(stream))
    crashed.process.send_signal(signal.SIGKILL)
    crashed.process.wait(10)
    assert crashed.run_dirs(), "a SIGKILLed bridge cannot clean up after itself"

    restarted = start_bridge(port=crashed.port, env={"TMPDIR": str(crashed.tmpdir)})
    assert restarted.run_dirs() == []
    answer = restarted.client().chat.completions.create(model="sonnet", messages=[{"role": "user", "content": "back"}])
    assert answer.choices[0].message.content == "ECHO: back"
    restarted.wait_idle()
