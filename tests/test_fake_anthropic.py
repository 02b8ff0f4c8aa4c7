"""The fake Anthropic API, checked against the real pinned Claude Code CLI (and a bare HTTP client)."""

from __future__ import annotations

import http.client
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from claude_bridge.claude.invocation import SAFE_FLAGS
from conftest import CLAUDE_BIN
from fake_anthropic import (
    ApiError,
    Echo,
    FakeAnthropic,
    Gate,
    Hang,
    Reply,
    Reset,
    Stall,
    StreamError,
    Thinking,
    cli_env,
    conversation,
    parse_directive,
    system_text,
    tool_names,
)
from fake_plan_limits import UnifiedLimits, Window

# The CLI as the bridge runs it (the 4.x model puts its reminders in the user message, not in system entries).
ARGV = [CLAUDE_BIN, *SAFE_FLAGS, "--model", "claude-sonnet-4-5"]


@pytest.fixture
def fake(claude_bin: str) -> Iterator[FakeAnthropic]:
    """A fake of this module's own (the tests below count its requests from zero); needs the pinned CLI."""
    with FakeAnthropic() as server:
        yield server


def claude_options(fake: FakeAnthropic, tmp_path: Path, env: dict[str, str]) -> dict[str, Any]:
    """subprocess options to run the CLI as the bridge does: empty cwd, temporary HOME, the fake API."""
    (tmp_path / "home").mkdir(exist_ok=True)
    (tmp_path / "cwd").mkdir(exist_ok=True)
    base_env = cli_env(tmp_path / "home", fake.url)
    return {"stdout": subprocess.PIPE, "text": True, "cwd": tmp_path / "cwd", "env": base_env | env}


def user_line(text: str) -> str:
    """The one stream-json line the bridge writes to the CLI's stdin."""
    message = {"role": "user", "content": [{"type": "text", "text": text}]}
    return json.dumps({"type": "user", "message": message}) + "\n"


def run_claude(fake: FakeAnthropic, text: str, tmp_path: Path, **env: str) -> list[dict[str, Any]]:
    """The CLI's stdout lines, parsed, once it has exited."""
    done = subprocess.run(ARGV, input=user_line(text), timeout=30, **claude_options(fake, tmp_path, env))
    return [json.loads(line) for line in done.stdout.splitlines()]


def deltas(lines: list[dict[str, Any]], kind: str = "text") -> list[str]:
    """The text (or thinking) deltas the CLI forwarded as stream_event lines."""
    return [
        line["event"]["delta"][kind]
        for line in lines
        if line["type"] == "stream_event"
        and line["event"]["type"] == "content_block_delta"
        and line["event"]["delta"]["type"] == f"{kind}_delta"
    ]


