"""In-process loopback HTTP server that writes synthesized responses while they are produced.

mitmproxy sends a response an addon builds in one piece, so real token streaming needs an upstream that
streams: the addon parks a validated request here under an unguessable id and points the flow at us.
Only parked ids are served, so nothing else on the machine can drive the CLI through this port.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from logging import DEBUG
from typing import NamedTuple

from pydantic import BaseModel

from .openai import sse
from .openai.errors import OpenAIError

logger = logging.getLogger(__name__)

JOB_PATH_PREFIX = "/claude-bridge/jobs/"
SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
MAX_HEADER_BYTES = 64 * 1024
# mitmproxy writes a request head at once; only a stranger to this port would be slower.
HEAD_TIMEOUT = 10.0
BODY_PIECE = 64 * 1024
# Enough for each run to be interrupted and reaped (SIGINT, then SIGKILL after the CLI's grace) and its error sent.
STOP_GRACE = 5.0
SHUTTING_DOWN = OpenAIError(
    503,
    "claude-bridge is shutting down; this request was stopped. Retry once it is back.",
    "server_error",
    code="bridge_shutting_down",
)


@dataclass(frozen=True)
class StreamJob:
    """A parked streaming request: its items, written as server-sent events in the endpoint's format."""

    items: Callable[[], AsyncGenerator[BaseModel]]
    sse: sse.Format


@dataclass(frozen=True)
class JsonJob:
    """A parked request answered by one JSON object."""

    answer: Callable[[], Awaitable[BaseModel]]


@dataclass(frozen=True)
class Refusal:
    """A request refused from its headers: answered at once, its body never read (mitmproxy streams it away)."""

    error: OpenAIError


Job = StreamJob | JsonJob | Refusal


class Head(NamedTuple):
    """A request head as mitmproxy sent it: the request line's parts and the header lines, in order."""

    method: str
    path: str
    lines: list[str]

    @property
    def headers(self) -> dict[str, str]:
        return {name.strip().lower(): value.strip() for name, _, value in (h.partition(":") for h in self.lines)}


