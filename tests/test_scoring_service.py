"""Scoring service on a real database: model versions, incremental and full rescoring agree,
thresholds act once per crossing, explanations and history."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from conftest import Actor, make_user
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select
from test_scoring_core import attrs_st, event_st, model_st

from leadflow.audit.models import AuditEntry
from leadflow.auth.models import Role
from leadflow.auth.principal import SYSTEM
from leadflow.core import scoring as core
from leadflow.core.lifecycle import Stage
from leadflow.db.base import Database
from leadflow.errors import Forbidden, InvalidInput, NotFound
from leadflow.events import (
    DomainEvent,
    subscribe,
    subscribe_in_transaction,
    unsubscribe,
    unsubscribe_in_transaction,
)
from leadflow.leads import activities
from leadflow.leads import service as leads
from leadflow.leads.models import StageChange
from leadflow.scoring import service as svc
from leadflow.scoring.models import (
    EngagementBuild,
    LeadScore,
    ScoreHistory,
    ScoringModelVersion,
    ThresholdFiring,
)

NOW = datetime.now(UTC)
SOON = NOW + timedelta(days=1)  # events dated ahead count as new: no decay while the test runs


@pytest.fixture
def scoring(db: Database) -> Iterator[Database]:
    svc.register(db)
    yield db
    svc.unregister(db)


@pytest.fixture
def quiet(db: Database) -> Database:
    """No incremental scoring (an app built by an earlier test may have registered it)."""

    svc.unregister(db)
    return db


@pytest.fixture
def captured() -> Iterator[list[DomainEvent]]:
    seen: list[DomainEvent] = []
    names = ["scoring.task_requested", "scoring.sequence_enrollment_requested", "scoring.webhook_requested"]
    for n in names:
        subscribe(n, seen.append)
    yield seen
    for n in names:
        unsubscribe(n, seen.append)


def new_lead(db: Database, **data: Any) -> int:
    with db.transaction() as s:
        return leads.create_lead(s, SYSTEM, data).lead.id


def ingest(db: Database, items: list[dict[str, Any]]) -> None:
    with db.transaction() as s:
        res = activities.ingest(s, SYSTEM, items)
        assert not res.errors, res.errors


def stored(db: Database, lead_id: int) -> LeadScore:
    with db.transaction() as s:
        row = s.get(LeadScore, lead_id)
        assert row is not None
        return row


HOT = {"email": "vp@acme.io", "job_title": "VP Sales", "industry": "Software", "employee_count": 300}


def test_a_new_lead_is_scored_on_fit_alone(scoring: Database) -> None:
    lid = new_lead(scoring, **HOT)
    row = stored(scoring, lid)
    assert (row.fit, row.engagement, row.total, row.grade) == (100, 0, 50, "A")
    assert row.model_version == 0  # the built-in default
    assert row.explanation is None  # computed on request, with the events behind each rule
    with scoring.transaction() as s:
        view = svc.explain(s, SYSTEM, lid)
    assert {r.rule_id for r in view.score.reasons if r.kind == "fit"} == {
        "decision_maker",
        "company_size",
        "target_industry",
        "revenue_role",
    }
    cold = new_lead(scoring, email="kid@gmail.com", job_title="Student intern")
    assert stored(scoring, cold).total == 0 and stored(scoring, cold).grade == "D"


def test_events_raise_the_score_and_thresholds_act_once(
    scoring: Database, captured: list[DomainEvent]
) -> None:
    lid = new_lead(scoring, **HOT)
    ingest(scoring, [{"lead_id": lid, "type": "webinar", "occurred_at": SOON}])  # 50 + 10/2 = 55: nothing yet
    assert stored(scoring, lid).total == pytest.approx(55)
    ingest(
        scoring, [{"lead_id": lid, "type": "form_submit", "occurred_at": SOON}]
    )  # 60: MQL + marketing email
    row = stored(scoring, lid)
    assert row.total == pytest.approx(60, abs=1e-3)
    assert row.armed == {"marketing_email": False, "sales_call": True}
    with scoring.transaction() as s:
        lead = leads.get_lead(s, SYSTEM, lid)
        assert lead.stage == "mql"
        change = s.scalars(
            select(StageChange).where(StageChange.lead_id == lid, StageChange.to_stage == "mql")
        ).one()
        assert change.evidence is not None and change.evidence["kind"] == "score_threshold"
        assert change.evidence["threshold"] == 60 and change.evidence["score"] >= 60
        firings = list(s.scalars(select(ThresholdFiring).where(ThresholdFiring.lead_id == lid)))
    assert [(f.action, f.outcome) for f in firings] == [
        ("move_to_mql", "done"),
        ("enroll_sequence", "emitted"),
    ]
    assert [e.name for e in captured] == ["scoring.sequence_enrollment_requested"]
    assert captured[0].payload["sequence"] == "marketing-email"

    # More engagement: the sales call fires at 80, once.
    ingest(scoring, [{"lead_id": lid, "type": "demo_request"}, {"lead_id": lid, "type": "trial_start"}])
    assert stored(scoring, lid).total >= 80
    ingest(scoring, [{"lead_id": lid, "type": "email_open"}])
    with scoring.transaction() as s:
        actions = [f.action for f in s.scalars(select(ThresholdFiring).where(ThresholdFiring.lead_id == lid))]
        history = list(
            s.scalars(select(ScoreHistory).where(ScoreHistory.lead_id == lid).order_by(ScoreHistory.id))
        )
    assert actions == ["move_to_mql", "enroll_sequence", "create_task"]
    task = [e for e in captured if e.name == "scoring.task_requested"]
    assert len(task) == 1 and task[0].payload["task"] == "call" and task[0].payload["lead_id"] == lid
    assert [round(h.total) for h in history][:3] == [50, 55, 60]


@pytest.mark.usefixtures("quiet")
def test_hovering_at_the_line_does_not_fire_again(db: Database) -> None:
    # Time is simulated from 60 days ago: events may not be dated ahead of the real clock.
    base = NOW - timedelta(days=60)
    lid = new_lead(db, **HOT)
    with db.transaction() as s:
        activities.ingest(
            s,
            SYSTEM,
            [
                {"lead_id": lid, "type": t, "occurred_at": base}
                for t in ("webinar", "form_submit", "email_click")
            ],
        )

    def fired_at(days: float) -> tuple[float, int, dict[str, bool] | None]:
        with db.transaction() as s:
            svc.rescore_leads(s, [lid], as_of=base + timedelta(days=days))
            n = len(
                list(
                    s.scalars(
                        select(ThresholdFiring).where(ThresholdFiring.threshold_id == "marketing_email")
                    )
                )
            )
            row = s.get(LeadScore, lid)
            assert row is not None
            return row.total, n, row.armed

    # 50 (fit) + 23 engagement points / 2 = 61.5 at first; the events decay with a 30-day half-life.
    total, n, armed = fired_at(0)
    assert total == pytest.approx(61.5) and n == 2  # move_to_mql + enroll_sequence
    for days in (5, 10, 15):  # hovering around 60 but not below 60 - 5: nothing fires again
        total, n, armed = fired_at(days)
        assert 55 < total < 61 and n == 2 and armed == {"marketing_email": False, "sales_call": True}
    total, n, armed = fired_at(40)  # 50 + 23 * 0.397 / 2 = 54.6 < 55: re-armed
    assert total < 55 and armed == {"marketing_email": True, "sales_call": True}
    with db.transaction() as s:  # a new push over the line fires again
        activities.ingest(
            s, SYSTEM, [{"lead_id": lid, "type": "demo_request", "occurred_at": base + timedelta(days=40)}]
        )
    total, n, armed = fired_at(40)
    assert total > 60 and n == 4


def test_mql_move_is_skipped_when_not_legal(scoring: Database) -> None:
    rep = make_user(scoring, "Rep", Role.SALES_REP)
    with scoring.transaction() as s:
        sales_lead = leads.create_lead(s, rep.principal, {**HOT, "email": "s@acme.io"}).lead.id
    gone = new_lead(scoring, **{**HOT, "email": "u@acme.io"})
    with scoring.transaction() as s:
        leads.transition_lead(s, SYSTEM, gone, Stage.UNQUALIFIED, reason="no budget")
    ingest(scoring, [{"lead_id": i, "type": "demo_request"} for i in (sales_lead, gone)])
    with scoring.transaction() as s:
        firings = {
            f.lead_id: f
            for f in s.scalars(select(ThresholdFiring).where(ThresholdFiring.action == "move_to_mql"))
        }
        assert leads.get_lead(s, SYSTEM, sales_lead).stage == "new"
        assert leads.get_lead(s, SYSTEM, gone).stage == "unqualified"
    assert firings[sales_lead].outcome == "skipped" and "sales-sourced" in (firings[sales_lead].detail or "")
    assert firings[gone].outcome == "skipped" and "not a legal move" in (firings[gone].detail or "")
    with scoring.transaction() as s:  # no marketing email for a disqualified lead either
        other = s.scalars(
            select(ThresholdFiring).where(
                ThresholdFiring.lead_id == gone, ThresholdFiring.action != "move_to_mql"
            )
        ).all()
    assert [(f.action, f.outcome) for f in other] == [("enroll_sequence", "skipped")]


def _mql_records(db: Database, ids: list[int]) -> dict[int, tuple[str, int, int, str | None]]:
    """Per lead: stage, stage changes to mql, audit stage_change entries, the move's firing outcome."""

    with db.transaction() as s:
        out = {}
        for lid in ids:
            changes = s.scalars(
                select(StageChange).where(StageChange.lead_id == lid, StageChange.to_stage == "mql")
            ).all()
            audits = s.scalars(
                select(AuditEntry).where(
                    AuditEntry.entity_type == "lead",
                    AuditEntry.entity_id == lid,
                    AuditEntry.action == "stage_change",
                )
            ).all()
            firing = s.scalars(
                select(ThresholdFiring).where(
                    ThresholdFiring.lead_id == lid, ThresholdFiring.action == "move_to_mql"
                )
            ).first()
            for c in changes:
                assert c.evidence is not None and c.evidence["kind"] == "score_threshold"
                assert c.reason is not None and c.reason.startswith("score ")
            out[lid] = (
                leads.get_lead(s, SYSTEM, lid).stage,
                len(changes),
                len(audits),
                firing.outcome if firing else None,
            )
        return out


