"""Budgets and the overage switch against a real ledger, with the time injected: caps by day and month, in all and
per app, and refusals while the plan draws on paid overage."""

from __future__ import annotations

import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons

from claude_bridge import ledger
from claude_bridge.addon import ClaudeBridge
from claude_bridge.budget import Budget, Caps
from claude_bridge.claude.events import Usage
from claude_bridge.ledger import Entry, Ledger
from claude_bridge.planlimits import PlanLimits
from claude_bridge.report import TurnReport

BERLIN = ZoneInfo("Europe/Berlin")
MORNING = datetime.datetime(2026, 7, 14, 9, 0, tzinfo=BERLIN)
AFTERNOON = MORNING.replace(hour=15, minute=30)


@pytest.fixture
def book(tmp_path: Path):
    opened = Ledger(tmp_path / ledger.FILENAME, now=MORNING)
    yield opened
    opened.close()


def spend(book: Ledger, app: str, cost: float, at: datetime.datetime) -> None:
    done = TurnReport(claude_model="claude-sonnet-4-5", usage=Usage(input_tokens=1), cost_usd=cost)
    done.finish("end_turn")
    book.record(
        Entry.of(done, app=app, endpoint="/v1/chat/completions", model="gpt-4o", status=200, stream=True, at=at)
    )


def test_caps_parse_for_all_apps_and_per_app():
    caps = Caps.from_entries(["5", "notes=$1.50", "OpenAI/Python = 0"], "bridge_budget_daily")
    assert caps == Caps(5.0, {"notes": 1.5, "OpenAI/Python": 0.0})
    assert list(caps.applying_to("notes")) == [(5.0, None), (1.5, "notes")]
    assert list(caps.applying_to("curl")) == [(5.0, None)]
    assert Caps.from_entries([], "bridge_budget_daily") == Caps()


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (["five"], r"bridge_budget_daily entry 'five': 'five' is not an amount in USD"),
        (["notes="], r"'' is not an amount"),
        (["=5"], r"name the app before '='"),
        (["-1"], r"from 0 up"),
        (["nan"], r"from 0 up"),
        (["inf"], r"from 0 up"),
        (["5", "6"], r"two caps for all apps"),
        (["notes=1", "notes=2"], r"two caps for notes"),
    ],
)
def test_bad_cap_entries_are_refused_naming_the_option_and_entry(entries, message):
    with pytest.raises(ValueError, match=message):
        Budget.from_options(entries, [], True)


def test_bad_cap_entries_are_an_options_error():
    addon = ClaudeBridge()
    with taddons.context(addon) as tctx, pytest.raises(exceptions.OptionsError, match="bridge_budget_monthly entry"):
        tctx.configure(addon, bridge_budget_monthly=["lots"])


def test_no_caps_and_no_overage_refuse_nothing(book: Ledger):
    spend(book, "curl", 1000.0, MORNING)
    assert Budget().check(book, "curl", AFTERNOON) is None


def test_a_daily_cap_reached_mid_day_refuses_until_midnight_then_allows(book: Ledger):
    budget = Budget.from_options(["2"], [], True)
    spend(book, "curl", 1.25, MORNING)
    assert budget.check(book, "curl", MORNING) is None
    spend(book, "OpenAI/Python", 0.8, MORNING.replace(hour=12))
    refusal = budget.check(book, "curl", AFTERNOON)
    assert refusal is not None
    assert refusal.status == 429
    assert (refusal.error.type, refusal.error.code) == ("insufficient_quota", "insufficient_quota")
    assert refusal.error.message == (
        "claude-bridge's daily budget for all apps is spent: $2.05 of $2.00 today. It resets at midnight "
        "(2026-07-15 00:00 CEST), in 8 h 30 min. To allow more now, raise the cap: --set bridge_budget_daily=USD."
    )
    assert refusal.headers == {"Retry-After": "30600", "retry-after-ms": "30600000", "x-should-retry": "false"}
    tomorrow = datetime.datetime(2026, 7, 15, 0, 0, tzinfo=BERLIN)
    assert budget.check(book, "curl", tomorrow) is None


