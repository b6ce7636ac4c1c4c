"""Opportunity pipelines as pure rules: default stages, probabilities, forecast categories,
rotting, stage moves, buying signals and the statistics the reports need.

Seeds: "not all opportunities pan out, but all customers start as opportunities". A deal moves
through ordered stages to closed won or closed lost; each stage carries a default probability
(weighted pipeline = amount x probability) and a rotting age after which an idle deal is flagged.
Nothing here touches the database or HTTP.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum


class StageKind(StrEnum):
    OPEN = "open"
    WON = "won"
    LOST = "lost"


class ForecastCategory(StrEnum):
    """Salesforce's forecast categories: what a rep would bet on for the period."""

    PIPELINE = "pipeline"
    BEST_CASE = "best_case"
    COMMIT = "commit"
    CLOSED = "closed"
    OMITTED = "omitted"


class Status(StrEnum):
    OPEN = "open"
    WON = "won"
    LOST = "lost"


@dataclass(frozen=True)
class StageSpec:
    key: str
    name: str
    probability: int  # percent, 0..100
    kind: StageKind = StageKind.OPEN
    rotting_days: int | None = None
    forecast_category: ForecastCategory = ForecastCategory.PIPELINE


DEFAULT_STAGES: tuple[StageSpec, ...] = (
    StageSpec("qualification", "Qualification", 10, rotting_days=14),
    StageSpec("needs_analysis", "Needs analysis", 25, rotting_days=21),
    StageSpec("proposal", "Proposal", 50, rotting_days=21, forecast_category=ForecastCategory.BEST_CASE),
    StageSpec("negotiation", "Negotiation", 80, rotting_days=14, forecast_category=ForecastCategory.COMMIT),
    StageSpec("closed_won", "Closed won", 100, StageKind.WON, forecast_category=ForecastCategory.CLOSED),
    StageSpec("closed_lost", "Closed lost", 0, StageKind.LOST, forecast_category=ForecastCategory.OMITTED),
)

DEFAULT_LOSS_REASONS: tuple[tuple[str, str], ...] = (
    ("price", "Price too high"),
    ("competitor", "Chose a competitor"),
    ("no_budget", "No budget"),
    ("no_decision", "No decision / went dark"),
    ("timing", "Bad timing"),
    ("missing_feature", "Missing feature"),
    ("champion_left", "Champion left"),
)
DEFAULT_WIN_REASONS: tuple[tuple[str, str], ...] = (
    ("product_fit", "Product fit"),
    ("price", "Price / value"),
    ("relationship", "Relationship"),
    ("time_to_value", "Fast time to value"),
    ("integration", "Integrations"),
)

# Seeds: a demo or pricing request, a free trial, or a decision timeline shared with sales says
# the prospect is ready for an opportunity.
SIGNAL_KINDS: tuple[str, ...] = ("demo_request", "pricing_request", "trial_start", "decision_timeline")


