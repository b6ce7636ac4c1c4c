"""Business-hours arithmetic for service levels (pure).

An SLA such as "first touch within 4 business hours" is measured on the lead's own clock: the
working days and hours are wall-clock times in an IANA time zone, public holidays (from the
maintained ``holidays`` package) and extra closed dates are skipped, and daylight-saving changes
are handled by converting each day's opening and closing to UTC with ``zoneinfo``.

All inputs and outputs are timezone-aware datetimes; the arithmetic itself runs in UTC on the
list of open intervals, so it is exact (microseconds) and additive:
``business_time_between(a, add_business_time(a, d)) == d``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holidays_lib

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# A calendar with no open day for this long is a configuration error, not a slow loop.
_MAX_DAYS = 3 * 366


class CalendarError(ValueError):
    """A business-hours definition that cannot be used; ``field`` names the bad part."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CalendarError("timezone", f"unknown time zone {name!r} (use an IANA name)") from None


def parse_clock(value: str, field_name: str) -> int:
    """'09:30' -> minutes after midnight; '24:00' closes at midnight."""

    try:
        hh, mm = str(value).split(":")
        minutes = int(hh) * 60 + int(mm)
        ok = 0 <= int(mm) < 60 and 0 <= minutes <= 24 * 60
    except ValueError:
        ok = False
    if not ok:
        raise CalendarError(field_name, f"{value!r} is not a time of day like '09:00'")
    return minutes


def format_clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@functools.lru_cache(maxsize=256)
def _country_holidays(country: str, subdivision: str | None, year: int) -> frozenset[date]:
    try:
        cal = holidays_lib.country_holidays(country, subdiv=subdivision, years=year)
    except NotImplementedError:
        return frozenset()
    return frozenset(cal.keys())


def holiday_countries() -> frozenset[str]:
    return frozenset(holidays_lib.list_supported_countries())


@dataclass(frozen=True)
class BusinessCalendar:
    """Working days and hours in one time zone."""

    timezone: str = "UTC"
    days: frozenset[int] = frozenset({0, 1, 2, 3, 4})  # Monday = 0
    start: int = 9 * 60  # minutes after local midnight
    end: int = 17 * 60
    holiday_country: str | None = None
    holiday_subdivision: str | None = None
    closed_dates: frozenset[date] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        zone(self.timezone)
        if not self.days:
            raise CalendarError("days", "at least one working day is needed")
        if any(d not in range(7) for d in self.days):
            raise CalendarError("days", "days are 0 (Monday) to 6 (Sunday)")
        if not 0 <= self.start < self.end <= 24 * 60:
            raise CalendarError("end", "the working day must end after it starts (same day)")
        if self.holiday_country is not None and self.holiday_country not in holiday_countries():
            raise CalendarError("holiday_country", f"no public-holiday calendar for {self.holiday_country!r}")

    @property
    def zoneinfo(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def is_working_day(self, day: date) -> bool:
        if day.weekday() not in self.days or day in self.closed_dates:
            return False
        if self.holiday_country:
            return day not in _country_holidays(self.holiday_country, self.holiday_subdivision, day.year)
        return True

    def _interval(self, day: date) -> tuple[datetime, datetime] | None:
        tz = self.zoneinfo
        opens = datetime.combine(day, time(self.start // 60, self.start % 60), tzinfo=tz).astimezone(UTC)
        if self.end == 24 * 60:
            closes = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
        else:
            closes = datetime.combine(day, time(self.end // 60, self.end % 60), tzinfo=tz).astimezone(UTC)
        # A working day inside a daylight-saving gap (e.g. 02:30-03:00 on the spring-forward day)
        # has no real time in it.
        return (opens, closes) if closes > opens else None

    def intervals(self, since: datetime) -> Iterator[tuple[datetime, datetime]]:
        """Open intervals in UTC, in order, from the local day containing ``since`` onwards."""

        day = since.astimezone(self.zoneinfo).date() - timedelta(days=1)
        idle = 0
        while True:
            if self.is_working_day(day):
                iv = self._interval(day)
                if iv is not None:
                    idle = 0
                    yield iv
                    day += timedelta(days=1)
                    continue
            idle += 1
            if idle > _MAX_DAYS:
                raise CalendarError("days", "no working time within three years")
            day += timedelta(days=1)

    def is_open(self, at: datetime) -> bool:
        at = _aware(at)
        for opens, closes in self.intervals(at):
            if opens > at:
                return False
            if opens <= at < closes:
                return True
        return False  # pragma: no cover - intervals() never ends

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The instant ``duration`` of working time after ``start`` (a start outside working
        hours counts from the next opening)."""

        if duration < timedelta(0):
            raise CalendarError("duration", "must not be negative")
        start = _aware(start).astimezone(UTC)
        remaining = duration
        for opens, closes in self.intervals(start):
            if closes <= start:
                continue
            begin = max(start, opens)
            available = closes - begin
            if remaining <= available:
                return begin + remaining
            remaining -= available
        raise AssertionError("unreachable")  # pragma: no cover

    def between(self, a: datetime, b: datetime) -> timedelta:
        """Working time from ``a`` to ``b`` (zero when ``b`` is not after ``a``)."""

        a, b = _aware(a).astimezone(UTC), _aware(b).astimezone(UTC)
        total = timedelta(0)
        if b <= a:
            return total
        for opens, closes in self.intervals(a):
            if opens >= b:
                break
            lo, hi = max(a, opens), min(b, closes)
            if hi > lo:
                total += hi - lo
        return total

    def to_dict(self) -> dict[str, Any]:
        return {
            "timezone": self.timezone,
            "days": [DAY_NAMES[d] for d in sorted(self.days)],
            "start": format_clock(self.start),
            "end": format_clock(self.end),
            "holiday_country": self.holiday_country,
            "holiday_subdivision": self.holiday_subdivision,
            "closed_dates": sorted(d.isoformat() for d in self.closed_dates),
        }


def _aware(at: datetime) -> datetime:
    # Stored datetimes are UTC; a naive one here means UTC, never the machine's local time.
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _days(value: Any) -> frozenset[int]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise CalendarError("days", "must be a list of day names like ['mon', 'tue']")
    out: set[int] = set()
    for item in value:
        key = str(item).strip().lower()[:3]
        if key not in DAY_NAMES:
            raise CalendarError("days", f"{item!r} is not a day name (mon..sun)")
        out.add(DAY_NAMES.index(key))
    return frozenset(out)


def calendar_from_dict(data: Mapping[str, Any], *, timezone: str | None = None) -> BusinessCalendar:
    """Build a calendar from its JSON form; ``timezone`` overrides the document's (the lead's)."""

    known = {"timezone", "days", "start", "end", "holiday_country", "holiday_subdivision", "closed_dates"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise CalendarError(
            unknown[0], f"is not a business-hours setting (known: {', '.join(sorted(known))})"
        )
    closed: set[date] = set()
    for raw in data.get("closed_dates") or []:
        try:
            closed.add(date.fromisoformat(str(raw)))
        except ValueError:
            raise CalendarError("closed_dates", f"{raw!r} is not a date like 2026-12-24") from None
    country = data.get("holiday_country")
    return BusinessCalendar(
        timezone=timezone or str(data.get("timezone") or "UTC"),
        days=_days(data["days"]) if "days" in data else frozenset({0, 1, 2, 3, 4}),
        start=parse_clock(data.get("start", "09:00"), "start"),
        end=parse_clock(data.get("end", "17:00"), "end"),
        holiday_country=str(country).upper() if country else None,
        holiday_subdivision=data.get("holiday_subdivision") or None,
        closed_dates=frozenset(closed),
    )