def result(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """The single `result` line."""
    (last,) = [line for line in lines if line["type"] == "result"]
    return last


def test_echo_streams_deltas_and_records_the_request(fake: FakeAnthropic, tmp_path: Path) -> None:
    lines = run_claude(fake, "hello there", tmp_path)

    assert deltas(lines) == ["ECHO", ": he", "llo ", "ther", "e"]
    assert result(lines)["result"] == "ECHO: hello there"
    assert result(lines)["is_error"] is False
    (request,) = fake.requests
    assert request.path == "/v1/messages?beta=true"
    assert request.headers["Authorization"] == "<redacted>"
    assert request.body["model"] == "claude-sonnet-4-5"
    assert request.body["stream"] is True
    assert conversation(request.body) == [("user", [{"type": "text", "text": "hello there"}])]
    assert tool_names(request.body) == []
    assert "Claude" in system_text(request.body)


def test_api_error_becomes_an_error_result(fake: FakeAnthropic, tmp_path: Path) -> None:
    fake.enqueue(ApiError(529, "overloaded_error", "Overloaded"))

    final = result(run_claude(fake, "hello", tmp_path, CLAUDE_CODE_MAX_RETRIES="0"))

    assert final["is_error"] is True
    assert final["api_error_status"] == 529


def test_max_tokens_cuts_the_reply(fake: FakeAnthropic, tmp_path: Path) -> None:
    fake.enqueue(Reply(("a", "b", "c", "d", "e")))  # the CLI's automatic "resume" turn then gets Echo

    lines = run_claude(fake, "hello", tmp_path, CLAUDE_CODE_MAX_OUTPUT_TOKENS="3")

    assert fake.requests[0].body["max_tokens"] == 3
    events = [line["event"] for line in lines if line["type"] == "stream_event"]
    stops = [event["delta"]["stop_reason"] for event in events if event["type"] == "message_delta"]
    assert stops == ["max_tokens", "end_turn"]
    assert deltas(lines)[:3] == ["a", "b", "c"]
    assert conversation(fake.requests[1].body)[1] == ("assistant", [{"type": "text", "text": "abc"}])


def test_stream_error_is_followed_by_a_non_streaming_retry(fake: FakeAnthropic, tmp_path: Path) -> None:
    fake.enqueue(StreamError(("Hel", "lo")))

    lines = run_claude(fake, "hello", tmp_path, CLAUDE_CODE_MAX_RETRIES="0")

    assert deltas(lines) == ["Hel", "lo"]
    assert [request.body["stream"] for request in fake.requests] == [True, False]
    assert result(lines)["result"] == "ECHO: hello"


def test_reset_before_headers_is_a_dropped_connection_to_the_cli(fake: FakeAnthropic, tmp_path: Path) -> None:
    fake.enqueue(Reset())

    final = result(run_claude(fake, "hello", tmp_path, CLAUDE_CODE_MAX_RETRIES="0"))

    assert final["is_error"] is True
    assert "ECONNRESET" in final["result"]


def test_reset_mid_stream_is_followed_by_a_non_streaming_retry(fake: FakeAnthropic, tmp_path: Path) -> None:
    reset = Reset(("Hel", "lo"), threading.Event())
    fake.enqueue(reset)
    options = claude_options(fake, tmp_path, {"CLAUDE_CODE_MAX_RETRIES": "0"})
    process = subprocess.Popen(ARGV, stdin=subprocess.PIPE, **options)
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(user_line("hello"))
    process.stdin.close()

    lines = []
    for line in process.stdout:
        lines.append(json.loads(line))
        if deltas(lines) == ["Hel", "lo"]:
            reset.release.set()
    process.wait(timeout=10)

    assert [request.body["stream"] for request in fake.requests] == [True, False]
    assert result(lines)["result"] == "ECHO: hello"


def test_thinking_block_then_text(fake: FakeAnthropic, tmp_path: Path) -> None:
    fake.default = Thinking(("Let me", " think."), ("Done",))

    lines = run_claude(fake, "hello", tmp_path)

    assert deltas(lines, "thinking") == ["Let me", " think."]
    assert result(lines)["result"] == "Done"


def test_gate_holds_the_rest_until_released(fake: FakeAnthropic, tmp_path: Path) -> None:
    gate = Gate(("first", " rest"))
    fake.enqueue(gate)
    process = subprocess.Popen(ARGV, stdin=subprocess.PIPE, **claude_options(fake, tmp_path, {}))
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(user_line("hello"))
    process.stdin.close()

    seen: list[str] = []
    for line in process.stdout:
        seen += deltas([json.loads(line)])
        if seen == ["first"]:
            assert gate.reached.is_set()
            gate.release.set()
    process.wait(timeout=10)

    assert seen == ["first", " rest"]


def test_directive_chooses_per_request(fake: FakeAnthropic, tmp_path: Path) -> None:
    lines = run_claude(fake, '[[fake:reply text="hi there"]]', tmp_path)

    assert deltas(lines) == ["hi t", "here"]
    assert result(lines)["result"] == "hi there"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("no directive", None),
        ("say [[fake:reply text=hello]] now", Reply(("hell", "o"))),
        ("[[fake:error status=529]]", ApiError(529, "overloaded_error", "fake error")),
        ("[[fake:error status=429 message='slow' retry_after=2]]", ApiError(429, "rate_limit_error", "slow", 2)),
        ("[[fake:hang]]", Hang()),
        ("[[fake:echo delay=0.05]]", Echo(delay=0.05)),
        ("[[fake:stall text=ab]]", Stall(("ab",))),
        ("[[fake:stream_error]]", StreamError(("Hell", "o"))),
        ("[[fake:reset]]", Reset()),
        ("[[fake:reset text=partial]]", Reset(("part", "ial"))),
        ("[[fake:thinking thinking=hmm text=ok]]", Thinking(("hmm",), ("ok",))),
    ],
)
def test_parse_directive(text: str, expected: object) -> None:
    assert parse_directive(text) == expected


