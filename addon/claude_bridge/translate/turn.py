"""A CLI run's events reduced to what any OpenAI wire format needs: the answer's text, then how it ended."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass, field

from ..claude import events
from ..claude.events import Usage
from ..claude.invocation import ClaudeInvocation, ClaudeSettings
from ..claude.process import IdleTimeout, TotalTimeout
from ..claude.run import ClaudeExited, ClaudeNotFound, ClaudeRun
from ..openai.errors import OpenAIError
from . import errors

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TurnText:
    text: str


@dataclass(frozen=True)
class TurnEnd:
    stop_reason: str | None
    usage: Usage


@dataclass
class TurnReport:
    """What happened, for the log line and the mitmweb comment."""

    claude_model: str | None = None
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    started: float = field(default_factory=time.monotonic)
    first_text: float | None = None
    finished: float | None = None
    outcome: str = "running"

    def summary(self) -> str:
        duration = ((self.finished or time.monotonic()) - self.started) * 1000
        ttft = f", first token {(self.first_text - self.started) * 1000:.0f} ms" if self.first_text else ""
        return (
            f"claude-bridge: {self.claude_model or 'claude'} {self.outcome}; "
            f"tokens in {prompt_tokens(self.usage)} (cached {self.usage.cache_read_input_tokens}) "
            f"out {self.usage.output_tokens}; ${self.cost_usd:.4f}; {duration:.0f} ms{ttft}"
        )


def prompt_tokens(usage: Usage) -> int:
    return usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens


async def turn(
    invocation: ClaudeInvocation, settings: ClaudeSettings, report: TurnReport
) -> AsyncGenerator[TurnText | TurnEnd]:
    """Text as it streams, then one TurnEnd; failures raise OpenAIError with the CLI's own message.

    Close it with `aclose()` (or `contextlib.aclosing`) to end the run early: that stops and reaps the CLI.
    """
    try:
        async with ClaudeRun(invocation, settings) as run, contextlib.aclosing(run.events()) as stream:
            reader = _Reader(report)
            async for event in stream:
                for item in reader.read(event):
                    yield item
                    if isinstance(item, TurnEnd):
                        return
    except (ClaudeNotFound, IdleTimeout, TotalTimeout, ClaudeExited, events.MalformedLine) as e:
        raise _failed(report, _cli_error(e, settings)) from None
    except OpenAIError as e:
        raise _failed(report, e) from e.__cause__
    except asyncio.CancelledError:
        report.outcome = "cancelled: the client disconnected"
        raise
    finally:
        report.finished = time.monotonic()


def _cli_error(error: Exception, settings: ClaudeSettings) -> OpenAIError:
    match error:
        case ClaudeNotFound():
            return errors.cli_missing(settings.claude_bin)
        case IdleTimeout():
            return errors.timeout("printed nothing", settings.idle_timeout, "claude_idle_timeout")
        case TotalTimeout():
            return errors.timeout("ran", settings.total_timeout, "claude_total_timeout")
        case _:
            return errors.cli_failed(str(error))


def _failed(report: TurnReport, error: OpenAIError) -> OpenAIError:
    report.outcome = f"failed with {error.status}: {error.error.message}"
    logger.warning("Claude run failed with %d: %s", error.status, error.error.message)
    return error


class _Reader:
    """Folds events into the report, and says what to send: text, then the end of the turn."""

    def __init__(self, report: TurnReport) -> None:
        self.report = report
        self._streamed: set[str] = set()  # messages whose text came as deltas
        self._resets_at: int | None = None

    def read(self, event: events.Event) -> Iterator[TurnText | TurnEnd]:
        report = self.report
        match event:
            case events.TextDelta(message_id=message_id, text=text) if text:
                self._streamed.add(message_id)
                yield self._text(text)
            case events.AssistantMessage() if not event.is_api_error_message and event.message.id not in self._streamed:
                # The CLI fell back to a non-streaming request: each block's whole text arrives at once.
                if event.text:
                    yield self._text(event.text)
                if event.message.stop_reason == "max_tokens":
                    yield self._cut_off()
            case events.BlocksAbandoned() | events.ApiRetry() | events.MessageStart() if report.first_text:
                # The API call broke off after text went out; the CLI's retry would send that text again.
                raise OpenAIError(
                    502,
                    "The Claude API stream broke off after part of the answer was sent; a retry would repeat "
                    "that text, so the answer ends here. Send the request again.",
                    "server_error",
                    code="claude_stream_interrupted",
                )
            case events.MessageStart(usage=usage):
                report.usage = usage
            case events.MessageDelta(stop_reason=stop_reason, output_tokens=output_tokens):
                if output_tokens:
                    report.usage = report.usage.model_copy(update={"output_tokens": output_tokens})
                if stop_reason == "max_tokens":
                    yield self._cut_off()
            case events.SystemInit(model=model):
                report.claude_model = model
            case events.RateLimitEvent(rate_limit_info=info):
                self._resets_at = info.resets_at or self._resets_at
            case events.ApiRetry():
                logger.info(
                    "Claude API answered %s (%s); CLI retry %d of %d in %.1f s",
                    event.error_status,
                    event.error,
                    event.attempt,
                    event.max_retries,
                    event.retry_delay_ms / 1000,
                )
            case events.Result():
                report.cost_usd = event.total_cost_usd
                if event.is_error:
                    raise errors.from_result(event, rate_limit_resets_at=self._resets_at)
                report.usage = event.usage
                yield TurnEnd(event.stop_reason, event.usage)

    def _text(self, text: str) -> TurnText:
        self.report.first_text = self.report.first_text or time.monotonic()
        return TurnText(text)

    def _cut_off(self) -> TurnEnd:
        """The CLI would ask the model to go on (up to 3 times); OpenAI's max_tokens means stop here."""
        return TurnEnd("max_tokens", self.report.usage)
