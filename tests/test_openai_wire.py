"""Completions and stream chunks as the official OpenAI SDK types accept them under strict validation."""

from __future__ import annotations

import json
from typing import Any

import openai.types.chat as sdk
import pytest

from claude_bridge.claude.events import Usage
from claude_bridge.openai import sse
from claude_bridge.openai.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    Choice,
    ChoiceDelta,
    ChunkChoice,
)
from claude_bridge.openai.errors import OpenAIError
from claude_bridge.translate.chat import completion_usage

USAGE = completion_usage(
    Usage(input_tokens=3, output_tokens=2, cache_creation_input_tokens=1, cache_read_input_tokens=4)
)


def chunk(choices: list[ChunkChoice], usage: Any = None) -> ChatCompletionChunk:
    return ChatCompletionChunk(id="chatcmpl-abc", created=1_700_000_000, model="gpt-4o", choices=choices, usage=usage)


def decode(event: bytes) -> dict[str, Any]:
    assert event.startswith(b"data: ") and event.endswith(b"\n\n")
    assert event.count(b"\n") == 2
    return json.loads(event.removeprefix(b"data: "))


@pytest.mark.parametrize(
    ("choice", "delta"),
    [
        (ChunkChoice(delta=ChoiceDelta(role="assistant", content="Hel")), {"role": "assistant", "content": "Hel"}),
        (ChunkChoice(delta=ChoiceDelta(content="lo")), {"content": "lo"}),
        (ChunkChoice(delta=ChoiceDelta(content="")), {"content": ""}),
        (ChunkChoice(delta=ChoiceDelta()), {}),
    ],
)
def test_content_chunk_has_null_finish_reason_and_logprobs_and_no_null_delta_keys(
    choice: ChunkChoice, delta: dict[str, str]
) -> None:
    data = decode(sse.CHAT_COMPLETIONS.event(chunk([choice])))
    assert data["choices"] == [{"index": 0, "delta": delta, "finish_reason": None, "logprobs": None}]
    assert "usage" not in data
    sdk.ChatCompletionChunk.model_validate(data, strict=True)


def test_finish_chunk_carries_its_reason() -> None:
    data = decode(sse.CHAT_COMPLETIONS.event(chunk([ChunkChoice(delta=ChoiceDelta(), finish_reason="length")])))
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["object"] == "chat.completion.chunk"
    assert sdk.ChatCompletionChunk.model_validate(data, strict=True).choices[0].finish_reason == "length"


def test_usage_chunk_has_no_choices() -> None:
    data = decode(sse.CHAT_COMPLETIONS.event(chunk([], usage=USAGE)))
    assert data["choices"] == []
    parsed = sdk.ChatCompletionChunk.model_validate(data, strict=True)
    assert parsed.usage is not None
    assert (parsed.usage.prompt_tokens, parsed.usage.completion_tokens, parsed.usage.total_tokens) == (8, 2, 10)
    assert parsed.usage.prompt_tokens_details and parsed.usage.prompt_tokens_details.cached_tokens == 4


def test_stream_ends_with_done_and_errors_keep_the_whole_envelope() -> None:
    assert sse.CHAT_COMPLETIONS.end == b"data: [DONE]\n\n"
    error = decode(sse.CHAT_COMPLETIONS.error(OpenAIError(504, "too slow", "server_error")))
    assert error == {"error": {"message": "too slow", "type": "server_error", "param": None, "code": None}}


def test_completion_is_strictly_valid() -> None:
    completion = ChatCompletion(
        id="chatcmpl-abc",
        created=1_700_000_000,
        model="gpt-4o",
        choices=[Choice(message=ChatCompletionMessage(content="Hello"), finish_reason="stop")],
        usage=USAGE,
    )
    data = json.loads(completion.model_dump_json())
    assert data["object"] == "chat.completion"
    assert data["choices"][0]["logprobs"] is None
    parsed = sdk.ChatCompletion.model_validate(data, strict=True)
    assert parsed.choices[0].message.content == "Hello"
    assert parsed.choices[0].message.role == "assistant"
    assert parsed.usage is not None and parsed.usage.total_tokens == 10
