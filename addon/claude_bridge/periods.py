"""The day and the month of the user's own calendar: what spend is counted in, and when a budget starts afresh.

Every function takes the moment as an aware `datetime` and reads the calendar of its time zone, so the bridge passes
`now()` (this machine's zone, with its daylight-saving rules) and tests pass a fixed moment in a zone of their choice.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_LOCALTIME = Path("/etc/localtime")


def local_zone() -> datetime.tzinfo:
    """This machine's zone with its rules; the current fixed offset where no zone database names it (Windows)."""
    name = os.environ.get("TZ", "").removeprefix(":")
    try:
        if name:
            return ZoneInfo(name)
        if _LOCALTIME.exists():
            with _LOCALTIME.open("rb") as zone_file:
                return ZoneInfo.from_file(zone_file, key="localtime")
    except (ZoneInfoNotFoundError, ValueError, OSError):
        pass  # a POSIX rule string in TZ, or an unreadable file: the offset in force now still counts today right
    offset = datetime.datetime.now().astimezone().tzinfo
    assert offset is not None
    return offset


def now() -> datetime.datetime:
    return datetime.datetime.now(local_zone())


def day(moment: datetime.datetime) -> str:
    """The calendar day, as the ledger keys it: 2026-07-14."""
    return moment.date().isoformat()


def month(moment: datetime.datetime) -> str:
    """The calendar month, as the ledger keys it: 2026-07."""
    return moment.strftime("%Y-%m")


def next_day(moment: datetime.datetime) -> datetime.datetime:
    """The midnight that ends the moment's day."""
    return _midnight(moment.date() + datetime.timedelta(days=1), moment)


def next_month(moment: datetime.datetime) -> datetime.datetime:
    """Midnight on the first of the month after the moment's."""
    first = moment.date().replace(day=1)
    return _midnight((first + datetime.timedelta(days=32)).replace(day=1), moment)


def _midnight(date: datetime.date, moment: datetime.datetime) -> datetime.datetime:
    # Built from the date, not by adding hours: a zone's rules then give the right offset across a clock change.
    return datetime.datetime.combine(date, datetime.time(), moment.tzinfo)
