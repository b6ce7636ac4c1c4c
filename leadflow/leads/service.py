"""Lead use cases: capture, dedupe, update, stage transitions, merge, listing and history.

Each function runs inside the caller's transaction (``Database.transaction()``), writes the audit
trail in that same transaction, and enforces the actor's rights and record visibility here, in
the service layer, so no route can bypass them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Integer,
    Select,
    Text,
    any_,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from leadflow.audit.models import AuditEntry
from leadflow.audit.service import changes, record, record_many
from leadflow.auth.models import Role
from leadflow.auth.ownership import can_see_owner, owner_visibility, require_assignable_owner
from leadflow.auth.principal import Perm, Principal
from leadflow.core import lifecycle
from leadflow.core.contact import ContactError, normalize_country
from leadflow.core.identity import NormalizedLead, normalize_lead
from leadflow.core.lifecycle import BadReason, Evidence, Origin, Stage
from leadflow.db.base import Base, sqlite_time, utcnow
from leadflow.db.pagination import Page, keyset, page_of
from leadflow.errors import Duplicate, Forbidden, InvalidInput, NotFound, StaleVersion
from leadflow.events import emit, emit_many
from leadflow.leads.models import Account, Activity, Lead, StageChange
from leadflow.scoring.models import LeadScore

SNAPSHOT_FIELDS = (
    "first_name",
    "last_name",
    "email",
    "phone",
    "job_title",
    "seniority",
    "department",
    "company",
    "country",
    "timezone",
    "source",
    "campaign",
    "origin",
    "owner_id",
    "account_id",
    "stage",
    "status_reason",
    "bad_reason",
    "consent",
    "unsubscribed",
)
# Fields a client may set on create/update (stage moves only through transitions).
EDITABLE = frozenset(
    {
        "first_name",
        "last_name",
        "email",
        "phone",
        "job_title",
        "seniority",
        "department",
        "company",
        "website",
        "industry",
        "employee_count",
        "annual_revenue",
        "country",
        "timezone",
        "source",
        "campaign",
        "origin",
        "owner_id",
        "account_id",
        "consent",
        "unsubscribed",
        "attributes",
    }
)
SORTABLE = {
    "id": Lead.id,
    "created_at": Lead.created_at,
    "updated_at": Lead.updated_at,
    "last_name": Lead.last_name,
    "stage_changed_at": Lead.stage_changed_at,
}


def snapshot(lead: Lead) -> dict[str, Any]:
    return {f: getattr(lead, f) for f in SNAPSHOT_FIELDS}


# --------------------------------------------------------------------------------- visibility


def visibility_clause(session: Session, actor: Principal) -> ColumnElement[bool] | None:
    """The WHERE clause limiting leads to what ``actor`` may see; None means everything."""

    return owner_visibility(actor, Lead.owner_id)


def _can_see(session: Session, actor: Principal, lead: Lead) -> bool:
    return can_see_owner(session, actor, lead.owner_id)


def get_lead(session: Session, actor: Principal, lead_id: int, *, for_update: bool = False) -> Lead:
    """A lead the actor may see. An invisible lead answers 404, not 403, so ids leak nothing."""

    actor.require(Perm.LEADS_READ)
    lead = session.get(Lead, lead_id, with_for_update=for_update)
    if lead is None or not _can_see(session, actor, lead):
        raise NotFound(f"lead {lead_id} not found")
    return lead


def get_leads(session: Session, actor: Principal, lead_ids: Iterable[int]) -> dict[int, Lead]:
    """:func:`get_lead` for many ids (one query per 2,000): the leads the actor may see, by id;
    an unknown or invisible id is left out."""

    actor.require(Perm.LEADS_READ)
    ids = sorted(set(lead_ids))
    vis = visibility_clause(session, actor)
    out: dict[int, Lead] = {}
    for start in range(0, len(ids), 2000):
        stmt = select(Lead).where(Lead.id.in_(ids[start : start + 2000]))
        if vis is not None:
            stmt = stmt.where(vis)
        out.update((lead.id, lead) for lead in session.scalars(stmt))
    return out


def _check_owner(session: Session, actor: Principal, owner_id: int | None) -> None:
    require_assignable_owner(session, actor, owner_id, "leads")


# --------------------------------------------------------------------------------- accounts


def resolve_account(session: Session, actor: Principal, norm: NormalizedLead) -> int | None:
    """Find or create the lead's company account: by company domain first (never a free-mail
    domain), then by normalized company name."""

    account: Account | None = None
    if norm.account_domain:
        account = session.scalar(select(Account).where(Account.domain == norm.account_domain))
    if account is None and norm.company_key:
        account = session.scalar(
            select(Account).where(Account.name_key == norm.company_key).order_by(Account.id).limit(1)
        )
        if account is not None and account.domain is None and norm.account_domain:
            account.domain = norm.account_domain
    if account is None:
        if not (norm.account_domain or norm.company_key):
            return None
        name = norm.values.get("company") or (norm.account_domain or "").split(".")[0].capitalize()
        account = Account(
            name=name,
            name_key=norm.company_key or (norm.account_domain or ""),
            domain=norm.account_domain,
            **norm.account_values,
        )
        session.add(account)
        session.flush()
        record(
            session, actor, "account", account.id, "create", after={"name": name, "domain": account.domain}
        )
    else:
        # Fill only empty firmographics: a lead's form never overwrites curated account data.
        for key, value in norm.account_values.items():
            if getattr(account, key) is None:
                setattr(account, key, value)
    return account.id


# --------------------------------------------------------------------------------- create


# Column limits normalize_lead does not check: beyond them the database refuses the row (a 500
# on PostgreSQL, an OverflowError on SQLite) or, for text on SQLite, silently stores too much.
_MAX_NUMBER = {"employee_count": 2**31 - 1, "annual_revenue": 2**63 - 1}
_MAX_PHONE_RAW = 64


def _check_column_limits(norm: NormalizedLead) -> None:
    for key, limit in _MAX_NUMBER.items():
        number = norm.account_values.get(key)
        if number is not None and number > limit:
            norm.errors.append((key, f"must be at most {limit}"))
    if len(norm.values.get("phone_raw") or "") > _MAX_PHONE_RAW:
        norm.errors.append(("phone", f"is longer than {_MAX_PHONE_RAW} characters"))


def _raise_field_errors(norm: NormalizedLead, prefix: Sequence[str | int] = ()) -> None:
    _check_column_limits(norm)
    if norm.errors:
        field_name, reason = norm.errors[0]
        raise InvalidInput(
            [*prefix, field_name],
            reason,
            errors=[{"loc": [*prefix, f], "msg": r} for f, r in norm.errors],
        )


def _unknown_fields(data: Mapping[str, Any]) -> None:
    unknown = sorted(set(data) - EDITABLE)
    if unknown:
        raise InvalidInput(unknown[0], f"is not a lead field (known: {', '.join(sorted(EDITABLE))})")


@dataclass
class CreateResult:
    lead: Lead
    created: bool


def create_lead(
    session: Session,
    actor: Principal,
    data: Mapping[str, Any],
    *,
    stage: Stage = Stage.NEW,
    evidence: Evidence | None = None,
    reason: str | None = None,
    bad_reason: BadReason | None = None,
    on_duplicate: Literal["error", "update"] = "error",
) -> CreateResult:
    """Capture one lead. An existing lead with the same normalized email is a duplicate: an
    error (409 naming it) or, with ``on_duplicate="update"``, filled in and returned."""

    actor.require(Perm.LEADS_WRITE)
    # Starting a lead at a sales stage is the same decision as moving it there (imports excepted:
    # they carry another system's history).
    if not actor.can_move_to(stage) and not isinstance(evidence, lifecycle.Imported):
        raise Forbidden(f"role {actor.role.value} cannot create leads at {stage.value}; sales does that")
    _unknown_fields(data)
    norm = normalize_lead(data)
    _raise_field_errors(norm)
    values = norm.values
    email = values.get("email")
    if email:
        existing = session.scalar(select(Lead).where(Lead.email == email))
        if existing is not None:
            if not _can_see(session, actor, existing):
                # Say that the address is taken (the unique key is a fact the caller hits anyway)
                # but not which record holds it: the lead belongs to someone the caller can't see.
                raise Duplicate(f"a lead with email {email} exists and is owned by another team")
            if on_duplicate == "error":
                raise Duplicate(f"a lead with email {email} exists", lead_id=existing.id)
            _merge_values(session, actor, existing, norm, data, reason="captured again")
            return CreateResult(existing, False)

    origin = Origin(
        values.get("origin") or (Origin.SALES if actor.role is Role.SALES_REP else Origin.MARKETING)
    )
    values["origin"] = origin.value
    if actor.role is Role.SALES_REP and "owner_id" not in data:
        values["owner_id"] = actor.user_id
    elif "owner_id" in data:
        _check_owner(session, actor, data["owner_id"])
        values["owner_id"] = data["owner_id"]
    if "account_id" in data and data["account_id"] is not None:
        if session.get(Account, data["account_id"]) is None:
            raise InvalidInput("account_id", f"no account with id {data['account_id']}")
        values["account_id"] = data["account_id"]
    else:
        values["account_id"] = resolve_account(session, actor, norm)
    if data.get("attributes") is not None:
        if not isinstance(data["attributes"], dict):
            raise InvalidInput("attributes", "must be an object")
        values["attributes"] = data["attributes"]
    try:
        move = lifecycle.initial(
            stage, origin=origin, evidence=evidence, reason=reason, bad_reason=bad_reason
        )
    except lifecycle.LifecycleError:
        raise
    now = utcnow()
    lead = Lead(
        **values,
        stage=move.target.value,
        status_reason=move.reason,
        bad_reason=move.bad_reason.value if move.bad_reason else None,
        created_at=now,
        updated_at=now,
        stage_changed_at=now,
        version=1,
    )
    session.add(lead)
    session.flush()
    ev = lifecycle.evidence_to_dict(move.evidence)
    session.add(
        StageChange(
            lead_id=lead.id,
            from_stage=None,
            to_stage=move.target.value,
            at=now,
            actor_id=actor.user_id,
            reason=move.reason,
            evidence=ev,
        )
    )
    record(session, actor, "lead", lead.id, "create", after=snapshot(lead), reason=reason, evidence=ev)
    emit(session, "lead.created", lead_id=lead.id, stage=lead.stage)
    return CreateResult(lead, True)


def _merge_values(
    session: Session,
    actor: Principal,
    lead: Lead,
    norm: NormalizedLead,
    data: Mapping[str, Any],
    *,
    reason: str,
) -> None:
    """A lead captured again: fill the fields it lacks, never overwrite what sales curated."""

    before = snapshot(lead)
    for key, value in norm.values.items():
        if value is not None and getattr(lead, key, None) in (None, "") and key != "bad_candidate_reasons":
            setattr(lead, key, value)
    if lead.account_id is None:
        lead.account_id = resolve_account(session, actor, norm)
    b, a = changes(before, snapshot(lead))
    if a:
        lead.version += 1
        lead.updated_at = utcnow()
        record(session, actor, "lead", lead.id, "update", before=b, after=a, reason=reason)


@dataclass
class BatchItemResult:
    index: int
    status: Literal["created", "updated", "error"]
    lead_id: int | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)


def create_leads_batch(
    session: Session,
    actor: Principal,
    items: Sequence[Mapping[str, Any]],
    *,
    on_duplicate: Literal["error", "update"] = "update",
) -> list[BatchItemResult]:
    """Create many leads; each item is all-or-nothing (a savepoint), and one bad item does not
    stop the others. Results come back in input order."""

    actor.require(Perm.LEADS_WRITE)
    results: list[BatchItemResult] = []
    for i, item in enumerate(items):
        try:
            with session.begin_nested():
                res = create_lead(session, actor, item, on_duplicate=on_duplicate)
            results.append(BatchItemResult(i, "created" if res.created else "updated", res.lead.id))
        except InvalidInput as exc:
            errs = exc.extra.get("errors") or [{"loc": exc.loc, "msg": exc.reason}]
            results.append(BatchItemResult(i, "error", None, errs))
        except Duplicate as exc:
            results.append(
                BatchItemResult(
                    i, "error", exc.extra.get("lead_id"), [{"loc": ["email"], "msg": exc.message}]
                )
            )
        except lifecycle.LifecycleError as exc:
            results.append(BatchItemResult(i, "error", None, [{"loc": ["stage"], "msg": exc.message}]))
        except Forbidden as exc:  # e.g. an owner this actor may not assign: that item only
            loc = [exc.extra["field"]] if "field" in exc.extra else []
            results.append(BatchItemResult(i, "error", None, [{"loc": loc, "msg": exc.message}]))
    return results


# --------------------------------------------------------------------------------- update


def _check_version(lead: Lead, expected: int | None) -> None:
    if expected is not None and expected != lead.version:
        raise StaleVersion(
            f"lead {lead.id} was changed by someone else (your version {expected}, current {lead.version}); "
            "reload and retry",
            current_version=lead.version,
        )


def _bump(session: Session, lead: Lead, expected: int) -> None:
    """Compare-and-set on version in SQL, so two concurrent writers cannot both win even when
    both read the same version before either committed."""

    now = utcnow()
    res = session.execute(
        update(Lead)
        .where(Lead.id == lead.id, Lead.version == expected)
        .values(version=expected + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if res.rowcount != 1:  # type: ignore[attr-defined]
        session.expire(lead)
        raise StaleVersion(f"lead {lead.id} was changed by someone else; reload and retry")
    lead.version = expected + 1
    lead.updated_at = now


def update_lead(
    session: Session,
    actor: Principal,
    lead_id: int,
    data: Mapping[str, Any],
    *,
    expected_version: int,
    reason: str | None = None,
) -> Lead:
    actor.require(Perm.LEADS_WRITE)
    lead = get_lead(session, actor, lead_id)
    if lead.merged_into_id is not None:
        raise InvalidInput("lead_id", f"lead {lead_id} was merged into lead {lead.merged_into_id}")
    _check_version(lead, expected_version)
    _unknown_fields(data)
    raw = dict(data)
    if "phone" in raw and "country" not in raw and lead.country:
        raw["country"] = lead.country  # a national number is read in the lead's country
    norm = normalize_lead(raw, require_contact=False)
    _raise_field_errors(norm)
    values = norm.values
    # Bad-lead signals describe the whole contact record, not just the fields of this update.
    values.pop("bad_candidate_reasons", None)
    if any(k in data for k in ("email", "phone", "first_name", "last_name", "country")):
        whole = {
            "email": data.get("email", lead.email),
            "phone": data.get("phone", lead.phone_raw),
            "first_name": data.get("first_name", lead.first_name),
            "last_name": data.get("last_name", lead.last_name),
            "country": raw.get("country", lead.country),
        }
        values["bad_candidate_reasons"] = normalize_lead(whole, require_contact=False).values.get(
            "bad_candidate_reasons"
        )
    if "email" in data and values.get("email") and values["email"] != lead.email:
        other_lead = session.scalar(select(Lead).where(Lead.email == values["email"], Lead.id != lead.id))
        if other_lead is not None and not _can_see(session, actor, other_lead):
            raise Duplicate(f"a lead with email {values['email']} exists and is owned by another team")
        if other_lead is not None:
            other = other_lead.id
            raise Duplicate(
                f"lead {other} already has email {values['email']}; merge them instead", lead_id=other
            )
    if "email" in data and not values.get("email") and not (values.get("phone_raw") or lead.phone_raw):
        raise InvalidInput("email", "an email or a phone number is required")
    if "owner_id" in data:
        _check_owner(session, actor, data["owner_id"])
        values["owner_id"] = data["owner_id"]
    if "account_id" in data:
        if data["account_id"] is not None and session.get(Account, data["account_id"]) is None:
            raise InvalidInput("account_id", f"no account with id {data['account_id']}")
        values["account_id"] = data["account_id"]
    elif norm.account_domain or norm.company_key:
        values["account_id"] = resolve_account(session, actor, norm)
    if "attributes" in data:
        if data["attributes"] is not None and not isinstance(data["attributes"], dict):
            raise InvalidInput("attributes", "must be an object")
        values["attributes"] = data["attributes"]
    before = {**snapshot(lead), "attributes": lead.attributes}
    for key, value in values.items():
        setattr(lead, key, value)
    # attributes are audited here too (they are not in the snapshot other entries carry).
    b, a = changes(before, {**snapshot(lead), "attributes": lead.attributes})
    if not a:
        return lead
    _bump(session, lead, expected_version)
    record(session, actor, "lead", lead.id, "update", before=b, after=a, reason=reason)
    if "owner_id" in a:
        emit(session, "lead.assigned", lead_id=lead.id, owner_id=lead.owner_id, previous=b.get("owner_id"))
    return lead


# --------------------------------------------------------------------------------- transitions


def transition_lead(
    session: Session,
    actor: Principal,
    lead_id: int,
    target: Stage,
    *,
    evidence: Evidence | None = None,
    reason: str | None = None,
    bad_reason: BadReason | None = None,
    expected_version: int | None = None,
    at: datetime | None = None,
) -> Lead:
    """Move a lead to another lifecycle stage, with the evidence the move requires.

    Raises lifecycle.IllegalTransition / MissingEvidence (409 with the legal moves listed),
    StaleVersion, Forbidden (marketing cannot make sales moves)."""

    actor.require(Perm.LEADS_TRANSITION)
    lead = get_lead(session, actor, lead_id)
    if lead.merged_into_id is not None:
        raise InvalidInput("lead_id", f"lead {lead_id} was merged into lead {lead.merged_into_id}")
    _check_version(lead, expected_version)
    if not actor.can_move_to(target):
        raise Forbidden(f"role {actor.role.value} cannot move leads to {target.value}; sales does that")
    move = lifecycle.transition(
        Stage(lead.stage),
        target,
        origin=Origin(lead.origin),
        evidence=evidence,
        reason=reason,
        bad_reason=bad_reason,
    )
    _check_evidence_records(session, lead, move.evidence)
    before = {"stage": lead.stage, "status_reason": lead.status_reason, "bad_reason": lead.bad_reason}
    when = at or utcnow()
    _bump(session, lead, lead.version)
    lead.stage = move.target.value
    lead.status_reason = move.reason
    lead.bad_reason = move.bad_reason.value if move.bad_reason else None
    lead.stage_changed_at = when
    ev = lifecycle.evidence_to_dict(move.evidence)
    session.add(
        StageChange(
            lead_id=lead.id,
            from_stage=before["stage"],
            to_stage=lead.stage,
            at=when,
            actor_id=actor.user_id,
            reason=move.reason,
            evidence=ev,
        )
    )
    after = {"stage": lead.stage, "status_reason": lead.status_reason, "bad_reason": lead.bad_reason}
    record(
        session,
        actor,
        "lead",
        lead.id,
        "stage_change",
        before=before,
        after=after,
        reason=reason,
        evidence=ev,
    )
    emit(session, "lead.stage_changed", lead_id=lead.id, source=before["stage"], target=lead.stage)
    return lead


def transition_many(
    session: Session,
    actor: Principal,
    moves: Sequence[tuple[Lead, Evidence | None, str | None]],
    target: Stage,
    *,
    at: datetime | None = None,
) -> None:
    """:func:`transition_lead` for many leads at once (loaded in this session, visible to the
    actor), set-based: one UPDATE with a compare-and-set on each lead's version, the stage
    changes and audit entries inserted together, and one ``lead.stage_changed`` per lead (its
    in-transaction subscribers run per lead, as for a single move, or once with the whole list
    when they subscribe to lists: the sales handoff). The same records as one
    :func:`transition_lead` per lead. Raises as transition_lead does for the first lead whose
    move is not legal, and StaleVersion when any lead changed meanwhile: run it in a savepoint."""

    actor.require(Perm.LEADS_TRANSITION)
    if not actor.can_move_to(target):
        raise Forbidden(f"role {actor.role.value} cannot move leads to {target.value}; sales does that")
    if not moves:
        return
    when = at or utcnow()
    now = utcnow()
    planned = []
    given: dict[int, str | None] = {}
    for lead, evidence, reason in moves:
        given[lead.id] = reason
        if lead.merged_into_id is not None:
            raise InvalidInput("lead_id", f"lead {lead.id} was merged into lead {lead.merged_into_id}")
        _check_evidence_records(session, lead, evidence)
        move = lifecycle.transition(
            Stage(lead.stage), target, origin=Origin(lead.origin), evidence=evidence, reason=reason
        )
        planned.append((lead, move))
    ids = [lead.id for lead, _ in planned]
    versions = [lead.version for lead, _ in planned]
    reasons = [move.reason for _, move in planned]
    if session.get_bind().dialect.name == "postgresql":
        sql = (
            "UPDATE leads SET version = leads.version + 1, updated_at = :now, stage = :stage, "
            "status_reason = v.reason, bad_reason = NULL, stage_changed_at = :when "
            "FROM unnest(CAST(:ids AS integer[]), CAST(:vers AS integer[]), CAST(:reasons AS text[])) "
            "AS v(id, ver, reason) WHERE leads.id = v.id AND leads.version = v.ver RETURNING leads.id"
        )
        params: dict[str, Any] = {"ids": ids, "vers": versions, "reasons": reasons, "now": now, "when": when}
    else:  # SQLite keeps UTCDateTime as naive UTC text; the rows travel as one JSON parameter
        sql = (
            "UPDATE leads SET version = leads.version + 1, updated_at = :now, stage = :stage, "
            "status_reason = v.reason, bad_reason = NULL, stage_changed_at = :when "
            "FROM (SELECT json_extract(value, '$[0]') AS id, json_extract(value, '$[1]') AS ver, "
            "json_extract(value, '$[2]') AS reason FROM json_each(:rows)) AS v "
            "WHERE leads.id = v.id AND leads.version = v.ver RETURNING leads.id"
        )
        params = {
            "rows": json.dumps([list(r) for r in zip(ids, versions, reasons, strict=True)]),
            "now": sqlite_time(now),
            "when": sqlite_time(when),
        }
    moved = set(session.execute(text(sql), {**params, "stage": target.value}).scalars())
    if len(moved) != len(ids):
        raise StaleVersion(f"{len(ids) - len(moved)} of {len(ids)} leads were changed by someone else; retry")
    changes_rows: list[dict[str, Any]] = []
    audit_rows: list[dict[str, Any]] = []
    for lead, move in planned:
        before = {"stage": lead.stage, "status_reason": lead.status_reason, "bad_reason": lead.bad_reason}
        # The loaded objects take the values written (without becoming dirty: no second UPDATE).
        for key, value in (
            ("version", lead.version + 1),
            ("updated_at", now),
            ("stage", move.target.value),
            ("status_reason", move.reason),
            ("bad_reason", None),
            ("stage_changed_at", when),
        ):
            set_committed_value(lead, key, value)
        ev = lifecycle.evidence_to_dict(move.evidence)
        changes_rows.append(
            {
                "lead_id": lead.id,
                "from_stage": before["stage"],
                "to_stage": lead.stage,
                "at": when,
                "actor_id": actor.user_id,
                "reason": move.reason,
                "evidence": ev,
            }
        )
        after = {"stage": lead.stage, "status_reason": lead.status_reason, "bad_reason": lead.bad_reason}
        audit_rows.append(
            {
                "entity_type": "lead",
                "entity_id": lead.id,
                "action": "stage_change",
                "before": before,
                "after": after,
                "reason": given[lead.id],
                "evidence": ev,
            }
        )
    session.execute(insert(StageChange), changes_rows)
    record_many(session, actor, audit_rows)
    # One list: in-transaction subscribers that take the list (the sales handoff) act on the
    # whole set at once.
    emit_many(
        session,
        "lead.stage_changed",
        [{"lead_id": r["lead_id"], "source": r["from_stage"], "target": target.value} for r in changes_rows],
    )


# Evidence fields naming a stored record: field -> (table, what it is). The record must exist and
# belong to the lead (or a lead merged into it): a stage change justified by another lead's call,
# or by one that was never held, is refused. Tables are looked up in the schema, so this feature
# imports none of theirs.
_EVIDENCE_RECORDS: dict[str, tuple[str, str]] = {
    "assessment_id": ("needs_assessments", "needs assessment"),
    "call_id": ("discovery_calls", "discovery call"),
    "opportunity_id": ("opportunities", "opportunity"),
}


def _check_evidence_records(session: Session, lead: Lead, evidence: Evidence | None) -> None:
    for name, (table_name, what) in _EVIDENCE_RECORDS.items():
        value = getattr(evidence, name, None)
        if value is None:
            continue
        table = Base.metadata.tables.get(table_name)
        if table is None:  # the feature is not installed: nothing to check against
            continue
        loc: list[str | int] = ["evidence", name]
        text = str(value).strip()
        if not text.isdigit() or len(text) > 18:
            raise InvalidInput(loc, f"{what} id must be the id of a stored {what}, got {value!r}")
        owners = [table.c[c] for c in ("lead_id", "contact_lead_id") if c in table.c]
        ids = _history_ids(session, lead)
        found = session.execute(
            select(table.c.id).where(table.c.id == int(text), or_(*(c.in_(ids) for c in owners)))
        ).first()
        if found is None:
            raise InvalidInput(loc, f"lead {lead.id} has no {what} {text}")


# --------------------------------------------------------------------------------- merge

_FUNNEL_RANK = {s: i for i, s in enumerate(lifecycle.FUNNEL)}


def merge_leads(
    session: Session, actor: Principal, winner_id: int, loser_id: int, *, reason: str | None = None
) -> Lead:
    """Merge ``loser`` into ``winner``: the winner keeps its values and gains the loser's where
    it has none; the loser's activities move over; both stage histories and audit trails stay
    readable from the winner; the loser remains as a tombstone pointing at the winner."""

    actor.require(Perm.LEADS_MERGE)
    if winner_id == loser_id:
        raise InvalidInput("loser_id", "cannot merge a lead into itself")
    winner = get_lead(session, actor, winner_id)
    loser = get_lead(session, actor, loser_id)
    for lead in (winner, loser):
        if lead.merged_into_id is not None:
            raise InvalidInput(
                "lead_id", f"lead {lead.id} was already merged into lead {lead.merged_into_id}"
            )
    before_w, before_l = snapshot(winner), snapshot(loser)
    loser_email = loser.email
    loser.email = None  # frees the unique email; the address is kept in the audit trail
    loser.merged_into_id = winner.id
    session.flush()
    for key in SNAPSHOT_FIELDS:
        if key in ("stage", "status_reason", "bad_reason", "email"):
            continue
        if getattr(winner, key) in (None, "") and before_l.get(key) not in (None, ""):
            setattr(winner, key, before_l[key])
    if winner.email is None and loser_email:
        winner.email = loser_email
    if winner.attributes or loser.attributes:
        winner.attributes = {**(loser.attributes or {}), **(winner.attributes or {})}
    moved = session.execute(
        update(Activity)
        .where(Activity.lead_id == loser.id)
        .values(lead_id=winner.id)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    # The further a lead got down the funnel, the more sales knows: keep the further stage.
    w_stage, l_stage = Stage(winner.stage), Stage(loser.stage)
    if l_stage in _FUNNEL_RANK and _FUNNEL_RANK[l_stage] > _FUNNEL_RANK.get(w_stage, -1):
        now = utcnow()
        session.add(
            StageChange(
                lead_id=winner.id,
                from_stage=winner.stage,
                to_stage=loser.stage,
                at=now,
                actor_id=actor.user_id,
                reason=f"merged with lead {loser.id}",
                evidence={"kind": "merge", "lead_id": loser.id},
            )
        )
        winner.stage, winner.status_reason, winner.stage_changed_at = loser.stage, loser.status_reason, now
    # Derived from the events, which now are the winner's: read again on next access.
    session.expire(winner, ["last_activity_at"])
    _bump(session, winner, winner.version)
    _bump(session, loser, loser.version)
    b, a = changes(before_w, snapshot(winner))
    ev = {"kind": "merge", "winner_id": winner.id, "loser_id": loser.id, "activities_moved": moved}
    record(session, actor, "lead", winner.id, "merge", before=b, after=a, reason=reason, evidence=ev)
    record(
        session,
        actor,
        "lead",
        loser.id,
        "merged_into",
        before={"email": loser_email},
        after={"merged_into_id": winner.id},
        reason=reason,
        evidence=ev,
    )
    emit(session, "lead.merged", winner_id=winner.id, loser_id=loser.id)
    return winner


# --------------------------------------------------------------------------------- queries


@dataclass
class LeadFilter:
    stage: list[Stage] | None = None
    owner_id: int | None = None
    unassigned: bool | None = None
    source: str | None = None
    campaign: str | None = None
    account_id: int | None = None
    origin: Origin | None = None
    country: str | None = None
    q: str | None = None
    email: str | None = None
    bad_candidate: bool | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    updated_after: datetime | None = None
    include_merged: bool = False
    # Current score (lead_scores.total) range, inclusive; a lead never scored matches neither.
    score_min: float | None = None
    score_max: float | None = None
    # Further conditions on Lead composed by another feature (e.g. the web inbox's handoff SLA
    # state), so it filters, paginates and counts with the same query.
    where: tuple[ColumnElement[bool], ...] = ()


def country_filter(value: str) -> str:
    """A filter value as stored: "Germany", "DEU" and "de" all mean DE; unknown is a 422."""

    try:
        return normalize_country(value)
    except ContactError as exc:
        raise InvalidInput("country", exc.message) from None


def _apply_filter(stmt: Select[Any], f: LeadFilter) -> Select[Any]:
    if f.stage:
        stmt = stmt.where(Lead.stage.in_([s.value for s in f.stage]))
    if f.owner_id is not None:
        stmt = stmt.where(Lead.owner_id == f.owner_id)
    if f.unassigned is not None:
        stmt = stmt.where(Lead.owner_id.is_(None) if f.unassigned else Lead.owner_id.is_not(None))
    if f.source:
        stmt = stmt.where(Lead.source == f.source)
    if f.campaign:
        stmt = stmt.where(Lead.campaign == f.campaign)
    if f.account_id is not None:
        stmt = stmt.where(Lead.account_id == f.account_id)
    if f.origin is not None:
        stmt = stmt.where(Lead.origin == f.origin.value)
    if f.country:
        stmt = stmt.where(Lead.country == country_filter(f.country))
    if f.email:
        stmt = stmt.where(Lead.email == f.email.strip().lower())
    if f.q:
        term = f.q.strip().lower()
        # A prefix search: "%" and "_" typed by the user are characters, not wildcards.
        like = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(
            or_(
                Lead.email.like(like, escape="\\"),
                func.lower(Lead.last_name).like(like, escape="\\"),
                func.lower(Lead.first_name).like(like, escape="\\"),
                func.lower(Lead.company).like(like, escape="\\"),
            )
        )
    if f.bad_candidate is not None:
        cond = Lead.bad_candidate_reasons.is_not(None)
        stmt = stmt.where(cond if f.bad_candidate else ~cond)
    if f.created_after:
        stmt = stmt.where(Lead.created_at >= f.created_after)
    if f.created_before:
        stmt = stmt.where(Lead.created_at < f.created_before)
    if f.updated_after:
        stmt = stmt.where(Lead.updated_at >= f.updated_after)
    if not f.include_merged:
        stmt = stmt.where(Lead.merged_into_id.is_(None))
    if f.score_min is not None or f.score_max is not None:
        scored = select(LeadScore.lead_id)
        if f.score_min is not None:
            scored = scored.where(LeadScore.total >= f.score_min)
        if f.score_max is not None:
            scored = scored.where(LeadScore.total <= f.score_max)
        stmt = stmt.where(Lead.id.in_(scored))
    for extra in f.where:
        stmt = stmt.where(extra)
    return stmt


def list_leads(
    session: Session,
    actor: Principal,
    f: LeadFilter,
    *,
    sort: str = "id",
    descending: bool = False,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Lead]:
    actor.require(Perm.LEADS_READ)
    if sort not in SORTABLE:
        raise InvalidInput("sort", f"must be one of {', '.join(SORTABLE)}")
    if not 1 <= limit <= 1000:
        raise InvalidInput("limit", "must be between 1 and 1000")
    stmt = _apply_filter(select(Lead), f)
    vis = visibility_clause(session, actor)
    if vis is not None:
        stmt = stmt.where(vis)
    column = SORTABLE[sort]
    stmt = keyset(stmt, column, Lead.id, descending=descending, cursor=cursor, limit=limit)
    rows = list(session.scalars(stmt))
    return page_of(rows, limit, lambda r: (getattr(r, column.key), r.id))


def count_leads(session: Session, actor: Principal, f: LeadFilter, *, cap: int | None = None) -> int:
    """How many leads match; with ``cap``, counting stops there (a count of a million rows costs
    seconds, and "10,000+" tells a person as much)."""

    actor.require(Perm.LEADS_READ)
    if cap is not None:
        inner = _apply_filter(select(Lead.id), f)
        vis = visibility_clause(session, actor)
        if vis is not None:
            inner = inner.where(vis)
        return int(session.scalar(select(func.count()).select_from(inner.limit(cap).subquery())) or 0)
    stmt = _apply_filter(select(func.count()).select_from(Lead), f)
    vis = visibility_clause(session, actor)
    if vis is not None:
        stmt = stmt.where(vis)
    return int(session.scalar(stmt) or 0)


def _history_ids(session: Session, lead: Lead) -> list[int]:
    """The lead and every lead merged into it (recursively): their histories are one."""

    ids = [lead.id]
    frontier = [lead.id]
    while frontier:
        frontier = list(session.scalars(select(Lead.id).where(Lead.merged_into_id.in_(frontier))))
        ids.extend(frontier)
    return ids


# Bulk imports record the leads one transaction creates in one audit entry (entity_type
# IMPORT_BATCH, entity_id the smallest lead id, ``after`` from import_batch_after): one entry per
# lead cost a bulk import more SQLite time than the lead itself. lead_audit shows each lead's part
# of it as that lead's own "create" entry.
IMPORT_BATCH = "leads"


def import_batch_after(import_id: int, created: Sequence[tuple[int, int]]) -> dict[str, Any]:
    """``after`` of a batch entry: the import, the leads' ids as ``[first, last]`` ranges, and
    each lead's file line in id order (``created`` holds (lead id, line) sorted by id)."""

    ranges: list[list[int]] = []
    for lead_id, _ in created:
        if ranges and ranges[-1][1] == lead_id - 1:
            ranges[-1][1] = lead_id
        else:
            ranges.append([lead_id, lead_id])
    return {"import_id": import_id, "ids": ranges, "lines": [line for _, line in created]}


