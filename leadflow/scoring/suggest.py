"""Refining the rule model from outcomes: suggested point values per rule, with the hold-out gain
they bring, applied as a new model version (the old one stays; rollback is one command).

How points are derived: on the training leads (the same labels, moments and time split as the
predictive model), each rule's *unit* is measured — for a fit rule, whether it matched; for an
engagement rule, its points as scored now divided by its points per event (decayed, capped event
units). A logistic regression of the outcome on those units gives each rule's weight in
log-odds; weights are turned into points so that a rule's share of the total score is
proportional to its weight (the fit and engagement sections' scaling and weights taken into
account), with one common factor chosen so the spread of the training leads' totals (10th to 90th
percentile) stays as it was (thresholds keep roughly their meaning). Engagement caps scale with their rule's
points (the same number of events fills the cap). A rule whose weight rounds to no points is
suggested for removal.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression
from sqlalchemy import select
from sqlalchemy.orm import Session

from leadflow.audit.service import record
from leadflow.auth.principal import Principal
from leadflow.core import predictive as core
from leadflow.core import scoring as rules
from leadflow.db.base import Database
from leadflow.errors import Conflict, NotFound
from leadflow.events import emit
from leadflow.scoring import predictive
from leadflow.scoring import service as scoring
from leadflow.scoring.models import ScoringModelVersion

FloatArray = npt.NDArray[np.float64]
# A rule that applied to fewer training leads keeps its points: no evidence is not evidence of no
# effect (a competitor rule that never fired is not useless).
MIN_SUPPORT = 10


@dataclass(frozen=True)
class RuleSuggestion:
    rule_id: str
    label: str
    kind: str  # fit | engagement
    current: float
    suggested: float | None  # None: remove the rule
    weight: float  # log-odds per unit (per match, or per decayed event)
    holdout_auc_gain: float  # the rule score's hold-out ROC AUC with only this change, minus now
    support: int  # training leads the rule applied to
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "label": self.label,
            "kind": self.kind,
            "current": self.current,
            "suggested": self.suggested,
            "action": "remove"
            if self.suggested is None
            else ("keep" if self.suggested == self.current else "change"),
            "weight": round(self.weight, 4),
            "holdout_auc_gain": round(self.holdout_auc_gain, 4),
            "support": self.support,
            "note": self.note,
        }


@dataclass(frozen=True)
class Suggestions:
    params: predictive.Params
    rule_version: int
    rules: list[RuleSuggestion]
    holdout_auc_now: float
    holdout_auc_suggested: float
    document: dict[str, Any]  # the model document with the suggested points
    data: dict[str, int]

    @property
    def gain(self) -> float:
        return self.holdout_auc_suggested - self.holdout_auc_now

    def to_dict(self) -> dict[str, Any]:
        return {
            "params": self.params.to_dict(),
            "rule_model_version": self.rule_version,
            "holdout_auc_now": round(self.holdout_auc_now, 4),
            "holdout_auc_suggested": round(self.holdout_auc_suggested, 4),
            "holdout_auc_gain": round(self.gain, 4),
            "rules": [r.to_dict() for r in self.rules],
            "data": self.data,
            "document": self.document,
        }


def _round_points(p: float) -> float | None:
    if abs(p) < 0.5:
        return None
    return float(round(p)) if abs(p) >= 3 else round(p * 2) / 2


def _unit_scale(model: rules.ScoringModel, kind: str) -> float:
    """Points that move the total by one point, for a rule of this section (before clipping)."""

    w = model.weights
    if kind == "fit":
        share = w.fit / (w.fit + w.engagement)
        return model.fit_max_points / (model.scale * share) if share > 0 else math.inf
    share = w.engagement / (w.fit + w.engagement)
    return model.engagement.max_points / (model.scale * share) if share > 0 else math.inf


def _document(model: rules.ScoringModel, new_points: list[float | None]) -> dict[str, Any]:
    """The model document with the given points per rule (fit rules then engagement rules)."""

    doc = copy.deepcopy(model.to_document())
    n_fit = len(model.fit.rules)
    doc["fit"]["max_points"] = model.fit_max_points  # keep the fit scale as it is
    fit_rules, eng_rules = [], []
    for rule, raw in zip(doc["fit"]["rules"], new_points[:n_fit], strict=True):
        if raw is not None:
            fit_rules.append({**rule, "points": raw})
    for rule, orig, raw in zip(
        doc["engagement"]["rules"], model.engagement.rules, new_points[n_fit:], strict=True
    ):
        if raw is None:
            continue
        changed = {**rule, "points": raw}
        if orig.cap is not None:
            changed["cap"] = {
                "points": round(orig.cap.points * abs(raw) / abs(orig.points), 4),
                "days": orig.cap.days,
            }
        eng_rules.append(changed)
    doc["fit"]["rules"] = fit_rules
    doc["engagement"]["rules"] = eng_rules
    return doc


def _totals(model: rules.ScoringModel, fit: FloatArray, eng: FloatArray, factors: FloatArray) -> FloatArray:
    """Total scores with each rule's points multiplied by ``factors`` (0 removes it)."""

    n_fit = fit.shape[1]
    return rules.scale_scores(model, fit * factors[:n_fit], eng * factors[n_fit:]).total


