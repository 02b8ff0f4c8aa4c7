"""The plan's limits: the CLI's rate_limit_event parsed (recorded real runs), the bridge's texts and headers, and a
real CLI turn against the fake API carrying each state into its report."""

from __future__ import annotations

import calendar
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from claude_bridge.claude import events
from claude_bridge.claude.invocation import ClaudeInvocation, ClaudeSettings
from claude_bridge.claude.runner import ClaudeRunner, Limits
from claude_bridge.openai.errors import OpenAIError
from claude_bridge.planlimits import PlanLimits, duration
from claude_bridge.report import TurnReport
from claude_bridge.translate.turn import turn
from conftest import Fake, recorded_events
from fake_anthropic import bridge_env
from fake_plan_limits import UnifiedLimits

# 2026-11-27 12:00:00 UTC
NOON = calendar.timegm((2026, 11, 27, 12, 0, 0))


def recorded_info(name: str) -> events.RateLimitInfo:
    (event,) = [event for event in recorded_events(name) if isinstance(event, events.RateLimitEvent)]
    return event.rate_limit_info


def limits(**fields: object) -> PlanLimits:
    return PlanLimits.model_validate({"seen_at": NOON, **fields})


# --- the event, from recorded real runs ---------------------------------------------------


def test_a_warning_carries_the_window_its_utilization_and_threshold() -> None:
    info = recorded_info("rate_limit_allowed_warning")

    assert (info.status, info.rate_limit_type, info.utilization, info.surpassed_threshold) == (
        "allowed_warning",
        "five_hour",
        0.82,
        0.8,
    )
    assert info.unified_windows["five_hour"].status == "allowed_warning"
    assert info.resets_at == info.unified_windows["five_hour"].resets_at


def test_without_a_warning_the_utilization_is_the_deciding_windows() -> None:
    info = recorded_info("rate_limit_allowed")

    assert info.utilization is None
    assert info.window_utilization == 0.25


def test_a_refusal_says_overage_is_not_allowed_and_why() -> None:
    info = recorded_info("rate_limit_rejected")

    assert (info.status, info.overage_status, info.overage_disabled_reason) == (
        "rejected",
        "rejected",
        "out_of_credits",
    )
    assert info.is_using_overage is False


def test_overage_in_use_is_flagged_with_the_overage_periods_end() -> None:
    info = recorded_info("rate_limit_overage")

    assert (info.status, info.overage_status, info.is_using_overage, info.overage_in_use) == (
        "rejected",
        "allowed",
        True,
        True,
    )
    assert info.overage_resets_at is not None and info.overage_resets_at > (info.resets_at or 0)


def test_a_bare_event_and_unknown_fields_parse() -> None:
    line = {"type": "rate_limit_event", "rate_limit_info": {"status": "allowed", "isUsingOverage": False, "new": 1}}

    event = events.parse(json.dumps(line).encode())

    assert isinstance(event, events.RateLimitEvent)
    assert event.rate_limit_info.status == "allowed"
    assert event.rate_limit_info.window_utilization is None


# --- PlanLimits --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "status", "utilization", "using_overage", "refusing"),
    [
        ("rate_limit_allowed", "allowed", 0.25, False, False),
        ("rate_limit_allowed_warning", "allowed_warning", 0.82, False, False),
        ("rate_limit_rejected", "rejected", 1, False, True),
        ("rate_limit_overage", "rejected", 1, True, False),
    ],
)
def test_plan_limits_of_each_recorded_state(
    name: str, status: str, utilization: float, using_overage: bool, refusing: bool
) -> None:
    info = recorded_info(name)

    plan = PlanLimits.of(info, NOON)

    assert (plan.status, plan.window, plan.utilization) == (status, "five_hour", utilization)
    assert (plan.resets_at, plan.overage_resets_at) == (info.resets_at, info.overage_resets_at)
    assert (plan.using_overage, plan.refusing, plan.seen_at) == (using_overage, refusing, NOON)


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        ({"status": "allowed"}, "plan limits: allowed"),
        (
            {"status": "allowed_warning", "window": "five_hour", "utilization": 0.82, "resets_at": NOON + 7200},
            "plan limits: allowed_warning, five_hour window 82% used, resets 14:00 UTC",
        ),
        (
            {"status": "allowed", "window": "seven_day", "resets_at": NOON + 3 * 86400, "overage_status": "allowed"},
            "plan limits: allowed, seven_day window, resets Nov 30 12:00 UTC; overage allowed",
        ),
        (
            {"status": "rejected", "window": "five_hour", "utilization": 1, "resets_at": NOON + 1800,
             "overage_status": "rejected"},
            "plan limits: rejected, five_hour window 100% used, resets 12:30 UTC; overage rejected",
        ),
        (
            {"status": "rejected", "window": "five_hour", "utilization": 1, "resets_at": NOON + 1800,
             "overage_status": "allowed", "overage_resets_at": NOON + 4 * 86400, "using_overage": True},
            "plan limits: rejected, five_hour window 100% used, resets 12:30 UTC; "
            "drawing on paid overage until Dec 1 12:00 UTC",
        ),
    ],
)  # fmt: skip
def test_text_says_the_state_in_one_line(fields: dict[str, object], text: str) -> None:
    assert limits(**fields).text() == text


