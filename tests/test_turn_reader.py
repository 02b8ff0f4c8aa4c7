"""Folding CLI events into the text to send and the end of the turn."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from claude_bridge.claude import events
from claude_bridge.claude.events import Usage
from claude_bridge.claude.invocation import ClaudeInvocation, ToolSpec
from claude_bridge.openai.errors import OpenAIError
from claude_bridge.report import TurnReport
from claude_bridge.translate.turn import TurnEnd, TurnText, TurnToolArguments, TurnToolCall, _Reader
from conftest import recorded_events


def new_reader(report: TurnReport | None = None, **invocation: object) -> _Reader:
    """A reader for a plain text request, or for one with the given invocation fields (tools, json_schema)."""
    spec = ClaudeInvocation(model="sonnet", prompt=[], **invocation)  # type: ignore[arg-type]
    return _Reader(report or TurnReport(), spec, parallel_tool_calls=True, reasoning=False)


def read(stream: Iterable[events.Event], report: TurnReport | None = None) -> list[TurnText | TurnEnd]:
    """The reader's items up to and including the first TurnEnd, as `turn()` yields them."""
    reader = new_reader(report)
    items: list[TurnText | TurnEnd] = []
    for event in stream:
        for item in reader.read(event):
            items.append(item)
            if isinstance(item, TurnEnd):
                return items
    return items


def assistant(message_id: str, *blocks: dict[str, str]) -> events.AssistantMessage:
    return events.AssistantMessage.model_validate({"message": {"id": message_id, "model": "m", "content": blocks}})


def success(**fields: object) -> events.Result:
    return events.Result.model_validate({"subtype": "success", "is_error": False, **fields})


def interrupted(stream: Iterable[events.Event]) -> OpenAIError:
    with pytest.raises(OpenAIError) as caught:
        read(stream)
    assert (caught.value.status, caught.value.error.code) == (502, "claude_stream_interrupted")
    return caught.value


TEXT = {"type": "text", "text": "whole answer"}
THINKING = {"type": "thinking", "thinking": "hmm"}


@pytest.mark.parametrize(
    ("name", "texts"),
    [
        ("oauth_min", ["ECHO", ": he", "llo"]),
        ("thinking_text", ["ECHO", ": he", "llo"]),
        ("err_stream_midway", ["ECHO: hello"]),
        ("resume_synthetic", ["ECHO: ", "SYN Q3", " final"]),
    ],
)
def test_recorded_runs_send_each_text_once(name: str, texts: list[str]) -> None:
    *sent, end = read(recorded_events(name))
    assert sent == [TurnText(text) for text in texts]
    assert isinstance(end, TurnEnd)


def test_successful_run_ends_with_the_result_usage_and_fills_the_report() -> None:
    report = TurnReport()
    *_, end = read(recorded_events("oauth_min"), report)
    assert end == TurnEnd("end_turn", Usage(input_tokens=495, output_tokens=2))
    assert report.claude_model == "claude-sonnet-5-5"
    assert report.usage == end.usage
    assert report.cost_usd == pytest.approx(0.00101)
    assert report.first_text is not None


@pytest.mark.parametrize(
    ("name", "status"), [("err_400", 400), ("err_401", 401), ("err_429", 429), ("retry2_529", 503), ("err_500", 502)]
)
def test_recorded_api_errors_raise_the_mapped_error_without_sending_the_error_text(name: str, status: int) -> None:
    reader = new_reader()
    *before, result = recorded_events(name)
    assert [list(reader.read(event)) for event in before] == [[]] * len(before)
    with pytest.raises(OpenAIError) as caught:
        list(reader.read(result))
    assert caught.value.status == status


def test_rate_limit_reset_time_reaches_retry_after() -> None:
    reader = new_reader()
    list(reader.read(events.RateLimitEvent.model_validate({"rate_limit_info": {"status": "rejected", "resetsAt": 1}})))
    with pytest.raises(OpenAIError) as caught:
        list(reader.read(events.Result(subtype="success", is_error=True, result="limited", api_error_status=429)))
    assert caught.value.headers == {"Retry-After": "1", "retry-after-ms": "1000"}


