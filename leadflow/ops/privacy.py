"""Everything Leadflow holds about a person, as one JSON document (the right of access / data
portability), the audit of who exported it, and erasure (the right to be forgotten).

Rows are found through the schema, not a hand-kept list: every table with a foreign key to
``leads.id`` or a ``lead_id`` column contributes its rows, and every table with a foreign key to
one of those (an opportunity's stage changes, a delivery's attempts) the rows under the person's
records, so features added later are exported without a change here. The audit trail is keyed by
entity type; ``AUDIT_ENTITIES`` names the types whose entities are the person's records.
"""

from __future__ import annotations

import base64
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Column, String, Table, Text, delete, or_, select, update
from sqlalchemy.orm import Session

from leadflow.audit.models import AuditEntry
from leadflow.audit.service import record
from leadflow.auth.principal import Perm, Principal
from leadflow.db.base import Base, utcnow
from leadflow.leads import service as leads
from leadflow.leads.models import Account, Lead
from leadflow.ops.models import IdempotencyKey

FORMAT = "leadflow-person-export/1"
# Internal bookkeeping that says nothing about the person.
_SKIP_TABLES = frozenset({"leads"})


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | memoryview):
        return base64.b64encode(bytes(value)).decode()
    return value


def _row(table: Table, row: Any) -> dict[str, Any]:
    return {c.name: _plain(row._mapping[c]) for c in table.columns}


# Audit entity types whose entity is a record of the person (entity_id is that table's id).
AUDIT_ENTITIES: dict[str, str] = {
    "task": "tasks",
    "handoff": "handoffs",
    "opportunity": "opportunities",
    "sequence_step": "sequence_step_runs",
    "sequence_enrollment": "sequence_enrollments",
    "appointment": "appointments",
    "needs_assessment": "needs_assessments",
    "discovery_call": "discovery_calls",
    "webhook_delivery": "webhook_deliveries",
}
ERASED = "[erased]"
# Tables a lead-owned record points at that hold no person's data (configuration, users).
_NOT_PERSONAL_PARENTS = frozenset({"users", "accounts", "pipelines", "pipeline_stages", "sequences", "leads"})


def _lead_columns(table: Table) -> list[str]:
    cols = {
        fk.parent.name
        for fk in table.foreign_keys
        if fk.column.table.name == "leads" and fk.column.name == "id"
    }
    # Tables that keep a lead id without a foreign key (report facts) are the person's data too.
    cols |= {c.name for c in table.columns if c.name == "lead_id" or c.name.endswith("_lead_id")}
    return sorted(cols)


def lead_tables() -> list[tuple[Table, list[str]]]:
    """Every table that refers to a lead, with the columns that do."""

    out = []
    for table in Base.metadata.sorted_tables:
        if table.name in _SKIP_TABLES:
            continue
        cols = _lead_columns(table)
        if cols:
            out.append((table, cols))
    return out


def child_tables() -> list[tuple[Table, Table, list[str]]]:
    """Tables under a lead-owned record without a lead column of their own: (table, parent,
    columns referring to the parent), e.g. an opportunity's stage changes."""

    owned = {t.name: t for t, _ in lead_tables()}
    out = []
    for table in Base.metadata.sorted_tables:
        if table.name in owned or table.name in _SKIP_TABLES:
            continue
        by_parent: dict[str, list[str]] = {}
        for fk in table.foreign_keys:
            parent = fk.column.table.name
            if parent in owned and parent not in _NOT_PERSONAL_PARENTS:
                by_parent.setdefault(parent, []).append(fk.parent.name)
        for parent, cols in sorted(by_parent.items()):
            out.append((table, owned[parent], sorted(cols)))
    return out


def _owned_ids(session: Session, ids: list[int]) -> dict[str, list[Any]]:
    """Primary keys of the person's rows, per lead-owned table (single-column keys only)."""

    out: dict[str, list[Any]] = {}
    for table, cols in lead_tables():
        pk = list(table.primary_key.columns)
        if len(pk) != 1:
            continue
        cond = or_(*(table.c[c].in_(ids) for c in cols))
        out[table.name] = list(session.scalars(select(pk[0]).where(cond)))
    return out


