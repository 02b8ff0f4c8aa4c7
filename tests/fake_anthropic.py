"""A fake Anthropic Messages API on 127.0.0.1 for running the real Claude Code CLI offline.

Point the CLI at it with ``ANTHROPIC_BASE_URL=fake.url``; it then sends exactly one
``POST /v1/messages?beta=true`` per turn, streaming first and, after a mid-stream error,
once more without streaming. Every request is recorded in ``fake.requests``.

Which behaviour answers a request, first match wins:

1. an in-band directive in the text of the last user message, so concurrent tests can choose
   per request (values may be quoted shell-style, e.g. ``text="two words"``)::

       [[fake:echo delay=0.05 chunk_chars=2 prefix=X]]
       [[fake:reply text=hello delay=0.01]]        # text streamed in 4-character deltas
       [[fake:error status=529 message=busy retry_after=1]]
       [[fake:hang]]
       [[fake:stall text=partial]]
       [[fake:stream_error text=partial]]          # ignored by non-streaming requests (the CLI's retry)
       [[fake:reset]]                              # TCP reset before any answer
       [[fake:reset text=partial]]                 # ... or after these deltas (a non-streaming request: at once)
       [[fake:thinking thinking=hmm text=done]]

2. the next behaviour queued with ``fake.enqueue(...)``;
3. ``fake.default`` (``Echo()``).

A non-streaming request answers with the whole message (a stall still never answers, a reset still resets).

Plan limits: while ``fake.plan_limits`` is a ``UnifiedLimits`` (fake_plan_limits.py), every answer carries its
``anthropic-ratelimit-unified-*`` headers, as a subscription's answers do, and a refusing state (rejected, no paid
overage allowed) answers every request with a 429 ``rate_limit_error`` and ``retry-after``, whatever was chosen.

Usage is what a real account would be billed: the fake keeps Anthropic's prompt cache (``fake.cache``, see
fake_prompt_cache.py for the rules and the token estimate) and reports ``cache_read_input_tokens``,
``cache_creation_input_tokens`` and ``input_tokens`` for the rest, both in ``message_start`` and, as the API does,
in ``message_delta``. Each request's ``Recorded.cache`` says what it read and wrote; one answered with an error or
not at all touches no entry. The minimum cacheable prefix is the real one (1024 tokens for Sonnet and Opus, 2048
for Haiku): the CLI's own system prompt (about 1,700 tokens by the estimate) passes it, a bridge run's (the
client's system prompt and about 50 tokens of the CLI's) only with a long client prompt; a test that wants short
conversations cached lowers ``fake.cache.min_tokens`` (``reset()`` restores it).

Standalone, in echo mode until Ctrl-C (for the benchmark)::

    python tests/fake_anthropic.py --port 8999 --token-delay 0.02 --chunk-chars 4 [--min-cache-tokens 0]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import re
import select
import shlex
import socket
import ssl
import struct
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal, NamedTuple

from fake_plan_limits import REFUSAL, UnifiedLimits
from fake_prompt_cache import CacheUse, Prompt, PromptCache

Json = dict[str, Any]

SIGNATURE = "ZmFrZXNpZw=="
"""The signature sent for every thinking block."""

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
"""Anthropic's error type for each HTTP status (used when a directive gives only the status)."""

_POLL = 0.02
"""Seconds between checks for stop() (and, in held handlers, for a client hang-up)."""


TEST_TOKEN = "sk-ant-oat01-test"
"""The login the CLI is given; the fake accepts any."""


def cli_env(home: Path, fake_url: str) -> dict[str, str]:
    """The environment of a bare CLI run against the fake (tests that drive the CLI without the bridge)."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": fake_url,
        "CLAUDE_CODE_OAUTH_TOKEN": TEST_TOKEN,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
    }


def bridge_env(home: Path, fake_url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a user's bridge would have, with the CLI pointed at the fake API (tests and benchmark).

    TMPDIR is the bridge's own, so a test can see every private run directory it makes.
    """
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLAUDE", "ANTHROPIC"))}
    return env | {
        "HOME": str(home),
        "TMPDIR": str(home / "tmp"),
        "ANTHROPIC_BASE_URL": fake_url,
        "CLAUDE_CODE_OAUTH_TOKEN": TEST_TOKEN,
        **(extra or {}),
    }


