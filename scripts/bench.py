"""Side-by-side benchmark of the bridge, the npm claude-max-api-proxy and the bare Claude CLI (run: scripts/bench).

Every subject runs the pinned CLI against the project's fake Anthropic API (a per-token delay) on 127.0.0.1, so the
figures are the subjects' own costs, not a model's: nothing leaves the machine. One-shot requests first (issue 6),
then conversations (issue 14): a multi-turn chat and an agent loop through the bridge with live sessions and without,
the npm proxy and the CLI's own session, with what each follow-up read from the fake's prompt cache.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import openai

from claude_bridge.claude import mcp
from claude_bridge.claude.invocation import (
    MAX_TURNS,
    SAFE_FLAGS,
    ClaudeInvocation,
    ClaudeSettings,
    ToolSpec,
    child_env,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import load  # tests/load.py: the load test's clients, shared with the soak

from fake_anthropic import Echo, FakeAnthropic, Reply, ToolUse, bridge_env
from fake_prompt_cache import CacheUse, estimate_tokens, minimum_tokens

Json = dict[str, Any]

ROOT = Path(__file__).resolve().parent.parent
CLAUDE_BIN = ROOT / "node_modules" / ".bin" / "claude"
FAKE_API = ROOT / "tests" / "fake_anthropic.py"
MODEL = "sonnet"
PROMPT = "Say hello in five words."
LONG_TOKENS = 5000
LEVELS = (1, 8, 32)
POOL_SIZE = 2  # the bridge's default claude_pool_size
MAX_RUNS = 32  # claude_max_runs for both bridges, so 32 streams run at once instead of queueing
# One-shot requests never continue a conversation: a live session kept after each would only hold memory (and
# count against the process budget), so the single-request workloads run without them, as before they existed.
ONE_SHOT_OPTIONS = [
    f"claude_max_runs={MAX_RUNS}",
    f"claude_max_processes={MAX_RUNS + POOL_SIZE}",
    "claude_live_sessions=0",
]
PRESPAWN_WAIT = 1.0  # seconds a pre-spawned CLI gets to start up before it is fed
SETTLE = 1.0  # seconds of quiet before each measured batch
NPM_PACKAGE = "claude-max-api-proxy"
SOAK_CLIENTS = 48  # clients sending back to back: more than the soak bridge's 8 runs + 32 queued, so 429s happen
SOAK_OPTIONS = ["claude_max_runs=8", "claude_max_queued=32"]
SOAK_SAMPLE = 5.0  # seconds between RSS/fd samples

BARE_SPAWN = "bare CLI spawned"
BARE_WARM = "bare CLI pre-spawned"
POOL = "bridge pool"
NO_POOL = "bridge no pool"
NPM = "npm proxy"
SUBJECTS = (BARE_SPAWN, BARE_WARM, POOL, NO_POOL, NPM)


class BenchError(Exception):
    """A subject or the fake API could not be started or did not answer."""


# --- processes ------------------------------------------------------------------------------------------------------


class Reaper:
    """Every process group the benchmark starts, all ended at exit (also on Ctrl-C or SIGTERM)."""

    def __init__(self) -> None:
        self.servers: list[subprocess.Popen[bytes]] = []
        self.groups: set[int] = set()

    def kill_all(self) -> None:
        """SIGTERM first (the bridge then stops its warm CLIs), SIGKILL whatever is left after a few seconds."""
        self._signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for server in self.servers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(max(0.0, deadline - time.monotonic()))
        self._signal(signal.SIGKILL)
        for server in self.servers:
            server.wait()
        self.groups.clear()

    def stop(self, server: subprocess.Popen[bytes]) -> None:
        """End one server's group early (SIGTERM, then SIGKILL after a few seconds), so it idles in no later phase."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        self.groups.discard(server.pid)

    def _signal(self, signum: int) -> None:
        for group in self.groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signum)


REAPER = Reaper()


def launch(argv: list[str], env: dict[str, str], log: Path, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """A server process in a process group of its own, output to `log`."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    REAPER.servers.append(process)
    REAPER.groups.add(process.pid)
    return process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def children(pid: int) -> list[int]:
    """Live (not zombie) child processes of `pid`."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError):
            fields = _stat_fields(int(entry.name))
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def descendants(pid: int) -> list[int]:
    found = children(pid)
    return found + [grandchild for child in found for grandchild in descendants(child)]


def rss_mb(pids: list[int]) -> float:
    """Resident memory of these processes together, in MB (processes gone meanwhile count as 0)."""
    pages = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            pages += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process itself (all its threads, none of its children)."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def get_json(url: str) -> Json:
    with urllib.request.urlopen(url, timeout=2) as response:
        body: Json = json.load(response)
        return body


def wait_until(ready: Callable[[], bool], what: str, process: subprocess.Popen[bytes], log: Path, limit: float) -> None:
    """Poll `ready` until it holds; BenchError with the log's tail if the process exits or time runs out."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"{what} exited ({process.returncode}): {tail(log)}")
        with contextlib.suppress(OSError, ValueError):
            if ready():
                return
        time.sleep(0.05)
    raise BenchError(f"{what} not ready after {limit:.0f} s: {tail(log)}")


def tail(log: Path, lines: int = 8) -> str:
    return " | ".join(log.read_text(errors="replace").strip().splitlines()[-lines:])


# --- one stream, and the subjects that produce it --------------------------------------------------------------------


@dataclass
class Stream:
    """One request as the client saw it: perf_counter times of its start, each text chunk and its end."""

    start: float
    chunks: list[float] = field(default_factory=list)
    end: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.chunks)

    @property
    def ttft(self) -> float:
        return self.chunks[0] - self.start

    def gaps(self) -> list[float]:
        return [later - earlier for earlier, later in zip(self.chunks, self.chunks[1:], strict=False)]


class Subject(Protocol):
    async def stream(self, prompt: str) -> Stream: ...

    async def settle(self) -> None: ...


@dataclass
class HttpSubject:
    """An OpenAI-compatible server (bridge or npm proxy) driven with the openai SDK."""

    key: str
    url: str
    process: subprocess.Popen[bytes]
    idle_clis: int = 0  # CLIs it keeps when idle: the bridge's warm pool
    bridge: bool = True  # has the bridge's /health, with its warm and live CLIs
    log: Path | None = None
    client: openai.AsyncOpenAI = field(init=False)

    def __post_init__(self) -> None:
        self.client = openai.AsyncOpenAI(base_url=self.url + "/v1", api_key="not-needed", max_retries=0, timeout=300)

    async def stream(self, prompt: str) -> Stream:
        result = Stream(time.perf_counter())
        try:
            response = await self.client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": prompt}], stream=True
            )
            async for chunk in response:
                if chunk.choices and chunk.choices[0].delta.content:
                    result.chunks.append(time.perf_counter())
        except openai.APIError as e:
            result.error = f"{type(e).__name__}: {e}"
        result.end = time.perf_counter()
        if not result.chunks and result.error is None:
            result.error = "no text"
        return result

    async def settle(self, quiet: float = SETTLE) -> None:
        """Wait until the last requests' CLIs are gone and a pool is full again, then `quiet` seconds."""
        deadline = time.monotonic() + 60
        while not self._idle():
            if time.monotonic() > deadline:
                raise BenchError(f"{self.key}: CLIs still running 60 s after the last request")
            await asyncio.sleep(0.05)
        await asyncio.sleep(quiet)

    def _idle(self) -> bool:
        """No CLI but the full pool and the live sessions (a bridge's health counts them; the npm proxy has none)."""
        health = get_json(self.url + "/health") if self.bridge else {}
        live = health.get("live_sessions", 0)
        if len(children(self.process.pid)) != self.idle_clis + live:
            return False
        return not self.idle_clis or health["warm_clis"] == self.idle_clis


@dataclass
class BareCli:
    """The pinned CLI run exactly as the bridge runs it, read straight from its stdout."""

    env: dict[str, str]
    scratch: Path
    prespawn: float = 0.0  # seconds between spawn and input; the clock starts at the input when set

    async def stream(self, prompt: str) -> Stream:
        run_dir = Path(tempfile.mkdtemp(prefix="cli-", dir=self.scratch))
        (run_dir / "work").mkdir()
        (run_dir / "system-prompt.txt").write_text("")
        try:
            return await self._run(run_dir, prompt)
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)

    async def _run(self, run_dir: Path, prompt: str) -> Stream:
        prompt_file = run_dir / "system-prompt.txt"
        argv = [str(CLAUDE_BIN), *SAFE_FLAGS, "--model", MODEL, "--system-prompt-file", str(prompt_file)]
        argv += ["--max-turns", str(MAX_TURNS)]
        stderr = run_dir / "stderr.txt"
        result = Stream(time.perf_counter())
        with stderr.open("wb") as err:
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                cwd=run_dir / "work", env=self.env, start_new_session=True, limit=1 << 24,
            )  # fmt: skip
        REAPER.groups.add(process.pid)
        try:
            if self.prespawn:
                await asyncio.sleep(self.prespawn)
                result.start = time.perf_counter()
            await _feed(process, prompt)
            await _read_deltas(process, result)
            await asyncio.wait_for(process.wait(), 30)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            REAPER.groups.discard(process.pid)
        if process.returncode != 0 or not result.chunks:
            result.error = f"CLI exit status {process.returncode}, {len(result.chunks)} text deltas: {tail(stderr, 3)}"
        return result

    async def settle(self) -> None:
        await asyncio.sleep(SETTLE)


