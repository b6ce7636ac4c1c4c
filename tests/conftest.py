"""Shared fixtures: a real, migrated database (SQLite file by default; PostgreSQL when
LEADFLOW_TEST_DATABASE_URL is set), emptied between tests, and an API client per role."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from leadflow.api import create_app
from leadflow.auth import service as auth
from leadflow.auth.models import Role
from leadflow.auth.principal import SYSTEM, Principal
from leadflow.db.base import Base, Database
from leadflow.db.migrate import upgrade
from leadflow.scoring import service as scoring


def _url(tmp_root: Path) -> str:
    return os.environ.get("LEADFLOW_TEST_DATABASE_URL") or f"sqlite:///{tmp_root / 'test.db'}"


@pytest.fixture(scope="session")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    db = Database(_url(tmp_path_factory.mktemp("db")))
    if db.dialect == "postgresql":
        # A clean schema per run: the test command hands us a throwaway database.
        with db.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    upgrade(db.engine)
    yield db
    db.dispose()


def _truncate(db: Database) -> None:
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with db.engine.begin() as conn:
        if db.dialect == "postgresql":
            conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for name in tables:
                conn.execute(text(f"DELETE FROM {name}"))
            if conn.execute(text("SELECT 1 FROM sqlite_master WHERE name='sqlite_sequence'")).first():
                conn.execute(text("DELETE FROM sqlite_sequence"))


@pytest.fixture
def db(database: Database) -> Iterator[Database]:
    _truncate(database)
    yield database


@dataclass
class Actor:
    user_id: int
    token: str
    principal: Principal

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def make_user(db: Database, name: str, role: Role, team: str | None = None) -> Actor:
    with db.transaction() as s:
        user = auth.create_user(
            s, SYSTEM, name=name, email=f"{name.lower()}@leadflow-test.io", role=role, team=team
        )
        issued = auth.create_token(s, SYSTEM, user.id, name="test")
        return Actor(user.id, issued.token, auth.principal_for(user))


@pytest.fixture
def admin(db: Database) -> Actor:
    return make_user(db, "Admin", Role.ADMIN)


@pytest.fixture(scope="session")
def app(database: Database) -> FastAPI:
    """One app for the run: building one costs ~70 ms. The ``db`` fixture still empties the
    database before every test. Tests that change app state build their own."""

    return create_app(database)


@pytest.fixture(autouse=True)
def _restore_incremental_scoring() -> Iterator[None]:
    """A test may switch incremental scoring off (to control when scores change); the session's
    app relies on it being on, so it is restored after every test."""

    before = scoring.registered()
    yield
    for registered in before:
        scoring.register(registered)


@pytest.fixture(autouse=True)
def _restore_cadence_reactions() -> Iterator[None]:
    """A CLI command run in-process (CliRunner) wires the reactions to its own database
    (leadflow/wiring.py), and the cadence reactions follow the last one wired: point them back at
    the suite's database, or a later test's events land in a finished test's file."""

    from leadflow.cadences import handlers
    from leadflow.pipeline import signals

    before = handlers._db
    known = {id(d) for d in scoring.registered()} | {id(d) for d in signals._databases.values()}
    yield
    if before is not None:
        handlers.register(before)
    # The reactions hold the databases they were wired to: release the ones a test's CLI commands
    # (or its own app) opened, or their connection pools pile up (PostgreSQL runs out of slots).
    extra = {id(d): d for d in [*scoring.registered(), *signals._databases.values()] if id(d) not in known}
    for stale in extra.values():
        scoring.unregister(stale)
        signals.unregister(stale)
        if handlers._db is stale:
            handlers.unregister()
        stale.engine.dispose()


@pytest.fixture
def client(db: Database, app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c
