"""`claude-bridge usage`: today's and this month's spend per app and in all, and where the plan's limits stand.

Read from the ledger the bridge writes (CONFDIR/claude-bridge.sqlite), while it runs or not; nothing is pruned or
created here. A table for a person, `--json` for scripts.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import periods
from .ledger import FILENAME, Ledger, LedgerError, Totals

ALL = "all"
_COLUMNS = ("APP", "REQUESTS", "TOKENS IN", "CACHE READ", "TOKENS OUT", "COST")


def main(argv: list[str], now: datetime.datetime | None = None) -> int:
    """`now` (aware) for tests; the bridge's dispatcher passes only argv."""
    args = _parser().parse_args(argv)
    path = args.confdir.expanduser() / FILENAME
    try:
        report = read(path, now or periods.now())
    except LedgerError as e:
        print(f"claude-bridge usage: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render(report, bold=sys.stdout.isatty() and not os.environ.get("NO_COLOR")))
    return 0


def _parser() -> argparse.ArgumentParser:
    from .launch import DEFAULT_CONFDIR  # the launcher's default, read only when no --confdir is given

    p = argparse.ArgumentParser(
        prog="claude-bridge usage",
        description="Today's and this month's spend per app and in all, tokens, and the plan's limits.",
    )
    p.add_argument("--confdir", type=Path, default=DEFAULT_CONFDIR, help="as the bridge's (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON for scripts instead of the table")
    return p


def read(path: Path, now: datetime.datetime) -> dict[str, Any]:
    """The report as plain data (what --json prints): the day's and the month's totals, and the plan's state."""
    if not path.exists():  # no request bridged yet: an empty report, no file made
        today, month, plan = [], [], None
    else:
        ledger = Ledger(path, keep_days=None, now=now)
        try:
            today, month = ledger.totals(periods.day(now)), ledger.totals(periods.month(now))
            plan = ledger.plan_limits()
        finally:
            ledger.close()
    return {
        "ledger": str(path),
        "at": now.isoformat(timespec="seconds"),
        "today": _period(periods.day(now), today),
        "month": _period(periods.month(now), month),
        "plan_limits": plan.as_health() if plan else None,
    }


def _period(key: str, apps: list[Totals]) -> dict[str, Any]:
    return {"period": key, "apps": [_totals(app) for app in apps], "all": _totals(Totals.summed(ALL, apps))}


def _totals(totals: Totals) -> dict[str, Any]:
    return {**asdict(totals), "cost_usd": round(totals.cost_usd, 6), "cache_read_share": totals.cache_read_share}


def render(report: dict[str, Any], bold: bool = False) -> str:
    """The table a person reads at a glance: one block per period, the plan's state under them."""
    blocks = [
        _block(f"Today, {report['today']['period']}", report["today"], bold),
        _block(f"This month, {report['month']['period']}", report["month"], bold),
        f"Plan limits: {plan_text(report['plan_limits'])}" + _overage_warning(report["plan_limits"]),
        f"(ledger: {report['ledger']})",
    ]
    return "\n\n".join(blocks)


def _block(title: str, period: dict[str, Any], bold: bool) -> str:
    heading = f"\033[1m{title}\033[0m" if bold else title
    if not period["apps"]:
        return f"{heading}\n  no requests"
    rows = [_COLUMNS, *(_row(app) for app in period["apps"]), _row(period["all"])]
    widths = [max(len(row[column]) for row in rows) for column in range(len(_COLUMNS))]
    return "\n".join([heading, *(_line(row, widths) for row in rows)])


def _line(row: tuple[str, ...], widths: list[int]) -> str:
    """The app's name to the left, numbers to the right, so digits line up."""
    cells = [
        cell.ljust(width) if column == 0 else cell.rjust(width)
        for column, (cell, width) in enumerate(zip(row, widths, strict=True))
    ]
    return "  ".join(cells)


def _row(totals: dict[str, Any]) -> tuple[str, ...]:
    share = totals["cache_read_share"]
    return (
        totals["app"],
        f"{totals['requests']:,}",
        f"{totals['input_tokens'] + totals['cache_read_tokens'] + totals['cache_write_tokens']:,}",
        "-" if share is None else f"{share:.0%}",
        f"{totals['output_tokens']:,}",
        f"${totals['cost_usd']:,.2f}",
    )


def _overage_warning(state: dict[str, Any] | None) -> str:
    if not state or not state["using_overage"]:
        return ""
    return (
        "\nThe plan's included usage is spent: requests are billed as paid overage (at API prices). With "
        "bridge_refuse_overage on (the default) the bridge refuses new requests until the plan resets."
    )


def plan_text(state: dict[str, Any] | None) -> str:
    """The stored plan-limit state as the bridge's log says it, and when it was seen (in UTC, as the log's times)."""
    if not state:
        return "not seen yet (the CLI reports them when they change)"
    seen = datetime.datetime.fromtimestamp(state["seen_at"], datetime.UTC)
    return f"{state['text'].removeprefix('plan limits: ')} (as of {seen:%Y-%m-%d %H:%M} UTC)"