async def _feed(process: asyncio.subprocess.Process, prompt: str) -> None:
    """The stream-json user line the bridge writes, then end of input."""
    assert process.stdin
    message = {"role": "user", "content": [{"type": "text", "text": prompt}]}
    process.stdin.write(json.dumps({"type": "user", "message": message}).encode() + b"\n")
    await process.stdin.drain()
    process.stdin.close()


async def _read_deltas(process: asyncio.subprocess.Process, result: Stream) -> None:
    assert process.stdout
    async for line in process.stdout:
        now = time.perf_counter()
        event = json.loads(line)
        if event.get("type") == "stream_event" and event["event"].get("delta", {}).get("text"):
            result.chunks.append(now)
    result.end = time.perf_counter()


# --- starting the servers --------------------------------------------------------------------------------------------


def start_fake(token_delay: float, scratch: Path) -> str:
    port = free_port()
    argv = [sys.executable, str(FAKE_API), "--port", str(port), "--token-delay", str(token_delay)]
    log = scratch / "fake.log"
    process = launch(argv, dict(os.environ), log)

    def accepting() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True

    wait_until(accepting, "fake Anthropic API", process, log, 30)
    return f"http://127.0.0.1:{port}"


async def start_bridge(key: str, fake_url: str, scratch: Path, options: list[str]) -> HttpSubject:
    home = scratch / key.replace(" ", "-")
    port = free_port()
    argv = [sys.executable, "-m", "claude_bridge", "--port", str(port), "--claude-bin", str(CLAUDE_BIN)]
    argv += ["--confdir", str(home / "certs")]
    # The compatibility check runs once per CLI version and confdir: a user meets it once, where each bridge here
    # (with a confdir of its own) would run it at every start, beside the requests being measured.
    argv += ["--set", "claude_probe=false"]
    for option in options:
        argv += ["--set", option]
    log = scratch / f"{home.name}.log"
    process = launch(argv, bridge_env(home, fake_url), log)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: get_json(url + "/health")["status"] == "ok", key, process, log, 30)
    pool = 0 if "claude_pool_size=0" in options else POOL_SIZE
    subject = HttpSubject(key, url, process, idle_clis=pool, log=log)
    await warm_up(subject)
    return subject


async def warm_up(subject: HttpSubject) -> None:
    """One request, so the bridge's pool knows the shape (and the server is known to answer); then settle."""
    first = await subject.stream(PROMPT)
    if not first.ok:
        subject.process.terminate()
        raise BenchError(f"{subject.key} did not answer: {first.error}")
    await subject.settle()


def install_npm_proxy(scratch: Path) -> Path:
    """The npm package in a scratch prefix (installed once per run); its start script's path."""
    prefix = scratch / "npm-proxy"
    if not (prefix / "node_modules" / NPM_PACKAGE).is_dir():
        _npm_install(prefix)
    package = prefix / "node_modules" / NPM_PACKAGE
    manifest = json.loads((package / "package.json").read_text())
    bins = manifest.get("bin")
    entry = package / (next(iter(bins.values())) if isinstance(bins, dict) else bins or "dist/server/standalone.js")
    if not entry.is_file():
        raise BenchError(f"{NPM_PACKAGE} {manifest.get('version')}: no start script at {entry}")
    return entry


def _npm_install(prefix: Path) -> None:
    done = subprocess.run(
        ["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--loglevel=error", NPM_PACKAGE],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if done.returncode != 0:
        raise BenchError(f"npm install {NPM_PACKAGE} failed: {done.stderr.strip()[-400:]}")


async def start_npm_proxy(fake_url: str, scratch: Path, name: str = "npm-proxy") -> HttpSubject:
    """Its standalone server (port as its first argument), with the pinned CLI first on PATH as `claude`."""
    entry = install_npm_proxy(scratch)
    home = scratch / f"{name}-home"
    bin_dir = home / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "claude").symlink_to(CLAUDE_BIN)
    (home / "work").mkdir()
    env = bridge_env(home, fake_url) | {"DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    port = free_port()
    log = scratch / f"{name}.log"
    process = launch(["node", str(entry), str(port)], env, log, cwd=home / "work")
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: get_json(url + "/health") is not None, NPM, process, log, 30)
    subject = HttpSubject(NPM, url, process, bridge=False, log=log)
    await warm_up(subject)
    return subject


def bare_env(fake_url: str, home: Path) -> dict[str, str]:
    """What the bridge's environment becomes for its CLI (invocation.child_env)."""
    return child_env(ClaudeSettings(), ClaudeInvocation(MODEL, []), bridge_env(home, fake_url))


# --- workloads ------------------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def errors(streams: list[Stream]) -> Json:
    failed = [s.error for s in streams if not s.ok]
    return {"errors": len(failed), "error_samples": sorted({str(e) for e in failed})[:3]}


async def sequential(subject: Subject, n: int) -> Json:
    await subject.settle()
    streams = [await subject.stream(PROMPT) for _ in range(n)]
    ttfts = [s.ttft for s in streams if s.ok]
    return {
        "requests": n,
        "ttft_p50_ms": ms(percentile(ttfts, 50)) if ttfts else None,
        "ttft_p95_ms": ms(percentile(ttfts, 95)) if ttfts else None,
        "total_s": round(sum(s.end - s.start for s in streams), 3),
        **errors(streams),
    }


async def concurrent(subject: Subject, level: int, rounds: int) -> Json:
    streams: list[Stream] = []
    wall = 0.0
    for _ in range(rounds):
        await subject.settle()
        started = time.perf_counter()
        streams += await asyncio.gather(*(subject.stream(PROMPT) for _ in range(level)))
        wall += time.perf_counter() - started
    done = [s for s in streams if s.ok]
    ttfts = [s.ttft for s in done]
    return {
        "streams": level,
        "rounds": rounds,
        "ttft_p50_ms": ms(percentile(ttfts, 50)) if ttfts else None,
        "ttft_p99_ms": ms(percentile(ttfts, 99)) if ttfts else None,
        "requests_per_s": round(len(done) / wall, 2),
        "tokens_per_s": round(sum(len(s.chunks) for s in done) / wall, 1),
        **errors(streams),
    }


