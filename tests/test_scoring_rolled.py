"""Engagement rolled forward: per-lead state kept on ingest gives the scores a recomputation
from every event gives, through incremental scoring and full rescores (reusing the state or
rebuilding it from the events), and explanations stay complete."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import Actor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, inspect, select, text

from leadflow.auth.principal import SYSTEM
from leadflow.core import scoring as core
from leadflow.db.base import Database
from leadflow.db.migrate import upgrade
from leadflow.leads import activities
from leadflow.leads import service as leads
from leadflow.scoring import service as svc
from leadflow.scoring.models import EngagementBuild, LeadEngagement, LeadScore, ScoreHistory, ThresholdFiring

NOW = datetime.now(UTC)
HOT = {"job_title": "VP Sales", "industry": "Software", "employee_count": 300}


@pytest.fixture
def scoring(db: Database) -> Iterator[Database]:
    svc.register(db)
    yield db
    svc.unregister(db)


def new_lead(db: Database, n: int, **data: Any) -> int:
    with db.transaction() as s:
        # A fresh address per call: hypothesis examples share the database, and id() repeats.
        email = f"p{n}-{uuid.uuid4().hex[:12]}@acme.io"
        return leads.create_lead(s, SYSTEM, {"email": email, **HOT, **data}).lead.id


def ingest(db: Database, items: list[dict[str, Any]]) -> None:
    with db.transaction() as s:
        res = activities.ingest(s, SYSTEM, items)
        assert not res.errors, res.errors


def from_events(db: Database, ids: list[int], as_of: datetime) -> dict[int, tuple[float, float, float]]:
    """The scores recomputed from every event (the Python path explanations use)."""

    out = {}
    with db.transaction() as s:
        active = svc.active_model(s)
        for lid in ids:
            one = svc.score_one(s, active, lid, as_of)
            assert one is not None
            out[lid] = (one[0].fit, one[0].engagement, one[0].total)
    return out


def stored(db: Database, ids: list[int]) -> dict[int, tuple[float, float, float]]:
    with db.transaction() as s:
        rows = s.scalars(select(LeadScore).where(LeadScore.lead_id.in_(ids)))
        return {r.lead_id: (r.fit, r.engagement, r.total) for r in rows}


def _shown(x: float) -> float:
    return math.floor(x + 0.5)


def assert_current(db: Database, ids: list[int], as_of: datetime) -> None:
    """After a full rescore as of ``as_of``: each stored score is exact as of the time it was
    written, and shows what a recomputation as of ``as_of`` shows (a full rescore under the same
    model leaves a move that does not show as stored)."""

    check(db, ids)
    now = from_events(db, ids, as_of)
    for lid, (fit, eng, total) in stored(db, ids).items():
        assert fit == pytest.approx(now[lid][0], abs=1e-4), lid
        assert (_shown(eng), _shown(total)) == (_shown(now[lid][1]), _shown(now[lid][2])), lid


def check(db: Database, ids: list[int]) -> None:
    """Each stored score equals the recomputation from every event as of the time it was computed."""

    with db.transaction() as s:
        at = {
            r.lead_id: r.computed_at for r in s.scalars(select(LeadScore).where(LeadScore.lead_id.in_(ids)))
        }
    assert set(at) == set(ids)
    assert_same(stored(db, ids), {lid: from_events(db, [lid], at[lid])[lid] for lid in ids})


def pricing_events(ids: list[int], plan: tuple[tuple[str, float], ...]) -> list[dict[str, Any]]:
    """For each lead, one event of each (type, days ago) in ``plan``, on the /pricing page."""

    return [
        {
            "lead_id": lid,
            "type": kind,
            "occurred_at": NOW - timedelta(days=days),
            "properties": {"url": "/pricing"},
        }
        for lid in ids
        for kind, days in plan
    ]


def assert_same(a: dict[int, tuple[float, float, float]], b: dict[int, tuple[float, float, float]]) -> None:
    assert set(a) == set(b)
    for lid in a:
        # 1e-4 of a point (scores show as whole numbers): the incremental path once differed from
        # the recomputation by ~3e-6 in a helper's run (not reproduced in 13 reruns); a real
        # mismatch (a lost, doubled or wrongly decayed event) is orders of magnitude larger.
        assert a[lid] == pytest.approx(b[lid], abs=1e-4), lid


KINDS = ["page_view", "email_open", "email_click", "content_download", "webinar", "demo_request", "call"]
URLS = ["/pricing", "/pricing/teams", "/blog", None]

batch_st = st.lists(
    st.tuples(st.integers(0, 2), st.sampled_from(KINDS), st.floats(0, 90), st.sampled_from(URLS)),
    min_size=1,
    max_size=8,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=st.lists(batch_st, min_size=1, max_size=4))
def test_rolled_forward_scores_equal_a_recomputation(
    scoring: Database, admin: Actor, batches: list[list[tuple[int, str, float, str | None]]]
) -> None:
    """Batches of events (any order of time: late ones rebuild a lead's state) scored
    incrementally, then a full rescore from the kept state and one that rebuilds the state from
    the events: all three equal the scores recomputed from every event."""

    ids = [new_lead(scoring, n) for n in range(3)]
    for batch in batches:
        ingest(
            scoring,
            [
                {
                    "lead_id": ids[i],
                    "type": kind,
                    "occurred_at": NOW - timedelta(days=age),
                    "properties": {"url": url} if url else None,
                }
                for i, kind, age, url in batch
            ],
        )
    with scoring.transaction() as s:  # each score as of the time it was computed
        at = {
            r.lead_id: r.computed_at for r in s.scalars(select(LeadScore).where(LeadScore.lead_id.in_(ids)))
        }
    incremental = stored(scoring, ids)
    assert_same(incremental, {lid: from_events(scoring, [lid], at[lid])[lid] for lid in ids})

    later = NOW + timedelta(days=3)
    first = svc.rescore_all(scoring, admin.principal, as_of=later, fire=False)
    assert_current(scoring, ids, later)
    again = svc.rescore_all(scoring, admin.principal, as_of=later + timedelta(days=1), fire=False)
    assert not again.rebuilt or first.rebuilt is False  # the second one reuses the state
    assert_current(scoring, ids, later + timedelta(days=1))
    with scoring.transaction() as s:
        s.execute(delete(EngagementBuild))
    rebuilt = svc.rescore_all(scoring, admin.principal, as_of=later, fire=False)
    assert rebuilt.rebuilt
    assert_current(scoring, ids, later)


def test_a_rescore_as_of_a_time_before_some_events_counts_them_undecayed(
    scoring: Database, admin: Actor
) -> None:
    # Events dated after the time a full rescore computes for count as new, which a kept state
    # cannot express: those leads are scored from their events, also where the engagement was
    # computed ahead from the states (SQLite, nothing committed since the read-ahead).
    ids = [new_lead(scoring, n) for n in range(4)]
    ingest(scoring, pricing_events(ids[:2], (("webinar", 1), ("page_view", 0))))
    ingest(scoring, pricing_events(ids[2:], (("webinar", 20),)))
    svc.rescore_all(scoring, admin.principal, as_of=NOW, fire=False)
    earlier = NOW - timedelta(days=5)
    res = svc.rescore_all(scoring, admin.principal, as_of=earlier, fire=False, chunk=2)
    assert_same(stored(scoring, ids), from_events(scoring, ids, earlier))
    assert res.trusted_ranges == (2 if scoring.dialect == "sqlite" else 0)


def test_model_changes_reuse_or_rebuild_the_state(scoring: Database, admin: Actor) -> None:
    ids = [new_lead(scoring, n, job_title=t) for n, t in enumerate(["VP Sales", "Student", "CTO"])]
    ingest(
        scoring,
        pricing_events(ids, (("page_view", 1), ("page_view", 2), ("webinar", 20), ("email_open", 40))),
    )
    first = svc.rescore_all(scoring, admin.principal, fire=False)
    assert first.rebuilt  # no state was ever built from all the events
    assert svc.rescore_all(scoring, admin.principal, fire=False).rebuilt is False  # decay refresh

    doc = core.default_model().to_document()
    doc["weights"] = {"fit": 0.7, "engagement": 0.3}  # fit, weights, thresholds: state reused
    doc["fit"]["rules"][0]["points"] = 25
    doc["engagement"]["rules"][4]["points"] = 12  # an uncapped rule's points: reused too
    with scoring.transaction() as s:
        svc.save_model(s, admin.principal, doc, activate=True)
    res = svc.rescore_all(scoring, admin.principal, fire=False)
    assert not res.rebuilt and res.model_version == 1
    check(scoring, ids)

    doc["engagement"]["half_life_days"] = 7  # decay changed: rebuilt from the events
    with scoring.transaction() as s:
        svc.save_model(s, admin.principal, doc, activate=True)
    ingest(scoring, [{"lead_id": ids[0], "type": "demo_request"}])  # before the rescore
    res = svc.rescore_all(scoring, admin.principal, fire=False)
    assert res.rebuilt
    check(scoring, ids)
    with scoring.transaction() as s:
        key = core.engagement_key(svc.active_model(s).model)
        assert {r.ruleset for r in s.scalars(select(LeadEngagement))} == {key}
        assert [b.ruleset for b in s.scalars(select(EngagementBuild))] == [key]


@pytest.mark.usefixtures("db")
def test_events_stored_without_incremental_scoring_are_caught_up(db: Database, admin: Actor) -> None:
    svc.register(db)
    ids = [new_lead(db, n) for n in range(2)]
    ingest(db, [{"lead_id": ids[0], "type": "webinar", "occurred_at": NOW - timedelta(days=1)}])
    svc.rescore_all(db, admin.principal, fire=False)
    svc.unregister(db)  # events arrive while nothing rescores them (e.g. a script)
    ingest(db, [{"lead_id": lid, "type": "demo_request", "occurred_at": NOW} for lid in ids])
    res = svc.rescore_all(db, admin.principal, fire=False)
    assert res.rebuilt  # the counts did not add up: one pass over the events
    check(db, ids)


@pytest.mark.usefixtures("db")
def test_an_ingest_counts_the_events_its_leads_state_missed(db: Database) -> None:
    """The incremental path reads a batch's new events by their id range (SQLite); a lead whose
    state missed an earlier event (stored while nothing rescored) is rebuilt from all of them,
    and a commit of two batches reads both ranges."""

    svc.register(db)
    ids = [new_lead(db, n) for n in range(3)]
    ingest(db, [{"lead_id": ids[0], "type": "webinar", "occurred_at": NOW - timedelta(days=2)}])
    svc.unregister(db)
    ingest(db, [{"lead_id": ids[0], "type": "demo_request", "occurred_at": NOW - timedelta(days=1)}])
    svc.register(db)
    try:
        ingest(db, pricing_events(ids, (("page_view", 0.5),)))
        with db.transaction() as s:
            st = s.get(LeadEngagement, ids[0])
            assert st is not None and st.events == 3  # the missed demo request is in
        check(db, ids)
        with db.transaction() as s:  # two batches, one commit
            for lid in ids[:2]:
                assert not activities.ingest(s, SYSTEM, pricing_events([lid], (("email_click", 0.1),))).errors
        check(db, ids)
        with db.transaction() as s:
            assert [s.get(LeadEngagement, lid).events for lid in ids] == [4, 2, 1]  # type: ignore[union-attr]
    finally:
        svc.unregister(db)


def test_a_merge_moves_the_losers_engagement(scoring: Database, admin: Actor) -> None:
    winner = new_lead(scoring, 1)
    loser = new_lead(scoring, 2)
    ingest(scoring, [{"lead_id": loser, "type": "demo_request", "occurred_at": NOW - timedelta(hours=1)}])
    ingest(scoring, [{"lead_id": winner, "type": "webinar", "occurred_at": NOW - timedelta(hours=2)}])
    svc.rescore_all(scoring, admin.principal, fire=False)
    with scoring.transaction() as s:
        leads.merge_leads(s, SYSTEM, winner, loser)
    with scoring.transaction() as s:
        assert s.get(LeadEngagement, loser) is None
        assert s.get(LeadEngagement, winner).events == 2  # type: ignore[union-attr]
    res = svc.rescore_all(scoring, admin.principal, fire=False)
    assert not res.rebuilt  # the counts add up after the merge
    check(scoring, [winner])


def test_explanation_after_a_full_rescore_shows_rules_and_events(scoring: Database, admin: Actor) -> None:
    lid = new_lead(scoring, 1)
    ingest(scoring, pricing_events([lid], (("page_view", 1), ("page_view", 2))))
    with scoring.transaction() as s:
        svc.clear_scores(s)
    svc.rescore_all(scoring, admin.principal, fire=False)
    with scoring.transaction() as s:
        view = svc.explain(s, admin.principal, lid)
        event_ids = set(s.scalars(select(activities.Activity.id).where(activities.Activity.lead_id == lid)))
    assert view.stored is not None and view.stored.total == pytest.approx(view.score.total, abs=0.01)
    reasons = {r["rule_id"]: r for r in view.score.explanation()["reasons"]}
    assert reasons["decision_maker"]["points"] == 20 and reasons["decision_maker"]["value"] == "vp"
    pricing = reasons["pricing_page"]
    assert pricing["event_count"] == 2 and pricing["points"] > 0
    assert {e["id"] for e in pricing["events"]} == event_ids
    assert sum(e["points"] for e in pricing["events"]) == pytest.approx(pricing["points"], abs=1e-3)


def test_thresholds_fire_once_across_incremental_and_full_rescores(scoring: Database, admin: Actor) -> None:
    lid = new_lead(scoring, 1)
    ingest(scoring, [{"lead_id": lid, "type": "demo_request", "occurred_at": NOW}])  # 50 + 15 = 65
    svc.rescore_all(scoring, admin.principal)  # still above 60: no second crossing
    svc.rescore_all(scoring, admin.principal)
    with scoring.transaction() as s:
        n = s.scalar(
            select(func.count())
            .select_from(ThresholdFiring)
            .where(ThresholdFiring.lead_id == lid, ThresholdFiring.threshold_id == "marketing_email")
        )
    assert n == 2  # move_to_mql and enroll_sequence, once


def test_a_decay_refresh_records_history_when_the_shown_score_moves(scoring: Database, admin: Actor) -> None:
    # A demo request (30 of 100 engagement points) on a perfect fit: total 65, decaying with the
    # default 30-day half-life. The nightly refresh moves every score a little; the history gets
    # a point when the score as shown (whole numbers, grade, thresholds) changes, and always for a
    # new model version.
    lid = new_lead(scoring, 0)
    ingest(scoring, [{"lead_id": lid, "type": "demo_request", "occurred_at": NOW}])

    def points() -> list[tuple[float, int]]:
        with scoring.transaction() as s:
            rows = s.scalars(
                select(ScoreHistory).where(ScoreHistory.lead_id == lid).order_by(ScoreHistory.id)
            )
            return [(round(h.total, 2), h.model_version) for h in rows]

    start = points()
    assert [round(t) for t, _ in start] == [50, 65]  # created (fit only), then the event
    before = stored(scoring, [lid])[lid]
    hour = svc.rescore_all(scoring, admin.principal, as_of=NOW + timedelta(hours=1), fire=False)
    # 64.99: still 65 as shown: neither a history point nor a write (the stored 65.00 stays)
    assert (hour.changed, hour.written, hour.history) == (1, 0, 0)
    assert stored(scoring, [lid])[lid] == before
    days = svc.rescore_all(scoring, admin.principal, as_of=NOW + timedelta(days=2), fire=False)
    assert (days.changed, days.written, days.history) == (1, 1, 1)  # engagement 28.6: shown 29
    assert stored(scoring, [lid])[lid][2] == pytest.approx(50 + 15 * 0.5 ** (2 / 30), abs=1e-9)
    assert points()[2:] == [(round(50 + 15 * 0.5 ** (2 / 30), 2), 0)]

    with scoring.transaction() as s:  # the same document as a new version: recorded on any move
        svc.save_model(s, admin.principal, core.default_model().to_document(), activate=True)
    new = svc.rescore_all(scoring, admin.principal, as_of=NOW + timedelta(days=2, hours=1), fire=False)
    assert (new.changed, new.history) == (1, 1)
    assert points()[-1][1] == 1
    again = svc.rescore_all(scoring, admin.principal, as_of=NOW + timedelta(days=2, hours=2), fire=False)
    assert (again.changed, again.written, again.history) == (1, 0, 0)


def test_a_large_rescore_reads_ahead_in_a_second_process(
    scoring: Database, admin: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # From PARALLEL_MIN_LEADS on, attributes, fit points and kept states of the next id range come
    # from a second process (its own connection) while this one writes: the same scores.
    ids = [
        new_lead(scoring, n, job_title=t)
        for n, t in enumerate(["VP Sales", "Student", "CTO", "Intern", "CEO"])
    ]
    ingest(scoring, pricing_events(ids[:4], (("page_view", 1), ("webinar", 3), ("email_click", 9))))
    svc.rescore_all(scoring, admin.principal, as_of=NOW, fire=False)  # one process
    monkeypatch.setattr(svc, "PARALLEL_MIN_LEADS", 0)
    later = NOW + timedelta(days=2)
    res = svc.rescore_all(scoring, admin.principal, as_of=later, fire=False, chunk=2)
    assert not res.rebuilt and "read states (second process)" in res.timings
    assert res.leads >= len(ids)
    assert_same(stored(scoring, ids), from_events(scoring, ids, later))


def _has_total_index(db: Database) -> bool:
    return any(ix["name"] == "ix_lead_scores_total" for ix in inspect(db.engine).get_indexes("lead_scores"))


def test_a_rescore_that_moves_most_scores_builds_the_total_index_again(
    scoring: Database, admin: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite: after a first range that moved most scores, the rest is written without
    # ix_lead_scores_total, which is built again at the end (also when the rescore fails).
    if scoring.dialect != "sqlite":
        pytest.skip("the index stays on PostgreSQL")
    ids = [
        new_lead(scoring, n, job_title=t)
        for n, t in enumerate(["VP Sales", "Student", "CTO", "Intern", "CEO", "VP Sales"])
    ]
    ingest(scoring, pricing_events(ids[:5], (("page_view", 1), ("webinar", 3), ("email_click", 9))))
    svc.rescore_all(scoring, admin.principal, as_of=NOW, fire=False)
    monkeypatch.setattr(svc, "REINDEX_MIN_LEADS", 0)
    seen: list[bool] = []
    later = NOW + timedelta(days=3)
    res = svc.rescore_all(
        scoring,
        admin.principal,
        as_of=later,
        fire=False,
        chunk=2,
        progress=lambda done, total: seen.append(_has_total_index(scoring)),
    )
    assert res.changed == 5 and "build total index" in res.timings  # all but the lead without events
    assert seen[:2] == [True, True] and False in seen  # dropped after the first range
    assert _has_total_index(scoring)
    assert_same(stored(scoring, ids), from_events(scoring, ids, later))
    with scoring.transaction() as s:  # the index serves the score order again
        # A statement that runs first: EXPLAIN alone plans with the schema this pooled connection
        # last loaded (from before the index was built again); running statements reload it.
        s.execute(text("SELECT count(*) FROM lead_scores")).all()
        plan = s.execute(text("EXPLAIN QUERY PLAN SELECT lead_id FROM lead_scores ORDER BY total")).all()
    assert "ix_lead_scores_total" in str(plan)

    def fail(done: int, total: int) -> None:
        if not _has_total_index(scoring):
            raise RuntimeError("stopped half-way")

    with pytest.raises(RuntimeError):
        svc.rescore_all(
            scoring, admin.principal, as_of=later + timedelta(days=3), fire=False, chunk=2, progress=fail
        )
    assert _has_total_index(scoring)


def test_the_total_index_a_killed_rescore_dropped_comes_back(scoring: Database, admin: Actor) -> None:
    # A full rescore killed while ix_lead_scores_total was dropped leaves it missing: every
    # migration run (init, serve, the CLI) and the next full rescore build it again.
    lid = new_lead(scoring, 1)
    with scoring.engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_lead_scores_total"))
    assert not _has_total_index(scoring)
    upgrade(scoring.engine)
    assert _has_total_index(scoring)
    if scoring.dialect == "sqlite":
        with scoring.engine.begin() as conn:
            conn.execute(text("DROP INDEX ix_lead_scores_total"))
        svc.rescore_all(scoring, admin.principal, fire=False)  # moves nothing: never drops it
        assert _has_total_index(scoring)
    assert lid in stored(scoring, [lid])