def test_crossings_of_one_batch_move_to_mql_together_with_one_record_per_lead(scoring: Database) -> None:
    moved: list[DomainEvent] = []
    subscribe("lead.stage_changed", moved.append)
    try:
        ids = [new_lead(scoring, **{**HOT, "email": f"batch{i}@acme.io"}) for i in range(6)]
        rep = make_user(scoring, "Rep", Role.SALES_REP)
        with scoring.transaction() as s:
            sales_lead = leads.create_lead(s, rep.principal, {**HOT, "email": "sales@acme.io"}).lead.id
        # One batch pushes all of them over 60 (and over 80: both thresholds in one jump).
        ingest(
            scoring,
            [
                {"lead_id": i, "type": t, "occurred_at": SOON}
                for i in [*ids, sales_lead]
                for t in ("demo_request", "trial_start")
            ],
        )
    finally:
        unsubscribe("lead.stage_changed", moved.append)
    records = _mql_records(scoring, [*ids, sales_lead])
    assert all(records[i] == ("mql", 1, 1, "done") for i in ids), records
    assert records[sales_lead] == ("new", 0, 0, "skipped")
    assert sorted(e.payload["lead_id"] for e in moved if e.payload["target"] == "mql") == ids
    with scoring.transaction() as s:
        tasks = s.scalars(select(ThresholdFiring).where(ThresholdFiring.action == "create_task")).all()
        assert sorted(f.lead_id for f in tasks) == sorted([*ids, sales_lead])
        for lid in ids:  # the version moved once, by the move
            assert leads.get_lead(s, SYSTEM, lid).version == 2


