"""Predictive scoring use cases: the training set read set-based from the database, training a
calibrated model on a time split, stored versions, and predictions with their top factors.

The pure parts (labels, point-in-time features, the rule score as of a moment, the naive-Bayes
baseline, ranking metrics) are in :mod:`leadflow.core.predictive`; this module reads the data in a
few set-based queries (attributes as columns, the first time each lead reached the target, every
engagement event) and fits scikit-learn estimators.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import joblib
import numpy as np
import numpy.typing as npt
import sklearn
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from leadflow.audit.service import record
from leadflow.auth.principal import Perm, Principal
from leadflow.core import predictive as core
from leadflow.core import scoring as rules
from leadflow.db.base import utcnow
from leadflow.errors import Conflict, Forbidden, InvalidInput, NotFound
from leadflow.leads import service as leads
from leadflow.leads.models import StageChange
from leadflow.scoring import evaluate
from leadflow.scoring import service as scoring
from leadflow.scoring.predictive_models import PredictiveModel

FloatArray = npt.NDArray[np.float64]
Columns = dict[str, npt.NDArray[Any]]
KIND = "logistic-calibrated"
TOP_FACTORS = 5


class NotEnoughData(InvalidInput):
    """Too few outcomes to train or evaluate (422 naming how many are needed; CLI exit 2)."""


def require_manage(actor: Principal) -> None:
    if actor.role not in scoring.MANAGERS or not actor.can(Perm.LEADS_WRITE):
        raise Forbidden(f"role {actor.role.value} cannot train or change scoring models (admin or marketing)")


# ---------------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Params:
    target: str = "sql"
    horizon_days: float = 90.0
    test_fraction: float = 0.25
    cutoff: datetime | None = None  # outcomes known up to here (default: now)

    def checked(self) -> Params:
        if self.target not in core.TARGET_STAGES:
            raise InvalidInput(
                "target", f"unknown target {self.target!r}; expected one of {', '.join(core.TARGET_STAGES)}"
            )
        if not 1 <= self.horizon_days <= 3650:
            raise InvalidInput("horizon_days", "must be between 1 and 3650 days")
        if not 0.05 <= self.test_fraction <= 0.5:
            raise InvalidInput("test_fraction", "must be between 0.05 and 0.5")
        cutoff = self.cutoff or utcnow()
        if cutoff.tzinfo is None:
            cutoff = cutoff.replace(tzinfo=UTC)
        return Params(self.target, float(self.horizon_days), float(self.test_fraction), cutoff)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "horizon_days": self.horizon_days,
            "test_fraction": self.test_fraction,
            "cutoff": self.cutoff.isoformat() if self.cutoff else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Params:
        cutoff = data.get("cutoff")
        return cls(
            str(data.get("target", "sql")),
            float(data.get("horizon_days", 90.0)),
            float(data.get("test_fraction", 0.25)),
            datetime.fromisoformat(cutoff) if cutoff else None,
        )


# ---------------------------------------------------------------------------------------------
# Reading the data (set-based)
# ---------------------------------------------------------------------------------------------

# The same attribute extraction as rule scoring: one definition of what a rule attribute is.
_COLUMNS = scoring.LEAD_COLUMNS


def _array(name: str, values: Sequence[Any]) -> npt.NDArray[Any]:
    kind = rules.FIT_FIELDS.get(name, "any")
    if kind == "number":
        return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    arr = np.empty(len(values), dtype=object)
    arr[:] = [None if v is None else bool(v) for v in values] if kind == "bool" else list(values)
    return arr


@dataclass
class Leads:
    ids: npt.NDArray[np.int64]
    created: FloatArray  # epoch seconds
    columns: Columns

    def take(self, index: npt.NDArray[np.int64]) -> Leads:
        return Leads(self.ids[index], self.created[index], {k: v[index] for k, v in self.columns.items()})


def load_leads(session: Session, custom: Sequence[str] = (), lead_id: int | None = None) -> Leads:
    """Live leads' attributes as columns (one query), ordered by id; ``custom`` names custom
    attributes (``attributes.x``) the rule model reads."""

    exprs = list(_COLUMNS.values())
    if custom:
        exprs.append("l.attributes")
    where = "l.merged_into_id IS NULL" + (" AND l.id = :lid" if lead_id is not None else "")
    sql = (
        f"SELECT l.id, l.created_at, {', '.join(exprs)} FROM leads l "
        f"LEFT JOIN accounts a ON a.id = l.account_id WHERE {where} ORDER BY l.id"
    )
    rows = session.execute(text(sql), {"lid": lead_id}).all()
    ids = np.array([int(r[0]) for r in rows], dtype=np.int64)
    created = np.array([_epoch(r[1]) for r in rows], dtype=np.float64)
    columns: Columns = {}
    for i, name in enumerate(_COLUMNS):
        columns[name] = _array(name, [r[i + 2] for r in rows])
    if custom:
        attrs = [r[len(_COLUMNS) + 2] for r in rows]
        parsed = [a if isinstance(a, dict) else (json.loads(a) if a else {}) for a in attrs]
        for name in custom:
            key = name[len(rules.ATTRIBUTE_PREFIX) :]
            columns[name] = _array(name, [p.get(key) if isinstance(p, dict) else None for p in parsed])
    return Leads(ids, created, columns)


def _epoch(value: Any) -> float:
    if isinstance(value, str):  # SQLite through text(): naive UTC text
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return float(value.timestamp())


def first_reached(session: Session, target: str, ids: npt.NDArray[np.int64]) -> FloatArray:
    """When each lead first entered a target stage (NaN: never), from the stage history."""

    rows = session.execute(
        select(StageChange.lead_id, func.min(StageChange.at))
        .where(StageChange.to_stage.in_(core.TARGET_STAGES[target]))
        .group_by(StageChange.lead_id)
    ).all()
    out = np.full(len(ids), np.nan)
    if rows and len(ids):
        lid = np.array([int(r[0]) for r in rows], dtype=np.int64)
        at = np.array([_epoch(r[1]) for r in rows], dtype=np.float64)
        pos = np.searchsorted(ids, lid)
        ok = (pos < len(ids)) & (ids[np.minimum(pos, len(ids) - 1)] == lid)
        out[pos[ok]] = at[ok]
    return out


def _epoch_sql(dialect: str) -> str:
    if dialect == "postgresql":
        return "EXTRACT(EPOCH FROM occurred_at)::float8"
    # UTCDateTime stores 'YYYY-MM-DD HH:MM:SS.ffffff' (naive UTC) on SQLite.
    return "(CAST(strftime('%s', occurred_at) AS REAL) + CAST(substr(occurred_at, 20) AS REAL))"


def _property_sql(dialect: str, key: str) -> str:
    """The text of a top-level event property as the rules compare it (true/false for flags)."""

    safe = key.replace("'", "''")
    if dialect == "postgresql":
        return f"(properties ->> '{safe}')"
    path = "'$.\"" + safe.replace('"', '""') + "\"'"
    return (
        f"(CASE json_type(properties, {path}) WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' "
        f"ELSE CAST(json_extract(properties, {path}) AS TEXT) END)"
    )


def load_events(
    session: Session, ids: npt.NDArray[np.int64], keys: Sequence[str], lead_id: int | None = None
) -> core.Events:
    """Every engagement event of the given leads in one query, as arrays: times and the property
    values the rules read are extracted by the database (no per-row JSON or datetime parsing)."""

    dialect = session.get_bind().dialect.name
    types = ", ".join(f"'{t}'" for t in core.ENGAGEMENT_TYPES)  # constants from the enum
    props_sql = "".join(f", {_property_sql(dialect, k)}" for k in keys)
    where = f"type IN ({types})" + (" AND lead_id = :lid" if lead_id is not None else "")
    sql = f"SELECT lead_id, type, {_epoch_sql(dialect)}{props_sql} FROM activities WHERE {where}"
    rows = session.execute(text(sql), {"lid": lead_id}).all()
    n = len(rows)
    cols = list(zip(*rows, strict=True)) if n else [()] * (3 + len(keys))
    lid = np.fromiter(cols[0], dtype=np.int64, count=n)
    if len(ids):
        pos = np.searchsorted(ids, lid)
        ok = (pos < len(ids)) & (ids[np.minimum(pos, len(ids) - 1)] == lid)
    else:
        pos, ok = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.bool_)
    kinds = np.empty(n, dtype=object)
    kinds[:] = cols[1]
    epoch = np.fromiter(cols[2], dtype=np.float64, count=n)
    props: dict[str, npt.NDArray[np.object_]] = {}
    for i, key in enumerate(keys):
        arr = np.empty(n, dtype=object)
        arr[:] = cols[3 + i]
        props[key] = arr[ok]
    return core.Events(pos[ok].astype(np.int64), kinds[ok], epoch[ok], props)


def _property_keys(model: rules.ScoringModel) -> list[str]:
    keys = {"url"}
    for r in model.engagement.rules:
        keys.update(r.where)
    return sorted(keys)


def _custom_fields(model: rules.ScoringModel) -> list[str]:
    return [f for f in rules.fit_fields_needed(model) if f.startswith(rules.ATTRIBUTE_PREFIX)]


# ---------------------------------------------------------------------------------------------
# The training set
# ---------------------------------------------------------------------------------------------


@dataclass
class Prepared:
    """Eligible leads with labels, moments, the time split and the rule model's matrices."""

    params: Params
    leads: Leads
    label: npt.NDArray[np.bool_]
    snapshot: FloatArray
    events: core.Events
    split: core.Split
    rule_version: int
    rule_model: rules.ScoringModel
    rule: core.RuleMatrices
    counts: dict[str, int] = field(default_factory=dict)


