"""Live sessions: a conversation's follow-ups and agent steps continue in its own CLI, reading the prompt cache.

The real CLI and the fake API, whose prompt cache is lowered to cache short conversations (as long ones are on the
real API); the official openai SDK as the client. Which process served each request is read off the bridge's log
line ("by a new CLI", "by the live session").
"""

from __future__ import annotations

import functools
import json
import re
import signal
import threading

import openai
import pytest

import conftest
from conftest import alive
from fake_anthropic import Reply, ToolUse, conversation

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


wait_for = functools.partial(conftest.wait_for, seconds=15.0)


@pytest.fixture(scope="module")
def live_bridge(start_bridge):
    return start_bridge("claude_live_sessions=4", "claude_max_retries=0")


@pytest.fixture
def cached(fake):
    """Short conversations cached, as long ones are on the real API (the fake's reset restores the minimum)."""
    fake.server.cache.min_tokens = 0
    return fake


@pytest.fixture(autouse=True)
def log_from(request) -> None:
    """Where this test's part of the shared bridge's log begins: `served` reads from there."""
    if "live_bridge" in request.fixturenames:
        bridge = request.getfixturevalue("live_bridge")
        bridge.log_from = bridge.log.stat().st_size


def served(bridge, count: int) -> list[str]:
    """How each of this test's `count` chat requests was served, once all their lines are in the log (a line is
    written when its response has ended, maybe after the client read it)."""

    def found(log: str) -> list[str]:
        return re.findall(
            r"POST /v1/(?:chat/completions|responses) -> \d+ .*? by (a new CLI|a warm CLI|the live session)", log
        )

    lines = found(bridge.log_once(lambda log: len(found(log)) >= count, since=getattr(bridge, "log_from", 0)))
    assert len(lines) == count, lines
    return lines


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_ten_turn_chat_stays_in_one_cli_and_reads_the_conversation_from_the_cache(live_bridge, cached, stream):
    client = live_bridge.client()
    messages = [{"role": "system", "content": "You are terse."}]
    shares = []
    for turn in range(10):
        messages.append({"role": "user", "content": f"question {turn}"})
        if stream:
            chunks = list(
                client.chat.completions.create(
                    model="gpt-4o", messages=messages, stream=True, stream_options={"include_usage": True}
                )
            )
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            usage = chunks[-1].usage
        else:
            completion = client.chat.completions.create(model="gpt-4o", messages=messages)
            text, usage = completion.choices[0].message.content, completion.usage
        assert text == f"ECHO: question {turn}"
        shares.append(usage.prompt_tokens_details.cached_tokens / usage.prompt_tokens)
        messages.append({"role": "assistant", "content": text})
    assert served(live_bridge, 10) == ["a new CLI"] + ["the live session"] * 9
    # The API saw the exact conversation each time: every earlier question and answer, in order.
    last = conversation(cached.requests[-1].body)
    said = [block["text"] for _, blocks in last for block in blocks if block.get("type") == "text"]
    expected = [text for turn in range(9) for text in (f"question {turn}", f"ECHO: question {turn}")]
    assert [text for text in said if text.startswith(("question", "ECHO"))] == [*expected, "question 9"]
    assert min(shares[1:]) >= 0.85, shares  # follow-ups read the earlier conversation back (the CLI's own 87%)
    assert live_bridge.health()["live_sessions"] >= 1


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_an_eight_step_tool_loop_runs_in_one_cli_holding_each_call_for_the_client(live_bridge, cached, stream):
    client = live_bridge.client()
    messages = [{"role": "user", "content": "weather in eight cities?"}]
    for step in range(8):
        cached.enqueue(ToolUse((("get_weather", {"city": f"city {step}"}),)))
        message = answer(client, messages, stream)
        (call,) = message["tool_calls"]
        assert json.loads(call["function"]["arguments"]) == {"city": f"city {step}"}
        messages += [message, {"role": "tool", "tool_call_id": call["id"], "content": f"sunny in city {step}"}]
    cached.enqueue(Reply(("All sunny.",)))
    assert answer(client, messages, stream)["content"] == "All sunny."
    assert served(live_bridge, 9) == ["a new CLI"] + ["the live session"] * 8
    # Each result reached the model as the answer to its own call, in the same agent turn.
    for step, request in enumerate(cached.requests[1:]):
        results = [b for _, blocks in conversation(request.body) for b in blocks if b.get("type") == "tool_result"]
        assert results[-1]["content"] == [{"type": "text", "text": f"sunny in city {step}"}]
    assert all(request.cache_read > 0 for request in cached.requests[1:])


