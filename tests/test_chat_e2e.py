"""The official openai SDK against a real bridge process, real CLI and the fake Anthropic API."""

from __future__ import annotations

import pytest

from fake_anthropic import Reply, Usage, conversation, system_text, tool_names


def test_non_stream_completion_is_strictly_valid(bridge, fake):
    fake.enqueue(Reply(("Hello", " there"), usage=Usage(input_tokens=11, output_tokens=2, cache_read_input_tokens=5)))
    completion = bridge.client().chat.completions.create(
        model="claude-sonnet-4", messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.object == "chat.completion"
    assert completion.model == "claude-sonnet-4"
    assert completion.choices[0].message.content == "Hello there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens == 16
    assert completion.usage.completion_tokens == 2
    assert completion.usage.prompt_tokens_details.cached_tokens == 5
    (request,) = fake.requests
    assert request.body["model"] == "claude-sonnet-5-5"
    assert tool_names(request.body) == []
    assert conversation(request.body) == [("user", [{"type": "text", "text": "hi"}])]
