"""A one-off email from the lead page: sent through the cadences feature's SMTP sender to a real
local SMTP server (aiosmtpd), logged as an email_sent activity, refused without consent."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import Actor, make_user
from fastapi.testclient import TestClient
from smtp_server import Inbox, smtp_inbox
from sqlalchemy import select
from test_web_server import _lead, sign_in

from leadflow.audit.models import AuditEntry
from leadflow.auth.models import Role
from leadflow.db.base import Database
from leadflow.leads.models import Activity


@pytest.fixture
def inbox() -> Iterator[Inbox]:
    with smtp_inbox() as box:
        yield box


def _emails(db: Database, lead_id: int) -> list[Activity]:
    with db.transaction() as s:
        return list(
            s.scalars(select(Activity).where(Activity.lead_id == lead_id, Activity.type == "email_sent"))
        )


def test_send_an_email_from_the_lead_page(client: TestClient, db: Database, inbox: Inbox) -> None:
    rep = make_user(db, "Rita", Role.SALES_REP, "EMEA")
    # A rep's one-to-one email does not wait for consent to be recorded (only an opt-out stops it).
    lead_id = _lead(db, rep, "ada@example.org", consent="unknown")
    csrf = sign_in(client, db, rep)
    assert 'id="send-email"' in client.get(f"/app/leads/{lead_id}").text
    r = client.post(
        f"/app/leads/{lead_id}/email",
        data={
            "subject": "Your  pricing question",
            "body": "Hi Ada,\nhere are the plans.",
            "csrf_token": csrf,
        },
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    assert "Email+sent+to+ada%40example.org" in r.headers["location"]
    assert len(inbox.messages) == 1
    msg = inbox.messages[0]
    assert msg["Subject"] == "Your pricing question" and "ada@example.org" in str(msg["To"])
    assert msg["List-Unsubscribe"].startswith("<https://crm.example.com/unsubscribe/")
    assert "here are the plans." in msg.get_content()
    (act,) = _emails(db, lead_id)
    assert act.properties is not None and act.properties["subject"] == "Your pricing question"
    assert act.properties["message_id"] == msg["Message-ID"]
    with db.transaction() as s:
        assert s.scalar(select(AuditEntry.id).where(AuditEntry.action == "email_sent")) is not None
    assert "Your pricing question" in client.get(f"/app/leads/{lead_id}").text

    # Bad input names the field (HTMX: in the flash area), nothing sent.
    r = client.post(
        f"/app/leads/{lead_id}/email",
        data={"subject": " ", "body": "x", "csrf_token": csrf},
        headers={"HX-Request": "true"},
    )
    assert r.status_code == 422 and "subject: write a subject" in r.text
    assert len(inbox.messages) == 1


@pytest.mark.parametrize(
    ("values", "why"),
    [
        ({"consent": "denied"}, "no email consent (consent is denied)"),
        ({"consent": "granted", "unsubscribed": True}, "the lead unsubscribed"),
    ],
)
def test_no_email_without_consent(
    client: TestClient, db: Database, inbox: Inbox, values: dict[str, object], why: str
) -> None:
    rep = make_user(db, "Rita", Role.SALES_REP, "EMEA")
    lead_id = _lead(db, rep, "ada@example.org", **values)
    csrf = sign_in(client, db, rep)
    page = client.get(f"/app/leads/{lead_id}").text
    assert f"Cannot email this lead: {why}." in page and 'id="send-email"' not in page
    r = client.post(
        f"/app/leads/{lead_id}/email", data={"subject": "Hi", "body": "Hello", "csrf_token": csrf}
    )
    assert r.status_code == 409 and f"Not sent: {why}." in r.text
    assert inbox.messages == [] and _emails(db, lead_id) == []


def test_a_refused_message_is_not_logged_as_sent(
    client: TestClient, db: Database, inbox: Inbox, admin: Actor
) -> None:
    lead_id = _lead(db, admin, "ada@example.org", consent="granted")
    csrf = sign_in(client, db, admin)
    inbox.refuse = True
    r = client.post(
        f"/app/leads/{lead_id}/email", data={"subject": "Hi", "body": "Hello", "csrf_token": csrf}
    )
    assert r.status_code == 502 and "did not take the message" in r.text
    assert _emails(db, lead_id) == []
    with db.transaction() as s:
        assert s.scalar(select(AuditEntry.reason).where(AuditEntry.action == "email_not_sent"))


def test_another_teams_lead_cannot_be_emailed(client: TestClient, db: Database, inbox: Inbox) -> None:
    west = make_user(db, "Wes", Role.SALES_REP, "Americas")
    rep = make_user(db, "Rita", Role.SALES_REP, "EMEA")
    lead_id = _lead(db, west, "ada@example.org", consent="granted", owner_id=west.user_id)
    csrf = sign_in(client, db, rep)
    r = client.post(
        f"/app/leads/{lead_id}/email", data={"subject": "Hi", "body": "Hello", "csrf_token": csrf}
    )
    assert r.status_code == 404 and inbox.messages == []
