"""Business-hours arithmetic for the handoff SLA: known cases (weekends, holidays, daylight-saving
changes) and properties that must hold for any calendar, zone, start and duration."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow.core.business_hours import BusinessCalendar, CalendarError, calendar_from_dict

NY = "America/New_York"


def at(tz: str, *args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(tz))  # type: ignore[misc]


def test_four_hours_from_friday_afternoon_end_on_monday_morning() -> None:
    cal = BusinessCalendar(timezone=NY)
    due = cal.add(at(NY, 2026, 11, 20, 15, 0), timedelta(hours=4))  # Friday 15:00
    assert due == at(NY, 2026, 11, 23, 11, 0)  # Monday 11:00
    assert cal.between(at(NY, 2026, 11, 20, 15, 0), due) == timedelta(hours=4)


def test_a_start_outside_hours_counts_from_the_next_opening() -> None:
    cal = BusinessCalendar(timezone="Europe/Berlin")
    assert cal.add(at("Europe/Berlin", 2026, 11, 24, 20, 0), timedelta(minutes=30)) == at(
        "Europe/Berlin", 2026, 11, 25, 9, 30
    )
    assert cal.add(at("Europe/Berlin", 2026, 11, 24, 6, 0), timedelta(0)) == at(
        "Europe/Berlin", 2026, 11, 24, 9, 0
    )


def test_public_holidays_and_closed_dates_are_skipped() -> None:
    cal = BusinessCalendar(timezone=NY, holiday_country="US")
    # Thanksgiving 2026 is Thursday 26 November.
    assert cal.add(at(NY, 2026, 11, 25, 16, 0), timedelta(hours=2)) == at(NY, 2026, 11, 27, 10, 0)
    closed = BusinessCalendar(timezone=NY, closed_dates=frozenset({date(2026, 11, 27)}))
    assert closed.add(at(NY, 2026, 11, 26, 16, 0), timedelta(hours=2)) == at(NY, 2026, 11, 30, 10, 0)


def test_daylight_saving_change_keeps_wall_clock_hours() -> None:
    # New York springs forward on Sunday 8 March 2026; a weekend-long clock still opens at 09:00 local.
    cal = BusinessCalendar(timezone=NY, days=frozenset(range(7)))
    due = cal.add(at(NY, 2026, 3, 7, 16, 0), timedelta(hours=2))
    assert due == at(NY, 2026, 3, 8, 10, 0)
    assert due.astimezone(UTC).hour == 14  # EDT is UTC-4 after the change


def test_a_midnight_close_and_a_24_hour_day() -> None:
    cal = calendar_from_dict({"timezone": "UTC", "days": ["mon", "tue"], "start": "00:00", "end": "24:00"})
    assert cal.add(datetime(2026, 11, 23, 23, 0, tzinfo=UTC), timedelta(hours=2)) == datetime(
        2026, 11, 24, 1, 0, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"timezone": "Mars/Base"}, "timezone"),
        ({"days": []}, "days"),
        ({"days": ["funday"]}, "days"),
        ({"start": "18:00", "end": "09:00"}, "end"),
        ({"start": "9am"}, "start"),
        ({"holiday_country": "XX"}, "holiday_country"),
        ({"closed_dates": ["tomorrow"]}, "closed_dates"),
        ({"open": "09:00"}, "open"),
    ],
)
def test_bad_calendars_name_the_field(doc: dict[str, object], field: str) -> None:
    with pytest.raises(CalendarError) as info:
        calendar_from_dict(doc)
    assert info.value.field == field


ZONES = [
    "UTC",
    NY,
    "Europe/Berlin",
    "Asia/Kolkata",
    "Australia/Lord_Howe",  # a 30-minute daylight-saving shift
    "Pacific/Chatham",
    "America/Sao_Paulo",
    "Asia/Tokyo",
]


@st.composite
def calendars(draw: st.DrawFn) -> BusinessCalendar:
    start = draw(st.integers(0, 23 * 60))
    end = draw(st.integers(start + 1, 24 * 60))
    days = draw(st.frozensets(st.integers(0, 6), min_size=1))
    country = draw(st.sampled_from([None, "US", "DE", "JP"]))
    return BusinessCalendar(
        timezone=draw(st.sampled_from(ZONES)), days=days, start=start, end=end, holiday_country=country
    )


instants = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
)
durations = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=20))


@settings(max_examples=150, deadline=None)
@given(calendars(), instants, durations)
def test_adding_then_measuring_gives_the_duration_back(
    cal: BusinessCalendar, start: datetime, d: timedelta
) -> None:
    due = cal.add(start, d)
    assert due >= start
    assert cal.between(start, due) == d


@settings(max_examples=150, deadline=None)
@given(calendars(), instants, durations, durations)
def test_adding_is_monotonic_and_composes(
    cal: BusinessCalendar, start: datetime, a: timedelta, b: timedelta
) -> None:
    first = cal.add(start, a)
    assert cal.add(start, a + b) >= first
    assert cal.add(first, b) == cal.add(start, a + b) or b == timedelta(0)


@settings(max_examples=150, deadline=None)
@given(calendars(), instants, durations)
def test_a_positive_due_time_falls_in_working_hours(
    cal: BusinessCalendar, start: datetime, d: timedelta
) -> None:
    if d <= timedelta(0):
        return
    due = cal.add(start, d)
    just_before = due - timedelta(microseconds=1)
    assert cal.is_open(just_before)
    assert cal.is_working_day(just_before.astimezone(ZoneInfo(cal.timezone)).date())


@settings(max_examples=150, deadline=None)
@given(calendars(), instants, instants, instants)
def test_measuring_is_additive_and_bounded(
    cal: BusinessCalendar, x: datetime, y: datetime, z: datetime
) -> None:
    a, b, c = sorted((x, y, z))
    assert cal.between(a, b) + cal.between(b, c) == cal.between(a, c)
    assert timedelta(0) <= cal.between(a, c) <= c - a
    assert cal.between(c, a) == timedelta(0)
