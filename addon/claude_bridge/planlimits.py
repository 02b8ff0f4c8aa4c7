"""Where the subscription's limits stand: the latest `rate_limit_event` the CLI printed, as the bridge reports it.

The CLI prints the event only when the state changes (tests/recordings/rate_limits.md), so a run may report nothing:
the bridge keeps the latest state it saw, with when it saw it (`seen_at`), and shows that.

Response headers on bridged answers (`headers`). OpenAI's `x-ratelimit-*` family counts requests and tokens per
minute; the plan reports only a fraction used of a window and when it resets, so only one of its names fits:
- `x-ratelimit-reset-requests`: how long until the deciding window resets, in OpenAI's duration format ("1h2m3s"):
  the plan's allowance of requests is renewed then, as OpenAI's is.
- No `x-ratelimit-limit-*` or `x-ratelimit-remaining-*`: the plan has no counts, and made-up ones would mislead
  clients that throttle on them.
Everything else is under the bridge's own `x-claude-ratelimit-*`, not Anthropic's `anthropic-ratelimit-unified-*`:
the values are the latest state the bridge knows, possibly seen on an earlier request, not this request's headers.
- `x-claude-ratelimit-status`: allowed, allowed_warning or rejected
- `x-claude-ratelimit-window`: the deciding window (five_hour, seven_day, ...)
- `x-claude-ratelimit-utilization`: its fraction used (0.82 = 82%)
- `x-claude-ratelimit-reset`: when it resets, epoch seconds
- `x-claude-ratelimit-overage-status`, `x-claude-ratelimit-overage-reset`: paid overage's state and period end
- `x-claude-ratelimit-using-overage`: "true" once requests are billed as paid overage
- `x-claude-ratelimit-seen-at`: when the CLI reported this state, epoch seconds
A refusal keeps its own `Retry-After` (translate/errors.py), counted down to the same reset.
"""

from __future__ import annotations

import math
import time
from typing import Any

from pydantic import BaseModel, ConfigDict

from .claude.events import RateLimitInfo

_WARNING = "allowed_warning"
_REJECTED = "rejected"


class PlanLimits(BaseModel):
    """The plan's standing; times are epoch seconds, `utilization` a fraction of the deciding window."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    status: str | None = None  # allowed, allowed_warning, rejected (as the CLI says it)
    window: str | None = None
    utilization: float | None = None
    resets_at: int | None = None
    overage_status: str | None = None
    overage_resets_at: int | None = None
    using_overage: bool = False
    seen_at: float

    @classmethod
    def of(cls, info: RateLimitInfo, now: float) -> PlanLimits:
        return cls(
            status=info.status,
            window=info.rate_limit_type,
            utilization=info.window_utilization,
            resets_at=info.resets_at,
            overage_status=info.overage_status,
            overage_resets_at=info.overage_resets_at,
            using_overage=info.is_using_overage or info.overage_in_use,
            seen_at=now,
        )

    @property
    def warning(self) -> bool:
        return self.status == _WARNING

    @property
    def rejected(self) -> bool:
        """The plan's included usage is spent (requests are refused, or billed as paid overage)."""
        return self.status == _REJECTED

    @property
    def refusing(self) -> bool:
        """The plan turns requests away (a 429) until `resets_at`: spent, and paid overage does not take over."""
        return self.rejected and not self.using_overage

    def changed_from(self, previous: PlanLimits | None) -> bool:
        """Whether this says something `previous` did not (when it was seen aside): worth a log line."""
        return previous is None or self.model_dump(exclude={"seen_at"}) != previous.model_dump(exclude={"seen_at"})

    def text(self) -> str:
        """One line for the log, the banner and the mitmweb comment."""
        parts = [f"plan limits: {self.status or 'unknown'}"]
        if self.window:
            used = f" {self.utilization:.0%} used" if self.utilization is not None else ""
            parts.append(f", {self.window} window{used}")
        if self.resets_at:
            parts.append(f", resets {_clock(self.resets_at, self.seen_at)}")
        if self.using_overage:
            until = f" until {_clock(self.overage_resets_at, self.seen_at)}" if self.overage_resets_at else ""
            parts.append(f"; drawing on paid overage{until}")
        elif self.overage_status:
            parts.append(f"; overage {self.overage_status}")
        return "".join(parts)

    def as_health(self) -> dict[str, Any]:
        """For /health: the fields as stored, and the line a person reads."""
        return {**self.model_dump(), "text": self.text()}

    def headers(self, now: float) -> dict[str, str]:
        """Response headers for a bridged answer (the module docstring says which are which and why)."""
        values: dict[str, object] = {
            "status": self.status,
            "window": self.window,
            "utilization": None if self.utilization is None else f"{self.utilization:g}",
            "reset": self.resets_at,
            "overage-status": self.overage_status,
            "overage-reset": self.overage_resets_at,
            "using-overage": "true" if self.using_overage else "false",
            "seen-at": math.floor(self.seen_at),
        }
        headers = {f"x-claude-ratelimit-{name}": str(value) for name, value in values.items() if value is not None}
        if self.resets_at is not None:
            headers["x-ratelimit-reset-requests"] = duration(self.resets_at - now)
        return headers


def duration(seconds: float) -> str:
    """OpenAI's `x-ratelimit-reset-*` format: "1h2m3s", "6m0s", "45s", "0s" (whole seconds, rounded up)."""
    left = max(0, math.ceil(seconds))
    hours, rest = divmod(left, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def _clock(epoch: int, seen_at: float) -> str:
    """A reset time in UTC: the time of day within a day of when it was seen, else the date too."""
    moment = time.gmtime(epoch)
    if 0 <= epoch - seen_at < 86400:
        return time.strftime("%H:%M UTC", moment)
    return time.strftime(f"%b {moment.tm_mday} %H:%M UTC", moment)
