"""Only the request's own tools come back as tool calls, whatever the model asks for.

The fake API plays a prompt-injected model that asks for `delete_all_files`, named as the CLI names the tools the
bridge serves it (`mcp__app__...`), so that nothing but the bridge itself can tell the call was never offered.
Such a call is dropped: the client gets the model's text, and the calls it did offer if any.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from fake_anthropic import ToolUse

SEARCH = {
    "name": "search",
    "description": "Search the web",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
}
ROGUE = ("mcp__app__delete_all_files", {"path": "/"})
ASKED = ("search", {"query": "weather"})
TEXT = "Let me help."

APIS = ["chat", "chat-stream", "functions", "functions-stream", "responses", "responses-stream"]


@dataclass
class Answer:
    text: str
    calls: list[tuple[str, dict[str, Any]]]
    finish: str  # chat's finish_reason, or the response's status


def ask(bridge, api: str, offered: list[dict[str, Any]], tool_choice: str | None = None) -> Answer:
    """The request in one of the APIs, with the tools `offered`, and its answer as the client sees it."""
    client = bridge.client()
    kind, _, stream = api.partition("-")
    if kind == "responses":
        tools = [{"type": "function", **tool} for tool in offered]
        extra = {"tool_choice": tool_choice} if tool_choice else {}
        if stream:
            events = list(client.responses.create(model="gpt-5", input="hi", tools=tools, stream=True, **extra))
            response = events[-1].response
            assert sum(event.type == "response.function_call_arguments.done" for event in events) == len(
                [item for item in response.output if item.type == "function_call"]
            )
        else:
            response = client.responses.create(model="gpt-5", input="hi", tools=tools, **extra)
        calls = [(item.name, json.loads(item.arguments)) for item in response.output if item.type == "function_call"]
        return Answer(response.output_text, calls, response.status)
    messages = [{"role": "user", "content": "hi"}]
    if kind == "functions":
        fields: dict[str, Any] = {"functions": offered} if offered else {}
    else:
        fields = {"tools": [{"type": "function", "function": tool} for tool in offered]} if offered else {}
    fields |= {"tool_choice": tool_choice} if tool_choice else {}
    if not stream:
        choice = client.chat.completions.create(model="sonnet", messages=messages, **fields).choices[0]
        message = choice.message
        calls = [(call.function.name, json.loads(call.function.arguments)) for call in message.tool_calls or ()]
        if message.function_call:
            calls.append((message.function_call.name, json.loads(message.function_call.arguments)))
        return Answer(message.content or "", calls, choice.finish_reason)
    chunks = [c for c in client.chat.completions.create(model="sonnet", messages=messages, stream=True, **fields)]
    deltas = [chunk.choices[0].delta for chunk in chunks if chunk.choices]
    fragments = [call for delta in deltas for call in delta.tool_calls or ()]
    calls = [
        (first.function.name, json.loads("".join(f.function.arguments or "" for f in fragments if f.index == i)))
        for i, first in enumerate(f for f in fragments if f.id is not None)
    ]
    legacy = [delta.function_call for delta in deltas if delta.function_call]
    if legacy:
        calls.append((legacy[0].name, json.loads("".join(f.arguments or "" for f in legacy))))
    text = "".join(delta.content or "" for delta in deltas)
    return Answer(text, calls, [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices][-1])


def finished_with_calls(api: str) -> str:
    return {"chat": "tool_calls", "functions": "function_call", "responses": "completed"}[api.partition("-")[0]]


def finished_without(api: str) -> str:
    return "completed" if api.startswith("responses") else "stop"


@pytest.mark.parametrize("offered", [[], [SEARCH]], ids=["no-tools", "search"])
@pytest.mark.parametrize("api", APIS)
def test_a_call_of_a_tool_never_offered_is_dropped_and_the_text_is_the_answer(bridge, fake, api, offered):
    fake.enqueue(ToolUse((ROGUE,), text=TEXT))
    since = bridge.log.stat().st_size  # the session's bridge: earlier tests' lines are in its log
    answer = ask(bridge, api, offered)
    assert (answer.text, answer.calls, answer.finish) == (TEXT, [], finished_without(api))
    dropped = "Dropped the model's call of 'mcp__app__delete_all_files'"
    bridge.log_once(lambda log: dropped in log, "the dropped call's line", since=since)
    bridge.wait_idle()


@pytest.mark.parametrize("api", APIS)
def test_beside_a_call_never_offered_the_offered_call_comes_back_alone(bridge, fake, api):
    fake.enqueue(ToolUse((ROGUE, ASKED, ROGUE), text=TEXT))
    answer = ask(bridge, api, [SEARCH])
    assert (answer.text, answer.calls, answer.finish) == (TEXT, [ASKED], finished_with_calls(api))
    bridge.wait_idle()


@pytest.mark.parametrize("api", ["chat", "responses-stream"])
def test_with_tool_choice_none_even_an_offered_tools_call_is_dropped(bridge, fake, api):
    """The CLI was given no tools, so the model was shown none: a call of one is not the client's to run."""
    fake.enqueue(ToolUse((("mcp__app__search", {"query": "x"}),), text=TEXT))
    answer = ask(bridge, api, [SEARCH], tool_choice="none")
    assert (answer.text, answer.calls, answer.finish) == (TEXT, [], finished_without(api))