@dataclass(frozen=True)
class Usage:
    """Token counts to report, for tests of usage mapping."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    # Of cache_creation_input_tokens, those written with the 1-hour ttl (the API's cache_creation breakdown).
    cache_creation_1h_input_tokens: int = 0


@dataclass(frozen=True)
class Echo:
    """Reply with prefix + `last_user_text`, in deltas of chunk_chars characters."""

    prefix: str = "ECHO: "
    chunk_chars: int = 4
    delay: float = 0.0


@dataclass(frozen=True)
class Reply:
    """Reply with exactly these text deltas; usage None means the fake's own count (the cache is used either way)."""

    chunks: tuple[str, ...]
    delay: float = 0.0
    stop_reason: str = "end_turn"
    usage: Usage | None = None


@dataclass(frozen=True)
class Gate:
    """Send the first delta, set `reached`, and send the rest only once `release` is set.

    Lets a test prove the first token reached the client while the API was still streaming.
    """

    chunks: tuple[str, ...] = ("first", " rest")
    release: threading.Event = field(default_factory=threading.Event, compare=False)
    reached: threading.Event = field(default_factory=threading.Event, compare=False)


@dataclass(frozen=True)
class ApiError:
    """Answer with an HTTP error in Anthropic's JSON shape (and `retry-after` when given)."""

    status: int
    type: str
    message: str
    retry_after: float | None = None


@dataclass(frozen=True)
class Hang:
    """Accept the request and never send headers (until stop() or the client hangs up)."""


@dataclass(frozen=True)
class Stall:
    """Start streaming, send these deltas, then go silent with the block left open."""

    chunks: tuple[str, ...] = ("Hel", "lo")


@dataclass(frozen=True)
class StreamError:
    """Send these deltas, then an SSE `error` event, and close the connection."""

    chunks: tuple[str, ...] = ("Hel", "lo")
    error_type: str = "overloaded_error"


@dataclass(frozen=True)
class Reset:
    """Send these deltas (none: not even headers), then drop the connection with a TCP reset (RST).

    An RST discards what the client has not read yet: to be sure the deltas got through first, a test gives
    `release` and sets it once it has seen them.
    """

    chunks: tuple[str, ...] = ()
    release: threading.Event | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Thinking:
    """A thinking block (thinking deltas and a signature) followed by a text block."""

    thinking_chunks: tuple[str, ...] = ("Let me think", " about this.")
    text_chunks: tuple[str, ...] = ("Done", ".")


@dataclass(frozen=True)
class ToolUse:
    """Call tools, in order: each (name, input) one tool_use block whose input JSON streams in fragments.

    A name means the request's tool that is called so or ends with `__name` (the CLI prefixes served tools);
    any other name is sent as it is, as a model asking for a tool it was not offered would.
    """

    calls: tuple[tuple[str, Json], ...]
    text: str = ""
    fragment_chars: int = 8


Behaviour = Echo | Reply | Gate | ApiError | Hang | Stall | StreamError | Reset | Thinking | ToolUse


@dataclass(frozen=True)
class Recorded:
    """One request as the fake received it (the test login redacted), and what it did with the prompt cache."""

    path: str
    headers: dict[str, str]
    body: Json
    cache: CacheUse = field(default_factory=CacheUse)

    @property
    def cache_read(self) -> int:
        return self.cache.read

    @property
    def cache_write(self) -> int:
        return self.cache.written


class _Block(NamedTuple):
    kind: Literal["text", "thinking", "tool_use"]
    chunks: list[str]
    name: str = ""  # tool_use only
    id: str = ""


@dataclass(frozen=True)
class _Turn:
    """A message to send, whatever the behaviour that asked for it.

    An `ending` other than "finish" (stall, error, reset) follows the deltas of the first block, leaving it open.
    """

    blocks: list[_Block]
    usage: Usage = Usage()
    stop_reason: str = "end_turn"
    delay: float = 0.0
    gate: Gate | None = None
    release: threading.Event | None = None  # what a reset waits for
    ending: Literal["finish", "stall", "error", "reset"] = "finish"
    error_type: str = ""


class _Gone(Exception):
    """The server is stopping or the client hung up: end the exchange without answering."""


# --- helpers for assertions on recorded bodies -------------------------------------------


def _blocks(content: str | list[Json]) -> list[Json]:
    """Content as a list of blocks (the API also accepts a bare string)."""
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


def _is_reminder(block: Json) -> bool:
    """A context block the CLI adds to user messages (with older models, e.g. claude-sonnet-4-5)."""
    return block.get("type") == "text" and block["text"].startswith("<system-reminder>")