def test_a_monthly_cap_refuses_until_the_first_of_next_month(book: Ledger):
    budget = Budget.from_options([], ["10"], True)
    spend(book, "curl", 6.0, MORNING.replace(day=2))
    spend(book, "curl", 4.0, MORNING)
    refusal = budget.check(book, "curl", AFTERNOON)
    assert refusal is not None and refusal.error.code == "insufficient_quota"
    assert "monthly budget for all apps is spent: $10.00 of $10.00 this month" in refusal.error.message
    assert "resets on the first of next month (2026-08-01 00:00 CEST), in 17 d 8 h 30 min" in refusal.error.message
    assert "--set bridge_budget_monthly=USD" in refusal.error.message
    assert budget.check(book, "curl", datetime.datetime(2026, 7, 31, 23, 59, tzinfo=BERLIN)) is not None
    assert budget.check(book, "curl", datetime.datetime(2026, 8, 1, 0, 0, tzinfo=BERLIN)) is None


def test_past_both_caps_the_monthly_one_says_how_long_to_wait(book: Ledger):
    spend(book, "curl", 50.0, MORNING)
    refusal = Budget.from_options(["1"], ["20"], True).check(book, "curl", AFTERNOON)
    assert refusal is not None and "monthly budget" in refusal.error.message


def test_a_per_app_cap_refuses_that_app_and_not_another(book: Ledger):
    budget = Budget.from_options(["notes=1", "agent=100"], [], True)
    spend(book, "notes", 1.5, MORNING)
    spend(book, "agent", 1.5, MORNING)
    refusal = budget.check(book, "notes", AFTERNOON)
    assert refusal is not None
    assert refusal.error.message.startswith("claude-bridge's daily budget for notes is spent: $1.50 of $1.00 today.")
    assert "--set bridge_budget_daily=notes=USD" in refusal.error.message
    assert budget.check(book, "agent", AFTERNOON) is None
    assert budget.check(book, "curl", AFTERNOON) is None  # no cap of its own, none for all apps


def test_a_cap_of_zero_shuts_an_app_out(book: Ledger):
    refusal = Budget.from_options(["curl=0"], [], True).check(book, "curl", MORNING)
    assert refusal is not None and "$0.00 of $0.00" in refusal.error.message


def overage(book: Ledger, *, resets_at: float | None) -> None:
    seen = MORNING.timestamp()
    limits = PlanLimits(
        status="rejected",
        window="five_hour",
        resets_at=None if resets_at is None else int(resets_at),
        overage_status="allowed",
        using_overage=True,
        seen_at=seen,
    )
    book.save_plan_limits(limits)


def test_paid_overage_refuses_until_the_plan_resets_unless_allowed(book: Ledger):
    resets = MORNING + datetime.timedelta(hours=2)
    overage(book, resets_at=resets.timestamp())
    refusal = Budget().check(book, "curl", MORNING)
    assert refusal is not None
    assert (refusal.status, refusal.error.type, refusal.error.code) == (429, "insufficient_quota", "insufficient_quota")
    assert refusal.error.message.startswith("The Claude plan's included usage is spent and the account is now drawing")
    assert "the plan's included usage returns at 2026-07-14 11:00 CEST" in refusal.error.message
    assert "--set bridge_refuse_overage=false" in refusal.error.message
    assert refusal.headers["Retry-After"] == "7200"
    assert Budget(refuse_overage=False).check(book, "curl", MORNING) is None
    assert Budget().check(book, "curl", resets) is None  # reset: the next run's report says what holds now


def test_overage_without_a_reset_time_is_believed_for_an_hour(book: Ledger):
    overage(book, resets_at=None)
    refusal = Budget().check(book, "curl", MORNING + datetime.timedelta(minutes=59))
    assert refusal is not None and "did not say when" in refusal.error.message
    assert Budget().check(book, "curl", MORNING + datetime.timedelta(hours=1)) is None


@pytest.mark.parametrize("state", [None, PlanLimits(status="rejected", resets_at=2000000000, seen_at=0)])
def test_no_overage_in_the_state_refuses_nothing(book: Ledger, state: PlanLimits | None):
    if state is not None:
        book.save_plan_limits(state)  # rejected without overage: the CLI's own 429 answers that, not a budget
    assert Budget().check(book, "curl", MORNING) is None


def test_overage_is_checked_before_caps(book: Ledger):
    overage(book, resets_at=(MORNING + datetime.timedelta(hours=1)).timestamp())
    spend(book, "curl", 5.0, MORNING)
    refusal = Budget.from_options(["1"], [], True).check(book, "curl", MORNING)
    assert refusal is not None and "paid overage" in refusal.error.message
