"""fit_dirty: the database marks a lead when an input of its fit changes, on every path that
writes leads and accounts, and only then (SQLite and PostgreSQL)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Connection, Engine, delete, inspect, text
from sqlalchemy.orm import Session

import leadflow.db.models  # noqa: F401  (every feature's tables on the metadata)
from leadflow.assignment import service as assignment
from leadflow.auth import service as auth
from leadflow.auth.models import Role
from leadflow.auth.principal import SYSTEM
from leadflow.cadences import service as cadences
from leadflow.core.lifecycle import Stage
from leadflow.db.base import Base, Database, make_engine
from leadflow.db.migrate import alembic_config, upgrade
from leadflow.imports.service import run_import
from leadflow.leads import accounts, activities
from leadflow.leads import service as leads
from leadflow.leads.models import Account, Lead
from leadflow.scoring import service as scoring
from leadflow.scoring.fitdirty import fit_dirty_ids, take_fit_dirty
from leadflow.scoring.models import FIT_ACCOUNT_COLUMNS, FIT_LEAD_COLUMNS, FIT_TRIGGERS

EVERY = (0, 2**31 - 1)
BEFORE_FIT_DIRTY = "9c4e2b7d1a36"
BEFORE_DERIVED_LAST_ACTIVITY = "3f1d9a6c2b84"


def marked(db: Database) -> list[int]:
    with db.transaction() as s:
        return fit_dirty_ids(s, *EVERY)


def clear(db: Database) -> None:
    with db.transaction() as s:
        take_fit_dirty(s, *EVERY)


def make_account(db: Database, name: str, **extra: object) -> int:
    with db.transaction() as s:
        return accounts.create_account(s, SYSTEM, {"name": name, "industry": "Software", **extra}).id


def make_lead(db: Database, email: str, **extra: object) -> int:
    data = {"first_name": "Ada", "last_name": "Lovelace", "email": email, "country": "DE", **extra}
    with db.transaction() as s:
        return leads.create_lead(s, SYSTEM, data).lead.id


def update(db: Database, lead_id: int, data: dict[str, object]) -> None:
    with db.transaction() as s:
        lead = s.get(Lead, lead_id)
        assert lead is not None
        leads.update_lead(s, SYSTEM, lead_id, data, expected_version=lead.version)


def test_the_column_lists_cover_every_fit_input() -> None:
    # Every lead and account column the fit rules read (scoring.LEAD_COLUMNS), the custom
    # attributes, the account link and the merge tombstone: a new fit field must be added here.
    read = " ".join(scoring.LEAD_COLUMNS.values())
    lead_cols = set(re.findall(r"\bl\.(\w+)", read))
    account_cols = set(re.findall(r"\ba\.(\w+)", read))
    assert lead_cols and account_cols
    assert lead_cols | {"attributes", "account_id", "merged_into_id"} <= set(FIT_LEAD_COLUMNS)
    assert account_cols <= set(FIT_ACCOUNT_COLUMNS)
    # The columns exist (a typo would make the trigger DDL fail, or watch nothing).
    assert set(FIT_LEAD_COLUMNS) <= set(Lead.__table__.c.keys())
    assert set(FIT_ACCOUNT_COLUMNS) <= set(Account.__table__.c.keys())


def test_new_leads_are_not_marked(db: Database) -> None:
    make_account(db, "Acme", domain="acme.io")
    make_lead(db, "a@acme.io", company="Acme", job_title="CTO")
    assert marked(db) == []


def _unsubscribe(s: Session, lead_id: int, _other: int) -> None:
    assert cadences.unsubscribe(s, lead_id)


def _service_update(data: dict[str, object]) -> Callable[[Session, int, int], None]:
    def apply(s: Session, lead_id: int, other: int) -> None:
        lead = s.get(Lead, lead_id)
        assert lead is not None
        values = {k: (other if v == "OTHER" else v) for k, v in data.items()}
        leads.update_lead(s, SYSTEM, lead_id, values, expected_version=lead.version)

    return apply


def _raw_sql(s: Session, lead_id: int, _other: int) -> None:
    s.execute(text("UPDATE leads SET seniority = 'vp' WHERE id = :id"), {"id": lead_id})


@pytest.mark.parametrize(
    "change",
    [
        _service_update({"job_title": "Head of Data"}),
        _service_update({"email": "ada@elsewhere.io"}),
        _service_update({"country": "FR"}),
        _service_update({"attributes": {"plan": "enterprise"}}),
        _service_update({"account_id": "OTHER"}),
        _unsubscribe,
        _raw_sql,
    ],
    ids=["job_title", "email", "country", "attributes", "account", "unsubscribe", "raw_sql"],
)
def test_a_fit_input_change_marks_the_lead(db: Database, change: Callable[[Session, int, int], None]) -> None:
    acme = make_account(db, "Acme")
    other = make_account(db, "Globex")
    lead_id = make_lead(db, "ada@acme.io", account_id=acme, job_title="Engineer", attributes={"plan": "free"})
    make_lead(db, "bob@acme.io", account_id=acme, job_title="Engineer")  # same account, unchanged
    assert marked(db) == []
    with db.transaction() as s:
        change(s, lead_id, other)
    assert marked(db) == [lead_id]


def test_other_changes_do_not_mark(db: Database) -> None:
    with db.transaction() as s:
        rep = auth.create_user(s, SYSTEM, name="Rep", email="rep@leadflow-test.io", role=Role.SALES_REP).id
    acme = make_account(db, "Acme")
    lead_id = make_lead(db, "ada@acme.io", account_id=acme, job_title="Engineer")

    update(db, lead_id, {"phone": "+49 30 1234567", "first_name": "Augusta"})  # (sets country again)
    with db.transaction() as s:
        # The account's owner is no fit input; assignment then routes the lead to that owner.
        accounts.update_account(s, SYSTEM, acme, {"owner_id": rep, "name": "Acme Corp"}, expected_version=1)
    with db.transaction() as s:
        assignment.assign_many(s, SYSTEM, [lead_id], trigger="manual", only_unowned=False)
    with db.transaction() as s:
        leads.transition_lead(s, SYSTEM, lead_id, Stage.NURTURE, reason="later")
    with db.transaction() as s:
        res = activities.ingest(s, SYSTEM, [{"lead_id": lead_id, "type": "email_open"}] * 3)
        assert not res.errors
    with db.transaction() as s:
        # The same values written again (the importer and bulk paths rewrite unchanged columns).
        s.execute(
            text("UPDATE leads SET job_title = job_title, attributes = attributes, account_id = account_id")
        )

    with db.transaction() as s:
        lead = s.get(Lead, lead_id)
        assert lead is not None
        assert (lead.phone, lead.first_name, lead.owner_id, lead.stage) == (
            "+49301234567",
            "Augusta",
            rep,
            "nurture",
        )
        assert lead.last_activity_at is not None
    assert marked(db) == []


@pytest.mark.parametrize(
    ("sql", "fires"),
    [
        ("UPDATE leads SET stage = ?1, stage_changed_at = ?2, version = version + 1 WHERE id = ?1", False),
        ("UPDATE leads SET owner_id = ?1, updated_at = ?2, version = version + 1 WHERE id = ?1", False),
        ("UPDATE accounts SET name = ?2, owner_id = ?1 WHERE id = ?1", False),
        ("UPDATE leads SET job_title = ?2 WHERE id = ?1", True),
        ("UPDATE accounts SET industry = ?2 WHERE id = ?1", True),
    ],
)
def test_sqlite_leaves_the_triggers_out_of_updates_of_other_columns(
    db: Database, sql: str, fires: bool
) -> None:
    """SQLite picks the triggers when it compiles a statement: one that sets no column of their
    UPDATE OF lists runs the same program as without them (no per-row cost at all)."""

    if db.dialect != "sqlite":
        pytest.skip("PostgreSQL skips such a trigger per row, before its WHEN (not visible in a plan)")
    with db.engine.connect() as conn:
        opcodes = {str(r[1]) for r in conn.exec_driver_sql("EXPLAIN " + sql, (1, "x")).all()}
    assert ("Program" in opcodes) is fires


def test_an_account_change_marks_its_leads_and_only_them(db: Database) -> None:
    acme = make_account(db, "Acme")
    globex = make_account(db, "Globex")
    ours = [make_lead(db, f"l{i}@acme.io", account_id=acme) for i in range(3)]
    make_lead(db, "g@globex.io", account_id=globex)
    make_lead(db, "solo@gmail.com")

    with db.transaction() as s:
        accounts.update_account(s, SYSTEM, acme, {"name": "Acme Inc"}, expected_version=1)
    assert marked(db) == []  # the name is no fit input
    with db.transaction() as s:
        accounts.update_account(s, SYSTEM, acme, {"industry": "Retail"}, expected_version=2)
    assert marked(db) == ours
    clear(db)
    with db.transaction() as s:
        s.execute(text("UPDATE accounts SET employee_count = 5000 WHERE id = :id"), {"id": acme})
    assert marked(db) == ours


def test_deleting_an_account_marks_its_leads(db: Database) -> None:
    acme = make_account(db, "Acme")
    globex = make_account(db, "Globex")
    ours = [make_lead(db, f"l{i}@acme.io", account_id=acme) for i in range(2)]
    make_lead(db, "g@globex.io", account_id=globex)
    with db.transaction() as s:
        s.execute(delete(Account).where(Account.id == acme))
    assert marked(db) == ours
    with db.transaction() as s:
        assert all(s.get(Lead, i).account_id is None for i in ours)  # type: ignore[union-attr]


def test_an_import_that_changes_a_title_marks_the_lead(db: Database, tmp_path: Path) -> None:
    header = "Email,First Name,Last Name,Title,Phone,Country\n"
    csv1 = tmp_path / "v1.csv"
    csv1.write_text(
        header
        + "a@acme-corp.com,Ann,Archer,Buyer,+1 212 555 0100,US\n"
        + "b@acme-corp.com,Ben,Baker,Engineer,+1 212 555 0101,US\n"
    )
    first = run_import(db, csv1, mapping="salesforce", report_dir=tmp_path / "reports")
    assert first.created == 2
    assert marked(db) == []
    csv2 = tmp_path / "v2.csv"
    csv2.write_text(
        header
        + "a@acme-corp.com,Ann,Archer,Head of Purchasing,+1 212 555 0100,US\n"
        + "b@acme-corp.com,Benjamin,Baker,Engineer,+1 212 555 0101,US\n"  # the name only
    )
    second = run_import(db, csv2, mapping="salesforce", report_dir=tmp_path / "reports")
    assert second.updated == 2
    with db.transaction() as s:
        a = s.scalar(text("SELECT id FROM leads WHERE email = 'a@acme-corp.com'"))
    assert marked(db) == [a]


def test_a_merge_marks_the_winner_and_the_loser(db: Database) -> None:
    winner = make_lead(db, "ada@acme.io")
    loser = make_lead(db, "ada.l@acme.io", job_title="CTO")
    with db.transaction() as s:
        leads.merge_leads(s, SYSTEM, winner, loser)
        assert s.get(Lead, winner).job_title == "CTO"  # type: ignore[union-attr]
    # The winner gained the loser's title; the loser left the live leads.
    assert marked(db) == sorted([winner, loser])


def test_deleting_a_lead_drops_its_mark(db: Database) -> None:
    lead_id = make_lead(db, "ada@acme.io")
    update(db, lead_id, {"job_title": "CTO"})
    assert marked(db) == [lead_id]
    with db.transaction() as s:
        leads.delete_lead(s, SYSTEM, lead_id)
    assert marked(db) == []


def test_take_returns_and_clears_only_the_range(db: Database) -> None:
    ids = [make_lead(db, f"l{i}@acme.io") for i in range(6)]
    for lead_id in ids:
        update(db, lead_id, {"job_title": "CTO"})
    assert marked(db) == ids
    lo, hi = ids[1], ids[4]
    with db.transaction() as s:
        assert fit_dirty_ids(s, lo, hi) == ids[1:4]
        assert take_fit_dirty(s, lo, hi) == ids[1:4]
        assert take_fit_dirty(s, lo, hi) == []
    assert marked(db) == [ids[0], ids[4], ids[5]]

    # Taken in a transaction that rolls back: the marks stay.
    with pytest.raises(RuntimeError), db.transaction() as s:
        assert take_fit_dirty(s, *EVERY) == [ids[0], ids[4], ids[5]]
        raise RuntimeError
    assert marked(db) == [ids[0], ids[4], ids[5]]

    # A lead changed again after its mark was taken is marked again.
    update(db, ids[2], {"job_title": "CEO"})
    assert marked(db) == [ids[0], ids[2], ids[4], ids[5]]


def test_lost_triggers_come_back_with_every_lead_marked(db: Database) -> None:
    ids = [make_lead(db, f"l{i}@acme.io") for i in range(3)]
    table = FIT_TRIGGERS["fit_dirty_leads_update"]
    try:
        with db.engine.begin() as conn:
            on = f" ON {table}" if db.dialect == "postgresql" else ""
            conn.execute(text(f"DROP TRIGGER fit_dirty_leads_update{on}"))
        update(db, ids[0], {"job_title": "CTO"})
        assert marked(db) == []  # unrecorded
    finally:
        upgrade(db.engine)
    assert marked(db) == ids
    clear(db)
    update(db, ids[1], {"job_title": "CTO"})
    assert marked(db) == [ids[1]]


# --------------------------------------------------------------------------------- migration


@pytest.fixture
def scratch(db: Database, tmp_path: Path) -> Iterator[Engine]:
    """An empty database of the suite's dialect: a SQLite file, or a PostgreSQL schema of its own
    (first on the search path, so the migrations build everything there)."""

    if db.dialect != "postgresql":
        engine = make_engine(f"sqlite:///{tmp_path / 'scratch.db'}")
        yield engine
        engine.dispose()
        return
    schema = f"scratch_{uuid.uuid4().hex[:12]}"
    with db.engine.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    engine = make_engine(db.url, connect_args={"options": f"-csearch_path={schema}"})
    try:
        yield engine
    finally:
        engine.dispose()
        with db.engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))


def _migrate(engine: Engine, target: str, down: bool = False) -> None:
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, target)


def _triggers(conn: Connection) -> set[str]:
    if conn.dialect.name == "postgresql":
        sql = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgname LIKE 'fit_dirty%'"
        sql += " AND tgrelid::regclass::text IN ('leads', 'accounts')"  # this schema's tables
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'fit_dirty%'"
    return {str(r[0]) for r in conn.execute(text(sql))}


def _stamp(conn: Connection, at: datetime) -> object:
    """A time as a raw statement binds it: SQLite keeps naive UTC text."""

    return at.replace(tzinfo=None).isoformat(" ") if conn.dialect.name == "sqlite" else at


def _insert_leads(conn: Connection, n: int) -> None:
    stamp = _stamp(conn, datetime.now(UTC) - timedelta(days=1))
    for i in range(n):
        conn.execute(
            text(
                "INSERT INTO leads (email, origin, stage, consent, unsubscribed, created_at, updated_at, "
                "stage_changed_at, version) VALUES (:e, 'marketing', 'new', 'unknown', false, :t, :t, :t, 1)"
            ),
            {"e": f"old{i}@acme.io", "t": stamp},
        )


def test_the_migration_marks_every_existing_lead_and_downgrades(scratch: Engine) -> None:
    _migrate(scratch, BEFORE_FIT_DIRTY)
    with scratch.begin() as conn:
        _insert_leads(conn, 4)
        ids = sorted(int(i) for i in conn.execute(text("SELECT id FROM leads")).scalars())
    _migrate(scratch, "heads")
    with scratch.begin() as conn:
        assert sorted(conn.execute(text("SELECT lead_id FROM fit_dirty")).scalars()) == ids
        assert _triggers(conn) == set(FIT_TRIGGERS)
        conn.execute(text("DELETE FROM fit_dirty"))
        conn.execute(text("UPDATE leads SET job_title = 'CTO' WHERE id = :id"), {"id": ids[0]})
        assert list(conn.execute(text("SELECT lead_id FROM fit_dirty")).scalars()) == [ids[0]]

    _migrate(scratch, BEFORE_FIT_DIRTY, down=True)
    with scratch.begin() as conn:
        assert not inspect(conn).has_table("fit_dirty")
        assert _triggers(conn) == set()
        # Nothing left behind that would fire on a write.
        conn.execute(text("UPDATE leads SET job_title = 'CEO'"))
        conn.execute(text("DELETE FROM leads"))


def test_dropping_the_stored_last_activity_keeps_the_triggers_and_downgrades(scratch: Engine) -> None:
    """leads.last_activity_at became derived (8a2c4e6f1b37): the column goes with a plain ALTER
    TABLE that keeps the fit_dirty triggers; the downgrade stores it again from the events."""

    _migrate(scratch, BEFORE_DERIVED_LAST_ACTIVITY)
    with scratch.begin() as conn:
        _insert_leads(conn, 2)
        first, second = sorted(int(i) for i in conn.execute(text("SELECT id FROM leads")).scalars())
        for day in (3, 9, 5):
            conn.execute(
                text(
                    "INSERT INTO activities (lead_id, type, occurred_at, created_at) "
                    "VALUES (:l, 'call', :t, :t)"
                ),
                {"l": first, "t": _stamp(conn, datetime(2026, 11, day, 12, tzinfo=UTC))},
            )
    _migrate(scratch, "heads")
    with scratch.begin() as conn:
        assert "last_activity_at" not in {c["name"] for c in inspect(conn).get_columns("leads")}
        assert _triggers(conn) == set(FIT_TRIGGERS)
        conn.execute(text("DELETE FROM fit_dirty"))
        conn.execute(text("UPDATE leads SET job_title = 'CTO' WHERE id = :id"), {"id": second})
        assert list(conn.execute(text("SELECT lead_id FROM fit_dirty")).scalars()) == [second]
    with Session(scratch) as s:
        got = {lead.id: lead.last_activity_at for lead in s.query(Lead).order_by(Lead.id)}
    assert got == {first: datetime(2026, 11, 9, 12, tzinfo=UTC), second: None}

    _migrate(scratch, BEFORE_DERIVED_LAST_ACTIVITY, down=True)
    with scratch.begin() as conn:
        stored = {r[0]: r[1] for r in conn.execute(text("SELECT id, last_activity_at FROM leads"))}
        assert stored[second] is None
        assert str(stored[first]).startswith("2026-11-09 12:00:00")
        assert _triggers(conn) == set(FIT_TRIGGERS)


def test_create_all_builds_the_triggers_too(scratch: Engine) -> None:
    Base.metadata.create_all(scratch)
    with scratch.begin() as conn:
        assert _triggers(conn) == set(FIT_TRIGGERS)
        _insert_leads(conn, 2)
        conn.execute(text("UPDATE leads SET country = 'FR' WHERE email = 'old1@acme.io'"))
        assert len(list(conn.execute(text("SELECT lead_id FROM fit_dirty")).scalars())) == 1
    Base.metadata.drop_all(scratch)
    with scratch.begin() as conn:
        assert _triggers(conn) == set()
        if conn.dialect.name == "postgresql":
            functions = (
                "SELECT 1 FROM pg_proc WHERE proname LIKE 'fit_dirty%' "
                "AND pronamespace = to_regnamespace(current_schema())"
            )
            assert not conn.execute(text(functions)).all()
