"""Everything Leadflow holds about a person, as one JSON document (the right of access / data
portability), and the audit of who exported it. Erasure is ``leads.service.delete_lead``.

Rows are found through the schema, not a hand-kept list: every table with a foreign key to
``leads.id`` contributes its rows, so features added later (tasks, assessments, opportunities,
enrollments) are exported without a change here.
"""

from __future__ import annotations

import base64
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, or_, select
from sqlalchemy.orm import Session

from leadflow.audit.models import AuditEntry
from leadflow.audit.service import record
from leadflow.auth.principal import Perm, Principal
from leadflow.db.base import Base, utcnow
from leadflow.leads import service as leads
from leadflow.leads.models import Account, Lead

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


def lead_tables() -> list[tuple[Table, list[str]]]:
    """Every table that refers to a lead, with the columns that do."""

    out = []
    for table in Base.metadata.sorted_tables:
        if table.name in _SKIP_TABLES:
            continue
        cols = [
            fk.parent.name
            for fk in table.foreign_keys
            if fk.column.table.name == "leads" and fk.column.name == "id"
        ]
        if cols:
            out.append((table, sorted(set(cols))))
    return out


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
    audit_table = AuditEntry.__table__
    assert isinstance(audit_table, Table)
    audit_rows = session.execute(
        select(audit_table)
        .where(audit_table.c.entity_type == "lead", audit_table.c.entity_id.in_(ids))
        .order_by(audit_table.c.id)
    ).all()
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