def prepare(session: Session, params: Params) -> Prepared:
    """Read and label the history as of the cutoff; split it by capture time."""

    p = params.checked()
    assert p.cutoff is not None
    active = scoring.active_model(session)
    everyone = load_leads(session, _custom_fields(active.model))
    reached = first_reached(session, p.target, everyone.ids)
    out = core.outcomes(everyone.ids, everyone.created, reached, p.cutoff.timestamp(), p.horizon_days)
    index = np.nonzero(out.eligible)[0].astype(np.int64)
    subset = everyone.take(index)
    events = load_events(session, everyone.ids, _property_keys(active.model)).remap(index, len(everyone.ids))
    label = out.label[index]
    snapshot = out.snapshot[index]
    try:
        split = core.time_split(subset.created, label, p.test_fraction, p.target)
    except core.NotEnoughOutcomes as exc:
        raise NotEnoughData("data", str(exc), counts=exc.counts) from None
    matrices = core.rule_scores_at(active.model, subset.columns, events, snapshot)
    counts = {
        "leads": len(everyone.ids),
        "eligible": len(index),
        "positive": int(label.sum()),
        "train": len(split.train),
        "test": len(split.test),
    }
    return Prepared(p, subset, label, snapshot, events, split, active.version, active.model, matrices, counts)


