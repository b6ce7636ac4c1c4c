"""Whether a lead may be emailed: the one check every sending path makes (sequence email steps,
the worker right before it hands a message to the SMTP server, the one-off email from the lead
page, email tasks opened by hand or by a scoring threshold). Pure: it reads the lead's contact
fields, nothing else."""

from __future__ import annotations

from typing import Protocol


class Contact(Protocol):
    @property
    def email(self) -> str | None: ...

    @property
    def consent(self) -> str: ...

    @property
    def unsubscribed(self) -> bool: ...


def email_refusal(lead: Contact, *, sending: bool) -> str | None:
    """Why ``lead`` must not be emailed, or None when it may be.

    ``sending``: Leadflow sends the message itself (a sequence step, the one-off email from the
    lead page): it needs an address and consent given. Otherwise a person is asked to write (an
    email task): that does not wait for consent to be recorded, but an unsubscribed lead or one
    that denied consent is never emailed, whoever writes."""

    if sending and not lead.email:
        return "the lead has no email address"
    if lead.unsubscribed:
        return "the lead unsubscribed"
    if lead.consent == "denied":
        return "no email consent (consent is denied)"
    if sending and lead.consent != "granted":
        return f"no email consent (consent is {lead.consent})"
    return None
