"""The dashboard's lead charts read the reports feature's funnel facts and summaries (not the
leads table), stay current after changes, and count only the leads the user sees."""

from __future__ import annotations

import json
import re

from conftest import Actor, make_user
from fastapi.testclient import TestClient
from sqlalchemy import inspect
from test_web_server import _lead, sign_in

from leadflow.auth.models import Role
from leadflow.core.lifecycle import MarketingReview, Stage
from leadflow.db.base import Database
from leadflow.leads import service as leads


def _islands(html: str) -> dict[str, dict[str, object]]:
    found = re.findall(r'<script type="application/json" id="([^"]+)">(.*?)</script>', html)
    return {k: json.loads(v) for k, v in found}


def _series(island: dict[str, object]) -> dict[str, int]:
    labels = island["labels"]
    data = island["series"][0]["data"]  # type: ignore[index]
    return dict(zip(labels, data, strict=True))  # type: ignore[call-overload]


def _conversions(html: str) -> dict[str, str]:
    return dict(re.findall(r"<tr><td>(\w+) → (?:\w+)</td><td class=\"num\">([^<]+)</td></tr>", html))


def test_dashboard_counts_come_from_the_facts_and_follow_changes(
    client: TestClient, db: Database, admin: Actor
) -> None:
    rep = make_user(db, "Rita", Role.SALES_REP, "EMEA")
    other = make_user(db, "Sam", Role.SALES_REP, "Americas")
    ids = [
        _lead(db, admin, f"l{i}@example.org", source=src, owner_id=owner)
        for i, (src, owner) in enumerate(
            [("webinar", rep.user_id), ("webinar", None), ("seo", other.user_id), (None, rep.user_id)]
        )
    ]
    with db.transaction() as s:
        for lead_id in ids[:2]:
            leads.transition_lead(
                s, admin.principal, lead_id, Stage.MQL, evidence=MarketingReview(note="asked")
            )
    sign_in(client, db, admin)
    page = client.get("/app/dashboard").text
    charts = _islands(page)
    assert _series(charts["chart-funnel"])["mql"] == 2 and _series(charts["chart-funnel"])["new"] == 2
    assert _series(charts["chart-sources"]) == {"webinar": 2, "seo": 1, "(none)": 1}
    assert _conversions(page)["lead"] == "50.0 %"

    # A later move shows on the next load (the facts refresh incrementally).
    with db.transaction() as s:
        leads.transition_lead(s, admin.principal, ids[2], Stage.MQL, evidence=MarketingReview(note="asked"))
        version = leads.get_lead(s, admin.principal, ids[3]).version
        leads.update_lead(
            s, admin.principal, ids[3], {"source": "seo"}, expected_version=version, reason="fix"
        )
    page = client.get("/app/dashboard").text
    charts = _islands(page)
    assert _series(charts["chart-funnel"])["mql"] == 3
    assert _series(charts["chart-sources"]) == {"webinar": 2, "seo": 2}
    assert _conversions(page)["lead"] == "75.0 %"

    # A rep sees their own and the unassigned leads only.
    client.cookies.clear()
    sign_in(client, db, rep)
    charts = _islands(client.get("/app/dashboard").text)
    assert _series(charts["chart-sources"]) == {"webinar": 2, "seo": 1}
    assert sum(_series(charts["chart-funnel"]).values()) == 3


def test_the_web_indexes_exist_after_migration(db: Database) -> None:
    insp = inspect(db.engine)
    leads_ix = {i["name"]: i["column_names"] for i in insp.get_indexes("leads")}
    facts_ix = {i["name"]: i["column_names"] for i in insp.get_indexes("report_lead_funnel")}
    assert leads_ix["ix_leads_source_owner_created_id"] == ["source", "owner_id", "created_at", "id"]
    assert facts_ix["ix_report_lead_funnel_owner_stage"] == ["owner_id", "stage", "source", "reached"]
