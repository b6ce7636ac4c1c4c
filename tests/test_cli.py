"""The ``leadflow`` command line, run in-process with CliRunner against a temporary SQLite file."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner, Result

from leadflow import cli
from leadflow.api import create_app
from leadflow.auth.models import User
from leadflow.auth.principal import SYSTEM, Principal
from leadflow.auth.service import principal_for
from leadflow.config import get_settings
from leadflow.core.lifecycle import MarketingReview, Stage
from leadflow.db.base import Database
from leadflow.leads import service as svc


@dataclass
class Cli:
    runner: CliRunner
    url: str

    def __call__(self, *args: str) -> Result:
        return self.runner.invoke(cli.app, list(args))

    def ok(self, *args: str) -> str:
        res = self(*args)
        assert res.exit_code == 0, (args, res.output)
        return res.stdout

    def database(self) -> Database:
        return Database(self.url)


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("LEADFLOW_DATABASE_URL", url)
    # A wide terminal: no truncated cells or wrapped messages.
    monkeypatch.setattr(cli.console, "width", 250)
    monkeypatch.setattr(cli.err, "width", 250)
    get_settings.cache_clear()
    yield Cli(CliRunner(), url)
    get_settings.cache_clear()


def user(db: Database, email: str) -> Principal:
    with db.transaction() as s:
        u = s.scalar(select(User).where(User.email == email))
        assert u is not None
        return principal_for(u)


@pytest.fixture
def populated(run: Cli) -> dict[str, Any]:
    """Users made with the CLI; leads made through the service layer on the CLI's database."""

    run.ok("init")
    run.ok("user", "create", "rita@acme.io", "--name", "Rita", "--role", "sales_rep", "--team", "east")
    run.ok("user", "create", "walt@acme.io", "--name", "Walt", "--role", "sales_rep", "--team", "west")
    run.ok("user", "create", "mia@acme.io", "--name", "Mia", "--role", "marketing")
    db = run.database()
    rita, walt = user(db, "rita@acme.io"), user(db, "walt@acme.io")
    ids: dict[str, int] = {}
    with db.transaction() as s:
        for key, owner, extra in [
            ("r1", rita, {"last_name": "Rivers"}),
            ("r2", rita, {"last_name": "Reyes"}),
            ("w1", walt, {"last_name": "Wong"}),
            ("free", None, {"last_name": "Free", "source": "webinar"}),
            ("mql", None, {"last_name": "Moore"}),
        ]:
            actor = owner or SYSTEM
            ids[key] = svc.create_lead(s, actor, {"email": f"{key}@leads.io", **extra}).lead.id
        svc.transition_lead(s, SYSTEM, ids["mql"], Stage.MQL, evidence=MarketingReview(note="booth"))
    db.dispose()
    return ids


# ----------------------------------------------------------------------------------- setup


def test_init_creates_the_schema_and_is_repeatable(run: Cli, tmp_path: Path) -> None:
    out = run.ok("init")
    assert "database ready" in out and "sqlite" in out
    assert (tmp_path / "cli.db").exists()
    assert "database ready" in run.ok("init")


def test_user_create_and_list(run: Cli) -> None:
    out = run.ok("user", "create", "Ada@Acme.io", "--name", "Ada", "--role", "admin")
    assert "created user 1: ada@acme.io (admin)" in out
    res = run("user", "create", "ada@acme.io", "--name", "Ada again", "--role", "admin")
    assert res.exit_code == 2
    assert "exists" in res.stderr
    res = run("user", "create", "not-an-email", "--name", "X", "--role", "admin")
    assert res.exit_code == 2 and "error" in res.stderr
    res = run("user", "create", "b@acme.io", "--name", "B", "--role", "overlord")
    assert res.exit_code == 2  # typer refuses the choice
    listed = run.ok("user", "list")
    assert "ada@acme.io" in listed and "Ada" in listed


def test_token_create_prints_a_token_the_api_accepts(run: Cli) -> None:
    run.ok("user", "create", "ada@acme.io", "--name", "Ada", "--role", "manager", "--team", "east")
    token = run.ok("token", "create", "ADA@acme.io").strip()
    assert token.startswith("lf_") and "\n" not in token
    db = run.database()
    try:
        with TestClient(create_app(db)) as client:
            me = client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
            assert me.status_code == 200, me.text
            assert (me.json()["role"], me.json()["team"], me.json()["label"]) == (
                "manager",
                "east",
                "ada@acme.io",
            )
            scoped = run.ok("token", "create", "ada@acme.io", "--scope", "leads:read").strip()
            h = {"Authorization": f"Bearer {scoped}"}
            assert client.get("/api/me", headers=h).json()["permissions"] == ["leads:read"]
            assert client.post("/api/leads", json={"email": "x@acme.io"}, headers=h).status_code == 403
            assert client.get("/api/leads", headers={"Authorization": "Bearer lf_bogus"}).status_code == 401
    finally:
        db.dispose()
    res = run("token", "create", "nobody@acme.io")
    assert res.exit_code == 2 and "nobody@acme.io" in res.stderr
    res = run("token", "create", "ada@acme.io", "--scope", "leads:fly")
    assert res.exit_code == 2 and "leads:fly" in res.stderr