def test_the_apis_retry_hint_the_cli_obeyed_reaches_retry_after() -> None:
    reader = new_reader()
    retry = {"attempt": 1, "max_retries": 2, "retry_delay_ms": 1082, "error_status": 429, "error": "rate_limit"}
    list(reader.read(events.ApiRetry.model_validate(retry)))
    list(reader.read(events.RateLimitEvent.model_validate({"rate_limit_info": {"status": "allowed", "resetsAt": 9}})))
    with pytest.raises(OpenAIError) as caught:
        list(reader.read(events.Result(subtype="success", is_error=True, result="limited", api_error_status=429)))
    assert caught.value.headers == {"Retry-After": "2", "retry-after-ms": "1082"}  # not the allowed window's reset


def test_assistant_line_for_streamed_text_is_not_sent_again() -> None:
    stream = [events.TextDelta("m1", "whole "), events.TextDelta("m1", "answer"), assistant("m1", TEXT), success()]
    assert read(stream)[:-1] == [TurnText("whole "), TurnText("answer")]


def test_empty_text_delta_sends_nothing() -> None:
    assert read([events.TextDelta("m1", ""), success()]) == [TurnEnd(None, Usage())]


def test_assistant_line_never_streamed_is_sent_whole() -> None:
    stream = [events.MessageStart("m1", Usage()), assistant("m1", THINKING, TEXT), success()]
    assert read(stream)[:-1] == [TurnText("whole answer")]


def test_api_error_assistant_line_is_not_sent_as_text() -> None:
    line = events.AssistantMessage.model_validate(
        {"message": {"id": "x", "model": "<synthetic>", "content": [TEXT]}, "is_api_error_message": True}
    )
    assert read([line, success()]) == [TurnEnd(None, Usage())]


@pytest.mark.parametrize(
    "breaking",
    [
        events.BlocksAbandoned("m1"),
        events.ApiRetry(attempt=1, max_retries=2, error_status=529),
        events.MessageStart("m2", Usage()),
    ],
    ids=["abandoned", "retry", "new-message"],
)
def test_break_after_text_was_sent_is_stream_interrupted(breaking: events.Event) -> None:
    interrupted([events.MessageStart("m1", Usage()), events.TextDelta("m1", "par"), breaking, success()])


def test_break_after_a_non_streamed_answer_is_stream_interrupted() -> None:
    interrupted([assistant("m1", TEXT), events.BlocksAbandoned("m2")])


def test_recorded_interrupt_after_text_is_stream_interrupted() -> None:
    interrupted(recorded_events("sigint_hang_mid"))


@pytest.mark.parametrize(
    "before",
    [
        [events.MessageStart("m1", Usage()), events.ApiRetry(attempt=1, max_retries=2)],
        [events.MessageStart("m1", Usage()), events.BlocksAbandoned("m1")],
        [events.MessageStart("m1", Usage()), assistant("m1", THINKING), events.BlocksAbandoned("m1")],
    ],
    ids=["retry", "abandoned", "abandoned-after-thinking"],
)
def test_break_before_any_text_lets_the_retry_answer(before: list[events.Event]) -> None:
    stream = [*before, events.MessageStart("m2", Usage()), events.TextDelta("m2", "ok"), success()]
    assert read(stream)[:-1] == [TurnText("ok")]


def test_max_tokens_ends_the_turn_with_the_output_tokens() -> None:
    report = TurnReport()
    stream = [
        events.MessageStart("m1", Usage(input_tokens=10, output_tokens=1)),
        events.TextDelta("m1", "cut sho"),
        events.MessageDelta("m1", "max_tokens", 7),
        events.MessageStart("m2", Usage()),
    ]
    assert read(stream, report) == [TurnText("cut sho"), TurnEnd("max_tokens", Usage(input_tokens=10, output_tokens=7))]
    assert report.usage.output_tokens == 7


