"""Predictive lead scoring, the pure part: outcome labels from stage history, point-in-time
features, the rule score as of a moment per lead, an Odoo-style naive-Bayes frequency model and
ranking metrics. NumPy only: no database, no web, no estimator library.

Labels and the moment features are taken at (``snapshot``), per lead:

* a lead is *eligible* when its outcome window (``horizon_days`` after capture) has closed by the
  cutoff, and it did not enter the target stage at capture (sales-sourced leads created as SQLs
  have nothing to predict);
* it is *positive* when it reached a target stage (``sql`` means sql, opportunity or customer)
  within the window;
* a positive's features are taken just before it reached the target (what was known when the
  prediction would have been useful; later events such as meetings would leak the answer); a
  negative's at an age drawn from the positives' ages (a deterministic draw per lead), so both
  classes are seen at comparable ages and "older" does not mean "negative".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from leadflow.core import scoring
from leadflow.core.engagement import SALES_TOUCHES, ActivityType

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
ObjArray = npt.NDArray[np.object_]

DAY = 86_400.0
TARGET_STAGES: dict[str, tuple[str, ...]] = {
    "sql": ("sql", "opportunity", "customer"),
    "opportunity": ("opportunity", "customer"),
    "won": ("customer",),
}
# The lead's own behaviour; sales touches (calls, meetings, notes) follow qualification and would
# leak the outcome.
ENGAGEMENT_TYPES: tuple[str, ...] = tuple(t.value for t in ActivityType if t not in SALES_TOUCHES)
CATEGORICAL: tuple[str, ...] = (
    "seniority",
    "department",
    "industry",
    "source",
    "country",
    "origin",
    "consent",
)
NUMERIC: tuple[str, ...] = ("employee_count", "annual_revenue")
FLAGS: tuple[str, ...] = ("free_mail", "unsubscribed")
RECENT_DAYS = 30.0
MISSING = "(missing)"
OTHER = "(other)"
# Training needs this many of each class in each part of the time split.
MIN_TRAIN_PER_CLASS = 20
MIN_TEST_PER_CLASS = 10
_GOLDEN = (math.sqrt(5) - 1) / 2


class NotEnoughOutcomes(ValueError):
    """Too few labelled leads to train or evaluate; the message names how many are needed."""

    def __init__(self, message: str, counts: Mapping[str, int]) -> None:
        super().__init__(message)
        self.counts = dict(counts)


# ---------------------------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcomes:
    eligible: BoolArray
    label: BoolArray
    snapshot: FloatArray  # epoch seconds at which the lead's features are taken


def outcomes(
    lead_ids: IntArray, created: FloatArray, reached: FloatArray, cutoff: float, horizon_days: float
) -> Outcomes:
    """Labels and feature moments. ``created``/``reached`` are epoch seconds (``reached`` is NaN
    for a lead that never entered a target stage; else the first time it did)."""

    h = horizon_days * DAY
    has = ~np.isnan(reached)
    r = np.where(has, reached, np.inf)
    closed = created + h <= cutoff
    at_capture = has & (r <= created + 60.0)
    eligible = closed & ~at_capture
    label = eligible & has & (r <= created + h)
    snapshot = created + h
    pos_age = (r - created)[label]
    if len(pos_age):
        ages = np.sort(pos_age)
        u = np.mod(lead_ids.astype(np.float64) * _GOLDEN, 1.0)
        drawn = ages[np.minimum((u * len(ages)).astype(np.int64), len(ages) - 1)]
        snapshot = np.where(label, r - 1.0, created + np.minimum(drawn, h))
    return Outcomes(eligible, label, snapshot.astype(np.float64))


@dataclass(frozen=True)
class Split:
    train: IntArray  # indices into the eligible leads, by capture time
    test: IntArray
    split_at: float  # epoch seconds: leads captured from then on are the hold-out


def time_split(created: FloatArray, label: BoolArray, test_fraction: float, target: str) -> Split:
    """Train on the older leads, hold out the newest ``test_fraction``; too few outcomes in either
    part raise :class:`NotEnoughOutcomes` naming the counts needed."""

    order = np.argsort(created, kind="stable")
    n = len(order)
    n_test = round(n * test_fraction)
    train, test = order[: n - n_test], order[n - n_test :]
    counts = {
        "train_positive": int(label[train].sum()),
        "train_negative": int((~label[train]).sum()),
        "test_positive": int(label[test].sum()),
        "test_negative": int((~label[test]).sum()),
    }
    need = {
        "train_positive": MIN_TRAIN_PER_CLASS,
        "train_negative": MIN_TRAIN_PER_CLASS,
        "test_positive": MIN_TEST_PER_CLASS,
        "test_negative": MIN_TEST_PER_CLASS,
    }
    short = [k for k in need if counts[k] < need[k]]
    if short:
        pos = counts["train_positive"] + counts["test_positive"]
        raise NotEnoughOutcomes(
            f"too few outcomes to train: {pos} of {n} eligible leads reached {target} "
            f"({counts['train_positive']} in training, {counts['test_positive']} in the hold-out) and "
            f"{n - pos} did not; at least {MIN_TRAIN_PER_CLASS} of each are needed for training and "
            f"{MIN_TEST_PER_CLASS} of each for the hold-out (at least "
            f"{MIN_TRAIN_PER_CLASS + MIN_TEST_PER_CLASS} leads that reached {target} and as many that "
            f"did not, with their outcome window closed)",
            {**counts, "eligible": n},
        )
    split_at = float(created[test].min()) if len(test) else math.inf
    return Split(train.astype(np.int64), test.astype(np.int64), split_at)


# ---------------------------------------------------------------------------------------------
# Events as arrays
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Events:
    """Engagement events, one element each: the lead's index, type, time and top-level
    properties (only the keys the rules and features read)."""

    lead: IntArray
    type: ObjArray
    epoch: FloatArray
    props: Mapping[str, ObjArray] = field(default_factory=dict)

    def take(self, mask: BoolArray) -> Events:
        return Events(
            self.lead[mask], self.type[mask], self.epoch[mask], {k: v[mask] for k, v in self.props.items()}
        )

    def before(self, snapshot: FloatArray) -> Events:
        """The events each lead had before its snapshot."""

        if not len(self.lead):
            return self
        return self.take(self.epoch < snapshot[self.lead])

    def remap(self, index: IntArray, n_old: int) -> Events:
        """Keep the events of the leads at ``index`` (positions in the old order), renumbered."""

        new_pos = np.full(n_old, -1, dtype=np.int64)
        new_pos[index] = np.arange(len(index))
        keep = new_pos[self.lead] >= 0 if len(self.lead) else np.zeros(0, dtype=np.bool_)
        kept = self.take(keep)
        return Events(new_pos[kept.lead], kept.type, kept.epoch, kept.props)


# ---------------------------------------------------------------------------------------------
# The rule score as of each lead's moment
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleMatrices:
    fit: FloatArray  # points per (lead, fit rule)
    engagement: FloatArray  # points per (lead, engagement rule)
    scores: scoring.ScoreArrays


def rule_scores_at(
    model: scoring.ScoringModel,
    columns: Mapping[str, npt.NDArray[Any]],
    events: Events,
    snapshot: FloatArray,
) -> RuleMatrices:
    """The rule model's scores with each lead's engagement decayed to its own snapshot (the same
    rules, caps and decay as :mod:`leadflow.core.scoring`; events at or after the snapshot are
    ignored)."""

    n = len(snapshot)
    fit = scoring.fit_points_matrix(model, columns, n)
    ev = events.before(snapshot)
    parts: list[tuple[IntArray, IntArray, FloatArray, FloatArray]] = []
    for j, rule in enumerate(model.engagement.rules):
        m = scoring.engagement_rule_mask(rule, ev.type, ev.props)
        if not m.any():
            continue
        li, t = ev.lead[m], ev.epoch[m]
        hl = model.half_life(rule)
        now = snapshot[li]
        decay = np.ones(len(t)) if hl is None else np.power(0.5, np.maximum(now - t, 0.0) / DAY / hl)
        period = (
            np.floor(t / (rule.cap.days * DAY)).astype(np.int64) if rule.cap else np.zeros(len(t), np.int64)
        )
        uniq, inverse = np.unique(np.stack([li, period], axis=1), axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        count = np.bincount(inverse, minlength=len(uniq)).astype(np.float64)
        dsum = np.asarray(np.bincount(inverse, weights=decay, minlength=len(uniq)), dtype=np.float64)
        parts.append((uniq[:, 0].astype(np.int64), np.full(len(uniq), j, np.int64), count, dsum))
    if parts:
        groups = scoring.EngagementGroups(
            np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]),
            np.concatenate([p[3] for p in parts]),
        )
    else:
        empty = np.zeros(0, np.int64)
        groups = scoring.EngagementGroups(empty, empty.copy(), np.zeros(0), np.zeros(0))
    eng = scoring.engagement_points_from_groups(model, groups, n)
    return RuleMatrices(fit, eng, scoring.scale_scores(model, fit, eng))


# ---------------------------------------------------------------------------------------------
# Features
# ---------------------------------------------------------------------------------------------


def _level(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return MISSING
    text = str(v).strip().casefold()
    return text or MISSING


@dataclass(frozen=True)
class FeatureSpec:
    """The feature layout learned on the training leads (categorical vocabularies) and kept with
    the model, so prediction builds the same columns."""

    vocab: dict[str, list[str]]
    names: list[str]
    labels: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"vocab": self.vocab, "names": self.names, "labels": self.labels}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureSpec:
        return cls({k: list(v) for k, v in data["vocab"].items()}, list(data["names"]), list(data["labels"]))


def fit_spec(
    columns: Mapping[str, npt.NDArray[Any]], min_count: int = 5, max_levels: int = 25
) -> FeatureSpec:
    """Categorical levels seen at least ``min_count`` times (the ``max_levels`` most common);
    rarer ones share an "other" column."""

    vocab: dict[str, list[str]] = {}
    names: list[str] = []
    labels: list[str] = []
    for name in CATEGORICAL:
        values = columns.get(name)
        levels: list[str] = []
        if values is not None and len(values):
            uniq, counts = np.unique(
                np.array([_level(v) for v in values.tolist()], dtype=object), return_counts=True
            )
            order = np.argsort(-counts, kind="stable")
            levels = [str(uniq[i]) for i in order if counts[i] >= min_count and uniq[i] != MISSING][
                :max_levels
            ]
        vocab[name] = levels
        for lv in [*levels, OTHER, MISSING]:
            names.append(f"{name}={lv}")
            labels.append(
                f"{name.replace('_', ' ')} is {lv}" if lv not in (OTHER, MISSING) else f"{name} {lv}"
            )
    for name in NUMERIC:
        names += [f"log_{name}", f"{name}_missing"]
        labels += [f"{name.replace('_', ' ')} (log)", f"{name.replace('_', ' ')} unknown"]
    for name in FLAGS:
        names.append(name)
        labels.append(name.replace("_", " "))
    for t in ENGAGEMENT_TYPES:
        names += [f"{t}_30d", f"{t}_all"]
        labels += [f"{t.replace('_', ' ')} events, last 30 days", f"{t.replace('_', ' ')} events, all time"]
    names += ["pricing_views_30d", "active_days", "days_since_last_event", "no_events"]
    labels += [
        "pricing page views, last 30 days",
        "days with activity",
        "days since the last event",
        "no events",
    ]
    return FeatureSpec(vocab, names, labels)


def feature_matrix(
    spec: FeatureSpec,
    columns: Mapping[str, npt.NDArray[Any]],
    events: Events,
    snapshot: FloatArray,
) -> FloatArray:
    """One row per lead, the columns of ``spec``: one-hot categories, log numbers with missing
    flags, flags, and engagement aggregates as of each lead's snapshot (counts are log1p)."""

    n = len(snapshot)
    cols = scoring.derive_columns(columns)
    out: list[FloatArray] = []
    for name in CATEGORICAL:
        values = cols.get(name)
        levels = [*spec.vocab.get(name, []), OTHER, MISSING]
        index = {lv: i for i, lv in enumerate(levels)}
        block = np.zeros((n, len(levels)))
        if values is None:
            block[:, -1] = 1.0
        else:
            pos = np.fromiter(
                (index.get(lv, len(levels) - 2) for lv in (_level(v) for v in values.tolist())),
                dtype=np.int64,
                count=n,
            )
            block[np.arange(n), pos] = 1.0
        out.append(block)
    for name in NUMERIC:
        raw = cols.get(name)
        num = (
            np.full(n, np.nan)
            if raw is None
            else np.array([np.nan if v is None else float(v) for v in raw.tolist()], dtype=np.float64)
        )
        missing = np.isnan(num)
        out.append(
            np.stack([np.log1p(np.where(missing, 0.0, np.maximum(num, 0.0))), missing.astype(float)], 1)
        )
    for name in FLAGS:
        raw = cols.get(name)
        flag = np.zeros(n) if raw is None else np.array([1.0 if v is True else 0.0 for v in raw.tolist()])
        out.append(flag[:, None])
    ev = events.before(snapshot)
    recent = ev.epoch >= snapshot[ev.lead] - RECENT_DAYS * DAY if len(ev.lead) else np.zeros(0, np.bool_)
    for t in ENGAGEMENT_TYPES:
        is_t = ev.type == t
        c30 = np.bincount(ev.lead[is_t & recent], minlength=n).astype(np.float64)
        call = np.bincount(ev.lead[is_t], minlength=n).astype(np.float64)
        out.append(np.stack([np.log1p(c30), np.log1p(call)], 1))
    url = ev.props.get("url")
    pricing = np.zeros(len(ev.lead), dtype=np.bool_)
    if url is not None and len(url):
        pricing = (ev.type == ActivityType.PAGE_VIEW.value) & np.array(
            [isinstance(u, str) and u.startswith("/pricing") for u in url.tolist()], dtype=np.bool_
        )
    pv = np.bincount(ev.lead[pricing & recent], minlength=n).astype(np.float64)
    if len(ev.lead):
        days = np.unique(np.stack([ev.lead, np.floor(ev.epoch / DAY).astype(np.int64)], 1), axis=0)
        active = np.bincount(days[:, 0], minlength=n).astype(np.float64)
        last = np.full(n, -np.inf)
        np.maximum.at(last, ev.lead, ev.epoch)
    else:
        active = np.zeros(n)
        last = np.full(n, -np.inf)
    none = np.isinf(last)
    since = np.where(none, 365.0, np.minimum((snapshot - last) / DAY, 365.0))
    out.append(np.stack([np.log1p(pv), np.log1p(active), since, none.astype(float)], 1))
    matrix = np.concatenate(out, axis=1)
    assert matrix.shape[1] == len(spec.names)
    return matrix


