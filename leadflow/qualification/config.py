"""Qualification configuration: questionnaires, frameworks and the settings documents (handoff
SLA and rejection reasons, ideal customer profile). The defaults (the seeds' questionnaire, BANT
with the MEDDIC and CHAMP presets, a 4-business-hour SLA) are created on first use, so a fresh
database and a truncated test database behave the same."""

from __future__ import annotations

import copy
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from leadflow.audit.service import record
from leadflow.auth.principal import Perm, Principal
from leadflow.core import qualification as core
from leadflow.core.business_hours import BusinessCalendar, CalendarError, calendar_from_dict
from leadflow.db.base import utcnow
from leadflow.errors import InvalidInput, NotFound, StaleVersion
from leadflow.qualification.models import FrameworkDef, QualificationSetting, QuestionnaireDef

DEFAULT_REJECTION_REASONS = (
    "not_icp",
    "no_need",
    "bad_timing",
    "wrong_contact",
    "no_budget",
    "insufficient_data",
    "duplicate",
    "other",
)

DEFAULT_SETTINGS: dict[str, dict[str, Any]] = {
    "handoff": {
        "first_touch_minutes": 240,
        "business_hours": {
            "timezone": "UTC",
            "days": ["mon", "tue", "wed", "thu", "fri"],
            "start": "09:00",
            "end": "17:00",
        },
        "use_lead_timezone": True,
        "holidays_from_lead_country": False,
        "rejection_reasons": list(DEFAULT_REJECTION_REASONS),
    },
    "icp": {"industries": [], "min_employees": None, "max_employees": None, "countries": []},
}


def _require_admin(actor: Principal) -> None:
    actor.require(Perm.QUALIFICATION_ADMIN)


def _invalid(exc: core.DefinitionError, prefix: str | None = None) -> InvalidInput:
    loc: list[str | int] = [prefix, *exc.loc] if prefix else list(exc.loc)
    return InvalidInput(loc or ["body"], exc.message)


# ------------------------------------------------------------------------------ defaults


def ensure_defaults(session: Session) -> None:
    """Create the default questionnaire and frameworks when none exist (first use)."""

    if session.info.get("qualification.defaults"):
        return
    if session.scalar(select(QuestionnaireDef.id).limit(1)) is None:
        q = core.parse_questionnaire(core.DEFAULT_QUESTIONNAIRE)
        session.add(
            QuestionnaireDef(
                key=q.key,
                name=q.name,
                definition=q.to_dict(),
                is_default=True,
                public_key=secrets.token_urlsafe(12),
            )
        )
    if session.scalar(select(FrameworkDef.id).limit(1)) is None:
        for key, doc in core.PRESETS.items():
            fw = core.parse_framework(doc)
            session.add(
                FrameworkDef(key=fw.key, name=fw.name, definition=fw.to_dict(), is_default=key == "bant")
            )
    session.flush()
    session.info["qualification.defaults"] = True


# ------------------------------------------------------------------------------ questionnaires


def questionnaire_row(session: Session, key: str | None = None) -> QuestionnaireDef:
    ensure_defaults(session)
    stmt = select(QuestionnaireDef).where(QuestionnaireDef.active.is_(True))
    stmt = (
        stmt.where(QuestionnaireDef.key == key) if key else stmt.where(QuestionnaireDef.is_default.is_(True))
    )
    row = session.scalar(stmt.order_by(QuestionnaireDef.id).limit(1))
    if row is None:
        raise NotFound(f"questionnaire {key or '(default)'} not found")
    return row


def questionnaire(row: QuestionnaireDef) -> core.Questionnaire:
    return core.parse_questionnaire(row.definition)


def list_questionnaires(session: Session, actor: Principal) -> list[QuestionnaireDef]:
    actor.require(Perm.LEADS_READ)
    ensure_defaults(session)
    return list(session.scalars(select(QuestionnaireDef).order_by(QuestionnaireDef.id)))


def _check_url(url: str | None) -> str | None:
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput("redirect_url", "must be an absolute http(s) URL")
    return url