def test_other_stop_reasons_wait_for_the_result() -> None:
    usage = Usage(input_tokens=3, output_tokens=2, cache_read_input_tokens=4)
    stream = [
        events.TextDelta("m1", "hi"),
        events.MessageDelta("m1", "end_turn", 2),
        success(stop_reason="end_turn", usage=usage.model_dump()),
    ]
    assert read(stream) == [TurnText("hi"), TurnEnd("end_turn", usage)]


def test_max_tokens_in_a_non_streamed_fallback_also_ends_the_turn() -> None:
    line = events.AssistantMessage.model_validate(
        {
            "message": {
                "id": "m9",
                "model": "m",
                "content": [{"type": "text", "text": "cut"}],
                "stop_reason": "max_tokens",
            }
        }
    )
    assert read([line, success(stop_reason="end_turn")]) == [TurnText("cut"), TurnEnd("max_tokens", Usage())]


SEARCH = ToolSpec("search", "", {"type": "object"})


def tool_use(call_id: str, name: str) -> dict[str, object]:
    return {"type": "tool_use", "id": call_id, "name": name, "input": {"q": call_id}}


def test_streamed_calls_of_tools_not_offered_are_dropped_and_the_offered_one_keeps_index_0(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reader = new_reader(tools=(SEARCH,))
    stream = [
        events.ToolUseStart("m1", 0, "t0", "mcp__app__delete_all_files"),
        events.ToolInputDelta("m1", 0, '{"path": "/"}'),
        events.BlockStop("m1", 0),
        events.ToolUseStart("m1", 1, "t1", "Bash"),
        events.ToolUseStart("m1", 2, "t2", "mcp__app__search"),
        events.ToolInputDelta("m1", 2, "{}"),
        events.MessageDelta("m1", "tool_use", 5),
    ]
    items = [item for event in stream for item in reader.read(event)]
    assert items == [
        TurnToolCall(0, "t2", "search"),
        TurnToolArguments(0, "{}"),
        TurnEnd("tool_use", Usage(output_tokens=5)),
    ]
    assert "'mcp__app__delete_all_files'" in caplog.text and "'Bash'" in caplog.text


def test_a_non_streamed_call_of_a_tool_not_offered_is_dropped_and_the_text_ends_the_turn() -> None:
    reader = new_reader(tools=(SEARCH,))
    line = assistant("m1", TEXT, tool_use("t0", "mcp__app__delete_all_files"))  # type: ignore[arg-type]
    result = events.Result(subtype="error_max_turns", is_error=True, stop_reason="tool_use")
    assert [item for event in (line, result) for item in reader.read(event)] == [
        TurnText("whole answer"),
        TurnEnd("end_turn", Usage()),
    ]


def test_the_cli_structured_output_tool_is_neither_a_call_nor_logged(caplog: pytest.LogCaptureFixture) -> None:
    reader = new_reader(json_schema={"type": "object"})
    assert list(reader.read(events.ToolUseStart("m1", 0, "t0", "StructuredOutput"))) == []
    assert caplog.text == ""


def init(tools: list[str] | None) -> events.SystemInit:
    return events.SystemInit(model="m", session_id="s", tools=tools)


def test_a_schema_the_cli_turned_off_is_a_400_before_the_model_answers() -> None:
    reader = new_reader(json_schema={"type": "object"})
    with pytest.raises(OpenAIError, match="did not accept the JSON schema") as caught:
        list(reader.read(init(["mcp__app__search"])))
    assert (caught.value.status, caught.value.error.param) == (400, "response_format")


@pytest.mark.parametrize("tools", [["StructuredOutput"], None], ids=["listed", "not-reported"])
def test_a_schema_the_cli_took_or_did_not_report_on_lets_the_run_go_on(tools: list[str] | None) -> None:
    assert list(new_reader(json_schema={"type": "object"}).read(init(tools))) == []