class PipelineError(Exception):
    """A refused pipeline configuration or stage move; ``field`` names the input at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def validate_stages(stages: Sequence[StageSpec]) -> None:
    """A pipeline needs at least one open stage, exactly one won and one lost stage, unique keys
    and probabilities between 0 and 100."""

    if not stages:
        raise PipelineError("stages", "a pipeline needs stages")
    keys = [s.key for s in stages]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    if dupes:
        raise PipelineError("stages", f"duplicate stage key {dupes[0]!r}")
    for i, s in enumerate(stages):
        if not s.key or not s.key.replace("_", "").replace("-", "").isalnum():
            raise PipelineError(f"stages.{i}.key", "must be letters, digits, '_' or '-'")
        if not 0 <= s.probability <= 100:
            raise PipelineError(f"stages.{i}.probability", "must be between 0 and 100")
        if s.rotting_days is not None and s.rotting_days < 1:
            raise PipelineError(f"stages.{i}.rotting_days", "must be at least 1 day")
    kinds = [s.kind for s in stages]
    if StageKind.OPEN not in kinds:
        raise PipelineError("stages", "a pipeline needs at least one open stage")
    for kind in (StageKind.WON, StageKind.LOST):
        if kinds.count(kind) != 1:
            raise PipelineError("stages", f"a pipeline needs exactly one {kind.value} stage")


@dataclass(frozen=True)
class Move:
    """An accepted stage move of an opportunity."""

    status: Status
    reopened: bool


def decide_move(
    current_kind: StageKind,
    target_kind: StageKind,
    *,
    same_stage: bool,
    reason_key: str | None,
    allowed_reasons: Iterable[str],
    reason_required: bool,
) -> Move:
    """Decide a stage move. Closing lost needs a reason from the configured list; a closed deal
    moves only back to an open stage (reopen); a reason given must be in the list."""

    if same_stage:
        raise PipelineError("stage", "the opportunity is already in this stage")
    if current_kind is not StageKind.OPEN and target_kind is not StageKind.OPEN:
        raise PipelineError(
            "stage", f"the opportunity is closed {current_kind.value}; reopen it to an open stage first"
        )
    allowed = set(allowed_reasons)
    if target_kind is not StageKind.OPEN:
        if reason_key is None and reason_required:
            raise PipelineError(
                "reason_key",
                f"closing {target_kind.value} needs a reason: one of {', '.join(sorted(allowed))}",
            )
        if reason_key is not None and reason_key not in allowed:
            raise PipelineError(
                "reason_key",
                f"unknown {target_kind.value} reason {reason_key!r}; one of {', '.join(sorted(allowed))}",
            )
    return Move(Status(target_kind.value), current_kind is not StageKind.OPEN)


def weighted(amount: float, probability: int) -> float:
    return round(amount * probability / 100.0, 2)


def is_rotting(
    entered_at: datetime, last_touch: datetime | None, rotting_days: int | None, now: datetime
) -> bool:
    """An open deal rots when nothing happened to it (no stage move, no edit) for longer than its
    stage allows."""

    if rotting_days is None:
        return False
    since = max(entered_at, last_touch) if last_touch else entered_at
    return now - since > timedelta(days=rotting_days)


def idle_days(entered_at: datetime, last_touch: datetime | None, now: datetime) -> float:
    since = max(entered_at, last_touch) if last_touch else entered_at
    return round((now - since).total_seconds() / 86400, 1)


def month_key(d: date | datetime | None) -> str | None:
    return None if d is None else f"{d.year:04d}-{d.month:02d}"


# ------------------------------------------------------------------------------------ signals


@dataclass(frozen=True)
class SignalRule:
    """Open an opportunity automatically when a prospect (SQL) shows ``min_signals`` distinct
    buying signals among ``signals``."""

    signals: tuple[str, ...] = SIGNAL_KINDS
    min_signals: int = 1


def ready(found: Iterable[str], rule: SignalRule) -> bool:
    distinct = {s for s in found if s in rule.signals}
    return len(distinct) >= max(1, rule.min_signals)


# ------------------------------------------------------------------------------------ statistics


def percentile_from_histogram(
    hist: Mapping[float, int] | Sequence[tuple[float, int]], q: float
) -> float | None:
    """The ``q``-quantile (0..1, nearest rank) of values given as (value, count) pairs.

    Reports group durations into buckets in SQL (both backends) and take quantiles here, so a
    million durations never travel to Python one by one."""

    pairs = sorted(hist.items() if isinstance(hist, Mapping) else hist)
    total = sum(c for _, c in pairs)
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for value, count in pairs:
        seen += count
        if seen >= rank:
            return float(value)
    return float(pairs[-1][0])


def duration_bucket(seconds: int | None) -> int | None:
    """Histogram bucket (in hours) of a time in stage: whole hours under two days, whole days
    under 90 days, whole weeks beyond (the SQL in leadflow.reports.facts buckets the same way)."""

    if seconds is None:
        return None
    h = max(0, seconds) // 3600
    if h < 48:
        return h
    if h < 2160:
        return (h // 24) * 24
    return (h // 168) * 168


def rate(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(100.0 * part / whole, 1)