def _batch_line(after: dict[str, Any] | None, lead_id: int) -> int | None:
    """The file line of ``lead_id`` in a batch entry, or None when the entry does not hold it."""

    if not after:
        return None
    offset = 0
    for first, last in after.get("ids", ()):
        if first <= lead_id <= last:
            lines: list[int] = after.get("lines", [])
            index = offset + lead_id - first
            return lines[index] if index < len(lines) else None
        offset += last - first + 1
    return None


def import_creations(session: Session, ids: Sequence[int]) -> list[AuditEntry]:
    """Each imported lead's "create" entry, cut out of its import's batch entry (not stored:
    transient rows shaped like a lead's own entry, with the batch entry's id, time, actor and
    reason, the lead's file line and its first stage's evidence)."""

    out: list[AuditEntry] = []
    imported = session.execute(
        select(Lead.id, Lead.import_id).where(Lead.id.in_(ids), Lead.import_id.is_not(None))
    )
    for lead_id, import_id in imported:
        # The import's batch holding the lead has the largest first id <= the lead's id (an
        # import's transactions take ids in turn); concurrent imports interleave, so the
        # import's own reason picks its entries.
        batch = session.scalars(
            select(AuditEntry)
            .where(
                AuditEntry.entity_type == IMPORT_BATCH,
                AuditEntry.entity_id <= lead_id,
                AuditEntry.reason == f"import #{import_id}",
            )
            .order_by(AuditEntry.entity_id.desc(), AuditEntry.id.desc())
            .limit(1)
        ).first()
        line = _batch_line(batch.after, lead_id) if batch is not None else None
        if batch is None or line is None:
            continue
        first_stage = session.scalars(
            select(StageChange.evidence)
            .where(StageChange.lead_id == lead_id)
            .order_by(StageChange.at, StageChange.id)
            .limit(1)
        ).first()
        out.append(
            AuditEntry(
                id=batch.id,
                at=batch.at,
                actor_id=batch.actor_id,
                actor_label=batch.actor_label,
                entity_type="lead",
                entity_id=lead_id,
                action="create",
                before=None,
                after={"line": line, "import_id": import_id},
                reason=batch.reason,
                evidence=first_stage,
            )
        )
    return out