def long_prompt(token_delay: float) -> str:
    """A fake-API directive for LONG_TOKENS text deltas of 4 characters, token_delay apart."""
    return f'[[fake:reply text="{"tok " * LONG_TOKENS}" delay={token_delay}]]'


async def long_stream(subject: Subject, token_delay: float, pid: int | None) -> Json:
    """Chunk gaps as the client sees them; with `pid`, that process's CPU time over the stream."""
    await subject.settle()
    cpu_before = cpu_seconds(pid) if pid else 0.0
    result = await subject.stream(long_prompt(token_delay))
    cpu = cpu_seconds(pid) - cpu_before if pid else None
    gaps = result.gaps() or [0.0]
    chunks = len(result.chunks)
    return {
        "tokens_sent": LONG_TOKENS,
        "chunks": chunks,
        "gap_max_ms": ms(max(gaps)),
        "gap_p99_ms": ms(percentile(gaps, 99)),
        "duration_s": round(result.end - result.start, 2),
        "cpu_ms_per_100_chunks": round(cpu * 1000 / (chunks / 100), 2) if cpu is not None and chunks else None,
        "error": result.error,
    }


async def memory(subject: HttpSubject) -> Json:
    """RSS of the server and of its CLIs (with their children): idle, and at the peak of 8 concurrent streams."""
    await subject.settle()
    pid = subject.process.pid
    idle = (rss_mb([pid]), rss_mb(descendants(pid)))
    peak = list(idle)
    batch = asyncio.gather(*(subject.stream(PROMPT) for _ in range(8)))
    while not batch.done():
        peak = [max(peak[0], rss_mb([pid])), max(peak[1], rss_mb(descendants(pid)))]
        await asyncio.sleep(0.02)
    await batch
    return {
        "server_idle_mb": round(idle[0], 1),
        "clis_idle_mb": round(idle[1], 1),
        "server_8_streams_mb": round(peak[0], 1),
        "clis_8_streams_mb": round(peak[1], 1),
    }


# --- conversations: live sessions against the alternatives (issue 14) -----------------------------------------------

LIVE = "bridge live"
CLI_SESSION = "CLI session"
NO_LIVE = "bridge no live"
CONVERSATION_SUBJECTS = (LIVE, NPM, CLI_SESSION, NO_LIVE)
LIVE_OPTIONS = [f"claude_max_runs={MAX_RUNS}", f"claude_max_processes={MAX_RUNS}", "claude_pool_size=0"]
NO_LIVE_OPTIONS = [*LIVE_OPTIONS, "claude_live_sessions=0"]
RSS_SAMPLE = 0.1  # seconds between samples of a conversation's memory
TURN_LIMIT = 120.0  # seconds one request of a conversation may take
# Seconds a client takes between an answer and its next request, as any does. Written at once after its `result`, the
# CLI answers about 40 ms later (its own work after a turn); the bridge's hop alone gives it that time.
THINK_TIME = 0.1
# An app's instructions long enough to be cached on the real API: about 1,400 tokens by the fake's estimate, over
# Sonnet's minimum of 1,024, so the fake reports the cache reads and writes a real account would be billed.
SYSTEM_PROMPT = (
    "You are the support assistant of a bicycle shop. Answer in one or two short sentences, politely, and only "
    "about bicycles, their parts, repairs, fitting and the shop's services. When a rider asks about sizing, ask for "
    "their height and inseam if they have not given them. Never invent prices, stock or opening hours. "
) * 18
WEATHER_TOOL: Json = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
# The same answer to every chat turn: an echo would grow without end through the npm proxy, whose last user message
# is the whole conversation flattened.
CHAT_ANSWER = "A 26-inch wheel suits most adult riders; tell me your height and inseam and I will check the frame too."
AGENT_TASK = "Which of these cities is dry enough for a ride today? Check each one's weather."
SERVED = re.compile(r"POST /v1/chat/completions -> \d+ .*? by (a new CLI|a warm CLI|the live session)")


def question(turn: int) -> str:
    return f"Question {turn}: is a {20 + turn}-inch wheel right for a rider of my height?"


def weather(step: int) -> str:
    return f"city {step}: dry, {12 + step} C, light wind"


@dataclass(frozen=True)
class Workload:
    """One conversation's script: a chat of user turns, or an agent loop of tool calls answered by the client."""

    name: str  # "chat" | "agent_loop"
    requests: int  # client requests in one conversation
    tools: list[Json] | None = None

    def opening(self) -> list[Json]:
        first = AGENT_TASK if self.tools else question(0)
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": first}]

    def script(self, fake: FakeAnthropic, token_delay: float) -> None:
        """A fresh cache and queue: an agent loop's tool call per step, then its answer; the chat's one answer."""
        fake.reset()
        fake.default = Reply(tuple(CHAT_ANSWER[i : i + 4] for i in range(0, len(CHAT_ANSWER), 4)), delay=token_delay)
        if self.tools:
            calls = [ToolUse((("get_weather", {"city": f"city {step}"}),)) for step in range(self.requests - 1)]
            fake.enqueue(*calls, Reply(("Cities ", "0 to ", f"{self.requests - 2} ", "are dry."), delay=token_delay))

    def follow(self, index: int, messages: list[Json], answer: Json) -> str | None:
        """The answer and the client's next turn added to `messages`; what is wrong with the answer, if anything."""
        messages.append(answer)
        if not self.tools:
            messages.append({"role": "user", "content": question(index + 1)})
            return None
        calls = answer.get("tool_calls") or []
        if len(calls) != 1:
            return f"step {index}: expected one tool call, got {json.dumps(answer)[:200]}"
        messages.append({"role": "tool", "tool_call_id": calls[0]["id"], "content": weather(index)})
        return None


@dataclass
class Step(Stream):
    """One request of a conversation as the client saw it, with the assistant message it sends back."""

    message: Json = field(default_factory=dict)


def assistant_message(text: str, calls: list[Json]) -> Json:
    message: Json = {"role": "assistant", "content": text or None}
    return message | {"tool_calls": calls} if calls else message


class Talker(Protocol):
    """A conversation's other end: `quiet` before it, `begin` (the process to meter, and whether it is new),
    a `turn` per request, `finished` once its processes are settled, `end` after it has been metered."""

    async def quiet(self) -> None: ...

    async def begin(self, tools: list[Json] | None) -> tuple[int, bool]: ...

    async def turn(self, messages: list[Json], tools: list[Json] | None) -> Step: ...

    async def finished(self) -> None: ...

    async def end(self) -> None: ...


@dataclass
class HttpTalker:
    """A conversation through an OpenAI-compatible server: the whole conversation sent with each request."""

    subject: HttpSubject

    async def quiet(self) -> None:
        await self.subject.settle()

    async def begin(self, tools: list[Json] | None) -> tuple[int, bool]:
        """The process to meter: the server (with the CLIs it already has, whose memory is not this conversation's)."""
        return self.subject.process.pid, False

    async def turn(self, messages: list[Json], tools: list[Json] | None) -> Step:
        step = Step(time.perf_counter())
        text: list[str] = []
        calls: dict[int, Json] = {}
        try:
            response = await self.subject.client.chat.completions.create(
                model=MODEL, messages=messages, stream=True, **({"tools": tools} if tools else {})
            )
            async for chunk in response:
                if not chunk.choices:
                    continue
                delta = chunk.choices[0].delta
                if delta.content or delta.tool_calls:
                    step.chunks.append(time.perf_counter())
                text.append(delta.content or "")
                for call in delta.tool_calls or ():
                    function = {"name": "", "arguments": ""}
                    calls.setdefault(call.index, {"id": call.id, "type": "function", "function": function})
                    fragment = call.function
                    calls[call.index]["function"]["name"] += (fragment and fragment.name) or ""
                    calls[call.index]["function"]["arguments"] += (fragment and fragment.arguments) or ""
        except openai.APIError as e:
            step.error = f"{type(e).__name__}: {e}"
        step.end = time.perf_counter()
        step.message = assistant_message("".join(text), [calls[index] for index in sorted(calls)])
        if not step.chunks and step.error is None:
            step.error = "nothing streamed"
        return step

    async def finished(self) -> None:
        """Its CLIs reaped (their CPU in the server's account) or kept as the live session."""
        await self.subject.settle(quiet=0)

    async def end(self) -> None:
        pass


