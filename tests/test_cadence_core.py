"""Business days, working hours and free slots across time zones (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leadflow.core import cadence as core
from leadflow.core.calendar import WorkingHours, add_business_days, free_slots, next_working_time

BERLIN = WorkingHours(timezone="Europe/Berlin")


def test_business_days_skip_the_weekend_in_the_leads_zone() -> None:
    friday_10_berlin = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)  # 10:00 CET
    due = add_business_days(friday_10_berlin, 2, BERLIN)
    assert due == datetime(2026, 12, 1, 9, 0, tzinfo=UTC)  # Tuesday 10:00 CET


def test_evening_moves_to_next_morning_and_dst_keeps_wall_clock() -> None:
    evening = datetime(2026, 3, 27, 17, 30, tzinfo=UTC)  # Friday 18:30 CET
    assert next_working_time(evening, BERLIN) == datetime(2026, 3, 30, 7, 0, tzinfo=UTC)  # Mon 09:00 CEST


@given(st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 1, 1)), st.integers(0, 30))
def test_business_day_results_are_always_inside_working_hours(start: datetime, days: int) -> None:
    hours = WorkingHours(timezone="America/New_York")
    due = add_business_days(start.replace(tzinfo=UTC), days, hours)
    local = due.astimezone(hours.zone)
    assert local.isoweekday() <= 5
    assert time(9, 0) <= local.time() < time(17, 0)
    assert due >= start.replace(tzinfo=UTC)


def test_free_slots_avoid_busy_time() -> None:
    now = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)  # Monday
    busy = [(datetime(2026, 11, 23, 9, 0, tzinfo=UTC), datetime(2026, 11, 23, 10, 0, tzinfo=UTC))]
    slots = free_slots(now, WorkingHours(), busy, count=2)
    assert slots[0][0] == datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    assert all(not (b0 < s1 and s0 < b1) for s0, s1 in slots for b0, b1 in busy)
    assert slots[1][0] - slots[0][0] == timedelta(minutes=30)


def test_steps_are_validated_with_the_failing_field_named() -> None:
    with pytest.raises(core.StepError) as exc:
        core.parse_steps([{"type": "email", "subject": "Hi {{ lead.first_name", "body": "x"}])
    assert exc.value.loc == [0, "subject"]
    with pytest.raises(core.StepError):
        core.parse_steps([{"type": "wait", "days": 2}])
    steps = core.parse_steps(core.DEFAULT_SEQUENCE["steps"])
    first = core.next_step(steps, None)
    assert first == core.NextStep(0, 0)
    assert core.next_step(steps, 1) == core.NextStep(3, 2)


def test_templates_are_sandboxed() -> None:
    from jinja2.exceptions import SecurityError

    with pytest.raises(SecurityError):
        core.render("{{ lead.__class__.__mro__ }}", {"lead": object()})
