"""The official openai SDK against a real bridge process, the real CLI and the fake Anthropic API."""

from __future__ import annotations

import base64
import signal
import time

import openai
import pytest

from conftest import alive
from fake_anthropic import (
    ApiError,
    Gate,
    Reply,
    Stall,
    Thinking,
    Usage,
    conversation,
    system_text,
    tool_names,
)

USER_HI = [{"role": "user", "content": "hi"}]


def text(value: str) -> list[dict[str, str]]:
    return [{"type": "text", "text": value}]


def test_non_stream_completion_is_strictly_valid(bridge, fake):
    fake.enqueue(Reply(("Hello", " there"), usage=Usage(input_tokens=11, output_tokens=2, cache_read_input_tokens=5)))
    completion = bridge.client().chat.completions.create(model="claude-sonnet-4", messages=USER_HI)
    assert completion.object == "chat.completion"
    assert completion.model == "claude-sonnet-4"
    assert completion.choices[0].message.content == "Hello there"
    assert completion.choices[0].finish_reason == "stop"
    assert bridge.run_dirs() == [], "the private run directory is removed"
    assert completion.usage.prompt_tokens == 16
    assert completion.usage.completion_tokens == 2
    assert completion.usage.total_tokens == 18
    assert completion.usage.prompt_tokens_details.cached_tokens == 5
    (request,) = fake.requests
    assert request.body["model"] == "claude-sonnet-5-5"
    assert tool_names(request.body) == []
    assert conversation(request.body) == [("user", text("hi"))]


def test_stream_follows_openai_chunk_rules(bridge, fake):
    fake.enqueue(Reply(("One", " two", " three"), usage=Usage(input_tokens=7, output_tokens=3)))
    stream = bridge.client().chat.completions.create(
        model="gpt-4o", messages=USER_HI, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert content == ["One", " two", " three"], "each CLI text delta is its own chunk"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in chunks[1:] if c.choices)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert (usage_chunk.usage.prompt_tokens, usage_chunk.usage.completion_tokens) == (7, 3)
    assert {c.model for c in chunks} == {"gpt-4o"}
    assert len({c.id for c in chunks}) == 1


def test_raw_stream_ends_with_done_and_has_no_event_lines(bridge, fake):
    fake.enqueue(Reply(("a", "b")))
    raw = bridge.client().chat.completions.with_raw_response.create(model="sonnet", messages=USER_HI, stream=True)
    body = raw.http_response.read().decode()
    assert raw.http_response.headers["content-type"].startswith("text/event-stream")
    assert body.endswith("data: [DONE]\n\n")
    assert "event:" not in body
    assert all(line.startswith("data: ") for line in body.split("\n\n") if line)


async def test_async_client_stream_and_non_stream(bridge, fake):
    client = bridge.async_client()
    fake.enqueue(Reply(("async",)))
    completion = await client.chat.completions.create(model="opus", messages=USER_HI)
    assert completion.choices[0].message.content == "async"
    fake.enqueue(Reply(("as", "ync")))
    stream = await client.chat.completions.create(model="opus", messages=USER_HI, stream=True)
    assert [c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content] == [
        "as",
        "ync",
    ]
    assert [r.body["model"] for r in fake.requests] == ["claude-opus-5-5", "claude-opus-5-5"]


def test_first_token_arrives_while_the_api_is_still_streaming(bridge, fake):
    gate = Gate(("first", " second"))
    fake.enqueue(gate)
    stream = bridge.client().chat.completions.create(model="sonnet", messages=USER_HI, stream=True)
    first = next(c for c in stream if c.choices and c.choices[0].delta.content)
    assert first.choices[0].delta.content == "first"
    assert gate.reached.is_set() and not gate.release.is_set(), "the fake API is still holding the rest"
    gate.release.set()
    rest = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert rest == " second"


def test_multi_turn_history_reaches_the_api_exactly(bridge, fake):
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": [{"type": "text", "text": "Q2a"}, {"type": "text", "text": "Q2b"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "A2"}]},
        {"role": "user", "content": "Q3"},
    ]
    completion = bridge.client().chat.completions.create(model="sonnet", messages=messages)
    assert completion.choices[0].message.content == "ECHO: Q3"
    (request,) = fake.requests
    assert conversation(request.body) == [
        ("user", text("Q1")),
        ("assistant", text("A1")),
        ("user", text("Q2a") + text("Q2b")),
        ("assistant", text("A2")),
        ("user", text("Q3")),
    ]
    assert system_text(request.body).endswith("You are terse.\n\nAnswer in English.")
    assert "Claude Code" not in system_text(request.body), "the client's prompt replaces Claude Code's own"