@dataclass
class CliSession:
    """The CLI's own session: one `claude -p` fed each user turn on stdin, kept open, started as the bridge starts
    its CLI. In the agent loop its calls of the client's tool are answered as the bridge answers them (the in-process
    MCP server of claude/mcp.py): each `tools/call` held until the client's result comes."""

    env: dict[str, str]
    scratch: Path
    process: asyncio.subprocess.Process | None = None
    run_dir: Path | None = None
    tools: tuple[ToolSpec, ...] = ()
    held: dict[str, tuple[str, Any, str, Json]] = field(default_factory=dict)  # by tool_use id

    async def quiet(self) -> None:
        await asyncio.sleep(SETTLE)

    async def finished(self) -> None:
        pass

    async def begin(self, tools: list[Json] | None) -> tuple[int, bool]:
        self.run_dir = run_dir = Path(tempfile.mkdtemp(prefix="session-", dir=self.scratch))
        (run_dir / "work").mkdir()
        (run_dir / "system-prompt.txt").write_text(SYSTEM_PROMPT)
        argv = [str(CLAUDE_BIN), *SAFE_FLAGS, "--model", MODEL, "--max-turns", str(MAX_TURNS)]
        argv += ["--system-prompt-file", str(run_dir / "system-prompt.txt")]
        self.tools = tuple(
            ToolSpec(t["function"]["name"], t["function"]["description"], t["function"]["parameters"])
            for t in tools or ()
        )
        if self.tools:
            argv += ["--mcp-config", mcp.CONFIG, "--allowedTools", mcp.ALLOWED]
        with (run_dir / "stderr.txt").open("wb") as err:
            self.process = await asyncio.create_subprocess_exec(
                *argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, cwd=run_dir / "work",
                env=self.env | {"XDG_CACHE_HOME": str(run_dir / "cache")}, start_new_session=True, limit=1 << 24,
            )  # fmt: skip
        REAPER.groups.add(self.process.pid)
        return self.process.pid, True

    async def turn(self, messages: list[Json], tools: list[Json] | None) -> Step:
        assert self.process and self.process.stdin
        step = Step(time.perf_counter())
        self.process.stdin.write(self._input(messages))
        await self.process.stdin.drain()
        try:
            await asyncio.wait_for(self._read(step), TURN_LIMIT)
        except (TimeoutError, ValueError, KeyError) as e:
            step.error = f"{type(e).__name__}: {e}"
        step.end = time.perf_counter()
        return step

    def _input(self, messages: list[Json]) -> bytes:
        """The new user line, or the answers to the held calls the trailing tool messages carry."""
        if messages[-1]["role"] == "user":
            message = {"role": "user", "content": [{"type": "text", "text": messages[-1]["content"]}]}
            return json.dumps({"type": "user", "message": message}).encode() + b"\n"
        answers = []
        for result in itertools.takewhile(lambda m: m["role"] == "tool", reversed(messages)):
            request_id, rpc_id, _, _ = self.held.pop(result["tool_call_id"])
            answers.append(mcp.call_result(request_id, rpc_id, {"content": result["content"]}))
        return b"".join(json.dumps(answer).encode() + b"\n" for answer in reversed(answers))

    async def _read(self, step: Step) -> None:
        """Events until the turn's result, or until every tool call of the answer is held."""
        assert self.process and self.process.stdout
        text: list[str] = []
        calls: list[str] = []
        stop = None
        async for line in self.process.stdout:
            now = time.perf_counter()
            event = json.loads(line)
            if event.get("type") == "control_request":
                await self._control(event["request_id"], event["request"])
            elif event.get("type") == "stream_event":
                inner = event["event"]
                block, delta = inner.get("content_block") or {}, inner.get("delta") or {}
                if block.get("type") == "tool_use":
                    calls.append(block["id"])
                if delta.get("text") or delta.get("partial_json"):
                    step.chunks.append(now)
                    text.append(delta.get("text", ""))
                stop = delta.get("stop_reason") or stop
            elif event.get("type") == "result":
                step.error = f"CLI result is_error: {event.get('result')}" if event.get("is_error") else None
                step.message = assistant_message("".join(text), [])
                return
            if stop == "tool_use" and calls and set(calls) <= self.held.keys():
                step.message = assistant_message("".join(text), [self._call(tool_use_id) for tool_use_id in calls])
                return
        assert self.run_dir
        step.error = f"CLI exited ({await self.process.wait()}): {tail(self.run_dir / 'stderr.txt', 3)}"

    async def _control(self, request_id: str, request: Json) -> None:
        assert self.process and self.process.stdin
        if mcp.is_tool_call(request):
            params = request["message"].get("params") or {}
            tool_use_id = (params.get("_meta") or {})["claudecode/toolUseId"]
            self.held[tool_use_id] = (request_id, request["message"]["id"], params["name"], params.get("arguments"))
            return
        self.process.stdin.write(json.dumps(mcp.control_response(request_id, self.tools, request)).encode() + b"\n")
        await self.process.stdin.drain()

    def _call(self, tool_use_id: str) -> Json:
        _, _, name, arguments = self.held[tool_use_id]
        function = {"name": mcp.client_name(name), "arguments": json.dumps(arguments or {})}
        return {"id": tool_use_id, "type": "function", "function": function}

    async def end(self) -> None:
        """End of input: the CLI exits after its turn (killed if it does not)."""
        process, self.process, self.held = self.process, None, {}
        if process is not None:
            assert process.stdin
            process.stdin.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 10)
            if process.returncode is None:
                process.kill()
                await process.wait()
            REAPER.groups.discard(process.pid)
        if self.run_dir is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants, zombies included (their CPU is in no parent's account yet)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parents[int(entry.name)] = int(_stat_fields(int(entry.name))[1])
    tree, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        tree += frontier
    return tree


def tree_cpu(root: int) -> float:
    """CPU seconds of a process tree: each process's own, and that of the children it has reaped."""
    ticks = 0
    for pid in process_tree(root):
        with contextlib.suppress(OSError, ValueError):
            ticks += sum(int(value) for value in _stat_fields(pid)[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


class Meter:
    """CPU and peak RSS of one conversation: its root process (a server, or the CLI) and the processes it starts.

    A server's CLIs from earlier conversations (live sessions, idle) are not counted in memory; their CPU is, but
    idle they use none."""

    def __init__(self, root: int, fresh: bool) -> None:
        self.root = root
        self.earlier = set() if fresh else set(process_tree(root)) - {root}
        self.cpu_before = 0.0 if fresh else tree_cpu(root)
        self.peak_mb = 0.0

    def rss_mb(self, clis_only: bool = False) -> float:
        leave = self.earlier | ({self.root} if clis_only else set())
        return rss_mb([pid for pid in process_tree(self.root) if pid not in leave])

    def cpu(self) -> float:
        return tree_cpu(self.root) - self.cpu_before

    async def sample(self) -> None:
        while True:
            self.peak_mb = max(self.peak_mb, self.rss_mb())
            await asyncio.sleep(RSS_SAMPLE)


async def conversation(talker: Talker, workload: Workload, fake: FakeAnthropic, token_delay: float) -> Json:
    """One conversation, metered: the client's time to each first token, the API's cache use, CPU and memory."""
    workload.script(fake, token_delay)
    await talker.quiet()
    start = len(fake.requests)
    root, fresh = await talker.begin(workload.tools)
    meter = Meter(root, fresh)
    sampler = asyncio.create_task(meter.sample())
    messages = workload.opening()
    steps: list[Step] = []
    first_requests = start
    problem = None
    try:
        for index in range(workload.requests):
            if index:
                await asyncio.sleep(THINK_TIME)
            steps.append(await talker.turn(messages, workload.tools))
            first_requests = len(fake.requests) if index == 0 else first_requests
            if not steps[-1].ok:
                break
            if index + 1 < workload.requests and (problem := workload.follow(index, messages, steps[-1].message)):
                break
        await talker.finished()
        meter.peak_mb = max(meter.peak_mb, meter.rss_mb())
        cpu, held = meter.cpu(), meter.rss_mb(clis_only=True)
    finally:
        sampler.cancel()
        await talker.end()
    failed = [s.error or "nothing streamed" for s in steps if not s.ok] + ([problem] if problem else [])
    return {
        "first_ttft_ms": ms(steps[0].ttft) if steps and steps[0].ok else None,
        "follow_up_ttfts_ms": [ms(s.ttft) for s in steps[1:] if s.ok],
        "follow_up_cache": [asdict(r.cache) for r in fake.requests[first_requests:]],
        "cpu_s": round(cpu, 2),
        "peak_rss_mb": round(meter.peak_mb, 1),
        "held_rss_mb": round(held, 1),
        "errors": failed,
    }


def summary(runs: list[Json], served: list[str]) -> Json:
    """A subject's conversations of one workload, as the table shows them."""
    firsts = [r["first_ttft_ms"] for r in runs if r["first_ttft_ms"] is not None]
    follow = [t for r in runs for t in r["follow_up_ttfts_ms"]]
    cache = [CacheUse(**use) for r in runs for use in r["follow_up_cache"]]
    total = sum(use.total for use in cache)
    # Input priced as Anthropic bills it, in input-token equivalents: reads 0.1, 1-hour writes 2, 5-minute 1.25.
    billed = sum(c.read * 0.1 + c.written_1h * 2 + (c.written - c.written_1h) * 1.25 + c.uncached for c in cache)
    failed = [e for r in runs for e in r["errors"]]
    return {
        "conversations": len(runs),
        "first_ttft_p50_ms": round(percentile(firsts, 50), 1) if firsts else None,
        "follow_up_ttft_p50_ms": round(percentile(follow, 50), 1) if follow else None,
        "follow_up_ttft_p95_ms": round(percentile(follow, 95), 1) if follow else None,
        "follow_up_api_requests": len(cache),
        "follow_up_cache_read_share": round(sum(c.read for c in cache) / total, 3) if total else None,
        "follow_up_input_tokens_mean": round(total / len(cache)) if cache else None,
        "follow_up_billed_input_mean": round(billed / len(cache)) if cache else None,
        "cpu_s_per_conversation": round(sum(r["cpu_s"] for r in runs) / len(runs), 2) if runs else None,
        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in runs), 1) if runs else None,
        "held_rss_mb_after": round(max(r["held_rss_mb"] for r in runs), 1) if runs else None,
        "served_by_live_session": f"{served.count('the live session')}/{len(served)}" if served else None,
        "errors": len(failed),
        "error_samples": sorted(set(failed))[:3],
        "runs": runs,
    }


def served_lines(subject: HttpSubject, offset: int) -> tuple[list[str], int]:
    """How the bridge served each chat request logged after `offset` ("a new CLI", "the live session"...)."""
    if not subject.bridge or subject.log is None:
        return [], offset
    text = subject.log.read_text(errors="replace")
    return SERVED.findall(text[offset:]), len(text)


async def start_talkers(fake_url: str, scratch: Path) -> tuple[dict[str, Talker], dict[str, str]]:
    """Every conversation subject that starts and answers; for the others, why not."""
    talkers: dict[str, Talker] = {CLI_SESSION: CliSession(bare_env(fake_url, scratch / "session-home"), scratch)}
    unavailable: dict[str, str] = {}
    starters: dict[str, Callable[[], Awaitable[HttpSubject]]] = {
        LIVE: lambda: start_bridge(LIVE, fake_url, scratch, LIVE_OPTIONS),
        NPM: lambda: start_npm_proxy(fake_url, scratch, "npm-proxy-conversations"),
        NO_LIVE: lambda: start_bridge(NO_LIVE, fake_url, scratch, NO_LIVE_OPTIONS),
    }
    for key, starter in starters.items():
        progress(f"starting {key}")
        try:
            talkers[key] = HttpTalker(await starter())
        except (BenchError, OSError, subprocess.SubprocessError) as e:
            unavailable[key] = str(e)
            progress(f"  {key} unavailable: {e}")
    return {key: talkers[key] for key in CONVERSATION_SUBJECTS if key in talkers}, unavailable


# The npm proxy flattens every request into one prompt of text on the CLI's argv: it reads neither `tools` nor
# the `tool` messages, and runs the CLI with its own built-in tools, so a client's tool call never comes back.
async def run_workload(key: str, talker: Talker, workload: Workload, fake: FakeAnthropic, config: Config) -> Json:
    """A subject's conversations of one workload, summed up."""
    subject = talker.subject if isinstance(talker, HttpTalker) else None
    _, offset = served_lines(subject, 0) if subject else ([], 0)
    runs = []
    for number in range(config.conversations):
        progress(f"{workload.name} {number + 1}/{config.conversations}, {workload.requests} requests: {key}")
        runs.append(await conversation(talker, workload, fake, config.token_delay))
    served = served_lines(subject, offset)[0] if subject else []
    return summary(runs, [how for index, how in enumerate(served) if index % workload.requests])


NPM_NO_TOOLS = (
    f"{NPM_PACKAGE} cannot do a client's tools: it ignores `tools`, drops `tool` messages and flattens the rest "
    "into one text prompt for a CLI run with Claude Code's built-in tools, so no tool call reaches the client"
)


async def converse(config: Config, scratch: Path) -> Json:
    """The chat and the agent loop, conversation by conversation, through every subject, against an in-process
    fake API whose queue scripts the tool calls and whose records say what each request read from cache."""
    workloads = (Workload("chat", config.chat_turns), Workload("agent_loop", config.agent_steps + 1, [WEATHER_TOOL]))
    with FakeAnthropic(Echo(delay=config.token_delay)) as fake:
        talkers, unavailable = await start_talkers(fake.url, scratch)
        results: dict[str, Json] = {key: {} for key in talkers}
        skipped: dict[str, Json] = {NPM: {"agent_loop": NPM_NO_TOOLS}} if NPM in talkers else {}
        for key, talker in talkers.items():
            try:
                for workload in workloads:
                    if workload.name not in skipped.get(key, {}):
                        results[key][workload.name] = await run_workload(key, talker, workload, fake, config)
            except BenchError as e:
                unavailable[key] = str(e)
                progress(f"  {key} failed: {e}")
            if isinstance(talker, HttpTalker):
                REAPER.stop(talker.subject.process)
    return {
        "config": {
            "chat_turns": config.chat_turns,
            "agent_steps": config.agent_steps,
            "conversations_per_workload": config.conversations,
            "system_prompt_tokens": estimate_tokens({"type": "text", "text": SYSTEM_PROMPT}),
            "cache_min_tokens": minimum_tokens("claude-sonnet"),
            "live_bridge_options": LIVE_OPTIONS,
            "no_live_bridge_options": NO_LIVE_OPTIONS,
        },
        "subjects": results,
        "unavailable": unavailable,
        "skipped": skipped,
    }


# --- the run ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    quick: bool
    token_delay: float
    json_path: Path
    soak_seconds: float | None = None

    @property
    def sequential_n(self) -> int:
        return 5 if self.quick else 20

    @property
    def chat_turns(self) -> int:
        return 4 if self.quick else 10

    @property
    def agent_steps(self) -> int:
        """Tool calls before the agent loop's answer."""
        return 3 if self.quick else 8

    @property
    def conversations(self) -> int:
        """Of each workload, through each subject (one keeps the whole bench under 8 minutes on 2 cores)."""
        return 1

    def rounds(self, level: int) -> int:
        """Batches per concurrency level: more of the single stream, whose p50 is the settled TTFT."""
        if level == 1:
            return 3 if self.quick else 10
        return 1 if self.quick else 3


async def start_subjects(fake_url: str, scratch: Path) -> tuple[dict[str, Subject], dict[str, str]]:
    """Every subject that starts and answers; for the others, why not."""
    env = bare_env(fake_url, scratch / "bare-home")
    subjects: dict[str, Subject] = {
        BARE_SPAWN: BareCli(env, scratch),
        BARE_WARM: BareCli(env, scratch, prespawn=PRESPAWN_WAIT),
    }
    unavailable: dict[str, str] = {}
    starters: dict[str, Callable[[], Awaitable[HttpSubject]]] = {
        POOL: lambda: start_bridge(POOL, fake_url, scratch, ONE_SHOT_OPTIONS),
        NO_POOL: lambda: start_bridge(NO_POOL, fake_url, scratch, [*ONE_SHOT_OPTIONS, "claude_pool_size=0"]),
        NPM: lambda: start_npm_proxy(fake_url, scratch),
    }
    for key, starter in starters.items():
        progress(f"starting {key}")
        try:
            subjects[key] = await starter()
        except (BenchError, OSError, subprocess.SubprocessError) as e:
            unavailable[key] = str(e)
            progress(f"  {key} unavailable: {e}")
    return subjects, unavailable


async def measure(config: Config, subjects: dict[str, Subject]) -> dict[str, Json]:
    results: dict[str, Json] = {key: {} for key in subjects}
    for key, subject in subjects.items():
        progress(f"sequential x{config.sequential_n}: {key}")
        results[key]["sequential"] = await sequential(subject, config.sequential_n)
    for key, subject in subjects.items():
        if key == BARE_WARM:
            continue
        for level in LEVELS:
            rounds = config.rounds(level)
            progress(f"concurrency {level} x{rounds}: {key}")
            results[key].setdefault("concurrency", {})[str(level)] = await concurrent(subject, level, rounds)
    for name, delay in (("long_stream", config.token_delay), ("long_stream_burst", 0.0)):
        for key in (BARE_SPAWN, POOL):
            if key in subjects:
                progress(f"long stream ({LONG_TOKENS} tokens, {delay} s apart): {key}")
                subject = subjects[key]
                pid = subject.process.pid if isinstance(subject, HttpSubject) else None
                results[key][name] = await long_stream(subject, delay, pid)
    for key, subject in subjects.items():
        if isinstance(subject, HttpSubject):
            progress(f"memory: {key}")
            results[key]["rss"] = await memory(subject)
    return results


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


async def soak(seconds: float, token_delay: float, scratch: Path) -> Json:
    """The bridge under steady overload for `seconds`: every request answered and its own, nothing growing."""
    fake_url = start_fake(token_delay, scratch)
    subject = await start_bridge("soak", fake_url, scratch, SOAK_OPTIONS)
    pid = subject.process.pid
    start = {"rss_mb": round(load.rss_mb(pid), 1), "fds": load.open_fds(pid)}
    samples: list[Json] = []
    tally = load.Tally()

    async def sample() -> None:
        began = time.monotonic()
        while True:
            await asyncio.sleep(SOAK_SAMPLE)
            samples.append(
                {
                    "t_s": round(time.monotonic() - began),
                    "rss_mb": round(load.rss_mb(pid), 1),
                    "fds": load.open_fds(pid),
                }
            )
            progress(f"soak {samples[-1]['t_s']} s: {tally.sent} requests, RSS {samples[-1]['rss_mb']} MB")

    sampler = asyncio.create_task(sample())
    began = time.monotonic()
    async with openai.AsyncOpenAI(base_url=subject.url + "/v1", api_key="x", max_retries=0, timeout=300) as client:
        await load.soak(client, SOAK_CLIENTS, seconds, tally)
    elapsed = time.monotonic() - began
    sampler.cancel()
    await subject.settle()
    end = {"rss_mb": round(load.rss_mb(pid), 1), "fds": load.open_fds(pid)}
    return {
        "machine": machine_info(),
        "seconds": round(elapsed),
        "clients": SOAK_CLIENTS,
        "bridge_options": SOAK_OPTIONS,
        "requests": tally.sent,
        "answered": tally.answered,
        "busy_429": tally.busy,
        "mixed_up": tally.mixed_up,
        "failures": tally.failures[:20],
        "failure_count": len(tally.failures),
        "requests_per_s": round(tally.sent / elapsed, 1),
        "after_warm_up": start,
        "after_settling": end,
        "peak_rss_mb": max([s["rss_mb"] for s in samples] + [start["rss_mb"]]),
        "clis_after": len(children(pid)),
        "warm_pool": subject.idle_clis,
        "samples": samples,
    }


def soak_report(result: Json) -> str:
    start, end, r = result["after_warm_up"], result["after_settling"], result
    return "\n".join(
        [
            f"Soak: {r['seconds']} s, {r['clients']} clients back to back ({', '.join(r['bridge_options'])})",
            f"  requests {result['requests']} ({result['requests_per_s']}/s): answered {result['answered']}, "
            f"busy 429 {result['busy_429']}, mixed up {result['mixed_up']}, failed {result['failure_count']}",
            f"  bridge RSS {start['rss_mb']} MB after warm-up, peak {r['peak_rss_mb']} MB, {end['rss_mb']} MB after",
            f"  open fds {start['fds']} -> {end['fds']}; CLIs left {r['clis_after']} (warm pool {r['warm_pool']})",
            *[f"  failure: {failure}" for failure in result["failures"]],
        ]
    )


# --- report ---------------------------------------------------------------------------------------------------------


def machine_info() -> Json:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), platform.processor()
    )
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem_kb = int(next(line.split()[1] for line in meminfo if line.startswith("MemTotal")))
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gb": round(mem_kb / 1024**2, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "claude_cli": version([str(CLAUDE_BIN), "--version"]),
        "node": version(["node", "--version"]),
        "openai_sdk": openai.__version__,
    }


