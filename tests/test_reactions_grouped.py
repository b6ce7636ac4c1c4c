"""The reactions to a batch of threshold crossings, carried out together: the tasks, enrollments
and sales handoffs of many leads made set-based, with the outcomes of one lead at a time."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import make_user
from fastapi import FastAPI
from sqlalchemy import func, select

from leadflow.api import create_app
from leadflow.assignment import service as assignment
from leadflow.audit.models import AuditEntry
from leadflow.auth.models import Role
from leadflow.auth.principal import SYSTEM
from leadflow.cadences import service as svc
from leadflow.cadences.models import Enrollment, StepRun
from leadflow.core.lifecycle import Stage
from leadflow.db.base import Database
from leadflow.events import DomainEvent, emit, subscribe, unsubscribe
from leadflow.leads import activities
from leadflow.leads import service as leads
from leadflow.leads.models import Lead
from leadflow.qualification import handoff
from leadflow.qualification.models import Handoff
from leadflow.tasks import service as tasks
from leadflow.tasks.models import Task

REQUESTS = ("task.requested", "scoring.task_requested", "scoring.sequence_enrollment_requested")


@pytest.fixture(scope="module")
def app(database: Database) -> FastAPI:
    return create_app(database)  # wires every feature's reactions


@pytest.fixture
def requested() -> Iterator[list[DomainEvent]]:
    """The follow-up requests dispatched meanwhile (to deliver them again)."""

    seen: list[DomainEvent] = []
    for name in REQUESTS:
        subscribe(name, seen.append)
    yield seen
    for name in REQUESTS:
        unsubscribe(name, seen.append)


def hot_lead(db: Database, email: str, **extra: Any) -> int:
    data = {
        "first_name": "Ada",
        "email": email,
        "company": "Acme",
        "job_title": "VP Sales",
        "industry": "Software",
        "employee_count": 300,  # fit 100: total 50 before any event
        "consent": "granted",
        **extra,
    }
    with db.transaction() as s:
        return leads.create_lead(s, SYSTEM, data).lead.id


def state(db: Database) -> dict[str, Any]:
    with db.transaction() as s:
        return {
            "tasks": sorted((t.lead_id, t.source, t.title) for t in s.scalars(select(Task))),
            "enrollments": sorted(
                (e.lead_id, e.sequence_id, e.status) for e in s.scalars(select(Enrollment))
            ),
            "step_runs": s.scalar(select(func.count()).select_from(StepRun)),
            "handoffs": sorted((h.lead_id, h.status, h.owner_id) for h in s.scalars(select(Handoff))),
            "audit": Counter((a.entity_type, a.action, a.entity_id) for a in s.scalars(select(AuditEntry))),
        }


def test_a_batch_crossing_thresholds_gets_one_handoff_task_and_enrollment_per_lead(
    db: Database, app: FastAPI, requested: list[DomainEvent]
) -> None:
    make_user(db, "Rex", Role.SALES_REP, team="east")
    make_user(db, "Rita", Role.SALES_REP, team="east")
    with db.transaction() as s:
        assignment.create_rule(s, SYSTEM, {"name": "East pool", "strategy": "round_robin", "team": "east"})
    hot = [hot_lead(db, f"vp{i}@acme.io") for i in range(4)]
    soon = datetime.now(UTC) + timedelta(days=1)  # dated ahead (scores are computed for now): no decay
    with db.transaction() as s:  # one batch: every lead crosses the MQL threshold
        res = activities.ingest(
            s,
            SYSTEM,
            [
                {"lead_id": lid, "type": t, "occurred_at": soon}
                for lid in hot
                for t in ("webinar", "form_submit")
            ],
        )
        assert not res.errors
    everyone = hot
    got = state(db)
    with db.transaction() as s:
        owners = {lid: s.get(Lead, lid).owner_id for lid in everyone}  # type: ignore[union-attr]
        assert [s.get(Lead, lid).stage for lid in everyone] == [Stage.MQL.value] * 4  # type: ignore[union-attr]
        marketing = svc.get_sequence(s, "marketing-email").id
    # One handoff per lead, routed by the rules (round robin over the reps), owner as the lead's.
    assert got["handoffs"] == [(lid, "queued", owners[lid]) for lid in everyone]
    assert None not in owners.values() and len(set(owners.values())) == 2
    handoff_tasks = [(lid, src) for lid, src, _ in got["tasks"] if src == "handoff"]
    assert handoff_tasks == [(lid, "handoff") for lid in everyone]
    # Each enrolled once in the marketing emails (the default model's threshold at 60).
    assert got["enrollments"] == [(lid, marketing, "active") for lid in hot]
    assert got["step_runs"] == len(hot)
    audit = got["audit"]
    with db.transaction() as s:
        ids = {h.lead_id: h.id for h in s.scalars(select(Handoff))}
        task_ids = [t.id for t in s.scalars(select(Task))]
    assert [audit[("handoff", "queued", ids[lid])] for lid in everyone] == [1] * len(everyone)
    assert [audit[("lead", "assign", lid)] for lid in everyone] == [1] * len(everyone)
    assert [audit[("lead", "sequence_enroll", lid)] for lid in everyone] == [1] * len(hot)
    assert [audit[("task", "create", tid)] for tid in task_ids] == [1] * len(task_ids)

    # Delivered again (one commit), the requests change nothing; nor does queueing them again.
    assert requested
    with db.transaction() as s:
        for ev in list(requested):
            emit(s, ev.name, **ev.payload)
    with db.transaction() as s:
        handoff.open_handoffs(s, [(s.get(Lead, lid), None) for lid in everyone])  # type: ignore[misc]
    assert state(db) == got


def test_a_lead_that_refuses_does_not_stop_the_others(db: Database, app: FastAPI) -> None:
    ok = [hot_lead(db, f"ok{i}@acme.io") for i in range(3)]
    opted_out = hot_lead(db, "unsub@acme.io")
    closed = hot_lead(db, "closed@acme.io")
    merged = hot_lead(db, "merged@acme.io")
    with db.transaction() as s:
        svc.unsubscribe(s, opted_out)
        leads.transition_lead(s, SYSTEM, closed, Stage.UNQUALIFIED, reason="not a fit")
        s.get(Lead, merged).merged_into_id = ok[0]  # type: ignore[union-attr]
    due = datetime.now(UTC) + timedelta(hours=4)
    everyone = [ok[0], opted_out, ok[1], closed, merged, 999_999, ok[2]]
    with db.transaction() as s:  # one commit: the requests are carried out together
        for lid in everyone:
            emit(s, "scoring.sequence_enrollment_requested", lead_id=lid, sequence="default-follow-up")
            emit(s, "scoring.task_requested", lead_id=lid, task="email", title="Mail", due_at=due)
            emit(s, "task.requested", lead_id=lid, kind="call", title="Call", due_at=due, source="handoff")
    got = state(db)
    # Enrollments: not the unsubscribed, the closed, the merged or the missing lead.
    assert [lid for lid, _, _ in got["enrollments"]] == ok
    # Email tasks: not to the lead that opted out; call tasks: everyone but the merged and missing.
    tasks_by = Counter((lid, title) for lid, _, title in got["tasks"])
    assert sorted(lid for lid, title in tasks_by if title == "Mail") == sorted([*ok, closed])
    assert sorted(lid for lid, title in tasks_by if title == "Call") == sorted([*ok, opted_out, closed])
    assert set(tasks_by.values()) == {1}
    assert sum(n for (kind, action, _), n in got["audit"].items() if action == "sequence_enroll") == 3


def test_a_set_that_fails_is_carried_out_one_at_a_time(
    db: Database, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An unexpected error in the set-based path (here: made up) undoes the set alone; its
    # requests then go through the one-at-a-time path, each in a savepoint of its own.
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("set-based path broken")

    monkeypatch.setattr(tasks, "create_tasks", broken)
    monkeypatch.setattr(svc, "enroll_many", broken)
    ok = [hot_lead(db, f"one{i}@acme.io") for i in range(3)]
    due = datetime.now(UTC) + timedelta(hours=4)
    with db.transaction() as s:
        for lid in [ok[0], 999_999, *ok[1:]]:
            emit(s, "task.requested", lead_id=lid, kind="call", title="Call", due_at=due, source="handoff")
            emit(s, "sequence.enrollment_requested", lead_id=lid, sequence="default-follow-up", source="x")
    got = state(db)
    assert [lid for lid, _, _ in got["tasks"]] == ok
    assert [lid for lid, _, _ in got["enrollments"]] == ok
