"""Calendar periods in UTC for included allowances: day, ISO week (Monday 00:00) and month."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ledger.core.limits import NS_PER_SECOND

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _to_ns(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86400 + delta.seconds) * NS_PER_SECOND


def period_bounds(now: int, period: str) -> tuple[int, int]:
    """[start, end) in ns of the calendar period containing `now` (ns since the epoch, UTC)."""
    day = _EPOCH + timedelta(seconds=now // NS_PER_SECOND)
    start = day.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        end = start + timedelta(days=1)
    elif period == "week":
        start -= timedelta(days=start.weekday())
        end = start + timedelta(days=7)
    elif period == "month":
        start = start.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    else:
        raise ValueError(f"unknown period {period!r}: use day, week or month")
    return _to_ns(start), _to_ns(end)