def _audit_of_records(owned: dict[str, list[Any]]) -> list[Any]:
    """Conditions on the audit trail selecting the entries about the person's records."""

    conds = []
    for entity_type, table_name in AUDIT_ENTITIES.items():
        record_ids = [i for i in owned.get(table_name, []) if isinstance(i, int)]
        if record_ids:
            conds.append((AuditEntry.entity_type == entity_type) & (AuditEntry.entity_id.in_(record_ids)))
    return conds


def export_person(
    session: Session, actor: Principal, lead_id: int, *, reason: str | None = None
) -> dict[str, Any]:
    actor.require(Perm.LEADS_EXPORT)
    lead = leads.get_lead(session, actor, lead_id)
    ids = leads._history_ids(session, lead)  # the person's merged duplicates are the same person
    lead_rows = session.execute(select(Lead.__table__).where(Lead.id.in_(ids)).order_by(Lead.id)).all()
    doc: dict[str, Any] = {
        "format": FORMAT,
        "exported_at": utcnow().isoformat(),
        "exported_by": actor.label,
        "lead_id": lead.id,
        "lead": None,
        "merged_leads": [],
        "account": None,
        "related": {},
        "audit": [],
    }
    lead_table = Lead.__table__
    assert isinstance(lead_table, Table)
    for r in lead_rows:
        data = _row(lead_table, r)
        if data["id"] == lead.id:
            doc["lead"] = data
        else:
            doc["merged_leads"].append(data)
    if lead.account_id is not None:
        account = session.get(Account, lead.account_id)
        if account is not None:
            acc_table = Account.__table__
            assert isinstance(acc_table, Table)
            doc["account"] = _row(
                acc_table, session.execute(select(acc_table).where(acc_table.c.id == account.id)).one()
            )
    for table, cols in lead_tables():
        cond = or_(*(table.c[c].in_(ids) for c in cols))
        pk = list(table.primary_key.columns)
        rows = session.execute(select(table).where(cond).order_by(*pk)).all()
        doc["related"][table.name] = [_row(table, r) for r in rows]
    owned = _owned_ids(session, ids)
    for table, parent, cols in child_tables():
        parent_ids = owned.get(parent.name, [])
        rows = []
        if parent_ids:
            cond = or_(*(table.c[c].in_(parent_ids) for c in cols))
            pk = list(table.primary_key.columns)
            rows = session.execute(select(table).where(cond).order_by(*pk)).all()
        doc["related"].setdefault(table.name, []).extend(_row(table, r) for r in rows)
    audit_table = AuditEntry.__table__
    assert isinstance(audit_table, Table)
    about_person = or_(
        (AuditEntry.entity_type == "lead") & (AuditEntry.entity_id.in_(ids)), *_audit_of_records(owned)
    )
    audit_rows = session.execute(select(audit_table).where(about_person).order_by(audit_table.c.id)).all()
    doc["audit"] = [_row(audit_table, r) for r in audit_rows]
    # An imported lead's creation is part of its import's batch entry: exported as the lead's own.
    created = [
        {c.name: _plain(getattr(e, c.key)) for c in audit_table.columns}
        for e in leads.import_creations(session, ids)
    ]
    doc["audit"] = sorted([*doc["audit"], *created], key=lambda a: a["id"])
    # Who looked at a person's whole file is itself part of the record.
    record(session, actor, "lead", lead.id, "export_personal_data", reason=reason)
    return doc


def _identifiers(session: Session, ids: list[int]) -> list[str]:
    """The person's identifying strings (longest first), to scrub from rows that outlive them."""

    found: set[str] = set()
    for lead in session.scalars(select(Lead).where(Lead.id.in_(ids))):
        first, last = (lead.first_name or "").strip(), (lead.last_name or "").strip()
        for value in (lead.email, lead.phone, lead.phone_raw, f"{first} {last}", first, last):
            text = (value or "").strip()
            if len(text) >= 3:  # a two-letter name would scrub half the words of a note
                found.add(text)
    return sorted(found, key=len, reverse=True)