def put_questionnaire(
    session: Session,
    actor: Principal,
    document: Mapping[str, Any],
    *,
    make_default: bool = False,
    redirect_url: str | None = None,
    expected_version: int | None = None,
) -> QuestionnaireDef:
    """Create a questionnaire or replace its definition (by key); the version goes up, and
    assessments keep the version they were answered under."""

    _require_admin(actor)
    ensure_defaults(session)
    try:
        q = core.parse_questionnaire(document)
    except core.DefinitionError as exc:
        raise _invalid(exc, "definition") from None
    redirect_url = _check_url(redirect_url)
    row = session.scalar(select(QuestionnaireDef).where(QuestionnaireDef.key == q.key))
    if row is None:
        row = QuestionnaireDef(
            key=q.key,
            name=q.name,
            definition=q.to_dict(),
            public_key=secrets.token_urlsafe(12),
            redirect_url=redirect_url,
        )
        session.add(row)
        session.flush()
        record(session, actor, "questionnaire", row.id, "create", after=q.to_dict())
    else:
        if expected_version is not None and row.version != expected_version:
            raise StaleVersion(f"questionnaire {q.key} was changed by someone else; reload and retry")
        before = row.definition
        row.name, row.definition, row.active = q.name, q.to_dict(), True
        row.version += 1
        row.updated_at = utcnow()
        if redirect_url is not None:
            row.redirect_url = redirect_url
        record(session, actor, "questionnaire", row.id, "update", before=before, after=row.definition)
    if make_default and not row.is_default:
        session.execute(
            update(QuestionnaireDef).values(is_default=False).execution_options(synchronize_session=False)
        )
        session.flush()
        session.refresh(row)
        row.is_default = True
        record(session, actor, "questionnaire", row.id, "make_default")
    session.flush()
    return row


# ------------------------------------------------------------------------------ frameworks


def framework_row(session: Session, key: str | None = None) -> FrameworkDef:
    ensure_defaults(session)
    stmt = select(FrameworkDef).where(FrameworkDef.active.is_(True))
    stmt = stmt.where(FrameworkDef.key == key) if key else stmt.where(FrameworkDef.is_default.is_(True))
    row = session.scalar(stmt.order_by(FrameworkDef.id).limit(1))
    if row is None:
        raise NotFound(f"framework {key or '(default)'} not found")
    return row


def framework(row: FrameworkDef) -> core.Framework:
    return core.parse_framework(row.definition)


def list_frameworks(session: Session, actor: Principal) -> list[FrameworkDef]:
    actor.require(Perm.LEADS_READ)
    ensure_defaults(session)
    return list(session.scalars(select(FrameworkDef).order_by(FrameworkDef.id)))


def put_framework(
    session: Session,
    actor: Principal,
    document: Mapping[str, Any] | None = None,
    *,
    preset: str | None = None,
    make_default: bool = False,
    expected_version: int | None = None,
) -> FrameworkDef:
    """Create or replace a framework from a document or one of the presets (bant, meddic, champ)."""

    _require_admin(actor)
    ensure_defaults(session)
    if preset is not None:
        if preset not in core.PRESETS:
            raise InvalidInput("preset", f"must be one of {', '.join(core.PRESETS)}")
        document = copy.deepcopy(core.PRESETS[preset])
    if document is None:
        raise InvalidInput("definition", "give a framework definition or a preset")
    try:
        fw = core.parse_framework(document)
    except core.DefinitionError as exc:
        raise _invalid(exc, "definition") from None
    row = session.scalar(select(FrameworkDef).where(FrameworkDef.key == fw.key))
    if row is None:
        row = FrameworkDef(key=fw.key, name=fw.name, definition=fw.to_dict())
        session.add(row)
        session.flush()
        record(session, actor, "framework", row.id, "create", after=fw.to_dict())
    else:
        if expected_version is not None and row.version != expected_version:
            raise StaleVersion(f"framework {fw.key} was changed by someone else; reload and retry")
        before = row.definition
        row.name, row.definition, row.active = fw.name, fw.to_dict(), True
        row.version += 1
        row.updated_at = utcnow()
        record(session, actor, "framework", row.id, "update", before=before, after=row.definition)
    if make_default and not row.is_default:
        session.execute(
            update(FrameworkDef).values(is_default=False).execution_options(synchronize_session=False)
        )
        session.flush()
        session.refresh(row)
        row.is_default = True
        record(session, actor, "framework", row.id, "make_default")
    session.flush()
    return row


# ------------------------------------------------------------------------------ settings