class Loopback[T](abc.ABC):
    """A server on 127.0.0.1 that serves only what was parked with it, once, under an unguessable path.

    The work a parked item stands for is `_handle`'s; `stop` gives the connections `grace` seconds to end.
    """

    def __init__(self, prefix: str, head_timeout: float = HEAD_TIMEOUT, grace: float = STOP_GRACE) -> None:
        self.prefix = prefix
        self.head_timeout = head_timeout
        self.grace = grace
        self._parked: dict[str, T] = {}
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()

    @property
    def port(self) -> int:
        assert self._server, "loopback server not started"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def started(self) -> bool:
        return self._server is not None

    def serves(self, address: tuple[str, int] | None) -> bool:
        """Whether a server connection is to this server (so a diverted flow, whatever names it carries)."""
        return self._server is not None and address == ("127.0.0.1", self.port)

    async def start(self) -> None:
        self._stopping.clear()
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        logger.debug("%s listening on 127.0.0.1:%d", type(self).__name__, self.port)

    async def stop(self) -> None:
        """Stop serving (the handlers see `_stopping`, to say why); connections that outlast the grace are cut."""
        if self._server is None:
            return
        self._server.close()
        self._stopping.set()
        if self._connections:
            _, late = await asyncio.wait(set(self._connections), timeout=self.grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        self._server = None
        self._parked.clear()

    def park(self, item: T) -> str:
        """The path mitmproxy must request to have `item` served."""
        key = secrets.token_urlsafe(32)
        self._parked[key] = item
        return self.prefix + key

    def unpark(self, path: str) -> None:
        """Forget an item whose flow never reached the server (killed or failed before connecting)."""
        self._parked.pop(path.removeprefix(self.prefix), None)

    def _claim(self, path: str) -> T | None:
        return self._parked.pop(path.removeprefix(self.prefix), None) if path.startswith(self.prefix) else None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task
        self._connections.add(task)
        try:
            head = await read_head(reader, self.head_timeout)
            item = self._claim(head.path) if head is not None else None
            if head is None or item is None:
                await write_head(writer, 404, {"Content-Type": "text/plain"}, b"unknown job\n")
                return
            await self._handle(item, head, reader, writer)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
            logger.debug("%s connection ended: %r", type(self).__name__, e)
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    @abc.abstractmethod
    async def _handle(self, item: T, head: Head, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer the request parked as `item` (its head read, its body still in `reader`)."""


async def read_head(reader: asyncio.StreamReader, timeout: float) -> Head | None:
    """The request head; None if it is larger than any mitmproxy would send (so it is no request of ours)."""
    async with asyncio.timeout(timeout):
        raw = await reader.readuntil(b"\r\n\r\n")
    if len(raw) > MAX_HEADER_BYTES:
        return None
    request_line, *lines = raw.decode("latin-1").removesuffix("\r\n\r\n").split("\r\n")
    parts = request_line.split(" ")
    return Head(parts[0], parts[1], lines) if len(parts) == 3 else None


class Backend(Loopback[Job]):
    """The parked jobs of bridged requests, each answered as it is produced."""

    def __init__(self, head_timeout: float = HEAD_TIMEOUT) -> None:
        super().__init__(JOB_PATH_PREFIX, head_timeout)

    async def _handle(self, job: Job, head: Head, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not isinstance(job, Refusal):
            # The body is the client's original request, kept on the flow for inspection; the job holds it parsed.
            await _skip_body(reader, head.headers)
        await self._answer(job, reader, writer)

    async def _answer(self, job: Job, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Run the job, cancelling it the moment mitmproxy drops the connection (the client went away)
        or the bridge shuts down (then the client is told so, in the stream if it has started)."""
        reply = _Reply(job, writer)
        work = asyncio.create_task(reply.write())
        hangup = asyncio.create_task(_until_eof(reader))
        shutdown = asyncio.create_task(self._stopping.wait())
        try:
            done, _ = await asyncio.wait({work, hangup, shutdown}, return_when=asyncio.FIRST_COMPLETED)
            if hangup in done and work not in done:
                logger.info("client disconnected; stopping its Claude run")
        finally:
            hangup.cancel()
            shutdown.cancel()
            # The reason reaches the run as the CancelledError's argument, for its report and log line.
            work.cancel("the bridge is shutting down" if self._stopping.is_set() else "the client disconnected")
            with contextlib.suppress(asyncio.CancelledError):
                await work
        if shutdown in done and work not in done:
            await reply.error(SHUTTING_DOWN)


async def _skip_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> None:
    """Read past the request body, whether mitmproxy forwards it with a length or chunked (as the client sent it)."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            await _skip(reader, size + 2)
        while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, then the blank line
            pass
    else:
        await _skip(reader, int(headers.get("content-length", "0")))


async def _skip(reader: asyncio.StreamReader, size: int) -> None:
    """Read `size` bytes a piece at a time and keep none: whatever a length announces, memory stays flat."""
    while size > 0:
        piece = await reader.read(min(size, BODY_PIECE))
        if not piece:
            raise asyncio.IncompleteReadError(b"", size)
        size -= len(piece)


async def _until_eof(reader: asyncio.StreamReader) -> None:
    while await reader.read(64 * 1024):
        pass


class _Reply:
    """Writes one job's answer, remembering whether the headers went out (then errors go in the stream)."""

    def __init__(self, job: Job, writer: asyncio.StreamWriter) -> None:
        self.job = job
        self.writer = writer
        self.started = False

    async def write(self) -> None:
        try:
            match self.job:
                case JsonJob(answer=answer):
                    body = (await answer()).model_dump_json().encode()
                    await write_head(self.writer, 200, {"Content-Type": "application/json"}, body)
                case StreamJob(items=items, sse=framing):
                    async with contextlib.aclosing(items()) as stream:
                        async for item in stream:
                            await self._start_stream()
                            await _write_chunk(self.writer, framing.event(item))
                    await self._start_stream()
                    await _write_chunk(self.writer, framing.end)
                    await _end_body(self.writer)
                case Refusal(error=error):
                    await self.error(error)
        except OpenAIError as e:
            await self.error(e)
        except ConnectionError:
            raise
        except Exception as e:
            # Named, not printed: an exception's text may quote the prompt.
            logger.warning(
                "claude-bridge failed while answering: %s", type(e).__name__, exc_info=logger.isEnabledFor(DEBUG)
            )
            failure = OpenAIError(500, "claude-bridge failed on this request; its log says why.", "server_error")
            await self.error(failure)

    async def _start_stream(self) -> None:
        """Headers wait for the first item: a failure before any text gets a real HTTP status."""
        if not self.started:
            await write_head(self.writer, 200, SSE_HEADERS)
            self.started = True

    async def error(self, error: OpenAIError) -> None:
        if self.started and isinstance(self.job, StreamJob):
            # Headers are sent: the error travels in the stream, and the body ends without the end marker.
            await _write_chunk(self.writer, self.job.sse.error(error))
            await _end_body(self.writer)
        else:
            headers = {"Content-Type": "application/json", **error.headers}
            await write_head(self.writer, error.status, headers, error.response().model_dump_json().encode())


async def write_head(
    writer: asyncio.StreamWriter, status: int, headers: dict[str, str], body: bytes | None = None
) -> None:
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append("Connection: close")
    lines.append(f"Content-Length: {len(body)}" if body is not None else "Transfer-Encoding: chunked")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))
    await writer.drain()


async def _write_chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    """One HTTP/1.1 chunk, flushed at once so the token reaches the client now."""
    if data:
        writer.write(b"%x\r\n%s\r\n" % (len(data), data))
        await writer.drain()


async def _end_body(writer: asyncio.StreamWriter) -> None:
    writer.write(b"0\r\n\r\n")
    await writer.drain()
