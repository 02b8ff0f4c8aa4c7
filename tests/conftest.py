"""Fixtures: the fake Anthropic API, the real pinned Claude CLI, and the bridge as a real mitmproxy process."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from claude_bridge.claude import events
from fake_anthropic import FakeAnthropic, Recorded, bridge_env

ROOT = Path(__file__).resolve().parent.parent
RECORDINGS = Path(__file__).resolve().parent / "recordings"


def recorded_lines(name: str) -> list[bytes]:
    """The stdout lines of a recorded real CLI run (see recordings/README.md)."""
    return [line for line in (RECORDINGS / f"{name}.stdout.jsonl").read_bytes().splitlines() if line.strip()]


def recorded_events(name: str) -> list[events.Event]:
    return [event for line in recorded_lines(name) if (event := events.parse(line)) is not None]


# The CLI under test: the pinned one, or another (scripts/test-cli installs other versions and sets this).
CLAUDE_BIN = os.environ.get("CLAUDE_BRIDGE_TEST_CLI") or str(ROOT / "node_modules" / ".bin" / "claude")


@pytest.fixture(scope="session")
def claude_bin() -> str:
    if not os.access(CLAUDE_BIN, os.X_OK):
        if "CLAUDE_BRIDGE_TEST_CLI" in os.environ:
            pytest.fail(f"CLAUDE_BRIDGE_TEST_CLI names no runnable file: {CLAUDE_BIN}")
        pytest.fail(f"The pinned Claude CLI is missing at {CLAUDE_BIN}: run `npm ci` in {ROOT} (scripts/test does).")
    return CLAUDE_BIN


@pytest.fixture(scope="session")
def claude_version(claude_bin: str) -> str:
    """The version the CLI under test gives, as in "2.1.331" of `2.1.331 (Claude Code)`."""
    printed = subprocess.run([claude_bin, "--version"], capture_output=True, text=True, timeout=60, check=True)
    return printed.stdout.split()[0]


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as fake:
        yield fake


class Fake:
    """The session's fake API as one test sees it: its own requests only, default behaviour restored after."""

    def __init__(self, server: FakeAnthropic) -> None:
        self.server = server
        self._seen = len(server.requests)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def requests(self) -> list[Recorded]:
        return self.server.requests[self._seen :]

    def enqueue(self, *behaviours: object) -> None:
        self.server.enqueue(*behaviours)  # type: ignore[arg-type]


@pytest.fixture
def fake(fake_server: FakeAnthropic) -> Iterator[Fake]:
    fake_server.reset()
    yield Fake(fake_server)
    fake_server.reset()


def first_response(sock: socket.socket) -> tuple[int, bytes]:
    """The status and body of the first response on a raw socket, an interim `100 Continue` included."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += _received(sock, data)
    head, _, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    while length and len(body) < int(length[1]):
        body += _received(sock, data + body)
    return int(head.split(b" ", 2)[1]), body


def _received(sock: socket.socket, so_far: bytes) -> bytes:
    piece = sock.recv(65536)
    if not piece:
        raise ConnectionError(f"the connection closed after {so_far[:200]!r}")
    return piece


def rss(pid: int) -> int:
    """The resident memory of process `pid`, in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s*(\d+) kB", status)[1]) * 1024  # type: ignore[index]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Bridge:
    """A bridge process (`claude-bridge` or `mitmdump -s`) listening on 127.0.0.1:`port`."""

    def __init__(
        self,
        argv: list[str],
        env: dict[str, str],
        log: Path,
        port: int,
        confdir: Path | None = None,
        proxy: bool = False,
        access_key: str | None = None,
    ) -> None:
        self.confdir = confdir
        self.api_key = access_key or "sk-test"
        self.proxy = proxy
        self.tmpdir = Path(env["TMPDIR"])
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"bridge exited at start:\n{self.log.read_text()}")
            try:
                with self.get("/health") as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):  # a loaded machine answers late
                time.sleep(0.1)
        raise RuntimeError(f"bridge not ready after 30 s:\n{self.log.read_text()}")

    def log_once(self, found: Callable[[str], object], what: str = "", seconds: float = 30.0, since: int = 0) -> str:
        """The log (from byte `since` on) once `found(log)` holds; fails saying `what` was awaited. A request's line is
        written when its response has ended, which may be a moment after the client has read it."""
        deadline = time.monotonic() + seconds
        while not found(log := self.log.read_bytes()[since:].decode(errors="replace")):
            assert time.monotonic() < deadline, (
                f"waited {seconds} s for {what or 'a line'} in the bridge's log, which ends:\n{log[-3000:]}"
            )
            time.sleep(0.02)
        return log

    def client(self, **kwargs: object) -> openai.OpenAI:
        return openai.OpenAI(
            **{"base_url": self.url + "/v1", "api_key": self.api_key, "max_retries": 0, **kwargs},
            _strict_response_validation=True,
        )

    def async_client(self, **kwargs: object) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            **{"base_url": self.url + "/v1", "api_key": self.api_key, "max_retries": 0, **kwargs},
            _strict_response_validation=True,
        )

    def get(self, path: str) -> Any:
        """GET a bridge endpoint: directly in reverse mode, as a request for api.openai.com through a proxy mode."""
        headers = {"Authorization": f"Bearer {self.api_key}"}
        if not self.proxy:
            return urllib.request.urlopen(urllib.request.Request(self.url + path, headers=headers), timeout=1)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": self.url}))
        return opener.open(urllib.request.Request("http://api.openai.com" + path, headers=headers), timeout=1)

    @property
    def ca_cert(self) -> Path:
        assert self.confdir is not None
        return self.confdir / "mitmproxy-ca-cert.pem"

    def run_dirs(self) -> list[Path]:
        """Private run directories that still exist."""
        return sorted(self.tmpdir.glob("claude-bridge-*"))

    def health(self) -> dict[str, Any]:
        with self.get("/health") as response:
            health: dict[str, Any] = json.load(response)
            return health

    def wait_idle(self, seconds: float = 5.0) -> None:
        """Assert that every run ended: no CLI, no private run directory, no run counted in /health."""
        deadline = time.monotonic() + seconds
        while self._busy() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.claude_children() == []
        assert self.run_dirs() == []
        health = self.health()
        assert (health["runs_in_flight"], health["runs_queued"]) == (0, 0)

    def _busy(self) -> bool:
        health = self.health()
        return bool(self.claude_children() or self.run_dirs() or health["runs_in_flight"] or health["runs_queued"])

    def claude_children(self) -> list[int]:
        """Live `claude` processes started by the bridge (they run in their own sessions, so look by parent)."""
        return [pid for pid, name in _children(self.process.pid) if name == "claude"]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def wait_for(condition: Callable[[], object], what: str = "", seconds: float = 20.0, interval: float = 0.05) -> None:
    """Poll until `condition()` is truthy; fail, saying `what` was awaited, after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"waited {seconds} s for {what or 'the condition'}"
        time.sleep(interval)


def alive(pid: int) -> bool:
    """Running or sleeping; a zombie left to an init that does not reap is dead for our purpose."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _children(pid: int) -> list[tuple[int, str]]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append((int(stat.parent.name), name))
    return found