def lead_audit(session: Session, actor: Principal, lead_id: int, *, limit: int = 500) -> list[AuditEntry]:
    actor.require(Perm.AUDIT_READ)
    lead = get_lead(session, actor, lead_id)
    ids = _history_ids(session, lead)
    stmt = (
        select(AuditEntry)
        .where(AuditEntry.entity_type == "lead", AuditEntry.entity_id.in_(ids))
        .order_by(AuditEntry.id)
        .limit(limit)
    )
    entries = [*session.scalars(stmt), *import_creations(session, ids)]
    return sorted(entries, key=lambda e: e.id)[:limit]


def stage_history(session: Session, actor: Principal, lead_id: int) -> list[StageChange]:
    lead = get_lead(session, actor, lead_id)
    ids = _history_ids(session, lead)
    stmt = select(StageChange).where(StageChange.lead_id.in_(ids)).order_by(StageChange.at, StageChange.id)
    return list(session.scalars(stmt))


def in_values(session: Session, column: Any, values: Sequence[Any]) -> ColumnElement[bool]:
    """``column IN (values)`` with the values as one parameter (a JSON array on SQLite, an array
    on PostgreSQL): thousands of values without one bound parameter each to build."""

    if session.get_bind().dialect.name == "postgresql":
        kind = Integer if all(isinstance(v, int) for v in values) else Text
        return column == any_(bindparam(None, list(values), type_=ARRAY(kind)))  # type: ignore[no-any-return]
    rows: Select[Any] = select(literal_column("value")).select_from(
        func.json_each(bindparam(None, json.dumps(list(values))))
    )
    return column.in_(rows)  # type: ignore[no-any-return]


