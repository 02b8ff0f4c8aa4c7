"""The spend ledger: one row per bridged request (app, models, outcome, tokens, cost, timings) in SQLite in the confdir.

It survives restarts, keeps `keep_days` of history, and answers "what did this app spend today / this month" with a
point lookup: each write also adds to a per-period, per-app running total in the same transaction, so a budget check
before every request never sums a month of rows.

Writes go through one thread of the ledger's own (`add`): a write is ~20 us, but now and then it checkpoints the WAL
into the database file and fsyncs it (96 ms measured here), which on the event loop would stall every flow. Reads
(budget checks, totals) use a second connection on the caller's thread: WAL lets them run while the writer writes.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from . import periods
from .planlimits import PlanLimits
from .report import TurnReport

logger = logging.getLogger(__name__)

FILENAME = "claude-bridge.sqlite"
DEFAULT_KEEP_DAYS = 400
SCHEMA_VERSION = 1
_DETAIL_LENGTH = 200  # an error's text, bounded: the ledger is for spend, the log has the rest
_PRUNE_EVERY = 24 * 3600

_SCHEMA = """
CREATE TABLE requests (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    day TEXT NOT NULL,
    month TEXT NOT NULL,
    app TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    model TEXT,
    claude_model TEXT,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL,
    status INTEGER,
    stream INTEGER NOT NULL,
    served TEXT,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cache_read_tokens INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    first_token_ms INTEGER,
    total_ms INTEGER
);
CREATE INDEX requests_at ON requests (at);
CREATE TABLE totals (
    period TEXT NOT NULL,
    app TEXT NOT NULL,
    requests INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cache_read_tokens INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    PRIMARY KEY (period, app)
) WITHOUT ROWID;
CREATE TABLE plan_limits (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seen_at REAL NOT NULL,
    state TEXT NOT NULL
);
"""


class LedgerError(Exception):
    """The ledger file cannot be used as it is (made by a newer claude-bridge, or not a database)."""


@dataclass(frozen=True)
class Entry:
    """One bridged request, as a row of `requests` (the column order is the field order)."""

    at: float  # epoch seconds
    day: str
    month: str
    app: str
    endpoint: str
    model: str | None
    claude_model: str | None
    outcome: str
    detail: str
    status: int | None
    stream: bool
    served: str | None
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cost_usd: float
    first_token_ms: int | None
    total_ms: int | None

    @classmethod
    def of(
        cls,
        report: TurnReport,
        *,
        app: str,
        endpoint: str,
        model: str | None,
        status: int | None,
        stream: bool,
        at: datetime.datetime,
    ) -> Entry:
        """The row for a finished request: `at` is when it ended, in the user's zone (it picks the day and month)."""
        timed = report.record()  # the same times as the log line's and the mitmweb comment's
        usage = report.usage
        return cls(
            at=at.timestamp(),
            day=periods.day(at),
            month=periods.month(at),
            app=app,
            endpoint=endpoint,
            model=model,
            claude_model=report.claude_model,
            outcome=report.outcome.name.lower(),
            detail=report.detail[:_DETAIL_LENGTH],
            status=status,
            stream=stream,
            served=report.served,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_input_tokens,
            cache_write_tokens=usage.cache_creation_input_tokens,
            cost_usd=report.cost_usd,
            first_token_ms=timed.first_token_ms,
            total_ms=timed.duration_ms,
        )