def test_token_revoke(run: Cli) -> None:
    run.ok("user", "create", "ada@acme.io", "--name", "Ada", "--role", "admin")
    token = run.ok("token", "create", "ada@acme.io").strip()
    assert "token 1 revoked" in run.ok("token", "revoke", "1")
    db = run.database()
    try:
        with TestClient(create_app(db)) as client:
            assert client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    finally:
        db.dispose()
    assert run("token", "revoke", "99").exit_code == 2


# ----------------------------------------------------------------------------------- leads


def test_leads_list(run: Cli, populated: dict[str, int]) -> None:
    out = run.ok("leads", "list")
    assert "5 leads" in out
    for key in populated:
        assert f"{key}@leads.io" in out
    mql = run.ok("leads", "list", "--stage", "mql")
    assert "1 leads" in mql and "mql@leads.io" in mql and "r1@leads.io" not in mql
    both = run.ok("leads", "list", "--stage", "mql", "--stage", "new")
    assert "5 leads" in both
    assert "free@leads.io" in run.ok("leads", "list", "--source", "webinar")
    assert "wong" not in run.ok("leads", "list", "--q", "Riv").lower()


def test_leads_list_pages_with_a_cursor(run: Cli, populated: dict[str, int]) -> None:
    first = run.ok("leads", "list", "--sort", "last_name", "--limit", "2")
    assert "next page: --cursor" in first
    cursor = first.split("--cursor", 1)[1].split()[0]
    assert "free@leads.io" in first and "mql@leads.io" in first  # Free, Moore
    second = run.ok("leads", "list", "--sort", "last_name", "--limit", "2", "--cursor", cursor)
    assert "r2@leads.io" in second and "r1@leads.io" in second  # Reyes, Rivers
    assert "free@leads.io" not in second
    newest = run.ok("leads", "list", "--sort", "-last_name", "--limit", "1")
    assert "w1@leads.io" in newest and "r1@leads.io" not in newest  # Wong comes last
    res = run("leads", "list", "--sort", "email")
    assert res.exit_code == 2 and "sort" in res.stderr


def test_leads_list_as_a_rep(run: Cli, populated: dict[str, int]) -> None:
    out = run.ok("leads", "list", "--as", "rita@acme.io")
    assert "4 leads" in out
    assert "w1@leads.io" not in out and "r1@leads.io" in out and "free@leads.io" in out
    res = run("leads", "list", "--as", "ghost@acme.io")
    assert res.exit_code == 2 and "ghost@acme.io" in res.stderr


def test_leads_show(run: Cli, populated: dict[str, int]) -> None:
    out = run.ok("leads", "show", str(populated["mql"]))
    assert "mql@leads.io" in out
    assert "stage history" in out and "marketing_review" in out
    assert "legal next moves: sal, nurture, unqualified, bad" in out
    res = run("leads", "show", str(populated["w1"]), "--as", "rita@acme.io")
    assert res.exit_code == 2 and "not found" in res.stderr
    assert run("leads", "show", "999").exit_code == 2


def test_transition(run: Cli, populated: dict[str, int]) -> None:
    lead = str(populated["free"])
    out = run.ok("transition", lead, "mql", "--evidence", '{"kind": "marketing_review", "note": "call"}')
    assert "is now mql (version 2)" in out
    res = run("transition", lead, "customer")
    assert res.exit_code == 2
    assert "legal moves from mql: sal, nurture, unqualified, bad" in res.stderr
    res = run("transition", lead, "sal")
    assert res.exit_code == 2
    assert "needs_assessment" in res.stderr and "legal moves from mql" in res.stderr
    res = run("transition", lead, "nurture")
    assert res.exit_code == 2 and "reason" in res.stderr
    res = run("transition", lead, "sal", "--evidence", "{not json")
    assert res.exit_code == 2 and "--evidence" in res.stderr
    res = run(
        "transition", lead, "sal", "--evidence", '{"kind": "sal", "qualified": true}', "--as", "mia@acme.io"
    )
    assert res.exit_code == 2
    res = run(
        "transition", lead, "sal", "--evidence", '{"kind": "needs_assessment", "qualified": true}',
        "--as", "mia@acme.io",
    )  # fmt: skip
    assert res.exit_code == 2 and "marketing cannot move leads to sal" in res.stderr
    out = run.ok(
        "transition", lead, "sal", "--evidence", '{"kind": "needs_assessment", "qualified": true}',
        "--as", "rita@acme.io",
    )  # fmt: skip
    assert "is now sal" in out
    assert run.ok("transition", lead, "bad", "--bad-reason", "competitor").strip().endswith("(version 4)")
    shown = run.ok("leads", "show", lead)
    assert "legal next moves: recycled" in shown
    assert run("transition", str(populated["w1"]), "cold", "--as", "rita@acme.io").exit_code == 2


