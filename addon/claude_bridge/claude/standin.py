"""A stand-in of the Anthropic Messages API on 127.0.0.1, for the compatibility probe: the user's CLI talks to it,
so checking what the bridge relies on spends nothing and needs no login.

It plays the model for the probe's scripted turns only, and says in each answer what it heard, so the probe can tell
that a resumed history or a follow-up reached the API whole and in order:
- a conversation that offers the probe's tool and has no result of it yet: a call of that tool;
- one whose last message carries a tool result: the text `tool said <result>`;
- anything else: `heard role:word ...`, each probe word (`w-...`) of the conversation with the role that said it.
It streams SSE when asked, and answers with one JSON message otherwise (the CLI falls back to that). What the CLI
sends as credentials is never kept or logged: only the conversation is, for the probe's checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

PROBE_TOOL = "probe_echo"
TOOL_WORD = "w-ping"  # what the stand-in's call of the probe tool asks it to echo
WORD = re.compile(r"\bw-[a-z]+\b")
INPUT_TOKENS = 12  # every answer's input count: the probe finds it again in the CLI's result
DELTA_CHARS = 4
MAX_BODY = 32 * 2**20  # the CLI's requests are far smaller; anything bigger is not the CLI's
IO_TIMEOUT = 30.0

Json = dict[str, Any]


@dataclass(frozen=True)
class Heard:
    """One request, as the probe checks it."""

    streamed: bool
    tools: tuple[str, ...]  # the names the model was offered
    said: str  # the answer's text (a call's arguments for a tool call)
    output_tokens: int


@dataclass(frozen=True)
class _Block:
    kind: str  # "text" | "tool_use"
    text: str  # the text, or the call's input as JSON
    name: str = ""
    id: str = ""


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def answer(body: Json) -> tuple[list[_Block], str]:
    """The scripted answer to a Messages API request body, and its stop reason."""
    # 2.1.331 sends its environment block as a message of role "system" after the conversation.
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict) and m.get("role") != "system"]
    last = _blocks(messages[-1].get("content")) if messages else []
    results = [block for block in last if block.get("type") == "tool_result"]
    if results:
        return [_Block("text", "tool said " + " ".join(_text(block.get("content")) for block in results))], "end_turn"
    tool = next((name for name in _tool_names(body) if name.endswith(PROBE_TOOL)), None)
    if tool is not None and not _called(messages):
        call_id = f"toolu_standin_{uuid.uuid4().hex[:20]}"
        return [_Block("tool_use", json.dumps({"text": TOOL_WORD}), tool, call_id)], "tool_use"
    return [_Block("text", heard(messages))], "end_turn"


def heard(messages: list[Json]) -> str:
    """Every probe word in the conversation with the role that said it, reminders the CLI adds left out."""
    words = [
        f"{message.get('role')}:{word}"
        for message in messages
        for block in _blocks(message.get("content"))
        if block.get("type") == "text" and not str(block.get("text", "")).startswith("<system-reminder>")
        for word in WORD.findall(str(block.get("text", "")))
    ]
    return "heard " + " ".join(words)


def _blocks(content: Any) -> list[Json]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [block for block in content or [] if isinstance(block, dict)]


def _text(content: Any) -> str:
    return " ".join(str(block.get("text", "")) for block in _blocks(content) if block.get("type") == "text")


def _tool_names(body: Json) -> list[str]:
    return [str(tool.get("name", "")) for tool in body.get("tools") or [] if isinstance(tool, dict)]


def _called(messages: list[Json]) -> bool:
    return any(block.get("type") == "tool_use" for m in messages for block in _blocks(m.get("content")))


class StandIn:
    """The stand-in API, serving on 127.0.0.1 in the running event loop; an async context manager."""

    def __init__(self) -> None:
        self.heard: list[Heard] = []
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        assert self._server is not None, "the stand-in is not serving"
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> StandIn:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._writers):  # a connection the CLI keeps open without a request
            writer.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(IO_TIMEOUT):
                await self._server.wait_closed()
        self._server = None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One request per connection, answered, then closed (`Connection: close`)."""
        self._writers.add(writer)
        try:
            async with asyncio.timeout(IO_TIMEOUT):
                await self._exchange(reader, writer)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
            logger.debug("stand-in API: a connection ended early (%s)", type(e).__name__)
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            body = await _read_request(reader)
        except BadRequest as e:
            error_type = "not_found_error" if e.status == 404 else "invalid_request_error"
            payload = {"type": "error", "error": {"type": error_type, "message": str(e)}}
            writer.write(_head(e.status, "application/json", len(json.dumps(payload))) + json.dumps(payload).encode())
            await writer.drain()
            return
        blocks, stop_reason = answer(body)
        deltas = [list(_pieces(block)) for block in blocks]
        output_tokens = sum(len(pieces) for pieces in deltas)
        streamed = body.get("stream") is True
        said = " ".join(block.text for block in blocks)
        self.heard.append(Heard(streamed, tuple(_tool_names(body)), said, output_tokens))
        message = _message(body, [], None, 1)  # as the API: the count so far
        if streamed:
            writer.write(_head(200, "text/event-stream", None))
            for name, data in _events(message, blocks, deltas, stop_reason, output_tokens):
                writer.write(f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode())
                await writer.drain()
        else:
            whole = _message(body, [_content(block) for block in blocks], stop_reason, output_tokens)
            data = json.dumps(whole).encode()
            writer.write(_head(200, "application/json", len(data)) + data)
        await writer.drain()


