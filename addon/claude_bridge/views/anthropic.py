"""The Anthropic view: a Messages API request with its system blocks, turns, tools and prompt-cache breakpoints, and
the answer assembled from its event stream (or whole), with usage including the cache's reads and writes.

Made for the Claude side of a bridged request (the CLI's own `POST /v1/messages?beta=true`), it reads any Messages
API flow. The models here take only what the view shows; the answer's blocks and usage are the CLI events' models.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from mitmproxy import http
from pydantic import BaseModel, ConfigDict, Discriminator, Tag

from ..claude.events import ContentBlock, Message, Usage
from . import sse
from .page import Page, base64_size, first_line, pretty_json
from .view import BridgeView, content_type

PATH = "/v1/messages"


class _Param(BaseModel):
    model_config = ConfigDict(extra="ignore")


class CacheControlEphemeral(_Param):
    type: str = "ephemeral"
    ttl: str | None = None


class _BlockParam(_Param):
    cache_control: CacheControlEphemeral | None = None


class TextBlockParam(_BlockParam):
    type: Literal["text"]
    text: str


class ImageBlockParam(_BlockParam):
    type: Literal["image"]
    source: dict[str, Any]


class ToolUseBlockParam(_BlockParam):
    type: Literal["tool_use"]
    id: str
    name: str
    input: Any = None


class ToolResultBlockParam(_BlockParam):
    type: Literal["tool_result"]
    tool_use_id: str
    content: str | list[Annotated[TextBlockParam | ImageBlockParam, Discriminator("type")]] | None = None
    is_error: bool | None = None


class ThinkingBlockParam(_BlockParam):
    type: Literal["thinking"]
    thinking: str


class OtherBlockParam(_BlockParam):
    """redacted_thinking, document, server tools' blocks, ...: named, not shown."""

    type: str


_KNOWN_BLOCKS = ("text", "image", "tool_use", "tool_result", "thinking")

BlockParam = Annotated[
    Annotated[TextBlockParam, Tag("text")]
    | Annotated[ImageBlockParam, Tag("image")]
    | Annotated[ToolUseBlockParam, Tag("tool_use")]
    | Annotated[ToolResultBlockParam, Tag("tool_result")]
    | Annotated[ThinkingBlockParam, Tag("thinking")]
    | Annotated[OtherBlockParam, Tag("other")],
    Discriminator(
        lambda block: block.get("type") if isinstance(block, dict) and block.get("type") in _KNOWN_BLOCKS else "other"
    ),
]


class MessageParam(_Param):
    role: str  # user, assistant, and the CLI's own "system" turns
    content: str | list[BlockParam]


class ToolUnionParam(_Param):
    name: str
    type: str | None = None
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    cache_control: CacheControlEphemeral | None = None


class MessageCreateParams(_Param):
    model: str
    messages: list[MessageParam]
    system: str | list[TextBlockParam] | None = None
    tools: list[ToolUnionParam] = []
    max_tokens: int | None = None
    stream: bool | None = None
    thinking: dict[str, Any] | None = None
    output_config: dict[str, Any] | None = None
    tool_choice: dict[str, Any] | None = None


class AnthropicView(BridgeView):
    name = "Anthropic Messages"

    def render(self, data: bytes, message: http.Message, flow: http.HTTPFlow) -> str | None:
        if flow.request.path.split("?", 1)[0].rstrip("/") != PATH or not data:
            return None
        if isinstance(message, http.Request):
            return _request(MessageCreateParams.model_validate_json(data))
        if content_type(message) == "text/event-stream":
            return _answer_page(_stream(sse.parse(data)), streamed=True)
        return _answer_page(_whole(json.loads(data)), streamed=False)


# --- request ---------------------------------------------------------------------------------------


class _Breakpoints:
    """Where cache_control marks fall, counted as they are shown."""

    def __init__(self) -> None:
        self.places: list[str] = []

    def mark(self, page: Page, control: CacheControlEphemeral | None, place: str, indent: int = 2) -> None:
        if control is None:
            return
        self.places.append(place)
        ttl = f", ttl {control.ttl}" if control.ttl else ""
        page.line(
            f"▲ cache breakpoint {len(self.places)} ({control.type}{ttl}): the prompt up to here is cached", indent
        )