def test_a_refused_move_in_a_batch_falls_back_to_one_lead_at_a_time(scoring: Database) -> None:
    ids = [new_lead(scoring, **{**HOT, "email": f"fb{i}@acme.io"}) for i in range(4)]
    refused = ids[2]

    def refuse(session: Any, ev: DomainEvent) -> None:
        if ev.payload["lead_id"] == refused and ev.payload["target"] == "mql":
            raise InvalidInput("lead_id", "refused by another feature")

    subscribe_in_transaction("lead.stage_changed", refuse)
    try:
        ingest(scoring, [{"lead_id": i, "type": "demo_request"} for i in ids])
    finally:
        unsubscribe_in_transaction("lead.stage_changed", refuse)
    records = _mql_records(scoring, ids)
    for lid in ids:
        if lid == refused:
            assert records[lid] == ("new", 0, 0, "skipped")
        else:
            assert records[lid] == ("mql", 1, 1, "done")


@pytest.mark.usefixtures("quiet")
def test_model_versions_validate_activate_and_roll_back(db: Database, admin: Actor) -> None:
    doc = core.default_model().to_document()
    bad = {**doc, "fit": {"rules": [{"id": "size", "field": "employees", "min": 5, "points": 3}]}}
    with db.transaction() as s, pytest.raises(InvalidInput) as info:
        svc.save_model(s, admin.principal, bad, activate=True)
    errors = info.value.extra["errors"]
    assert errors[0]["rule"] == "size" and errors[0]["field"] == "field"
    with db.transaction() as s:
        assert svc.active_model(s).version == 0
        assert s.scalar(select(ScoringModelVersion.id)) is None  # nothing stored, nothing half-changed

    strict = {**doc, "name": "Strict", "weights": {"fit": 1, "engagement": 0}}
    with db.transaction() as s:
        v1 = svc.save_model(s, admin.principal, doc, activate=True).version
        v2 = svc.save_model(s, admin.principal, strict).version
        assert (v1, v2) == (1, 2)
        assert svc.active_model(s).version == 1
        svc.activate_version(s, admin.principal, 2)
        assert svc.active_model(s).model.name == "Strict"
        svc.activate_version(s, admin.principal, 1)  # rollback
        assert [r.active for r in svc.list_versions(s, admin.principal)] == [False, True]
        with pytest.raises(NotFound):
            svc.activate_version(s, admin.principal, 9)


