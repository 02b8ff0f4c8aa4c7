"""A newer CLI may add, drop or rename what it prints: recorded real lines with fields removed or added still parse,
as long as what the bridge reads is there; only a field the bridge needs is required."""

from __future__ import annotations

import json
from typing import Any

import pytest

from claude_bridge.claude import events
from claude_bridge.claude.errors import MalformedLine
from conftest import RECORDINGS, recorded_lines

# Per line kind, the fields the bridge reads and cannot do without: the whole contract with the CLI's output.
REQUIRED: dict[tuple[str, str | None], set[str]] = {
    ("system", "init"): set(),
    ("system", "api_retry"): {"attempt", "max_retries"},
    ("assistant", None): {"message"},
    ("result", None): {"subtype", "is_error"},
    ("rate_limit_event", None): {"rate_limit_info"},
}
MESSAGE_REQUIRED = {"id", "content"}


def recorded(kind: str, subtype: str | None = None) -> list[dict[str, Any]]:
    """Every recorded line of this kind, decoded."""
    found = []
    for path in sorted(RECORDINGS.glob("*.stdout.jsonl")):
        for line in recorded_lines(path.name.removesuffix(".stdout.jsonl")):
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if data.get("type") == kind and (subtype is None or data.get("subtype") == subtype):
                found.append(data)
    return found


def parse(data: dict[str, Any]) -> events.Event | None:
    return events.parse(json.dumps(data).encode())


KINDS = sorted(REQUIRED, key=str)


def kind_id(kind: tuple[str, str | None]) -> str:
    return "/".join(filter(None, kind))


@pytest.mark.parametrize("kind", KINDS, ids=kind_id)
def test_every_field_the_bridge_does_not_need_may_be_missing(kind):
    lines = recorded(*kind)
    assert lines, f"no recorded {kind} line"
    for data in lines:
        for field in set(data) - REQUIRED[kind] - {"type", "subtype"}:
            trimmed = {key: value for key, value in data.items() if key != field}
            assert parse(trimmed) is not None, f"{kind} without {field!r}"


@pytest.mark.parametrize("kind", [kind for kind in KINDS if REQUIRED[kind]], ids=kind_id)
def test_a_missing_field_the_bridge_needs_is_a_malformed_line(kind):
    data = recorded(*kind)[0]
    for field in REQUIRED[kind]:
        with pytest.raises(MalformedLine, match=field):
            parse({key: value for key, value in data.items() if key != field})


def test_an_assistant_message_needs_only_its_id_and_content():
    for data in recorded("assistant"):
        message = data["message"]
        for field in set(message) - MESSAGE_REQUIRED:
            trimmed = {**data, "message": {key: value for key, value in message.items() if key != field}}
            parsed = parse(trimmed)
            assert isinstance(parsed, events.AssistantMessage), f"assistant message without {field!r}"
            assert parsed.text == events.AssistantMessage.model_validate(data).text
        for field in MESSAGE_REQUIRED:
            with pytest.raises(MalformedLine, match=field):
                parse({**data, "message": {key: value for key, value in message.items() if key != field}})


def test_system_init_without_session_id_or_model_still_reports_its_tool_servers():
    data = recorded("system", "init")[0]
    trimmed = {key: value for key, value in data.items() if key not in ("session_id", "model")}
    parsed = parse({**trimmed, "mcp_servers": [{"name": "app", "status": "connected"}]})
    assert isinstance(parsed, events.SystemInit)
    assert parsed.model is None
    assert [(server.name, server.status) for server in parsed.mcp_servers] == [("app", "connected")]


@pytest.mark.parametrize("name", ["oauth_min", "thinking_text", "tool_maxturns1", "err_429", "retry2_529"])
def test_fields_added_anywhere_change_nothing(name):
    for line in recorded_lines(name):
        data = json.loads(line)
        grown = _with_extra_fields(data)
        assert parse(grown) == events.parse(line), line[:120]


def _with_extra_fields(value: Any) -> Any:
    """The same JSON with a new field in every object, at every depth (a tool call's input is the model's, not the
    CLI's: left as it is)."""
    if isinstance(value, dict):
        grown = {key: item if key == "input" else _with_extra_fields(item) for key, item in value.items()}
        return {**grown, "added_in_a_newer_cli": {"x": 1}}
    if isinstance(value, list):
        return [_with_extra_fields(item) for item in value]
    return value


def test_null_token_counts_are_no_tokens():
    result = recorded("result")[0]
    usage = {**result["usage"], "input_tokens": None, "cache_read_input_tokens": None}
    parsed = parse({**result, "usage": usage})
    assert isinstance(parsed, events.Result)
    assert (parsed.usage.input_tokens, parsed.usage.cache_read_input_tokens) == (0, 0)
    assert parsed.usage.output_tokens == result["usage"]["output_tokens"]


@pytest.mark.parametrize(
    "data",
    [
        {"type": "system", "subtype": "something_new", "session_id": "s"},
        {"type": "stream_event", "event": {"type": "content_block_delta", "index": 0, "delta": {"type": "new_delta"}}},
        {"type": "stream_event", "event": {"type": "message_reshaped", "message": {}}},
        {"type": "stream_event", "event": {"type": "content_block_start", "content_block": {"type": "new_block"}}},
        {"type": "brand_new_kind", "payload": [1, 2, 3]},
    ],
    ids=["system-subtype", "delta-type", "stream-event-type", "block-type", "line-type"],
)
def test_unknown_lines_and_events_are_skipped(data):
    assert parse(data) is None


def test_a_stream_event_with_a_wrongly_typed_count_is_malformed_not_a_crash():
    start = next(data for data in recorded("stream_event") if data["event"]["type"] == "message_start")
    message = {**start["event"]["message"], "usage": {"input_tokens": "many"}}
    with pytest.raises(MalformedLine, match="input_tokens"):
        parse({**start, "event": {**start["event"], "message": message}})
