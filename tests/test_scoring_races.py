"""Incremental scoring against everything else that happens at the same time: another subscriber
of the same commit failing, events committed between a full rescore's pass over the events and
its writes, two full rescores at once. Each test forces one interleaving that the 8-writer
concurrency test (tests/test_concurrency.py) can only hit by chance."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from leadflow.auth.principal import SYSTEM
from leadflow.db.base import Database
from leadflow.events import DomainEvent, subscribe, unsubscribe
from leadflow.leads import activities
from leadflow.leads import service as leads
from leadflow.leads.models import Activity
from leadflow.scoring import service as svc
from leadflow.scoring.models import EngagementBuild, LeadEngagement, LeadScore

HOT = {"job_title": "VP Sales", "industry": "Software", "employee_count": 300}
# No decay: a score does not depend on the time it was computed for, only on the events.
FLAT = {
    "name": "Flat",
    "fit": {
        "max_points": 20,
        "rules": [{"id": "vp", "field": "job_title", "matches": r"\bVP\b", "points": 20}],
    },
    "engagement": {
        "max_points": 50,
        "half_life_days": None,
        "rules": [{"id": "pv", "event": "page_view", "points": 1}],
    },
}


@pytest.fixture
def scoring(db: Database) -> Iterator[Database]:
    with db.transaction() as s:
        svc.save_model(s, SYSTEM, FLAT, activate=True)
    svc.register(db)
    yield db
    svc.unregister(db)


def new_lead(db: Database) -> int:
    with db.transaction() as s:
        email = f"r-{uuid.uuid4().hex[:12]}@acme.io"
        return leads.create_lead(s, SYSTEM, {"email": email, **HOT}).lead.id


def page_views(lead_id: int, n: int, when: datetime | None = None) -> list[dict[str, Any]]:
    at = when or datetime.now(UTC) - timedelta(minutes=5)
    return [{"lead_id": lead_id, "type": "page_view", "occurred_at": at} for _ in range(n)]


def ingest(db: Database, items: list[dict[str, Any]]) -> None:
    with db.transaction() as s:
        res = activities.ingest(s, SYSTEM, items)
        assert not res.errors, res.errors


def stored(db: Database, lead_id: int) -> tuple[float, int]:
    """The lead's stored total and the number of events its engagement state holds."""

    with db.transaction() as s:
        score = s.get(LeadScore, lead_id)
        state = s.get(LeadEngagement, lead_id)
        assert score is not None
        return score.total, (state.events if state is not None else 0)


def expected_total(events: int) -> float:
    return (100 + min(events, 50) / 50 * 100) / 2


def test_a_failing_subscriber_of_the_same_commit_does_not_drop_the_rescoring(scoring: Database) -> None:
    # Seen as "600 leads had stale scores" in the 8-writer test: another feature's handler of
    # activities.ingested rolled its own transaction back, and the rollback threw away the leads
    # waiting to be rescored after the ingest's commit.
    db = scoring
    lid = new_lead(db)

    def failing(ev: DomainEvent) -> None:
        with db.transaction() as s:
            s.execute(text("SELECT 1"))
            raise RuntimeError("another subscriber failed")

    subscribe("activities.ingested", failing)
    try:
        ingest(db, page_views(lid, 3))
    finally:
        unsubscribe("activities.ingested", failing)
    assert stored(db, lid) == (expected_total(3), 3)


def test_another_subscriber_committing_elsewhere_does_not_take_the_rescoring(
    scoring: Database, tmp_path: Path
) -> None:
    # The same symptom in the full suite: a subscriber of activities.ingested left registered by
    # an earlier test committed its own transaction on another database, on the same thread, and
    # that commit took the leads waiting to be rescored (then found no scoring for its database).
    db = scoring
    other = Database(f"sqlite:///{tmp_path / 'other.db'}")
    lid = new_lead(db)

    def elsewhere(ev: DomainEvent) -> None:
        with other.transaction() as s:
            s.execute(text("CREATE TABLE IF NOT EXISTS seen (n integer)"))
            s.execute(text("INSERT INTO seen VALUES (1)"))

    subscribe("activities.ingested", elsewhere)
    try:
        ingest(db, page_views(lid, 3))
    finally:
        unsubscribe("activities.ingested", elsewhere)
        other.dispose()
    assert stored(db, lid) == (expected_total(3), 3)


