"""The plan-limit state the fake Anthropic API reports, as the real API's `anthropic-ratelimit-unified-*` headers.

A subscription's requests come back with these headers on every answer; the Claude Code CLI turns them into its
`rate_limit_event` line (recordings/rate_limits.md has the mapping, found in and verified against CLI 2.1.331).
The fake sends them while `fake.plan_limits` is set, and answers as the real API does: a refusing state (rejected,
no paid overage allowed) is a 429 `rate_limit_error` with `retry-after` counting down to the reset; a rejected state
whose overage is allowed is answered normally (200), billed as paid overage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

Status = Literal["allowed", "allowed_warning", "rejected"]

WINDOW_INFIXES = {"five_hour": "5h", "seven_day": "7d", "seven_day_overage_included": "7d_oi", "overage": "overage"}
"""The windows the CLI reads per-window headers for, and the infix it reads them under."""

PREFIX = "anthropic-ratelimit-unified-"

REFUSAL = "This request would exceed your account's rate limit. Please try again later."


@dataclass(frozen=True)
class Window:
    """One usage window's standing: `utilization` a fraction (1 = the window's allowance), `resets_at` epoch s."""

    utilization: float
    resets_at: int
    status: Status | None = None
    surpassed_threshold: float | None = None  # the highest warning threshold passed (1 once rejected)


@dataclass(frozen=True)
class UnifiedLimits:
    """What the API's rate limiter says about the account, as of one answer.

    `claim` is the window that decides (`representative-claim`: five_hour, seven_day, seven_day_opus,
    seven_day_sonnet, seven_day_overage_included or overage); `windows` the per-window readings by that name.
    """

    status: Status = "allowed"
    claim: str | None = "five_hour"
    resets_at: int | None = None
    windows: dict[str, Window] = field(default_factory=dict)
    overage_status: Status | None = None
    overage_resets_at: int | None = None
    overage_disabled_reason: str | None = None
    overage_in_use: bool = False

    @property
    def refuses(self) -> bool:
        """The limit is reached and no paid overage may take over: the API answers 429."""
        return self.status == "rejected" and self.overage_status not in ("allowed", "allowed_warning")

    def headers(self, now: float) -> dict[str, str]:
        """The response headers for this state; `now` (epoch s) only times a refusal's `retry-after`."""
        headers = {f"{PREFIX}status": self.status}
        optional = {
            "reset": self.resets_at,
            "representative-claim": self.claim,
            "overage-status": self.overage_status,
            "overage-reset": self.overage_resets_at,
            "overage-disabled-reason": self.overage_disabled_reason,
            "overage-in-use": "true" if self.overage_in_use else None,
        }
        headers |= {f"{PREFIX}{name}": str(value) for name, value in optional.items() if value is not None}
        for name, window in self.windows.items():
            headers |= _window_headers(WINDOW_INFIXES[name], window)
        if self.refuses and self.resets_at is not None:
            headers["retry-after"] = str(max(1, math.ceil(self.resets_at - now)))
        return headers

    # The states the tests use, as the real API reports them.

    @classmethod
    def allowed(cls, now: float, utilization: float = 0.25) -> UnifiedLimits:
        """Well within the 5-hour window, half of which has passed."""
        resets = int(now) + 9000
        return cls("allowed", "five_hour", resets, {"five_hour": Window(utilization, resets, "allowed")})

    @classmethod
    def warning(cls, now: float, utilization: float = 0.82, threshold: float = 0.8) -> UnifiedLimits:
        """Past a warning threshold of the 5-hour window."""
        resets = int(now) + 3600
        window = Window(utilization, resets, "allowed_warning", threshold)
        return cls("allowed_warning", "five_hour", resets, {"five_hour": window})

    @classmethod
    def rejected(cls, now: float) -> UnifiedLimits:
        """The 5-hour window is spent and paid overage is not allowed: every request is refused until the reset."""
        resets = int(now) + 3600
        window = Window(1.0, resets, "rejected", 1.0)
        return cls(
            "rejected", "five_hour", resets, {"five_hour": window}, "rejected", overage_disabled_reason="out_of_credits"
        )

    @classmethod
    def overage(cls, now: float) -> UnifiedLimits:
        """The 5-hour window is spent and paid overage is allowed: requests are served and billed as overage."""
        resets = int(now) + 3600
        window = Window(1.0, resets, "rejected", 1.0)
        month = int(now) + 20 * 86400
        return cls("rejected", "five_hour", resets, {"five_hour": window}, "allowed", month, overage_in_use=True)


def _window_headers(infix: str, window: Window) -> dict[str, str]:
    headers = {
        f"{PREFIX}{infix}-utilization": f"{window.utilization:g}",
        f"{PREFIX}{infix}-reset": str(window.resets_at),
    }
    if window.status is not None:
        headers[f"{PREFIX}{infix}-status"] = window.status
    if window.surpassed_threshold is not None:
        headers[f"{PREFIX}{infix}-surpassed-threshold"] = f"{window.surpassed_threshold:g}"
    return headers
