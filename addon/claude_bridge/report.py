"""What a bridged request's run did: the report the log line, the mitmweb comment and the ledger are made from."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import BaseModel

from .claude.events import Usage
from .planlimits import PlanLimits


class Outcome(enum.Enum):
    RUNNING = "running"
    FINISHED = "finished"
    STOPPED = "stopped at a stop sequence"
    FAILED = "failed"
    CANCELLED = "cancelled"
    CUT_SHORT = "cut short"
    """The client's connection broke while the answer streamed."""


@dataclass
class TurnReport:
    claude_model: str | None = None
    served: str | None = None  # by a new CLI, a warm one, or the conversation's live session
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    started: float = field(default_factory=time.monotonic)
    ready: float | None = None
    """When the CLI could start on this turn: a new one at its init event, a warm one or a live session when taken.
    Time to first token splits there: before it, CLI start-up; after it, the API (and the CLI's own request)."""
    first_text: float | None = None
    finished: float | None = None
    outcome: Outcome = Outcome.RUNNING
    detail: str = ""
    """The stop reason of a finished run, the error of a failed one, why one was cancelled or cut short."""
    plan_limits: PlanLimits | None = None
    """The plan's standing as this run's CLI last reported it; None when it reported none (it reports changes only,
    and a turn that ends in tool calls stops reading before the CLI reports)."""

    def finish(self, stop_reason: str | None) -> None:
        if self.outcome is Outcome.RUNNING:
            self.outcome, self.detail = Outcome.FINISHED, stop_reason or "end_turn"

    def end(self, outcome: Outcome, detail: str = "") -> None:
        self.outcome, self.detail = outcome, detail

    @property
    def outcome_text(self) -> str:
        match self.outcome:
            case Outcome.FINISHED:
                return f"finished ({self.detail})"
            case Outcome.FAILED:
                return f"failed with {self.detail}"
            case Outcome.CANCELLED | Outcome.CUT_SHORT:
                return f"{self.outcome.value}: {self.detail}"
        return self.outcome.value

    def summary(self) -> str:
        return self.record().summary()

    def record(self) -> RunRecord:
        """What the run did in plain values: kept with the flow (flow.metadata, saved in flow files)."""
        ms = _milliseconds_since(self.started)
        first_token, ready = ms(self.first_text), ms(self.ready)
        return RunRecord(
            claude_model=self.claude_model,
            served=self.served,
            outcome=self.outcome_text,
            usage=self.usage,
            cost_usd=self.cost_usd,
            duration_ms=ms(self.finished or time.monotonic()) or 0,
            first_token_ms=first_token,
            # Only a moment between the start and the first token splits it (a failed run may have neither).
            start_up_ms=ready if first_token is not None and ready is not None and ready <= first_token else None,
        )


class RunRecord(BaseModel):
    """A run as the mitmweb comment and the content views show it, stored under `RECORD_KEY` in flow.metadata."""

    claude_model: str | None = None
    served: str | None = None
    outcome: str
    usage: Usage = Usage()
    cost_usd: float = 0.0
    duration_ms: int = 0
    first_token_ms: int | None = None
    start_up_ms: int | None = None
    """Of the time to first token, what went before the CLI was ready; the rest was the API's."""

    def summary(self) -> str:
        served = f" by {self.served}" if self.served else ""
        return (
            f"claude-bridge: {self.claude_model or 'claude'} {self.outcome}{served}; {tokens(self.usage)}; "
            f"${self.cost_usd:.4f}; {self.duration_ms} ms{self._first_token()}"
        )

    def _first_token(self) -> str:
        """E.g. ", first token 262 ms (start-up 223 + API 39)": what the CLI cost before the API was asked."""
        if self.first_token_ms is None:
            return ""
        if self.start_up_ms is None:
            return f", first token {self.first_token_ms} ms"
        api = self.first_token_ms - self.start_up_ms
        return f", first token {self.first_token_ms} ms (start-up {self.start_up_ms} + API {api})"


RECORD_KEY = "claude_bridge"


def _milliseconds_since(start: float) -> Callable[[float | None], int | None]:
    return lambda moment: None if moment is None else round((moment - start) * 1000)


def prompt_tokens(usage: Usage) -> int:
    return usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens


def tokens(usage: Usage) -> str:
    return tokens_text(
        prompt_tokens(usage), usage.cache_read_input_tokens, usage.cache_creation_input_tokens, usage.output_tokens
    )


def tokens_text(prompt: int, cache_read: int, cache_written: int, output: int) -> str:
    """Input with what was read from and written to Anthropic's prompt cache: what the turn was billed for."""
    return f"tokens in {prompt} (cache read {cache_read}, written {cache_written}) out {output}"