def version(argv: list[str]) -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip() or None
    return None


def figure(results: dict[str, Json], key: str, *path: str) -> Any:
    """results[key][path...], None where not measured."""
    value: Any = results.get(key)
    for step in path:
        value = value.get(step) if isinstance(value, dict) else None
    return value


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 4) if a is not None and b else None


def difference(a: float | None, b: float | None) -> float | None:
    return round(a - b, 1) if a is not None and b is not None else None


def ratios(results: dict[str, Json]) -> Json:
    ttft = {key: figure(results, key, "sequential", "ttft_p50_ms") for key in SUBJECTS}
    pool, warm = ttft[POOL], ttft[BARE_WARM]
    settled = figure(results, POOL, "concurrency", "1", "ttft_p50_ms")
    return {
        "ttft_p50_bridge_pool_over_npm_proxy": ratio(pool, ttft[NPM]),
        "ttft_p50_bridge_pool_over_bare_spawned_cli": ratio(pool, ttft[BARE_SPAWN]),
        "ttft_p50_bridge_no_pool_over_bare_spawned_cli": ratio(ttft[NO_POOL], ttft[BARE_SPAWN]),
        "bridge_pool_overhead_over_prespawned_cli_p50_ms_back_to_back": difference(pool, warm),
        "bridge_pool_overhead_over_prespawned_cli_p50_ms_settled": difference(settled, warm),
        "c32_requests_per_s_bridge_pool_over_npm_proxy": ratio(
            figure(results, POOL, "concurrency", "32", "requests_per_s"),
            figure(results, NPM, "concurrency", "32", "requests_per_s"),
        ),
    }