def suggest(session: Session, actor: Principal, params: predictive.Params) -> Suggestions:
    predictive.require_manage(actor)
    prep = predictive.prepare(session, params)
    model = prep.rule_model
    all_rules: list[rules.FitRule | rules.EngagementRule] = [*model.fit.rules, *model.engagement.rules]
    if not all_rules:
        raise Conflict("the active scoring model has no rules to refine")
    kinds = ["fit"] * len(model.fit.rules) + ["engagement"] * len(model.engagement.rules)
    current = np.array([r.points for r in all_rules], dtype=np.float64)
    units = np.concatenate([prep.rule.fit, prep.rule.engagement], axis=1) / current
    tr, te = prep.split.train, prep.split.test
    y_tr, y_te = prep.label[tr], prep.label[te]
    support = (units[tr] != 0).sum(axis=0)
    used = support >= MIN_SUPPORT
    lr = LogisticRegression(C=1.0, max_iter=5000)
    lr.fit(units[tr][:, used], y_tr)
    beta = np.zeros(len(all_rules))
    beta[used] = lr.coef_[0]
    scale = np.array([_unit_scale(model, k) for k in kinds])
    raw = beta * np.where(np.isfinite(scale), scale, 0.0)  # points per unit of log-odds, by section
    # One common factor: the spread of the training leads' totals stays as it was.
    old_total = prep.rule.scores.total[tr]
    linear = units[tr] @ beta
    spread = float(np.quantile(linear, 0.9) - np.quantile(linear, 0.1))
    old_spread = float(np.quantile(old_total, 0.9) - np.quantile(old_total, 0.1))
    c = old_spread / spread if spread > 0 and old_spread > 0 else 1.0
    proposed: list[float | None] = [
        _round_points(float(p)) if ok and np.isfinite(sc) else float(cur)
        for p, sc, cur, ok in zip(raw * c, scale, current, used, strict=True)
    ]
    factors = np.array([0.0 if p is None else p / cur for p, cur in zip(proposed, current, strict=True)])
    fit_m, eng_m = prep.rule.fit[te], prep.rule.engagement[te]
    now_auc = core.roc_auc(y_te, prep.rule.scores.total[te])
    doc = _document(model, proposed)
    new_model = rules.parse_model(doc)
    # Scores under the suggested document, from the same per-rule points (rules scale linearly).
    kept = [i for i, p in enumerate(proposed) if p is not None]
    n_fit = len(model.fit.rules)
    kept_fit = [i for i in kept if i < n_fit]
    kept_eng = [i - n_fit for i in kept if i >= n_fit]
    new_total = rules.scale_scores(
        new_model, (fit_m * factors[:n_fit])[:, kept_fit], (eng_m * factors[n_fit:])[:, kept_eng]
    ).total
    new_auc = core.roc_auc(y_te, new_total)
    out = []
    for i, rule in enumerate(all_rules):
        one = np.ones(len(all_rules))
        one[i] = factors[i]
        gain = core.roc_auc(y_te, _totals(model, fit_m, eng_m, one)) - now_auc
        out.append(
            RuleSuggestion(
                rule.id,
                rule.label or rule.id,
                kinds[i],
                float(rule.points),
                proposed[i],
                float(beta[i]),
                gain,
                int(support[i]),
                "" if used[i] else f"applied to {int(support[i])} training leads (< {MIN_SUPPORT}): kept",
            )
        )
    doc["description"] = (
        f"Points suggested from outcomes (reached {prep.params.target} within "
        f"{prep.params.horizon_days:g} days; {prep.counts['train']} training leads). "
        f"Hold-out ROC AUC {now_auc:.3f} -> {new_auc:.3f}. "
        f"Based on version {prep.rule_version}."
    )
    return Suggestions(prep.params, prep.rule_version, out, now_auc, new_auc, doc, prep.counts)