def answer(client: openai.OpenAI, messages: list, stream: bool) -> dict:
    """The assistant message as the client would send it back."""
    if not stream:
        completion = client.chat.completions.create(model="gpt-4o", messages=messages, tools=[WEATHER])
        return completion.choices[0].message.model_dump(exclude_none=True)
    text, calls = "", {}
    for chunk in client.chat.completions.create(model="gpt-4o", messages=messages, tools=[WEATHER], stream=True):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        text += delta.content or ""
        for call in delta.tool_calls or ():
            entry = calls.setdefault(call.index, {"id": call.id, "type": "function", "function": {"arguments": ""}})
            if call.function.name:
                entry["function"]["name"] = call.function.name
            entry["function"]["arguments"] += call.function.arguments or ""
    message: dict = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = [calls[index] for index in sorted(calls)]
    return {key: value for key, value in message.items() if value is not None}


def test_parallel_calls_are_each_held_and_answered_with_their_own_result(live_bridge, cached):
    client = live_bridge.client()
    messages = [{"role": "user", "content": "weather in Paris and Rome?"}]
    cached.enqueue(ToolUse((("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"}))))
    message = answer(client, messages, stream=False)
    paris, rome = message["tool_calls"]
    messages += [
        message,
        {"role": "tool", "tool_call_id": rome["id"], "content": "rain in Rome"},  # in another order than asked
        {"role": "tool", "tool_call_id": paris["id"], "content": "sun in Paris"},
    ]
    cached.enqueue(Reply(("Sun and rain.",)))
    assert answer(client, messages, stream=False)["content"] == "Sun and rain."
    assert served(live_bridge, 2) == ["a new CLI", "the live session"]
    results = {
        b["tool_use_id"]: b["content"][0]["text"]
        for _, blocks in conversation(cached.requests[-1].body)
        for b in blocks
        if b.get("type") == "tool_result"
    }
    assert results == {paris["id"]: "sun in Paris", rome["id"]: "rain in Rome"}


def test_a_regenerated_answer_and_an_edited_history_start_anew_and_become_the_live_session(live_bridge, cached):
    client = live_bridge.client()
    first = [{"role": "user", "content": "one"}]
    reply = client.chat.completions.create(model="gpt-4o", messages=first).choices[0].message.content
    second = [*first, {"role": "assistant", "content": reply}, {"role": "user", "content": "two"}]
    assert client.chat.completions.create(model="gpt-4o", messages=second).choices[0].message.content == "ECHO: two"
    # Regenerate: the same request again. Its session has moved on (it holds "two" and its answer).
    assert client.chat.completions.create(model="gpt-4o", messages=second).choices[0].message.content == "ECHO: two"
    edited = [*first, {"role": "assistant", "content": "an answer the client edited"}, {"role": "user", "content": "3"}]
    assert client.chat.completions.create(model="gpt-4o", messages=edited).choices[0].message.content == "ECHO: 3"
    # The fallback's process is the edited conversation's session from then on.
    then = [*edited, {"role": "assistant", "content": "ECHO: 3"}, {"role": "user", "content": "4"}]
    assert client.chat.completions.create(model="gpt-4o", messages=then).choices[0].message.content == "ECHO: 4"
    assert served(live_bridge, 5) == ["a new CLI", "the live session", "a new CLI", "a new CLI", "the live session"]
    edited_request = conversation(cached.requests[3].body)
    assert ("assistant", [{"type": "text", "text": "an answer the client edited"}]) in edited_request


