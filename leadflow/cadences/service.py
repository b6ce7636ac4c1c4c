"""Sequences: define them, enroll leads, run due steps at most once, stop on the stop rules.

The at-most-once argument (docs/cadences.md): a step run is claimed with one compare-and-set
UPDATE (pending -> running) committed before any email leaves; only the worker whose UPDATE
changed the row sends; a run found `running` after its lease is flagged for review and never
re-sent automatically. The task queue only decides *when* a worker looks; the database decides
*whether* it may send.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from leadflow.audit.service import record, record_many
from leadflow.auth.models import Role, User
from leadflow.auth.principal import Perm, Principal
from leadflow.cadences import mail
from leadflow.cadences.models import Enrollment, Sequence, StepRun
from leadflow.clock import now as clock_now
from leadflow.config import get_settings
from leadflow.core import cadence as core
from leadflow.core import consent
from leadflow.core.calendar import WorkingHours, add_business_days, next_working_time
from leadflow.core.engagement import ActivityType
from leadflow.core.lifecycle import LifecycleError, Stage
from leadflow.db.base import Database
from leadflow.db.pagination import Page, keyset, page_of
from leadflow.errors import Forbidden, InvalidInput, NotFound
from leadflow.events import emit
from leadflow.leads.activities import log_activity
from leadflow.leads.models import Activity, Lead
from leadflow.leads.service import get_lead, get_leads, transition_lead, visibility_clause
from leadflow.tasks import service as tasks
from leadflow.tasks.models import Task, TaskKind, TaskStatus

log = logging.getLogger("leadflow.cadences")

WORKER = Principal(user_id=None, label="sequence worker", role=Role.ADMIN)
# Leads in these stages take no follow-up (as in scoring's follow-up actions).
CLOSED_STAGES = frozenset({Stage.CUSTOMER.value, Stage.UNQUALIFIED.value, Stage.BAD.value})
MANAGERS = frozenset({Role.ADMIN, Role.MARKETING, Role.MANAGER})


def _require_manage(actor: Principal) -> None:
    if actor.role not in MANAGERS:
        raise Forbidden(f"role {actor.role.value} cannot manage sequences", permission="sequences:manage")


def lead_hours(lead: Lead) -> WorkingHours:
    return WorkingHours(timezone=lead.timezone or get_settings().default_timezone)


# ------------------------------------------------------------------------------- sequences


def ensure_default_sequences(session: Session) -> None:
    keys = [d["key"] for d in core.DEFAULT_SEQUENCES]
    present = set(session.scalars(select(Sequence.key).where(Sequence.key.in_(keys))))
    for d in core.DEFAULT_SEQUENCES:
        if d["key"] in present:
            continue
        now = clock_now()
        try:
            with session.begin_nested():
                session.add(
                    Sequence(
                        key=d["key"],
                        name=d["name"],
                        description=d["description"],
                        steps=d["steps"],
                        max_attempts=d["max_attempts"],
                        on_exhausted=d["on_exhausted"],
                        created_at=now,
                        updated_at=now,
                    )
                )
        except IntegrityError:  # another process seeded it first
            pass


def get_sequence(session: Session, key_or_id: str | int) -> Sequence:
    ensure_default_sequences(session)
    if isinstance(key_or_id, int) or str(key_or_id).isdigit():
        seq = session.get(Sequence, int(key_or_id))
    else:
        key = str(key_or_id).strip()
        seq = session.scalar(select(Sequence).where(Sequence.key == key))
        if seq is None:  # the name works too (scoring actions may name a sequence)
            seq = session.scalar(select(Sequence).where(Sequence.name == key).order_by(Sequence.id).limit(1))
    if seq is None:
        raise NotFound(f"sequence {key_or_id} not found")
    return seq


def list_sequences(session: Session, actor: Principal) -> list[Sequence]:
    actor.require(Perm.LEADS_READ)
    ensure_default_sequences(session)
    return list(session.scalars(select(Sequence).order_by(Sequence.id)))


def _validate(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "key" in data:
        key = str(data["key"] or "").strip()
        if not core.KEY_RE.match(key):
            raise InvalidInput("key", "must be 1-60 lowercase letters, digits, '-' or '_'")
        out["key"] = key
    if "name" in data:
        name = str(data["name"] or "").strip()
        if not 1 <= len(name) <= 200:
            raise InvalidInput("name", "must be 1-200 characters")
        out["name"] = name
    if "description" in data:
        out["description"] = data["description"]
    if "steps" in data:
        try:
            steps = core.parse_steps(data["steps"])
        except core.StepError as exc:
            raise InvalidInput(["steps", *exc.loc], exc.message) from None
        out["steps"] = [s.model_dump() for s in steps]
    if "max_attempts" in data:
        n = data["max_attempts"]
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 50:
            raise InvalidInput("max_attempts", "must be an integer between 1 and 50")
        out["max_attempts"] = n
    if "on_exhausted" in data:
        try:
            out["on_exhausted"] = core.Exhausted(data["on_exhausted"]).value
        except ValueError:
            raise InvalidInput("on_exhausted", "must be one of cold, nurture, none") from None
    if "active" in data:
        out["active"] = bool(data["active"])
    return out


def create_sequence(session: Session, actor: Principal, data: dict[str, Any]) -> Sequence:
    _require_manage(actor)
    for required in ("key", "name", "steps"):
        if required not in data:
            raise InvalidInput(required, "is required")
    values = _validate(data)
    if session.scalar(select(Sequence.id).where(Sequence.key == values["key"])) is not None:
        raise InvalidInput("key", f"a sequence with key {values['key']} exists")
    now = clock_now()
    seq = Sequence(**values, created_by=actor.user_id, created_at=now, updated_at=now)
    session.add(seq)
    session.flush()
    record(session, actor, "sequence", seq.id, "create", after=values)
    return seq


def update_sequence(session: Session, actor: Principal, key: str, data: dict[str, Any]) -> Sequence:
    """Change a sequence. Running enrollments follow the new steps from their next step on."""

    _require_manage(actor)
    seq = get_sequence(session, key)
    values = _validate({k: v for k, v in data.items() if k != "key"})
    before = {k: getattr(seq, k) for k in values}
    for k, v in values.items():
        setattr(seq, k, v)
    seq.updated_at = clock_now()
    seq.version += 1
    record(session, actor, "sequence", seq.id, "update", before=before, after=values)
    return seq


def steps_of(seq: Sequence) -> tuple[core.CallStep | core.EmailStep | core.WaitStep, ...]:
    return core.stored_steps(seq.steps)


# ------------------------------------------------------------------------------- enrollment


def enroll(
    session: Session,
    actor: Principal,
    lead_id: int,
    sequence: str | int,
    *,
    source: str = "manual",
    source_key: str | None = None,
) -> tuple[Enrollment, bool]:
    """Enroll a lead; returns (enrollment, created). A lead already active in the sequence keeps
    its enrollment (created is False), so repeated requests are harmless."""

    actor.require(Perm.LEADS_WRITE)
    lead = get_lead(session, actor, lead_id)
    seq = get_sequence(session, sequence)
    if not seq.active:
        raise InvalidInput("sequence", f"sequence {seq.key} is inactive")
    if lead.merged_into_id is not None:
        raise InvalidInput("lead_id", f"lead {lead_id} was merged into lead {lead.merged_into_id}")
    if lead.stage in CLOSED_STAGES:
        raise InvalidInput("lead_id", f"lead {lead_id} is {lead.stage}: it takes no follow-up")
    if lead.unsubscribed:
        raise InvalidInput("lead_id", f"lead {lead_id} unsubscribed")
    if source_key:
        prior = session.scalar(select(Enrollment).where(Enrollment.source_key == source_key))
        if prior is not None:
            return prior, False
    existing = session.scalar(
        select(Enrollment).where(
            Enrollment.lead_id == lead_id, Enrollment.sequence_id == seq.id, Enrollment.status == "active"
        )
    )
    if existing is not None:
        return existing, False
    first = core.next_step(steps_of(seq), None)
    if first is None:
        raise InvalidInput("sequence", f"sequence {seq.key} has no steps")
    now = clock_now()
    enrollment = Enrollment(
        lead_id=lead_id,
        sequence_id=seq.id,
        status="active",
        source=source[:40],
        source_key=source_key,
        enrolled_by=actor.user_id,
        enrolled_at=now,
    )
    try:
        with session.begin_nested():
            session.add(enrollment)
            session.flush()
    except IntegrityError:  # a concurrent request enrolled the lead first
        existing = session.scalar(
            select(Enrollment).where(
                Enrollment.lead_id == lead_id, Enrollment.sequence_id == seq.id, Enrollment.status == "active"
            )
        )
        if existing is None:
            raise
        return existing, False
    _schedule(session, enrollment, lead, first, now)
    record(
        session,
        actor,
        "lead",
        lead_id,
        "sequence_enroll",
        after={"sequence": seq.key, "enrollment_id": enrollment.id, "source": source},
    )
    emit(session, "sequence.enrolled", lead_id=lead_id, sequence=seq.key, enrollment_id=enrollment.id)
    return enrollment, True


@dataclass(frozen=True)
class EnrollRequest:
    lead_id: int
    sequence: str | int
    source: str = "manual"
    source_key: str | None = None


@dataclass(frozen=True)
class EnrollOutcome:
    """What became of one request of :func:`enroll_many`: the enrollment (``created`` when new)
    or, when refused, why (the message :func:`enroll` raises with)."""

    enrollment: Enrollment | None
    created: bool = False
    refused: str | None = None


def enroll_many(session: Session, actor: Principal, requests: list[EnrollRequest]) -> list[EnrollOutcome]:
    """:func:`enroll` for many requests (a batch of threshold crossings), set-based: one query
    for the leads, one per sequence named, one for the earlier requests' source keys and one for
    the active enrollments, the enrollments and their first steps inserted together, one audit
    call; still one audit entry and one ``sequence.enrolled`` per new enrollment. The same
    checks and outcomes as one :func:`enroll` per request in order, except that a refused request
    (a closed, merged or unsubscribed lead, an unknown or inactive sequence) is reported in its
    outcome instead of raised, and the others go on. Other errors (a concurrent enrollment's
    unique violation) fail the whole set: run it in a savepoint and fall back to :func:`enroll`
    one at a time."""

    actor.require(Perm.LEADS_WRITE)
    if not requests:
        return []
    leads_by_id = get_leads(session, actor, [r.lead_id for r in requests])
    sequences: dict[str | int, Sequence | str] = {}  # as named -> the sequence, or why not
    for name in dict.fromkeys(r.sequence for r in requests):
        try:
            seq = get_sequence(session, name)
        except NotFound as exc:
            sequences[name] = exc.message
            continue
        sequences[name] = seq if seq.active else f"sequence {seq.key} is inactive"
    keys = [r.source_key for r in requests if r.source_key]
    by_key: dict[str, Enrollment] = {}
    for start in range(0, len(keys), 2000):
        by_key.update(
            (e.source_key, e)
            for e in session.scalars(
                select(Enrollment).where(Enrollment.source_key.in_(keys[start : start + 2000]))
            )
            if e.source_key
        )
    lead_ids = sorted(leads_by_id)
    active: dict[tuple[int, int], Enrollment] = {}
    seq_ids = [s.id for s in sequences.values() if isinstance(s, Sequence)]
    for start in range(0, len(lead_ids) if seq_ids else 0, 2000):
        for e in session.scalars(
            select(Enrollment).where(
                Enrollment.lead_id.in_(lead_ids[start : start + 2000]),
                Enrollment.sequence_id.in_(seq_ids),
                Enrollment.status == "active",
            )
        ):
            active[(e.lead_id, e.sequence_id)] = e
    now = clock_now()
    out: list[EnrollOutcome] = []
    new: list[tuple[Enrollment, Lead, Sequence, core.NextStep, str]] = []
    for r in requests:
        lead = leads_by_id.get(r.lead_id)
        named = sequences[r.sequence]
        refusal: str | None = None
        if lead is None:
            refusal = f"lead {r.lead_id} not found"
        elif isinstance(named, str):
            refusal = named
        elif lead.merged_into_id is not None:
            refusal = f"lead {r.lead_id} was merged into lead {lead.merged_into_id}"
        elif lead.stage in CLOSED_STAGES:
            refusal = f"lead {r.lead_id} is {lead.stage}: it takes no follow-up"
        elif lead.unsubscribed:
            refusal = f"lead {r.lead_id} unsubscribed"
        if refusal is not None or lead is None or isinstance(named, str):
            out.append(EnrollOutcome(None, refused=refusal))
            continue
        seq = named
        prior = by_key.get(r.source_key) if r.source_key else None
        if prior is None:
            prior = active.get((lead.id, seq.id))
        if prior is not None:  # already enrolled (by an earlier request of this set, too)
            out.append(EnrollOutcome(prior))
            continue
        first = core.next_step(steps_of(seq), None)
        if first is None:
            out.append(EnrollOutcome(None, refused=f"sequence {seq.key} has no steps"))
            continue
        enrollment = Enrollment(
            lead_id=lead.id,
            sequence_id=seq.id,
            status="active",
            source=r.source[:40],
            source_key=r.source_key,
            enrolled_by=actor.user_id,
            enrolled_at=now,
        )
        active[(lead.id, seq.id)] = enrollment
        if r.source_key:
            by_key[r.source_key] = enrollment
        new.append((enrollment, lead, seq, first, r.source))
        out.append(EnrollOutcome(enrollment, created=True))
    if not new:
        return out
    session.add_all([e for e, *_ in new])
    session.flush()  # one multi-row INSERT: the ids for the step runs, the audit and the events
    # The first steps need no ids back: one executemany (the ORM flush inserts row by row on
    # SQLite when it must read ids back).
    session.execute(
        insert(StepRun), [_step_run_values(e, lead, seq, first, now) for e, lead, seq, first, _ in new]
    )
    record_many(
        session,
        actor,
        [
            {
                "entity_type": "lead",
                "entity_id": e.lead_id,
                "action": "sequence_enroll",
                "after": {"sequence": seq.key, "enrollment_id": e.id, "source": source},
            }
            for e, _, seq, _, source in new
        ],
    )
    for e, _, seq, *_ in new:
        emit(session, "sequence.enrolled", lead_id=e.lead_id, sequence=seq.key, enrollment_id=e.id)
    return out


def _step_run_values(
    enrollment: Enrollment, lead: Lead, seq: Sequence, nxt: core.NextStep, now: datetime
) -> dict[str, Any]:
    step = steps_of(seq)[nxt.index]
    return {
        "enrollment_id": enrollment.id,
        "lead_id": lead.id,
        "step_index": nxt.index,
        "kind": step.type,
        "due_at": add_business_days(now, nxt.wait_days, lead_hours(lead)),
        "status": "pending",
        "created_at": now,
    }


def _schedule(
    session: Session, enrollment: Enrollment, lead: Lead, nxt: core.NextStep, now: datetime
) -> StepRun:
    seq = session.get(Sequence, enrollment.sequence_id)
    assert seq is not None
    run = StepRun(**_step_run_values(enrollment, lead, seq, nxt, now))
    session.add(run)
    session.flush()
    return run


def _finish(
    session: Session,
    actor: Principal,
    enrollment: Enrollment,
    reason: core.StopReason,
    detail: str | None,
    now: datetime,
) -> None:
    status = "finished" if reason in (core.StopReason.COMPLETED, core.StopReason.MAX_ATTEMPTS) else "stopped"
    enrollment.status = status
    enrollment.stop_reason = reason.value
    enrollment.stop_detail = detail
    enrollment.finished_at = now
    session.execute(
        update(StepRun)
        .where(StepRun.enrollment_id == enrollment.id, StepRun.status == "pending")
        .values(status="cancelled", finished_at=now, detail=f"enrollment {status}: {reason.value}")
    )
    # Open call tasks the sequence created are withdrawn with it.
    prefix = f"seq:{enrollment.id}:"
    session.execute(
        update(Task)
        .where(Task.source_key.like(prefix + "%"), Task.status == TaskStatus.OPEN.value)
        .values(status=TaskStatus.CANCELLED.value, updated_at=now)
    )
    record(
        session,
        actor,
        "lead",
        enrollment.lead_id,
        "sequence_stop",
        after={"enrollment_id": enrollment.id, "status": status, "reason": reason.value},
        reason=detail or reason.value,
    )
    emit(
        session,
        "sequence.stopped",
        lead_id=enrollment.lead_id,
        enrollment_id=enrollment.id,
        reason=reason.value,
    )


def get_enrollment(session: Session, actor: Principal, enrollment_id: int) -> Enrollment:
    actor.require(Perm.LEADS_READ)
    enrollment = session.get(Enrollment, enrollment_id)
    if enrollment is None:
        raise NotFound(f"enrollment {enrollment_id} not found")
    get_lead(session, actor, enrollment.lead_id)  # 404 when the lead is invisible
    return enrollment


def stop_enrollment(
    session: Session, actor: Principal, enrollment_id: int, *, reason: str | None = None
) -> Enrollment:
    actor.require(Perm.LEADS_WRITE)
    enrollment = session.get(Enrollment, enrollment_id, with_for_update=True)
    if enrollment is None:
        raise NotFound(f"enrollment {enrollment_id} not found")
    get_lead(session, actor, enrollment.lead_id)  # 404 when invisible
    if enrollment.status != "active":
        raise InvalidInput("status", f"enrollment {enrollment_id} is already {enrollment.status}")
    _finish(session, actor, enrollment, core.StopReason.MANUAL, reason, clock_now())
    return enrollment


def stop_for_leads(
    session: Session,
    actor: Principal,
    lead_ids: list[int],
    reason: core.StopReason,
    detail: str | None = None,
) -> int:
    """Stop every active enrollment of these leads; returns how many stopped."""

    if not lead_ids:
        return 0
    rows = list(
        session.scalars(
            select(Enrollment)
            .where(Enrollment.lead_id.in_(lead_ids), Enrollment.status == "active")
            .with_for_update()
        )
    )
    now = clock_now()
    for enrollment in rows:
        _finish(session, actor, enrollment, reason, detail, now)
    return len(rows)


@dataclass
class EnrollmentFilter:
    lead_id: int | None = None
    sequence: str | None = None
    status: str | None = None


def list_enrollments(
    session: Session, actor: Principal, f: EnrollmentFilter, *, cursor: str | None = None, limit: int = 50
) -> Page[Enrollment]:
    actor.require(Perm.LEADS_READ)
    if not 1 <= limit <= 1000:
        raise InvalidInput("limit", "must be between 1 and 1000")
    stmt = select(Enrollment)
    if f.lead_id is not None:
        get_lead(session, actor, f.lead_id)
        stmt = stmt.where(Enrollment.lead_id == f.lead_id)
    else:
        vis = visibility_clause(session, actor)
        if vis is not None:
            stmt = stmt.where(Enrollment.lead_id.in_(select(Lead.id).where(vis)))
    if f.sequence:
        stmt = stmt.where(Enrollment.sequence_id == get_sequence(session, f.sequence).id)
    if f.status:
        if f.status not in ("active", "finished", "stopped"):
            raise InvalidInput("status", "must be one of active, finished, stopped")
        stmt = stmt.where(Enrollment.status == f.status)
    rows = list(
        session.scalars(
            keyset(stmt, Enrollment.id, Enrollment.id, descending=True, cursor=cursor, limit=limit)
        )
    )
    return page_of(rows, limit, lambda e: (e.id, e.id))


def attempts(session: Session, enrollment: Enrollment) -> int:
    """Emails the enrollment sent plus call outcomes logged on the lead since it was enrolled:
    counted from the records, so re-delivered events never count twice."""

    emails = session.scalar(
        select(func.count())
        .select_from(StepRun)
        .where(StepRun.enrollment_id == enrollment.id, StepRun.kind == "email", StepRun.status == "done")
    )
    calls = session.scalar(
        select(func.count())
        .select_from(Activity)
        .where(
            Activity.lead_id == enrollment.lead_id,
            Activity.type == ActivityType.CALL.value,
            Activity.occurred_at >= enrollment.enrolled_at,
        )
    )
    return int(emails or 0) + int(calls or 0)


def _check_exhausted(session: Session, enrollment: Enrollment, now: datetime) -> bool:
    """Stop at max attempts and move the lead to cold or nurture as the sequence says."""

    if enrollment.status != "active":
        return False
    seq = session.get(Sequence, enrollment.sequence_id)
    assert seq is not None
    made = attempts(session, enrollment)
    if made < seq.max_attempts:
        return False
    _finish(
        session,
        WORKER,
        enrollment,
        core.StopReason.MAX_ATTEMPTS,
        f"{made} attempts without an answer (sequence {seq.key})",
        now,
    )
    _exhaust_lead(session, enrollment.lead_id, seq, f"no answer after {made} attempts (sequence {seq.name})")
    return True


def _exhaust_lead(session: Session, lead_id: int, seq: Sequence, reason: str) -> None:
    target = core.Exhausted(seq.on_exhausted)
    if target is core.Exhausted.NONE:
        return
    lead = session.get(Lead, lead_id)
    if lead is None or lead.stage == target.value:
        return
    try:
        with session.begin_nested():
            transition_lead(session, WORKER, lead_id, Stage(target.value), reason=reason)
    except LifecycleError as exc:
        record(
            session,
            WORKER,
            "lead",
            lead_id,
            "sequence_exhausted",
            reason=f"{reason}; not moved to {target.value}: {exc.message}",
        )


# ------------------------------------------------------------------------------- execution


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class RunResult:
    claimed: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    flagged: int = 0

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


def due_step_ids(db: Database, now: datetime, limit: int = 500) -> list[int]:
    with db.transaction() as s:
        return list(
            s.scalars(
                select(StepRun.id)
                .where(StepRun.status == "pending", StepRun.due_at <= now)
                .order_by(StepRun.due_at, StepRun.id)
                .limit(limit)
            )
        )


def flag_stale(db: Database, now: datetime) -> int:
    """Runs claimed longer ago than the lease never finished: their worker died (or hangs) in
    the middle. An email may or may not have left, so they go to review, not back to pending."""

    cutoff = now - timedelta(seconds=get_settings().cadence_stale_after_seconds)
    with db.transaction() as s:
        stale = list(
            s.scalars(
                select(StepRun)
                .where(StepRun.status == "running", StepRun.claimed_at < cutoff)
                .with_for_update()
            )
        )
        for run in stale:
            res = s.execute(
                update(StepRun)
                .where(StepRun.id == run.id, StepRun.status == "running")
                .values(
                    status="review",
                    detail=(
                        f"claimed by {run.worker_id} at {run.claimed_at:%Y-%m-%d %H:%M:%S} UTC and never "
                        "finished; it may have been sent: not re-sent automatically"
                    ),
                )
                .execution_options(synchronize_session=False)
            )
            if res.rowcount:  # type: ignore[attr-defined]
                _review_task(
                    s, run, now, "A sequence step was interrupted: check whether it reached the lead"
                )
                record(s, WORKER, "sequence_step", run.id, "flag_review", reason="worker died mid-step")
        return len(stale)


def _review_task(session: Session, run: StepRun, now: datetime, title: str) -> None:
    lead = session.get(Lead, run.lead_id)
    tasks.create_task(
        session,
        WORKER,
        lead_id=run.lead_id,
        kind=TaskKind.TODO,
        title=title,
        due_at=now,
        owner_id=lead.owner_id if lead else None,
        assign_default=False,
        source="sequence",
        source_key=f"review:{run.id}",
    )


def run_due(db: Database, *, now: datetime | None = None, limit: int = 500) -> RunResult:
    """One worker tick in this process: flag stale runs, then execute every due step."""

    at = now or clock_now()
    result = RunResult(flagged=flag_stale(db, at))
    for step_id in due_step_ids(db, at, limit):
        outcome = execute_step(db, step_id, now=at)
        if outcome != "not_claimed":
            result.claimed += 1
        result.count(outcome)
    return result


def execute_step(
    db: Database, step_id: int, *, now: datetime | None = None, worker: str | None = None
) -> str:
    """Claim one due step and carry it out; returns what happened. Safe to call concurrently
    from any number of workers: only the one whose claim succeeds acts."""

    at = now or clock_now()
    me = worker or worker_id()
    with db.transaction() as s:
        claimed = s.execute(
            update(StepRun)
            .where(StepRun.id == step_id, StepRun.status == "pending", StepRun.due_at <= at)
            .values(status="running", worker_id=me[:100], claimed_at=at, tries=StepRun.tries + 1)
            .execution_options(synchronize_session=False)
        )
        if not claimed.rowcount:  # type: ignore[attr-defined]
            return "not_claimed"
        run = s.get(StepRun, step_id)
        assert run is not None
        prepared = _prepare(s, run, at)
    if prepared is None:
        return _last_outcome(db, step_id)
    outcome = _send(db, step_id, prepared, at)
    return outcome


def _last_outcome(db: Database, step_id: int) -> str:
    with db.transaction() as s:
        run = s.get(StepRun, step_id)
        return run.status if run is not None else "gone"


def _prepare(session: Session, run: StepRun, now: datetime) -> mail.OutgoingEmail | None:
    """Inside the claiming transaction: check the stop rules and the weekly cap, then either
    finish the step (call tasks, skips, deferrals) or render the email to send after commit."""

    enrollment = session.get(Enrollment, run.enrollment_id)
    lead = session.get(Lead, run.lead_id)
    if enrollment is None or enrollment.status != "active":
        _close(run, "cancelled", now, "enrollment no longer active")
        return None
    seq = session.get(Sequence, enrollment.sequence_id)
    assert seq is not None
    if lead is None or lead.merged_into_id is not None or lead.stage in CLOSED_STAGES:
        _close(run, "cancelled", now, "the lead takes no follow-up")
        _finish(session, WORKER, enrollment, core.StopReason.LEAD_CLOSED, lead.stage if lead else None, now)
        return None
    if lead.unsubscribed:
        _close(run, "cancelled", now, "the lead unsubscribed")
        _finish(session, WORKER, enrollment, core.StopReason.UNSUBSCRIBED, None, now)
        return None
    if _check_exhausted(session, enrollment, now):
        _close(run, "cancelled", now, "max attempts reached")
        return None
    steps = steps_of(seq)
    if run.step_index >= len(steps) or steps[run.step_index].type != run.kind:
        # The sequence was edited under this run: take the step now at that place, if any.
        _close(run, "skipped", now, "the sequence changed; step no longer exists")
        _advance(session, enrollment, lead, run.step_index, now)
        return None
    step = steps[run.step_index]
    deferred_to = _cap_deferral(session, lead.id, now, lead)
    if deferred_to is not None:
        run.status = "pending"
        run.due_at = deferred_to
        run.deferrals += 1
        run.worker_id = None
        run.claimed_at = None
        run.detail = f"deferred to {deferred_to:%Y-%m-%d %H:%M} UTC: weekly touch cap reached"
        record(session, WORKER, "sequence_step", run.id, "defer", reason=run.detail)
        return None
    context = _context(session, lead, seq)
    if isinstance(step, core.CallStep):
        task = tasks.create_task(
            session,
            WORKER,
            lead_id=lead.id,
            kind=TaskKind.CALL,
            title=core.render(step.title, context)[:300] or "Call",
            notes=step.notes,
            due_at=run.due_at,
            source="sequence",
            source_key=f"seq:{enrollment.id}:{run.id}",
        )
        run.task_id = task.id
        _close(run, "done", now, f"call task {task.id} opened")
        _advance(session, enrollment, lead, run.step_index, now)
        return None
    assert isinstance(step, core.EmailStep)
    refusal = consent.email_refusal(lead, sending=True)
    if refusal is not None:
        _close(run, "skipped", now, refusal)
        record(session, WORKER, "sequence_step", run.id, "skip", reason=refusal)
        _advance(session, enrollment, lead, run.step_index, now)
        return None
    assert lead.email  # email_refusal(sending=True) refuses a lead without an address
    message_id = run.message_id or mail.new_message_id()
    subject = " ".join(core.render(step.subject, context).split())[:500]
    run.message_id = message_id
    run.subject = subject
    name = " ".join(p for p in (lead.first_name, lead.last_name) if p) or None
    return mail.OutgoingEmail(
        to_name=name,
        to_addr=lead.email,
        subject=subject,
        body=core.render(step.body, context),
        unsubscribe_url=context["unsubscribe_url"],
        message_id=message_id,
        headers=(("X-Leadflow-Step", str(run.id)),),
    )


def _send(db: Database, step_id: int, message: mail.OutgoingEmail, now: datetime) -> str:
    # The message was rendered in the claiming transaction; the lead may have unsubscribed (or
    # withdrawn consent) since. Checked again right before the message leaves.
    with db.transaction() as s:
        run = s.get(StepRun, step_id)
        assert run is not None
        lead = s.get(Lead, run.lead_id)
        enrollment = s.get(Enrollment, run.enrollment_id)
        refusal = consent.email_refusal(lead, sending=True) if lead is not None else "the lead is gone"
        if refusal is not None:
            _close(run, "skipped", now, f"not sent: {refusal}")
            record(s, WORKER, "sequence_step", run.id, "skip", reason=refusal)
            if lead is not None and enrollment is not None and enrollment.status == "active":
                if lead.unsubscribed:
                    _finish(s, WORKER, enrollment, core.StopReason.UNSUBSCRIBED, None, now)
                else:
                    _advance(s, enrollment, lead, run.step_index, now)
            return "skipped"
    try:
        mail.send(message)
    except mail.SendError as exc:
        with db.transaction() as s:
            run = s.get(StepRun, step_id)
            assert run is not None
            if exc.permanent or run.tries >= 5:
                _close(run, "failed", now, f"not sent: {exc}")
                _review_task(s, run, now, "A sequence email could not be sent: check the address")
                enrollment = s.get(Enrollment, run.enrollment_id)
                lead = s.get(Lead, run.lead_id)
                if enrollment is not None and lead is not None and enrollment.status == "active":
                    _advance(s, enrollment, lead, run.step_index, now)
                return "failed"
            # Certainly not taken by the server: safe to try again later.
            run.status = "pending"
            run.worker_id = None
            run.claimed_at = None
            run.due_at = now + timedelta(minutes=5 * 2 ** (run.tries - 1))
            run.detail = f"not sent, retrying: {exc}"
            return "retry"
    except mail.UncertainDelivery as exc:
        with db.transaction() as s:
            run = s.get(StepRun, step_id)
            assert run is not None
            _close(run, "review", now, f"delivery uncertain, not re-sent: {exc}")
            _review_task(s, run, now, "A sequence email may not have been delivered: check before resending")
        return "review"
    with db.transaction() as s:
        run = s.get(StepRun, step_id)
        assert run is not None
        _close(run, "done", now, "sent")
        enrollment = s.get(Enrollment, run.enrollment_id)
        lead = s.get(Lead, run.lead_id)
        assert enrollment is not None and lead is not None
        log_activity(
            s,
            WORKER,
            lead.id,
            ActivityType.EMAIL_SENT,
            occurred_at=now,
            properties={"subject": run.subject, "message_id": run.message_id, "step_run_id": run.id},
        )
        record(s, WORKER, "sequence_step", run.id, "email_sent", after={"subject": run.subject})
        if enrollment.status == "active" and not _check_exhausted(s, enrollment, now):
            _advance(s, enrollment, lead, run.step_index, now)
    return "sent"


def _close(run: StepRun, status: str, now: datetime, detail: str) -> None:
    run.status = status
    run.finished_at = now
    run.detail = detail


def _advance(session: Session, enrollment: Enrollment, lead: Lead, after: int, now: datetime) -> None:
    seq = session.get(Sequence, enrollment.sequence_id)
    assert seq is not None
    nxt = core.next_step(steps_of(seq), after)
    if nxt is None:
        _finish(session, WORKER, enrollment, core.StopReason.COMPLETED, "every step ran", now)
        _exhaust_lead(
            session,
            lead.id,
            seq,
            f"no answer after the whole sequence {seq.name} ({attempts(session, enrollment)} attempts)",
        )
        return
    exists = session.scalar(
        select(StepRun.id).where(StepRun.enrollment_id == enrollment.id, StepRun.step_index == nxt.index)
    )
    if exists is None:
        _schedule(session, enrollment, lead, nxt, now)


def _cap_deferral(session: Session, lead_id: int, now: datetime, lead: Lead) -> datetime | None:
    """When the lead already had the weekly number of touches (emails sent by any sequence and
    calls logged), the moment the oldest of them leaves the 7-day window, in working hours."""

    cap = get_settings().cadence_weekly_cap
    since = now - timedelta(days=7)
    emails = select(StepRun.finished_at.label("at")).where(
        StepRun.lead_id == lead_id,
        StepRun.kind == "email",
        StepRun.status == "done",
        StepRun.finished_at > since,
    )
    calls = select(Activity.occurred_at.label("at")).where(
        Activity.lead_id == lead_id, Activity.type == ActivityType.CALL.value, Activity.occurred_at > since
    )
    touches = sorted(t for t in session.scalars(emails.union_all(calls)) if t is not None)
    if len(touches) < cap:
        return None
    free_at = touches[len(touches) - cap] + timedelta(days=7)
    return next_working_time(max(free_at, now + timedelta(minutes=1)), lead_hours(lead))


def _context(session: Session, lead: Lead, seq: Sequence) -> dict[str, Any]:
    owner = session.get(User, lead.owner_id) if lead.owner_id else None
    settings = get_settings()
    from email.utils import parseaddr

    sender_name = parseaddr(settings.mail_from)[0] or "The team"
    full = " ".join(p for p in (lead.first_name, lead.last_name) if p)
    return {
        "lead": {
            "first_name": lead.first_name or "",
            "last_name": lead.last_name or "",
            "full_name": full or lead.email or f"lead {lead.id}",
            "email": lead.email or "",
            "company": lead.company or "",
            "job_title": lead.job_title or "",
            "country": lead.country or "",
        },
        "owner": {"name": owner.name if owner else sender_name, "email": owner.email if owner else ""},
        "sequence": {"name": seq.name, "key": seq.key},
        "unsubscribe_url": mail.unsubscribe_url(lead.id, settings),
    }


# ------------------------------------------------------------------------------- review


def list_step_runs(
    session: Session,
    actor: Principal,
    *,
    status: str | None = None,
    lead_id: int | None = None,
    limit: int = 100,
) -> list[StepRun]:
    actor.require(Perm.LEADS_READ)
    stmt = select(StepRun)
    if lead_id is not None:
        get_lead(session, actor, lead_id)
        stmt = stmt.where(StepRun.lead_id == lead_id)
    else:
        vis = visibility_clause(session, actor)
        if vis is not None:
            stmt = stmt.where(StepRun.lead_id.in_(select(Lead.id).where(vis)))
    if status:
        stmt = stmt.where(StepRun.status == status)
    return list(session.scalars(stmt.order_by(StepRun.id.desc()).limit(min(max(limit, 1), 1000))))


def resolve_step(
    session: Session, actor: Principal, step_id: int, action: str, *, note: str | None = None
) -> StepRun:
    """A person settles a step held for review: ``sent`` (it reached the lead: count it and go
    on), ``retry`` (it did not: send again) or ``skip`` (go on without it)."""

    actor.require(Perm.LEADS_WRITE)
    run = session.get(StepRun, step_id, with_for_update=True)
    if run is None:
        raise NotFound(f"step {step_id} not found")
    get_lead(session, actor, run.lead_id)
    if run.status not in ("review", "failed"):
        raise InvalidInput(
            "status", f"step {step_id} is {run.status}; only review or failed steps are resolved"
        )
    if action not in ("sent", "retry", "skip"):
        raise InvalidInput("action", "must be one of sent, retry, skip")
    now = clock_now()
    before = {"status": run.status}
    enrollment = session.get(Enrollment, run.enrollment_id)
    lead = session.get(Lead, run.lead_id)
    assert enrollment is not None and lead is not None
    if action == "retry":
        run.status = "pending"
        run.due_at = now
        run.worker_id = None
        run.claimed_at = None
        run.detail = f"retry requested by {actor.label}"
    else:
        _close(run, "done" if action == "sent" else "skipped", now, f"{action} (resolved by {actor.label})")
        if enrollment.status == "active" and not _check_exhausted(session, enrollment, now):
            _advance(session, enrollment, lead, run.step_index, now)
    record(
        session,
        actor,
        "sequence_step",
        run.id,
        "resolve",
        before=before,
        after={"status": run.status},
        reason=note or action,
    )
    return run


# ------------------------------------------------------------------------------- unsubscribe


def unsubscribe(session: Session, lead_id: int, *, via: str = "unsubscribe link") -> bool:
    """The lead opted out: flag it, stop its sequences. Returns False for an unknown lead."""

    lead = session.get(Lead, lead_id, with_for_update=True)
    if lead is None:
        return False
    actor = Principal(user_id=None, label=via, role=Role.ADMIN)
    if not lead.unsubscribed:
        lead.unsubscribed = True
        lead.version += 1
        lead.updated_at = clock_now()
        record(
            session,
            actor,
            "lead",
            lead.id,
            "unsubscribe",
            before={"unsubscribed": False},
            after={"unsubscribed": True},
            reason=f"the lead opted out ({via})",
        )
        emit(session, "lead.unsubscribed", lead_id=lead.id)
    stop_for_leads(session, actor, [lead.id], core.StopReason.UNSUBSCRIBED, via)
    return True


# ------------------------------------------------------------------------------- stop rules


def stop_on_engagement(session: Session, lead_ids: list[int]) -> int:
    """A reply or a booked meeting after enrollment stops the lead's sequences; call outcomes
    may exhaust them. Set-based over the leads of one ingest."""

    if not lead_ids:
        return 0
    active: list[Enrollment] = []
    # A bulk ingest names many leads: look them up in slices (bind-parameter limits), and most
    # slices find no enrollment at all.
    for i in range(0, len(lead_ids), 2000):
        chunk = lead_ids[i : i + 2000]
        active.extend(
            session.scalars(
                select(Enrollment).where(Enrollment.lead_id.in_(chunk), Enrollment.status == "active")
            )
        )
    if not active:
        return 0
    stopped = 0
    now = clock_now()
    for enrollment in active:
        hit = session.execute(
            select(Activity.type)
            .where(
                Activity.lead_id == enrollment.lead_id,
                Activity.type.in_([ActivityType.EMAIL_REPLY.value, ActivityType.MEETING.value]),
                Activity.occurred_at >= enrollment.enrolled_at,
            )
            .limit(1)
        ).scalar()
        if hit is not None:
            reason = (
                core.StopReason.REPLY
                if hit == ActivityType.EMAIL_REPLY.value
                else core.StopReason.MEETING_BOOKED
            )
            _finish(session, WORKER, enrollment, reason, None, now)
            stopped += 1
        elif _check_exhausted(session, enrollment, now):
            stopped += 1
    return stopped


def enrollment_state(session: Session, enrollment: Enrollment) -> dict[str, Any]:
    seq = session.get(Sequence, enrollment.sequence_id)
    nxt = session.scalar(
        select(StepRun)
        .where(StepRun.enrollment_id == enrollment.id, StepRun.status.in_(["pending", "running", "review"]))
        .order_by(StepRun.step_index)
        .limit(1)
    )
    return {
        "sequence": seq.key if seq else None,
        "attempts": attempts(session, enrollment),
        "max_attempts": seq.max_attempts if seq else None,
        "next_step": (
            {"index": nxt.step_index, "kind": nxt.kind, "due_at": nxt.due_at, "status": nxt.status}
            if nxt
            else None
        ),
    }
