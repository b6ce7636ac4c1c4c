"""Scoring tables: model versions, current scores, score history, threshold firings, and the
leads whose fit inputs changed (``fit_dirty``, kept by database triggers)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    event,
    inspect,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.schema import CreateIndex

from leadflow.db.base import Base, JSONType, UTCDateTime, utcnow


class ScoringModelVersion(Base):
    """One version of a scoring model document; exactly one is active at a time."""

    __tablename__ = "scoring_models"

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(Integer, unique=True)
    name: Mapped[str] = mapped_column(String(200))
    document: Mapped[dict[str, Any]] = mapped_column(JSONType)
    active: Mapped[bool] = mapped_column(default=False, index=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class LeadScore(Base):
    """A lead's current score under the model version that computed it."""

    __tablename__ = "lead_scores"

    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), primary_key=True)
    model_version: Mapped[int] = mapped_column(Integer)
    fit: Mapped[float] = mapped_column(Float)
    engagement: Mapped[float] = mapped_column(Float)
    total: Mapped[float] = mapped_column(Float)
    grade: Mapped[str] = mapped_column(String(1))
    # The rules that fired with their points (the full explanation, with the events behind each
    # rule, is computed on request from the lead's events).
    explanation: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    # Threshold id -> armed (true: the next upward crossing fires).
    armed: Mapped[dict[str, bool] | None] = mapped_column(JSONType)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (Index("ix_lead_scores_total", "total"),)


# A full rescore on SQLite that rewrites most scores drops this index while it writes and builds
# it again at the end (one sorted build instead of a random index update per score). A rescore
# killed in between leaves it missing: the next full rescore and every migration run (``leadflow
# init``/``serve``/CLI commands) build it again.
TOTAL_INDEX = next(ix for ix in cast(Table, LeadScore.__table__).indexes if ix.name == "ix_lead_scores_total")


def ensure_total_index(conn: Connection) -> None:
    """Create ``ix_lead_scores_total`` if it is missing (checked with a read first: no write lock
    when it is there)."""

    if all(ix["name"] != TOTAL_INDEX.name for ix in inspect(conn).get_indexes(LeadScore.__tablename__)):
        conn.execute(CreateIndex(TOTAL_INDEX, if_not_exists=True))


class ScoreHistory(Base):
    """A point of a lead's score over time (written when the score changes)."""

    __tablename__ = "score_history"

    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    fit: Mapped[float] = mapped_column(Float)
    engagement: Mapped[float] = mapped_column(Float)
    total: Mapped[float] = mapped_column(Float)
    model_version: Mapped[int] = mapped_column(Integer)

    __table_args__ = (Index("ix_score_history_lead_at", "lead_id", "at"),)


class ThresholdFiring(Base):
    """One action of a threshold crossing, and what became of it."""

    __tablename__ = "threshold_firings"

    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    threshold_id: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(30))
    # done (applied here), emitted (a domain event for another feature), skipped (not legal or
    # not applicable for this lead, see detail), failed.
    outcome: Mapped[str] = mapped_column(String(20))
    detail: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    model_version: Mapped[int] = mapped_column(Integer)
    score: Mapped[float] = mapped_column(Float)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    __table_args__ = (
        Index("ix_threshold_firings_lead_at", "lead_id", "at"),
        Index("ix_threshold_firings_at", "at"),
    )


class LeadEngagement(Base):
    """A lead's engagement rolled forward (see :mod:`leadflow.core.scoring`): per engagement rule,
    the decayed sums of its closed cap periods and its open period, relative to ``ref``, so that
    rescoring reads one row per lead instead of every event. ``ruleset`` is the
    :func:`~leadflow.core.scoring.engagement_key` of the rules the state was built for; a row of
    another ruleset is rebuilt from the lead's events when used."""

    __tablename__ = "lead_engagement"

    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), primary_key=True)
    ruleset: Mapped[str] = mapped_column(String(32))
    ref: Mapped[float] = mapped_column(Float)  # epoch seconds the sums are relative to
    # The lead's events folded in: how many, the highest id, the latest occurred_at (epoch
    # seconds). A count that does not add up (events moved by a merge, or committed out of id
    # order) rebuilds the state from the events.
    events: Mapped[int] = mapped_column(Integer)
    last_event_id: Mapped[int] = mapped_column(Integer)
    max_at: Mapped[float] = mapped_column(Float)
    state: Mapped[bytes] = mapped_column(LargeBinary)  # float64, rules x STATE_FIELDS


