"""The full rescore carries a lead's stored fit score forward instead of reading its attributes
again, unless an input of its fit changed (fit_dirty), the fit rules changed (another fit key),
or a rebuild was asked for. Each case checks the stored scores against scoring the leads from
scratch."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from leadflow.auth.principal import SYSTEM
from leadflow.db.base import Database
from leadflow.leads import accounts
from leadflow.leads import service as leads
from leadflow.leads.models import Lead
from leadflow.scoring import service as svc
from leadflow.scoring.models import LeadScore

MODEL: dict[str, Any] = {
    "name": "Titles",
    "fit": {
        "max_points": 40,
        "rules": [
            {"id": "vp", "field": "job_title", "matches": r"\bVP\b", "points": 20},
            {"id": "saas", "field": "industry", "in": ["Software"], "points": 20},
        ],
    },
    "engagement": {"max_points": 10, "half_life_days": None, "rules": []},
}


@pytest.fixture
def scoring(db: Database) -> Iterator[Database]:
    with db.transaction() as s:
        svc.save_model(s, SYSTEM, MODEL, activate=True)
    svc.register(db)
    yield db
    svc.unregister(db)


def new_lead(db: Database, title: str, account_id: int | None = None) -> int:
    with db.transaction() as s:
        data = {"email": f"c-{uuid.uuid4().hex[:12]}@acme.io", "job_title": title, "account_id": account_id}
        return leads.create_lead(s, SYSTEM, data).lead.id


def retitle(db: Database, lead_id: int, title: str) -> None:
    with db.transaction() as s:
        lead = s.get(Lead, lead_id)
        assert lead is not None
        leads.update_lead(s, SYSTEM, lead_id, {"job_title": title}, expected_version=lead.version)


def fits(db: Database, ids: list[int]) -> list[float]:
    with db.transaction() as s:
        out = []
        for lid in ids:
            row = s.get(LeadScore, lid)
            assert row is not None
            out.append(row.fit)
        return out


def from_scratch(db: Database, ids: list[int]) -> list[float]:
    """The fit scores computed from each lead's attributes now (the explanation's path)."""

    out = []
    with db.transaction() as s:
        active = svc.active_model(s)
        for lid in ids:
            scored = svc.score_one(s, active, lid, datetime.now(UTC))
            assert scored is not None
            out.append(scored[0].fit)
    return out


def test_unchanged_leads_carry_their_fit_and_changed_ones_are_fitted_again(scoring: Database) -> None:
    db = scoring
    with db.transaction() as s:
        acme = accounts.create_account(s, SYSTEM, {"name": "Acme", "industry": "Software"}).id
    titles = ["VP Sales", "Intern", "VP IT", "CEO"]
    ids = [new_lead(db, t, acme if n % 2 else None) for n, t in enumerate(titles)]
    first = svc.rescore_all(db, SYSTEM, fire=False, chunk=2)
    assert first.fit_carried == 4  # scored when created, nothing changed since
    # Edits do not rescore by themselves: the nightly rescore must see them.
    retitle(db, ids[0], "Intern")
    with db.transaction() as s:
        account = accounts.get_account(s, SYSTEM, acme)
        accounts.update_account(s, SYSTEM, acme, {"industry": "Retail"}, expected_version=account.version)
    stale = fits(db, ids)
    res = svc.rescore_all(db, SYSTEM, fire=False, chunk=2)
    assert res.fit_carried == 1  # ids[2]: neither its title nor an account changed
    assert fits(db, ids) == from_scratch(db, ids) != stale
    again = svc.rescore_all(db, SYSTEM, fire=False, chunk=2)
    assert again.fit_carried == 4 and again.changed == 0


def test_incremental_scoring_carries_unchanged_fits_and_fits_edited_leads_again(scoring: Database) -> None:
    db = scoring
    with db.transaction() as s:
        acme = accounts.create_account(s, SYSTEM, {"name": "Acme", "industry": "Software"}).id
    ids = [new_lead(db, "VP Sales", acme), new_lead(db, "VP IT"), new_lead(db, "Intern", acme)]
    svc.rescore_all(db, SYSTEM, fire=False)  # no marks left
    retitle(db, ids[0], "Intern")
    with db.transaction() as s:
        account = accounts.get_account(s, SYSTEM, acme)
        accounts.update_account(s, SYSTEM, acme, {"industry": "Retail"}, expected_version=account.version)
    stale = fits(db, ids)
    with db.transaction() as s:  # as an ingest's commit does
        res = svc.rescore_leads(s, ids, fire=False)
    assert res.fit_carried == 1  # ids[1]: nothing of its fit changed
    assert fits(db, ids) == from_scratch(db, ids) != stale
    with db.transaction() as s:  # still marked (the nightly rescore takes the marks): fitted again
        assert svc.rescore_leads(s, ids, fire=False).fit_carried == 1
    svc.rescore_all(db, SYSTEM, fire=False)
    with db.transaction() as s:
        assert svc.rescore_leads(s, ids, fire=False).fit_carried == 3
    assert fits(db, ids) == from_scratch(db, ids)


def test_incremental_scoring_skips_a_merged_away_lead_whose_mark_is_gone(scoring: Database) -> None:
    db = scoring
    winner, loser = new_lead(db, "VP Sales"), new_lead(db, "VP IT")
    with db.transaction() as s:
        leads.merge_leads(s, SYSTEM, winner, loser)
    svc.rescore_all(db, SYSTEM, fire=False)  # takes the loser's mark; its old score row stays
    with db.transaction() as s:
        res = svc.rescore_leads(s, [winner, loser], fire=False)
    assert (res.leads, res.fit_carried) == (1, 1)


def test_new_fit_rules_fit_every_lead_and_other_changes_carry(scoring: Database) -> None:
    db = scoring
    ids = [new_lead(db, t) for t in ["VP Sales", "Intern", "VP IT"]]
    with db.transaction() as s:  # weights only: the fit scores stay what they are
        svc.save_model(s, SYSTEM, {**MODEL, "weights": {"fit": 1, "engagement": 3}}, activate=True)
    weights = svc.rescore_all(db, SYSTEM, fire=False)
    assert weights.fit_carried == 3
    assert fits(db, ids) == from_scratch(db, ids)
    doc = {**MODEL, "fit": {**MODEL["fit"], "rules": [{**MODEL["fit"]["rules"][0], "points": 10}]}}
    with db.transaction() as s:
        svc.save_model(s, SYSTEM, doc, activate=True)
    rules = svc.rescore_all(db, SYSTEM, fire=False)
    assert rules.fit_carried == 0
    assert fits(db, ids) == from_scratch(db, ids) == [25.0, 0.0, 25.0]
    rebuilt = svc.rescore_all(db, SYSTEM, fire=False, rebuild=True)
    assert rebuilt.fit_carried == 0 and rebuilt.changed == 0


def test_new_grade_bounds_carry_the_fit_and_regrade(scoring: Database) -> None:
    db = scoring
    ids = [new_lead(db, t) for t in ["VP Sales", "Intern"]]  # fit 50 and 0
    with db.transaction() as s:
        svc.save_model(s, SYSTEM, {**MODEL, "grades": {"A": 40, "B": 20, "C": 10}}, activate=True)
    res = svc.rescore_all(db, SYSTEM, fire=False)
    assert res.fit_carried == 2
    with db.transaction() as s:
        rows = [s.get(LeadScore, lid) for lid in ids]
        assert [(r.grade, r.model_version) for r in rows if r is not None] == [("A", 2), ("D", 2)]


def test_scores_of_the_built_in_default_model_carry(db: Database) -> None:
    # No model stored: the default (version 0) is active; its scores carry into a stored version
    # with the same fit rules, not into one with others.
    svc.register(db)
    try:
        ids = [new_lead(db, t) for t in ["VP Sales", "Intern"]]
        assert svc.rescore_all(db, SYSTEM, fire=False).fit_carried == 2
        doc = svc.core.default_model().to_document()
        doc["weights"] = {"fit": 0.6, "engagement": 0.4}
        with db.transaction() as s:
            svc.save_model(s, SYSTEM, doc, activate=True)
        assert svc.rescore_all(db, SYSTEM, fire=False).fit_carried == 2
        assert fits(db, ids) == from_scratch(db, ids)
    finally:
        svc.unregister(db)


def test_an_edit_after_the_read_ahead_is_fitted_under_the_lock(
    scoring: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The second process read the lead (carried, unmarked); the edit commits before the range's
    # lock: the range sees the new mark and reads the lead's attributes again.
    db = scoring
    ids = [new_lead(db, t) for t in ["VP Sales", "Intern", "VP IT", "CEO"]]
    late = ids[2]
    real = svc._fit_range

    def read_then_edit(*args: Any, **kwargs: Any) -> Any:
        fitted = real(*args, **kwargs)
        if late in fitted.ids:
            retitle(db, late, "Intern")
        return fitted

    monkeypatch.setattr(svc, "_fit_range", read_then_edit)
    svc.rescore_all(db, SYSTEM, fire=False, chunk=2)
    assert fits(db, ids) == from_scratch(db, ids)
    assert fits(db, [late]) == [0.0]