def _subset_columns(columns: Columns, index: npt.NDArray[np.int64]) -> Columns:
    return {k: v[index] for k, v in columns.items()}


# ---------------------------------------------------------------------------------------------
# The estimator
# ---------------------------------------------------------------------------------------------


@dataclass
class Fitted:
    spec: core.FeatureSpec
    estimator: Any  # CalibratedClassifierCV

    def predict(self, columns: Columns, events: core.Events, snapshot: FloatArray) -> FloatArray:
        x = core.feature_matrix(self.spec, columns, events, snapshot)
        return np.asarray(self.estimator.predict_proba(x)[:, 1], dtype=np.float64)

    def contributions(self, x: FloatArray) -> FloatArray:
        """Each feature's share of the log-odds (coefficient times the standardized value),
        averaged over the calibration folds' models."""

        parts = []
        for cc in self.estimator.calibrated_classifiers_:
            scaler, lr = cc.estimator[0], cc.estimator[-1]
            parts.append((x - scaler.mean_) / scaler.scale_ * lr.coef_[0])
        return np.asarray(np.mean(parts, axis=0), dtype=np.float64)


def fit(prep: Prepared) -> Fitted:
    tr = prep.split.train
    cols = _subset_columns(prep.leads.columns, tr)
    spec = core.fit_spec(cols)
    x = core.feature_matrix(spec, cols, prep.events.remap(tr, len(prep.label)), prep.snapshot[tr])
    y = prep.label[tr]
    folds = int(min(5, y.sum(), (~y).sum()))
    base = make_pipeline(StandardScaler(), LogisticRegression(C=0.3, max_iter=2000))
    method = "isotonic" if len(y) >= 2000 else "sigmoid"
    est = CalibratedClassifierCV(base, method=method, cv=max(folds, 2))
    est.fit(x, y)
    return Fitted(spec, est)