def test_headers_use_openais_reset_name_and_the_bridges_own_for_the_rest() -> None:
    plan = limits(status="allowed_warning", window="five_hour", utilization=0.82, resets_at=NOON + 3723)

    assert plan.headers(now=NOON) == {
        "x-ratelimit-reset-requests": "1h2m3s",
        "x-claude-ratelimit-status": "allowed_warning",
        "x-claude-ratelimit-window": "five_hour",
        "x-claude-ratelimit-utilization": "0.82",
        "x-claude-ratelimit-reset": str(NOON + 3723),
        "x-claude-ratelimit-using-overage": "false",
        "x-claude-ratelimit-seen-at": str(NOON),
    }


def test_headers_of_overage_in_use() -> None:
    plan = limits(status="rejected", overage_status="allowed", overage_resets_at=NOON + 60, using_overage=True)

    headers = plan.headers(now=NOON)

    assert headers["x-claude-ratelimit-using-overage"] == "true"
    assert headers["x-claude-ratelimit-overage-status"] == "allowed"
    assert headers["x-claude-ratelimit-overage-reset"] == str(NOON + 60)
    assert "x-ratelimit-reset-requests" not in headers  # no window reset known


@pytest.mark.parametrize(
    ("seconds", "text"), [(-5, "0s"), (0, "0s"), (0.2, "1s"), (45, "45s"), (360, "6m0s"), (3723, "1h2m3s")]
)
def test_duration_in_openais_format(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_changed_from_ignores_when_it_was_seen() -> None:
    first = limits(status="allowed", window="five_hour", utilization=0.41)

    assert first.changed_from(None)
    assert not first.model_copy(update={"seen_at": NOON + 60}).changed_from(first)
    assert first.model_copy(update={"utilization": 0.47}).changed_from(first)
    assert first.model_copy(update={"status": "allowed_warning"}).changed_from(first)


def test_json_round_trip_keeps_every_field() -> None:
    plan = PlanLimits.of(recorded_info("rate_limit_overage"), NOON + 0.5)

    text = plan.model_dump_json()

    assert set(json.loads(text)) == {
        "status", "window", "utilization", "resets_at", "overage_status", "overage_resets_at", "using_overage",
        "seen_at",
    }  # fmt: skip
    assert PlanLimits.model_validate_json(text) == plan


def test_as_health_is_the_fields_and_the_text() -> None:
    plan = limits(status="allowed", window="five_hour", utilization=0.25)

    assert plan.as_health() == {**plan.model_dump(), "text": "plan limits: allowed, five_hour window 25% used"}
    json.dumps(plan.as_health())


# --- a real CLI turn against the fake ------------------------------------------------------

HELLO = ClaudeInvocation(model="claude-sonnet-4-5", prompt=[{"type": "text", "text": "hello"}])


@pytest.fixture
def runner(claude_bin: str, fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The bridge's runner in this process, its CLIs pointed at the fake as a user's bridge's would be."""
    for key in [k for k in os.environ if k.startswith(("CLAUDE", "ANTHROPIC"))]:
        monkeypatch.delenv(key)
    for key, value in bridge_env(tmp_path / "home", fake.url).items():
        monkeypatch.setenv(key, value)
    return ClaudeRunner(ClaudeSettings(claude_bin=claude_bin, max_retries=0), Limits(pool_size=0, live_sessions=0))


async def run_turn_into(runner: ClaudeRunner, report: TurnReport) -> None:
    """One turn to its end (or its error), then the runner closed."""
    try:
        async for _ in turn(HELLO, runner, report):
            pass
    finally:
        await runner.close()


async def run_turn(runner: ClaudeRunner) -> TurnReport:
    report = TurnReport()
    await run_turn_into(runner, report)
    return report


@pytest.mark.parametrize(
    ("state", "status", "utilization", "using_overage"),
    [
        (UnifiedLimits.allowed, "allowed", 0.25, False),
        (UnifiedLimits.warning, "allowed_warning", 0.82, False),
        (UnifiedLimits.overage, "rejected", 1, True),
    ],
)
async def test_a_served_turn_reports_the_plans_state(
    runner: ClaudeRunner,
    fake: Fake,
    state: Callable[[float], UnifiedLimits],
    status: str,
    utilization: float,
    using_overage: bool,
) -> None:
    fake.server.plan_limits = sent = state(time.time())
    before = time.time()

    report = await run_turn(runner)

    assert report.finished is not None and report.plan_limits is not None
    plan = report.plan_limits
    assert (plan.status, plan.window, plan.utilization, plan.using_overage) == (
        status,
        "five_hour",
        utilization,
        using_overage,
    )
    assert (plan.resets_at, plan.overage_resets_at) == (sent.resets_at, sent.overage_resets_at)
    assert before <= plan.seen_at <= time.time()


async def test_a_refused_turn_is_a_429_until_the_reset_and_reports_the_refusal(
    runner: ClaudeRunner, fake: Fake
) -> None:
    fake.server.plan_limits = sent = UnifiedLimits.rejected(time.time())
    report = TurnReport()

    with pytest.raises(OpenAIError) as caught:
        await run_turn_into(runner, report)

    assert caught.value.status == 429
    assert 3500 <= int(caught.value.headers["Retry-After"]) <= 3600
    assert report.plan_limits is not None and report.plan_limits.refusing
    assert report.plan_limits.resets_at == sent.resets_at


async def test_a_turn_without_plan_headers_reports_a_bare_allowed(runner: ClaudeRunner) -> None:
    report = await run_turn(runner)

    assert report.plan_limits is not None
    assert report.plan_limits.model_dump(exclude={"seen_at"}) == {
        "status": "allowed", "window": None, "utilization": None, "resets_at": None, "overage_status": None,
        "overage_resets_at": None, "using_overage": False,
    }  # fmt: skip
