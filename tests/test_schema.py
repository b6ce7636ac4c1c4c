"""The migrated schema is the one the models declare, and the lead queries that lean on the
trimmed indexes still find them (SQLite and PostgreSQL)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

import leadflow.db.models  # noqa: F401  (every feature's tables on the metadata)
from leadflow.db.base import Base, Database


def test_migrations_match_the_models(db: Database) -> None:
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_lead_indexes(db: Database) -> None:
    indexes = {ix["name"]: ix for ix in inspect(db.engine).get_indexes("leads")}
    # The plain source index was the prefix of the inbox's composite one.
    assert "ix_leads_source" not in indexes
    assert indexes["ix_leads_source_owner_created_id"]["column_names"] == [
        "source",
        "owner_id",
        "created_at",
        "id",
    ]
    merged = indexes["ix_leads_merged_into_id"]
    where = merged.get("dialect_options", {}).get(f"{db.dialect}_where")
    assert where is not None and "merged_into_id IS NOT NULL" in str(where)


def _plan(db: Database, sql: str) -> str:
    with db.engine.connect() as conn:
        if db.dialect == "sqlite":
            rows = conn.execute(text("EXPLAIN QUERY PLAN " + sql)).all()
            return " ".join(str(r[-1]) for r in rows)
        conn.execute(text("SET enable_seqscan = off"))  # an empty table would be scanned anyway
        return " ".join(r[0] for r in conn.execute(text("EXPLAIN " + sql)))


def test_queries_use_the_trimmed_indexes(db: Database) -> None:
    by_source = _plan(
        db, "SELECT id FROM leads WHERE source = 'webinar' ORDER BY created_at DESC, id DESC LIMIT 50"
    )
    assert "ix_leads_source_owner_created_id" in by_source
    merged = _plan(db, "SELECT id FROM leads WHERE merged_into_id = 42")
    assert "ix_leads_merged_into_id" in merged
