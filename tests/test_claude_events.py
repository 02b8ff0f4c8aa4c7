"""The CLI's stream-json lines, checked against real recorded runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from claude_bridge.claude import events
from claude_bridge.claude.errors import MalformedLine
from conftest import RECORDINGS, recorded_events


@pytest.mark.parametrize("path", sorted(RECORDINGS.glob("*.stdout.jsonl")), ids=lambda path: path.name)
def test_every_recorded_line_parses(path: Path) -> None:
    for line in path.read_bytes().splitlines():
        events.parse(line)


def test_recordings_are_present() -> None:
    assert len(list(RECORDINGS.glob("*.stdout.jsonl"))) >= 10


def test_text_deltas_concatenate_to_the_answer() -> None:
    parsed = recorded_events("oauth_min")
    deltas = [event for event in parsed if isinstance(event, events.TextDelta)]
    assert "".join(delta.text for delta in deltas) == "ECHO: hello"
    assert {delta.message_id for delta in deltas} == {"msg_fake_87dca477eb8e44b1ba53"}


def test_a_plain_run_has_init_start_delta_and_successful_result() -> None:
    parsed = recorded_events("oauth_min")
    init, start = parsed[0], parsed[1]
    assert isinstance(init, events.SystemInit) and init.model == "claude-sonnet-5-5"
    assert isinstance(start, events.MessageStart) and start.usage.input_tokens == 495
    (delta,) = [event for event in parsed if isinstance(event, events.MessageDelta)]
    assert (delta.stop_reason, delta.output_tokens) == ("end_turn", 2)
    result = parsed[-1]
    assert isinstance(result, events.Result)
    assert not result.is_error and result.result == "ECHO: hello" and result.usage.output_tokens == 2


def test_api_error_result_carries_its_status() -> None:
    parsed = recorded_events("err_429")
    assistant = next(event for event in parsed if isinstance(event, events.AssistantMessage))
    assert assistant.is_api_error_message
    result = parsed[-1]
    assert isinstance(result, events.Result)
    assert result.is_error and result.api_error_status == 429


def test_stream_failing_midway_abandons_its_blocks() -> None:
    parsed = recorded_events("err_stream_midway")
    (abandoned,) = [event for event in parsed if isinstance(event, events.BlocksAbandoned)]
    assert abandoned.message_id == "msg_fake_07c8bed86c644b8daaa8"


def test_retries_are_reported() -> None:
    retries = [event for event in recorded_events("retry2_529") if isinstance(event, events.ApiRetry)]
    assert [(r.attempt, r.max_retries, r.error_status) for r in retries] == [(1, 2, 529), (2, 2, 529)]


@pytest.mark.parametrize("line", [b"not json", b"{", b"Error: something\n", b"[1, 2]", b'"text"', b"null"])
def test_line_that_is_not_a_json_object_is_malformed(line: bytes) -> None:
    with pytest.raises(MalformedLine):
        events.parse(line)


def test_known_line_with_the_wrong_shape_is_malformed() -> None:
    with pytest.raises(MalformedLine, match="result"):
        events.parse(b'{"type": "result", "subtype": "success"}')


@pytest.mark.parametrize(
    "line",
    [
        b'{"type": "system", "subtype": "status", "status": "requesting"}',
        b'{"type": "user", "message": {"role": "user", "content": []}}',
        b'{"type": "something_new", "x": 1}',
        b"{}",
        b'{"type": "stream_event", "event": {"type": "content_block_delta", "delta": {"type": "signature_delta"}}}',
        b'{"type": "stream_event", "event": {"type": "message_stop"}}',
    ],
)
def test_lines_the_bridge_does_not_use_are_none(line: bytes) -> None:
    assert events.parse(line) is None