@pytest.mark.parametrize("text", ["[[fake:nope]]", "[[fake:hang colour=red]]", "[[fake:error status=x]]"])
def test_parse_directive_rejects_mistakes(text: str) -> None:
    with pytest.raises(ValueError):
        parse_directive(text)


def test_unknown_path_is_a_404_in_anthropic_shape(fake: FakeAnthropic) -> None:
    client = http.client.HTTPConnection(fake.url.removeprefix("http://"), timeout=5)
    client.request("GET", "/v1/models")
    response = client.getresponse()

    assert response.status == 404
    assert response.getheader("request-id", "").startswith("req_fake_")
    assert json.loads(response.read())["error"]["type"] == "not_found_error"


def test_stop_releases_a_hung_request() -> None:
    server = FakeAnthropic(Hang()).start()
    client = http.client.HTTPConnection(server.url.removeprefix("http://"), timeout=5)
    outcome: list[BaseException] = []

    def call() -> None:
        client.request("POST", "/v1/messages", json.dumps({"messages": []}))
        try:
            client.getresponse()
        except http.client.RemoteDisconnected as err:
            outcome.append(err)

    caller = threading.Thread(target=call)
    caller.start()
    while not server.requests:
        time.sleep(0.01)
    started = time.monotonic()
    server.stop()
    caller.join(timeout=5)

    assert time.monotonic() - started < 1
    assert outcome, "the held request was not released"