@dataclass(frozen=True)
class Totals:
    """What one app (or all, app "") spent in one period."""

    app: str
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0

    @classmethod
    def summed(cls, app: str, totals: Iterable[Totals]) -> Totals:
        """Several apps' totals added up, under the label `app`."""
        counts = [astuple(each)[1:] for each in totals]
        return cls(app, *(sum(column) for column in zip(*counts, strict=True))) if counts else cls(app)

    @property
    def all_input_tokens(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def cache_read_share(self) -> float | None:
        """How much of the input was read from Anthropic's prompt cache (billed at a tenth); None with no input."""
        return self.cache_read_tokens / self.all_input_tokens if self.all_input_tokens else None


_ENTRY_COLUMNS = ", ".join(field.name for field in fields(Entry))
_TOTAL_COLUMNS = [field.name for field in fields(Totals)][1:]
_ADD_TO_TOTALS = f"""
INSERT INTO totals (period, app, {", ".join(_TOTAL_COLUMNS)}) VALUES (?, ?, 1, ?, ?, ?, ?, ?)
ON CONFLICT (period, app) DO UPDATE SET
    requests = requests + 1,
    {", ".join(f"{column} = {column} + excluded.{column}" for column in _TOTAL_COLUMNS[1:])}
"""


class Ledger:
    """The ledger file, open: one connection that writes (under a lock) and one that reads."""

    def __init__(self, path: Path, keep_days: int | None = DEFAULT_KEEP_DAYS, *, now: datetime.datetime | None = None):
        """`keep_days` None keeps every row: a reader such as `claude-bridge usage` must not prune by its own idea of
        the bridge's option."""
        self.path = path
        self.keep_days = keep_days
        self._writer, self._reader = _open(path)
        self._write_lock = threading.Lock()
        # Its thread starts with the first write: readers such as `claude-bridge usage` never start one.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="claude-bridge-ledger")
        self._pruned_at = 0.0
        self.prune(now or periods.now())

    @classmethod
    def in_confdir(cls, confdir: Path, keep_days: int | None = DEFAULT_KEEP_DAYS) -> Ledger:
        return cls(confdir.expanduser() / FILENAME, keep_days)

    def close(self) -> None:
        """Close the file once the rows already handed to `submit` are written."""
        self._executor.shutdown(wait=True)
        self._reader.close()
        self._writer.close()

    def submit(self, entry: Entry) -> Future[None]:
        """`record` on the ledger's writer thread, returning at once: a WAL checkpoint's fsync never stalls the event
        loop. A failed write (a full disk) is logged; the request it records was answered already."""
        return self._executor.submit(self._logging_failure, self.record, entry)

    async def add(self, entry: Entry) -> None:
        """`submit`, awaited."""
        await asyncio.wrap_future(self.submit(entry))

    def _logging_failure(self, write: Callable[..., None], *args: Any) -> None:
        """Run a write on the writer thread; its failure is logged there, before the future's waiters wake."""
        try:
            write(*args)
        except Exception as e:
            logger.error("claude-bridge could not write to its spend ledger %s: %s", self.path, e)
            raise

    def record(self, entry: Entry) -> None:
        """Write the row and add it to its day's and month's totals, in one transaction; prune once a day."""
        totals = (
            entry.input_tokens,
            entry.output_tokens,
            entry.cache_read_tokens,
            entry.cache_write_tokens,
            entry.cost_usd,
        )
        with self._write() as db:
            placeholders = ", ".join("?" * len(fields(Entry)))
            db.execute(f"INSERT INTO requests ({_ENTRY_COLUMNS}) VALUES ({placeholders})", astuple(entry))
            for period in (entry.day, entry.month):
                db.execute(_ADD_TO_TOTALS, (period, entry.app, *totals))
        if entry.at - self._pruned_at >= _PRUNE_EVERY:
            self.prune(datetime.datetime.fromtimestamp(entry.at, periods.local_zone()))

    def prune(self, now: datetime.datetime) -> None:
        """Drop requests older than `keep_days`, and the totals of days and months wholly before them."""
        if self.keep_days is None:
            return
        cutoff = now - datetime.timedelta(days=self.keep_days)
        with self._write() as db:
            db.execute("DELETE FROM requests WHERE at < ?", (cutoff.timestamp(),))
            db.execute(
                "DELETE FROM totals WHERE (length(period) = 10 AND period < ?) OR (length(period) = 7 AND period < ?)",
                (periods.day(cutoff), periods.month(cutoff)),
            )
        self._pruned_at = now.timestamp()

    def totals(self, period: str) -> list[Totals]:
        """Each app's totals for a day (`periods.day`) or a month (`periods.month`), the costliest first."""
        rows = self._reader.execute(
            f"SELECT app, {', '.join(_TOTAL_COLUMNS)} FROM totals WHERE period = ? ORDER BY cost_usd DESC, app",
            (period,),
        )
        return [Totals(*row) for row in rows]

    def spent(self, period: str, app: str | None = None) -> float:
        """What one app, or with None all apps, spent in the period (USD)."""
        if app is None:
            row = self._reader.execute("SELECT total(cost_usd) FROM totals WHERE period = ?", (period,)).fetchone()
        else:
            query = "SELECT total(cost_usd) FROM totals WHERE period = ? AND app = ?"
            row = self._reader.execute(query, (period, app)).fetchone()
        return row[0]

    def entries(self, since: float = 0.0) -> list[Entry]:
        """The requests recorded at or after `since` (epoch seconds), oldest first."""
        rows = self._reader.execute(f"SELECT {_ENTRY_COLUMNS} FROM requests WHERE at >= ? ORDER BY at, id", (since,))
        return [Entry(*row[:10], bool(row[10]), *row[11:]) for row in rows]

    def save_plan_limits(self, limits: PlanLimits) -> None:
        """Keep the latest plan-limit state (as JSON): budgets and `claude-bridge usage` see it after a restart."""
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO plan_limits (id, seen_at, state) VALUES (1, ?, ?)",
                (limits.seen_at, limits.model_dump_json()),
            )

    def submit_plan_limits(self, limits: PlanLimits) -> Future[None]:
        """`save_plan_limits` on the writer thread, returning at once (for a hook on the event loop)."""
        return self._executor.submit(self._logging_failure, self.save_plan_limits, limits)

    def plan_limits(self) -> PlanLimits | None:
        """The latest state saved; None if none was, or a newer bridge saved one this cannot read."""
        row = self._reader.execute("SELECT state FROM plan_limits WHERE id = 1").fetchone()
        try:
            return PlanLimits.model_validate_json(row[0]) if row else None
        except ValidationError:
            return None

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock, self._writer:  # the connection as a context manager: commit, or roll back on error
            yield self._writer


def _open(path: Path) -> tuple[sqlite3.Connection, sqlite3.Connection]:
    """The writing and the reading connection to a private file brought to SCHEMA_VERSION."""
    _create_private(path)
    opened: list[sqlite3.Connection] = []
    try:
        opened.append(_connect(path))
        _migrate(opened[0], path)
        opened.append(_connect(path))
    except BaseException as e:
        for db in opened:
            db.close()
        if isinstance(e, sqlite3.DatabaseError):
            raise LedgerError(f"{path} is not a claude-bridge ledger ({e}); move it away to start a new one.") from e
        raise
    return opened[0], opened[1]


def _create_private(path: Path) -> None:
    """Create the file readable by its owner only before SQLite opens it: its WAL and shm files take its mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))


def _connect(path: Path) -> sqlite3.Connection:
    # Either connection may be used from a thread other than its creator's, one at a time (the writer under its lock).
    db = sqlite3.connect(path, timeout=5.0, check_same_thread=False)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")  # in WAL mode: durable at each checkpoint, never corrupt
    return db


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    """Bring the file to SCHEMA_VERSION; each later version adds its step here, keyed by `PRAGMA user_version`."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise LedgerError(
            f"{path} was written by a newer claude-bridge (ledger version {version}, this one reads "
            f"{SCHEMA_VERSION}): upgrade claude-bridge, or move the file away to start a new ledger."
        )
    if version == 0:
        db.executescript(f"BEGIN; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