def holdout_scores(prep: Prepared, fitted: Fitted) -> dict[str, FloatArray]:
    """The three contenders' scores on the hold-out: rule score (scaled to 0..1), naive Bayes,
    trained model."""

    tr, te = prep.split.train, prep.split.test
    nb = core.FrequencyModel.fit(_subset_columns(prep.leads.columns, tr), prep.label[tr])
    test_cols = _subset_columns(prep.leads.columns, te)
    return {
        "rule_score": prep.rule.scores.total[te] / prep.rule_model.scale,
        "naive_bayes": nb.predict(test_cols, len(te)),
        "trained_model": fitted.predict(test_cols, prep.events.remap(te, len(prep.label)), prep.snapshot[te]),
    }


def dumps(est: Any) -> bytes:
    buf = io.BytesIO()
    joblib.dump(est, buf)
    return buf.getvalue()


# Keyed by the estimator's own bytes, not the row id alone: ids come back after a restore or a
# truncation, and a stale estimator would answer for a different model.
_loaded: dict[tuple[int, bytes], Fitted] = {}
_LOADED_MAX = 8


def _loaded_key(row: PredictiveModel) -> tuple[int, bytes]:
    return (row.id, hashlib.blake2b(row.estimator, digest_size=16).digest())


def _remember(row: PredictiveModel, fitted: Fitted) -> None:
    if len(_loaded) >= _LOADED_MAX:
        _loaded.clear()
    _loaded[_loaded_key(row)] = fitted


def fitted_of(row: PredictiveModel) -> Fitted:
    cached = _loaded.get(_loaded_key(row))
    if cached is not None:
        return cached
    if row.library_version.split(".")[:2] != sklearn.__version__.split(".")[:2]:
        raise Conflict(
            f"predictive model version {row.version} was trained with scikit-learn {row.library_version}; "
            f"this installation has {sklearn.__version__}: train again"
        )
    fitted = Fitted(core.FeatureSpec.from_dict(row.features), joblib.load(io.BytesIO(row.estimator)))
    _remember(row, fitted)
    return fitted


# ---------------------------------------------------------------------------------------------
# Use cases
# ---------------------------------------------------------------------------------------------