def conversation(body: Json) -> list[tuple[str, list[Json]]]:
    """The messages as (role, blocks), without what the CLI adds on its own.

    Dropped: role "system" entries, `<system-reminder>` text blocks and `cache_control` markers,
    so a test can compare with exactly what it sent.
    """
    return [
        (m["role"], [_without_cache_control(b) for b in _blocks(m["content"]) if not _is_reminder(b)])
        for m in body.get("messages", [])
        if m["role"] != "system"
    ]


def _without_cache_control(block: Json) -> Json:
    return {k: v for k, v in block.items() if k != "cache_control"}


def system_text(body: Json) -> str:
    """The text of the `system` parameter, blocks joined with newlines."""
    return "\n".join(b["text"] for b in _blocks(body.get("system", [])) if b.get("type") == "text")


def tool_names(body: Json) -> list[str]:
    """The names of the tools offered to the model."""
    return [tool["name"] for tool in body.get("tools", [])]


def last_user_text(body: Json) -> str:
    """The concatenated text blocks of the last user message ("" if there is none)."""
    users = [blocks for role, blocks in conversation(body) if role == "user"]
    return "".join(b["text"] for b in users[-1] if b.get("type") == "text") if users else ""


# --- choosing and shaping the answer ------------------------------------------------------

_DIRECTIVE = re.compile(r"\[\[fake:(\w+)([^\]]*)\]\]")


def parse_directive(text: str) -> Behaviour | None:
    """The behaviour named by a ``[[fake:NAME key=value ...]]`` directive in text, if any.

    Raises ValueError for an unknown name or argument, so a typo fails loudly.
    """
    found = _DIRECTIVE.search(text)
    if found is None:
        return None
    name = found[1]
    args = dict(arg.partition("=")[::2] for arg in shlex.split(found[2]))

    def chunks(key: str = "text", default: str = "Hello") -> tuple[str, ...]:
        return tuple(_split(args.pop(key, default), 4))

    match name:
        case "echo":
            made: Behaviour = Echo(
                args.pop("prefix", "ECHO: "), int(args.pop("chunk_chars", 4)), float(args.pop("delay", 0))
            )
        case "reply":
            made = Reply(chunks(), delay=float(args.pop("delay", 0)))
        case "error":
            status = int(args.pop("status", 529))
            retry_after = args.pop("retry_after", None)
            made = ApiError(
                status,
                args.pop("type", ERROR_TYPES.get(status, "api_error")),
                args.pop("message", "fake error"),
                None if retry_after is None else float(retry_after),
            )
        case "hang":
            made = Hang()
        case "stall":
            made = Stall(chunks())
        case "stream_error":
            made = StreamError(chunks(), args.pop("type", "overloaded_error"))
        case "reset":
            made = Reset(chunks(default=""))
        case "thinking":
            made = Thinking(chunks("thinking", "Let me think."), chunks())
        case _:
            raise ValueError(f"unknown fake directive {name!r}")
    if args:
        raise ValueError(f"unknown arguments for [[fake:{name}]]: {sorted(args)}")
    return made


def _split(text: str, size: int) -> list[str]:
    """Text in pieces of `size` characters (none for empty text)."""
    return [text[i : i + size] for i in range(0, len(text), size)]


def _sends_message(behaviour: Behaviour) -> bool:
    """Whether the API got as far as reading the prompt (and so the cache)."""
    return not isinstance(behaviour, ApiError | Hang) and not (isinstance(behaviour, Reset) and not behaviour.chunks)