@dataclass(frozen=True)
class Goal:
    goal: str
    measured: str
    passed: bool | None  # None: could not be measured


def goals(results: dict[str, Json], r: Json) -> list[Goal]:
    c32 = figure(results, POOL, "concurrency", "32") or {}
    npm_c32 = figure(results, NPM, "concurrency", "32", "requests_per_s")
    held_back = {
        name: difference(figure(results, POOL, name, "gap_max_ms"), figure(results, BARE_SPAWN, name, "gap_max_ms"))
        for name in ("long_stream", "long_stream_burst")
    }
    checks: list[tuple[str, float | None, str, Callable[[float], bool]]] = [
        ("TTFT p50 with pool <= 0.4 x npm proxy", r["ttft_p50_bridge_pool_over_npm_proxy"], "x", lambda v: v <= 0.4),
        ("TTFT p50 with pool <= 0.5 x bare spawned CLI", r["ttft_p50_bridge_pool_over_bare_spawned_cli"], "x",
         lambda v: v <= 0.5),
        ("overhead over pre-spawned CLI <= 10 ms p50, settled (c=1 rounds, 1 s apart)",
         r["bridge_pool_overhead_over_prespawned_cli_p50_ms_settled"], " ms", lambda v: v <= 10),
        ("overhead over pre-spawned CLI <= 10 ms p50, back to back (sequential)",
         r["bridge_pool_overhead_over_prespawned_cli_p50_ms_back_to_back"], " ms", lambda v: v <= 10),
        ("32 concurrent: no errors", c32.get("errors"), " errors", lambda v: v == 0),
        ("32 concurrent: p99 TTFT <= 3 x p50", ratio(c32.get("ttft_p99_ms"), c32.get("ttft_p50_ms")), "x",
         lambda v: v <= 3),
        ("32 concurrent: throughput >= npm proxy", ratio(c32.get("requests_per_s"), npm_c32), "x", lambda v: v >= 1),
        ("5000-token stream, paced: < 1 ms CPU per 100 chunks",
         figure(results, POOL, "long_stream", "cpu_ms_per_100_chunks"), " ms", lambda v: v < 1),
        ("5000-token stream, burst: < 1 ms CPU per 100 chunks",
         figure(results, POOL, "long_stream_burst", "cpu_ms_per_100_chunks"), " ms", lambda v: v < 1),
        ("5000-token stream, paced: no chunk held back > 5 ms (max gap minus the bare CLI's)",
         held_back["long_stream"], " ms", lambda v: v <= 5),
        ("5000-token stream, burst: no chunk held back > 5 ms (max gap minus the bare CLI's)",
         held_back["long_stream_burst"], " ms", lambda v: v <= 5),
    ]  # fmt: skip
    return [check(*entry) for entry in checks]