class EngagementBuild(Base):
    """The ruleset whose state was last built for every lead from all events: with the active
    model's ruleset here, a full rescore needs no pass over the events."""

    __tablename__ = "engagement_builds"

    ruleset: Mapped[str] = mapped_column(String(32), primary_key=True)
    built_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class FitDirty(Base):
    """A lead whose fit inputs (its own columns the fit rules read, or its account's) changed
    since its fit was last computed.

    The nightly full rescore would otherwise read every lead's attributes again to recompute a fit
    that almost never moves; with this table it can carry a lead's stored fit forward unless the
    lead is marked here. The marks are written by database triggers (:func:`fit_dirty_ddl`), not
    by the services, so that every path that changes a lead or an account (ORM, Core, raw SQL, the
    importer, merges, foreign-key actions) records them. A lead is marked once: the rescore takes
    the marks of an id range (:func:`leadflow.scoring.fitdirty.take_fit_dirty`) in the
    transaction that refits those leads. New leads are not marked: they have no stored fit."""

    __tablename__ = "fit_dirty"

    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), primary_key=True)


# The columns a lead's fit reads (leadflow.scoring.service.LEAD_COLUMNS and the custom attributes),
# plus the ones that decide which account it reads (account_id) and whether it is live
# (merged_into_id); and the account columns it reads. tests/test_fit_dirty.py checks these against
# LEAD_COLUMNS. Changing a list needs a migration that runs fit_dirty_drop_ddl and fit_dirty_ddl
# again (and marks every lead: changes made under the old triggers were not recorded).
FIT_LEAD_COLUMNS = (
    "email",
    "job_title",
    "seniority",
    "department",
    "company",
    "country",
    "source",
    "campaign",
    "origin",
    "consent",
    "unsubscribed",
    "attributes",
    "account_id",
    "merged_into_id",
)
FIT_ACCOUNT_COLUMNS = ("country", "industry", "employee_count", "annual_revenue", "domain")
# Trigger -> its table.
FIT_TRIGGERS = {
    "fit_dirty_leads_update": "leads",
    "fit_dirty_accounts_update": "accounts",
    "fit_dirty_accounts_delete": "accounts",
}
_PG_FUNCTIONS = ("fit_dirty_mark_lead", "fit_dirty_mark_account_leads")


def _changed(columns: tuple[str, ...], distinct: str) -> str:
    return " OR ".join(f"old.{c} {distinct} new.{c}" for c in columns)


def fit_dirty_ddl(dialect: str) -> list[str]:
    """The statements that create the triggers marking leads in ``fit_dirty`` (the one definition,
    run by the migration and by ``create_all``).

    ``UPDATE OF <columns>``: an update that sets none of them (stage, owner, version,
    ``updated_at``...) does not even evaluate the trigger; a null-safe
    comparison of old and new values (SQLite: the ``WHEN`` clause; PostgreSQL: in the function)
    then skips one that sets them to the values they had (the importer and the ORM write
    unchanged columns too). An account's change or deletion marks its leads through
    ``ix_leads_account_id`` (on deletion before ``ON DELETE SET NULL`` clears their account_id)."""

    lead_cols, account_cols = ", ".join(FIT_LEAD_COLUMNS), ", ".join(FIT_ACCOUNT_COLUMNS)
    if dialect == "postgresql":
        # The comparison is in the function, not in a WHEN clause: PostgreSQL prepares a trigger's
        # WHEN once per statement, ~2-3 us per column compared, paid by every single-row UPDATE
        # (the importer's executemany, the ORM) even when nothing changed; PL/pgSQL keeps its
        # expressions prepared for the session (bench/fit_dirty.py, docs/PERFORMANCE.md).
        # ON CONFLICT: a lead is marked once however often it changes before the rescore.
        return [
            "CREATE OR REPLACE FUNCTION fit_dirty_mark_lead() RETURNS trigger LANGUAGE plpgsql AS $$\n"
            "BEGIN\n"
            f"  IF {_changed(FIT_LEAD_COLUMNS, 'IS DISTINCT FROM')} THEN\n"
            "    INSERT INTO fit_dirty (lead_id) VALUES (NEW.id) ON CONFLICT (lead_id) DO NOTHING;\n"
            "  END IF;\n"
            "  RETURN NULL;\n"
            "END $$",
            # RETURN OLD: a BEFORE DELETE trigger that returned NULL would cancel the deletion.
            "CREATE OR REPLACE FUNCTION fit_dirty_mark_account_leads() RETURNS trigger "
            "LANGUAGE plpgsql AS $$\n"
            "BEGIN\n"
            "  IF TG_OP = 'UPDATE' THEN\n"  # (NEW is NULL on DELETE: compared only on UPDATE)
            f"    IF NOT ({_changed(FIT_ACCOUNT_COLUMNS, 'IS DISTINCT FROM')}) THEN\n"
            "      RETURN NULL;\n"
            "    END IF;\n"
            "  END IF;\n"
            "  INSERT INTO fit_dirty (lead_id) SELECT id FROM leads WHERE account_id = OLD.id\n"
            "    ON CONFLICT (lead_id) DO NOTHING;\n"
            "  RETURN OLD;\n"
            "END $$",
            f"CREATE TRIGGER fit_dirty_leads_update AFTER UPDATE OF {lead_cols} ON leads FOR EACH ROW "
            "EXECUTE FUNCTION fit_dirty_mark_lead()",
            f"CREATE TRIGGER fit_dirty_accounts_update AFTER UPDATE OF {account_cols} ON accounts "
            "FOR EACH ROW EXECUTE FUNCTION fit_dirty_mark_account_leads()",
            "CREATE TRIGGER fit_dirty_accounts_delete BEFORE DELETE ON accounts FOR EACH ROW "
            "EXECUTE FUNCTION fit_dirty_mark_account_leads()",
        ]
    # SQLite: NOT EXISTS rather than INSERT OR IGNORE, whose conflict policy an outer
    # UPDATE OR ABORT/FAIL/ROLLBACK would override inside the trigger.
    mark_account = (
        "INSERT INTO fit_dirty (lead_id) SELECT l.id FROM leads l WHERE l.account_id = old.id "
        "AND NOT EXISTS (SELECT 1 FROM fit_dirty f WHERE f.lead_id = l.id); "
    )
    return [
        f"CREATE TRIGGER fit_dirty_leads_update AFTER UPDATE OF {lead_cols} ON leads FOR EACH ROW "
        f"WHEN {_changed(FIT_LEAD_COLUMNS, 'IS NOT')} BEGIN "
        "INSERT INTO fit_dirty (lead_id) SELECT new.id "
        "WHERE NOT EXISTS (SELECT 1 FROM fit_dirty WHERE lead_id = new.id); END",
        f"CREATE TRIGGER fit_dirty_accounts_update AFTER UPDATE OF {account_cols} ON accounts "
        f"FOR EACH ROW WHEN {_changed(FIT_ACCOUNT_COLUMNS, 'IS NOT')} BEGIN {mark_account}END",
        f"CREATE TRIGGER fit_dirty_accounts_delete BEFORE DELETE ON accounts FOR EACH ROW "
        f"BEGIN {mark_account}END",
    ]


