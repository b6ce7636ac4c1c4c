"""Server-side behaviour of the web UI through its HTTP surface (fast; the browser tests are in
tests/test_web_browser.py): sign-in and cookies, CSRF, visibility, and the lead actions."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from conftest import Actor, make_user
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from leadflow.auth.models import Role, User
from leadflow.auth.service import hash_password
from leadflow.config import get_settings
from leadflow.db.base import Database
from leadflow.leads import service as leads
from leadflow.leads.activities import ActivityFilter, list_activities
from leadflow.leads.models import Lead, StageChange
from leadflow.web.models import SavedSegment

PASSWORD = "correct horse battery"


def _with_password(db: Database, actor: Actor) -> str:
    with db.transaction() as s:
        s.execute(update(User).where(User.id == actor.user_id).values(password_hash=hash_password(PASSWORD)))
        return str(s.get(User, actor.user_id).email)  # type: ignore[union-attr]


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "page has no CSRF token"
    return m.group(1)


def sign_in(client: TestClient, db: Database, actor: Actor) -> str:
    """Sign ``actor`` in; returns the session's CSRF token."""

    email = _with_password(db, actor)
    page = client.get("/app/login")
    r = client.post(
        "/app/login",
        data={"email": email, "password": PASSWORD, "csrf_token": _csrf(page.text), "next": "/app/leads"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/app/leads"
    return _csrf(client.get("/app/leads").text)


def _lead(db: Database, actor: Actor, email: str, **values: object) -> int:
    with db.transaction() as s:
        res = leads.create_lead(
            s, actor.principal, {"email": email, "first_name": "Ada", "last_name": "Lovelace", **values}
        )
        return res.lead.id


def test_pages_need_sign_in(client: TestClient) -> None:
    r = client.get("/app/leads?stage=mql", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"].startswith("/app/login?next=/app/leads%3Fstage%3Dmql")
    hx = client.get("/app/leads", headers={"HX-Request": "true"}, follow_redirects=False)
    assert hx.headers["HX-Redirect"].startswith("/app/login")


def test_sign_in_sets_a_hardened_cookie_and_wrong_password_is_refused(
    client: TestClient, db: Database
) -> None:
    rep = make_user(db, "Rita", Role.SALES_REP, "EMEA")
    email = _with_password(db, rep)
    page = client.get("/app/login")
    bad = client.post(
        "/app/login", data={"email": email, "password": "nope-nope", "csrf_token": _csrf(page.text)}
    )
    assert bad.status_code == 401
    assert "Wrong email or password" in bad.text
    r = client.post(
        "/app/login",
        data={
            "email": email,
            "password": PASSWORD,
            "csrf_token": _csrf(page.text),
            "next": "https://evil.example",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/app/"  # no open redirect
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert "secure" not in cookie  # plain HTTP here; Secure is set behind HTTPS
    assert "Rita" in client.get("/app/leads").text


def test_login_without_csrf_token_is_refused(client: TestClient, db: Database) -> None:
    rep = make_user(db, "Rita", Role.SALES_REP, "EMEA")
    email = _with_password(db, rep)
    client.get("/app/login")
    r = client.post("/app/login", data={"email": email, "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 403


def test_unsafe_requests_without_the_csrf_token_are_refused(client: TestClient, db: Database) -> None:
    rep = make_user(db, "Rita", Role.SALES_REP, "EMEA")
    lead_id = _lead(db, rep, "ada@example.org")
    csrf = sign_in(client, db, rep)
    form = {"outcome": "connected", "notes": "hi"}
    r = client.post(f"/app/leads/{lead_id}/call", data=form, follow_redirects=False)
    assert r.status_code == 403
    r = client.post(
        f"/app/leads/{lead_id}/call", data={**form, "csrf_token": "forged"}, follow_redirects=False
    )
    assert r.status_code == 403
    with db.transaction() as s:
        assert list_activities(s, rep.principal, ActivityFilter(lead_id=lead_id)).items == []
    # The header HTMX sends works as well as the form field.
    r = client.post(
        f"/app/leads/{lead_id}/call", data=form, headers={"X-CSRF-Token": csrf}, follow_redirects=False
    )
    assert r.status_code == 303
    with db.transaction() as s:
        acts = list_activities(s, rep.principal, ActivityFilter(lead_id=lead_id)).items
    assert [a.type for a in acts] == ["call"]
    assert acts[0].properties == {"outcome": "connected", "notes": "hi"}


def test_sign_out_ends_the_session(client: TestClient, db: Database) -> None:
    rep = make_user(db, "Rita", Role.SALES_REP, "EMEA")
    csrf = sign_in(client, db, rep)
    r = client.post("/app/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert client.get("/app/leads", follow_redirects=False).status_code == 303


def test_a_rep_is_denied_another_teams_lead(client: TestClient, db: Database) -> None:
    admin = make_user(db, "Boss", Role.ADMIN)
    emea = make_user(db, "Rita", Role.SALES_REP, "EMEA")
    amer = make_user(db, "Sam", Role.SALES_REP, "Americas")
    theirs = _lead(db, admin, "theirs@example.org", owner_id=amer.user_id)
    mine = _lead(db, admin, "mine@example.org", owner_id=emea.user_id)
    sign_in(client, db, emea)
    denied = client.get(f"/app/leads/{theirs}")
    assert denied.status_code == 404
    assert "theirs@example.org" not in denied.text
    assert client.get(f"/app/leads/{mine}").status_code == 200
    inbox = client.get("/app/leads").text
    assert "mine@example.org" in inbox and "theirs@example.org" not in inbox
    # Actions are refused the same way (the service layer decides, not the page).
    csrf = _csrf(inbox)
    r = client.post(
        f"/app/leads/{theirs}/activities", data={"kind": "note", "notes": "x", "csrf_token": csrf}
    )
    assert r.status_code == 404


def test_inbox_filters_paginate_and_bulk_assign(client: TestClient, db: Database) -> None:
    manager = make_user(db, "Mona", Role.MANAGER, "EMEA")
    rep = make_user(db, "Rita", Role.SALES_REP, "EMEA")
    ids = [
        _lead(db, manager, f"lead{i}@example.org", source="webinar" if i % 2 else "seo") for i in range(60)
    ]
    csrf = sign_in(client, db, manager)
    first = client.get("/app/leads?source=webinar&sort=id&dir=asc")
    assert first.status_code == 200
    assert "lead1@example.org" in first.text and "lead2@example.org" not in first.text
    count = client.get("/app/leads/count?source=webinar")
    assert count.text == "30 leads"
    all_page = client.get("/app/leads?sort=id&dir=asc").text
    more = re.search(r'hx-get="(/app/leads\?[^"]*cursor=[^"]+)"', all_page)
    assert more, "a first page of 50 offers more"
    rest = client.get(
        more.group(1).replace("&amp;", "&"), headers={"HX-Request": "true", "HX-Target": "more-row"}
    )
    assert "lead59@example.org" in rest.text and "<html" not in rest.text
    r = client.post(
        "/app/leads/bulk",
        data={
            "ids": [str(i) for i in ids[:3]],
            "action": "assign",
            "owner_id": str(rep.user_id),
            "csrf_token": csrf,
        },
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert "3+leads+updated" in r.headers["location"]
    with db.transaction() as s:
        owners = s.scalars(select(Lead.owner_id).where(Lead.id.in_(ids[:4])).order_by(Lead.id)).all()
    assert owners == [rep.user_id] * 3 + [None]


def test_bulk_stage_change_reports_refused_leads(client: TestClient, db: Database) -> None:
    mk = make_user(db, "Mia", Role.MARKETING)
    a = _lead(db, mk, "a@example.org")
    b = _lead(db, mk, "b@example.org")
    csrf = sign_in(client, db, mk)
    with db.transaction() as s:
        leads.transition_lead(s, mk.principal, b, leads.Stage.NURTURE, reason="later")
    # One savepoint per lead: the legal move is kept, the illegal one reported.
    r = client.post(
        "/app/leads/bulk",
        data={"ids": [str(a), str(b)], "action": "stage", "stage": "cold", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert "1+lead+updated" in r.headers["location"]
    with db.transaction() as s:
        stages = dict(s.execute(select(Lead.id, Lead.stage).where(Lead.id.in_([a, b]))).all())
    assert stages == {a: "cold", b: "nurture"}  # a moved; nurture -> cold is not a legal move
    assert "1+refused" in r.headers["location"]


def test_saved_segments_are_per_user(client: TestClient, db: Database) -> None:
    rep = make_user(db, "Rita", Role.SALES_REP, "EMEA")
    other = make_user(db, "Sam", Role.SALES_REP, "EMEA")
    csrf = sign_in(client, db, rep)
    r = client.post(
        "/app/segments",
        data={"name": "Hot webinar", "query": "source=webinar&score_min=60", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert r.status_code == 303
    page = client.get("/app/leads").text
    assert "Hot webinar" in page and "source=webinar&amp;score_min=60" in page
    dup = client.post("/app/segments", data={"name": "Hot webinar", "query": "", "csrf_token": csrf})
    assert dup.status_code == 409
    with db.transaction() as s:
        seg = s.scalars(select(SavedSegment)).one()
    assert seg.user_id == rep.user_id
    sign_in(client, db, other)
    assert "Hot webinar" not in client.get("/app/leads").text
    csrf = _csrf(client.get("/app/leads").text)
    assert client.post(f"/app/segments/{seg.id}/delete", data={"csrf_token": csrf}).status_code == 404


def test_lead_page_qualifies_through_sal_and_sql_with_evidence(client: TestClient, db: Database) -> None:
    rep = make_user(db, "Rita", Role.SALES_REP, "EMEA")
    lead_id = _lead(db, rep, "ada@example.org", company="Analytical Engines Ltd")
    csrf = sign_in(client, db, rep)
    page = client.get(f"/app/leads/{lead_id}")
    assert page.status_code == 200
    assert "Score" in page.text and "Lifecycle timeline" in page.text and "Buying committee" in page.text
    answers = {
        "answers.source": "event",
        "answers.need": "faster close",
        "answers.product_interest": "pro",
        "answers.solution": "pro plan",
        "answers.timeline": "this_quarter",
        "csrf_token": csrf,
    }
    assert (
        client.post(
            f"/app/leads/{lead_id}/needs-assessment", data=answers, follow_redirects=False
        ).status_code
        == 303
    )
    bant = {f"criteria.{k}.rating": "2" for k in ("budget", "authority", "need", "timeline")}
    bant |= {"criteria.budget.answer": "50k approved", "csrf_token": csrf}
    assert (
        client.post(f"/app/leads/{lead_id}/discovery-call", data=bant, follow_redirects=False).status_code
        == 303
    )
    with db.transaction() as s:
        lead = leads.get_lead(s, rep.principal, lead_id)
        moves = s.scalars(
            select(StageChange).where(StageChange.lead_id == lead_id).order_by(StageChange.id)
        ).all()
    assert lead.stage == "sql"
    assert moves[-1].evidence is not None and moves[-1].evidence["kind"] == "discovery_call"
    assert moves[-1].evidence["criteria"]["budget"] == {"answer": "50k approved", "rating": 2}
    assert "50k approved" in client.get(f"/app/leads/{lead_id}").text


def test_missing_evidence_is_explained_not_a_crash(client: TestClient, db: Database) -> None:
    rep = make_user(db, "Rita", Role.SALES_REP, "EMEA")
    lead_id = _lead(db, rep, "ada@example.org")
    csrf = sign_in(client, db, rep)
    r = client.post(
        f"/app/leads/{lead_id}/transition",
        data={"to": "sql", "csrf_token": csrf},
        headers={"HX-Request": "true"},
    )
    assert r.status_code == 409
    assert r.headers["HX-Retarget"] == "#flash"
    assert "legal moves" in r.text or "needs" in r.text
    bad = client.post(
        f"/app/leads/{lead_id}/transition",
        data={"to": "bad", "bad_reason": "competitor", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert bad.status_code == 303
    with db.transaction() as s:
        lead = leads.get_lead(s, rep.principal, lead_id)
    assert (lead.stage, lead.bad_reason) == ("bad", "competitor")


@pytest.mark.parametrize(
    "path",
    [
        "/static/vendor/htmx-2.0.11.min.js",
        "/static/vendor/chart-4.6.1.umd.min.js",
        "/static/app.js",
        "/static/app.css",
    ],
)
def test_assets_are_served_from_the_package(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 200 and len(r.content) > 1000


def test_dashboard_charts_count_only_visible_leads(client: TestClient, db: Database) -> None:
    admin = make_user(db, "Boss", Role.ADMIN)
    rep = make_user(db, "Rita", Role.SALES_REP, "EMEA")
    other = make_user(db, "Sam", Role.SALES_REP, "Americas")
    _lead(db, admin, "a@example.org", source="webinar", owner_id=rep.user_id)
    _lead(db, admin, "b@example.org", source="seo", owner_id=other.user_id)
    sign_in(client, db, rep)
    page = client.get("/app/dashboard")
    assert page.status_code == 200
    islands = dict(re.findall(r'<script type="application/json" id="([^"]+)">(.*?)</script>', page.text))
    assert set(islands) >= {"chart-funnel", "chart-sources", "chart-scores"}
    sources = json.loads(islands["chart-sources"])
    assert sources["labels"] == ["webinar"] and sources["series"][0]["data"] == [1]


def test_csv_import_runs_with_progress_and_offers_the_error_report(
    client: TestClient, db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADFLOW_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        mk = make_user(db, "Mia", Role.MARKETING)
        csrf = sign_in(client, db, mk)
        body = (
            "Email,First Name,Last Name,Company\nada@example.org,Ada,Lovelace,Engines\nnot-an-email,Bob,B,X\n"
        )
        r = client.post(
            "/app/imports",
            data={"mapping": "auto", "csrf_token": csrf},
            files={"file": ("leads.csv", body.encode(), "text/csv")},
            follow_redirects=False,
        )
        assert r.status_code == 303, r.text
        run_url = r.headers["location"]
        deadline = time.monotonic() + 30
        while True:
            frag = client.get(run_url, headers={"HX-Request": "true"}).text
            if "every 1s" not in frag or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert "2 rows, 1 created" in frag and "1 failed" in frag, frag
        link = re.search(r'href="(/app/imports/\d+/errors\.csv)"', frag)
        assert link, frag
        report = client.get(link.group(1))
        assert report.status_code == 200 and "not-an-email" in report.text
        with db.transaction() as s:
            assert s.scalar(select(Lead.id).where(Lead.email == "ada@example.org")) is not None
        # The run page reads the import's row: a rep (own imports only) cannot watch it.
        other = make_user(db, "Max", Role.MANAGER, "EMEA")
        sign_in(client, db, other)
        assert client.get(run_url).status_code in (403, 404)
    finally:
        get_settings.cache_clear()


def test_settings_users_and_tokens(client: TestClient, db: Database) -> None:
    admin = make_user(db, "Boss", Role.ADMIN)
    csrf = sign_in(client, db, admin)
    assert "Active model" in client.get("/app/settings/scoring").text
    r = client.post(
        "/app/settings/users",
        data={
            "name": "Nia",
            "email": "nia@example.org",
            "role": "sales_rep",
            "team": "EMEA",
            "password": "longenough1",
            "csrf_token": csrf,
        },
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert "nia@example.org" in client.get("/app/settings/users").text
    page = client.post(
        "/app/settings/tokens", data={"name": "zapier", "scopes": ["leads:read"], "csrf_token": csrf}
    )
    token = re.search(r'id="new-token">(lf_[^<]+)<', page.text)
    assert token
    api = client.get("/api/leads", headers={"Authorization": f"Bearer {token.group(1)}"})
    assert api.status_code == 200
    # A rep cannot add users: the service refuses, the page says so.
    rep = make_user(db, "Rita", Role.SALES_REP, "EMEA")
    csrf = sign_in(client, db, rep)
    r = client.post(
        "/app/settings/users",
        data={"name": "X", "email": "x@example.org", "role": "admin", "csrf_token": csrf},
    )
    assert r.status_code == 403


def test_session_cookie_does_not_authenticate_the_api(client: TestClient, db: Database) -> None:
    # The JSON API takes bearer tokens only, so a cross-site form cannot drive it with the cookie.
    rep = make_user(db, "Rita", Role.SALES_REP, "EMEA")
    sign_in(client, db, rep)
    assert client.get("/api/leads").status_code == 401


def _deal(db: Database, actor: Actor, email: str, owner_id: int, amount: float) -> int:
    from leadflow.core.lifecycle import DiscoveryCall, MarketingReview, NeedsAssessment
    from leadflow.pipeline import service as pipeline

    lead_id = _lead(db, actor, email, owner_id=owner_id, company=email.split("@")[0].title())
    with db.transaction() as s:
        for stage, ev in (
            (leads.Stage.MQL, MarketingReview(note="booth")),
            (leads.Stage.SAL, NeedsAssessment(answers={"need": "x"})),
            (leads.Stage.SQL, DiscoveryCall(criteria={"budget": True})),
        ):
            leads.transition_lead(s, actor.principal, lead_id, stage, evidence=ev)
        opp = pipeline.convert_lead(s, actor.principal, lead_id, pipeline.ConvertInput(amount=amount))
        return opp.id


def test_kanban_totals_moves_and_visibility(client: TestClient, db: Database) -> None:
    admin = make_user(db, "Boss", Role.ADMIN)
    rep = make_user(db, "Rita", Role.SALES_REP, "EMEA")
    other = make_user(db, "Sam", Role.SALES_REP, "Americas")
    mine = _deal(db, admin, "mine@example.org", rep.user_id, 10_000)
    _deal(db, admin, "mine2@example.org", rep.user_id, 30_000)
    theirs = _deal(db, admin, "theirs@example.org", other.user_id, 99_000)
    csrf = sign_in(client, db, rep)
    board = client.get("/app/pipeline").text
    qualification = board[
        board.index('id="column-qualification"') : board.index('id="column-needs_analysis"')
    ]
    assert "Mine" in qualification and "Theirs" not in board
    assert "40,000 · weighted <strong>4,000</strong>" in qualification  # 10 % of 40k
    assert client.get(f"/app/opportunities/{theirs}").status_code == 404
    r = client.post(
        "/app/opportunities/move",
        data={"card": str(theirs), "stage": "proposal", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert r.status_code == 404
    r = client.post(
        "/app/opportunities/move",
        data={"card": str(mine), "stage": "proposal", "csrf_token": csrf, "back": "/app/pipeline"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/app/pipeline"
    # Closing lost without a reason is refused with the reasons to choose from.
    r = client.post(
        "/app/opportunities/move",
        data={"card": str(mine), "stage": "closed_lost", "csrf_token": csrf},
        headers={"HX-Request": "true"},
    )
    assert r.status_code == 422 and "needs a reason" in r.text
    page = client.get(f"/app/opportunities/{mine}").text
    assert "Proposal" in page and "10,000.00" in page


def test_task_inbox_overdue_and_one_click_outcome(client: TestClient, db: Database) -> None:
    from datetime import timedelta

    from leadflow.db.base import utcnow
    from leadflow.tasks import service as tasks
    from leadflow.tasks.models import Task

    rep = make_user(db, "Rita", Role.SALES_REP, "EMEA")
    lead_id = _lead(db, rep, "ada@example.org", owner_id=rep.user_id)
    with db.transaction() as s:
        late = tasks.create_task(
            s,
            rep.principal,
            lead_id=lead_id,
            kind="call",
            title="Call Ada back",
            due_at=utcnow() - timedelta(hours=3),
        ).id
        tasks.create_task(
            s,
            rep.principal,
            lead_id=lead_id,
            kind="todo",
            title="Send the deck",
            due_at=utcnow() + timedelta(days=9),
        )
    csrf = sign_in(client, db, rep)
    page = client.get("/app/tasks").text
    assert "Overdue (1)" in page and "Call Ada back" in page and "Send the deck" not in page
    assert "Send the deck" in client.get("/app/tasks?due=upcoming").text
    r = client.post(
        f"/app/tasks/{late}/complete",
        data={"outcome": "no_answer", "csrf_token": csrf},
        headers={"HX-Request": "true"},
    )
    assert r.status_code == 200 and "Call Ada back (no answer)" in r.text
    with db.transaction() as s:
        task = s.get(Task, late)
        assert task is not None and (task.status, task.outcome) == ("done", "no_answer")
        acts = list_activities(s, rep.principal, ActivityFilter(lead_id=lead_id)).items
    assert [(a.type, (a.properties or {}).get("outcome")) for a in acts] == [("call", "no_answer")]
    again = client.post(f"/app/tasks/{late}/complete", data={"outcome": "connected", "csrf_token": csrf})
    assert again.status_code == 422


def test_settings_sequences_and_pipelines(client: TestClient, db: Database) -> None:
    admin = make_user(db, "Boss", Role.ADMIN)
    csrf = sign_in(client, db, admin)
    seqs = client.get("/app/settings/sequences")
    assert seqs.status_code == 200
    pipes = client.get("/app/settings/pipelines")
    assert pipes.status_code == 200 and "Closed lost" in pipes.text
    r = client.post(
        "/app/settings/reasons",
        data={"kind": "lost", "key": "no_budget_2027", "label": "No budget next year", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert "No budget next year" in client.get("/app/settings/pipelines").text
    bad = client.post("/app/settings/pipelines/1/stages", data={"document": "[{", "csrf_token": csrf})
    assert bad.status_code == 422 and "not valid JSON" in bad.text


def test_inbox_count_stops_at_the_cap(
    client: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from leadflow.web import routes

    admin = make_user(db, "Boss", Role.ADMIN)
    for i in range(7):
        _lead(db, admin, f"c{i}@example.org")
    sign_in(client, db, admin)
    assert client.get("/app/leads/count").text == "7 leads"
    monkeypatch.setattr(routes, "COUNT_CAP", 5)
    assert client.get("/app/leads/count").text == "5+ leads"


@pytest.mark.parametrize(
    "name", ["funnel", "velocity", "forecast", "handoff_sla", "mql_rejections", "stale_deals"]
)
def test_dashboard_report_cards_render(client: TestClient, db: Database, name: str) -> None:
    admin = make_user(db, "Boss", Role.ADMIN)
    _lead(db, admin, "a@example.org", source="webinar")
    sign_in(client, db, admin)
    assert f'hx-get="/app/dashboard/reports/{name}"' in client.get("/app/dashboard").text
    card = client.get(f"/app/dashboard/reports/{name}")
    assert card.status_code == 200 and f'id="report-{name}"' in card.text