def _request(params: MessageCreateParams) -> str:
    """In the order the prompt cache reads a request: tools, system, messages; a breakpoint covers all above it."""
    page, marks = Page(), _Breakpoints()
    page.line(f"Anthropic Messages request for {params.model}, {'streamed' if params.stream else 'not streamed'}")
    settings = [f"max_tokens {params.max_tokens}"] if params.max_tokens else []
    for name in ("thinking", "output_config", "tool_choice"):
        if value := getattr(params, name):
            settings.append(f"{name} {json.dumps(value)}")
    if settings:
        page.line(" · ".join(settings))
    if params.tools:
        page.section(f"tools: {len(params.tools)}")
        for tool in params.tools:
            properties = ", ".join((tool.input_schema or {}).get("properties") or {})
            about = f": {first_line(tool.description)}" if tool.description else ""
            page.line(f"{tool.name}({properties}){about}", 2)
            marks.mark(page, tool.cache_control, f"tool {tool.name}", 4)
    system = (
        params.system if isinstance(params.system, list) else [TextBlockParam(type="text", text=params.system or "")]
    )
    for number, block in enumerate(system if params.system else []):
        page.section(f"system block {number}")
        page.block(block.text)
        marks.mark(page, block.cache_control, f"system block {number}")
    for number, message in enumerate(params.messages):
        page.section(f"{message.role} (message {number})")
        content = message.content
        for block in content if isinstance(content, list) else [TextBlockParam(type="text", text=content)]:
            _block(page, block)
            marks.mark(page, block.cache_control, f"message {number}")
    page.line()
    page.line(f"cache breakpoints: {len(marks.places)}" + (f" ({', '.join(marks.places)})" if marks.places else ""))
    return page.text()


def _block(page: Page, block: Any) -> None:
    match block:
        case TextBlockParam(text=text):
            page.block(text)
        case ImageBlockParam(source=source):
            page.line(f"[image: {_image(source)}]", 2)
        case ToolUseBlockParam(id=call_id, name=name, input=arguments):
            page.line(f"→ tool_use {name} ({call_id})", 2)
            page.block(pretty_json(arguments), 4)
        case ToolResultBlockParam(tool_use_id=call_id, content=content, is_error=is_error):
            page.line(f"← tool_result for {call_id}{' (an error)' if is_error else ''}", 2)
            for part in [TextBlockParam(type="text", text=content)] if isinstance(content, str) else content or []:
                if isinstance(part, TextBlockParam):
                    page.block(part.text, 4)
                else:
                    page.line(f"[image: {_image(part.source)}]", 4)
        case ThinkingBlockParam(thinking=thinking):
            page.line("(thinking)", 2)
            page.block(thinking, 4)
        case _:
            page.line(f"[{block.type} block]", 2)


def _image(source: dict[str, Any]) -> str:
    if source.get("type") == "base64":
        return f"{source.get('media_type', 'unknown type')}, {base64_size(str(source.get('data', '')))} inline"
    return str(source.get("url") or source.get("file_id") or source.get("type"))


# --- answer ----------------------------------------------------------------------------------------


@dataclass
class _Reply:
    model: str = ""
    message_id: str = ""
    blocks: dict[int, ContentBlock] = field(default_factory=dict)
    arguments: dict[int, str] = field(default_factory=dict)
    stop_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    cache_ttls: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    events: int = 0
    unread: int = 0
    ended: bool = False


def _stream(events: list[sse.ServerSentEvent]) -> _Reply:
    reply = _Reply()
    for event in events:
        reply.events += 1
        try:
            _event(json.loads(event.data), reply)
        except (ValueError, AttributeError, TypeError):
            reply.unread += 1
    if not events or reply.unread == len(events):
        raise ValueError("not a Messages API event stream")
    return reply