def check(goal: str, value: float | None, unit: str, meets: Callable[[float], bool]) -> Goal:
    if value is None:
        return Goal(goal, "not measured", None)
    return Goal(goal, f"{value:g}{unit}", meets(value))


ROWS: list[tuple[str, tuple[str, ...]]] = [
    ("sequential: TTFT p50 ms", ("sequential", "ttft_p50_ms")),
    ("sequential: TTFT p95 ms", ("sequential", "ttft_p95_ms")),
    ("sequential: total s", ("sequential", "total_s")),
    ("sequential: errors", ("sequential", "errors")),
    *[
        row
        for level in map(str, LEVELS)
        for row in (
            (f"c={level}: TTFT p50 ms", ("concurrency", level, "ttft_p50_ms")),
            (f"c={level}: TTFT p99 ms", ("concurrency", level, "ttft_p99_ms")),
            (f"c={level}: requests/s", ("concurrency", level, "requests_per_s")),
            (f"c={level}: tokens/s", ("concurrency", level, "tokens_per_s")),
            (f"c={level}: errors", ("concurrency", level, "errors")),
        )
    ],
    *[
        row
        for name, label in (("long_stream", "paced"), ("long_stream_burst", "burst"))
        for row in (
            (f"5000 tokens {label}: chunks received", (name, "chunks")),
            (f"5000 tokens {label}: max gap ms", (name, "gap_max_ms")),
            (f"5000 tokens {label}: p99 gap ms", (name, "gap_p99_ms")),
            (f"5000 tokens {label}: CPU ms/100 chunks", (name, "cpu_ms_per_100_chunks")),
        )
    ],
    ("RSS MB server, idle", ("rss", "server_idle_mb")),
    ("RSS MB CLIs, idle", ("rss", "clis_idle_mb")),
    ("RSS MB server, 8 streams", ("rss", "server_8_streams_mb")),
    ("RSS MB CLIs, 8 streams", ("rss", "clis_8_streams_mb")),
]


def table(results: dict[str, Json], unavailable: dict[str, str]) -> str:
    width = max(len(label) for label, _ in ROWS)
    lines = [f"{'':{width}}" + "".join(f"{key:>22}" for key in SUBJECTS)]
    for label, path in ROWS:
        cells = ["n/a" if key in unavailable else _cell(figure(results, key, *path)) for key in SUBJECTS]
        lines.append(f"{label:{width}}" + "".join(f"{cell:>22}" for cell in cells))
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def notes(token_delay: float) -> list[str]:
    return [
        f"Fake API in echo mode, {token_delay:g} s per token; every subject runs the pinned CLI against it.",
        f"Both bridges run with --set claude_max_runs={MAX_RUNS}, so 32 streams are not queued; the pool bridge has",
        f"  the default claude_pool_size={POOL_SIZE}, so at c=8 and c=32 all but {POOL_SIZE} requests spawn a CLI.",
        "  Live sessions are off for these one-shot requests (none would ever be continued).",
        "TTFT: request sent to first text chunk. The pre-spawned CLI's clock starts when its input is written,",
        f"  {PRESPAWN_WAIT:g} s after spawn. Sequential requests go back to back; each concurrency batch starts",
        f"  settled (the last CLIs gone, the pool full, {SETTLE:g} s quiet).",
        f"5000 tokens: paced = {token_delay:g} s apart, burst = no delay. CPU is the bridge process's own utime+stime",
        "  (not its CLIs'); gaps are between text chunks as the client (or our read of the CLI's stdout) sees them.",
    ]


def report(result: Json) -> str:
    machine = result["machine"]
    lines = [
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['ram_gb']} GB RAM, Linux {machine['kernel']}, "
        f"Python {machine['python']}, Claude CLI {machine['claude_cli']}, node {machine['node']}",
        *notes(result["config"]["token_delay_s"]),
        "",
        table(result["subjects"], result["unavailable"]),
        "",
        *[f"{key} unavailable: {why}" for key, why in result["unavailable"].items()],
        "Ratios:",
        *[f"  {name}: {_cell(value)}" for name, value in result["ratios"].items()],
        "",
        "Goals (issue 6):",
        *[f"  {_verdict(g['passed']):4}  {g['goal']}: {g['measured']}" for g in result["goals"]],
        "",
        conversation_report(result["conversations"], result["config"]["token_delay_s"]),
    ]
    return "\n".join(lines)


