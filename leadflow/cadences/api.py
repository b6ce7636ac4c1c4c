"""Sequences, enrollments, step review, appointments, working hours, and the public unsubscribe."""

from __future__ import annotations

from html import escape
from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from fastapi.responses import HTMLResponse

from leadflow.auth.deps import DB, Actor
from leadflow.auth.principal import Perm
from leadflow.cadences import appointments as appts
from leadflow.cadences import mail
from leadflow.cadences import service as svc
from leadflow.cadences.schemas import (
    AppointmentIn,
    AppointmentOut,
    EnrollIn,
    EnrollmentDetail,
    EnrollmentOut,
    EnrollmentPage,
    EnrollResult,
    ResolveIn,
    SequenceIn,
    SequenceOut,
    SequenceUpdate,
    SlotsOut,
    StepRunOut,
    StopIn,
    WorkingHoursIn,
    WorkingHoursOut,
)
from leadflow.errors import LeadflowError

router = APIRouter(prefix="/api", tags=["cadences"])
public_router = APIRouter(tags=["cadences"])


@router.get("/sequences", response_model=list[SequenceOut])
def list_sequences(db: DB, actor: Actor) -> Any:
    with db.transaction() as s:
        return [SequenceOut.model_validate(q) for q in svc.list_sequences(s, actor)]


@router.post("/sequences", response_model=SequenceOut, status_code=status.HTTP_201_CREATED)
def create_sequence(body: SequenceIn, db: DB, actor: Actor) -> Any:
    with db.transaction() as s:
        return SequenceOut.model_validate(svc.create_sequence(s, actor, body.model_dump()))


@router.get("/sequences/{key}", response_model=SequenceOut)
def get_sequence(key: str, db: DB, actor: Actor) -> Any:
    actor.require(Perm.LEADS_READ)
    with db.transaction() as s:
        return SequenceOut.model_validate(svc.get_sequence(s, key))


@router.patch("/sequences/{key}", response_model=SequenceOut)
def update_sequence(key: str, body: SequenceUpdate, db: DB, actor: Actor) -> Any:
    with db.transaction() as s:
        return SequenceOut.model_validate(
            svc.update_sequence(s, actor, key, body.model_dump(exclude_unset=True))
        )


@router.post("/sequences/{key}/enrollments", response_model=EnrollResult, summary="Enroll leads")
def enroll(key: str, body: EnrollIn, db: DB, actor: Actor) -> Any:
    enrolled: list[EnrollmentOut] = []
    already: list[int] = []
    errors: list[dict[str, Any]] = []
    with db.transaction() as s:
        svc.get_sequence(s, key)  # 404 for an unknown sequence before touching any lead
        for i, lead_id in enumerate(body.lead_ids):
            try:
                with s.begin_nested():
                    enrollment, created = svc.enroll(s, actor, lead_id, key)
            except LeadflowError as exc:
                errors.append({"index": i, "lead_id": lead_id, "loc": ["lead_ids", i], "msg": exc.message})
                continue
            if created:
                enrolled.append(EnrollmentOut.model_validate(enrollment))
            else:
                already.append(lead_id)
    return {"enrolled": enrolled, "already": already, "errors": errors}


