"""Privacy: the personal-data export holds every table with the person's data (found by
enumerating the schema here, so a feature's new table cannot be forgotten), and erasure leaves
nothing of the person anywhere in the database: not in other features' records, not in free
text (a handoff rejection note), not in the audit trail's before/after, not in a stored
idempotent response."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from test_access_matrix import MARKER, World
from typer.testing import CliRunner

from leadflow.api import create_app
from leadflow.cli import app as cli_app
from leadflow.config import get_settings
from leadflow.db.base import Base, Database

# Seeded by World.seed_owned for the target lead: each must come back in its export.
SEEDED = {
    "activities",
    "stage_changes",
    "tasks",
    "sequence_enrollments",
    "sequence_step_runs",
    "appointments",
    "handoffs",
    "needs_assessments",
    "discovery_calls",
    "opportunities",
    "opportunity_stage_changes",
    "webhook_deliveries",
}


def _person_tables() -> set[str]:
    """Every table holding a person's rows, read off the schema independently of the export:
    a column naming a lead (a foreign key to leads.id, or called lead_id / *_lead_id), or a
    foreign key to such a table's record (an opportunity's stage changes, a delivery's
    attempts)."""

    direct = {
        t.name
        for t in Base.metadata.sorted_tables
        if t.name != "leads"
        and (
            any(fk.column.table.name == "leads" for fk in t.foreign_keys)
            or any(c.name == "lead_id" or c.name.endswith("_lead_id") for c in t.columns)
        )
    }
    under = {
        t.name
        for t in Base.metadata.sorted_tables
        if t.name not in direct | {"leads"} and any(fk.column.table.name in direct for fk in t.foreign_keys)
    }
    return direct | under


@pytest.fixture
def seeded(db: Database) -> World:
    world = World(db)
    world.seed_owned()
    return world


def _dump(db: Database) -> str:
    """Every row of every table, as text."""

    parts = []
    with db.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            for row in conn.execute(select(table)).all():
                parts.append(f"{table.name}: {row!r}")
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        parts.append(bytes(value).decode("utf-8", "replace"))
    return "\n".join(parts).lower()


def test_the_export_holds_every_table_with_the_persons_data(seeded: World) -> None:
    tables = _person_tables()
    assert tables >= SEEDED and "webhook_attempts" in tables and "report_lead_funnel" in tables
    with TestClient(create_app(seeded.db)) as c:
        r = c.get(f"/api/leads/{seeded.target_id}/export", headers=seeded.admin.headers)
    assert r.status_code == 200, r.text
    doc = r.json()
    missing = tables - set(doc["related"])
    assert not missing, f"the personal-data export forgets {sorted(missing)}"
    empty = {name for name in SEEDED if not doc["related"][name]}
    assert not empty, f"seeded but not exported: {sorted(empty)}"
    for name in SEEDED - {"opportunity_stage_changes"}:
        for row in doc["related"][name]:
            refs = {v for k, v in row.items() if k == "lead_id" or k.endswith("_lead_id")}
            assert seeded.target_id in refs, (name, row)
    # The audit trail of the person's records of other features comes with it (a task's
    # creation, the opportunity's, the handoff's), not only the lead's own entries.
    entity_types = {a["entity_type"] for a in doc["audit"]}
    assert {"lead", "task", "opportunity", "handoff"} <= entity_types, entity_types
    assert MARKER in json.dumps(doc["related"]["tasks"]) and MARKER in json.dumps(
        doc["related"]["opportunities"]
    )


def test_erasure_leaves_nothing_of_the_person_anywhere(seeded: World) -> None:
    world = seeded
    other = "Qwvhiddeneast"
    with TestClient(create_app(world.db)) as c:
        h = world.admin.headers
        # A second person, created with an Idempotency-Key (the stored reply holds their data),
        # handed to sales and rejected with a note that names them.
        r = c.post(
            "/api/leads",
            json={"email": f"{other.lower()}@east-co.com", "first_name": other, "last_name": "Lastly"},
            headers={**h, "Idempotency-Key": "create-other-1"},
        )
        assert r.status_code == 201, r.text
        other_id = r.json()["id"]
        r = c.post(
            f"/api/leads/{other_id}/transitions",
            json={"to": "mql", "evidence": {"kind": "marketing_review", "note": f"{other} looks keen"}},
            headers=h,
        )
        assert r.status_code == 200, r.text
        r = c.post(
            f"/api/qualification/leads/{other_id}/handoff/reject",
            json={"reason": "other", "note": f"{other} Lastly told me to stop calling"},
            headers=h,
        )
        assert r.status_code == 200, r.text
        version = c.get(f"/api/leads/{other_id}", headers=h).json()["version"]
        r = c.patch(
            f"/api/leads/{other_id}", json={"job_title": f"CTO ({other})", "version": version}, headers=h
        )
        assert r.status_code == 200, r.text
        before = _dump(world.db)
        assert MARKER.lower() in before and other.lower() in before and "lastly" in before

        r = c.delete(f"/api/leads/{world.target_id}", params={"reason": "GDPR art. 17"}, headers=h)
        assert r.status_code == 204, r.text
        assert c.get(f"/api/leads/{world.target_id}", headers=h).status_code == 404
    monkey = pytest.MonkeyPatch()
    monkey.setenv("LEADFLOW_DATABASE_URL", world.db.url)
    get_settings.cache_clear()
    try:
        r = CliRunner().invoke(cli_app, ["privacy", "erase", str(other_id), "--reason", "request", "--yes"])
        assert r.exit_code == 0, r.output
    finally:
        monkey.undo()
        get_settings.cache_clear()

    after = _dump(world.db)
    for needle in (MARKER.lower(), other.lower(), "lastly"):
        leaks = [line[:200] for line in after.splitlines() if needle in line]
        assert not leaks, f"{needle!r} survives erasure: {leaks}"
    # The company's deal outlives the person (its lead reference is cleared), the audit trail
    # keeps a tombstone per erased lead.
    assert "opportunities:" in after and "'erase'" in after
    with TestClient(create_app(world.db)) as c:
        opps = c.get("/api/opportunities", headers=world.admin.headers).json()
    items = opps["items"] if isinstance(opps, dict) else opps
    assert [o["lead_id"] for o in items] == [None]
    assert "[erased]" in items[0]["name"]