def test_flattened_history_is_the_fallback(start_bridge, fake):
    bridge = start_bridge("bridge_history=flatten")
    messages = [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2"},
    ]
    bridge.client().chat.completions.create(model="sonnet", messages=messages)
    (request,) = fake.requests
    ((role, blocks),) = conversation(request.body)
    assert role == "user"
    assert "User: Q1" in blocks[0]["text"] and "Assistant: A1" in blocks[0]["text"]
    assert blocks[-1] == {"type": "text", "text": "Q2"}


def test_max_tokens_is_honoured_and_reported_as_length(bridge, fake):
    fake.enqueue(Reply(("a", "b", "c", "d", "e")))
    completion = bridge.client().chat.completions.create(model="sonnet", messages=USER_HI, max_completion_tokens=3)
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.content == "abc"
    assert completion.usage.completion_tokens == 3
    (request,) = fake.requests
    assert request.body["max_tokens"] == 3
    assert len(fake.requests) == 1, "the bridge ends the run instead of letting the CLI continue"


def test_stop_sequence_cuts_the_text_and_ends_the_run(bridge, fake):
    fake.enqueue(Stall(("one, tw", "o, STO", "P three")))  # the API would never finish: only the bridge can end it
    client = bridge.client(timeout=10)
    stream = client.chat.completions.create(model="sonnet", messages=USER_HI, stream=True, stop=["STOP"])
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one, two, "
    assert chunks[-1].choices[0].finish_reason == "stop"
    bridge.wait_idle()


def test_unused_fields_are_ignored(bridge, fake):
    completion = bridge.client().chat.completions.create(
        model="gpt-4.1",
        messages=[{"role": "user", "content": "hi", "name": "ann"}],
        temperature=0.2,
        top_p=0.9,
        seed=7,
        user="someone",
        logit_bias={"50256": -100},
        presence_penalty=0.1,
        n=1,
        metadata={"k": "v"},
    )
    assert completion.choices[0].message.content == "ECHO: hi"


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"n": 2}, "n"),
        ({"messages": [{"role": "assistant", "content": "prefill"}]}, "messages"),
        ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages[0].content[0].text"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0]"),
        ({"messages": []}, "messages"),
    ],
)
def test_bad_requests_get_openai_400s(bridge, fake, kwargs, param):
    with pytest.raises(openai.BadRequestError) as caught:
        bridge.client().chat.completions.create(**{"model": "sonnet", "messages": USER_HI, **kwargs})
    assert caught.value.body["param"] == param
    assert fake.requests == []


def test_unknown_model_is_openai_404(bridge, fake):
    with pytest.raises(openai.NotFoundError) as caught:
        bridge.client().chat.completions.create(model="llama-3-70b", messages=USER_HI)
    assert caught.value.code == "model_not_found"
    assert "llama-3-70b" in caught.value.message


def test_model_map_option_adds_names_and_a_catch_all(start_bridge, fake):
    bridge = start_bridge("bridge_model_map=my-model=haiku", "bridge_model_map=*=sonnet")
    client = bridge.client()
    for name in ("my-model", "llama-3-70b", "claude-opus-4-5-20251101"):
        assert client.chat.completions.create(model=name, messages=USER_HI).model == name
    assert [r.body["model"] for r in fake.requests] == [
        "claude-haiku-5-5",
        "claude-sonnet-5-5",
        "claude-opus-4-5-20251101",
    ]


def test_cli_retries_are_bounded_and_recover(start_bridge, fake):
    bridge = start_bridge("claude_max_retries=1")
    fake.enqueue(ApiError(529, "overloaded_error", "Overloaded"), Reply(("recovered",)))
    completion = bridge.client().chat.completions.create(model="sonnet", messages=USER_HI)
    assert completion.choices[0].message.content == "recovered"
    assert len(fake.requests) == 2


@pytest.fixture(scope="module")
def impatient_bridge(start_bridge):
    """Never idle for long enough to be stopped as idle, but past the total deadline: 30 x 0.5 s of deltas."""
    return start_bridge("claude_idle_timeout=4", "claude_total_timeout=8")