def visible_lead_ids(session: Session, actor: Principal, ids: Sequence[int]) -> set[int]:
    """Which of ``ids`` the actor may see (for bulk paths such as event ingest)."""

    if not ids:
        return set()
    stmt = select(Lead.id).where(in_values(session, Lead.id, ids))
    vis = visibility_clause(session, actor)
    if vis is not None:
        stmt = stmt.where(vis)
    return set(session.scalars(stmt))


def delete_lead(session: Session, actor: Principal, lead_id: int, *, reason: str | None = None) -> None:
    """Erase a lead and the leads merged into it: their rows, activities and stage history go;
    the audit trail keeps a tombstone per lead with no personal data (earlier entries about the
    leads are redacted)."""

    actor.require(Perm.LEADS_DELETE)
    lead = get_lead(session, actor, lead_id)
    # Leads merged into this one are the same person: they are erased with it, or erasing the
    # winner would bring the duplicates (names, phone, old address) back as live leads.
    ids = _history_ids(session, lead)
    session.execute(
        update(AuditEntry)
        .where(AuditEntry.entity_type == "lead", AuditEntry.entity_id.in_(ids))
        .values(before=None, after=None, evidence=None, reason="[erased]")
        .execution_options(synchronize_session=False)
    )
    session.execute(delete(Activity).where(Activity.lead_id.in_(ids)))
    session.execute(delete(StageChange).where(StageChange.lead_id.in_(ids)))
    session.execute(
        update(Lead)
        .where(Lead.merged_into_id.in_(ids))
        .values(merged_into_id=None)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        delete(Lead).where(Lead.id.in_(ids), Lead.id != lead.id).execution_options(synchronize_session=False)
    )
    session.delete(lead)
    session.flush()
    for erased_id in ids:
        record(session, actor, "lead", erased_id, "erase", reason=reason)
        emit(session, "lead.erased", lead_id=erased_id)