def test_events_committed_between_the_event_pass_and_the_writes_are_not_lost(
    scoring: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A full rescore reads every event once (the engagement rules changed), then writes states and
    # scores chunk by chunk. Events committed in between (here by a process that does not score
    # incrementally) must end up in the lead's state and score, not be overwritten by the pass.
    db = scoring
    lid, other = new_lead(db), new_lead(db)
    ingest(db, page_views(lid, 2) + page_views(other, 1))
    assert stored(db, lid) == (expected_total(2), 2)
    real = svc._build_states

    def build_then_ingest(*args: Any, **kwargs: Any) -> Any:
        build = real(*args, **kwargs)
        svc.unregister(db)  # these events arrive unseen by incremental scoring
        try:
            ingest(db, page_views(lid, 4))
        finally:
            svc.register(db)
        return build

    monkeypatch.setattr(svc, "_build_states", build_then_ingest)
    svc.rescore_all(db, SYSTEM, fire=False, rebuild=True)
    assert stored(db, lid) == (expected_total(6), 6)
    assert stored(db, other) == (expected_total(1), 1)
    monkeypatch.setattr(svc, "_build_states", real)
    # The kept states add up: the next rescore reuses them and changes nothing.
    again = svc.rescore_all(db, SYSTEM, fire=False)
    assert not again.rebuilt and again.changed == 0


def test_an_increment_committed_while_a_rebuild_writes_is_kept(
    scoring: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same, with incremental scoring running: the increment commits after the pass over the
    # events; whichever of the two writes last, the lead's state and score hold every event.
    db = scoring
    lid = new_lead(db)
    ingest(db, page_views(lid, 2))
    real = svc._build_states

    def build_then_ingest(*args: Any, **kwargs: Any) -> Any:
        build = real(*args, **kwargs)
        ingest(db, page_views(lid, 3))
        return build

    monkeypatch.setattr(svc, "_build_states", build_then_ingest)
    svc.rescore_all(db, SYSTEM, fire=False, rebuild=True)
    assert stored(db, lid) == (expected_total(5), 5)


def test_two_full_rescores_at_once_both_finish_and_agree(scoring: Database) -> None:
    db = scoring
    ids = [new_lead(db) for _ in range(6)]
    ingest(db, [e for i, lid in enumerate(ids) for e in page_views(lid, i + 1)])
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        try:
            barrier.wait()
            svc.rescore_all(db, SYSTEM, fire=False, rebuild=True)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i, lid in enumerate(ids):
        assert stored(db, lid) == (expected_total(i + 1), i + 1)
    with db.transaction() as s:
        assert len(list(s.scalars(select(EngagementBuild)))) == 1


def test_an_ingest_rolled_back_leaves_no_event_and_no_state(scoring: Database) -> None:
    # The batch insert goes straight to the driver (no per-value type processing): it must still
    # run inside the caller's transaction, not commit row by row.
    db = scoring
    lid = new_lead(db)
    with pytest.raises(RuntimeError), db.transaction() as s:
        activities.ingest(s, SYSTEM, page_views(lid, 3))
        raise RuntimeError("the caller fails after the ingest")
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Activity)) == 0
    assert stored(db, lid) == (expected_total(0), 0)


def test_a_full_rescore_trusts_its_read_ahead_only_when_nobody_else_wrote(
    scoring: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite: each id range's leads, states and stored scores are read ahead (in a second process
    # on big databases) and used unchecked when no other connection committed since; a commit in
    # between (here: an increment after the read-ahead of the lead's range) makes the range read
    # them again under its lock, so the increment is neither lost nor overwritten.
    db = scoring
    if db.dialect != "sqlite":
        pytest.skip("PostgreSQL checks every range under its lock")
    ids = [new_lead(db) for _ in range(6)]
    for n, lid in enumerate(ids):
        ingest(db, page_views(lid, n + 1))
    quiet = svc.rescore_all(db, SYSTEM, fire=False, chunk=2)
    assert quiet.trusted_ranges == 3 and quiet.leads == 6
    assert [stored(db, lid) for lid in ids] == [(expected_total(n + 1), n + 1) for n in range(6)]

    real = svc._fit_range
    late = ids[3]

    def read_then_ingest(*args: Any, **kwargs: Any) -> Any:
        fitted = real(*args, **kwargs)
        if late in fitted.ids:
            ingest(db, page_views(late, 10))  # incremental scoring commits a newer score
        return fitted

    # A new model version (engagement weighted higher): every score is written again, so a stale
    # read-ahead would overwrite the increment with the score of 4 events.
    with db.transaction() as s:
        svc.save_model(s, SYSTEM, {**FLAT, "weights": {"fit": 1, "engagement": 3}}, activate=True)

    def weighted(events: int) -> float:
        return (100 + 3 * min(events, 50) / 50 * 100) / 4

    monkeypatch.setattr(svc, "_fit_range", read_then_ingest)
    busy = svc.rescore_all(db, SYSTEM, fire=False, chunk=2)
    assert stored(db, late) == (weighted(14), 14)
    assert [stored(db, lid) for lid in ids if lid != late] == [
        (weighted(n + 1), n + 1) for n, lid in enumerate(ids) if lid != late
    ]
    assert busy.trusted_ranges == 2