@dataclass(frozen=True)
class Applied:
    version: int
    previous: int
    suggestions: Suggestions
    rescore: scoring.RescoreResult | None


def apply_suggestions(
    db: Database, actor: Principal, params: predictive.Params, *, rescore: bool = True
) -> Applied:
    """Store the suggested points as a new rule model version, activate it and rescore every lead.
    The previous version stays stored; :func:`rollback` goes back to it."""

    with db.transaction() as s:
        sugg = suggest(s, actor, params)
        if sugg.gain <= 0:
            raise Conflict(
                f"the suggested points would not raise the hold-out ROC AUC "
                f"({sugg.holdout_auc_now:.4f} -> {sugg.holdout_auc_suggested:.4f}); nothing applied"
            )
        row = scoring.save_model(s, actor, sugg.document, activate=True)
        record(
            s,
            actor,
            "scoring_model",
            row.version,
            "apply_suggestions",
            before={"active_version": sugg.rule_version, "holdout_auc": round(sugg.holdout_auc_now, 4)},
            after={"active_version": row.version, "holdout_auc": round(sugg.holdout_auc_suggested, 4)},
            reason="points suggested from outcomes",
        )
        version = row.version
    result = scoring.rescore_all(db, actor) if rescore else None
    return Applied(version, sugg.rule_version, sugg, result)


def rollback(db: Database, actor: Principal, *, rescore: bool = True) -> tuple[int, int]:
    """Activate the version that was active before the current one (returns (from, to)); with no
    earlier activation, the built-in default (version 0) is in force again."""

    predictive.require_manage(actor)
    with db.transaction() as s:
        current = s.scalar(select(ScoringModelVersion).where(ScoringModelVersion.active.is_(True)).limit(1))
        if current is None:
            raise NotFound("no stored scoring model is active: the built-in default is in force already")
        earlier = s.scalar(
            select(ScoringModelVersion)
            .where(
                ScoringModelVersion.active.is_(False),
                ScoringModelVersion.activated_at.is_not(None),
                ScoringModelVersion.version != current.version,
            )
            .order_by(ScoringModelVersion.activated_at.desc(), ScoringModelVersion.version.desc())
            .limit(1)
        )
        if earlier is not None:
            scoring.activate_version(s, actor, earlier.version)
            target = earlier.version
        else:
            current.active = False
            record(
                s,
                actor,
                "scoring_model",
                current.version,
                "rollback",
                before={"active_version": current.version},
                after={"active_version": 0},
            )
            emit(s, "scoring.model_activated", version=0, previous=current.version)
            target = 0
        source = current.version
    if rescore:
        scoring.rescore_all(db, actor)
    return source, target
