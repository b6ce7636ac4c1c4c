"""Predictive scoring on a synthetic history with a known latent propensity: training recovers the
signal, the evaluation report compares the rule score, naive-Bayes frequencies and the trained
model on one hold-out, predictions list their factors, suggested points raise the rule score's
hold-out AUC, and rollback is one command."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import Actor, make_user
from fastapi.testclient import TestClient
from sklearn.metrics import average_precision_score, roc_auc_score
from sqlalchemy import select
from typer.testing import CliRunner

from leadflow import cli
from leadflow.auth.models import Role
from leadflow.config import get_settings
from leadflow.core import predictive as core
from leadflow.db.base import Database
from leadflow.scoring import predictive, suggest, synthetic
from leadflow.scoring import service as scoring
from leadflow.scoring.models import ScoringModelVersion
from leadflow.scoring.predictive_models import PredictiveModel

LEADS = 2400


def _generate(db: Database, leads: int = LEADS, seed: int = 7) -> synthetic.SyntheticSummary:
    with db.transaction() as s:
        return synthetic.generate(s, leads=leads, seed=seed)


@pytest.fixture
def run_cli(db: Database, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("LEADFLOW_DATABASE_URL", db.url)
    monkeypatch.setattr(cli.console, "width", 250)
    monkeypatch.setattr(cli.err, "width", 250)
    get_settings.cache_clear()
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(cli.app, list(args))

    yield invoke
    get_settings.cache_clear()


# ---------------------------------------------------------------------------------------------
# Pure parts
# ---------------------------------------------------------------------------------------------


def test_labels_wait_for_the_outcome_window_and_skip_leads_created_converted() -> None:
    day = core.DAY
    ids = np.arange(1, 6, dtype=np.int64)
    created = np.array([0.0, 0.0, 0.0, 0.0, 50 * day])
    reached = np.array([10 * day, np.nan, 95 * day, 0.0, np.nan])
    out = core.outcomes(ids, created, reached, cutoff=120 * day, horizon_days=90)
    # 1: converted in the window; 2: never; 3: too late (negative); 4: created converted
    # (nothing to predict); 5: its window is still open at the cutoff.
    assert out.eligible.tolist() == [True, True, True, False, False]
    assert out.label.tolist() == [True, False, False, False, False]
    assert out.snapshot[0] == pytest.approx(10 * day - 1)  # just before the conversion
    assert 0 < out.snapshot[1] <= 90 * day


def test_auc_and_lift_match_their_definitions() -> None:
    rng = np.random.default_rng(3)
    y = rng.random(500) < 0.3
    s = np.round(y * 0.5 + rng.random(500), 1)  # many ties
    assert core.roc_auc(y, s) == pytest.approx(roc_auc_score(y, s))
    perfect = y.astype(float)
    assert core.top_fraction_lift(y, perfect, 0.1) == pytest.approx(1 / y.mean())
    assert core.top_fraction_lift(y, np.zeros(500), 0.1) == pytest.approx(1.0)  # all tied: no lift


def test_too_few_outcomes_names_how_many_are_needed() -> None:
    created = np.arange(100, dtype=np.float64)
    label = np.zeros(100, dtype=np.bool_)
    label[:12] = True
    with pytest.raises(core.NotEnoughOutcomes) as exc:
        core.time_split(created, label, 0.25, "sql")
    assert "12 of 100 eligible leads reached sql" in str(exc.value)
    assert f"at least {core.MIN_TRAIN_PER_CLASS} of each are needed for training" in str(exc.value)


def test_naive_bayes_learns_value_frequencies() -> None:
    seniority = np.array(["vp"] * 50 + ["entry"] * 50, dtype=object)
    y = np.array([True] * 40 + [False] * 10 + [True] * 5 + [False] * 45)
    nb = core.FrequencyModel.fit({"seniority": seniority}, y)
    p = nb.predict({"seniority": np.array(["vp", "entry", "unseen"], dtype=object)}, 3)
    assert p[0] == pytest.approx(0.8, abs=0.01) and p[1] == pytest.approx(0.1, abs=0.01)
    assert p[2] == pytest.approx(y.mean())  # an unseen value moves nothing


# ---------------------------------------------------------------------------------------------
# Training, evaluation, predictions
# ---------------------------------------------------------------------------------------------


def test_training_recovers_the_latent_signal(
    db: Database, client: TestClient, admin: Actor, run_cli: Any, tmp_path: Path
) -> None:
    truth = _generate(db)
    r = client.post("/api/scoring/predictive/train", json={"target": "sql"}, headers=admin.headers)
    assert r.status_code == 201, r.text
    model = r.json()
    assert model["version"] == 1 and model["active"] is True
    figures = model["metrics"]["models"]
    trained = figures["trained_model"]
    # The generator guarantees a learnable signal: the trained model finds it.
    assert trained["roc_auc"] > 0.75
    assert trained["roc_auc"] > figures["naive_bayes"]["roc_auc"]
    assert trained["top_decile_lift"] > 2.0
    assert set(figures) == {"rule_score", "naive_bayes", "trained_model"}
    for m in figures.values():
        assert {"roc_auc", "pr_auc", "top_decile_lift", "brier", "curves"} <= set(m)
    data = model["metrics"]["data"]
    assert data["train"] + data["test"] == data["eligible"] < LEADS  # the newest wait for outcomes

    # The same hold-out, recomputed independently: predictions against the generator's truth.
    with db.transaction() as s:
        row = s.scalars(select(PredictiveModel)).one()
        prep = predictive.prepare(s, predictive.Params.from_dict(row.params))
        fitted = predictive.fitted_of(row)
    te = prep.split.test
    assert prep.split.split_at >= prep.leads.created[prep.split.train].max()  # a time split
    p = fitted.predict(
        {k: v[te] for k, v in prep.leads.columns.items()},
        prep.events.remap(te, len(prep.label)),
        prep.snapshot[te],
    )
    y = prep.label[te]
    assert roc_auc_score(y, p) == pytest.approx(trained["roc_auc"], abs=1e-3)
    assert average_precision_score(y, p) == pytest.approx(trained["pr_auc"], abs=1e-3)
    latent = np.array([truth.latent[int(i)] for i in prep.leads.ids[te]])
    assert np.corrcoef(np.argsort(np.argsort(p)), np.argsort(np.argsort(latent)))[0, 1] > 0.5
    # Calibrated: the mean predicted probability is near the observed rate.
    assert abs(float(p.mean()) - float(y.mean())) < 0.06

    # A prediction for one lead lists its top factors.
    lead_id = int(prep.leads.ids[te][int(np.argmax(p))])
    r = client.get(f"/api/leads/{lead_id}/prediction", headers=admin.headers)
    assert r.status_code == 200, r.text
    pred = r.json()
    assert pred["model_version"] == 1 and 0 < pred["probability"] < 1
    assert 1 <= len(pred["factors"]) <= 5
    contributions = [abs(f["contribution"]) for f in pred["factors"]]
    assert contributions == sorted(contributions, reverse=True)
    assert all(f["label"] and "feature" in f for f in pred["factors"])

    # The evaluation report from the CLI: JSON and four PNG plots on the stored model's split.
    out = tmp_path / "eval"
    res = run_cli("scoring", "evaluate", "--out", str(out))
    assert res.exit_code == 0, res.output
    assert "Trained model" in res.output and "Rule score" in res.output
    report = json.loads((out / "report.json").read_text())
    assert report["predictive_model_version"] == 1
    assert report["models"]["trained_model"]["roc_auc"] == pytest.approx(trained["roc_auc"], abs=1e-3)
    for name in ("roc", "pr", "calibration", "lift"):
        png = (out / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000
    res = run_cli("scoring", "predict", str(lead_id))
    assert res.exit_code == 0 and "chance of reaching sql" in res.output
    res = run_cli("scoring", "predictive-versions")
    assert res.exit_code == 0 and "yes" in res.output

    # A sales rep reads predictions of visible leads but cannot train.
    rep = make_user(db, "Rep", Role.SALES_REP)
    assert client.get(f"/api/leads/{lead_id}/prediction", headers=rep.headers).status_code == 200
    assert client.post("/api/scoring/predictive/train", json={}, headers=rep.headers).status_code == 403
    assert client.post(
        "/api/scoring/predictive/train", json={"target": "maybe"}, headers=admin.headers
    ).json()["detail"][0]["loc"] == ["target"]


def test_too_few_outcomes_is_a_clear_error(
    db: Database, client: TestClient, admin: Actor, run_cli: Any
) -> None:
    _generate(db, leads=60, seed=3)
    r = client.post("/api/scoring/predictive/train", json={}, headers=admin.headers)
    assert r.status_code == 422
    detail = r.json()["detail"][0]
    assert detail["loc"] == ["data"] and "at least 20 of each are needed for training" in detail["msg"]
    res = run_cli("scoring", "train")
    assert res.exit_code == 2 and "too few outcomes to train" in res.output
    with db.transaction() as s:
        assert s.scalars(select(PredictiveModel)).all() == []
    # No model: a prediction says so.
    assert client.get("/api/leads/1/prediction", headers=admin.headers).status_code == 404


# ---------------------------------------------------------------------------------------------
# Refining the rules
# ---------------------------------------------------------------------------------------------


def test_applied_suggestions_raise_the_rule_scores_holdout_auc_and_roll_back(
    db: Database, client: TestClient, admin: Actor, run_cli: Any
) -> None:
    _generate(db)
    cutoff = datetime.now(UTC) + timedelta(seconds=1)
    params = {"cutoff": cutoff.isoformat()}
    r = client.post("/api/scoring/suggestions", json=params, headers=admin.headers)
    assert r.status_code == 200, r.text
    sugg = r.json()
    assert sugg["rule_model_version"] == 0  # the built-in default
    assert sugg["holdout_auc_suggested"] > sugg["holdout_auc_now"]
    by_id = {x["rule_id"]: x for x in sugg["rules"]}
    # The generator's truth: free mail weighs more than the default says; a rule that never
    # fired (competitor) keeps its points; noise behaviour (content downloads) loses its points.
    assert by_id["free_mail"]["suggested"] < by_id["free_mail"]["current"]
    assert by_id["competitor"]["action"] == "keep" and by_id["competitor"]["support"] == 0
    assert by_id["content_download"]["suggested"] is None or by_id["content_download"]["suggested"] < 8
    assert by_id["demo_request"]["weight"] > 0 and by_id["pricing_request"]["weight"] > 0

    res = run_cli("scoring", "suggest", "--cutoff", cutoff.isoformat())
    assert res.exit_code == 0, res.output
    assert "AUC gain alone" in res.output and f"{sugg['holdout_auc_suggested']:.4f}" in res.output

    res = run_cli("scoring", "apply-suggestions", "--cutoff", cutoff.isoformat())
    assert res.exit_code == 0, res.output
    with db.transaction() as s:
        active = scoring.active_model(s)
        assert active.version == 1
        doc = active.model.to_document()
    assert "Hold-out ROC AUC" in doc["description"]
    # Re-evaluated from scratch under the new active rules: the rule score's hold-out AUC rose.
    with db.transaction() as s:
        after = suggest.suggest(s, admin.principal, predictive.Params(cutoff=cutoff))
    assert after.rule_version == 1
    assert after.holdout_auc_now == pytest.approx(sugg["holdout_auc_suggested"], abs=1e-3)
    assert after.holdout_auc_now > sugg["holdout_auc_now"] + 0.01
    with db.transaction() as s:
        scored = s.execute(select(ScoringModelVersion.version)).scalars().all()
        assert scored == [1]

    # Rollback is one command: the built-in default again; the suggested version stays stored.
    res = run_cli("scoring", "rollback", "--no-rescore")
    assert res.exit_code == 0 and "version 0 is active again" in res.output
    with db.transaction() as s:
        assert scoring.active_model(s).version == 0
        assert s.scalars(select(ScoringModelVersion)).one().active is False
    r = client.post("/api/scoring/models/1/activate?rescore=false", headers=admin.headers)
    assert r.status_code == 200
    doc2 = dict(doc)
    doc2["name"] = "Manual edit"
    with db.transaction() as s:
        scoring.save_model(s, admin.principal, doc2, activate=True)
    r = client.post("/api/scoring/rollback?rescore=false", headers=admin.headers)
    assert r.json() == {"rolled_back_from": 2, "active_version": 1}
    rep = make_user(db, "Rep", Role.SALES_REP)
    assert client.post("/api/scoring/suggestions/apply", json={}, headers=rep.headers).status_code == 403