def rate_limit_infos(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The `rate_limit_info` of each `rate_limit_event` line."""
    return [line["rate_limit_info"] for line in lines if line["type"] == "rate_limit_event"]


def test_without_plan_limits_the_cli_reports_a_bare_allowed(fake: FakeAnthropic, tmp_path: Path) -> None:
    assert rate_limit_infos(run_claude(fake, "hello", tmp_path)) == [{"status": "allowed", "isUsingOverage": False}]


def test_allowed_plan_limits_reach_the_cli_with_the_windows_reading(fake: FakeAnthropic, tmp_path: Path) -> None:
    fake.plan_limits = limits = UnifiedLimits.allowed(time.time(), utilization=0.25)

    (info,) = rate_limit_infos(run_claude(fake, "hello", tmp_path))

    window = {"utilization": 0.25, "resetsAt": limits.resets_at, "status": "allowed"}
    expected = {"status": "allowed", "resetsAt": limits.resets_at, "rateLimitType": "five_hour"}
    assert info == {**expected, "isUsingOverage": False, "unifiedWindows": {"five_hour": window}}


def test_a_passed_warning_threshold_is_allowed_warning_with_utilization(fake: FakeAnthropic, tmp_path: Path) -> None:
    fake.plan_limits = limits = UnifiedLimits.warning(time.time(), utilization=0.82, threshold=0.8)

    (info,) = rate_limit_infos(run_claude(fake, "hello", tmp_path))

    assert info["status"] == "allowed_warning"
    assert info["rateLimitType"] == "five_hour"
    assert info["resetsAt"] == limits.resets_at
    assert info["utilization"] == 0.82
    assert info["surpassedThreshold"] == 0.8


def test_the_cli_warns_on_fast_use_early_in_a_window_without_a_threshold_header(
    fake: FakeAnthropic, tmp_path: Path
) -> None:
    # The CLI's own rule for the 5-hour window: 90% used while at most 72% of its time has passed.
    resets = int(time.time()) + 4 * 3600
    fake.plan_limits = UnifiedLimits("allowed", "five_hour", resets, {"five_hour": Window(0.95, resets)})

    (info,) = rate_limit_infos(run_claude(fake, "hello", tmp_path))

    assert (info["status"], info["utilization"], info["resetsAt"]) == ("allowed_warning", 0.95, resets)


def test_a_rejected_plan_is_a_429_the_cli_does_not_retry(fake: FakeAnthropic, tmp_path: Path) -> None:
    fake.plan_limits = limits = UnifiedLimits.rejected(time.time())

    lines = run_claude(fake, "hello", tmp_path)

    (info,) = rate_limit_infos(lines)
    assert info["status"] == "rejected"
    assert info["resetsAt"] == limits.resets_at
    assert info["overageStatus"] == "rejected"
    assert info["overageDisabledReason"] == "out_of_credits"
    assert info["isUsingOverage"] is False
    assert (result(lines)["is_error"], result(lines)["api_error_status"]) == (True, 429)
    assert "5-hour limit" in result(lines)["result"]
    assert len(fake.requests) == 1


def test_a_rejected_plan_with_overage_allowed_is_served_as_overage(fake: FakeAnthropic, tmp_path: Path) -> None:
    fake.plan_limits = limits = UnifiedLimits.overage(time.time())

    lines = run_claude(fake, "hello", tmp_path)

    (info,) = rate_limit_infos(lines)
    assert (info["status"], info["overageStatus"]) == ("rejected", "allowed")
    assert (info["isUsingOverage"], info["overageInUse"]) == (True, True)
    assert info["overageResetsAt"] == limits.overage_resets_at
    assert result(lines)["result"] == "ECHO: hello"


def test_one_process_reports_plan_limits_only_when_they_change(fake: FakeAnthropic, tmp_path: Path) -> None:
    process = subprocess.Popen(ARGV, stdin=subprocess.PIPE, **claude_options(fake, tmp_path, {}))
    assert process.stdin is not None and process.stdout is not None
    now = time.time()
    reported = []
    # The same state twice, then a change of the window's rounded percentage.
    for utilization in (0.41, 0.412, 0.47):
        fake.plan_limits = UnifiedLimits.allowed(now, utilization)
        process.stdin.write(user_line("hello"))
        process.stdin.flush()
        turn = []
        for line in process.stdout:
            turn.append(json.loads(line))
            if turn[-1]["type"] == "result":
                break
        reported.append([info["unifiedWindows"]["five_hour"]["utilization"] for info in rate_limit_infos(turn)])
    process.stdin.close()
    process.wait(timeout=10)

    assert reported == [[0.41], [], [0.47]]


def test_a_refusing_plan_answers_429_with_retry_after_whatever_was_chosen(fake: FakeAnthropic) -> None:
    fake.plan_limits = limits = UnifiedLimits.rejected(time.time())
    client = http.client.HTTPConnection(fake.url.removeprefix("http://"), timeout=5)
    body = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "[[fake:reply text=hi]]"}]}
    client.request("POST", "/v1/messages", json.dumps(body))
    response = client.getresponse()

    assert response.status == 429
    assert json.loads(response.read())["error"]["type"] == "rate_limit_error"
    assert response.getheader("anthropic-ratelimit-unified-status") == "rejected"
    assert response.getheader("anthropic-ratelimit-unified-reset") == str(limits.resets_at)
    assert 3500 < int(response.getheader("retry-after") or 0) <= 3600
