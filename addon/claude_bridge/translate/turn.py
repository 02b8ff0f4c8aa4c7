"""A CLI run's events reduced to what any OpenAI wire format needs: the answer's text, then how it ended."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass

from ..claude import events, mcp
from ..claude.errors import (
    ClaudeError,
    ClaudeExited,
    ClaudeNotFound,
    IdleTimeout,
    LineTooLong,
    MalformedLine,
    RunDirUnwritable,
    RunsExhausted,
    TotalTimeout,
)
from ..claude.events import Usage
from ..claude.invocation import ClaudeInvocation, ClaudeSettings, ContentBlockParam, HistoryMessage
from ..claude.runner import ClaudeRunner
from ..openai.errors import OpenAIError
from ..planlimits import PlanLimits
from ..report import Outcome, TurnReport
from . import errors

logger = logging.getLogger(__name__)

# The tool through which the CLI takes an answer in the requested JSON schema.
STRUCTURED_OUTPUT = "StructuredOutput"


@dataclass(frozen=True, slots=True)
class TurnText:
    text: str


@dataclass(frozen=True, slots=True)
class TurnReasoning:
    """Claude's thinking, passed on only when the bridge is asked to show it."""

    text: str


@dataclass(frozen=True, slots=True)
class TurnToolCall:
    """The model starts its `index`-th call of one of the client's tools; the arguments follow in fragments."""

    index: int
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class TurnToolArguments:
    index: int
    fragment: str


@dataclass(frozen=True)
class TurnEnd:
    stop_reason: str | None
    usage: Usage


TurnItem = TurnText | TurnReasoning | TurnToolCall | TurnToolArguments | TurnEnd


async def turn(
    invocation: ClaudeInvocation,
    runner: ClaudeRunner,
    report: TurnReport,
    *,
    caller: str = "",
    parallel_tool_calls: bool = True,
    reasoning: bool = False,
) -> AsyncGenerator[TurnItem]:
    """Text and tool calls as they stream, then one TurnEnd; failures raise OpenAIError with the CLI's own message.

    `caller` tells conversations apart beyond their content (a hash of the client's key): a live session is only
    continued by its own caller. Close the generator with `aclose()` (or `contextlib.aclosing`) to end the run
    early: that stops and reaps the CLI, and nothing half-done is ever continued.
    """
    try:
        async with runner.run(invocation, caller) as run, contextlib.aclosing(run.events()) as stream:
            report.served, report.claude_model, report.ready = run.served, run.claude_model, run.ready
            reader = _Reader(
                report,
                invocation,
                parallel_tool_calls=parallel_tool_calls,
                reasoning=reasoning,
                cost_before=run.cost_before,
            )
            async for event in stream:
                for item in reader.read(event):
                    if isinstance(item, TurnEnd) and (answer := reader.answer(item)) is not None:
                        run.keep(answer)
                    yield item
                    if isinstance(item, TurnEnd):
                        return
    except RunsExhausted as e:
        raise _failed(report, errors.busy(e.running, e.queued)) from None
    except ClaudeError as e:
        raise _failed(report, _cli_error(e, runner.settings)) from None
    except OpenAIError as e:
        raise _failed(report, e) from e.__cause__
    except asyncio.CancelledError as e:
        report.end(Outcome.CANCELLED, e.args[0] if e.args else "the client disconnected")
        raise
    finally:
        report.finished = time.monotonic()


def _cli_error(error: ClaudeError, settings: ClaudeSettings) -> OpenAIError:
    match error:
        case ClaudeNotFound():
            return errors.cli_missing(settings.claude_bin)
        case IdleTimeout():
            return errors.timeout("printed nothing", settings.idle_timeout, "claude_idle_timeout")
        case TotalTimeout():
            return errors.timeout("ran", settings.total_timeout, "claude_total_timeout")
        case ClaudeExited(returncode=returncode, stderr=stderr):
            return errors.cli_exited(returncode, stderr)
        case MalformedLine() | LineTooLong():
            return errors.cli_unreadable(settings.claude_bin, str(error))
        case RunDirUnwritable(parent=parent, errno=number, strerror=strerror):
            return errors.temp_dir_unwritable(parent, number, strerror)
    return errors.cli_failed(str(error))