def _event(event: dict[str, Any], reply: _Reply) -> None:
    index = event.get("index", 0)
    match event.get("type"):
        case "message_start":
            message = event["message"]
            reply.model, reply.message_id = message.get("model", ""), message.get("id", "")
            _usage(reply, message.get("usage") or {})
        case "content_block_start":
            reply.blocks[index] = ContentBlock.model_validate(event["content_block"])
        case "content_block_delta":
            _delta(reply, index, event["delta"])
        case "message_delta":
            reply.stop_reason = (event.get("delta") or {}).get("stop_reason") or reply.stop_reason
            _usage(reply, event.get("usage") or {})
        case "message_stop":
            reply.ended = True
        case "error":
            error = event.get("error") or {}
            reply.error, reply.ended = f"{error.get('type')}: {error.get('message')}", True
        case "content_block_stop" | "ping":
            pass
        case _:
            raise ValueError(f"an event of type {event.get('type')!r}")


def _delta(reply: _Reply, index: int, delta: dict[str, Any]) -> None:
    block = reply.blocks.setdefault(index, ContentBlock(type="text"))
    match delta.get("type"):
        case "text_delta":
            block.text = (block.text or "") + delta["text"]
        case "thinking_delta":
            block.thinking = (block.thinking or "") + delta["thinking"]
        case "input_json_delta":
            reply.arguments[index] = reply.arguments.get(index, "") + delta["partial_json"]
        case "signature_delta":
            pass
        case other:
            raise ValueError(f"a delta of type {other!r}")


def _usage(reply: _Reply, counts: dict[str, Any]) -> None:
    """message_start's counts, updated by message_delta's (the final output count, and input counts again)."""
    given = {name: value for name, value in counts.items() if name in Usage.model_fields and value is not None}
    reply.usage = Usage.model_validate(reply.usage.model_dump() | given)
    if isinstance(counts.get("cache_creation"), dict):
        reply.cache_ttls = {name: value for name, value in counts["cache_creation"].items() if isinstance(value, int)}


def _whole(body: Any) -> _Reply:
    if isinstance(body, dict) and body.get("type") == "error":
        error = body.get("error") or {}
        return _Reply(error=f"{error.get('type')}: {error.get('message')}", ended=True)
    message = Message.model_validate(body)
    reply = _Reply(message.model, message.id, dict(enumerate(message.content)), stop_reason=message.stop_reason)
    _usage(reply, body.get("usage") or {})
    reply.ended = True
    return reply


def _answer_page(reply: _Reply, streamed: bool) -> str:
    page = Page()
    how = f"streamed in {reply.events} events" if streamed else "not streamed"
    page.line(
        f"Anthropic Messages answer from {reply.model or 'an unnamed model'}, {how}"
        + (f" ({reply.message_id})" if reply.message_id else "")
    )
    for index, block in sorted(reply.blocks.items()):
        match block.type:
            case "text":
                page.section("text")
                page.block(block.text or "")
            case "thinking":
                page.section("thinking")
                page.block(block.thinking or "")
            case "tool_use":
                page.section(f"tool_use {block.name} ({block.id})")
                page.block(pretty_json(reply.arguments.get(index) or block.input or {}))
            case other:
                page.section(f"{other} block")
    if reply.error:
        page.section("error")
        page.block(reply.error)
    page.line()
    page.line(f"stop reason: {reply.stop_reason}" if reply.stop_reason else "no stop reason")
    page.line(_usage_line(reply))
    if streamed and not reply.ended:
        page.line("the stream ends without message_stop: the answer was cut short")
    if reply.unread:
        page.line(f"{reply.unread} of {reply.events} events not read")
    return page.text()


def _usage_line(reply: _Reply) -> str:
    """Input in its three parts (uncached, read from the cache, written to it, by lifetime when told), output."""
    usage = reply.usage
    ttls = [
        f"{name.removeprefix('ephemeral_').removesuffix('_input_tokens')} {count}"
        for name, count in reply.cache_ttls.items()
        if count
    ]
    lifetimes = " (" + ", ".join(ttls) + ")" if ttls else ""
    return (
        f"usage: input {usage.input_tokens} · cache read {usage.cache_read_input_tokens} · cache written "
        f"{usage.cache_creation_input_tokens}{lifetimes} · output {usage.output_tokens}"
    )