def test_total_timeout_ends_a_slow_but_steady_stream(impatient_bridge, fake):
    fake.enqueue(Reply(tuple(f"{n} " for n in range(30)), delay=0.5))
    stream = impatient_bridge.client().chat.completions.create(model="sonnet", messages=USER_HI, stream=True)
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received += [chunk.choices[0].delta.content] if chunk.choices and chunk.choices[0].delta.content else []
    assert 0 < len(received) < 30
    assert "ran for 8 s" in caught.value.message
    impatient_bridge.wait_idle()


def test_client_disconnect_mid_stream_leaves_no_claude_process(bridge, fake):
    fake.enqueue(Stall(("never", " ends")))
    stream = bridge.client().chat.completions.create(model="sonnet", messages=USER_HI, stream=True)
    next(iter(stream))
    assert bridge.claude_children(), "the run is in progress"
    stream.close()
    bridge.wait_idle()


def test_not_logged_in_is_401_saying_claude_login(start_bridge, fake):
    bridge = start_bridge(env={"CLAUDE_CODE_OAUTH_TOKEN": ""})
    with pytest.raises(openai.AuthenticationError) as caught:
        bridge.client().chat.completions.create(model="sonnet", messages=USER_HI)
    assert "Not logged in" in caught.value.message and "claude auth login" in caught.value.message
    assert fake.requests == []


def test_api_key_is_withheld_from_the_cli_by_default(start_bridge, fake):
    bridge = start_bridge(env={"ANTHROPIC_API_KEY": "sk-ant-api03-should-not-be-used"})
    bridge.client().chat.completions.create(model="sonnet", messages=USER_HI)
    (request,) = fake.requests
    assert "x-api-key" not in {name.lower() for name in request.headers}


def test_thinking_stays_out_of_the_content(bridge, fake):
    fake.enqueue(Thinking(("secret reasoning",), ("visible", " answer")))
    stream = bridge.client().chat.completions.create(model="sonnet", messages=USER_HI, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "visible answer"


def test_client_giving_up_before_any_text_leaves_no_claude_process(bridge, fake):
    fake.enqueue(Stall(()))
    with pytest.raises(openai.APITimeoutError):
        bridge.client(timeout=1.0).chat.completions.create(model="sonnet", messages=USER_HI)
    bridge.wait_idle()


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGKILL"])
def test_claude_processes_die_with_the_bridge(start_bridge, fake, signal_name):
    bridge = start_bridge()
    fake.enqueue(Stall(("stuck",)))
    stream = bridge.client().chat.completions.create(model="sonnet", messages=USER_HI, stream=True)
    next(iter(stream))
    (pid,) = bridge.claude_children()
    bridge.process.send_signal(getattr(signal, signal_name))
    bridge.process.wait(10)
    deadline = time.monotonic() + 5
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid)


def test_images_reach_the_api_as_image_blocks_in_every_turn(bridge, fake):
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(24)).decode()
    earlier = {"type": "image_url", "image_url": {"url": "https://example.com/earlier.png"}}
    latest = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}}
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "what is this?"}, earlier]},
        {"role": "assistant", "content": "a chart"},
        {"role": "user", "content": [{"type": "text", "text": "and this?"}, latest]},
    ]
    bridge.client().chat.completions.create(model="sonnet", messages=messages)
    (request,) = fake.requests
    assert conversation(request.body) == [
        (
            "user",
            [*text("what is this?"), {"type": "image", "source": {"type": "url", "url": earlier["image_url"]["url"]}}],
        ),
        ("assistant", text("a chart")),
        (
            "user",
            [
                *text("and this?"),
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
            ],
        ),
    ]


@pytest.mark.parametrize(
    ("options", "thinks"),
    [({"max_tokens": 100}, False), ({"reasoning_effort": "none"}, False), ({"max_tokens": 4096}, True), ({}, True)],
)
def test_a_small_max_tokens_or_no_reasoning_turns_thinking_off_at_the_api(bridge, fake, options, thinks):
    """With thinking on, a model given 100 tokens may spend them all thinking and answer nothing."""
    bridge.client().chat.completions.create(model="sonnet", messages=[{"role": "user", "content": "hi"}], **options)
    (request,) = fake.requests
    assert ("thinking" in request.body) is thinks, request.body.get("thinking")
