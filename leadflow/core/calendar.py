"""Business days, working hours and free meeting slots, in a person's own time zone (pure).

Every function takes and returns timezone-aware datetimes; local arithmetic happens in the given
IANA zone (zoneinfo), so "two business days later at 9:00" means 9:00 on the lead's wall clock,
across daylight-saving changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@dataclass(frozen=True)
class WorkingHours:
    """When a person works: local start/end times on the given ISO weekdays (1 = Monday)."""

    timezone: str = "UTC"
    start: time = time(9, 0)
    end: time = time(17, 0)
    workdays: frozenset[int] = frozenset({1, 2, 3, 4, 5})

    @property
    def zone(self) -> ZoneInfo:
        return zone(self.timezone)


def zone(name: str | None) -> ZoneInfo:
    """The named zone; an unknown or empty name falls back to UTC."""

    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def is_valid_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _is_workday(d: date, hours: WorkingHours) -> bool:
    return d.isoweekday() in hours.workdays


def next_working_time(when: datetime, hours: WorkingHours) -> datetime:
    """``when`` itself if it falls inside working hours, else the start of the next working
    period (same day if before the start, else the next workday)."""

    tz = hours.zone
    local = when.astimezone(tz)
    d = local.date()
    for _ in range(15):  # at most two weeks of non-working days
        if _is_workday(d, hours):
            start = datetime.combine(d, hours.start, tz)
            end = datetime.combine(d, hours.end, tz)
            if local < start:
                return start.astimezone(UTC)
            if local < end:
                return local.astimezone(UTC)
        d += timedelta(days=1)
        local = datetime.combine(d, time(0, 0), tz)
    raise ValueError("working hours define no working day")


def add_business_days(when: datetime, days: int, hours: WorkingHours) -> datetime:
    """``days`` working days after ``when`` at the same local time of day, moved into working
    hours. Zero days only moves ``when`` into working hours."""

    if days < 0:
        raise ValueError("days must not be negative")
    tz = hours.zone
    local = when.astimezone(tz)
    d = local.date()
    remaining = days
    while remaining > 0:
        d += timedelta(days=1)
        if _is_workday(d, hours):
            remaining -= 1
    moved = datetime.combine(d, local.timetz().replace(tzinfo=None), tz)
    return next_working_time(moved, hours)


def local_day_bounds(day: date, tz_name: str | None) -> tuple[datetime, datetime]:
    """[start, end) of a local calendar day, in UTC."""

    tz = zone(tz_name)
    start = datetime.combine(day, time(0, 0), tz)
    end = datetime.combine(day + timedelta(days=1), time(0, 0), tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def free_slots(
    now: datetime,
    hours: WorkingHours,
    busy: Iterable[tuple[datetime, datetime]],
    *,
    count: int = 3,
    duration: timedelta = timedelta(minutes=30),
    step: timedelta = timedelta(minutes=30),
    horizon_days: int = 10,
    earliest: timedelta = timedelta(hours=2),
    one_per_day: bool = False,
) -> list[tuple[datetime, datetime]]:
    """Up to ``count`` free slots of ``duration`` inside working hours, starting no sooner than
    ``earliest`` from now, on a ``step`` grid, overlapping none of the ``busy`` intervals."""

    busy_sorted: Sequence[tuple[datetime, datetime]] = sorted(busy)
    tz = hours.zone
    first = now + earliest
    out: list[tuple[datetime, datetime]] = []
    day = first.astimezone(tz).date()
    for _ in range(horizon_days + 1):
        if _is_workday(day, hours):
            cursor = datetime.combine(day, hours.start, tz).astimezone(UTC)
            day_end = datetime.combine(day, hours.end, tz).astimezone(UTC)
            while cursor + duration <= day_end:
                end = cursor + duration
                if cursor >= first and not any(b0 < end and cursor < b1 for b0, b1 in busy_sorted):
                    out.append((cursor, end))
                    if len(out) >= count:
                        return out
                    if one_per_day:
                        break
                cursor += step
        day += timedelta(days=1)
    return out
