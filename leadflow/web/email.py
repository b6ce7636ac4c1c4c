"""A one-off email from the lead page (a rep writing to a lead, as in HubSpot or Salesforce),
sent with the cadences feature's SMTP sender (``cadences.mail``: the same From, Message-ID,
List-Unsubscribe header and unsubscribe footer as sequence emails) and logged as an
``email_sent`` activity on the lead's timeline (which is also the handoff's first touch).

Refused before anything is sent: a lead without an address, an unsubscribed lead, a lead that
denied email consent (the rule every sending path applies: ``core.consent.email_refusal``).
"""

from __future__ import annotations

from dataclasses import dataclass

from leadflow.audit.service import record
from leadflow.auth.principal import Perm, Principal
from leadflow.cadences import mail
from leadflow.core import consent
from leadflow.core.engagement import ActivityType
from leadflow.db.base import Database, utcnow
from leadflow.errors import Conflict, InvalidInput, LeadflowError
from leadflow.leads.activities import log_activity
from leadflow.leads.models import Lead
from leadflow.leads.service import get_lead

MAX_SUBJECT = 300
MAX_BODY = 20_000


class NotSent(LeadflowError):
    """The mail server refused the message, or could not be reached."""

    status = 502
    code = "not_sent"


def why_not(lead: Lead) -> str | None:
    """Why this lead may not be emailed now (None: it may). The consent rule is the one every
    sending path applies (``core.consent.email_refusal``): a rep's one-to-one email honours an
    opt-out (unsubscribed, consent denied) but does not wait for consent to be recorded."""

    if lead.merged_into_id is not None:
        return f"this lead was merged into lead {lead.merged_into_id}"
    if not lead.email:
        return "the lead has no email address"
    # The one consent check every sending path makes: a rep's own one-to-one email honours an
    # opt-out and a denial, without waiting for consent to be recorded.
    return consent.email_refusal(lead, sending=False)


@dataclass(frozen=True)
class Sent:
    activity_id: int
    message_id: str
    to: str


def send_email(db: Database, actor: Principal, lead_id: int, subject: str, body: str) -> Sent:
    """Check, send over SMTP outside any transaction (a slow server holds no lock), then log the
    activity and the audit entry. A refused or failed send stores nothing but an audit entry."""

    with db.transaction() as s:
        actor.require(Perm.ACTIVITIES_WRITE)
        lead = get_lead(s, actor, lead_id)  # an invisible lead is 404 before anything else
        subject = " ".join(subject.split())
        if not subject:
            raise InvalidInput("subject", "write a subject")
        if len(subject) > MAX_SUBJECT:
            raise InvalidInput("subject", f"is longer than {MAX_SUBJECT} characters")
        if not body.strip():
            raise InvalidInput("body", "write the message")
        if len(body) > MAX_BODY:
            raise InvalidInput("body", f"is longer than {MAX_BODY} characters")
        refusal = why_not(lead)
        if refusal is not None:
            raise Conflict(f"Not sent: {refusal}.")
        assert lead.email is not None
        name = " ".join(p for p in (lead.first_name, lead.last_name) if p) or None
        message = mail.OutgoingEmail(
            to_name=name,
            to_addr=lead.email,
            subject=subject,
            body=body,
            unsubscribe_url=mail.unsubscribe_url(lead.id),
            message_id=mail.new_message_id(),
            headers=(("X-Leadflow-Lead", str(lead.id)),),
        )
    try:
        mail.send(message)
    except mail.SendError as exc:
        _failed(db, actor, lead_id, message, str(exc))
        raise NotSent(f"The mail server did not take the message ({exc}); nothing was sent.") from None
    except mail.UncertainDelivery as exc:
        _failed(db, actor, lead_id, message, f"uncertain: {exc}")
        raise NotSent(
            "The connection broke while the mail server took the message: it may have been "
            "delivered. Check before sending again."
        ) from None
    with db.transaction() as s:
        act = log_activity(
            s,
            actor,
            lead_id,
            ActivityType.EMAIL_SENT,
            occurred_at=utcnow(),
            properties={
                "subject": subject,
                "message_id": message.message_id,
                "to": message.to_addr,
                "body": body[:2000],
                "one_off": True,
            },
        )
        record(
            s,
            actor,
            "lead",
            lead_id,
            "email_sent",
            after={"subject": subject, "message_id": message.message_id},
        )
        return Sent(act.id, message.message_id, message.to_addr)


def _failed(db: Database, actor: Principal, lead_id: int, message: mail.OutgoingEmail, why: str) -> None:
    with db.transaction() as s:
        record(
            s,
            actor,
            "lead",
            lead_id,
            "email_not_sent",
            after={"subject": message.subject, "message_id": message.message_id},
            reason=why[:500],
        )
