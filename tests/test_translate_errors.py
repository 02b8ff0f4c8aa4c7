"""CLI failures mapped to the OpenAI errors clients retry on, or not."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest

from claude_bridge.claude.events import Result
from claude_bridge.openai.errors import OpenAIError
from claude_bridge.translate import errors
from conftest import recorded_events


def recorded_result(name: str) -> Result:
    return next(event for event in recorded_events(name) if isinstance(event, Result))


def failed(message: str, status: int | None) -> Result:
    return Result(subtype="success", is_error=True, result=message, api_error_status=status)


def assert_error(error: OpenAIError, status: int, code: str) -> None:
    assert (error.status, error.error.code) == (status, code)


def test_prompt_too_long_is_context_length_exceeded() -> None:
    result = recorded_result("err_400")
    error = errors.from_result(result)
    assert_error(error, 400, "context_length_exceeded")
    assert error.error.param == "messages"
    assert error.error.message == result.result


@pytest.mark.parametrize(
    "result",
    [recorded_result("err_401"), failed("Not logged in · Please run /login", None)],
    ids=["401", "not-logged-in"],
)
def test_unauthenticated_cli_is_401_telling_how_to_log_in(result: Result) -> None:
    error = errors.from_result(result)
    assert_error(error, 401, "claude_not_logged_in")
    assert error.error.type == "authentication_error"
    assert error.error.message.startswith(result.result or "")
    assert "claude auth login" in error.error.message


def test_rate_limit_without_a_hint_retries_after_a_short_default() -> None:
    error = errors.from_result(recorded_result("err_429"))
    assert_error(error, 429, "rate_limit_exceeded")
    assert error.error.type == "rate_limit_error"
    assert error.headers == {"Retry-After": "2", "retry-after-ms": "2000"}


def test_rate_limit_passes_the_apis_own_hint_on() -> None:
    error = errors.from_result(recorded_result("err_429"), retry_after_ms=1082)
    assert error.headers == {"Retry-After": "2", "retry-after-ms": "1082"}


def test_rate_limit_retry_after_counts_down_to_the_reset() -> None:
    error = errors.from_result(recorded_result("err_429"), rate_limit_resets_at=int(time.time()) + 120)
    assert 118 <= int(error.headers["Retry-After"]) <= 120


def test_rate_limit_reset_in_the_past_still_waits_a_second() -> None:
    error = errors.from_result(recorded_result("err_429"), rate_limit_resets_at=int(time.time()) - 60)
    assert error.headers["Retry-After"] == "1"


@pytest.mark.parametrize(
    ("name", "status", "code"),
    [
        ("err_529", 503, "claude_overloaded"),
        ("retry2_529", 503, "claude_overloaded"),
        ("err_500", 502, "claude_api_error"),
        ("hang_timeout3s", 504, "claude_api_timeout"),
    ],
)
def test_recorded_server_side_failures(name: str, status: int, code: str) -> None:
    result = recorded_result(name)
    error = errors.from_result(result)
    assert_error(error, status, code)
    assert error.error.type == "server_error"
    assert error.error.message == result.result
    assert error.headers == {}


def test_forbidden_stays_403() -> None:
    error = errors.from_result(failed("API Error: 403 OAuth token does not meet scope requirement", 403))
    assert_error(error, 403, "claude_request_rejected")
    assert error.error.type == "invalid_request_error"


def test_extra_usage_refusal_is_a_400_with_anthropic_words_verbatim() -> None:
    message = (
        "API Error: 400 Third-party apps now draw from your extra usage, not your plan limits. "
        "Turn on extra usage at claude.ai/settings/usage to keep going."
    )
    error = errors.from_result(failed(message, 400))
    assert_error(error, 400, "claude_request_rejected")
    assert error.error.message == message


def test_status_404_is_model_not_found() -> None:
    assert_error(errors.from_result(failed("model: claude-nope", 404)), 404, "model_not_found")


def test_execution_error_without_result_text_uses_the_errors_list() -> None:
    result = Result(subtype="error_during_execution", is_error=True, errors=["first", "second"])
    error = errors.from_result(result)
    assert_error(error, 502, "claude_cli_error")
    assert error.error.message == "first; second"


def test_error_without_any_text_still_has_a_message() -> None:
    assert errors.from_result(Result(subtype="error_max_turns", is_error=True)).error.message


def test_cli_missing_names_the_path_and_the_install_command() -> None:
    error = errors.cli_missing("/opt/nowhere/claude")
    assert_error(error, 503, "claude_cli_missing")
    assert "'/opt/nowhere/claude'" in error.error.message
    assert "npm install -g @anthropic-ai/claude-code" in error.error.message


@pytest.mark.parametrize(
    ("number", "said"),
    [
        (errno.ENOSPC, "is full"),
        (errno.EDQUOT, "is over the disk quota"),
        (errno.EACCES, "is not writable"),
        (errno.EROFS, "is on a read-only file system"),
        (errno.ENOTDIR, "cannot be written (Not a directory)"),
    ],
)
def test_an_unwritable_temp_dir_is_a_503_naming_it_and_what_is_wrong(number: int, said: str) -> None:
    error = errors.temp_dir_unwritable(Path("/var/tmp/x"), number, os.strerror(number))
    assert_error(error, 503, "bridge_temp_dir_unwritable")
    assert error.error.message.startswith(f"The temporary directory /var/tmp/x {said}")
    assert "TMPDIR" in error.error.message
