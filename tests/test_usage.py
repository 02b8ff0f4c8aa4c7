"""`claude-bridge usage` over a ledger filled with known rows: the table, --json, and a ledger it cannot read."""

from __future__ import annotations

import datetime
import json
import sqlite3
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from claude_bridge import ledger, usage
from claude_bridge.claude.events import Usage
from claude_bridge.ledger import Entry, Ledger
from claude_bridge.planlimits import PlanLimits
from claude_bridge.report import TurnReport

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime.datetime(2026, 7, 14, 16, 0, tzinfo=BERLIN)
PLAN = PlanLimits(
    status="allowed_warning",
    window="five_hour",
    utilization=0.82,
    resets_at=int(datetime.datetime(2026, 7, 14, 18, 0, tzinfo=BERLIN).timestamp()),
    overage_status="allowed",
    seen_at=datetime.datetime(2026, 7, 14, 15, 58, tzinfo=BERLIN).timestamp(),
)


def row(app: str, cost: float, at: datetime.datetime, **tokens: int) -> Entry:
    done = TurnReport(claude_model="claude-sonnet-4-5", usage=Usage(**tokens), cost_usd=cost)
    done.finish("end_turn")
    return Entry.of(done, app=app, endpoint="/v1/chat/completions", model="gpt-4o", status=200, stream=True, at=at)


@pytest.fixture
def confdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TZ", "Europe/Berlin")  # the plan's times are shown in the machine's zone
    book = Ledger(tmp_path / ledger.FILENAME, now=NOW)
    python = {"input_tokens": 1200, "cache_read_input_tokens": 9000, "cache_creation_input_tokens": 300}
    book.record(row("OpenAI/Python", 1.2345, NOW.replace(hour=9), output_tokens=800, **python))
    book.record(row("OpenAI/Python", 0.5, NOW.replace(hour=10), output_tokens=200, **python))
    book.record(row("curl", 0.004, NOW.replace(hour=11), input_tokens=40, output_tokens=12))
    book.record(row("agent", 12.0, NOW.replace(day=3), input_tokens=100000, output_tokens=20000))
    book.record(row("agent", 99.0, NOW.replace(month=6)))  # last month: in neither block
    book.save_plan_limits(PLAN)
    book.close()
    return tmp_path


def test_the_table_shows_today_and_this_month_per_app_and_in_all(confdir: Path, capsys: pytest.CaptureFixture[str]):
    assert usage.main(["--confdir", str(confdir)], now=NOW) == 0
    assert capsys.readouterr().out == (
        "Today, 2026-07-14\n"
        "APP            REQUESTS  TOKENS IN  CACHE READ  TOKENS OUT   COST\n"
        "OpenAI/Python         2     21,000         86%       1,000  $1.73\n"
        "curl                  1         40          0%          12  $0.00\n"
        "all                   3     21,040         86%       1,012  $1.74\n"
        "\n"
        "This month, 2026-07\n"
        "APP            REQUESTS  TOKENS IN  CACHE READ  TOKENS OUT    COST\n"
        "agent                 1    100,000          0%      20,000  $12.00\n"
        "OpenAI/Python         2     21,000         86%       1,000   $1.73\n"
        "curl                  1         40          0%          12   $0.00\n"
        "all                   4    121,040         15%      21,012  $13.74\n"
        "\n"
        "Plan limits: allowed_warning, five_hour window 82% used, resets 16:00 UTC; overage allowed "
        "(as of 2026-07-14 13:58 UTC)\n"
        "\n"
        f"(ledger: {confdir / ledger.FILENAME})\n"
    )


def test_json_gives_scripts_the_same_numbers(confdir: Path, capsys: pytest.CaptureFixture[str]):
    assert usage.main(["--confdir", str(confdir), "--json"], now=NOW) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["today"]["period"], report["month"]["period"]) == ("2026-07-14", "2026-07")
    assert [app["app"] for app in report["month"]["apps"]] == ["agent", "OpenAI/Python", "curl"]
    python = report["today"]["apps"][0]
    assert python == {
        "app": "OpenAI/Python",
        "requests": 2,
        "input_tokens": 2400,
        "output_tokens": 1000,
        "cache_read_tokens": 18000,
        "cache_write_tokens": 600,
        "cost_usd": 1.7345,
        "cache_read_share": 18000 / 21000,
    }
    assert report["month"]["all"]["cost_usd"] == pytest.approx(13.7385)
    assert report["month"]["all"]["requests"] == 4
    assert report["plan_limits"] == PLAN.as_health()


def test_a_missing_ledger_is_an_empty_report_and_stays_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert usage.main(["--confdir", str(tmp_path)], now=NOW) == 0
    out = capsys.readouterr().out
    assert "Today, 2026-07-14\n  no requests" in out
    assert "Plan limits: not seen yet" in out
    assert not (tmp_path / ledger.FILENAME).exists()


def test_a_ledger_it_cannot_read_is_an_error_saying_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    with sqlite3.connect(tmp_path / ledger.FILENAME) as db:
        db.execute(f"PRAGMA user_version = {ledger.SCHEMA_VERSION + 1}")
    assert usage.main(["--confdir", str(tmp_path)], now=NOW) == 1
    assert "written by a newer claude-bridge" in capsys.readouterr().err


def test_reading_prunes_nothing(confdir: Path):
    usage.main(["--confdir", str(confdir)], now=NOW + datetime.timedelta(days=1000))
    book = Ledger(confdir / ledger.FILENAME, keep_days=None)
    try:
        assert len(book.entries()) == 5
    finally:
        book.close()


def test_titles_are_bold_on_a_terminal_only_and_overage_is_said():
    report = usage.read(Path("/nonexistent") / ledger.FILENAME, NOW)
    assert "\033[1mToday" in usage.render(report, bold=True)
    assert "\033" not in usage.render(report, bold=False)
    overage = PLAN.model_copy(update={"status": "rejected", "using_overage": True})
    assert "; drawing on paid overage" in usage.plan_text(overage.as_health())
    assert "requests are billed as paid overage" in usage.render({**report, "plan_limits": overage.as_health()})
    assert "paid overage" not in usage.render({**report, "plan_limits": PLAN.as_health()})
