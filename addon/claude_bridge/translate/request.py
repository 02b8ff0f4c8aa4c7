"""An OpenAI chat request as one Claude CLI invocation."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from ..claude.invocation import ClaudeInvocation, ContentBlock, HistoryMessage
from ..openai.chat import (
    ChatCompletionContentPartImage,
    ChatCompletionContentPartOther,
    ChatCompletionContentPartText,
    ChatCompletionCreateParams,
    ChatCompletionDeveloperMessageParam,
    ChatCompletionSystemMessageParam,
    MessageContent,
)
from ..openai.errors import OpenAIError
from .images import image_block
from .model_map import ModelMap

HistoryMode = Literal["resume", "flatten"]


@dataclass(frozen=True)
class ChatJob:
    """What the backend needs to answer one chat request."""

    requested_model: str
    invocation: ClaudeInvocation
    stream: bool
    include_usage: bool
    stop: tuple[str, ...]


def chat_job(request: ChatCompletionCreateParams, models: ModelMap, history_mode: HistoryMode) -> ChatJob:
    if request.n is not None and request.n > 1:
        raise OpenAIError(400, "claude-bridge returns one choice per request; `n` must be 1.", param="n")
    system_parts: list[str] = []
    conversation: list[HistoryMessage] = []
    for index, message in enumerate(request.messages):
        if isinstance(message, ChatCompletionSystemMessageParam | ChatCompletionDeveloperMessageParam):
            if text := _text(message.content, index):
                system_parts.append(text)
            continue
        blocks = _blocks(message.content, index)
        if not blocks:
            continue
        if conversation and conversation[-1].role == message.role:
            # One turn per role change, as the API sees it; the CLI would otherwise merge or pad them its own way.
            conversation[-1] = HistoryMessage(message.role, conversation[-1].content + blocks)
        else:
            conversation.append(HistoryMessage(message.role, blocks))
    if not conversation or conversation[-1].role != "user":
        raise OpenAIError(
            400,
            "The last message must be a user message with text: Claude Code answers a user turn and cannot "
            "continue a prefilled assistant message.",
            param="messages",
        )
    *history, prompt = conversation
    if history and history_mode == "flatten":
        prompt = HistoryMessage("user", _flatten(history, prompt))
        history = []
    stop = (request.stop,) if isinstance(request.stop, str) else tuple(request.stop or ())
    invocation = ClaudeInvocation(
        model=models.resolve(request.model),
        prompt=prompt.content,
        system_prompt="\n\n".join(system_parts) or None,
        history=tuple(history),
        max_output_tokens=request.max_completion_tokens or request.max_tokens,
    )
    return ChatJob(
        requested_model=request.model,
        invocation=invocation,
        stream=bool(request.stream),
        include_usage=bool(request.stream_options and request.stream_options.include_usage),
        stop=stop,
    )


def _blocks(content: MessageContent | None, index: int) -> list[ContentBlock]:
    """Content as Anthropic blocks, one per OpenAI part; blank text parts are dropped (the API refuses them)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content.strip() else []
    blocks = []
    for part_index, part in enumerate(content):
        param = f"messages[{index}].content[{part_index}]"
        match part:
            case ChatCompletionContentPartText(text=text) if text.strip():
                blocks.append({"type": "text", "text": text})
            case ChatCompletionContentPartImage():
                blocks.append(image_block(part, param))
            case ChatCompletionContentPartOther():
                raise OpenAIError(
                    400,
                    f"Content parts of type {part.type!r} are not supported by claude-bridge; send text or image_url.",
                    param=param,
                )
    return blocks


def _text(content: MessageContent, index: int) -> str:
    """Text only (system and developer messages): Claude's system prompt cannot hold images."""
    blocks = _blocks(content, index)
    if any(block["type"] != "text" for block in blocks):
        raise OpenAIError(400, "System and developer messages can only hold text.", param=f"messages[{index}].content")
    return "\n".join(block["text"] for block in blocks)


def _flatten(history: list[HistoryMessage], prompt: HistoryMessage) -> list[ContentBlock]:
    """The fallback when `--resume` is off: earlier turns as labelled text ahead of the new message.

    Images of earlier turns follow the transcript, each named where it stood (`[image 1]`).
    """
    images: list[ContentBlock] = []
    turns = []
    for message in history:
        parts = []
        for block in message.content:
            if block["type"] == "text":
                parts.append(block["text"])
            else:
                images.append(block)
                parts.append(f"[image {len(images)}]")
        turns.append(f"{message.role.capitalize()}: " + "\n".join(parts))
    preface = "The conversation so far:\n\n" + "\n\n".join(turns) + "\n\nThe user's new message follows."
    return [{"type": "text", "text": preface}, *images, *prompt.content]


def parse_chat_request(body: bytes) -> ChatCompletionCreateParams:
    """The request body validated, or a 400 naming the offending field as OpenAI does."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise OpenAIError(
            400,
            "We could not parse the JSON body of your request. The body must be a JSON object "
            "(send it with `Content-Type: application/json`).",
        ) from None
    if not isinstance(data, dict):
        raise OpenAIError(400, "The request body must be a JSON object.")
    try:
        return ChatCompletionCreateParams.model_validate(data)
    except ValidationError as e:
        # Of a union's alternatives, the error that got deepest into the value names the real problem.
        error = max(e.errors(include_url=False), key=lambda error: len(error["loc"]))
        param = _param_path(error["loc"], data)
        raise OpenAIError(400, f"Invalid value for '{param}': {error['msg']}.", param=param) from None


def _param_path(loc: tuple[int | str, ...], data: Any) -> str:
    """`('messages', 0, 'user', 'content')` as OpenAI writes it: `messages[0].content`.

    pydantic adds the labels of union members to the location; only steps that exist in the request
    (or a missing field at the end) are part of the path a person can look for.
    """
    path, node = "", data
    for position, part in enumerate(loc):
        exists = (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and part < len(node)
        )
        if not exists and (position < len(loc) - 1 or not isinstance(node, dict)):
            continue
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        node = node[part] if exists else None
    return path