def train(session: Session, actor: Principal, params: Params, *, activate: bool = True) -> PredictiveModel:
    """Train on the history, evaluate on the hold-out against the rule score and the naive-Bayes
    baseline, store the version (with its metrics) and by default activate it."""

    require_manage(actor)
    prep = prepare(session, params)
    fitted = fit(prep)
    report = _report(prep, fitted)
    latest = session.scalar(select(func.max(PredictiveModel.version))) or 0
    row = PredictiveModel(
        version=latest + 1,
        target=prep.params.target,
        kind=KIND,
        active=False,
        params=prep.params.to_dict(),
        features=fitted.spec.to_dict(),
        metrics=report,
        estimator=dumps(fitted.estimator),
        library_version=sklearn.__version__,
        n_train=len(prep.split.train),
        n_test=len(prep.split.test),
        positives=int(prep.label.sum()),
        created_by=actor.user_id,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    _remember(row, fitted)
    m = report["models"]["trained_model"]
    record(
        session,
        actor,
        "predictive_model",
        row.version,
        "train",
        after={"target": row.target, "roc_auc": m["roc_auc"], "n_train": row.n_train, "n_test": row.n_test},
    )
    if activate:
        activate_version(session, actor, row.version)
    return row


def _report(prep: Prepared, fitted: Fitted) -> dict[str, Any]:
    report = evaluate.report(prep.label[prep.split.test], holdout_scores(prep, fitted))
    report["data"] = {**prep.counts, "split_at": datetime.fromtimestamp(prep.split.split_at, UTC).isoformat()}
    report["params"] = prep.params.to_dict()
    report["rule_model_version"] = prep.rule_version
    return report


def evaluation(
    session: Session, actor: Principal, params: Params | None = None, *, version: int | None = None
) -> dict[str, Any]:
    """The evaluation report on the hold-out: the rule score, the naive-Bayes baseline and a
    trained model. With ``version`` (or, when no parameters are given, the active model) the
    stored model is evaluated on the split it was trained with; otherwise a model is trained for
    the report and not stored."""

    require_manage(actor)
    row = get_version(session, actor, version) if version is not None else None
    if row is None and params is None:
        row = active_version(session)
    fitted = fitted_of(row) if row is not None else None
    prep = prepare(session, Params.from_dict(row.params) if row is not None else (params or Params()))
    report = _report(prep, fitted or fit(prep))
    report["predictive_model_version"] = row.version if row is not None else None
    return report


def list_versions(session: Session, actor: Principal) -> list[PredictiveModel]:
    actor.require(Perm.LEADS_READ)
    return list(session.scalars(select(PredictiveModel).order_by(PredictiveModel.version.desc())))


def get_version(session: Session, actor: Principal, version: int) -> PredictiveModel:
    actor.require(Perm.LEADS_READ)
    row = session.scalar(select(PredictiveModel).where(PredictiveModel.version == version))
    if row is None:
        raise NotFound(f"predictive model version {version} not found")
    return row


def active_version(session: Session) -> PredictiveModel | None:
    return session.scalar(select(PredictiveModel).where(PredictiveModel.active.is_(True)).limit(1))


def activate_version(session: Session, actor: Principal, version: int) -> PredictiveModel:
    """Make ``version`` the model that answers predictions (also a rollback)."""

    require_manage(actor)
    row = session.scalar(select(PredictiveModel).where(PredictiveModel.version == version).with_for_update())
    if row is None:
        raise NotFound(f"predictive model version {version} not found")
    previous = active_version(session)
    session.execute(
        update(PredictiveModel)
        .where(PredictiveModel.active.is_(True), PredictiveModel.version != version)
        .values(active=False)
        .execution_options(synchronize_session=False)
    )
    row.active = True
    row.activated_at = utcnow()
    record(
        session,
        actor,
        "predictive_model",
        version,
        "activate",
        before={"active_version": previous.version if previous else None},
        after={"active_version": version},
    )
    return row


@dataclass(frozen=True)
class Factor:
    feature: str
    label: str
    value: Any
    contribution: float  # log-odds, relative to the average training lead


@dataclass(frozen=True)
class Prediction:
    lead_id: int
    model_version: int
    target: str
    horizon_days: float
    probability: float
    factors: list[Factor]
    as_of: datetime


def predict_lead(session: Session, actor: Principal, lead_id: int, *, top: int = TOP_FACTORS) -> Prediction:
    """The active model's probability that the lead reaches its target within the horizon, as of
    now, with the factors that moved it most (up or down)."""

    lead = leads.get_lead(session, actor, lead_id)
    if lead.merged_into_id is not None:
        raise NotFound(f"lead {lead_id} was merged into lead {lead.merged_into_id}")
    row = active_version(session)
    if row is None:
        raise NotFound("no predictive model is active: train one (leadflow scoring train)")
    fitted = fitted_of(row)
    one = load_leads(session, lead_id=lead_id)
    now = utcnow()
    events = load_events(session, one.ids, ["url"], lead_id=lead_id)
    snapshot = np.array([now.timestamp() + 1.0])
    x = core.feature_matrix(fitted.spec, one.columns, events, snapshot)
    prob = float(fitted.estimator.predict_proba(x)[0, 1])
    contrib = fitted.contributions(x)[0]
    names = fitted.spec.names
    candidates = [j for j in range(len(names)) if "=" not in names[j] or x[0, j] > 0]
    candidates.sort(key=lambda j: -abs(contrib[j]))
    factors = [
        Factor(
            names[j],
            fitted.spec.labels[j],
            core.describe_value(fitted.spec, j, float(x[0, j])),
            round(float(contrib[j]), 4),
        )
        for j in candidates[:top]
        if not math.isclose(contrib[j], 0.0, abs_tol=1e-9)
    ]
    return Prediction(
        lead_id, row.version, row.target, float(row.params.get("horizon_days", 90)), prob, factors, now
    )
