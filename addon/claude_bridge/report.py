"""What a bridged request's run did: the report the log line, the mitmweb comment and the ledger are made from."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

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
        duration = ((self.finished or time.monotonic()) - self.started) * 1000
        ttft = f", first token {(self.first_text - self.started) * 1000:.0f} ms" if self.first_text else ""
        served = f" by {self.served}" if self.served else ""
        return (
            f"claude-bridge: {self.claude_model or 'claude'} {self.outcome_text}{served}; {tokens(self.usage)}; "
            f"${self.cost_usd:.4f}; {duration:.0f} ms{ttft}"
        )


def prompt_tokens(usage: Usage) -> int:
    return usage.input_tokens + usage.cache_creation_input_tokens + usage.cache_read_input_tokens


def tokens(usage: Usage) -> str:
    return tokens_text(
        prompt_tokens(usage), usage.cache_read_input_tokens, usage.cache_creation_input_tokens, usage.output_tokens
    )


def tokens_text(prompt: int, cache_read: int, cache_written: int, output: int) -> str:
    """Input with what was read from and written to Anthropic's prompt cache: what the turn was billed for."""
    return f"tokens in {prompt} (cache read {cache_read}, written {cache_written}) out {output}"