@router.get("/enrollments", response_model=EnrollmentPage)
def list_enrollments(
    db: DB,
    actor: Actor,
    lead_id: int | None = None,
    sequence: str | None = None,
    enrollment_status: Annotated[str | None, Query(alias="status")] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> Any:
    f = svc.EnrollmentFilter(lead_id=lead_id, sequence=sequence, status=enrollment_status)
    with db.transaction() as s:
        page = svc.list_enrollments(s, actor, f, cursor=cursor, limit=limit)
        return {
            "items": [EnrollmentOut.model_validate(e) for e in page.items],
            "next_cursor": page.next_cursor,
        }


@router.get("/enrollments/{enrollment_id}", response_model=EnrollmentDetail)
def get_enrollment(enrollment_id: int, db: DB, actor: Actor) -> Any:
    with db.transaction() as s:
        e = svc.get_enrollment(s, actor, enrollment_id)
        return EnrollmentDetail(**EnrollmentOut.model_validate(e).model_dump(), **svc.enrollment_state(s, e))


@router.post("/enrollments/{enrollment_id}/stop", response_model=EnrollmentOut)
def stop_enrollment(enrollment_id: int, body: StopIn, db: DB, actor: Actor) -> Any:
    with db.transaction() as s:
        return EnrollmentOut.model_validate(svc.stop_enrollment(s, actor, enrollment_id, reason=body.reason))


@router.get("/sequence-steps", response_model=list[StepRunOut], summary="Step runs (e.g. status=review)")
def list_steps(
    db: DB,
    actor: Actor,
    step_status: Annotated[str | None, Query(alias="status")] = None,
    lead_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Any:
    with db.transaction() as s:
        return [
            StepRunOut.model_validate(r)
            for r in svc.list_step_runs(s, actor, status=step_status, lead_id=lead_id, limit=limit)
        ]


@router.post(
    "/sequence-steps/{step_id}/resolve", response_model=StepRunOut, summary="Settle a step held for review"
)
def resolve_step(step_id: int, body: ResolveIn, db: DB, actor: Actor) -> Any:
    with db.transaction() as s:
        return StepRunOut.model_validate(svc.resolve_step(s, actor, step_id, body.action, note=body.note))


@router.get(
    "/leads/{lead_id}/appointment-slots", response_model=SlotsOut, summary="Propose free meeting slots"
)
def slots(
    lead_id: int,
    db: DB,
    actor: Actor,
    count: Annotated[int, Query(ge=1, le=20)] = 3,
    duration_minutes: Annotated[int, Query(ge=10, le=480)] = 30,
    owner_id: int | None = None,
    horizon_days: Annotated[int, Query(ge=1, le=60)] = 10,
) -> Any:
    with db.transaction() as s:
        owner, found = appts.propose_slots(
            s,
            actor,
            lead_id,
            owner_id=owner_id,
            count=count,
            duration_minutes=duration_minutes,
            horizon_days=horizon_days,
        )
        tz = appts.working_hours(s, owner).timezone
    return {"owner_id": owner, "timezone": tz, "slots": [{"starts_at": a, "ends_at": b} for a, b in found]}


@router.post("/appointments", response_model=AppointmentOut, status_code=status.HTTP_201_CREATED)
def book(body: AppointmentIn, db: DB, actor: Actor) -> Any:
    with db.transaction() as s:
        appt = appts.book(
            s,
            actor,
            body.lead_id,
            body.starts_at,
            duration_minutes=body.duration_minutes,
            owner_id=body.owner_id,
            title=body.title,
            location=body.location,
        )
        return AppointmentOut.model_validate(appt)


@router.get("/appointments", response_model=list[AppointmentOut])
def list_appointments(db: DB, actor: Actor, lead_id: int | None = None, owner_id: int | None = None) -> Any:
    with db.transaction() as s:
        return [
            AppointmentOut.model_validate(a)
            for a in appts.list_appointments(s, actor, lead_id=lead_id, owner_id=owner_id)
        ]


@router.post("/appointments/{appointment_id}/cancel", response_model=AppointmentOut)
def cancel_appointment(appointment_id: int, body: StopIn, db: DB, actor: Actor) -> Any:
    with db.transaction() as s:
        return AppointmentOut.model_validate(appts.cancel(s, actor, appointment_id, reason=body.reason))


@router.put("/users/{user_id}/working-hours", response_model=WorkingHoursOut)
def set_working_hours(user_id: int, body: WorkingHoursIn, db: DB, actor: Actor) -> Any:
    with db.transaction() as s:
        row = appts.set_working_hours(s, actor, user_id, **body.model_dump())
        return WorkingHoursOut.model_validate(row)


# ------------------------------------------------------------------------------- public

_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: system-ui, sans-serif; max-width: 32rem; margin: 4rem auto">
<h1>{title}</h1>{body}</body></html>"""


@public_router.get("/unsubscribe/{token}", response_class=HTMLResponse, include_in_schema=True)
def unsubscribe_page(token: str) -> HTMLResponse:
    """A confirmation page: link scanners fetch GET, so only the POST unsubscribes."""

    if mail.read_unsubscribe_token(token) is None:
        return HTMLResponse(
            _PAGE.format(title="Link not valid", body="<p>This link is not valid.</p>"), status_code=404
        )
    form = (
        f'<form method="post" action="/unsubscribe/{escape(token)}">'
        "<p>Stop receiving follow-up emails from us?</p>"
        '<button type="submit">Unsubscribe</button></form>'
    )
    return HTMLResponse(_PAGE.format(title="Unsubscribe", body=form))


@public_router.post("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe(token: str, db: DB) -> HTMLResponse:
    """One click (RFC 8058 List-Unsubscribe-Post) or the page's button: no sign-in needed."""

    lead_id = mail.read_unsubscribe_token(token)
    if lead_id is None:
        return HTMLResponse(
            _PAGE.format(title="Link not valid", body="<p>This link is not valid.</p>"), status_code=404
        )
    with db.transaction() as s:
        svc.unsubscribe(s, lead_id)
    body = "<p>You are unsubscribed. You will not receive further follow-up emails.</p>"
    return HTMLResponse(_PAGE.format(title="Unsubscribed", body=body))
