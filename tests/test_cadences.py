"""Follow-up sequences end to end: enrollment (API, CLI, events), due steps run with a settable
clock, email to a real local SMTP server (aiosmtpd), stop rules, the weekly cap, unsubscribe,
at-most-once claims, appointments."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import Actor, make_user
from fastapi import FastAPI
from fastapi.testclient import TestClient
from smtp_server import Inbox, smtp_inbox
from sqlalchemy import select
from typer.testing import CliRunner

from leadflow.api import create_app
from leadflow.audit.models import AuditEntry
from leadflow.auth.models import Role
from leadflow.auth.principal import SYSTEM
from leadflow.cadences import service as svc
from leadflow.cadences.models import Enrollment, StepRun
from leadflow.cli import app as cli_app
from leadflow.clock import SettableClock, set_clock
from leadflow.config import get_settings
from leadflow.core.lifecycle import Stage
from leadflow.db.base import Database
from leadflow.events import emit
from leadflow.leads import activities
from leadflow.leads import service as leads
from leadflow.leads.models import Lead
from leadflow.tasks.models import Task

MONDAY = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # 09:00 in Berlin


@pytest.fixture(scope="module")
def app(database: Database) -> FastAPI:
    return create_app(database)


@pytest.fixture
def client(db: Database, app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture
def clock() -> Iterator[SettableClock]:
    c = SettableClock(MONDAY)
    set_clock(c)
    yield c
    set_clock(None)


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    with smtp_inbox(LEADFLOW_CADENCE_WEEKLY_CAP="6") as box:
        yield box


def make_lead(
    db: Database, email: str, *, owner: int | None = None, consent: str = "granted", **extra: Any
) -> int:
    data = {
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": email,
        "company": "Analytical Engines",
        "timezone": "Europe/Berlin",
        "consent": consent,
        "owner_id": owner,
        **extra,
    }
    with db.transaction() as s:
        return leads.create_lead(s, SYSTEM, data).lead.id


def run(db: Database, clock: SettableClock) -> svc.RunResult:
    return svc.run_due(db, now=clock.now())


def runs(db: Database, lead_id: int) -> list[StepRun]:
    with db.transaction() as s:
        return list(s.scalars(select(StepRun).where(StepRun.lead_id == lead_id).order_by(StepRun.id)))


def enrollment_of(db: Database, lead_id: int) -> Enrollment:
    with db.transaction() as s:
        return s.scalars(
            select(Enrollment).where(Enrollment.lead_id == lead_id).order_by(Enrollment.id.desc())
        ).first()  # type: ignore[return-value]


def test_default_sequence_calls_emails_waits_and_ends_in_nurture(
    client: TestClient, db: Database, admin: Actor, clock: SettableClock, inbox: Inbox
) -> None:
    rep = make_user(db, "Rita", Role.SALES_REP, team="east")
    lead_id = make_lead(db, "ada@engines.example", owner=rep.user_id)
    r = client.post(
        "/api/sequences/default-follow-up/enrollments", json={"lead_ids": [lead_id]}, headers=rep.headers
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["enrolled"]) == 1
    again = client.post(
        "/api/sequences/default-follow-up/enrollments", json={"lead_ids": [lead_id]}, headers=rep.headers
    )
    assert again.json()["already"] == [lead_id]

    run(db, clock)  # the call step: a task in the rep's inbox
    inbox_now = client.get(
        "/api/tasks", params={"scope": "mine", "due": "actionable"}, headers=rep.headers
    ).json()
    calls = [t for t in inbox_now["items"] if t["kind"] == "call"]
    assert len(calls) == 1 and calls[0]["title"] == "Call Ada Lovelace (Analytical Engines): first follow-up"
    run(db, clock)  # the email step, same day
    assert len(inbox.messages) == 1
    msg = inbox.messages[0]
    assert msg["To"] == "Ada Lovelace <ada@engines.example>"
    assert msg["Subject"] == "Ada, following up from Rita"
    assert msg["List-Unsubscribe"].startswith("<https://crm.example.com/unsubscribe/")
    body = msg.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert "Analytical Engines's interest" in body and "https://crm.example.com/unsubscribe/" in body

    # The rep calls: no answer. That is an attempt (2 with the email).
    done = client.post(
        f"/api/tasks/{calls[0]['id']}/complete", json={"outcome": "no_answer"}, headers=rep.headers
    )
    assert done.status_code == 200, done.text
    with db.transaction() as s:
        assert svc.attempts(s, s.get(Enrollment, enrollment_of(db, lead_id).id)) == 2  # type: ignore[arg-type]

    nxt = next(r for r in runs(db, lead_id) if r.status == "pending")
    assert nxt.kind == "call"
    assert nxt.due_at == datetime(2026, 11, 25, 8, 0, tzinfo=UTC)  # two business days, 09:00 Berlin
    clock.set(nxt.due_at)
    run(db, clock)
    call2 = client.get(
        "/api/tasks", params={"scope": "mine", "due": "actionable"}, headers=rep.headers
    ).json()["items"]
    client.post(f"/api/tasks/{call2[0]['id']}/complete", json={"outcome": "voicemail"}, headers=rep.headers)
    clock.set(datetime(2026, 11, 27, 8, 0, tzinfo=UTC))  # Friday: the second email
    run(db, clock)
    assert len(inbox.messages) == 2
    clock.set(datetime(2026, 12, 1, 8, 0, tzinfo=UTC))  # Tuesday (weekend skipped): third call
    run(db, clock)
    call3 = client.get(
        "/api/tasks", params={"scope": "mine", "due": "actionable"}, headers=rep.headers
    ).json()["items"]
    assert [t["kind"] for t in call3] == ["call"]
    r = client.post(
        f"/api/tasks/{call3[0]['id']}/complete", json={"outcome": "no_answer"}, headers=rep.headers
    )
    assert r.status_code == 200
    # Fifth attempt: the sequence ends and the lead goes to nurture, as configured.
    e = enrollment_of(db, lead_id)
    assert (e.status, e.stop_reason) == ("finished", "max_attempts")
    with db.transaction() as s:
        lead = s.get(Lead, lead_id)
        assert lead is not None and lead.stage == "nurture"
        assert "5 attempts" in (lead.status_reason or "")
    assert [r.status for r in runs(db, lead_id)][-1] == "cancelled"
    clock.advance(days=10)
    run(db, clock)
    assert len(inbox.messages) == 2  # nothing after the end


def test_no_email_without_consent_but_calls_continue(
    db: Database, clock: SettableClock, inbox: Inbox
) -> None:
    lead_id = make_lead(db, "nobody@example.org", consent="unknown")
    with db.transaction() as s:
        svc.enroll(s, SYSTEM, lead_id, "default-follow-up")
    run(db, clock)
    run(db, clock)
    statuses = [(r.kind, r.status) for r in runs(db, lead_id)]
    assert statuses[:2] == [("call", "done"), ("email", "skipped")]
    assert "consent" in (runs(db, lead_id)[1].detail or "")
    assert inbox.messages == []


def test_unsubscribe_link_stops_everything_and_is_audited(
    client: TestClient, db: Database, clock: SettableClock, inbox: Inbox
) -> None:
    lead_id = make_lead(db, "ada@engines.example")
    with db.transaction() as s:
        svc.enroll(s, SYSTEM, lead_id, "default-follow-up")
    run(db, clock)
    run(db, clock)
    url = inbox.messages[0]["List-Unsubscribe"].strip("<>")
    path = url.removeprefix("https://crm.example.com")
    assert client.get(path).status_code == 200  # a confirmation page; GET changes nothing
    with db.transaction() as s:
        assert s.get(Lead, lead_id).unsubscribed is False  # type: ignore[union-attr]
    assert client.post(path).status_code == 200
    assert client.post(path[:-3] + "abc").status_code == 404  # a forged token
    with db.transaction() as s:
        assert s.get(Lead, lead_id).unsubscribed is True  # type: ignore[union-attr]
        audit = s.scalars(
            select(AuditEntry).where(AuditEntry.entity_id == lead_id, AuditEntry.action == "unsubscribe")
        ).all()
        assert len(audit) == 1 and audit[0].actor_label == "unsubscribe link"
    assert enrollment_of(db, lead_id).stop_reason == "unsubscribed"
    clock.advance(days=5)
    run(db, clock)
    assert len(inbox.messages) == 1
    r = client.post(
        "/api/sequences/default-follow-up/enrollments",
        json={"lead_ids": [lead_id]},
        headers=make_user(db, "M", Role.MARKETING).headers,
    )
    assert r.json()["errors"][0]["msg"].endswith("unsubscribed")


@pytest.mark.parametrize("rule", ["reply", "meeting", "stage"])
def test_stop_rules(
    client: TestClient, db: Database, admin: Actor, clock: SettableClock, inbox: Inbox, rule: str
) -> None:
    lead_id = make_lead(db, "ada@engines.example")
    with db.transaction() as s:
        svc.enroll(s, SYSTEM, lead_id, "default-follow-up")
    run(db, clock)
    if rule == "stage":
        r = client.post(
            f"/api/leads/{lead_id}/transitions",
            json={"to": "unqualified", "reason": "no budget"},
            headers=admin.headers,
        )
        expected = "stage_change"
    else:
        kind = "email_reply" if rule == "reply" else "meeting"
        r = client.post(
            "/api/events",
            json={"events": [{"lead_id": lead_id, "type": kind, "occurred_at": clock.now().isoformat()}]},
            headers=admin.headers,
        )
        expected = "reply" if rule == "reply" else "meeting_booked"
    assert r.status_code in (200, 201), r.text
    e = enrollment_of(db, lead_id)
    assert (e.status, e.stop_reason) == ("stopped", expected)
    run(db, clock)
    assert inbox.messages == []
    with db.transaction() as s:  # the sequence's open call task is withdrawn too
        assert s.scalars(select(Task.status).where(Task.lead_id == lead_id, Task.kind == "call")).all() == [
            "cancelled"
        ]


def test_weekly_cap_across_sequences_defers_and_records(
    client: TestClient, db: Database, admin: Actor, clock: SettableClock, inbox: Inbox
) -> None:
    os.environ["LEADFLOW_CADENCE_WEEKLY_CAP"] = "2"
    get_settings.cache_clear()
    steps = [{"type": "email", "subject": "Note {{ sequence.name }}", "body": "Hello {{ lead.first_name }}"}]
    for key in ("promo-a", "promo-b", "promo-c"):
        r = client.post(
            "/api/sequences",
            json={"key": key, "name": key, "steps": steps, "on_exhausted": "none"},
            headers=admin.headers,
        )
        assert r.status_code == 201, r.text
    lead_id = make_lead(db, "ada@engines.example")
    for key in ("promo-a", "promo-b", "promo-c"):
        client.post(f"/api/sequences/{key}/enrollments", json={"lead_ids": [lead_id]}, headers=admin.headers)
    result = run(db, clock)
    assert result.outcomes == {"sent": 2, "pending": 1}
    assert len(inbox.messages) == 2
    deferred = next(r for r in runs(db, lead_id) if r.status == "pending")
    assert deferred.deferrals == 1 and "weekly touch cap" in (deferred.detail or "")
    assert deferred.due_at == MONDAY + timedelta(days=7)
    clock.set(deferred.due_at)
    run(db, clock)
    assert len(inbox.messages) == 3


def test_a_step_is_claimed_once_even_when_workers_race(
    db: Database, clock: SettableClock, inbox: Inbox
) -> None:
    lead_id = make_lead(db, "ada@engines.example")
    with db.transaction() as s:
        svc.enroll(s, SYSTEM, lead_id, "default-follow-up")
    run(db, clock)  # call step
    email_step = next(r for r in runs(db, lead_id) if r.status == "pending")
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def worker(i: int) -> None:
        barrier.wait()
        outcomes.append(svc.execute_step(db, email_step.id, now=clock.now(), worker=f"w{i}"))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["not_claimed"] * 3 + ["sent"]
    assert len(inbox.messages) == 1


def test_interrupted_step_goes_to_review_never_resent(
    client: TestClient, db: Database, admin: Actor, clock: SettableClock, inbox: Inbox
) -> None:
    lead_id = make_lead(db, "ada@engines.example")
    with db.transaction() as s:
        svc.enroll(s, SYSTEM, lead_id, "default-follow-up")
    run(db, clock)
    step = next(r for r in runs(db, lead_id) if r.status == "pending")
    with db.transaction() as s:  # a worker claimed it and died before finishing
        s.get(StepRun, step.id).status = "running"  # type: ignore[union-attr]
        s.get(StepRun, step.id).claimed_at = clock.now()  # type: ignore[union-attr]
    run(db, clock)
    assert runs(db, lead_id)[1].status == "running"  # within its lease: left alone
    clock.advance(hours=1)
    result = run(db, clock)
    assert result.flagged == 1
    assert inbox.messages == []
    review = client.get("/api/sequence-steps", params={"status": "review"}, headers=admin.headers).json()
    assert [r["id"] for r in review] == [step.id]
    todo = client.get(
        "/api/tasks", params={"lead_id": lead_id, "kind": "todo"}, headers=admin.headers
    ).json()["items"]
    assert "interrupted" in todo[0]["title"]
    r = client.post(f"/api/sequence-steps/{step.id}/resolve", json={"action": "retry"}, headers=admin.headers)
    assert r.status_code == 200 and r.json()["status"] == "pending"
    run(db, clock)
    assert len(inbox.messages) == 1


def test_refused_email_is_retried_then_failed(db: Database, clock: SettableClock, inbox: Inbox) -> None:
    inbox.refuse = True
    lead_id = make_lead(db, "ada@engines.example")
    with db.transaction() as s:
        svc.enroll(s, SYSTEM, lead_id, "default-follow-up")
    run(db, clock)
    result = run(db, clock)
    assert result.outcomes == {"failed": 1}  # 550: permanent, not retried
    assert runs(db, lead_id)[1].status == "failed"


def test_events_open_tasks_and_enroll_idempotently(
    db: Database, clock: SettableClock, inbox: Inbox, app: FastAPI
) -> None:
    lead_id = make_lead(db, "ada@engines.example")
    due = clock.now() + timedelta(hours=4)
    for _ in range(2):  # a redelivered event changes nothing
        with db.transaction() as s:
            emit(
                s,
                "task.requested",
                lead_id=lead_id,
                owner_id=None,
                kind="call",
                title="Call back",
                due_at=due,
                source="handoff",
            )
            emit(
                s,
                "scoring.task_requested",
                lead_id=lead_id,
                owner_id=None,
                task="call",
                title="Hot lead",
                due_at=due,
                threshold_id="hot",
            )
            emit(
                s,
                "scoring.sequence_enrollment_requested",
                lead_id=lead_id,
                sequence="default-follow-up",
                threshold_id="hot",
            )
    with db.transaction() as s:
        got = sorted((t.title, t.source) for t in s.scalars(select(Task).where(Task.lead_id == lead_id)))
        assert got == [("Call back", "handoff"), ("Hot lead", "scoring")]
        assert len(s.scalars(select(Enrollment).where(Enrollment.lead_id == lead_id)).all()) == 1


def test_the_default_scoring_model_enrolls_a_new_mql_in_the_seeded_marketing_email(
    db: Database, clock: SettableClock, app: FastAPI
) -> None:
    # The default model's threshold at 60 asks for sequence "marketing-email": it exists out of
    # the box (seeded with the default follow-up), so the enrollment is carried out.
    lead_id = make_lead(
        db, "vp@acme.io", job_title="VP Sales", industry="Software", employee_count=300
    )  # fit 100: total 50
    soon = datetime.now(UTC) + timedelta(days=1)  # dated ahead (scores are computed for now): no decay
    with db.transaction() as s:
        res = activities.ingest(
            s,
            SYSTEM,
            [{"lead_id": lead_id, "type": t, "occurred_at": soon} for t in ("webinar", "form_submit")],
        )
        assert not res.errors
    with db.transaction() as s:
        assert s.get(Lead, lead_id).stage == Stage.MQL.value  # type: ignore[union-attr]
        enrolled = s.scalars(select(Enrollment).where(Enrollment.lead_id == lead_id)).all()
        keys = {svc.get_sequence(s, e.sequence_id).key for e in enrolled}
        assert keys == {"marketing-email"}
        marketing = svc.get_sequence(s, "marketing-email")
        assert [step["type"] for step in marketing.steps] == ["email", "wait", "email", "wait", "email"]


def test_the_reactions_of_one_commit_share_a_transaction_and_a_failing_one_is_undone_alone(
    db: Database, clock: SettableClock, inbox: Inbox, app: FastAPI
) -> None:
    # A big ingest crosses hundreds of thresholds in one commit: their tasks and enrollments are
    # made in one transaction (a savepoint each), and a request that fails (an unknown sequence,
    # a lead that is gone) takes nothing else with it.
    first = make_lead(db, "ada@engines.example")
    second = make_lead(db, "grace@engines.example")
    due = clock.now() + timedelta(hours=4)
    with db.transaction() as s:
        for lead_id, title in ((first, "First"), (999_999, "Nobody"), (second, "Second")):
            emit(
                s,
                "task.requested",
                lead_id=lead_id,
                owner_id=None,
                kind="call",
                title=title,
                due_at=due,
                source="handoff",
            )
            emit(s, "sequence.enrollment_requested", lead_id=lead_id, sequence="no-such-sequence", source="x")
            emit(
                s, "sequence.enrollment_requested", lead_id=lead_id, sequence="default-follow-up", source="x"
            )
    with db.transaction() as s:
        got = sorted((t.lead_id, t.title) for t in s.scalars(select(Task).where(Task.source == "handoff")))
        assert got == [(first, "First"), (second, "Second")]
        enrolled = sorted(
            e.lead_id for e in s.scalars(select(Enrollment).where(Enrollment.status == "active"))
        )
        assert enrolled == [first, second]


def test_appointments_propose_free_slots_and_booking_stops_the_sequence(
    client: TestClient, db: Database, clock: SettableClock, inbox: Inbox
) -> None:
    rep = make_user(db, "Rita", Role.SALES_REP, team="east")
    r = client.put(
        f"/api/users/{rep.user_id}/working-hours",
        json={"timezone": "Europe/Berlin", "day_start": "10:00", "day_end": "12:00"},
        headers=rep.headers,
    )
    assert r.status_code == 200, r.text
    lead_id = make_lead(db, "ada@engines.example", owner=rep.user_id)
    with db.transaction() as s:
        svc.enroll(s, SYSTEM, lead_id, "default-follow-up")
    slots = client.get(
        f"/api/leads/{lead_id}/appointment-slots", params={"count": 3}, headers=rep.headers
    ).json()
    assert slots["timezone"] == "Europe/Berlin"
    starts = [datetime.fromisoformat(s["starts_at"]) for s in slots["slots"]]
    # Monday 09:00 Berlin + 2 h lead time -> first slot Monday 11:00 Berlin, then one per day
    assert starts[0] == datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    assert [d.date().day for d in starts] == [23, 24, 25]
    book = client.post(
        "/api/appointments",
        json={"lead_id": lead_id, "starts_at": starts[0].isoformat()},
        headers=rep.headers,
    )
    assert book.status_code == 201, book.text
    assert enrollment_of(db, lead_id).stop_reason == "meeting_booked"
    clash = client.post(
        "/api/appointments",
        json={"lead_id": lead_id, "starts_at": starts[0].isoformat()},
        headers=rep.headers,
    )
    assert clash.status_code == 409
    again = client.get(
        f"/api/leads/{lead_id}/appointment-slots", params={"count": 1}, headers=rep.headers
    ).json()
    assert datetime.fromisoformat(again["slots"][0]["starts_at"]) == datetime(
        2026, 11, 23, 10, 30, tzinfo=UTC
    )
    bad = client.post(
        "/api/appointments",
        json={"lead_id": lead_id, "starts_at": "2026-11-23T10:00:00"},
        headers=rep.headers,
    )
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "starts_at"


def test_bad_sequence_input_names_the_field(client: TestClient, db: Database, admin: Actor) -> None:
    r = client.post(
        "/api/sequences",
        json={"key": "x", "name": "X", "steps": [{"type": "email", "subject": "{{ oops", "body": "b"}]},
        headers=admin.headers,
    )
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["steps", 0, "subject"]
    rep = make_user(db, "Rita", Role.SALES_REP)
    r = client.post(
        "/api/sequences", json={"key": "y", "name": "Y", "steps": [{"type": "call"}]}, headers=rep.headers
    )
    assert r.status_code == 403
    assert client.get("/api/sequences", headers=rep.headers).json()[0]["key"] == "default-follow-up"


def test_cli_enroll_run_due_and_worker_once(
    db: Database, clock: SettableClock, inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADFLOW_DATABASE_URL", db.url)
    get_settings.cache_clear()
    lead_id = make_lead(db, "ada@engines.example")
    runner = CliRunner()
    r = runner.invoke(cli_app, ["sequences", "enroll", "default-follow-up", str(lead_id)])
    assert r.exit_code == 0, r.output
    assert "1 enrolled" in r.output
    r = runner.invoke(cli_app, ["sequences", "enroll", "nope", str(lead_id)])
    assert r.exit_code == 2 and "not found" in r.output
    r = runner.invoke(cli_app, ["worker", "--once"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli_app, ["sequences", "run-due"])
    assert r.exit_code == 0, r.output
    assert len(inbox.messages) == 1
    r = runner.invoke(cli_app, ["tasks", "list", "--due", "actionable"])
    assert r.exit_code == 0 and "1 task(s)" in r.output and "call" in r.output
    r = runner.invoke(cli_app, ["call", str(lead_id), "--outcome", "wrong_number"])
    assert r.exit_code == 0, r.output
    with db.transaction() as s:
        assert "wrong number reported on a call" in (s.get(Lead, lead_id).bad_candidate_reasons or [])  # type: ignore[union-attr]
        assert s.get(Lead, lead_id).stage == Stage.NEW.value  # type: ignore[union-attr]