def describe_value(spec: FeatureSpec, j: int, x: float) -> Any:
    """The human value of feature ``j`` given its matrix value (counts un-logged)."""

    name = spec.names[j]
    if "=" in name:
        return bool(x)
    if name.startswith("log_") or name.endswith(("_30d", "_all")) or name == "active_days":
        return round(float(np.expm1(x)), 2)
    if name in FLAGS or name.endswith("_missing") or name == "no_events":
        return bool(x)
    return round(float(x), 2)


# ---------------------------------------------------------------------------------------------
# Odoo-style naive-Bayes frequency model
# ---------------------------------------------------------------------------------------------

NB_FIELDS: tuple[str, ...] = (
    "seniority",
    "department",
    "industry",
    "source",
    "country",
    "origin",
    "free_mail",
)


@dataclass(frozen=True)
class FrequencyModel:
    """Odoo's predictive lead scoring: for each field value, how often leads with it were won and
    lost; the probability multiplies the per-value frequencies (naive Bayes) with a small additive
    smoothing, so an unseen value neither wins nor loses."""

    prior: float
    tables: dict[str, dict[str, tuple[float, float]]]  # field -> value -> (P(v|won), P(v|lost))
    smoothing: float = 0.1

    @classmethod
    def fit(
        cls, columns: Mapping[str, npt.NDArray[Any]], y: BoolArray, smoothing: float = 0.1
    ) -> FrequencyModel:
        cols = scoring.derive_columns(columns)
        n_pos, n_neg = float(y.sum()), float((~y).sum())
        tables: dict[str, dict[str, tuple[float, float]]] = {}
        for name in NB_FIELDS:
            raw = cols.get(name)
            if raw is None:
                continue
            values = np.array([_level(v) for v in raw.tolist()], dtype=object)
            uniq = sorted(set(values.tolist()))
            k = len(uniq) + 1
            table = {}
            for v in uniq:
                hit = values == v
                table[v] = (
                    (float((hit & y).sum()) + smoothing) / (n_pos + smoothing * k),
                    (float((hit & ~y).sum()) + smoothing) / (n_neg + smoothing * k),
                )
            tables[name] = table
        prior = n_pos / max(n_pos + n_neg, 1.0)
        return cls(prior, tables, smoothing)

    def predict(self, columns: Mapping[str, npt.NDArray[Any]], n: int) -> FloatArray:
        cols = scoring.derive_columns(columns)
        prior = min(max(self.prior, 1e-9), 1 - 1e-9)
        logit = np.full(n, math.log(prior / (1 - prior)))
        for name, table in self.tables.items():
            raw = cols.get(name)
            if raw is None:
                continue
            contrib = {v: math.log(pw / pl) for v, (pw, pl) in table.items()}
            logit += np.array([contrib.get(_level(v), 0.0) for v in raw.tolist()], dtype=np.float64)
        prob: FloatArray = 1.0 / (1.0 + np.exp(-logit))
        return prob


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