def _turn(behaviour: Behaviour, body: Json, cache: CacheUse) -> _Turn:
    """The message a behaviour sends, cut to the request's max_tokens (one token per delta)."""
    match behaviour:
        case Echo(prefix, chunk_chars, delay):
            turn = _Turn([_Block("text", _split(prefix + last_user_text(body), chunk_chars))], delay=delay)
        case Reply(chunks, delay, stop_reason):
            turn = _Turn([_Block("text", list(chunks))], stop_reason=stop_reason, delay=delay)
        case Gate(chunks):
            turn = _Turn([_Block("text", list(chunks))], gate=behaviour)
        case Stall(chunks):
            turn = _Turn([_Block("text", list(chunks))], ending="stall")
        case StreamError(chunks, error_type):
            turn = _Turn([_Block("text", list(chunks))], ending="error", error_type=error_type)
        case Reset(chunks, release):
            turn = _Turn([_Block("text", list(chunks))], ending="reset", release=release)
        case Thinking(thinking_chunks, text_chunks):
            turn = _Turn([_Block("thinking", list(thinking_chunks)), _Block("text", list(text_chunks))])
        case ToolUse(calls, text, fragment_chars):
            served = tool_names(body)
            blocks = [_Block("text", [text])] if text else []
            for name, arguments in calls:
                full_name = next((n for n in served if n == name or n.endswith(f"__{name}")), name)
                fragments = _split(json.dumps(arguments), fragment_chars) or ["{}"]
                blocks.append(_Block("tool_use", fragments, full_name, f"toolu_fake_{uuid.uuid4().hex[:20]}"))
            turn = _Turn(blocks, stop_reason="tool_use")
        case _:
            raise TypeError(f"{behaviour!r} does not send a message")
    blocks, cut = _clip(turn.blocks, body.get("max_tokens"))
    given = behaviour.usage if isinstance(behaviour, Reply) else None
    output_tokens = sum(len(block.chunks) for block in blocks)
    estimate = Usage(cache.uncached, output_tokens, cache.written, cache.read, cache.written_1h)
    return replace(turn, blocks=blocks, usage=given or estimate, stop_reason="max_tokens" if cut else turn.stop_reason)


def _clip(blocks: list[_Block], limit: int | None) -> tuple[list[_Block], bool]:
    """The blocks cut to `limit` deltas in all (later blocks dropped), and whether anything was cut."""
    if limit is None:
        return blocks, False
    kept: list[_Block] = []
    left = limit
    for block in blocks:
        if left <= 0:
            break
        kept.append(block._replace(chunks=block.chunks[:left]))
        left -= len(kept[-1].chunks)
    return kept, sum(len(b.chunks) for b in kept) < sum(len(b.chunks) for b in blocks)


# --- the server ---------------------------------------------------------------------------