@pytest.mark.usefixtures("quiet")
def test_only_admin_and_marketing_change_models(db: Database) -> None:
    rep = make_user(db, "Rep", Role.SALES_REP)
    manager = make_user(db, "Boss", Role.MANAGER, "east")
    mkt = make_user(db, "Mia", Role.MARKETING)
    doc = core.DEFAULT_DOCUMENT
    for who in (rep, manager):
        with db.transaction() as s, pytest.raises(Forbidden):
            svc.save_model(s, who.principal, doc)
    with db.transaction() as s:
        assert svc.save_model(s, mkt.principal, doc, activate=True).active
        assert len(svc.list_versions(s, rep.principal)) == 1


PEOPLE = [
    {"email": "a@acme.io", "job_title": "VP Marketing", "industry": "Software", "employee_count": 120},
    {"email": "b@gmail.com", "job_title": "Marketing student"},
    {"email": "c@rival.example", "job_title": "CTO", "industry": "Retail", "employee_count": 9000},
    {
        "email": "d@bank.example",
        "job_title": "Sales manager",
        "industry": "Financial Services",
        "country": "DE",
    },
    {"email": "e@corp.example", "attributes": {"plan": "pro"}, "unsubscribed": True},
]


def _events(ids: list[int]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    kinds = ["page_view", "email_open", "email_click", "content_download", "webinar", "pricing_request"]
    urls = ["/pricing", "/pricing/teams", "/blog/x", "/Pricing", None]
    k = 0
    for n, lid in enumerate(ids):
        for i in range(4 + 7 * n):
            k += 1
            url = urls[(i + n) % len(urls)]
            out.append(
                {
                    "lead_id": lid,
                    "type": kinds[(i * 3 + n) % len(kinds)],
                    "occurred_at": NOW - timedelta(days=(i * 37 + n * 11) % 120, hours=i),
                    "properties": {"url": url} if url else None,
                }
            )
    return out


@pytest.mark.usefixtures("quiet")
def test_full_rescore_agrees_with_incremental(db: Database, admin: Actor) -> None:
    custom = core.default_model().to_document()
    custom["fit"]["rules"].append(
        {"id": "pro_plan", "field": "attributes.plan", "in": ["PRO"], "points": 7},
    )
    custom["fit"]["rules"].append({"id": "german", "field": "country", "equals": "de", "points": 4})
    custom["engagement"]["rules"].append(
        {
            "id": "blog",
            "event": "page_view",
            "where": {"url": {"contains": "blog"}},
            "points": 2,
            "half_life_days": None,
        }
    )
    custom["engagement"]["rules"].append(
        {"id": "no_url", "event": "page_view", "where": {"url": {"exists": False}}, "points": -1}
    )
    with db.transaction() as s:
        svc.save_model(s, admin.principal, custom, activate=True)
    ids = [new_lead(db, **p) for p in PEOPLE]
    ingest(db, _events(ids))
    with db.transaction() as s:  # the per-lead path (Python, as explanations compute it)
        active = svc.active_model(s)
        per_lead = {}
        for lid in ids:
            one = svc.score_one(s, active, lid, NOW)
            assert one is not None
            per_lead[lid] = (one[0].fit, one[0].engagement, one[0].total, one[0].grade)
        svc.rescore_leads(s, ids, as_of=NOW, fire=False)  # incremental (SQL + NumPy for a few leads)
        incremental = {
            r.lead_id: (r.fit, r.engagement, r.total, r.grade) for r in s.scalars(select(LeadScore))
        }
        svc.clear_scores(s)
    seen: list[tuple[int, int]] = []
    result = svc.rescore_all(
        db, admin.principal, as_of=NOW, chunk=2, progress=lambda d, t: seen.append((d, t))
    )
    assert result.leads == len(ids) and result.model_version == 1
    assert seen[0] == (0, 5) and seen[-1] == (5, 5)
    with db.transaction() as s:
        full = {r.lead_id: (r.fit, r.engagement, r.total, r.grade) for r in s.scalars(select(LeadScore))}
    assert set(full) == set(incremental) == set(per_lead)
    for lid in ids:
        for other in (incremental[lid], per_lead[lid]):
            assert full[lid][:3] == pytest.approx(other[:3], abs=1e-6), lid
            assert full[lid][3] == other[3]
    assert any(v[1] > 0 for v in full.values())


def test_explain_breaks_the_score_into_rules_and_events(scoring: Database, admin: Actor) -> None:
    lid = new_lead(scoring, **HOT)
    ingest(scoring, [{"lead_id": lid, "type": "page_view", "properties": {"url": "/pricing"}}])
    with scoring.transaction() as s:
        view = svc.explain(s, admin.principal, lid)
        event_id = s.scalar(select(activities.Activity.id).where(activities.Activity.lead_id == lid))
    doc = view.score.explanation()
    pricing = next(r for r in doc["reasons"] if r["rule_id"] == "pricing_page")
    assert pricing["events"][0]["id"] == event_id and pricing["points"] == pytest.approx(10, abs=1e-3)
    assert [round(h.total, 1) for h in view.history] == [50.0, 55.5]
    assert view.armed == {"marketing_email": True, "sales_call": True}
    rep = make_user(scoring, "Other", Role.SALES_REP)
    with scoring.transaction() as s:
        leads.update_lead(s, admin.principal, lid, {"owner_id": admin.user_id}, expected_version=1)
    with scoring.transaction() as s, pytest.raises(NotFound):
        svc.explain(s, rep.principal, lid)


@pytest.mark.usefixtures("quiet")
def test_webhook_action_is_recorded_and_emitted(
    db: Database, admin: Actor, captured: list[DomainEvent]
) -> None:
    doc = core.default_model().to_document()
    doc["thresholds"] = [
        {
            "id": "hook",
            "at": 40,
            "actions": [{"type": "webhook", "url": "https://hooks.example/x", "secret_env": "HOOK_KEY"}],
        }
    ]
    with db.transaction() as s:
        svc.save_model(s, admin.principal, doc, activate=True)
    lid = new_lead(db, **HOT)
    with db.transaction() as s:
        svc.rescore_leads(s, [lid])
        firing = s.scalars(select(ThresholdFiring)).one()
    assert (firing.action, firing.outcome) == ("webhook", "queued")
    assert firing.payload is not None and firing.payload["url"] == "https://hooks.example/x"
    assert [e.name for e in captured] == ["scoring.webhook_requested"]


def test_erasing_a_lead_erases_its_scores(scoring: Database) -> None:
    lid = new_lead(scoring, **HOT)
    ingest(scoring, [{"lead_id": lid, "type": "demo_request"}])
    with scoring.transaction() as s:
        leads.delete_lead(s, SYSTEM, lid)
    with scoring.transaction() as s:
        assert s.get(LeadScore, lid) is None
        assert s.scalar(select(ScoreHistory.id)) is None
        assert s.scalar(select(ThresholdFiring.id)) is None


def test_a_merge_rescores_the_winner_with_the_losers_events(scoring: Database) -> None:
    winner = new_lead(scoring, **HOT)
    loser = new_lead(scoring, email="vp.private@gmail.com", first_name="Vee")
    ingest(scoring, [{"lead_id": loser, "type": "demo_request", "occurred_at": SOON}])
    assert stored(scoring, winner).engagement == 0
    with scoring.transaction() as s:
        leads.merge_leads(s, SYSTEM, winner, loser)
    assert stored(scoring, winner).engagement == pytest.approx(30)


def test_a_batch_of_leads_is_scored_once_after_the_outer_commit(
    scoring: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = svc.rescore_leads

    def spy(session: Any, ids: Any, **kw: Any) -> svc.RescoreResult:
        calls.append(len(set(ids)))
        return real(session, ids, **kw)

    monkeypatch.setattr(svc, "rescore_leads", spy)
    monkeypatch.setattr(svc._touched, "leads", set())  # nothing left over from earlier tests
    items = [{**HOT, "email": f"p{i}@acme.io"} for i in range(25)]
    with scoring.transaction() as s:  # one savepoint per item inside
        results = leads.create_leads_batch(s, SYSTEM, items)
    assert calls == [25]
    with scoring.transaction() as s:
        assert all(s.get(LeadScore, r.lead_id) is not None for r in results)


@pytest.mark.usefixtures("quiet")
def test_property_filters_agree_on_numbers_and_flags(db: Database, admin: Actor) -> None:
    doc = core.default_model().to_document()
    doc["engagement"]["rules"] = [
        {
            "id": "five",
            "event": "webinar",
            "where": {"seats": {"equals": "5"}},
            "points": 1,
            "half_life_days": None,
        },
        {
            "id": "flag",
            "event": "webinar",
            "where": {"live": {"in": ["true"]}},
            "points": 10,
            "half_life_days": None,
        },
        {
            "id": "none",
            "event": "webinar",
            "where": {"seats": {"exists": False}},
            "points": 100,
            "half_life_days": None,
        },
        {
            "id": "pre",
            "event": "webinar",
            "where": {"seats": {"prefix": "5."}},
            "points": 1000,
            "half_life_days": None,
        },
    ]
    with db.transaction() as s:
        svc.save_model(s, admin.principal, doc, activate=True)
    lid = new_lead(db, **HOT)
    props: list[dict[str, Any] | None] = [
        {"seats": 5},
        {"seats": 5.0},
        {"seats": "5", "live": True},
        {"seats": None, "live": False},
        {"live": "true"},
        None,
    ]
    ingest(db, [{"lead_id": lid, "type": "webinar", "occurred_at": NOW, "properties": p} for p in props])
    with db.transaction() as s:
        one = svc.score_one(s, svc.active_model(s), lid, NOW)
        assert one is not None
        svc.rescore_leads(s, [lid], as_of=NOW)
        row = s.get(LeadScore, lid)
        assert row is not None
        # The incremental path matched the events to the rules in SQL: its per-rule points.
        model = svc.active_model(s).model
        kept = svc.refresh_states(s, model, [lid])[lid]
        points = core.engagement_points_from_state(model, kept.state[None], np.array([kept.ref]), NOW)[0]
    python = {r.rule_id: r.points for r in one[0].reasons if r.kind == "engagement"}
    assert python == {"five": 2, "flag": 20, "none": 300, "pre": 1000}
    assert {r.id: p for r, p in zip(model.engagement.rules, points.tolist(), strict=True) if p} == python
    assert row.engagement == one[0].engagement


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    m=model_st,
    people=st.lists(st.tuples(attrs_st, st.lists(event_st, max_size=12)), min_size=1, max_size=3),
)
@pytest.mark.usefixtures("quiet")
def test_sql_and_python_paths_agree(
    db: Database, m: core.ScoringModel, people: list[tuple[dict[str, Any], list[tuple[str, float, Any]]]]
) -> None:
    """Random models, leads and events: the SQL + NumPy path (rescoring) gives the scores the
    Python path (explanations) gives."""

    # Scored as of three days ago, so that events "ahead" of the scoring time (up to two days)
    # are still in the past of the real clock, which ingest requires.
    as_of = NOW - timedelta(days=3)
    with db.transaction() as s:
        svc.save_model(s, SYSTEM, m.to_document(), activate=True)
    ids = []
    for attrs, events in people:
        data = {k: v for k, v in attrs.items() if v is not None and k not in ("seniority", "email")}
        data["email"] = f"{uuid.uuid4().hex[:12]}@{(attrs['email'] or 'x@acme.io').split('@')[1]}"
        lid = new_lead(db, **data)
        ids.append(lid)
        items = [
            {
                "lead_id": lid,
                "type": t,
                "occurred_at": as_of - timedelta(days=d),
                "properties": None if u is None else {"url": u},
            }
            for t, d, u in events
        ]
        if items:
            ingest(db, items)
    with db.transaction() as s:
        active = svc.active_model(s)
        svc.rescore_leads(s, ids, as_of=as_of, fire=False)  # state folded from the events
        python = {lid: svc.score_one(s, active, lid, as_of) for lid in ids}
    for full in (False, True):
        if full:  # the SQL pass over the events that builds every lead's state
            with db.transaction() as s:
                s.execute(delete(EngagementBuild))
            assert svc.rescore_all(db, SYSTEM, as_of=as_of, fire=False).rebuilt
        with db.transaction() as s:
            for lid in ids:
                one = python[lid]
                row = s.get(LeadScore, lid)
                assert one is not None and row is not None
                assert (row.fit, row.engagement, row.total) == pytest.approx(
                    (one[0].fit, one[0].engagement, one[0].total), abs=1e-6
                )
                assert row.grade == one[0].grade


@pytest.mark.usefixtures("quiet")
def test_a_rescore_that_changes_nothing_rewrites_no_score(db: Database) -> None:
    ids = [new_lead(db, **{**HOT, "email": f"same{i}@acme.io"}) for i in range(3)]
    cold = new_lead(db, email="kid@gmail.com", job_title="Student intern")
    first, later = NOW - timedelta(hours=2), NOW - timedelta(hours=1)

    def rows() -> dict[int, tuple[float, str, int, datetime]]:
        with db.transaction() as s:
            return {
                r.lead_id: (r.total, r.grade, r.model_version, r.computed_at)
                for r in s.scalars(select(LeadScore))
            }

    svc.rescore_all(db, SYSTEM, as_of=first, fire=False)
    before = rows()
    assert {v[3] for v in before.values()} == {first}
    again = svc.rescore_all(db, SYSTEM, as_of=later, fire=False)  # no events: nothing moves
    assert rows() == before and again.changed == 0
    with db.transaction() as s:  # another model version: every score is written again
        doc = core.default_model().to_document()
        doc["weights"] = {"fit": 0.6, "engagement": 0.4}
        version = svc.save_model(s, SYSTEM, doc, activate=True).version
    svc.rescore_all(db, SYSTEM, as_of=later, fire=False)
    after = rows()
    assert {v[2] for v in after.values()} == {version} and {v[3] for v in after.values()} == {later}
    assert after[ids[0]][0] == pytest.approx(60) and after[cold][0] == 0