def roc_auc(y: BoolArray, score: FloatArray) -> float:
    """Area under the ROC curve (the Mann-Whitney statistic; ties count one half)."""

    pos, neg = int(y.sum()), int((~y).sum())
    if not pos or not neg:
        return float("nan")
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    start = np.cumsum(counts) - counts
    r = (start + (counts + 1) / 2)[inverse.reshape(-1)]  # average ranks over ties
    return float((r[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def top_fraction_lift(y: BoolArray, score: FloatArray, fraction: float = 0.1) -> float:
    """The positive rate among the top ``fraction`` by score over the overall rate; a tie at the
    boundary counts in proportion (as if ties were broken at random)."""

    n = len(y)
    base = float(y.mean()) if n else 0.0
    if not n or base == 0:
        return float("nan")
    k = max(1, math.ceil(n * fraction))
    cut = np.sort(score)[::-1][k - 1]
    above = score > cut
    tied = score == cut
    take_tied = k - int(above.sum())
    hits = float(y[above].sum()) + (float(y[tied].sum()) * take_tied / int(tied.sum()) if take_tied else 0.0)
    return (hits / k) / base


def brier(y: BoolArray, p: FloatArray) -> float:
    return float(np.mean((p - y.astype(np.float64)) ** 2))


def sequence_of(values: Sequence[float]) -> list[float]:
    return [round(float(v), 6) for v in values]
