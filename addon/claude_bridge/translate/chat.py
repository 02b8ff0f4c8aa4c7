"""A Claude turn as Chat Completions: stream chunks, or one completion built from those same chunks."""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import time
from collections.abc import AsyncGenerator
from typing import Literal

from ..claude.events import Usage
from ..claude.runner import ClaudeRunner
from ..openai.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatCompletionMessageToolCall,
    Choice,
    ChoiceDelta,
    ChoiceDeltaFunctionCall,
    ChoiceDeltaToolCall,
    ChunkChoice,
    CompletionTokensDetails,
    CompletionUsage,
    FinishReason,
    Function,
    PromptTokensDetails,
)
from ..report import Outcome, TurnReport, prompt_tokens
from .request import ChatJob
from .stop import StopScanner
from .turn import TurnEnd, TurnReasoning, TurnText, TurnToolArguments, TurnToolCall, turn

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
        completion_tokens_details=CompletionTokensDetails(reasoning_tokens=usage.output_tokens_details.thinking_tokens),
    )


async def completion_chunks(
    job: ChatJob, runner: ClaudeRunner, report: TurnReport
) -> AsyncGenerator[ChatCompletionChunk]:
    """The stream as OpenAI sends it: role in the first delta, tool calls as fragments (id, type and name
    first, then arguments), a finish_reason chunk, then usage if asked."""
    chunk_id = "chatcmpl-" + secrets.token_hex(12)
    created = int(time.time())
    role: Literal["assistant"] | None = "assistant"  # only in the first delta

    def chunk(delta: ChoiceDelta) -> ChatCompletionChunk:
        nonlocal role
        delta.role, role = role, None
        choice = ChunkChoice(delta=delta)
        return ChatCompletionChunk(id=chunk_id, created=created, model=job.requested_model, choices=[choice])

    scanner = StopScanner(job.stop)
    end = TurnEnd(None, Usage())
    items = turn(
        job.invocation,
        runner,
        report,
        caller=job.caller,
        parallel_tool_calls=job.parallel_tool_calls,
        reasoning=job.reasoning_content,
    )
    async with contextlib.aclosing(items):
        async for item in items:
            text = scanner.feed(item.text) if isinstance(item, TurnText) else scanner.flush()
            if text:
                yield chunk(ChoiceDelta(content=text))
            match item:
                case TurnReasoning(text=thinking):
                    yield chunk(ChoiceDelta(reasoning_content=thinking))
                case TurnToolCall() | TurnToolArguments() if job.legacy_functions:
                    if item.index == 0:  # a legacy function_call is a single call
                        yield chunk(ChoiceDelta(function_call=_function_call_delta(item)))
                case TurnToolCall(index=index, id=call_id, name=name):
                    call = ChoiceDeltaToolCall(
                        index=index,
                        id=call_id,
                        type="function",
                        function=ChoiceDeltaFunctionCall(name=name, arguments=""),
                    )
                    yield chunk(ChoiceDelta(tool_calls=[call]))
                case TurnToolArguments(index=index, fragment=fragment):
                    call = ChoiceDeltaToolCall(index=index, function=ChoiceDeltaFunctionCall(arguments=fragment))
                    yield chunk(ChoiceDelta(tool_calls=[call]))
                case TurnEnd():
                    end = item
            if scanner.stopped:
                end = TurnEnd("stop_sequence", report.usage)
                report.end(Outcome.STOPPED)
                break
    if role:
        yield chunk(ChoiceDelta(content=""))
    reason = finish_reason(end.stop_reason)
    if reason == "tool_calls" and job.legacy_functions:
        reason = "function_call"
    done = ChunkChoice(delta=ChoiceDelta(), finish_reason=reason)
    yield ChatCompletionChunk(id=chunk_id, created=created, model=job.requested_model, choices=[done])
    if job.include_usage:
        usage = completion_usage(end.usage)
        yield ChatCompletionChunk(id=chunk_id, created=created, model=job.requested_model, choices=[], usage=usage)
    report.finish(end.stop_reason)


def _function_call_delta(item: TurnToolCall | TurnToolArguments) -> ChoiceDeltaFunctionCall:
    if isinstance(item, TurnToolCall):
        return ChoiceDeltaFunctionCall(name=item.name, arguments="")
    return ChoiceDeltaFunctionCall(arguments=item.fragment)


async def completion(job: ChatJob, runner: ClaudeRunner, report: TurnReport) -> ChatCompletion:
    """The non-streaming answer, assembled from the stream so both paths share every rule."""
    content: list[str] = []
    reasoning: list[str] = []
    calls: dict[int, tuple[str, str, list[str]]] = {}  # index -> id, name, argument fragments
    legacy: tuple[str, list[str]] | None = None
    last: ChatCompletionChunk | None = None
    reason: FinishReason = "stop"
    usage: CompletionUsage | None = None
    async for chunk in completion_chunks(dataclasses.replace(job, include_usage=True), runner, report):
        last = chunk
        usage = chunk.usage or usage
        for choice in chunk.choices:
            delta = choice.delta
            content += [delta.content] if delta.content else []
            reasoning += [delta.reasoning_content] if delta.reasoning_content else []
            for call in delta.tool_calls or ():
                if call.id is not None:
                    calls[call.index] = (call.id, call.function.name or "", [])
                calls[call.index][2].append(call.function.arguments or "")
            if delta.function_call is not None:
                legacy = legacy or (delta.function_call.name or "", [])
                legacy[1].append(delta.function_call.arguments or "")
            reason = choice.finish_reason or reason
    assert last is not None and usage is not None
    message = ChatCompletionMessage(
        content="".join(content) if content or not (calls or legacy) else None,
        tool_calls=[
            ChatCompletionMessageToolCall(id=call_id, function=Function(name=name, arguments="".join(fragments)))
            for call_id, name, fragments in calls.values()
        ]
        or None,
        function_call=Function(name=legacy[0], arguments="".join(legacy[1])) if legacy else None,
        reasoning_content="".join(reasoning) or None,
    )
    return ChatCompletion(
        id=last.id,
        created=last.created,
        model=job.requested_model,
        choices=[Choice(message=message, finish_reason=reason)],
        usage=usage,
    )
