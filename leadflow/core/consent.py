"""Whether a lead may be emailed: the one check every sending path makes (sequence email steps,
the worker right before it hands a message to the SMTP server, email tasks opened by hand or by
a scoring threshold). Pure: it reads the lead's contact fields, nothing else."""

from __future__ import annotations

from typing import Protocol


class Contact(Protocol):
    @property
    def email(self) -> str | None: ...

    @property
    def consent(self) -> str: ...

    @property
    def unsubscribed(self) -> bool: ...


def email_refusal(lead: Contact, *, automated: bool) -> str | None:
    """Why ``lead`` must not be emailed, or None when it may be.

    Everyone: an unsubscribed lead or one that denied consent is never emailed. Automated email
    (sequences) also needs consent given and an address; a rep's one-to-one email (an email task)
    does not wait for consent to be recorded, but honours an opt-out."""

    if lead.unsubscribed:
        return "the lead unsubscribed"
    if lead.consent == "denied":
        return "no email consent (consent is denied)"
    if automated and not lead.email:
        return "the lead has no email address"
    if automated and lead.consent != "granted":
        return f"no email consent (consent is {lead.consent})"
    return None