def _failed(report: TurnReport, error: OpenAIError) -> OpenAIError:
    report.end(Outcome.FAILED, f"{error.status}: {error.error.message}")
    logger.warning("Claude run failed with %d: %s", error.status, error.error.message)
    return error


class _Reader:
    """Folds events into the report, and says what to send: text and tool calls, then the end of the turn."""

    def __init__(
        self,
        report: TurnReport,
        invocation: ClaudeInvocation,
        *,
        parallel_tool_calls: bool,
        reasoning: bool,
        cost_before: float = 0.0,
    ) -> None:
        self.report = report
        # The CLI's cost is the sum over its process's turns: a live session's earlier turns are not this one's.
        self._cost_before = cost_before
        self._tools = bool(invocation.tools)
        # Only these come back as tool calls: a model led astray by what it read may ask for any name.
        self._offered = {mcp.served_name(tool.name) for tool in invocation.tools}
        self._structured = invocation.json_schema is not None
        self._parallel = parallel_tool_calls
        self._reasoning = reasoning
        self._streamed: set[str] = set()  # messages whose content came as deltas
        self._calls: dict[tuple[str, int], int] = {}  # (message, block) -> the client's call index
        self._resets_at: int | None = None
        self._retry_after_ms: float | None = None
        # The answer as the client gets it, to recognise it when the client sends it back (a live session).
        self._text: list[str] = []
        self._tool_uses: list[ContentBlockParam] = []
        self._arguments: dict[int, list[str]] = {}
        self._dropped = False  # the model called a tool the request did not offer

    def read(self, event: events.Event) -> Iterator[TurnItem]:
        report = self.report
        match event:
            case events.TextDelta(message_id=message_id, text=text) if text and not self._structured:
                self._streamed.add(message_id)
                yield self._sent(TurnText(text))
            case events.ThinkingDelta(thinking=thinking) if thinking and self._reasoning:
                yield TurnReasoning(thinking)
            case events.ToolUseStart(message_id=message_id, index=index, id=call_id, name=name):
                self._streamed.add(message_id)
                if self._offer(name):
                    self._calls[message_id, index] = len(self._calls)
                    yield self._sent(TurnToolCall(self._calls[message_id, index], call_id, mcp.client_name(name)))
            case events.ToolInputDelta(message_id=message_id, index=index, partial_json=fragment):
                if (message_id, index) in self._calls and fragment:
                    yield self._arguments_of(TurnToolArguments(self._calls[message_id, index], fragment))
            case events.BlockStop(message_id=message_id, index=index) if (message_id, index) in self._calls:
                if not self._parallel:
                    yield self._end("tool_use")
            case events.AssistantMessage() if not event.is_api_error_message and event.message.id not in self._streamed:
                # The CLI fell back to a non-streaming request: each block arrives whole, as its own line.
                yield from self._whole(event.message)
            case events.BlocksAbandoned() | events.ApiRetry() | events.MessageStart() if report.first_text:
                # The API call broke off after output went out; the CLI's retry would send it again.
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
                if stop_reason == "max_tokens" or (stop_reason == "tool_use" and self._calls):
                    yield self._end(stop_reason)
                elif stop_reason == "tool_use" and self._dropped and not self._structured:
                    # Only calls of tools never offered: the CLI would refuse them and ask the model again, on
                    # its own. What the model said is the answer; the run ends here.
                    yield self._end("end_turn")
            case events.SystemInit(model=model, mcp_servers=servers, tools=tools):
                report.claude_model = model
                report.ready = report.ready or time.monotonic()
                if self._tools and not any(s.name == mcp.SERVER_NAME and s.status == "connected" for s in servers):
                    raise errors.cli_failed("the CLI could not list the request's tools")
                if self._structured and tools is not None and STRUCTURED_OUTPUT not in tools:
                    # A schema it cannot use turns structured output off without a word; the model would answer free.
                    raise errors.schema_refused()
            case events.RateLimitEvent(rate_limit_info=info):
                report.plan_limits = PlanLimits.of(info, time.time())
                # The plan's window resets then; only a rejection makes that the time to retry (a brief 429 from a
                # busy API comes with the window of a plan that still allows requests).
                self._resets_at = info.resets_at if report.plan_limits.rejected else self._resets_at
            case events.ApiRetry():
                if event.error_status == 429:
                    self._retry_after_ms = event.retry_delay_ms  # the API's own hint, as the CLI obeyed it
                logger.info(
                    "Claude API answered %s (%s); CLI retry %d of %d in %.1f s",
                    event.error_status,
                    event.error,
                    event.attempt,
                    event.max_retries,
                    event.retry_delay_ms / 1000,
                )
            case events.Result():
                yield from self._result(event)

    def _whole(self, message: events.Message) -> Iterator[TurnItem]:
        for block in message.content:
            if block.type == "text" and block.text and not self._structured:
                yield self._sent(TurnText(block.text))
            elif block.type == "tool_use" and block.name and self._offer(block.name):
                index = self._calls.setdefault((message.id, len(self._calls)), len(self._calls))
                yield self._sent(TurnToolCall(index, block.id or "", mcp.client_name(block.name)))
                yield self._arguments_of(TurnToolArguments(index, json.dumps(block.input or {})))
                if not self._parallel:
                    yield self._end("tool_use")
        if message.stop_reason == "max_tokens":
            yield self._end("max_tokens")

    def _result(self, result: events.Result) -> Iterator[TurnItem]:
        report = self.report
        report.cost_usd = max(0.0, result.total_cost_usd - self._cost_before)
        report.usage = result.usage
        if self._calls and result.stop_reason == "tool_use":
            # The calls are the answer; the CLI reports them as denied (it runs none) and stops, as asked.
            yield self._end("tool_use")
        elif result.stop_reason == "tool_use" and result.subtype == "error_max_turns" and not self._structured:
            # The model asked only for tools it was never given (Bash, say): the CLI refused them, having none,
            # and stopped at its one turn. What the model said is the answer.
            yield self._end("end_turn")
        elif result.is_error:
            raise errors.from_result(result, rate_limit_resets_at=self._resets_at, retry_after_ms=self._retry_after_ms)
        elif self._structured:
            if result.structured_output is None:
                raise errors.cli_failed("the answer did not come back in the requested JSON schema")
            yield self._sent(TurnText(json.dumps(result.structured_output, ensure_ascii=False)))
            yield self._end("end_turn")
        else:
            yield self._end(result.stop_reason)

    def _offer(self, name: str) -> bool:
        """Whether a call goes to the client: only for a tool the request offered (and the CLI was given).

        Any other call is dropped here; the CLI refuses it too, having no such tool, so the answer is the text.
        """
        if name in self._offered:
            return True
        if name != STRUCTURED_OUTPUT:  # the CLI's own tool for a response schema
            logger.warning("Dropped the model's call of %.80r, a tool the request did not offer", name)
            self._dropped = True
        return False

    def _sent(self, item: TurnText | TurnToolCall) -> TurnText | TurnToolCall:
        self.report.first_text = self.report.first_text or time.monotonic()
        if isinstance(item, TurnText):
            self._text.append(item.text)
        else:
            self._tool_uses.append({"type": "tool_use", "id": item.id, "name": mcp.served_name(item.name)})
        return item

    def _arguments_of(self, item: TurnToolArguments) -> TurnToolArguments:
        self._arguments.setdefault(item.index, []).append(item.fragment)
        return item

    def answer(self, end: TurnEnd) -> HistoryMessage | None:
        """The answer the client got, as it will send it back; None when the turn must not be continued (cut at
        max_tokens, with calls of tools never offered, or arguments that are not a JSON object)."""
        if end.stop_reason not in ("end_turn", "tool_use") or self._dropped:
            return None
        blocks: list[ContentBlockParam] = [{"type": "text", "text": "".join(self._text)}] if self._text else []
        for index, tool_use in enumerate(self._tool_uses):
            try:
                arguments = json.loads("".join(self._arguments.get(index, ())) or "{}")
            except ValueError:
                return None
            if not isinstance(arguments, dict):
                return None
            blocks.append({**tool_use, "input": arguments})
        return HistoryMessage("assistant", blocks)

    def _end(self, stop_reason: str | None) -> TurnEnd:
        """The end of the turn; at max_tokens or the client's tool calls the bridge stops the run itself
        (the CLI would ask the model to go on, or report the calls as denied)."""
        return TurnEnd(stop_reason, self.report.usage)