def _scrub(value: Any, needles: list[str]) -> Any:
    if isinstance(value, str):
        out = value
        lowered = out.lower()
        for needle in needles:
            while (at := lowered.find(needle.lower())) >= 0:
                out = out[:at] + ERASED + out[at + len(needle) :]
                lowered = out.lower()
        return out
    if isinstance(value, dict):
        return {k: _scrub(v, needles) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, needles) for v in value]
    return value


def _text_columns(table: Table) -> list[Column[Any]]:
    return [c for c in table.columns if isinstance(c.type, String | Text | JSON) and not c.foreign_keys]


def erase_person(session: Session, actor: Principal, lead_id: int, *, reason: str | None = None) -> None:
    """Erase a person (the right to be forgotten), in the caller's transaction.

    The lead, its merged duplicates and every record of theirs with a cascading foreign key go
    (``leads.service.delete_lead``); before that, the audit entries about the person's records
    lose their before/after/evidence/reason (the lead's own keep only a tombstone), records that
    outlive the lead (an opportunity is the company's deal: its lead reference becomes NULL) have
    the person's name, email and phone scrubbed from their text, and stored idempotent responses
    that carried the person's data are dropped."""

    actor.require(Perm.LEADS_DELETE)
    lead = leads.get_lead(session, actor, lead_id)
    ids = leads._history_ids(session, lead)
    needles = _identifiers(session, ids)
    owned = _owned_ids(session, ids)
    conds = _audit_of_records(owned)
    if conds:
        session.execute(
            update(AuditEntry)
            .where(or_(*conds))
            .values(before=None, after=None, evidence=None, reason=ERASED)
            .execution_options(synchronize_session=False)
        )
    if needles:
        for table, cond in _surviving(owned, ids):
            _scrub_rows(session, table, cond, needles)
        _drop_replays(session, ids, needles)
    leads.delete_lead(session, actor, lead_id, reason=reason)


def _surviving(owned: dict[str, list[Any]], ids: list[int]) -> list[tuple[Table, Any]]:
    """Rows about the person that deleting the lead leaves in place: tables whose lead reference
    does not cascade (an opportunity's becomes NULL; report facts keep a bare id), and the rows
    under such records (an opportunity's stage changes)."""

    out: list[tuple[Table, Any]] = []
    kept: set[str] = set()
    for table, cols in lead_tables():
        cascades = any(
            fk.parent.name in cols and (fk.ondelete or "").upper() == "CASCADE" for fk in table.foreign_keys
        )
        if not cascades:
            kept.add(table.name)
            out.append((table, or_(*(table.c[c].in_(ids) for c in cols))))
    for table, parent, cols in child_tables():
        parent_ids = owned.get(parent.name, [])
        if parent.name in kept and parent_ids:
            out.append((table, or_(*(table.c[c].in_(parent_ids) for c in cols))))
    return out


def _scrub_rows(session: Session, table: Table, cond: Any, needles: list[str]) -> None:
    pk = list(table.primary_key.columns)
    text_cols = _text_columns(table)
    if not text_cols or len(pk) != 1:
        return
    for row in session.execute(select(pk[0], *text_cols).where(cond)).all():
        changed = {}
        for c in text_cols:
            value = row._mapping[c]
            scrubbed = _scrub(value, needles)
            if scrubbed != value:
                changed[c.name] = scrubbed
        if changed:
            session.execute(update(table).where(pk[0] == row[0]).values(**changed))


def _drop_replays(session: Session, ids: list[int], needles: list[str]) -> None:
    """Stored responses of idempotent requests kept for replay hold the person's data as it was
    answered (a created lead, an updated one): they go. Kept a day at most, so few are read."""

    keys = {f'"lead_id":{i}' for i in ids}
    lowered = [n.lower() for n in needles]
    doomed = []
    for key_id, body, path in session.execute(
        select(IdempotencyKey.id, IdempotencyKey.response_body, IdempotencyKey.path)
    ).all():
        text = bytes(body or b"").decode("utf-8", "replace").lower()
        on_lead = any(path.rstrip("/").endswith(f"/leads/{i}") or f"/leads/{i}/" in path for i in ids)
        if on_lead or any(n in text for n in lowered) or any(k in text.replace(" ", "") for k in keys):
            doomed.append(key_id)
    if doomed:
        session.execute(delete(IdempotencyKey).where(IdempotencyKey.id.in_(doomed)))
