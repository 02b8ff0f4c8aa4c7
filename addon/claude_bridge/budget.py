"""Budgets: daily and monthly spend caps (in all and per app), and no silent overflow into paid overage.

Checked before a run starts, never during one: a run in flight is not cut, so spend can pass a cap by the runs that
were already going when it was reached. A refusal is OpenAI's `insufficient_quota` 429, which is what a client's code
already handles for a spent OpenAI account; `x-should-retry: false` stops the SDKs' automatic retries, which would
only be refused again before the period ends.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from . import periods
from .ledger import Ledger
from .openai.errors import OpenAIError
from .planlimits import PlanLimits

ALL_APPS = "all apps"
# How long an overage report without a reset time is believed; then one request goes through and refreshes it.
UNDATED_OVERAGE_SECONDS = 3600


@dataclass(frozen=True)
class Caps:
    """The spend caps of one period (USD): for all apps together, and for single apps."""

    total: float | None = None
    per_app: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_entries(cls, entries: Sequence[str], option: str) -> Caps:
        """`USD` caps all apps together, `APP=USD` one app; ValueError names the entry that is wrong."""
        total, per_app = None, {}
        for entry in entries:
            app, equals, amount = entry.rpartition("=")
            app = app.strip()
            if equals and not app:
                raise ValueError(f"{option} entry {entry!r}: name the app before '=' (APP=USD), or give USD alone.")
            cap = _dollars(amount, f"{option} entry {entry!r}")
            if app in per_app or (not app and total is not None):
                raise ValueError(f"{option} has two caps for {app or ALL_APPS}: give one.")
            if app:
                per_app[app] = cap
            else:
                total = cap
        return cls(total, per_app)

    def applying_to(self, app: str) -> Iterator[tuple[float, str | None]]:
        """The caps over a request of `app`: (cap, the app it counts, or None for all apps)."""
        if self.total is not None:
            yield self.total, None
        if app in self.per_app:
            yield self.per_app[app], app


def _dollars(text: str, where: str) -> float:
    try:
        amount = float(text.strip().removeprefix("$"))
    except ValueError:
        raise ValueError(f"{where}: {text.strip()!r} is not an amount in USD, such as 5 or 12.50.") from None
    if not math.isfinite(amount) or amount < 0:
        raise ValueError(f"{where}: a cap is an amount of USD from 0 up.")
    return amount


@dataclass(frozen=True)
class Period:
    name: str  # as in the option: daily, monthly
    spent_in: str  # as in the message: today, this month
    resets: str  # when, in words
    key: Callable[[datetime.datetime], str]
    end: Callable[[datetime.datetime], datetime.datetime]

    @property
    def option(self) -> str:
        return f"bridge_budget_{self.name}"


DAY = Period("daily", "today", "at midnight", periods.day, periods.next_day)
MONTH = Period("monthly", "this month", "on the first of next month", periods.month, periods.next_month)


@dataclass(frozen=True)
class Budget:
    """The budget options, parsed: what `check` holds a request against."""

    daily: Caps = Caps()
    monthly: Caps = Caps()
    refuse_overage: bool = True

    @classmethod
    def from_options(cls, daily: Sequence[str], monthly: Sequence[str], refuse_overage: bool) -> Budget:
        """From bridge_budget_daily, bridge_budget_monthly and bridge_refuse_overage; ValueError for a bad entry."""
        return cls(
            Caps.from_entries(daily, DAY.option),
            Caps.from_entries(monthly, MONTH.option),
            refuse_overage,
        )

    def check(
        self, ledger: Ledger, app: str, now: datetime.datetime, plan: PlanLimits | None = None
    ) -> OpenAIError | None:
        """The refusal of a request from `app` about to start a run at `now` (aware, the user's zone), or None.
        `plan`: the plan's state as the bridge holds it (the ledger's saved one when not given)."""
        plan = plan if plan is not None else ledger.plan_limits()
        if self.refuse_overage and (refusal := _overage_refusal(plan, now)):
            return refusal
        # Past both caps, the monthly one says how long to wait: it resets later.
        for period, caps in ((MONTH, self.monthly), (DAY, self.daily)):
            for cap, counted in caps.applying_to(app):
                spent = ledger.spent(period.key(now), counted)
                if spent >= cap:
                    return over_budget(period, cap, spent, counted, now)
        return None


def over_budget(period: Period, cap: float, spent: float, app: str | None, now: datetime.datetime) -> OpenAIError:
    ends = period.end(now)
    whose = f"for {app}" if app else f"for {ALL_APPS}"
    entry = f"{app}=USD" if app else "USD"
    return _insufficient_quota(
        f"claude-bridge's {period.name} budget {whose} is spent: ${spent:.2f} of ${cap:.2f} {period.spent_in}. "
        f"It resets {period.resets} ({ends:%Y-%m-%d %H:%M %Z}), in {_wait_text(ends - now)}. "
        f"To allow more now, raise the cap: --set {period.option}={entry}.",
        ends - now,
    )


def _overage_refusal(limits: PlanLimits | None, now: datetime.datetime) -> OpenAIError | None:
    """The refusal while the latest plan-limit state says the account draws on paid overage, until its reset."""
    if limits is None or not limits.using_overage:
        return None
    if limits.resets_at is not None:
        ends, when = limits.resets_at, f"the plan's included usage returns at {_clock(limits.resets_at, now)}"
    else:
        ends, when = limits.seen_at + UNDATED_OVERAGE_SECONDS, "the plan did not say when its included usage returns"
    wait = datetime.timedelta(seconds=ends - now.timestamp())
    if wait <= datetime.timedelta(0):
        return None  # past its reset: the next run's own report says whether overage goes on
    return _insufficient_quota(
        "The Claude plan's included usage is spent and the account is now drawing on paid overage (billed at API "
        f"prices), so claude-bridge refuses new requests rather than run up that bill; {when}. To allow paid usage, "
        "start claude-bridge with --set bridge_refuse_overage=false.",
        wait,
    )


def _insufficient_quota(message: str, wait: datetime.timedelta) -> OpenAIError:
    seconds = max(1.0, wait.total_seconds())
    headers = {
        "Retry-After": str(math.ceil(seconds)),
        "retry-after-ms": str(round(seconds * 1000)),
        "x-should-retry": "false",
    }
    return OpenAIError(429, message, "insufficient_quota", code="insufficient_quota", headers=headers)


def _clock(epoch: float, now: datetime.datetime) -> str:
    return f"{datetime.datetime.fromtimestamp(epoch, now.tzinfo):%Y-%m-%d %H:%M %Z}"


def _wait_text(wait: datetime.timedelta) -> str:
    minutes = max(1, math.ceil(wait.total_seconds() / 60))
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "", f"{minutes} min" if minutes else ""]
    return " ".join(part for part in parts if part)