async def _read_request(reader: asyncio.StreamReader) -> Json:
    """The JSON body of a `POST /v1/messages`; only the framing headers are read, the rest (credentials) dropped."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    method, _, target = head[0].partition(" ")
    framing = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() in ("content-length", "transfer-encoding"):
            framing[name.strip().lower()] = value.strip().lower()
    if "chunked" in framing.get("transfer-encoding", ""):
        raw = await _read_chunked(reader)
    else:
        length = _size(framing.get("content-length") or "0", 10)
        if length > MAX_BODY:
            raise BadRequest(413, f"a body of {length} bytes")
        raw = await reader.readexactly(length)
    path = target.split(" ")[0].split("?")[0]
    if method != "POST" or path != "/v1/messages":
        raise BadRequest(404, f"the stand-in answers only POST /v1/messages, not {method} {path}")
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise BadRequest(400, "the body is not a JSON object")
    return body


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    raw = b""
    while size := _size((await reader.readuntil(b"\r\n")).split(b";")[0].strip().decode("latin-1") or "0", 16):
        if len(raw) + size > MAX_BODY:
            raise BadRequest(413, "a body over the stand-in's limit")
        raw += await reader.readexactly(size)
        await reader.readexactly(2)
    await reader.readuntil(b"\r\n")  # the empty trailer
    return raw


def _size(text: str, base: int) -> int:
    """A body or chunk length as the CLI writes it; anything else (negative, not a number) is a 400."""
    try:
        size = int(text, base)
    except ValueError:
        size = -1
    if size < 0:
        raise BadRequest(400, f"a length of {text[:20]!r}")
    return size


def _head(status: int, content_type: str, length: int | None) -> bytes:
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 413: "Payload Too Large"}.get(status, "Error")
    lines = [f"HTTP/1.1 {status} {reason}", f"content-type: {content_type}", "connection: close"]
    lines += [f"request-id: req_standin_{uuid.uuid4().hex[:20]}"]
    lines += [f"content-length: {length}"] if length is not None else ["cache-control: no-cache"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _pieces(block: _Block) -> Iterator[str]:
    for start in range(0, len(block.text), DELTA_CHARS):
        yield block.text[start : start + DELTA_CHARS]


def _events(
    message: Json, blocks: list[_Block], deltas: list[list[str]], stop_reason: str, output_tokens: int
) -> Iterator[tuple[str, Json]]:
    """The Messages API's streaming events for these blocks."""
    yield "message_start", {"message": message}
    for index, (block, pieces) in enumerate(zip(blocks, deltas, strict=True)):
        start = {**_content(block), "input": {}} if block.kind == "tool_use" else {"type": "text", "text": ""}
        yield "content_block_start", {"index": index, "content_block": start}
        for piece in pieces:
            delta = (
                {"type": "input_json_delta", "partial_json": piece}
                if block.kind == "tool_use"
                else {"type": "text_delta", "text": piece}
            )
            yield "content_block_delta", {"index": index, "delta": delta}
        yield "content_block_stop", {"index": index}
    usage = {"input_tokens": INPUT_TOKENS, "output_tokens": output_tokens}
    yield "message_delta", {"delta": {"stop_reason": stop_reason, "stop_sequence": None}, "usage": usage}
    yield "message_stop", {}


def _content(block: _Block) -> Json:
    if block.kind == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": json.loads(block.text)}
    return {"type": "text", "text": block.text}


def _message(body: Json, content: list[Json], stop_reason: str | None, output_tokens: int) -> Json:
    return {
        "id": f"msg_standin_{uuid.uuid4().hex[:20]}",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "claude-stand-in"),
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": output_tokens},
    }
