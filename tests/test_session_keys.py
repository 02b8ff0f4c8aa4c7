"""Which request continues which live session: the keys, as pure functions of the translated request."""

from __future__ import annotations

import dataclasses

from claude_bridge.claude.invocation import ClaudeInvocation, HistoryMessage, ToolSpec
from claude_bridge.claude.session import continuing_key, kept_key, tool_results

WEATHER = ToolSpec("get_weather", "", {"type": "object"})


def text(role: str, words: str) -> HistoryMessage:
    return HistoryMessage(role, [{"type": "text", "text": words}])


def first_turn(**changes: object) -> ClaudeInvocation:
    invocation = ClaudeInvocation(model="sonnet", prompt=[{"type": "text", "text": "hi"}], system_prompt="be terse")
    return dataclasses.replace(invocation, **changes)


def test_the_next_turn_finds_the_session_its_predecessor_kept():
    kept = kept_key(first_turn(), "caller", text("assistant", "hello"))
    follow_up = first_turn(history=(text("user", "hi"), text("assistant", "hello")), prompt=[{"type": "text"}])
    assert continuing_key(follow_up, "caller") == kept


def test_another_caller_system_prompt_tool_set_or_answer_does_not():
    kept = kept_key(first_turn(), "caller", text("assistant", "hello"))
    history = (text("user", "hi"), text("assistant", "hello"))
    follow_up = first_turn(history=history)
    assert continuing_key(follow_up, "someone else") != kept
    assert continuing_key(dataclasses.replace(follow_up, system_prompt="be kind"), "caller") != kept
    assert continuing_key(dataclasses.replace(follow_up, tools=(WEATHER,)), "caller") != kept
    edited = first_turn(history=(text("user", "hi"), text("assistant", "hello!")))
    assert continuing_key(edited, "caller") != kept
    assert continuing_key(first_turn(), "caller") is None  # a first turn continues nothing


def test_around_tool_calls_the_answers_text_is_not_compared():
    call = {"type": "tool_use", "id": "toolu_1", "name": "mcp__app__get_weather", "input": {"city": "Oslo"}}
    answer = HistoryMessage("assistant", [{"type": "text", "text": "Let me check."}, call])
    kept = kept_key(first_turn(tools=(WEATHER,)), "caller", answer)
    without_text = HistoryMessage("assistant", [call])
    result = [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "cold"}]
    follow_up = first_turn(tools=(WEATHER,), history=(text("user", "hi"),), replay=without_text, prompt=result)
    assert continuing_key(follow_up, "caller") == kept
    other_arguments = HistoryMessage("assistant", [{**call, "input": {"city": "Rome"}}])
    assert continuing_key(dataclasses.replace(follow_up, replay=other_arguments), "caller") != kept


def test_a_turn_of_tool_results_alone_answers_held_calls():
    results = [{"type": "tool_result", "tool_use_id": "a"}, {"type": "tool_result", "tool_use_id": "b"}]
    assert set(tool_results(results) or {}) == {"a", "b"}
    assert tool_results([*results, {"type": "text", "text": "and also"}]) is None
    assert tool_results([{"type": "text", "text": "hi"}]) is None


def test_the_same_tools_in_another_order_continue_the_session():
    clock = ToolSpec("get_time", "", {"type": "object"})
    kept = kept_key(first_turn(tools=(WEATHER, clock)), "caller", text("assistant", "hello"))
    follow_up = first_turn(tools=(clock, WEATHER), history=(text("user", "hi"), text("assistant", "hello")))
    assert continuing_key(follow_up, "caller") == kept
