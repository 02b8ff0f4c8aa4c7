"""A Claude turn as Chat Completions: stream chunks, or one completion built from those same chunks."""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import time
from collections.abc import AsyncGenerator
from typing import Literal

from ..claude.events import Usage
from ..claude.invocation import ClaudeSettings
from ..openai.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    Choice,
    ChoiceDelta,
    ChunkChoice,
    CompletionTokensDetails,
    CompletionUsage,
    FinishReason,
    PromptTokensDetails,
)
from .request import ChatJob
from .stop import StopScanner
from .turn import TurnEnd, TurnReport, TurnText, prompt_tokens, turn

_FINISH_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def finish_reason(stop_reason: str | None) -> FinishReason:
    return _FINISH_REASONS.get(stop_reason or "", "stop")


def completion_usage(usage: Usage) -> CompletionUsage:
    prompt = prompt_tokens(usage)
    return CompletionUsage(
        prompt_tokens=prompt,
        completion_tokens=usage.output_tokens,
        total_tokens=prompt + usage.output_tokens,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=usage.cache_read_input_tokens),
        completion_tokens_details=CompletionTokensDetails(),
    )


async def completion_chunks(
    job: ChatJob, settings: ClaudeSettings, report: TurnReport
) -> AsyncGenerator[ChatCompletionChunk]:
    """The stream as OpenAI sends it: role in the first delta, a finish_reason chunk, then usage if asked."""
    chunk_id = "chatcmpl-" + secrets.token_hex(12)
    created = int(time.time())

    def chunk(choices: list[ChunkChoice], usage: CompletionUsage | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=chunk_id, created=created, model=job.requested_model, choices=choices, usage=usage
        )

    role: Literal["assistant"] | None = "assistant"  # only in the first delta
    scanner = StopScanner(job.stop)
    end = TurnEnd(None, Usage())
    async with contextlib.aclosing(turn(job.invocation, settings, report)) as items:
        async for item in items:
            text = scanner.feed(item.text) if isinstance(item, TurnText) else scanner.flush()
            if text:
                yield chunk([ChunkChoice(delta=ChoiceDelta(role=role, content=text))])
                role = None
            if isinstance(item, TurnEnd):
                end = item
            elif scanner.stopped:
                end = TurnEnd("stop_sequence", report.usage)
                report.outcome = "stopped at a stop sequence"
                break
    if role:
        yield chunk([ChunkChoice(delta=ChoiceDelta(role=role, content=""))])
    yield chunk([ChunkChoice(delta=ChoiceDelta(), finish_reason=finish_reason(end.stop_reason))])
    if job.include_usage:
        yield chunk([], usage=completion_usage(end.usage))
    if report.outcome == "running":
        report.outcome = f"finished ({end.stop_reason or 'end_turn'})"


async def completion(job: ChatJob, settings: ClaudeSettings, report: TurnReport) -> ChatCompletion:
    """The non-streaming answer, assembled from the stream so both paths share every rule."""
    parts: list[str] = []
    last: ChatCompletionChunk | None = None
    reason: FinishReason = "stop"
    usage: CompletionUsage | None = None
    async for chunk in completion_chunks(dataclasses.replace(job, include_usage=True), settings, report):
        last = chunk
        for choice in chunk.choices:
            if choice.delta.content:
                parts.append(choice.delta.content)
            if choice.finish_reason:
                reason = choice.finish_reason
        usage = chunk.usage or usage
    assert last is not None and usage is not None
    return ChatCompletion(
        id=last.id,
        created=last.created,
        model=job.requested_model,
        choices=[Choice(message=ChatCompletionMessage(content="".join(parts)), finish_reason=reason)],
        usage=usage,
    )
