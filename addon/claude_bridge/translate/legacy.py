"""The endpoints older apps still call: `/v1/completions` on the chat core, and `/v1/moderations`, answered
"not flagged" without running anything (Claude applies its own safety to every request it answers)."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import AsyncGenerator
from typing import Literal

from ..claude.runner import ClaudeRunner
from ..openai.chat import ChatCompletionCreateParams
from ..openai.completions import Completion, CompletionChoice, CompletionCreateParams
from ..openai.errors import OpenAIError
from ..openai.moderations import CATEGORIES, Moderation, ModerationCreateParams, ModerationCreateResponse
from ..report import TurnReport
from .chat import completion, completion_chunks
from .request import ChatJob

# OpenAI's default for this endpoint: without max_tokens, a completion is 16 tokens long.
DEFAULT_MAX_TOKENS = 16


def chat_request(request: CompletionCreateParams) -> ChatCompletionCreateParams:
    prompts = [request.prompt] if isinstance(request.prompt, str) else request.prompt
    if len(prompts) != 1:
        raise OpenAIError(400, "claude-bridge completes one prompt per request; send them one by one.", param="prompt")
    if (request.n or 1) > 1:
        raise OpenAIError(400, "claude-bridge returns one choice per request; `n` must be 1.", param="n")
    if request.suffix or request.echo:
        raise OpenAIError(400, "`suffix` and `echo` are not supported by claude-bridge.", param="suffix")
    return ChatCompletionCreateParams.model_validate(
        {
            "model": request.model,
            "messages": [{"role": "user", "content": prompts[0]}],
            "stream": request.stream,
            "stream_options": {"include_usage": True} if request.stream else None,
            "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
            "stop": request.stop,
        }
    )


def _finish(reason: str | None) -> Literal["stop", "length", "content_filter"] | None:
    """Chat's finish reasons in this endpoint's fewer words (tool calls cannot happen here)."""
    if reason is None:
        return None
    return "length" if reason == "length" else "content_filter" if reason == "content_filter" else "stop"


async def completion_stream(job: ChatJob, runner: ClaudeRunner, report: TurnReport) -> AsyncGenerator[Completion]:
    async for chunk in completion_chunks(job, runner, report):
        choices = [
            CompletionChoice(text=choice.delta.content or "", finish_reason=_finish(choice.finish_reason))
            for choice in chunk.choices
            if choice.delta.content or choice.finish_reason
        ]
        if choices or chunk.usage:
            yield Completion(
                id=chunk.id.replace("chatcmpl-", "cmpl-"), created=chunk.created, model=chunk.model, choices=choices,
                usage=chunk.usage,
            )  # fmt: skip


async def text_completion(job: ChatJob, runner: ClaudeRunner, report: TurnReport) -> Completion:
    chat = await completion(dataclasses.replace(job, stream=False), runner, report)
    choice = chat.choices[0]
    return Completion(
        id=chat.id.replace("chatcmpl-", "cmpl-"),
        created=chat.created,
        model=chat.model,
        choices=[CompletionChoice(text=choice.message.content or "", finish_reason=_finish(choice.finish_reason))],
        usage=chat.usage,
    )


def not_flagged(request: ModerationCreateParams) -> ModerationCreateResponse:
    inputs = [request.input] if isinstance(request.input, str) else request.input
    result = Moderation(
        flagged=False,
        categories=dict.fromkeys(CATEGORIES, False),
        category_scores=dict.fromkeys(CATEGORIES, 0.0),
        category_applied_input_types={category: ["text"] for category in CATEGORIES},
    )
    return ModerationCreateResponse(
        id="modr-" + secrets.token_hex(12), model=request.model, results=[result] * max(1, len(inputs))
    )