@dataclass(frozen=True)
class HandoffPolicy:
    first_touch_minutes: int
    business_hours: dict[str, Any]
    use_lead_timezone: bool
    holidays_from_lead_country: bool
    rejection_reasons: tuple[str, ...]

    def calendar(self, lead_timezone: str | None, lead_country: str | None) -> BusinessCalendar:
        """The business calendar on the lead's clock (its time zone when known and valid)."""

        doc = dict(self.business_hours)
        if self.holidays_from_lead_country and lead_country:
            doc["holiday_country"] = lead_country
        tz = lead_timezone if self.use_lead_timezone and lead_timezone else None
        try:
            return calendar_from_dict(doc, timezone=tz)
        except CalendarError:
            # An unknown zone on a lead, or no holiday calendar for its country: the default clock.
            return calendar_from_dict(self.business_hours)

    def to_dict(self) -> dict[str, Any]:
        return {
            "first_touch_minutes": self.first_touch_minutes,
            "business_hours": self.business_hours,
            "use_lead_timezone": self.use_lead_timezone,
            "holidays_from_lead_country": self.holidays_from_lead_country,
            "rejection_reasons": list(self.rejection_reasons),
        }


def parse_handoff(doc: Mapping[str, Any]) -> HandoffPolicy:
    known = set(DEFAULT_SETTINGS["handoff"])
    unknown = sorted(set(doc) - known)
    if unknown:
        raise InvalidInput(
            ["value", unknown[0]], f"is not a handoff setting (known: {', '.join(sorted(known))})"
        )
    merged = {**DEFAULT_SETTINGS["handoff"], **doc}
    minutes = merged["first_touch_minutes"]
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= 60 * 24 * 30:
        raise InvalidInput(["value", "first_touch_minutes"], "must be an integer from 1 to 43200")
    if not isinstance(merged["business_hours"], Mapping):
        raise InvalidInput(["value", "business_hours"], "must be an object")
    try:
        cal = calendar_from_dict(merged["business_hours"])
    except CalendarError as exc:
        raise InvalidInput(["value", "business_hours", exc.field], exc.message) from None
    for flag in ("use_lead_timezone", "holidays_from_lead_country"):
        if not isinstance(merged[flag], bool):
            raise InvalidInput(["value", flag], "must be true or false")
    reasons = merged["rejection_reasons"]
    if not isinstance(reasons, list) or not reasons:
        raise InvalidInput(["value", "rejection_reasons"], "must be a non-empty list of reason keys")
    try:
        keys = tuple(core._key(r, ["value", "rejection_reasons", i]) for i, r in enumerate(reasons))
    except core.DefinitionError as exc:
        raise _invalid(exc) from None
    return HandoffPolicy(
        minutes, cal.to_dict(), merged["use_lead_timezone"], merged["holidays_from_lead_country"], keys
    )


def _setting(session: Session, key: str) -> QualificationSetting | None:
    return session.get(QualificationSetting, key)


def handoff_policy(session: Session) -> HandoffPolicy:
    cached = session.info.get("qualification.handoff")
    if isinstance(cached, HandoffPolicy):
        return cached
    row = _setting(session, "handoff")
    policy = parse_handoff(row.value if row else {})
    session.info["qualification.handoff"] = policy
    return policy


def icp(session: Session) -> core.ICP:
    row = _setting(session, "icp")
    return core.parse_icp(row.value if row else DEFAULT_SETTINGS["icp"])


def get_settings(session: Session, actor: Principal) -> dict[str, Any]:
    actor.require(Perm.LEADS_READ)
    out: dict[str, Any] = {"handoff": handoff_policy(session).to_dict(), "icp": icp(session).to_dict()}
    for key in out:
        row = _setting(session, key)
        out[key]["version"] = row.version if row else 0
    return out


def put_setting(
    session: Session,
    actor: Principal,
    key: str,
    value: Mapping[str, Any],
    *,
    expected_version: int | None = None,
) -> dict[str, Any]:
    _require_admin(actor)
    if key not in DEFAULT_SETTINGS:
        raise InvalidInput("key", f"must be one of {', '.join(DEFAULT_SETTINGS)}")
    if not isinstance(value, Mapping):
        raise InvalidInput("value", "must be an object")
    if key == "handoff":
        doc = parse_handoff(value).to_dict()
    else:
        try:
            doc = core.parse_icp(value).to_dict()
        except core.DefinitionError as exc:
            raise _invalid(exc, "value") from None
    row = _setting(session, key)
    current = row.version if row else 0
    if expected_version is not None and expected_version != current:
        raise StaleVersion(f"setting {key} was changed by someone else; reload and retry")
    before = row.value if row else None
    if row is None:
        row = QualificationSetting(key=key, value=doc, version=1, updated_at=utcnow())
        session.add(row)
    else:
        row.value, row.version, row.updated_at = doc, row.version + 1, utcnow()
    session.flush()
    session.info.pop("qualification.handoff", None)
    record(session, actor, "qualification_setting", 0, "update", before=before, after={key: doc}, reason=key)
    return {**doc, "version": row.version}
