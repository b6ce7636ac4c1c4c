"""Public web-to-lead forms: a marketing page posts straight to ``/forms/{key}``."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from leadflow.audit.service import record
from leadflow.auth.models import Role, User
from leadflow.auth.principal import Perm, Principal
from leadflow.core.engagement import ActivityType
from leadflow.errors import Forbidden, InvalidInput, NotFound
from leadflow.leads import activities
from leadflow.leads.models import WebForm
from leadflow.leads.service import EDITABLE, create_lead

# Bots fill every field; people never see this one (hidden with CSS on the page).
HONEYPOT_FIELD = "website_url"
# Fields a public form may set; ownership, stage and account stay under the company's control.
PUBLIC_FIELDS = EDITABLE - {"owner_id", "account_id", "origin", "attributes", "source", "campaign"}
_ALIASES = {"firstname": "first_name", "lastname": "last_name", "phone_number": "phone", "title": "job_title"}


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput("redirect_url", "must be an absolute http(s) URL")
    return url


def create_form(
    session: Session,
    actor: Principal,
    *,
    name: str,
    redirect_url: str,
    source: str | None = None,
    campaign: str | None = None,
    owner_id: int | None = None,
) -> WebForm:
    if not actor.can(Perm.FORMS_ADMIN):
        raise Forbidden("only marketing and admins manage web forms")
    if not name.strip():
        raise InvalidInput("name", "is empty")
    if owner_id is not None:
        owner = session.get(User, owner_id)
        if owner is None or not owner.active:
            raise InvalidInput("owner_id", f"no active user with id {owner_id}")
    form = WebForm(
        key=secrets.token_urlsafe(12),
        name=name.strip(),
        redirect_url=_check_url(redirect_url),
        source=source or "web_form",
        campaign=campaign,
        owner_id=owner_id,
    )
    session.add(form)
    session.flush()
    record(session, actor, "web_form", form.id, "create", after={"name": form.name, "key": form.key})
    return form


def list_forms(session: Session, actor: Principal) -> list[WebForm]:
    if not actor.can(Perm.FORMS_ADMIN):
        raise Forbidden("only marketing and admins manage web forms")
    return list(session.scalars(select(WebForm).order_by(WebForm.id)))


@dataclass
class Submission:
    redirect_url: str
    lead_id: int | None
    spam: bool


def submit(session: Session, key: str, fields: Mapping[str, Any], *, ip: str | None) -> Submission:
    """Capture a lead from a public form. A filled honeypot is accepted silently (the bot sees
    the same redirect) and stores nothing. A known email updates the lead's empty fields and logs
    another form_submit, as HubSpot does."""

    form = session.scalar(select(WebForm).where(WebForm.key == key, WebForm.active.is_(True)))
    if form is None:
        raise NotFound(f"form {key} not found")
    if str(fields.get(HONEYPOT_FIELD) or "").strip():
        return Submission(form.redirect_url, None, True)
    data: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for raw_key, value in fields.items():
        k = _ALIASES.get(raw_key.strip().lower(), raw_key.strip().lower())
        if k == HONEYPOT_FIELD:
            continue
        if k in PUBLIC_FIELDS:
            data[k] = value
        elif isinstance(value, str | int | float | bool) and len(extra) < 50:
            extra[k[:100]] = str(value)[:2000]
    data["source"] = form.source
    if form.campaign:
        data["campaign"] = form.campaign
    if form.owner_id is not None:
        data["owner_id"] = form.owner_id
    if "consent" in data and data["consent"] in ("on", "true", "yes", "1", True):
        data["consent"] = "granted"
    # The form acts as itself (with marketing rights) so the audit trail says which form it was.
    actor = Principal(user_id=None, label=f"web form {form.name!r} ({form.key})", role=Role.MARKETING)
    res = create_lead(session, actor, data, on_duplicate="update")
    activities.ingest(
        session,
        actor,
        [
            {
                "lead_id": res.lead.id,
                "type": ActivityType.FORM_SUBMIT.value,
                "properties": {"form": form.name, "form_key": form.key, "ip": ip, **extra},
                "source": "web_form",
            }
        ],
    )
    return Submission(form.redirect_url, res.lead.id, False)
