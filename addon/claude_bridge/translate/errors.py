"""CLI failures as OpenAI errors: the status a client's retry logic expects, the CLI's own words kept."""

from __future__ import annotations

import errno
import math
import signal
import time
from pathlib import Path

from ..claude.events import Result
from ..openai.errors import OpenAIError

# When neither the plan's reset time nor the API's own hint is known: a 429 is most often brief, and SDKs obey this
# literally (30 s here held a default openai-python client for over a minute on a 1 s limit).
DEFAULT_RETRY_AFTER_MS = 2000

_NOT_LOGGED_IN_MARKERS = ("not logged in", "/login", "invalid api key", "oauth token has expired")


def from_result(
    result: Result, *, rate_limit_resets_at: int | None = None, retry_after_ms: float | None = None
) -> OpenAIError:
    """`rate_limit_resets_at`: when a rejected plan limit resets; `retry_after_ms`: the API's own hint, as the CLI
    last waited on a 429."""
    message = (result.result or "; ".join(result.errors or ()) or "the Claude CLI reported an error").strip()
    status = result.api_error_status
    if status == 401 or (status is None and _looks_unauthenticated(message)):
        return not_logged_in(message)
    if status == 429:
        wait_ms = retry_after_ms or DEFAULT_RETRY_AFTER_MS
        if rate_limit_resets_at:
            wait_ms = max(1000, (rate_limit_resets_at - time.time()) * 1000)
        headers = {"Retry-After": str(math.ceil(wait_ms / 1000)), "retry-after-ms": str(round(wait_ms))}
        return OpenAIError(429, message, "rate_limit_error", code="rate_limit_exceeded", headers=headers)
    if result.terminal_reason == "prompt_too_long" or "prompt is too long" in message.lower():
        return OpenAIError(400, message, code="context_length_exceeded", param="messages")
    if status == 404:
        return OpenAIError(404, message, code="model_not_found", param="model")
    if status is not None and 400 <= status < 500:
        # Includes Anthropic's "Third-party apps now draw from your extra usage" refusal: a client must not retry it.
        return OpenAIError(status, message, code="claude_request_rejected")
    if status == 529:
        return OpenAIError(503, message, "server_error", code="claude_overloaded")
    if status is not None and status >= 500:
        return OpenAIError(502, message, "server_error", code="claude_api_error")
    if "timed out" in message.lower():
        return OpenAIError(504, message, "server_error", code="claude_api_timeout")
    return OpenAIError(502, message, "server_error", code="claude_cli_error")


def not_logged_in(message: str) -> OpenAIError:
    return OpenAIError(
        401,
        f"{message} — the Claude CLI is not logged in to a subscription: run `claude auth login` (or set "
        "CLAUDE_CODE_OAUTH_TOKEN from `claude setup-token`) on the machine running claude-bridge.",
        "authentication_error",
        code="claude_not_logged_in",
    )


def cli_missing(claude_bin: str) -> OpenAIError:
    return OpenAIError(
        503,
        f"The Claude Code CLI was not found at {claude_bin!r}. Install it with "
        "`npm install -g @anthropic-ai/claude-code` and run `claude auth login`, or start claude-bridge with "
        "`--claude-bin /path/to/claude`.",
        "server_error",
        code="claude_cli_missing",
    )


def timeout(what: str, seconds: float, option: str) -> OpenAIError:
    return OpenAIError(
        504,
        f"The Claude CLI {what} for {seconds:g} s and was stopped. Raise `{option}` if answers need longer.",
        "server_error",
        code="claude_timeout",
    )


_TEMP_DIR_PROBLEMS = {
    errno.ENOSPC: "is full (no space left on the device)",
    errno.EDQUOT: "is over the disk quota of the user running claude-bridge",
    errno.EACCES: "is not writable by the user running claude-bridge",
    errno.EPERM: "is not writable by the user running claude-bridge",
    errno.EROFS: "is on a read-only file system",
}


def temp_dir_unwritable(parent: Path, number: int | None, strerror: str) -> OpenAIError:
    """503: the machine, not the request, is at fault, and the request can succeed once there is room."""
    problem = _TEMP_DIR_PROBLEMS.get(number or 0, f"cannot be written ({strerror})")
    return OpenAIError(
        503,
        f"The temporary directory {parent} {problem}: claude-bridge makes a private directory there for each "
        "Claude run. Free space or fix its permissions, or restart claude-bridge with TMPDIR set to a writable "
        "directory with room.",
        "server_error",
        code="bridge_temp_dir_unwritable",
    )


def cli_failed(detail: str) -> OpenAIError:
    return _cli_error(f"The Claude CLI failed: {detail}")


def schema_refused() -> OpenAIError:
    return OpenAIError(
        400,
        "Claude Code did not accept the JSON schema in response_format: it must be a valid JSON Schema for an "
        "object. Check it with a JSON Schema validator and send the request again.",
        param="response_format",
        code="invalid_json_schema",
    )


def cli_unreadable(claude_bin: str, printed: str) -> OpenAIError:
    return _cli_error(
        f"The Claude CLI at {claude_bin!r} printed {printed}; check that it is Claude Code, at a version "
        "claude-bridge supports."
    )


def cli_exited(returncode: int | None, stderr: str) -> OpenAIError:
    """The CLI ended without its result: how, in words (a negative code is the signal that killed it), and stderr."""
    said = f": {stderr}" if stderr else ", with nothing on stderr"
    if returncode is None or returncode >= 0:
        message = f"The Claude CLI exited with code {returncode} before it finished{said}."
    else:
        name = _signal_name(-returncode)
        oom = " (SIGKILL is what the system sends when memory runs out)" if name == "SIGKILL" else ""
        message = (
            f"The Claude CLI was killed by signal {name} before it finished{said}. "
            f"Something outside claude-bridge stopped it{oom}; send the request again."
        )
    return _cli_error(message)


def _cli_error(message: str) -> OpenAIError:
    """The CLI itself went wrong (not the API): 502, as a gateway whose upstream failed."""
    return OpenAIError(502, message, "server_error", code="claude_cli_error")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _looks_unauthenticated(message: str) -> bool:
    lowered = message.lower()
    return any(marker in lowered for marker in _NOT_LOGGED_IN_MARKERS)


# Runs are short: a client told to wait this long finds a free slot (SDKs honour Retry-After).
BUSY_RETRY_AFTER = 5


def busy(running: int, queued: int) -> OpenAIError:
    return OpenAIError(
        429,
        f"claude-bridge is running {running} Claude requests with {queued} waiting, its limit "
        "(claude_max_runs, claude_max_queued); try again shortly.",
        "rate_limit_error",
        code="bridge_busy",
        headers={"Retry-After": str(BUSY_RETRY_AFTER)},
    )