CONVERSATION_ROWS: list[tuple[str, str]] = [
    ("first request: TTFT p50 ms", "first_ttft_p50_ms"),
    ("follow-ups: TTFT p50 ms", "follow_up_ttft_p50_ms"),
    ("follow-ups: TTFT p95 ms", "follow_up_ttft_p95_ms"),
    ("follow-ups: cache-read share of input", "follow_up_cache_read_share"),
    ("follow-ups: input tokens/API request", "follow_up_input_tokens_mean"),
    ("follow-ups: billed input/API request", "follow_up_billed_input_mean"),
    ("follow-ups: served by the live session", "served_by_live_session"),
    ("CPU s/conversation", "cpu_s_per_conversation"),
    ("peak RSS MB/conversation", "peak_rss_mb"),
    ("RSS MB of CLIs held after", "held_rss_mb_after"),
    ("errors", "errors"),
]


def conversation_table(conversations: Json) -> str:
    subjects, unavailable, skipped = conversations["subjects"], conversations["unavailable"], conversations["skipped"]
    labels = {"chat": f"chat ({conversations['config']['chat_turns']} turns)"}
    labels["agent_loop"] = f"agent loop ({conversations['config']['agent_steps']} tool steps + answer)"
    width = max(len(label) for label, _ in CONVERSATION_ROWS) + 2
    lines = []
    for workload, title in labels.items():
        lines.append(f"{title:{width}}" + "".join(f"{key:>17}" for key in CONVERSATION_SUBJECTS))
        for label, name in CONVERSATION_ROWS:
            cells = [
                "n/a" if key in unavailable
                else "skipped" if workload in skipped.get(key, {})
                else _cell(figure(subjects, key, workload, name))
                for key in CONVERSATION_SUBJECTS
            ]  # fmt: skip
            lines.append(f"  {label:{width - 2}}" + "".join(f"{cell:>17}" for cell in cells))
    return "\n".join(lines)


def conversation_notes(config: Json, token_delay: float) -> list[str]:
    return [
        f"Conversations: {config['conversations_per_workload']} of each workload through each subject, against an "
        f"in-process fake API ({token_delay:g} s per token)",
        f"  with the real prompt-cache minimum ({config['cache_min_tokens']} tokens) and a client system prompt of "
        f"{config['system_prompt_tokens']} tokens (the fake's estimate);",
        "  the cache is emptied before each conversation. bridge live: live sessions on (default 4), no warm pool;",
        "  bridge no live: claude_live_sessions=0 (a new CLI per request, resuming the history), no warm pool;",
        "  CLI session: one `claude -p` fed each turn on stdin (stdin kept open), its tool calls answered with the",
        f"  bridge's MCP code. Follow-ups: every request after the first, sent {THINK_TIME:g} s after the answer",
        "  before; TTFT is to the first streamed text or tool-call delta. Cache share: cache reads over all input",
        "  (reads + writes + plain) of the follow-ups' API requests; billed input prices reads at 0.1, 1-hour writes",
        "  at 2, 5-minute writes at 1.25 input tokens. CPU and peak RSS: the server and the CLIs it starts for the",
        "  conversation (the CLI session: the CLI); held after: the CLIs still running once the conversation is over",
        "  (a live session, until it idles out).",
    ]


def conversation_report(conversations: Json, token_delay: float) -> str:
    skipped = [(key, workload, why) for key, by in conversations["skipped"].items() for workload, why in by.items()]
    return "\n".join(
        [
            *conversation_notes(conversations["config"], token_delay),
            "",
            conversation_table(conversations),
            "",
            *[f"{key} unavailable: {why}" for key, why in conversations["unavailable"].items()],
            *[f"{key}, {workload} skipped: {why}" for key, workload, why in skipped],
            "Goals (issue 14):",
            *[f"  {_verdict(g['passed']):4}  {g['goal']}: {g['measured']}" for g in conversations["goals"]],
        ]
    )


def conversation_goals(conversations: Json, results: dict[str, Json]) -> list[Goal]:
    spawned = figure(results, BARE_SPAWN, "sequential", "ttft_p50_ms")
    live = conversations["subjects"].get(LIVE, {})
    checks: list[Goal] = []
    for workload, label in (("chat", "chat"), ("agent_loop", "agent loop")):
        share = figure(live, workload, "follow_up_cache_read_share")
        checks.append(
            check(f"{label} through the bridge: cache-read share of follow-up input >= 85%",
                  None if share is None else round(share * 100, 1), "%", lambda v: v >= 85)
        )  # fmt: skip
    for workload, label in (("chat", "chat"), ("agent_loop", "agent loop")):
        ttft = figure(live, workload, "follow_up_ttft_p50_ms")
        checks.append(
            check(f"{label}: bridge follow-up TTFT p50 <= 0.3 x a freshly spawned CLI's ({spawned} ms)",
                  ratio(ttft, spawned), "x", lambda v: v <= 0.3)
        )  # fmt: skip
    return checks


def _verdict(passed: bool | None) -> str:
    return "N/A" if passed is None else "PASS" if passed else "FAIL"


async def bench(config: Config, scratch: Path) -> Json:
    machine = machine_info()
    fake_url = start_fake(config.token_delay, scratch)
    subjects, unavailable = await start_subjects(fake_url, scratch)
    results = await measure(config, subjects)
    for subject in subjects.values():
        if isinstance(subject, HttpSubject):
            REAPER.stop(subject.process)  # idle servers and warm CLIs out of the way of the conversations
    conversations = await converse(config, scratch)
    conversations["goals"] = [asdict(goal) for goal in conversation_goals(conversations, results)]
    r = ratios(results)
    return {
        "machine": machine,
        "config": {
            "quick": config.quick,
            "token_delay_s": config.token_delay,
            "sequential_requests": config.sequential_n,
            "concurrency_rounds": {level: config.rounds(level) for level in LEVELS},
            "prompt": PROMPT,
            "model": MODEL,
            "bridge_options": ONE_SHOT_OPTIONS,
            "prespawn_wait_s": PRESPAWN_WAIT,
        },
        "subjects": results,
        "unavailable": unavailable,
        "ratios": r,
        "goals": [asdict(goal) for goal in goals(results, r)],
        "conversations": conversations,
    }


def parse_args() -> Config:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="5 sequential requests, fewer concurrency rounds")
    parser.add_argument("--json", type=Path, default=Path("bench-result.json"), help="where to write the result")
    parser.add_argument("--token-delay", type=float, default=0.005, help="fake API seconds between text deltas")
    parser.add_argument(
        "--soak",
        type=float,
        nargs="?",
        const=600.0,
        metavar="SECONDS",
        help="instead of the comparison, hold the bridge under overload this long (default 600) and report "
        "answers, mix-ups, memory and file descriptors",
    )
    args = parser.parse_args()
    return Config(args.quick, args.token_delay, args.json, args.soak)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def scratch_dir() -> Iterator[Path]:
    """A private directory for homes and logs; every process started is ended before it is removed."""
    path = Path(tempfile.mkdtemp(prefix="claude-bridge-bench-"))
    try:
        yield path
    finally:
        REAPER.kill_all()
        shutil.rmtree(path, ignore_errors=True)


def main() -> int:
    config = parse_args()
    if not os.access(CLAUDE_BIN, os.X_OK):
        print(f"The pinned Claude CLI is missing at {CLAUDE_BIN}: run `npm ci` in {ROOT}.", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with scratch_dir() as scratch:
            if config.soak_seconds is not None:
                result = asyncio.run(soak(config.soak_seconds, config.token_delay, scratch))
            else:
                result = asyncio.run(bench(config, scratch))
    except KeyboardInterrupt:
        print("\n[bench] interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    print(soak_report(result) if config.soak_seconds is not None else report(result))
    config.json_path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nJSON result: {config.json_path.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
