"""Faults of the Anthropic API (played by the fake) and of the CLI itself, through the official openai SDK.

For each one the client gets the right status, or an in-stream error once text has gone out (and never that text
twice), within the configured time; the bridge's log names the cause; no `claude` process or run directory is left.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
from stand_in_claude import COMPLAINT, GARBAGE

from conftest import alive
from fake_anthropic import ApiError, Behaviour, Gate, Hang, Reset, Stall, StreamError

IDLE_TIMEOUT = 5
MARGIN = 15
"""Seconds allowed on top of what the fault itself takes: a correctness deadline on a shared machine, no speed test."""

EXTRA_USAGE = (
    "Third-party apps now draw from your extra usage, not your plan limits. "
    "Turn on extra usage at claude.ai/settings/usage to keep going."
)


@pytest.fixture(scope="module")
def faulty_bridge(start_bridge):
    """The real CLI, which gives up on the API at once and is stopped after IDLE_TIMEOUT s of silence."""
    return start_bridge(f"claude_idle_timeout={IDLE_TIMEOUT}", "claude_max_retries=0")


@pytest.fixture(scope="module")
def stand_in_bridge(start_bridge, tmp_path_factory):
    """A bridge whose CLI is tests/stand_in_claude.py, in a file named `claude` like the real one."""
    claude = tmp_path_factory.mktemp("stand-in") / "claude"
    claude.write_text(f"#!{sys.executable}\n" + (Path(__file__).parent / "stand_in_claude.py").read_text())
    claude.chmod(0o755)
    return start_bridge(f"claude_idle_timeout={IDLE_TIMEOUT}", claude=str(claude))


@pytest.fixture(scope="module")
def missing_cli_bridge(start_bridge, tmp_path_factory):
    return start_bridge(claude=str(tmp_path_factory.mktemp("nowhere") / "claude"))


def kill_claude(bridge, _behaviour: Behaviour) -> None:
    (pid,) = bridge.claude_children()
    os.kill(pid, signal.SIGKILL)


def release(_bridge, behaviour: Behaviour) -> None:
    assert isinstance(behaviour, Reset) and behaviour.release is not None
    behaviour.release.set()


@dataclass(frozen=True)
class Fault:
    """One way for a request to fail, and what the client and the log must show for it."""

    name: str
    status: int  # the HTTP status; once text has gone out, the same error comes in the stream
    code: str
    message: str  # part of the client's error message
    behaviour: Callable[[], Behaviour | None] = lambda: None  # the fake API's answer (None: its default echo)
    # The conftest's default bridge, with a patient idle watchdog: a loaded machine may start the CLI slowly.
    bridge: str = "bridge"
    prompt: str = "hi"
    logged: str = ""  # part of the bridge's log line, when not the message
    text: str = ""  # what a streaming client gets before the error
    waits: bool = False  # the idle watchdog has to fire first
    interrupt: Callable[..., None] | None = None  # once the client has text (not streaming: once the API sent some)
    streaming: tuple[bool, ...] = (False, True)
    retry_after: bool = False


FAULTS = [
    Fault("api-401", 401, "claude_not_logged_in", "claude auth login",
          lambda: ApiError(401, "authentication_error", "invalid x-api-key"), logged="Not logged in"),
    Fault("api-403", 403, "claude_request_rejected", "API Error: 403 this organization has been disabled",
          lambda: ApiError(403, "permission_error", "this organization has been disabled")),
    Fault("api-429", 429, "rate_limit_exceeded", "slow down",
          lambda: ApiError(429, "rate_limit_error", "slow down"), retry_after=True),
    Fault("api-500", 502, "claude_api_error", "API Error: 500 fake internal failure",
          lambda: ApiError(500, "api_error", "fake internal failure")),
    Fault("api-529", 503, "claude_overloaded", "API Error: 529 Overloaded",
          lambda: ApiError(529, "overloaded_error", "Overloaded")),
    Fault("prompt-too-long", 400, "context_length_exceeded", "Prompt is too long",
          lambda: ApiError(400, "invalid_request_error", "prompt is too long: 300000 tokens > 200000 maximum")),
    Fault("extra-usage-400", 400, "claude_request_rejected", EXTRA_USAGE,
          lambda: ApiError(400, "invalid_request_error", EXTRA_USAGE)),
    Fault("hang-before-headers", 504, "claude_timeout", f"printed nothing for {IDLE_TIMEOUT} s", Hang, waits=True,
          bridge="faulty_bridge"),
    Fault("stall-before-text", 504, "claude_timeout", f"printed nothing for {IDLE_TIMEOUT} s",
          lambda: Stall(()), waits=True, bridge="faulty_bridge"),
    Fault("stall-mid-stream", 504, "claude_timeout", f"printed nothing for {IDLE_TIMEOUT} s",
          lambda: Stall(("stalled ",)), text="stalled ", waits=True, bridge="faulty_bridge"),
    Fault("sse-error-mid-stream", 502, "claude_stream_interrupted", "broke off",
          lambda: StreamError(("partial ", "answer")), text="partial answer"),
    Fault("reset-before-headers", 502, "claude_cli_error", "ECONNRESET", Reset),
    # An RST drops what the CLI has not read: the reset waits until the client has the text (so: streaming only).
    Fault("reset-mid-stream", 502, "claude_stream_interrupted", "broke off",
          lambda: Reset(("partial answer",), threading.Event()), text="partial answer", interrupt=release,
          streaming=(True,)),
    Fault("cli-killed", 502, "claude_cli_error", "killed by signal SIGKILL",
          Gate, text="first", interrupt=kill_claude),
    Fault("cli-missing", 503, "claude_cli_missing", "npm install -g @anthropic-ai/claude-code",
          bridge="missing_cli_bridge", logged="was not found at"),
    Fault("cli-garbage", 502, "claude_cli_error", GARBAGE[:100], bridge="stand_in_bridge", prompt="garbage"),
    Fault("cli-truncated-json", 502, "claude_cli_error", '{"type": "stream_event", "event"',
          bridge="stand_in_bridge", prompt="truncated"),
    Fault("cli-exits-early", 502, "claude_cli_error", f"exited with code 3 before it finished: {COMPLAINT}",
          bridge="stand_in_bridge", prompt="early_exit"),
    Fault("cli-overlong-line", 502, "claude_cli_error", "printed a stdout line longer than 64 MiB",
          bridge="stand_in_bridge", prompt="overlong"),
    # A process the CLI started holds its output: the error comes as soon as the CLI is gone, not after that process.
    Fault("cli-hangs-with-a-child", 504, "claude_timeout", f"printed nothing for {IDLE_TIMEOUT} s",
          bridge="stand_in_bridge", prompt="orphan_then_hang", waits=True),
    Fault("cli-exits-early-with-a-child", 502, "claude_cli_error", "exited with code 3 before it finished",
          bridge="stand_in_bridge", prompt="orphan_then_exit"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("fault", "stream"),
    [
        pytest.param(fault, stream, id=f"{fault.name}-{'stream' if stream else 'json'}")
        for fault in FAULTS
        for stream in fault.streaming
    ],
)
def test_fault_reaches_the_client_and_the_log_and_leaves_nothing(request, fake, fault, stream):
    bridge = request.getfixturevalue(fault.bridge)
    behaviour = fault.behaviour()
    if behaviour is not None:
        fake.server.default = behaviour  # for every request: the CLI retries a 401 once even with retries off
    first_text = threading.Event()
    if fault.interrupt:
        trigger = first_text if stream else behaviour.reached  # no text reaches a non-streaming client
        threading.Thread(target=lambda: trigger.wait(MARGIN) and fault.interrupt(bridge, behaviour)).start()
    log_start = bridge.log.stat().st_size
    started = time.monotonic()

    error, received = ask(bridge, fault.prompt, stream, first_text)

    took = time.monotonic() - started
    assert took < MARGIN + (IDLE_TIMEOUT if fault.waits else 0), f"the error came after {took:.1f} s"
    assert error.code == fault.code, error.message
    assert fault.message in error.message
    if stream and fault.text:
        assert not isinstance(error, openai.APIStatusError), "after text, the error comes in the stream"
        assert received == fault.text, "the text that went out, once"
    else:
        assert isinstance(error, openai.APIStatusError) and error.status_code == fault.status
        assert received == ""
    if fault.retry_after:
        assert int(error.response.headers["retry-after"]) > 0
    failed = rf"Claude run failed with {fault.status}: (.*)"
    log = bridge.log_once(lambda log: re.search(failed, log), "the run's failure", since=log_start)
    failures = re.findall(failed, log)
    assert any((fault.logged or fault.message) in line for line in failures), log
    assert all(len(line) < 1000 for line in failures), "the log quotes a bounded part of what the CLI said"
    bridge.wait_idle()


def ask(bridge, prompt: str, stream: bool, first_text: threading.Event) -> tuple[openai.APIError, str]:
    """The error a chat completion ends with, and the text a stream brought before it (`first_text` set on its way)."""
    client = bridge.client(timeout=IDLE_TIMEOUT + MARGIN)
    messages = [{"role": "user", "content": prompt}]
    received = ""
    with pytest.raises(openai.APIError) as caught:
        if not stream:
            client.chat.completions.create(model="sonnet", messages=messages)
        for chunk in client.chat.completions.create(model="sonnet", messages=messages, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                received += chunk.choices[0].delta.content
                first_text.set()
    return caught.value, received


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_an_answer_comes_at_once_though_a_child_of_the_cli_holds_its_output_and_the_child_is_stopped(
    fake, stand_in_bridge, stream
):
    client = stand_in_bridge.client(timeout=MARGIN)
    messages = [{"role": "user", "content": "orphan_then_answer"}]
    if stream:
        chunks = client.chat.completions.create(model="sonnet", messages=messages, stream=True)
        text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    else:
        text = client.chat.completions.create(model="sonnet", messages=messages).choices[0].message.content

    child = int(re.fullmatch(r"stand-in: left pid (\d+) holding stdout", text)[1])
    deadline = time.monotonic() + MARGIN  # SIGKILL went out before the answer ended; the kernel finishes it
    while alive(child):
        assert time.monotonic() < deadline, "the child holding the CLI's output is stopped with it"
        time.sleep(0.01)
    stand_in_bridge.wait_idle()


# The bridge's TMPDIR becomes a 1 MiB tmpfs in a mount namespace of the bridge's own, so filling it fills no real disk.
SMALL_TMPDIR = ("unshare", "--mount", "--", "sh", "-c", 'mount -t tmpfs -o size=1m tmpfs "$TMPDIR" && exec "$@"', "sh")


def _mount_namespaces_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "a full temp dir is made as root, on a tmpfs in a mount namespace"
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True)
    return f"no mount namespaces here: {probe.stderr.decode().strip()}" if probe.returncode else None


@pytest.fixture(scope="module")
def small_tmpdir_bridge(start_bridge):
    if reason := _mount_namespaces_unavailable():
        pytest.skip(reason)
    bridge = start_bridge(f"claude_idle_timeout={IDLE_TIMEOUT}", wrapper=SMALL_TMPDIR)
    bridge.seen_tmpdir = bridge.tmpdir
    # The tmpfs is mounted in the bridge's namespace only: this process sees it through the bridge's root.
    bridge.tmpdir = Path(f"/proc/{bridge.process.pid}/root") / bridge.tmpdir.relative_to("/")
    return bridge


def fill(path: Path) -> None:
    with path.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(bytes(64 * 1024))
        except OSError as e:
            assert e.errno == errno.ENOSPC, e


def test_a_full_temp_dir_is_a_503_naming_it_and_requests_succeed_again_once_there_is_room(fake, small_tmpdir_bridge):
    bridge = small_tmpdir_bridge
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    filler = bridge.tmpdir / "filler"
    fill(filler)
    log_start = bridge.log.stat().st_size
    try:
        with pytest.raises(openai.APIStatusError) as caught:
            bridge.client().chat.completions.create(model="sonnet", messages=messages)
        bridge.wait_idle()
    finally:
        filler.unlink()

    error = caught.value
    assert (error.status_code, error.code) == (503, "bridge_temp_dir_unwritable")
    assert f"The temporary directory {bridge.seen_tmpdir} is full" in error.message
    assert "TMPDIR" in error.message
    full = f"Claude run failed with 503: The temporary directory {bridge.seen_tmpdir} is full"
    bridge.log_once(lambda log: full in log, "the run's failure", since=log_start)
    answer = bridge.client().chat.completions.create(model="sonnet", messages=messages)
    assert answer.choices[0].message.content.endswith("hi")


def test_a_brief_429_is_passed_on_with_its_short_hint_and_a_default_client_then_succeeds(start_bridge, fake):
    """The CLI retries twice as the API's `retry-after: 1` says; its last wait becomes the client's hint (it was a
    fixed 30 s, which held a default openai-python client for over a minute)."""
    bridge = start_bridge("claude_max_retries=2")
    fake.enqueue(*[ApiError(429, "rate_limit_error", "slow down", retry_after=1)] * 3)
    raw = bridge.client(max_retries=0).chat.completions.with_raw_response
    with pytest.raises(openai.RateLimitError) as limited:
        raw.create(model="sonnet", messages=[{"role": "user", "content": "hi"}])
    headers = limited.value.response.headers
    assert 1000 <= int(headers["retry-after-ms"]) < 2000 and headers["retry-after"] == "2"
    fake.enqueue(*[ApiError(429, "rate_limit_error", "slow down", retry_after=1)] * 3)
    # A default client (2 retries, honouring the hint) gets its answer once the API lets the request through.
    answer = bridge.client(max_retries=2).chat.completions.create(
        model="sonnet", messages=[{"role": "user", "content": "hi"}]
    )
    assert answer.choices[0].message.content == "ECHO: hi"