def fit_dirty_drop_ddl(dialect: str) -> list[str]:
    """The statements that drop what :func:`fit_dirty_ddl` creates."""

    drops = [
        f"DROP TRIGGER IF EXISTS {name}" + (f" ON {table}" if dialect == "postgresql" else "")
        for name, table in FIT_TRIGGERS.items()
    ]
    if dialect == "postgresql":
        drops += [f"DROP FUNCTION IF EXISTS {name}()" for name in _PG_FUNCTIONS]
    return drops


def _fit_triggers_present(conn: Connection) -> set[str]:
    if conn.dialect.name == "postgresql":
        # (the tables on the search path: another schema's triggers do not count)
        sql = (
            "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgname LIKE 'fit_dirty%' "
            "AND tgrelid IN (to_regclass('leads'), to_regclass('accounts'))"
        )
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'fit_dirty%'"
    return {str(r[0]) for r in conn.execute(text(sql))}


def ensure_fit_triggers(conn: Connection) -> None:
    """Create the fit_dirty triggers if any is missing (checked with a read first: no write lock
    when they are there), and then mark every lead: changes made without them were not recorded.

    On SQLite a migration that rebuilds ``leads`` or ``accounts`` (Alembic's batch mode copies a
    table to alter it) drops their triggers with the old table; ``leadflow init``/``serve`` and
    the CLI run this after the migrations (:func:`leadflow.db.migrate.upgrade`)."""

    if not inspect(conn).has_table(FitDirty.__tablename__):
        return  # migrated to a revision before fit_dirty
    if _fit_triggers_present(conn) >= set(FIT_TRIGGERS):
        return
    for sql in [*fit_dirty_drop_ddl(conn.dialect.name), *fit_dirty_ddl(conn.dialect.name)]:
        conn.execute(text(sql))
    mark_all_leads(conn)


def mark_all_leads(conn: Connection) -> None:
    """Mark every lead's fit as changed (the stored fits cannot be trusted)."""

    conn.execute(
        text(
            "INSERT INTO fit_dirty (lead_id) SELECT id FROM leads "
            "WHERE id NOT IN (SELECT lead_id FROM fit_dirty)"
        )
    )


# A database built with Base.metadata.create_all gets the triggers too (the application and the
# tests build theirs with the migrations, which run the same DDL).
@event.listens_for(FitDirty.__table__, "after_create")
def _create_fit_triggers(_table: Table, conn: Connection, **_kw: Any) -> None:
    for sql in fit_dirty_ddl(conn.dialect.name):
        conn.execute(text(sql))


@event.listens_for(FitDirty.__table__, "before_drop")
def _drop_fit_triggers(_table: Table, conn: Connection, **_kw: Any) -> None:
    for sql in fit_dirty_drop_ddl(conn.dialect.name):
        conn.execute(text(sql))
