"""Consent and unsubscribe are honoured by every path that sends to a lead, through the one
check (``leadflow.core.consent.email_refusal``):

* sequence email steps (enrolled by hand or by a scoring threshold's enroll action), against a
  real local SMTP server: only a lead with consent given and not unsubscribed gets mail;
* the worker right before the message leaves: a lead that unsubscribed after the step was
  rendered gets nothing, and its enrollment stops;
* the one-off email from the lead page (web UI): tests/test_web_email.py;
* email tasks (a rep's one-to-one email), opened through the API, the web UI or a scoring
  threshold's task action: refused for a lead that unsubscribed or denied consent.

(Webhooks send a lead's data to the company's own integrations, not to the lead.)"""

from __future__ import annotations

from typing import Any

import pytest
import test_cadences
from conftest import Actor
from fastapi.testclient import TestClient
from smtp_server import Inbox
from sqlalchemy import func, select
from test_cadences import make_lead, run, runs

from leadflow.cadences import service as svc
from leadflow.cadences.models import Enrollment
from leadflow.clock import SettableClock
from leadflow.core.consent import email_refusal
from leadflow.db.base import Database
from leadflow.events import emit
from leadflow.tasks.models import Task

# The cadence tests' fixtures: a settable clock and a real local SMTP server.
clock = test_cadences.clock
inbox = test_cadences.inbox

MAIL_ONLY = {
    "key": "mail-only",
    "name": "Mail only",
    "steps": [{"type": "email", "subject": "Hello {{ lead.first_name }}", "body": "A note for you."}],
    "on_exhausted": "none",
}


def _leads(db: Database) -> dict[str, int]:
    return {
        "granted": make_lead(db, "granted@example.org", consent="granted"),
        "unknown": make_lead(db, "unknown@example.org", consent="unknown"),
        "denied": make_lead(db, "denied@example.org", consent="denied"),
        "unsubscribed": make_lead(db, "unsub@example.org", consent="granted", unsubscribed=True),
    }


def _recipients(inbox: Inbox) -> list[str]:
    return sorted(str(m["To"]).split("<")[-1].rstrip(">") for m in inbox.messages)


def _tasks(db: Database, lead_id: int) -> int:
    with db.transaction() as s:
        return int(s.scalar(select(func.count()).select_from(Task).where(Task.lead_id == lead_id)) or 0)


def test_the_one_check() -> None:
    class L:
        def __init__(self, email: str | None, consent: str, unsubscribed: bool) -> None:
            self.email, self.consent, self.unsubscribed = email, consent, unsubscribed

    assert email_refusal(L("a@b.c", "granted", False), sending=True) is None
    assert email_refusal(L("a@b.c", "unknown", False), sending=False) is None
    for lead in (L("a@b.c", "granted", True), L("a@b.c", "denied", False)):
        assert email_refusal(lead, sending=True) and email_refusal(lead, sending=False)
    assert "consent" in (email_refusal(L("a@b.c", "unknown", False), sending=True) or "")
    assert "address" in (email_refusal(L(None, "granted", False), sending=True) or "")


@pytest.mark.parametrize("path", ["api", "threshold"])
def test_sequence_email_reaches_only_leads_that_may_be_emailed(
    client: TestClient, db: Database, admin: Actor, clock: SettableClock, inbox: Inbox, path: str
) -> None:
    assert client.post("/api/sequences", json=MAIL_ONLY, headers=admin.headers).status_code == 201
    ids = _leads(db)
    if path == "api":
        r = client.post(
            "/api/sequences/mail-only/enrollments",
            json={"lead_ids": list(ids.values())},
            headers=admin.headers,
        )
        assert r.status_code == 200, r.text
        assert [e["index"] for e in r.json()["errors"]] == [3]  # the unsubscribed lead is refused
    else:  # a scoring threshold's "enroll_sequence" action
        for lead_id in ids.values():
            with db.transaction() as s:
                emit(s, "scoring.sequence_enrollment_requested", lead_id=lead_id, sequence="mail-only")
    run(db, clock)
    assert _recipients(inbox) == ["granted@example.org"]
    for name in ("unknown", "denied"):
        (step,) = runs(db, ids[name])
        assert step.status == "skipped" and "consent" in (step.detail or ""), step.detail
    with db.transaction() as s:
        enrolled = s.scalar(
            select(func.count()).select_from(Enrollment).where(Enrollment.lead_id == ids["unsubscribed"])
        )
    assert enrolled == 0


def test_a_lead_that_unsubscribes_while_the_step_is_in_flight_gets_nothing(
    client: TestClient,
    db: Database,
    admin: Actor,
    clock: SettableClock,
    inbox: Inbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The step is rendered in the claiming transaction and sent after its commit: the
    unsubscribe link clicked in between is honoured (the check runs again before sending)."""

    assert client.post("/api/sequences", json=MAIL_ONLY, headers=admin.headers).status_code == 201
    lead_id = make_lead(db, "quick@example.org", consent="granted")
    with db.transaction() as s:
        svc.enroll(s, svc.WORKER, lead_id, "mail-only")
    real_send = svc._send

    def unsubscribe_first(db_: Database, step_id: int, message: Any, now: Any) -> str:
        with db_.transaction() as s:
            assert svc.unsubscribe(s, lead_id)
        return real_send(db_, step_id, message, now)

    monkeypatch.setattr(svc, "_send", unsubscribe_first)
    result = run(db, clock)
    assert inbox.messages == []
    assert result.outcomes.get("skipped") == 1, result.outcomes
    (step,) = runs(db, lead_id)
    assert step.status == "skipped" and "unsubscribed" in (step.detail or "")
    with db.transaction() as s:
        enrollment = s.scalar(select(Enrollment).where(Enrollment.lead_id == lead_id))
        assert enrollment is not None and enrollment.status != "active"
        assert enrollment.stop_reason == "unsubscribed"


def test_email_tasks_are_refused_for_leads_that_opted_out(
    client: TestClient, db: Database, admin: Actor
) -> None:
    ids = _leads(db)
    for name in ("unsubscribed", "denied"):
        r = client.post(
            "/api/tasks",
            json={"lead_id": ids[name], "kind": "email", "title": "Write to them"},
            headers=admin.headers,
        )
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["kind"], r.text
        # Calling is another matter: the opt-out is about email.
        r = client.post(
            "/api/tasks", json={"lead_id": ids[name], "kind": "call", "title": "Call"}, headers=admin.headers
        )
        assert r.status_code == 201, r.text
    r = client.post(
        "/api/tasks",
        json={"lead_id": ids["unknown"], "kind": "email", "title": "One-to-one note"},
        headers=admin.headers,
    )
    assert r.status_code == 201, r.text  # a rep's own email does not wait for recorded consent

    # A scoring threshold's task action asks for an email task: none is opened for opted-out leads.
    for name in ("unsubscribed", "denied", "granted"):
        with db.transaction() as s:
            emit(
                s,
                "scoring.task_requested",
                lead_id=ids[name],
                owner_id=None,
                task="email",
                title="Email the hot lead",
                due_at=None,
                threshold_id="hot",
            )
    assert _tasks(db, ids["unsubscribed"]) == 1 and _tasks(db, ids["denied"]) == 1  # the calls above
    assert _tasks(db, ids["granted"]) == 1
