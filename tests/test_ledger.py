"""The spend ledger on a real SQLite file: rows from run reports, totals per app and period, restarts, retention."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import sqlite3
import threading
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import fake_anthropic
from claude_bridge import ledger, periods
from claude_bridge.claude.events import Usage
from claude_bridge.claude.invocation import ClaudeInvocation, ClaudeSettings
from claude_bridge.claude.runner import ClaudeRunner, Limits
from claude_bridge.ledger import Entry, Ledger, LedgerError, Totals
from claude_bridge.planlimits import PlanLimits
from claude_bridge.report import Outcome, TurnReport
from claude_bridge.translate.turn import TurnEnd, turn
from conftest import Fake
from fake_anthropic import cli_env

BERLIN = ZoneInfo("Europe/Berlin")
NOON = datetime.datetime(2026, 7, 14, 12, 0, tzinfo=BERLIN)


def report(cost: float = 0.25, *, usage: Usage | None = None, ttft: float | None = 0.3, total: float = 1.5):
    done = TurnReport(claude_model="claude-sonnet-4-5", served="warm", usage=usage or Usage(), cost_usd=cost)
    done.first_text = done.started + ttft if ttft is not None else None
    done.finished = done.started + total
    done.finish("end_turn")
    return done


def entry(app: str = "curl", cost: float = 0.25, at: datetime.datetime = NOON, **usage: int) -> Entry:
    return Entry.of(
        report(cost, usage=Usage(**usage)),
        app=app,
        endpoint="/v1/chat/completions",
        model="gpt-4o",
        status=200,
        stream=True,
        at=at,
    )


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / ledger.FILENAME


@pytest.fixture
def book(path: Path):
    opened = Ledger(path, now=NOON)
    yield opened
    opened.close()


def test_a_row_keeps_what_the_run_report_says():
    tokens = Usage(input_tokens=12, output_tokens=34, cache_read_input_tokens=5600, cache_creation_input_tokens=78)
    row = Entry.of(
        report(0.0123, usage=tokens),
        app="OpenAI/Python",
        endpoint="/v1/responses",
        model="gpt-4o-mini",
        status=200,
        stream=False,
        at=NOON,
    )
    assert (row.day, row.month, row.at) == ("2026-07-14", "2026-07", NOON.timestamp())
    assert (row.app, row.endpoint, row.model, row.claude_model) == (
        "OpenAI/Python",
        "/v1/responses",
        "gpt-4o-mini",
        "claude-sonnet-4-5",
    )
    assert (row.outcome, row.detail, row.status, row.stream, row.served) == ("finished", "end_turn", 200, False, "warm")
    assert (row.input_tokens, row.output_tokens, row.cache_read_tokens, row.cache_write_tokens) == (12, 34, 5600, 78)
    assert (row.cost_usd, row.first_token_ms, row.total_ms) == (0.0123, 300, 1500)


def test_a_failed_run_keeps_its_outcome_a_bounded_error_and_no_first_token():
    failed = report(0.0, ttft=None)
    failed.end(Outcome.FAILED, "x" * 5000)
    row = Entry.of(failed, app="curl", endpoint="/v1/completions", model=None, status=502, stream=False, at=NOON)
    assert (row.outcome, row.status, row.first_token_ms) == ("failed", 502, None)
    assert len(row.detail) == 200


def test_the_file_is_private_in_wal_mode_and_versioned(book: Ledger, path: Path):
    book.record(entry())
    for made in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        assert made.stat().st_mode & 0o777 == 0o600, made
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA user_version").fetchone()[0] == ledger.SCHEMA_VERSION


def test_rows_and_plan_limits_survive_a_restart(path: Path):
    first = Ledger(path, now=NOON)
    written = [entry("curl", 0.5), entry("OpenAI/Python", 1.25, input_tokens=10)]
    for row in written:
        first.record(row)
    limits = PlanLimits(status="allowed_warning", window="seven_day", utilization=0.5, seen_at=NOON.timestamp())
    first.submit_plan_limits(limits)
    first.close()  # after the writer thread has saved it
    again = Ledger(path, now=NOON)
    try:
        assert again.entries() == written
        assert again.spent("2026-07-14") == 1.75
        assert again.plan_limits() == limits
    finally:
        again.close()


@pytest.mark.parametrize("stored", ["not json", '["a list"]', '{"using_overage": true}'])
def test_a_plan_state_it_cannot_read_is_none(book: Ledger, path: Path, stored: str):
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO plan_limits (id, seen_at, state) VALUES (1, 0, ?)", (stored,))
    assert book.plan_limits() is None


def test_totals_are_per_app_per_day_and_per_month_costliest_first(book: Ledger):
    yesterday, last_month = NOON - datetime.timedelta(days=1), NOON - datetime.timedelta(days=31)
    book.record(entry("curl", 0.5, input_tokens=100, cache_read_input_tokens=300, output_tokens=7))
    book.record(entry("curl", 0.25, input_tokens=100, cache_creation_input_tokens=100, output_tokens=3))
    book.record(entry("OpenAI/Python", 2.0))
    book.record(entry("OpenAI/Python", 4.0, at=yesterday))
    book.record(entry("OpenAI/Python", 8.0, at=last_month))
    curl = Totals("curl", 2, 200, 10, 300, 100, 0.75)
    assert book.totals("2026-07-14") == [Totals("OpenAI/Python", 1, cost_usd=2.0), curl]
    assert book.totals("2026-07") == [Totals("OpenAI/Python", 2, cost_usd=6.0), curl]
    assert book.totals("2026-06") == [Totals("OpenAI/Python", 1, cost_usd=8.0)]
    assert (book.spent("2026-07-14"), book.spent("2026-07-14", "curl"), book.spent("2026-07", "nobody")) == (
        2.75,
        0.75,
        0.0,
    )
    assert curl.cache_read_share == 0.5  # 300 of 600 input tokens
    assert Totals("idle").cache_read_share is None


def test_the_day_is_the_users_local_day(book: Ledger):
    late = datetime.datetime(2026, 7, 14, 23, 30, tzinfo=BERLIN)  # 21:30 UTC the same day, 2026-07-15 in Tokyo
    book.record(entry(at=late))
    book.record(entry(at=late.astimezone(ZoneInfo("Asia/Tokyo"))))
    assert [row.day for row in book.entries()] == ["2026-07-14", "2026-07-15"]


def test_opening_prunes_rows_and_totals_older_than_the_kept_days(path: Path):
    old = NOON - datetime.timedelta(days=80)  # in April: kept 30 days, its day and its month are wholly past
    first = Ledger(path, keep_days=400, now=NOON)
    first.record(entry("curl", 1.0, at=old))
    first.record(entry("curl", 2.0))
    first.close()
    again = Ledger(path, keep_days=30, now=NOON)
    try:
        assert [row.cost_usd for row in again.entries()] == [2.0]
        assert again.totals(periods.day(old)) == []
        assert again.totals(periods.month(old)) == []
        assert again.spent("2026-07") == 2.0
    finally:
        again.close()


def test_recording_prunes_once_a_day(path: Path):
    book = Ledger(path, keep_days=1, now=NOON)
    try:
        book.record(entry("curl", 1.0, at=NOON))
        book.record(entry("curl", 2.0, at=NOON + datetime.timedelta(hours=12)))  # not a day since the last pruning
        assert len(book.entries()) == 2
        book.record(entry("curl", 4.0, at=NOON + datetime.timedelta(days=2)))
        assert [row.cost_usd for row in book.entries()] == [4.0]
    finally:
        book.close()


def test_a_reader_keeping_every_day_prunes_nothing(path: Path):
    first = Ledger(path, now=NOON)
    first.record(entry(at=NOON - datetime.timedelta(days=1000)))
    first.close()
    # The bridge's keep_days=400 would have dropped it at open; a reader such as `claude-bridge usage` must not.
    reader = Ledger(path, keep_days=None, now=NOON)
    try:
        assert len(reader.entries()) == 1
    finally:
        reader.close()


async def test_add_writes_on_the_ledgers_own_thread_not_the_event_loop(book: Ledger, monkeypatch: pytest.MonkeyPatch):
    writers: list[str] = []
    record = book.record
    monkeypatch.setattr(book, "record", lambda row: (writers.append(threading.current_thread().name), record(row)))
    await asyncio.gather(*(book.add(entry(cost=0.5)) for _ in range(20)))
    assert book.spent("2026-07-14") == 10.0
    assert set(writers) == {writers[0]} and writers[0].startswith("claude-bridge-ledger")


def test_rows_submitted_from_a_hook_are_written_before_close_returns(path: Path):
    book = Ledger(path, now=NOON)
    futures = [book.submit(entry(cost=0.125)) for _ in range(50)]
    book.close()
    assert all(future.done() for future in futures)
    again = Ledger(path, now=NOON)
    try:
        assert again.spent("2026-07-14") == 6.25
    finally:
        again.close()


def test_a_row_that_cannot_be_written_is_logged(book: Ledger, caplog: pytest.LogCaptureFixture):
    broken = dataclasses.replace(entry(), outcome=None)  # NOT NULL in the schema: SQLite refuses the row
    with pytest.raises(sqlite3.IntegrityError):
        book.submit(broken).result()
    assert "could not write to its spend ledger" in caplog.text
    assert "NOT NULL constraint failed: requests.outcome" in caplog.text
    assert book.totals("2026-07-14") == []  # nor added to the totals: one transaction


def test_a_ledger_from_a_newer_bridge_is_refused_not_altered(path: Path):
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {ledger.SCHEMA_VERSION + 1}")
    with pytest.raises(LedgerError, match="written by a newer claude-bridge"):
        Ledger(path, now=NOON)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0


def test_a_file_that_is_no_database_is_refused_with_what_to_do(path: Path):
    path.write_bytes(b"not sqlite at all, " * 100)
    with pytest.raises(LedgerError, match=r"is not a claude-bridge ledger .* move it away"):
        Ledger(path, now=NOON)


def test_local_midnight_and_the_first_of_next_month_follow_the_zones_clock_changes():
    before_spring_forward = datetime.datetime(2026, 3, 28, 22, 0, tzinfo=BERLIN)
    assert periods.next_day(before_spring_forward).isoformat() == "2026-03-29T00:00:00+01:00"
    assert periods.next_day(periods.next_day(before_spring_forward)).isoformat() == "2026-03-30T00:00:00+02:00"
    assert periods.next_month(before_spring_forward).isoformat() == "2026-04-01T00:00:00+02:00"
    new_years_eve = datetime.datetime(2026, 12, 31, 23, 59, tzinfo=BERLIN)
    assert periods.next_month(new_years_eve).isoformat() == "2027-01-01T00:00:00+01:00"
    assert (periods.day(new_years_eve), periods.month(new_years_eve)) == ("2026-12-31", "2026-12")


def test_the_local_zone_follows_tz(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    assert periods.now().utcoffset() == datetime.timedelta(hours=9)
    monkeypatch.setenv("TZ", "not a zone")
    assert periods.now().utcoffset() is not None  # the offset in force, rather than a crash


async def test_a_real_cli_turns_report_becomes_its_row(
    book: Ledger, fake: Fake, claude_bin: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    for name, value in cli_env(tmp_path / "home", fake.url).items():
        monkeypatch.setenv(name, value)
    billed = fake_anthropic.Usage(input_tokens=11, output_tokens=5, cache_read_input_tokens=700)
    fake.enqueue(fake_anthropic.Reply(("Hel", "lo"), usage=billed))
    runner = ClaudeRunner(ClaudeSettings(claude_bin=claude_bin), Limits(pool_size=0, live_sessions=0))
    done = TurnReport()
    invocation = ClaudeInvocation(model="sonnet", prompt=[{"type": "text", "text": "Hi"}])
    try:
        async for item in turn(invocation, runner, done):
            if isinstance(item, TurnEnd):
                done.finish(item.stop_reason)  # as translate/chat.py does after the last chunk
    finally:
        await runner.close()
    book.record(
        Entry.of(done, app="curl", endpoint="/v1/chat/completions", model="gpt-4o", status=200, stream=True, at=NOON)
    )
    [row] = book.entries()
    assert (row.outcome, row.served, row.claude_model) == ("finished", "a new CLI", done.claude_model)
    assert (row.input_tokens, row.output_tokens, row.cache_read_tokens) == (11, 5, 700)
    assert row.cost_usd == done.cost_usd > 0
    assert row.first_token_ms is not None and row.total_ms is not None and row.first_token_ms <= row.total_ms
    assert book.totals("2026-07-14") == [Totals("curl", 1, 11, 5, 700, 0, done.cost_usd)]