def test_two_requests_continuing_one_session_at_once_are_both_answered(live_bridge, cached):
    client = live_bridge.client()
    first = [{"role": "user", "content": "start"}]
    reply = client.chat.completions.create(model="gpt-4o", messages=first).choices[0].message.content
    follow_up = [*first, {"role": "assistant", "content": reply}, {"role": "user", "content": "again"}]
    answers: list[str] = []
    threads = [
        threading.Thread(
            target=lambda: answers.append(
                client.chat.completions.create(model="gpt-4o", messages=follow_up).choices[0].message.content
            )
        )
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert answers == ["ECHO: again", "ECHO: again"]
    first_turn, *follow_ups = served(live_bridge, 3)
    assert (first_turn, sorted(follow_ups)) == ("a new CLI", ["a new CLI", "the live session"])


def test_live_sessions_expire_and_are_evicted_leaving_no_process(start_bridge, cached):
    bridge = start_bridge("claude_live_sessions=1", "claude_live_idle=2")
    client = bridge.client()
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "first"}])
    wait_for(lambda: len(bridge.claude_children()) == 1, "the first conversation's live session")
    (first,) = bridge.claude_children()
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "second"}])
    wait_for(lambda: not alive(first), "the least recently used session to be evicted")
    assert len(bridge.claude_children()) == 1
    wait_for(lambda: bridge.health()["live_sessions"] == 0, "the idle session to expire")
    bridge.wait_idle()


def test_a_client_leaving_mid_turn_ends_its_session(live_bridge, cached):
    client = live_bridge.client()
    first = [{"role": "user", "content": "hello"}]
    reply = client.chat.completions.create(model="gpt-4o", messages=first).choices[0].message.content
    before = live_bridge.health()["live_sessions"]
    follow_up = [*first, {"role": "assistant", "content": reply}, {"role": "user", "content": "slow"}]
    cached.enqueue(Reply(("a", "b", "c"), delay=0.5))
    stream = client.chat.completions.create(model="gpt-4o", messages=follow_up, stream=True)
    next(iter(stream))
    stream.close()
    wait_for(lambda: live_bridge.health()["live_sessions"] == before - 1, "the session's process to end")
    assert served(live_bridge, 2) == ["a new CLI", "the live session"]


def test_shutdown_ends_every_live_session(start_bridge, cached):
    bridge = start_bridge("claude_live_sessions=4")
    for word in ("one", "two", "three"):
        bridge.client().chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": word}])
    wait_for(lambda: len(bridge.claude_children()) == 3, "three live sessions")
    children = bridge.claude_children()
    bridge.process.send_signal(signal.SIGTERM)
    assert bridge.process.wait(30) == 0
    assert not any(alive(pid) for pid in children)
    assert bridge.run_dirs() == []


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_responses_api_conversations_continue_by_previous_response_id_and_by_content(live_bridge, cached, stream):
    client = live_bridge.client()

    def respond(**request) -> openai.types.responses.Response:
        if not stream:
            return client.responses.create(model="gpt-4o", **request)
        events = list(client.responses.create(model="gpt-4o", stream=True, **request))
        return next(event.response for event in events if event.type == "response.completed")

    response = respond(input="first", instructions="Be terse.")
    for word in ("second", "third"):
        response = respond(input=word, instructions="Be terse.", previous_response_id=response.id)
        assert response.output_text == f"ECHO: {word}"
    # By content: the whole conversation sent again as input items, with the answer as the API gave it.
    items = [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ECHO: first"},
        {"role": "user", "content": "second"},
        {"role": "assistant", "content": "ECHO: second"},
        {"role": "user", "content": "third"},
        {"role": "assistant", "content": "ECHO: third"},
        {"role": "user", "content": "fourth"},
    ]
    assert respond(input=items, instructions="Be terse.").output_text == "ECHO: fourth"
    assert served(live_bridge, 4) == ["a new CLI", "the live session", "the live session", "the live session"]
    assert response.usage.input_tokens_details.cached_tokens > 0


def test_a_responses_api_tool_loop_continues_in_its_cli(live_bridge, cached):
    client = live_bridge.client()
    tool = {"type": "function", "name": "get_weather", "parameters": WEATHER["function"]["parameters"]}
    cached.enqueue(ToolUse((("get_weather", {"city": "Oslo"}),)))
    response = client.responses.create(model="gpt-4o", input="weather in Oslo?", tools=[tool])
    (call,) = [item for item in response.output if item.type == "function_call"]
    cached.enqueue(Reply(("Cold.",)))
    output = {"type": "function_call_output", "call_id": call.call_id, "output": "-5C"}
    final = client.responses.create(model="gpt-4o", input=[output], tools=[tool], previous_response_id=response.id)
    assert final.output_text == "Cold."
    assert served(live_bridge, 2) == ["a new CLI", "the live session"]