@pytest.fixture(scope="session")
def start_bridge(tmp_path_factory: pytest.TempPathFactory, fake_server: FakeAnthropic, claude_bin: str):
    """Start a bridge with extra `--set` options; every bridge started is stopped at the end of the session."""
    started: list[Bridge] = []

    def start(
        *options: str,
        env: dict[str, str] | None = None,
        claude: str | None = None,
        web: bool = False,
        mode: str | None = None,
        confdir: Path | None = None,
        port: int | None = None,
        args: tuple[str, ...] = (),
        wrapper: tuple[str, ...] = (),
    ) -> Bridge:
        """`wrapper` runs before the bridge's interpreter and must exec it (so its pid is the bridge's): unshare,
        prlimit."""
        home = tmp_path_factory.mktemp("home")
        port = port or free_port()
        argv = [*wrapper, sys.executable, "-m", "claude_bridge", "--port", str(port)]
        argv += ["--claude-bin", claude or claude_bin, *args]
        confdir = confdir or home / "certs"
        argv += ["--confdir", str(confdir)]
        argv += ["--web"] if web else []
        argv += ["--mode", mode] if mode else []
        # Warm CLIs and live sessions would count as processes and run directories left behind; their own tests
        # turn them on. The compatibility probe runs CLIs of its own at start; its own tests turn it on too.
        for off in ("claude_pool_size=0", "claude_live_sessions=0", "claude_probe=false"):
            if not any(option.startswith(off.split("=")[0] + "=") for option in options):
                options = (off, *options)
        for option in options:
            argv += ["--set", option]
        proxy = mode is not None and not mode.startswith("reverse")
        # The key the test's own requests (health checks included) carry: the access key, else the first app's key.
        keys = [option.partition("=")[2] for option in options if option.startswith("bridge_access_key=")]
        keys = keys or [option.rpartition("=")[2] for option in options if option.startswith("bridge_app_keys=")][:1]
        env = bridge_env(home, fake_server.url, env)
        bridge = Bridge(argv, env, home / "bridge.log", port, confdir, proxy, access_key=keys[-1] if keys else None)
        started.append(bridge)
        return bridge

    yield start
    for bridge in started:
        bridge.stop()


@pytest.fixture(scope="session")
def bridge(start_bridge) -> Bridge:
    """The default bridge; CLI retries off so error tests see the API's answer at once."""
    return start_bridge("claude_max_retries=0")


# The fuzz tests (test_fuzz.py) count the cases they passed here; the summary reports them.
FUZZ_CASES = pytest.StashKey[dict[str, int]]()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    cases = config.stash.get(FUZZ_CASES, None)
    if not cases:
        return
    if config.get_verbosity() > 0:
        for test, count in sorted(cases.items()):
            terminalreporter.write_line(f"fuzz: {count:6} {test}")
    terminalreporter.write_line(
        f"fuzz: {sum(cases.values())} cases passed, each answered or refused with a 4xx OpenAI error (no 5xx, no hang)"
    )