@pytest.mark.parametrize("evidence", ["[1, 2]", '"needs_assessment"', "42"])
def test_evidence_that_is_not_a_json_object_is_refused(
    run: Cli, populated: dict[str, int], evidence: str
) -> None:
    res = run("transition", str(populated["free"]), "mql", "--evidence", evidence)
    assert res.exit_code == 2, res.output
    assert "--evidence" in res.stderr and "object" in res.stderr


def test_user_text_is_shown_verbatim_not_as_markup(run: Cli, populated: dict[str, int]) -> None:
    lead = str(populated["free"])
    run.ok("transition", lead, "nurture", "--reason", "[red]call back[/red] in [Q3]")
    shown = run.ok("leads", "show", lead)
    assert "[red]call back[/red] in [Q3]" in shown
    res = run("token", "create", "rita@acme.io", "--scope", "leads[x]")
    assert res.exit_code == 2 and "'leads[x]'" in res.stderr


def test_an_id_beyond_the_database_is_an_error_message(run: Cli, populated: dict[str, int]) -> None:
    res = run("leads", "show", str(10**20))
    assert res.exit_code == 2, res.output
    assert "out of range" in res.stderr


# ----------------------------------------------------------------------------------- export


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_export_csv_to_stdout_with_a_stage_filter(run: Cli, populated: dict[str, int]) -> None:
    rows = _csv(run.ok("export"))
    assert len(rows) == 5
    assert list(rows[0]) == list(cli.EXPORT_COLUMNS)
    assert {r["email"] for r in rows} == {f"{k}@leads.io" for k in populated}
    mql = _csv(run.ok("export", "--stage", "mql"))
    assert [(r["email"], r["stage"]) for r in mql] == [("mql@leads.io", "mql")]
    assert _csv(run.ok("export", "--stage", "customer")) == []
    assert [r["email"] for r in _csv(run.ok("export", "--source", "webinar"))] == ["free@leads.io"]
    db = run.database()
    rita = user(db, "rita@acme.io").user_id
    db.dispose()
    owned = _csv(run.ok("export", "--owner", str(rita)))
    assert {r["email"] for r in owned} == {"r1@leads.io", "r2@leads.io"}


def test_export_json_to_a_file(run: Cli, populated: dict[str, int], tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    res = run("export", str(target), "--format", "json", "--stage", "new")
    assert res.exit_code == 0, res.output
    assert "exported 4 leads" in res.stderr
    data = json.loads(target.read_text())
    assert sorted(d["email"] for d in data) == ["free@leads.io", "r1@leads.io", "r2@leads.io", "w1@leads.io"]
    assert all(d["stage"] == "new" for d in data)
    assert set(data[0]) == set(cli.EXPORT_COLUMNS)
    empty = tmp_path / "none.json"
    run.ok("export", str(empty), "--format", "json", "--stage", "customer")
    assert json.loads(empty.read_text()) == []


def test_export_walks_every_page(
    run: Cli, populated: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli._iter_leads, "__defaults__", (2,))  # pages of 2 rows
    rows = _csv(run.ok("export"))
    assert [int(r["id"]) for r in rows] == sorted(populated.values())


def test_a_reps_export_has_only_their_leads(run: Cli, populated: dict[str, int], tmp_path: Path) -> None:
    rows = _csv(run.ok("export", "--as", "rita@acme.io"))
    assert {r["email"] for r in rows} == {"r1@leads.io", "r2@leads.io", "free@leads.io", "mql@leads.io"}
    target = tmp_path / "walt.csv"
    run.ok("export", str(target), "--as", "walt@acme.io", "--stage", "new")
    assert {r["email"] for r in _csv(target.read_text())} == {"w1@leads.io", "free@leads.io"}


def test_export_refusals(run: Cli, populated: dict[str, int]) -> None:
    res = run("export", "--format", "xml")
    assert res.exit_code == 2 and "csv or json" in res.stderr
    assert run("export", "--as", "nobody@acme.io").exit_code == 2
