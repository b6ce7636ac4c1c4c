"""Appointments: propose free slots in the owner's working hours, book one.

A booking is a meeting activity on the lead (which stops its follow-up sequences), a meeting task
on the owner's calendar, and an audit entry, in one transaction.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from leadflow.audit.service import record
from leadflow.auth.models import User
from leadflow.auth.principal import Perm, Principal
from leadflow.cadences.models import Appointment, WorkingHoursRow
from leadflow.cadences.service import stop_for_leads
from leadflow.clock import now as clock_now
from leadflow.config import get_settings
from leadflow.core import cadence as core
from leadflow.core.calendar import WorkingHours, free_slots, is_valid_zone
from leadflow.core.engagement import ActivityType
from leadflow.errors import Conflict, Forbidden, InvalidInput, NotFound
from leadflow.events import emit
from leadflow.leads.activities import log_activity
from leadflow.leads.service import get_lead
from leadflow.tasks import service as tasks
from leadflow.tasks.models import Task, TaskKind, TaskStatus


def _parse_hhmm(field: str, value: str) -> time:
    try:
        h, m = value.split(":")
        return time(int(h), int(m))
    except (ValueError, TypeError):
        raise InvalidInput(field, "must be HH:MM") from None


def working_hours(session: Session, user_id: int | None) -> WorkingHours:
    row = session.get(WorkingHoursRow, user_id) if user_id is not None else None
    if row is None:
        return WorkingHours(timezone=get_settings().default_timezone)
    return WorkingHours(
        timezone=row.timezone,
        start=_parse_hhmm("day_start", row.day_start),
        end=_parse_hhmm("day_end", row.day_end),
        workdays=frozenset(row.workdays),
    )


def set_working_hours(
    session: Session,
    actor: Principal,
    user_id: int,
    *,
    timezone: str,
    day_start: str = "09:00",
    day_end: str = "17:00",
    workdays: list[int] | None = None,
) -> WorkingHoursRow:
    if actor.user_id != user_id and not actor.can(Perm.USERS_ADMIN):
        raise Forbidden("only admins set another person's working hours")
    if session.get(User, user_id) is None:
        raise NotFound(f"user {user_id} not found")
    if not is_valid_zone(timezone):
        raise InvalidInput("timezone", f"unknown time zone {timezone!r}")
    start, end = _parse_hhmm("day_start", day_start), _parse_hhmm("day_end", day_end)
    if start >= end:
        raise InvalidInput("day_end", "must be after day_start")
    days = sorted(set(workdays or [1, 2, 3, 4, 5]))
    if not days or any(d not in range(1, 8) for d in days):
        raise InvalidInput("workdays", "ISO weekdays 1 (Monday) to 7 (Sunday), at least one")
    row = session.get(WorkingHoursRow, user_id)
    before = None
    if row is None:
        row = WorkingHoursRow(user_id=user_id)
        session.add(row)
    else:
        before = {
            "timezone": row.timezone,
            "day_start": row.day_start,
            "day_end": row.day_end,
            "workdays": row.workdays,
        }
    row.timezone, row.day_start, row.day_end, row.workdays = (
        timezone,
        start.strftime("%H:%M"),
        end.strftime("%H:%M"),
        days,
    )
    record(
        session,
        actor,
        "user",
        user_id,
        "working_hours",
        before=before,
        after={"timezone": timezone, "day_start": row.day_start, "day_end": row.day_end, "workdays": days},
    )
    return row


def _busy(session: Session, owner_id: int, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """The owner's booked appointments and open meeting tasks; other open tasks with a due time
    hold 15 minutes (a call is not a meeting, but the rep is busy then)."""

    out: list[tuple[datetime, datetime]] = []
    for a0, a1 in session.execute(
        select(Appointment.starts_at, Appointment.ends_at).where(
            Appointment.owner_id == owner_id,
            Appointment.status == "booked",
            Appointment.ends_at > start,
            Appointment.starts_at < end,
        )
    ):
        out.append((a0, a1))
    rows = session.execute(
        select(Task.due_at, Task.duration_minutes, Task.kind).where(
            Task.owner_id == owner_id,
            Task.status == TaskStatus.OPEN.value,
            Task.due_at.is_not(None),
            Task.due_at > start - timedelta(days=1),
            Task.due_at < end,
        )
    )
    for due, minutes, kind in rows:
        if due is None:
            continue
        length = minutes or (30 if kind == TaskKind.MEETING.value else 15)
        out.append((due, due + timedelta(minutes=length)))
    return out


def propose_slots(
    session: Session,
    actor: Principal,
    lead_id: int,
    *,
    owner_id: int | None = None,
    count: int = 3,
    duration_minutes: int = 30,
    horizon_days: int = 10,
    now: datetime | None = None,
) -> tuple[int, list[tuple[datetime, datetime]]]:
    """Up to ``count`` free slots for the meeting, one per day where possible (giving the lead a
    real choice); returns (owner_id, slots)."""

    actor.require(Perm.LEADS_READ)
    lead = get_lead(session, actor, lead_id)
    owner = owner_id or lead.owner_id or actor.user_id
    if owner is None:
        raise InvalidInput("owner_id", "the lead has no owner: say whose calendar to use")
    if session.get(User, owner) is None:
        raise InvalidInput("owner_id", f"no user with id {owner}")
    if not 1 <= count <= 20:
        raise InvalidInput("count", "must be between 1 and 20")
    if not 10 <= duration_minutes <= 480:
        raise InvalidInput("duration_minutes", "must be between 10 and 480")
    if not 1 <= horizon_days <= 60:
        raise InvalidInput("horizon_days", "must be between 1 and 60")
    at = now or clock_now()
    hours = working_hours(session, owner)
    busy = _busy(session, owner, at, at + timedelta(days=horizon_days + 1))
    duration = timedelta(minutes=duration_minutes)
    slots = free_slots(
        at, hours, busy, count=count, duration=duration, horizon_days=horizon_days, one_per_day=True
    )
    if len(slots) < count:  # fewer working days than slots asked for: fill in within days
        more = free_slots(
            at, hours, busy + slots, count=count - len(slots), duration=duration, horizon_days=horizon_days
        )
        slots = sorted(slots + more)
    return owner, slots


def book(
    session: Session,
    actor: Principal,
    lead_id: int,
    starts_at: datetime,
    *,
    duration_minutes: int = 30,
    owner_id: int | None = None,
    title: str | None = None,
    location: str | None = None,
) -> Appointment:
    actor.require(Perm.ACTIVITIES_WRITE)
    lead = get_lead(session, actor, lead_id)
    if starts_at.tzinfo is None:
        raise InvalidInput("starts_at", "must include a time zone offset")
    if not 10 <= duration_minutes <= 480:
        raise InvalidInput("duration_minutes", "must be between 10 and 480")
    now = clock_now()
    if starts_at <= now:
        raise InvalidInput("starts_at", "must be in the future")
    owner = owner_id or lead.owner_id or actor.user_id
    if owner is not None and session.get(User, owner) is None:
        raise InvalidInput("owner_id", f"no user with id {owner}")
    ends_at = starts_at + timedelta(minutes=duration_minutes)
    if owner is not None:
        clash = session.scalar(
            select(Appointment.id).where(
                Appointment.owner_id == owner,
                Appointment.status == "booked",
                Appointment.starts_at < ends_at,
                Appointment.ends_at > starts_at,
            )
        )
        if clash is not None:
            raise Conflict(f"the owner already has appointment {clash} at that time", field="starts_at")
    name = " ".join(p for p in (lead.first_name, lead.last_name) if p) or lead.email or f"lead {lead.id}"
    clean_title = (title or f"Meeting with {name}").strip()[:300]
    task = tasks.create_task(
        session,
        actor,
        lead_id=lead.id,
        kind=TaskKind.MEETING,
        title=clean_title,
        due_at=starts_at,
        owner_id=owner,
        duration_minutes=duration_minutes,
        assign_default=False,
        source="appointment",
    )
    activity = log_activity(
        session,
        actor,
        lead.id,
        ActivityType.MEETING,
        occurred_at=now,
        properties={"booked": True, "starts_at": starts_at.isoformat(), "duration_minutes": duration_minutes},
    )
    appt = Appointment(
        lead_id=lead.id,
        owner_id=owner,
        starts_at=starts_at,
        ends_at=ends_at,
        title=clean_title,
        location=(location or "").strip()[:500] or None,
        status="booked",
        activity_id=activity.id,
        task_id=task.id,
        created_by=actor.user_id,
        created_at=now,
    )
    session.add(appt)
    session.flush()
    record(
        session,
        actor,
        "lead",
        lead.id,
        "appointment_booked",
        after={"appointment_id": appt.id, "starts_at": starts_at.isoformat(), "owner_id": owner},
    )
    # A booked meeting is the stop rule's event: stop now, in this transaction.
    stop_for_leads(session, actor, [lead.id], core.StopReason.MEETING_BOOKED, f"appointment {appt.id}")
    emit(
        session,
        "appointment.booked",
        appointment_id=appt.id,
        lead_id=lead.id,
        owner_id=owner,
        starts_at=starts_at,
    )
    return appt


def cancel(
    session: Session, actor: Principal, appointment_id: int, *, reason: str | None = None
) -> Appointment:
    actor.require(Perm.ACTIVITIES_WRITE)
    appt = session.get(Appointment, appointment_id, with_for_update=True)
    if appt is None:
        raise NotFound(f"appointment {appointment_id} not found")
    get_lead(session, actor, appt.lead_id)
    if appt.status != "booked":
        raise InvalidInput("status", f"appointment {appointment_id} is already {appt.status}")
    appt.status = "cancelled"
    if appt.task_id is not None:
        task = session.get(Task, appt.task_id)
        if task is not None and task.status == TaskStatus.OPEN.value:
            tasks.cancel_task(session, actor, task.id, reason=reason or "appointment cancelled")
    record(
        session,
        actor,
        "lead",
        appt.lead_id,
        "appointment_cancelled",
        after={"appointment_id": appt.id},
        reason=reason,
    )
    return appt


def list_appointments(
    session: Session,
    actor: Principal,
    *,
    lead_id: int | None = None,
    owner_id: int | None = None,
    limit: int = 100,
) -> list[Appointment]:
    actor.require(Perm.LEADS_READ)
    stmt = select(Appointment)
    if lead_id is not None:
        get_lead(session, actor, lead_id)
        stmt = stmt.where(Appointment.lead_id == lead_id)
    if owner_id is not None:
        stmt = stmt.where(Appointment.owner_id == owner_id)
    if lead_id is None:
        from leadflow.leads.models import Lead
        from leadflow.leads.service import visibility_clause

        vis = visibility_clause(session, actor)
        if vis is not None:
            stmt = stmt.where(Appointment.lead_id.in_(select(Lead.id).where(vis)))
    return list(session.scalars(stmt.order_by(Appointment.starts_at).limit(min(max(limit, 1), 1000))))