class FakeAnthropic:
    """The fake API: serves on 127.0.0.1 in a background thread; a context manager."""

    def __init__(
        self,
        default: Behaviour = Echo(),
        *,
        port: int = 0,
        min_cache_tokens: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """min_cache_tokens None is the real API's minimum for the request's model; clock times cache entries;
        with `tls` (a server context for `localhost`) it serves HTTPS, as the real API does."""
        self._tls = tls
        self.default = default
        self.plan_limits: UnifiedLimits | None = None  # the account's standing, sent with every answer
        self.cache = PromptCache(min_cache_tokens, clock)
        self._min_cache_tokens = min_cache_tokens
        self._port = port
        self._lock = threading.Lock()
        self._queue: collections.deque[Behaviour] = collections.deque()
        self._requests: list[Recorded] = []
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL for ANTHROPIC_BASE_URL."""
        if self._server is None:
            raise RuntimeError("FakeAnthropic is not started")
        if self._tls is not None:
            return f"https://localhost:{self._server.server_address[1]}"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def requests(self) -> list[Recorded]:
        """A snapshot of the requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def enqueue(self, *behaviours: Behaviour) -> None:
        """Answer the next requests with these behaviours, one each, in order."""
        with self._lock:
            self._queue.extend(behaviours)

    def reset(self) -> None:
        """Forget queued behaviours, plan limits and cache entries, restore the default and the cache's minimum, so
        one test's leftovers never answer (or cache) for the next."""
        with self._lock:
            self._queue.clear()
            self.default = Echo()
            self.plan_limits = None
        self.cache.clear()
        self.cache.min_tokens = self._min_cache_tokens

    def start(self) -> FakeAnthropic:
        """Bind and serve in a daemon thread."""
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", self._port), _Handler)
        self._server.fake = self
        if self._tls is not None:
            self._server.socket = self._tls.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(_POLL,), name="fake-anthropic", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, releasing held handlers and idle keep-alive connections, and wait for them."""
        if self._server is None or self._thread is None:
            return
        self._stopping.set()
        self._server.shutdown()
        with self._lock:
            for connection in self._connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
        self._server.server_close()  # joins the handler threads
        self._thread.join()
        self._server = self._thread = None

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _choose(self, body: Json) -> Behaviour:
        """A refusing plan limit, else directive, else queue, else default; the CLI's non-streaming retry skips
        stream_error."""
        limits = self.plan_limits
        if limits is not None and limits.refuses:
            return ApiError(429, "rate_limit_error", REFUSAL)
        chosen = parse_directive(last_user_text(body))
        if chosen is not None and not (isinstance(chosen, StreamError) and body.get("stream") is not True):
            return chosen
        with self._lock:
            return self._queue.popleft() if self._queue else self.default

    def _record(self, request: Recorded) -> None:
        """Keep a request for the test to inspect."""
        with self._lock:
            self._requests.append(request)

    def _track(self, connection: socket.socket, is_open: bool) -> None:
        """Keep the open connections, so stop() can end idle keep-alive ones."""
        with self._lock:
            if is_open:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)


class _Server(ThreadingHTTPServer):
    """The HTTP server, with a way back to its FakeAnthropic."""

    fake: FakeAnthropic


class _Handler(BaseHTTPRequestHandler):
    """One connection: keep-alive HTTP/1.1, JSON with Content-Length, SSE chunked."""

    protocol_version = "HTTP/1.1"
    server: _Server

    @property
    def fake(self) -> FakeAnthropic:
        return self.server.fake

    def setup(self) -> None:
        """Register the connection with the fake (see FakeAnthropic._track)."""
        super().setup()
        self.fake._track(self.connection, True)

    def finish(self) -> None:
        self.fake._track(self.connection, False)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: request lines would only clutter test output."""

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.split("?")[0] != "/v1/messages":
            return self._not_found()
        body = _json_object(raw)
        if body is None:
            return self._send_error(ApiError(400, "invalid_request_error", "the body is not a JSON object"))
        # Only the test login is redacted: any other value (a placeholder that was never replaced) stays visible.
        redacted = {"authorization", "x-api-key"}
        headers = {k: "<redacted>" if k.lower() in redacted and TEST_TOKEN in v else v for k, v in self.headers.items()}
        try:
            prompt = Prompt.parse(body)
            chosen = self.fake._choose(body)
        except ValueError as err:
            self.fake._record(Recorded(self.path, headers, body))
            return self._send_error(ApiError(400, "invalid_request_error", str(err)))
        cache = self.fake.cache.use(prompt) if _sends_message(chosen) else CacheUse()
        self.fake._record(Recorded(self.path, headers, body, cache))
        try:
            match chosen:
                case ApiError():
                    self._send_error(chosen)
                case Hang():
                    self._hold()
                case Reset(chunks=()):
                    self._reset()
                case _ if body.get("stream") is True:
                    self._stream(_turn(chosen, body, cache), body)
                case _:
                    self._send_message(_turn(chosen, body, cache), body)
        except (_Gone, ConnectionError):
            self.close_connection = True

    def _not_found(self) -> None:
        self._send_error(ApiError(404, "not_found_error", f"Not found: {self.command} {self.path}"))

    do_GET = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _not_found

    # --- answers ---

    def _send_json(self, status: int, payload: Json, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        for name, value in {**self._limit_headers(), **(headers or {}), "content-type": "application/json"}.items():
            self.send_header(name, value)
        self.send_header("request-id", _request_id())
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _limit_headers(self) -> dict[str, str]:
        """The account's plan-limit headers, when the test set any (read once per answer: a test may change them)."""
        limits = self.fake.plan_limits
        return {} if limits is None else limits.headers(time.time())

    def _send_error(self, error: ApiError) -> None:
        headers = {} if error.retry_after is None else {"retry-after": f"{error.retry_after:g}"}
        payload = {"type": "error", "error": {"type": error.type, "message": error.message}}
        self._send_json(error.status, payload, headers)

    def _send_message(self, turn: _Turn, body: Json) -> None:
        if turn.ending == "stall":
            self._hold()
        if turn.ending == "reset":
            self._reset()
        content = [_block(block, "".join(block.chunks)) for block in turn.blocks]
        self._send_json(200, _message(body, content, turn.stop_reason, _usage(turn.usage)))

    def _stream(self, turn: _Turn, body: Json) -> None:
        """The exact Anthropic event sequence, one chunk per event, flushed as it goes."""
        self.send_response(200)
        for name, value in self._limit_headers().items():
            self.send_header(name, value)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("request-id", _request_id())
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        start_usage = {**_usage(turn.usage), "output_tokens": 1}
        self._event("message_start", {"message": _message(body, [], None, start_usage)})
        self._event("ping", {})
        sent = 0
        for index, block in enumerate(turn.blocks):
            kind = block.kind
            self._event("content_block_start", {"index": index, "content_block": _block(block, "", streaming=True)})
            for chunk in block.chunks:
                if sent and turn.delay and self.fake._stopping.wait(turn.delay):
                    raise _Gone
                delta = (
                    {"type": "input_json_delta", "partial_json": chunk}
                    if kind == "tool_use"
                    else {"type": f"{kind}_delta", kind: chunk}
                )
                self._event("content_block_delta", {"index": index, "delta": delta})
                sent += 1
                if sent == 1 and turn.gate is not None:
                    turn.gate.reached.set()
                    self._hold(turn.gate.release)
            if turn.ending == "stall":
                self._hold()
            if turn.ending == "reset":
                self._reset(turn.release)
            if turn.ending == "error":
                error = {"type": turn.error_type, "message": "fake stream error"}
                self._event("error", {"error": error})
                self._end_chunks()
                self.close_connection = True
                return
            if kind == "thinking":
                delta = {"type": "signature_delta", "signature": SIGNATURE}
                self._event("content_block_delta", {"index": index, "delta": delta})
            self._event("content_block_stop", {"index": index})
        end: Json = {"stop_reason": turn.stop_reason, "stop_sequence": None}
        thinking = sum(len(block.chunks) for block in turn.blocks if block.kind == "thinking")
        # As the API's: the input counts again, and the output so far.
        usage = {
            **{k: v for k, v in _usage(turn.usage).items() if k != "cache_creation"},
            "output_tokens_details": {"thinking_tokens": thinking},
        }
        self._event("message_delta", {"delta": end, "usage": usage})
        self._event("message_stop", {})
        self._end_chunks()

    def _event(self, name: str, data: Json) -> None:
        self._write_chunk(f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode())

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _end_chunks(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _reset(self, release: threading.Event | None = None) -> None:
        """Once `release` is set, close with SO_LINGER 0: the client gets an RST (ECONNRESET), not an orderly end."""
        if release is not None:
            self._hold(release)
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        raise _Gone

    # --- waiting ---

    def _hold(self, release: threading.Event | None = None) -> None:
        """Wait for `release` (forever if None); raise _Gone on stop() or when the client hangs up."""
        while release is None or not release.is_set():
            if self.fake._stopping.wait(_POLL) or self._client_gone():
                raise _Gone

    def _client_gone(self) -> bool:
        """True once the client has closed its side (readable with nothing to read)."""
        readable, _, _ = select.select([self.connection], [], [], 0)
        if not readable:
            return False
        try:
            peeked: bytes = self.connection.recv(1, socket.MSG_PEEK)
        except OSError:
            return True
        return peeked == b""


def _block(block: _Block, text: str, streaming: bool = False) -> Json:
    """The content block with this text: a thinking block's signature comes as a delta when streaming,
    and a tool_use block's `text` is its input JSON (empty at the start of a stream)."""
    if block.kind == "thinking":
        return {"type": "thinking", "thinking": text, "signature": "" if streaming else SIGNATURE}
    if block.kind == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": json.loads(text) if text else {}}
    return {"type": "text", "text": text}


def _usage(usage: Usage) -> Json:
    """The API's usage object, with its breakdown of cache writes by ttl."""
    fields = asdict(usage)
    hour = fields.pop("cache_creation_1h_input_tokens")
    five_minutes = usage.cache_creation_input_tokens - hour
    return fields | {"cache_creation": {"ephemeral_5m_input_tokens": five_minutes, "ephemeral_1h_input_tokens": hour}}


def _message(body: Json, content: list[Json], stop_reason: str | None, usage: Json) -> Json:
    """A Messages API message object (the model echoed from the request)."""
    return {
        "id": f"msg_fake_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "claude-fake"),
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }


def _json_object(raw: bytes) -> Json | None:
    """The body parsed, if it is a JSON object."""
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _request_id() -> str:
    return f"req_fake_{uuid.uuid4().hex[:24]}"


def main() -> None:
    """Serve in echo mode until Ctrl-C."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token-delay", type=float, default=0.0, help="seconds between text deltas")
    parser.add_argument("--chunk-chars", type=int, default=4, help="characters per text delta")
    parser.add_argument("--min-cache-tokens", type=int, help="shortest prefix cached (default: the model's)")
    args = parser.parse_args()
    echo = Echo(chunk_chars=args.chunk_chars, delay=args.token_delay)
    with FakeAnthropic(echo, port=args.port, min_cache_tokens=args.min_cache_tokens) as fake:
        print(f"fake Anthropic API on {fake.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
