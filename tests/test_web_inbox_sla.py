"""The inbox's handoff SLA filter and badges, on the qualification feature's handoff records."""

from __future__ import annotations

import re
from datetime import timedelta

from conftest import Actor, make_user
from fastapi.testclient import TestClient
from sqlalchemy import update
from test_web_server import _lead, sign_in

from leadflow.auth.models import Role
from leadflow.core.lifecycle import MarketingReview, Stage
from leadflow.db.base import Database, utcnow
from leadflow.leads import service as leads
from leadflow.qualification import handoff
from leadflow.qualification.models import Handoff


def _mql(db: Database, admin: Actor, lead_id: int, due_in: timedelta) -> None:
    with db.transaction() as s:
        leads.transition_lead(
            s, admin.principal, lead_id, Stage.MQL, evidence=MarketingReview(note="webinar")
        )
        # The SLA clock is business time; the test pins the due time where each state needs it.
        s.execute(update(Handoff).where(Handoff.lead_id == lead_id).values(due_at=utcnow() + due_in))


def _listed(html: str) -> set[str]:
    return set(re.findall(r'<a href="/app/leads/\d+">(\w+) ', html))


def test_inbox_filters_and_badges_by_handoff_sla_state(
    client: TestClient, db: Database, admin: Actor
) -> None:
    rep = make_user(db, "Rita", Role.SALES_REP, "EMEA")
    ids = {
        name: _lead(db, admin, f"{name}@example.org", first_name=name.title(), owner_id=rep.user_id)
        for name in ("due", "soon", "breached", "met", "rejected", "plain")
    }
    _mql(db, admin, ids["due"], timedelta(hours=5))
    _mql(db, admin, ids["soon"], timedelta(minutes=20))
    _mql(db, admin, ids["breached"], timedelta(hours=-3))
    _mql(db, admin, ids["met"], timedelta(hours=2))
    _mql(db, admin, ids["rejected"], timedelta(hours=2))
    with db.transaction() as s:
        handoff.touch(s, rep.principal, ids["met"])
        handoff.reject(s, rep.principal, ids["rejected"], "no_need", "students")
    sign_in(client, db, rep)

    expected = {
        "due": {"Due"},
        "due_soon": {"Soon"},
        "breached": {"Breached"},
        "met": {"Met"},
        "rejected": {"Rejected"},
        "accepted": set(),
    }
    for state, names in expected.items():
        page = client.get(f"/app/leads?sla={state}")
        assert page.status_code == 200
        assert _listed(page.text) == names, state
        assert f'<option value="{state}" selected>' in page.text
    everything = client.get("/app/leads").text
    assert _listed(everything) == {"Due", "Soon", "Breached", "Met", "Rejected", "Plain"}
    assert re.search(r'class="sla sla-due" [^>]*>SLA due in [45] h<', everything)
    assert re.search(r'class="sla sla-due_soon" [^>]*>SLA due in 1\d min<', everything)
    assert re.search(r'class="sla sla-breached" [^>]*>SLA breached 3 h ago<', everything)
    assert 'class="sla sla-met"' in everything and 'class="sla sla-rejected"' in everything
    assert client.get("/app/leads/count?sla=breached").text == "1 lead"
    assert client.get("/app/leads?sla=soonish").status_code == 422


def test_sla_filter_keeps_visibility(client: TestClient, db: Database, admin: Actor) -> None:
    west = make_user(db, "Wes", Role.SALES_REP, "Americas")
    rep = make_user(db, "Rita", Role.SALES_REP, "EMEA")
    theirs = _lead(db, admin, "theirs@example.org", first_name="Theirs", owner_id=west.user_id)
    mine = _lead(db, admin, "mine@example.org", first_name="Mine", owner_id=rep.user_id)
    for lead_id in (theirs, mine):
        _mql(db, admin, lead_id, timedelta(hours=-1))
    sign_in(client, db, rep)
    assert _listed(client.get("/app/leads?sla=breached").text) == {"Mine"}
