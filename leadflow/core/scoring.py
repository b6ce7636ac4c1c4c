"""Lead scoring math (pure: no database or web imports).

A *scoring model* is a versioned document: fit rules on the lead's and its account's attributes,
engagement rules on event types (with optional property filters, points per occurrence, a cap per
period and a decay half-life), weights, fit grades and thresholds whose actions fire once per
upward crossing, with hysteresis.

Two paths compute the same scores:

* :func:`score_lead` scores one lead from its attributes and events and explains every point
  (the incremental path: an event arrives, one lead is rescored);
* :func:`fit_points_matrix`, :func:`engagement_groups`, :func:`engagement_points_from_groups`
  and :func:`scale_scores` are vectorized with NumPy for the bulk path (a model changed, every
  lead is rescored). The database may do the grouping (SQL aggregates) and hand over the
  per-group counts and decay sums; the arithmetic after that is the same.

Semantics, shared by both paths:

* fit text comparisons are case-insensitive and ignore surrounding blanks; a missing value
  matches no predicate but ``exists: false``;
* an event's decay factor is ``0.5 ** (age_days / half_life_days)`` (1 without a half-life;
  events dated after ``as_of`` count as new);
* a cap of ``P`` points per ``D`` days splits time into fixed ``D``-day periods counted from the
  Unix epoch (UTC), so a period never moves as time passes; when a period's events would earn more
  than ``P`` undecayed points, each of them earns the same share of ``P`` (then decays);
* event property filters compare the property's text exactly (URLs are case-sensitive);
* fit and engagement points map linearly onto ``0..scale`` (``points / max_points * scale``,
  clipped), and the total is their weighted mean.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from leadflow.core.contact import is_free_mail
from leadflow.core.engagement import ActivityType

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
ObjArray = npt.NDArray[np.object_]

DAY = 86_400.0
MAX_EXPLAINED_EVENTS = 50

# ---------------------------------------------------------------------------------------------
# Attributes a fit rule may test
# ---------------------------------------------------------------------------------------------

FieldKind = Literal["text", "number", "bool", "any"]

FIT_FIELDS: dict[str, FieldKind] = {
    "email": "text",
    "email_domain": "text",  # derived from email
    "free_mail": "bool",  # derived: the address is at a webmail provider
    "job_title": "text",
    "seniority": "text",
    "department": "text",
    "company": "text",
    "country": "text",  # the lead's, else its account's
    "source": "text",
    "campaign": "text",
    "origin": "text",
    "consent": "text",
    "unsubscribed": "bool",
    "industry": "text",  # account
    "employee_count": "number",  # account
    "annual_revenue": "number",  # account
    "account_domain": "text",  # account
}
DERIVED_FIELDS = {"email_domain": "email", "free_mail": "email"}
ATTRIBUTE_PREFIX = "attributes."
_ID = r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$"


def field_kind(name: str) -> FieldKind | None:
    if name.startswith(ATTRIBUTE_PREFIX) and len(name) > len(ATTRIBUTE_PREFIX):
        return "any"
    return FIT_FIELDS.get(name)


# ---------------------------------------------------------------------------------------------
# The model document
# ---------------------------------------------------------------------------------------------

Scalar = str | int | float | bool


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FitRule(_Doc):
    """A predicate on one attribute; exactly one of in, not_in, equals, min/max, contains,
    matches, exists."""

    id: Annotated[str, Field(pattern=_ID)]
    label: str = ""
    field: str
    points: float
    in_: Annotated[list[Scalar] | None, Field(alias="in")] = None
    not_in: list[Scalar] | None = None
    equals: Scalar | None = None
    min: float | None = None
    max: float | None = None
    contains: Annotated[str | None, Field(min_length=1)] = None
    matches: Annotated[str | None, Field(min_length=1, max_length=500)] = None
    exists: bool | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @property
    def predicate(self) -> str:
        for name in ("in_", "not_in", "equals", "contains", "matches", "exists"):
            if getattr(self, name) is not None:
                return name.rstrip("_")
        return "range"


class PropertyCondition(_Doc):
    """A filter on one event property; exactly one of equals, prefix, contains, in, exists."""

    equals: Scalar | None = None
    prefix: Annotated[str | None, Field(min_length=1)] = None
    contains: Annotated[str | None, Field(min_length=1)] = None
    in_: Annotated[list[Scalar] | None, Field(alias="in")] = None
    exists: bool | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @property
    def op(self) -> str:
        for name in ("equals", "prefix", "contains", "in_", "exists"):
            if getattr(self, name) is not None:
                return name.rstrip("_")
        return ""


class Cap(_Doc):
    points: Annotated[float, Field(gt=0)]
    days: Annotated[int, Field(ge=1, le=3650)]


class EngagementRule(_Doc):
    id: Annotated[str, Field(pattern=_ID)]
    label: str = ""
    event: str
    where: dict[str, PropertyCondition] = Field(default_factory=dict)
    points: float
    cap: Cap | None = None
    # Per-rule half-life in days; absent: the section's default; null: no decay.
    half_life_days: Annotated[float | None, Field(gt=0)] = Field(default=-1.0)


class Weights(_Doc):
    fit: Annotated[float, Field(ge=0)] = 0.5
    engagement: Annotated[float, Field(ge=0)] = 0.5


class FitSection(_Doc):
    # Raw points that make a full score; absent: the sum of the positive rules' points.
    max_points: Annotated[float | None, Field(gt=0)] = None
    rules: list[FitRule] = Field(default_factory=list)


class EngagementSection(_Doc):
    max_points: Annotated[float, Field(gt=0)] = 100.0
    half_life_days: Annotated[float | None, Field(gt=0)] = 30.0
    rules: list[EngagementRule] = Field(default_factory=list)


class Grades(_Doc):
    """Lower bounds of the fit score (on the model's scale) for the letter grades; below C is D."""

    A: float = 75.0
    B: float = 50.0
    C: float = 25.0


class MoveToMql(_Doc):
    type: Literal["move_to_mql"]


class CreateTask(_Doc):
    type: Literal["create_task"]
    task: Annotated[str, Field(min_length=1, max_length=50)] = "call"
    title: Annotated[str | None, Field(max_length=200)] = None
    due_in_hours: Annotated[int, Field(ge=0, le=24 * 90)] = 24


class EnrollSequence(_Doc):
    type: Literal["enroll_sequence"]
    sequence: Annotated[str, Field(min_length=1, max_length=100)]


class Webhook(_Doc):
    type: Literal["webhook"]
    url: Annotated[str, Field(pattern=r"^https?://\S+$", max_length=2000)]
    # The name of an environment variable holding the HMAC secret (never the secret itself: the
    # model document is readable through the API).
    secret_env: Annotated[str | None, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")] = None


Action = Annotated[MoveToMql | CreateTask | EnrollSequence | Webhook, Field(discriminator="type")]


class Threshold(_Doc):
    id: Annotated[str, Field(pattern=_ID)]
    label: str = ""
    score: Literal["total", "fit", "engagement"] = "total"
    at: float
    # Fires on the way up through ``at``; re-arms only once the score fell below at - hysteresis.
    hysteresis: Annotated[float, Field(ge=0)] = 5.0
    actions: Annotated[list[Action], Field(min_length=1)]


class ScoringModel(_Doc):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: str = ""
    scale: Annotated[float, Field(gt=0, le=1000)] = 100.0
    weights: Weights = Field(default_factory=Weights)
    fit: FitSection = Field(default_factory=FitSection)
    engagement: EngagementSection = Field(default_factory=EngagementSection)
    grades: Grades = Field(default_factory=Grades)
    thresholds: list[Threshold] = Field(default_factory=list)

    # -- derived -------------------------------------------------------------------------------

    @property
    def fit_max_points(self) -> float:
        if self.fit.max_points is not None:
            return self.fit.max_points
        positive = sum(r.points for r in self.fit.rules if r.points > 0)
        return positive if positive > 0 else 1.0

    def half_life(self, rule: EngagementRule) -> float | None:
        return self.engagement.half_life_days if rule.half_life_days == -1.0 else rule.half_life_days

    @property
    def rule_labels(self) -> dict[str, str]:
        out = {r.id: r.label or r.id for r in self.fit.rules}
        out.update({r.id: r.label or r.id for r in self.engagement.rules})
        return out

    def to_document(self) -> dict[str, Any]:
        """The JSON/YAML form (aliases, no unset noise)."""

        doc = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        for rule in doc["engagement"]["rules"]:
            if rule.get("half_life_days") == -1.0:
                del rule["half_life_days"]
            if not rule.get("where"):
                rule.pop("where", None)
        for rule in self.engagement.rules:
            if rule.half_life_days is None:  # explicit "no decay" must survive a round trip
                next(r for r in doc["engagement"]["rules"] if r["id"] == rule.id)["half_life_days"] = None
        if self.engagement.half_life_days is None:
            doc["engagement"]["half_life_days"] = None
        return doc


# ---------------------------------------------------------------------------------------------
# Validation: errors name the rule and the field
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelError:
    loc: tuple[str | int, ...]
    msg: str
    rule: str | None = None  # the rule or threshold id, when the error is inside one
    field: str | None = None

    def __str__(self) -> str:
        where = f"rule {self.rule}" if self.rule else ".".join(str(p) for p in self.loc) or "model"
        return f"{where}: {self.field + ': ' if self.field else ''}{self.msg}"

    def to_dict(self) -> dict[str, Any]:
        return {"loc": list(self.loc), "msg": self.msg, "rule": self.rule, "field": self.field}


class InvalidScoringModel(ValueError):
    def __init__(self, errors: list[ModelError]) -> None:
        super().__init__("; ".join(str(e) for e in errors[:5]))
        self.errors = errors


def _rule_id_at(data: Any, section: str, index: int) -> str | None:
    try:
        items = data[section]["rules"] if section in ("fit", "engagement") else data[section]
        rid = items[index].get("id")
    except (KeyError, IndexError, TypeError, AttributeError):
        return None
    return str(rid) if rid is not None else None


def _named(data: Any, loc: Sequence[str | int], msg: str) -> ModelError:
    """Replace a list index in ``loc`` by the rule's id, so errors say which rule."""

    loc = list(loc)
    rule: str | None = None
    start = 0
    if len(loc) >= 3 and loc[0] in ("fit", "engagement") and loc[1] == "rules" and isinstance(loc[2], int):
        rule = _rule_id_at(data, str(loc[0]), loc[2])
        start = 3
    elif len(loc) >= 2 and loc[0] == "thresholds" and isinstance(loc[1], int):
        rule = _rule_id_at(data, "thresholds", loc[1])
        start = 2
    if rule is not None:
        loc[start - 1] = rule
    rest = [p for p in loc[start:] if isinstance(p, str) and p not in _UNION_TAGS]
    fld = rest[-1] if rest else (str(loc[-1]) if loc and not start else None)
    if fld == "in_":
        fld = "in"
    return ModelError(tuple("in" if p == "in_" else p for p in loc), msg, rule, fld)


_EVENT_TYPES = tuple(t.value for t in ActivityType)
_UNION_TAGS = {"move_to_mql", "create_task", "enroll_sequence", "webhook"}


def _semantic_errors(model: ScoringModel, data: Any) -> list[ModelError]:
    errs: list[ModelError] = []

    def err(loc: Sequence[str | int], msg: str) -> None:
        errs.append(_named(data, loc, msg))

    seen: dict[str, str] = {}
    sections: list[tuple[str, Sequence[FitRule | EngagementRule]]] = [
        ("fit", model.fit.rules),
        ("engagement", model.engagement.rules),
    ]
    for section, rules in sections:
        for i, rule in enumerate(rules):
            if rule.id in seen:
                err((section, "rules", i, "id"), f"duplicate rule id (also used in {seen[rule.id]} rules)")
            seen.setdefault(rule.id, section)
            if rule.points == 0 or not math.isfinite(rule.points):
                err((section, "rules", i, "points"), "must be a non-zero number (negative points allowed)")
    for i, fr in enumerate(model.fit.rules):
        errs.extend(_fit_rule_errors(fr, i, data))
    for i, er in enumerate(model.engagement.rules):
        if er.event not in _EVENT_TYPES:
            err(
                ("engagement", "rules", i, "event"),
                f"unknown event type {er.event!r}; expected one of {', '.join(_EVENT_TYPES)}",
            )
        for key, cond in er.where.items():
            given = [
                n for n in ("equals", "prefix", "contains", "in_", "exists") if getattr(cond, n) is not None
            ]
            if len(given) != 1:
                err(
                    ("engagement", "rules", i, "where", key),
                    "give exactly one of equals, prefix, contains, in, exists",
                )
            elif cond.in_ is not None and not cond.in_:
                err(("engagement", "rules", i, "where", key, "in"), "needs at least one value")
            if not key or len(key) > 100:
                err(("engagement", "rules", i, "where"), "property names are 1 to 100 characters")
    g = model.grades
    if not (model.scale >= g.A > g.B > g.C >= 0):
        err(("grades",), f"need scale >= A > B > C >= 0 (got A={g.A}, B={g.B}, C={g.C})")
    if model.weights.fit + model.weights.engagement <= 0:
        err(("weights",), "fit and engagement weights cannot both be 0")
    tids: set[str] = set()
    for i, t in enumerate(model.thresholds):
        if t.id in tids:
            err(("thresholds", i, "id"), "duplicate threshold id")
        tids.add(t.id)
        if not 0 < t.at <= model.scale:
            err(("thresholds", i, "at"), f"must be above 0 and at most the scale ({model.scale:g})")
        elif t.hysteresis >= t.at:
            err(("thresholds", i, "hysteresis"), f"must be below the threshold ({t.at:g})")
        kinds = [a.type for a in t.actions]
        if kinds.count("move_to_mql") > 1:
            err(("thresholds", i, "actions"), "move_to_mql is given twice")
    return errs


def _fit_rule_errors(r: FitRule, i: int, data: Any) -> list[ModelError]:
    errs: list[ModelError] = []

    def err(fld: str, msg: str) -> None:
        errs.append(_named(data, ("fit", "rules", i, fld), msg))

    kind = field_kind(r.field)
    if kind is None:
        err(
            "field",
            f"unknown attribute {r.field!r}; expected one of {', '.join(FIT_FIELDS)} or attributes.<name>",
        )
        return errs
    given = [
        n for n in ("in_", "not_in", "equals", "contains", "matches", "exists") if getattr(r, n) is not None
    ]
    if r.min is not None or r.max is not None:
        given.append("min/max")
    if len(given) != 1:
        err(
            "field" if not given else given[1].rstrip("_"),
            "give exactly one predicate: in, not_in, equals, min/max, contains, matches or exists"
            + (f" (got {', '.join(g.rstrip('_') for g in given)})" if given else ""),
        )
        return errs
    pred = given[0].rstrip("_")
    if pred == "min/max":
        if kind in ("text", "bool"):
            err(
                "min" if r.min is not None else "max",
                f"a range needs a numeric attribute; {r.field} is {kind}",
            )
        if r.min is not None and r.max is not None and r.min > r.max:
            err("max", f"must not be below min ({r.min:g})")
    elif pred in ("contains", "matches") and kind in ("number", "bool"):
        err(pred, f"needs a text attribute; {r.field} is {kind}")
    elif pred in ("in", "not_in"):
        values = r.in_ if pred == "in" else r.not_in
        if not values:
            err(pred, "needs at least one value")
        elif kind == "number" and any(isinstance(v, bool) or not isinstance(v, int | float) for v in values):
            err(pred, f"{r.field} is a number: list numbers")
        elif kind == "bool":
            err(pred, f"{r.field} is true or false: use equals")
    elif pred == "equals":
        if kind == "bool" and not isinstance(r.equals, bool):
            err("equals", f"{r.field} is true or false")
        elif kind == "number" and (isinstance(r.equals, bool) or not isinstance(r.equals, int | float)):
            err("equals", f"{r.field} is a number")
    if pred == "matches" and r.matches is not None:
        try:
            re.compile(r.matches)
        except re.error as exc:
            err("matches", f"not a valid regular expression: {exc}")
    return errs


def parse_model(data: Any) -> ScoringModel:
    """Validate a model document; raises :class:`InvalidScoringModel` listing every problem."""

    if not isinstance(data, Mapping):
        raise InvalidScoringModel([ModelError((), "the model document must be an object")])
    try:
        model = ScoringModel.model_validate(data)
    except ValidationError as exc:
        raise InvalidScoringModel(
            [_named(data, tuple(e["loc"]), str(e["msg"])) for e in exc.errors(include_url=False)]
        ) from None
    errors = _semantic_errors(model, data)
    if errors:
        raise InvalidScoringModel(errors)
    return model


# ---------------------------------------------------------------------------------------------
# Predicates (the single definition both paths use)
# ---------------------------------------------------------------------------------------------


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v).strip().casefold()


def _number(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        f = float(v)
    else:
        try:
            f = float(str(v).strip())
        except ValueError:
            return None
    return f if math.isfinite(f) else None


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


def _listed(rule: FitRule) -> list[Scalar]:
    if rule.in_ is not None:
        return rule.in_
    if rule.not_in is not None:
        return rule.not_in
    return [] if rule.equals is None else [rule.equals]


def fit_predicate(rule: FitRule) -> Callable[[Any], bool]:
    """The test a fit rule applies to one attribute value (None = missing)."""

    kind = field_kind(rule.field)
    pred = rule.predicate
    if pred == "exists":
        want = bool(rule.exists)
        return lambda v: (v is not None and v != "") == want
    if pred == "range":
        lo = -math.inf if rule.min is None else rule.min
        hi = math.inf if rule.max is None else rule.max

        def in_range(v: Any) -> bool:
            n = _number(v)
            return n is not None and lo <= n <= hi

        return in_range
    if kind == "bool":
        want_b = bool(rule.equals)
        return lambda v: isinstance(v, bool) and v == want_b
    if kind == "number":
        nums = {float(x) for x in _listed(rule)}
        negate = pred == "not_in"

        def num_member(v: Any) -> bool:
            n = _number(v)
            return n is not None and ((n in nums) != negate)

        return num_member
    if pred in ("in", "not_in", "equals"):
        texts = {_text(x) for x in _listed(rule)}
        negate = pred == "not_in"
        return lambda v: v is not None and v != "" and ((_text(v) in texts) != negate)
    if pred == "contains":
        needle = _text(rule.contains)
        return lambda v: v is not None and needle in _text(v)
    rx = _regex(str(rule.matches))
    return lambda v: v is not None and rx.search(str(v)) is not None


def property_predicate(cond: PropertyCondition) -> Callable[[Any], bool]:
    """The test a property filter applies to one event property value (None = absent)."""

    op = cond.op
    if op == "exists":
        want = bool(cond.exists)
        return lambda v: (v is not None) == want
    if op == "equals":
        target = property_text(cond.equals)
        return lambda v: v is not None and property_text(v) == target
    if op == "prefix":
        p = str(cond.prefix)
        return lambda v: v is not None and property_text(v).startswith(p)
    if op == "contains":
        c = str(cond.contains)
        return lambda v: v is not None and c in property_text(v)
    options = {property_text(x) for x in cond.in_ or []}
    return lambda v: v is not None and property_text(v) in options


def property_text(v: Any) -> str:
    """The text an event property filter compares: JSON's spelling of true and false, Python's of
    numbers (5, 5.0); the SQL of the bulk path produces the same text."""

    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def derive_attributes(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Add the derived attributes (email domain, free-mail flag) to a lead's attributes."""

    out = dict(attrs)
    email = out.get("email")
    domain = str(email).rsplit("@", 1)[1].strip().lower() if email and "@" in str(email) else None
    out.setdefault("email_domain", domain)
    out.setdefault("free_mail", None if domain is None else is_free_mail(domain))
    return out


def attribute_value(attrs: Mapping[str, Any], name: str) -> Any:
    if name.startswith(ATTRIBUTE_PREFIX):
        custom = attrs.get("attributes")
        return custom.get(name[len(ATTRIBUTE_PREFIX) :]) if isinstance(custom, Mapping) else None
    return attrs.get(name)


# ---------------------------------------------------------------------------------------------
# One lead: the incremental path, with explanations
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventRecord:
    id: int | None
    type: str
    occurred_at: datetime
    properties: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class EventContribution:
    event_id: int | None
    type: str
    occurred_at: datetime
    points: float


@dataclass(frozen=True)
class Reason:
    """One rule that fired for the lead, with its raw points and what made it fire."""

    rule_id: str
    label: str
    kind: Literal["fit", "engagement"]
    points: float
    field: str | None = None
    value: Any = None
    event_count: int = 0
    capped: bool = False
    events: tuple[EventContribution, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rule_id": self.rule_id,
            "label": self.label,
            "kind": self.kind,
            "points": round(self.points, 4),
        }
        if self.kind == "fit":
            out["field"] = self.field
            out["value"] = self.value
        else:
            out["event_count"] = self.event_count
            out["capped"] = self.capped
            out["events"] = [
                {
                    "id": e.event_id,
                    "type": e.type,
                    "occurred_at": e.occurred_at.isoformat(),
                    "points": round(e.points, 4),
                }
                for e in self.events
            ]
        return out


@dataclass(frozen=True)
class LeadScore:
    fit: float
    engagement: float
    total: float
    grade: str
    fit_points: float
    engagement_points: float
    reasons: tuple[Reason, ...] = ()

    def value(self, which: str) -> float:
        return float(getattr(self, which))

    def explanation(self) -> dict[str, Any]:
        return {
            "fit": round(self.fit, 2),
            "engagement": round(self.engagement, 2),
            "total": round(self.total, 2),
            "grade": self.grade,
            "fit_points": round(self.fit_points, 4),
            "engagement_points": round(self.engagement_points, 4),
            "reasons": [r.to_dict() for r in self.reasons],
        }


def _epoch(t: datetime) -> float:
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.timestamp()


def decay_factor(age_seconds: float, half_life_days: float | None) -> float:
    if half_life_days is None:
        return 1.0
    return float(0.5 ** (max(age_seconds, 0.0) / DAY / half_life_days))


def period_of(epoch_seconds: float, days: int) -> int:
    return math.floor(epoch_seconds / (days * DAY))


def cap_share(count: float, points: float, cap: Cap | None) -> float:
    """The fraction of its points each of ``count`` events in one period keeps under the cap."""

    if cap is None or count <= 0:
        return 1.0
    return min(1.0, cap.points / (count * abs(points)))


def scale_points(points: float, max_points: float, scale: float) -> float:
    return min(max(points / max_points * scale, 0.0), scale)


def total_of(model: ScoringModel, fit: float, engagement: float) -> float:
    w = model.weights
    return (w.fit * fit + w.engagement * engagement) / (w.fit + w.engagement)


def grade_of(model: ScoringModel, fit: float) -> str:
    g = model.grades
    return "A" if fit >= g.A else "B" if fit >= g.B else "C" if fit >= g.C else "D"


def event_matches(rule: EngagementRule, event: EventRecord) -> bool:
    if event.type != rule.event:
        return False
    props = event.properties or {}
    return all(property_predicate(c)(props.get(k)) for k, c in rule.where.items())


def score_lead(
    model: ScoringModel,
    attrs: Mapping[str, Any],
    events: Iterable[EventRecord],
    as_of: datetime,
) -> LeadScore:
    """Score one lead and explain every point: the fit rules that matched (attribute and value)
    and the engagement rules with the events behind them."""

    facts = derive_attributes(attrs)
    reasons: list[Reason] = []
    fit_points = 0.0
    for fr in model.fit.rules:
        value = attribute_value(facts, fr.field)
        if fit_predicate(fr)(value):
            fit_points += fr.points
            reasons.append(Reason(fr.id, fr.label or fr.id, "fit", fr.points, field=fr.field, value=value))

    now = _epoch(as_of)
    evs = list(events)
    eng_points = 0.0
    for er in model.engagement.rules:
        matched = [e for e in evs if event_matches(er, e)]
        if not matched:
            continue
        hl = model.half_life(er)
        periods: dict[int, list[EventRecord]] = {}
        for e in matched:
            key = period_of(_epoch(e.occurred_at), er.cap.days) if er.cap else 0
            periods.setdefault(key, []).append(e)
        contributions: list[EventContribution] = []
        rule_points = 0.0
        capped = False
        for members in periods.values():
            share = cap_share(len(members), er.points, er.cap)
            capped = capped or share < 1.0
            decay_sum = 0.0
            for e in members:
                d = decay_factor(now - _epoch(e.occurred_at), hl)
                decay_sum += d
                contributions.append(EventContribution(e.id, e.type, e.occurred_at, er.points * share * d))
            rule_points += er.points * share * decay_sum
        eng_points += rule_points
        contributions.sort(key=lambda c: (c.occurred_at, c.event_id or 0), reverse=True)
        reasons.append(
            Reason(
                er.id,
                er.label or er.id,
                "engagement",
                rule_points,
                event_count=len(matched),
                capped=capped,
                events=tuple(contributions[:MAX_EXPLAINED_EVENTS]),
            )
        )
    fit = scale_points(fit_points, model.fit_max_points, model.scale)
    eng = scale_points(eng_points, model.engagement.max_points, model.scale)
    return LeadScore(
        fit=fit,
        engagement=eng,
        total=total_of(model, fit, eng),
        grade=grade_of(model, fit),
        fit_points=fit_points,
        engagement_points=eng_points,
        reasons=tuple(reasons),
    )


# ---------------------------------------------------------------------------------------------
# Thresholds: fire once per upward crossing, re-arm below at - hysteresis
# ---------------------------------------------------------------------------------------------


def evaluate_thresholds(
    model: ScoringModel, score: LeadScore, armed: Mapping[str, bool] | None
) -> tuple[list[Threshold], dict[str, bool]]:
    """The thresholds that fire now, and the new armed state (a threshold never seen is armed)."""

    state = dict(armed or {})
    fired: list[Threshold] = []
    for t in model.thresholds:
        value = score.value(t.score)
        is_armed = state.get(t.id, True)
        if is_armed and value >= t.at:
            fired.append(t)
            state[t.id] = False
        elif not is_armed and value < t.at - t.hysteresis:
            state[t.id] = True
        else:
            state[t.id] = is_armed
    return fired, {t.id: state[t.id] for t in model.thresholds}


def thresholds_step(
    model: ScoringModel,
    scores: Mapping[str, FloatArray],
    armed: BoolArray,
) -> tuple[BoolArray, BoolArray]:
    """Vectorized :func:`evaluate_thresholds`: ``armed`` is (leads x thresholds); returns the fired
    mask and the new armed state, same shape."""

    fired = np.zeros_like(armed, dtype=np.bool_)
    new = armed.copy()
    for j, t in enumerate(model.thresholds):
        value = scores[t.score]
        up = armed[:, j] & (value >= t.at)
        rearm = ~armed[:, j] & (value < t.at - t.hysteresis)
        fired[:, j] = up
        new[:, j] = (armed[:, j] & ~up) | rearm
    return fired, new


# ---------------------------------------------------------------------------------------------
# Many leads: the vectorized bulk path
# ---------------------------------------------------------------------------------------------


def fit_fields_needed(model: ScoringModel) -> list[str]:
    """The base attribute columns the fit rules read (derived ones are computed from email)."""

    out: list[str] = []
    for r in model.fit.rules:
        name = DERIVED_FIELDS.get(r.field, r.field)
        if name not in out:
            out.append(name)
    return out


_STR_OR_NONE = frozenset({str, type(None)})
_BOOL_OR_NONE = frozenset({bool, type(None)})  # flags: True, False and None never collide as keys


def _factorize(values: ObjArray) -> tuple[list[Any], IntArray]:
    """Distinct values and, for each element, the index of its value (hash-based, O(n))."""

    vals = values.tolist()
    kinds = set(map(type, vals))
    if kinds <= _STR_OR_NONE or kinds <= _BOOL_OR_NONE:  # the common case: text columns, C-speed loops
        uniques = list(dict.fromkeys(vals))
        index = {v: i for i, v in enumerate(uniques)}
        codes = np.fromiter(map(index.__getitem__, vals), dtype=np.int64, count=len(vals))
        return uniques, codes
    # Mixed types: 1, 1.0 and True are equal as dict keys but not as attribute values.
    keyed: dict[Any, int] = {}
    codes = np.empty(len(vals), dtype=np.int64)
    uniques = []
    for i, v in enumerate(vals):
        key = (type(v), v) if isinstance(v, str | int | float | bool | type(None)) else (type(v), repr(v))
        code = keyed.get(key)
        if code is None:
            code = keyed[key] = len(uniques)
            uniques.append(v)
        codes[i] = code
    return uniques, codes


def _apply_on_uniques(
    values: ObjArray, test: Callable[[Any], bool], factorized: tuple[list[Any], IntArray] | None = None
) -> BoolArray:
    uniques, codes = factorized or _factorize(values)
    table = np.fromiter((test(u) for u in uniques), dtype=np.bool_, count=len(uniques))
    result: BoolArray = table[codes] if len(uniques) else np.zeros(len(values), dtype=np.bool_)
    return result


def _domain(email: Any) -> str | None:
    text = str(email) if email else ""
    return text.rpartition("@")[2].strip().lower() if "@" in text else None


def derive_columns(columns: Mapping[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
    """Add email_domain and free_mail columns (as :func:`derive_attributes` does for one lead)."""

    out = dict(columns)
    if "email" in out and ("email_domain" not in out or "free_mail" not in out):
        # Addresses are mostly distinct: one pass, the common case inline (as _domain computes it).
        emails = np.asarray(out["email"], dtype=object).tolist()
        domains = np.empty(len(emails), dtype=object)
        domains[:] = [
            e.rpartition("@")[2].strip().lower() if type(e) is str and "@" in e else _domain(e)
            for e in emails
        ]
        out.setdefault("email_domain", domains)
    if "email_domain" in out and "free_mail" not in out:
        dom_uniques, dom_codes = _factorize(np.asarray(out["email_domain"], dtype=object))
        free = np.empty(len(dom_uniques), dtype=object)
        free[:] = [None if d is None else is_free_mail(d) for d in dom_uniques]
        out["free_mail"] = free[dom_codes] if len(dom_uniques) else np.empty(0, dtype=object)
    return out


def fit_points_matrix(model: ScoringModel, columns: Mapping[str, npt.NDArray[Any]], n: int) -> FloatArray:
    """Points per (lead, fit rule). ``columns`` maps attribute names to arrays of length ``n``:
    object arrays (None = missing) for text, bool and custom attributes, float arrays (NaN =
    missing) or object arrays for numbers. A missing column counts as all-missing."""

    cols = derive_columns(columns)
    out = np.zeros((n, len(model.fit.rules)), dtype=np.float64)
    factorized: dict[str, tuple[list[Any], IntArray]] = {}
    for j, rule in enumerate(model.fit.rules):
        test = fit_predicate(rule)
        values = cols.get(rule.field)
        if values is None:
            hit = np.full(n, test(None), dtype=np.bool_)
        elif values.dtype.kind == "f":
            hit = _numeric_hits(rule, values.astype(np.float64, copy=False), test)
        else:
            obj = np.asarray(values, dtype=object)
            if rule.field not in factorized:
                factorized[rule.field] = _factorize(obj)
            hit = _apply_on_uniques(obj, test, factorized[rule.field])
        out[:, j] = np.where(hit, rule.points, 0.0)
    return out


def _numeric_hits(rule: FitRule, values: FloatArray, test: Callable[[Any], bool]) -> BoolArray:
    present = ~np.isnan(values)
    pred = rule.predicate
    if pred == "range":
        lo = -np.inf if rule.min is None else rule.min
        hi = np.inf if rule.max is None else rule.max
        result: BoolArray = present & (values >= lo) & (values <= hi)
        return result
    if pred == "exists":
        return present if rule.exists else ~present
    # Membership and text tests on numbers: apply the scalar test to each distinct value.
    obj = values.astype(object)
    obj[~present] = None
    return _apply_on_uniques(obj, test)


@dataclass(frozen=True)
class EngagementGroups:
    """Matching events grouped by (lead, rule, cap period): the count and the sum of decay
    factors per group. The bulk path may get these from SQL aggregates."""

    lead: IntArray
    rule: IntArray
    count: FloatArray
    decay_sum: FloatArray


def engagement_rule_mask(
    rule: EngagementRule,
    types: ObjArray,
    props: Mapping[str, ObjArray],
) -> BoolArray:
    mask: BoolArray = types == rule.event
    for key, cond in rule.where.items():
        values = props.get(key)
        test = property_predicate(cond)
        if values is None:
            if not test(None):
                mask = np.zeros_like(mask)
            continue
        sub = mask.nonzero()[0]
        if len(sub):
            ok = _apply_on_uniques(values[sub], test)
            mask[sub[~ok]] = False
    return mask


def engagement_groups(
    model: ScoringModel,
    lead: IntArray,
    types: ObjArray,
    epoch_seconds: FloatArray,
    props: Mapping[str, ObjArray],
    as_of: datetime,
) -> EngagementGroups:
    """Group events (one row each: lead index, type, time, properties) by lead, rule and period."""

    now = _epoch(as_of)
    parts: list[tuple[IntArray, IntArray, FloatArray, FloatArray]] = []
    for j, rule in enumerate(model.engagement.rules):
        m = engagement_rule_mask(rule, types, props)
        if not m.any():
            continue
        li, t = lead[m], epoch_seconds[m]
        hl = model.half_life(rule)
        decay = np.ones(len(t)) if hl is None else np.power(0.5, np.maximum(now - t, 0.0) / DAY / hl)
        period = (
            np.floor(t / (rule.cap.days * DAY)).astype(np.int64) if rule.cap else np.zeros(len(t), np.int64)
        )
        keys = np.stack([li, period], axis=1)
        uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        count = np.bincount(inverse, minlength=len(uniq)).astype(np.float64)
        dsum = np.asarray(np.bincount(inverse, weights=decay, minlength=len(uniq)), dtype=np.float64)
        parts.append((uniq[:, 0].astype(np.int64), np.full(len(uniq), j, np.int64), count, dsum))
    if not parts:
        empty_i = np.zeros(0, np.int64)
        return EngagementGroups(empty_i, empty_i.copy(), np.zeros(0), np.zeros(0))
    return EngagementGroups(
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
        np.concatenate([p[3] for p in parts]),
    )


def engagement_points_from_groups(model: ScoringModel, groups: EngagementGroups, n: int) -> FloatArray:
    """Points per (lead, engagement rule) from grouped counts and decay sums (caps applied)."""

    rules = model.engagement.rules
    out = np.zeros((n, len(rules)), dtype=np.float64)
    if not len(groups.lead):
        return out
    points = np.array([r.points for r in rules], dtype=np.float64)[groups.rule]
    cap_pts = np.array([r.cap.points if r.cap else np.inf for r in rules], dtype=np.float64)[groups.rule]
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.minimum(1.0, cap_pts / (groups.count * np.abs(points)))
    share = np.where(groups.count > 0, share, 1.0)
    np.add.at(out, (groups.lead, groups.rule), points * share * groups.decay_sum)
    return out


@dataclass(frozen=True)
class ScoreArrays:
    fit: FloatArray
    engagement: FloatArray
    total: FloatArray
    grade: ObjArray
    fit_points: FloatArray
    engagement_points: FloatArray

    def as_mapping(self) -> dict[str, FloatArray]:
        return {"fit": self.fit, "engagement": self.engagement, "total": self.total}


def scale_scores(
    model: ScoringModel,
    fit_matrix: FloatArray,
    engagement_matrix: FloatArray,
    fit_scaled: FloatArray | None = None,
) -> ScoreArrays:
    """Vectorized :func:`scale_points`, :func:`total_of` and :func:`grade_of`. ``fit_scaled``:
    where not NaN, the lead's fit score as already computed under a model of the same
    :func:`fit_key` (its row of ``fit_matrix`` is then not used)."""

    fp = fit_matrix.sum(axis=1) if fit_matrix.shape[1] else np.zeros(fit_matrix.shape[0])
    ep = engagement_matrix.sum(axis=1) if engagement_matrix.shape[1] else np.zeros(engagement_matrix.shape[0])
    fit = np.clip(fp / model.fit_max_points * model.scale, 0.0, model.scale)
    if fit_scaled is not None:
        carried = ~np.isnan(fit_scaled)
        fit = np.where(carried, fit_scaled, fit)
        fp = np.where(carried, fit_scaled / model.scale * model.fit_max_points, fp)
    eng = np.clip(ep / model.engagement.max_points * model.scale, 0.0, model.scale)
    w = model.weights
    total = (w.fit * fit + w.engagement * eng) / (w.fit + w.engagement)
    g = model.grades
    grade = np.select([fit >= g.A, fit >= g.B, fit >= g.C], ["A", "B", "C"], "D").astype(object)
    return ScoreArrays(fit, eng, total, grade, fp, ep)


# ---------------------------------------------------------------------------------------------
# Rolled-forward engagement: per-lead state that makes rescoring independent of the event count
# ---------------------------------------------------------------------------------------------
#
# With exponential decay, sum(2 ** (-(now - t) / h)) = 2 ** (-(now - ref) / h) * sum(2 ** ((t - ref) / h))
# for any reference time ``ref``: a per-(lead, rule) sum relative to ``ref`` turns decay into one
# multiply at scoring time. Caps apply per fixed period, so each (lead, rule) keeps the periods
# before its latest one folded into ``closed`` (each already multiplied by its cap share) and the
# latest period open (its count can still grow): STATE_FIELDS values per rule.
#
# An event for a period before the open one (a late event) cannot be folded: the lead's state is
# rebuilt from its events. Events dated after the scoring time are not decayed (they count as
# new), which the state cannot express: such leads are scored from their events.

STATE_FIELDS = 4  # closed, open period, open count, open sum (sums relative to the lead's ref)
CLOSED, OPEN_PERIOD, OPEN_COUNT, OPEN_SUM = range(STATE_FIELDS)
NO_PERIOD = -math.inf


# Part of every fit key: change it when the fit arithmetic or a derived field (email_domain,
# free_mail) changes, so that no fit score computed by the old code is carried forward.
FIT_LOGIC = 1


def fit_key(model: ScoringModel) -> str:
    """Identifies what a lead's fit score depends on besides its attributes: the fit rules, the
    points they are scaled against and the scale. Equal keys: a fit score computed under one
    model is the fit score under the other (for unchanged attributes)."""

    sig = [FIT_LOGIC, model.fit.model_dump(mode="json"), model.fit_max_points, model.scale]
    return hashlib.sha256(json.dumps(sig, sort_keys=True).encode()).hexdigest()[:24]


def engagement_key(model: ScoringModel) -> str:
    """Identifies what the engagement state depends on: each rule's event, filters, cap,
    half-life, and points where a cap makes the share depend on them (rule order matters: the
    state is laid out by rule index). Equal keys: the stored state is reusable."""

    sig = [
        [
            r.event,
            {
                k: c.model_dump(mode="json", by_alias=True, exclude_none=True)
                for k, c in sorted(r.where.items())
            },
            r.cap.model_dump(mode="json") if r.cap else None,
            model.half_life(r),
            r.points if r.cap else None,
        ]
        for r in model.engagement.rules
    ]
    return hashlib.sha256(json.dumps(sig, sort_keys=True).encode()).hexdigest()[:24]


def empty_state(n: int, n_rules: int) -> FloatArray:
    out = np.zeros((n, n_rules, STATE_FIELDS), dtype=np.float64)
    out[:, :, OPEN_PERIOD] = NO_PERIOD
    return out


def _half_lives(model: ScoringModel) -> FloatArray:
    """Per rule half-life in seconds; inf for no decay (2 ** (x / inf) = 1)."""

    return np.array(
        [math.inf if (hl := model.half_life(r)) is None else hl * DAY for r in model.engagement.rules],
        dtype=np.float64,
    )


def _shares(model: ScoringModel, rule: IntArray, count: FloatArray) -> FloatArray:
    rules = model.engagement.rules
    points = np.abs(np.array([r.points for r in rules], dtype=np.float64))[rule]
    cap = np.array([r.cap.points if r.cap else np.inf for r in rules], dtype=np.float64)[rule]
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.minimum(1.0, cap / (count * points))
    return np.where(count > 0, share, 1.0)


def state_from_groups(
    model: ScoringModel,
    lead: IntArray,
    rule: IntArray,
    period: FloatArray,
    count: FloatArray,
    rel_sum: FloatArray,
    n: int,
) -> FloatArray:
    """Build the state of ``n`` leads from matching events grouped by (lead index, rule, period):
    the count and the sum of ``2 ** ((t - ref) / h)`` per group (the bulk path gets these from one
    SQL pass over the events)."""

    out = empty_state(n, len(model.engagement.rules))
    if not len(lead):
        return out
    order = np.lexsort((period, rule, lead))
    lead, rule, period, count, rel_sum = lead[order], rule[order], period[order], count[order], rel_sum[order]
    last = np.ones(len(lead), dtype=np.bool_)  # the latest period of each (lead, rule): open
    last[:-1] = (lead[1:] != lead[:-1]) | (rule[1:] != rule[:-1])
    closed = ~last
    np.add.at(
        out[:, :, CLOSED],
        (lead[closed], rule[closed]),
        _shares(model, rule[closed], count[closed]) * rel_sum[closed],
    )
    out[lead[last], rule[last], OPEN_PERIOD] = period[last]
    out[lead[last], rule[last], OPEN_COUNT] = count[last]
    out[lead[last], rule[last], OPEN_SUM] = rel_sum[last]
    return out


def rule_matcher(model: ScoringModel) -> Callable[[EventRecord], list[int]]:
    """The indexes of the engagement rules an event matches (:func:`event_matches`, with the
    rules indexed by event type and their predicates built once)."""

    by_type: dict[str, list[tuple[int, list[tuple[str, Callable[[Any], bool]]]]]] = {}
    for j, r in enumerate(model.engagement.rules):
        tests = [(k, property_predicate(c)) for k, c in r.where.items()]
        by_type.setdefault(r.event, []).append((j, tests))

    def match(event: EventRecord) -> list[int]:
        candidates = by_type.get(event.type)
        if not candidates:
            return []
        props = event.properties or {}
        return [j for j, tests in candidates if all(test(props.get(k)) for k, test in tests)]

    return match


def event_rules(model: ScoringModel, event: EventRecord) -> list[int]:
    return [j for j, r in enumerate(model.engagement.rules) if event_matches(r, event)]


def fold_events(
    model: ScoringModel,
    state: FloatArray,
    ref: float,
    events: Iterable[EventRecord],
    matcher: Callable[[EventRecord], list[int]] | None = None,
    half_lives: Sequence[float] | None = None,
) -> tuple[FloatArray, float] | None:
    """Roll one lead's state (rules x STATE_FIELDS, sums relative to ``ref``) forward with new
    events; returns the new state and reference time, or None when an event falls in a period
    before its rule's open one (the state must then be rebuilt from all the lead's events, for
    example by folding them into :func:`empty_state`). ``matcher`` and ``half_lives`` (seconds,
    inf for none) may be computed once for many leads."""

    match = matcher or rule_matcher(model)
    matched: list[tuple[int, float]] = []
    for e in events:
        rules_hit = match(e)
        if rules_hit:
            t = _epoch(e.occurred_at)
            matched += [(j, t) for j in rules_hit]
    if not matched:
        return state, ref
    rules = model.engagement.rules
    hls = list(half_lives) if half_lives is not None else _half_lives(model).tolist()
    out = state.tolist()  # plain floats: cheaper than NumPy scalars for a handful of rules
    new_ref = max(ref, max(t for _, t in matched))
    if new_ref > ref:  # rebase: the stored sums shrink, new terms stay <= 1 (no overflow)
        for j, row in enumerate(out):
            scale = 2.0 ** (-(new_ref - ref) / hls[j])
            row[CLOSED] *= scale
            row[OPEN_SUM] *= scale
    groups: dict[tuple[int, float], list[float]] = {}
    for j, t in matched:
        cap = rules[j].cap
        period = float(period_of(t, cap.days)) if cap else 0.0
        g = groups.setdefault((j, period), [0.0, 0.0])
        g[0] += 1.0
        g[1] += 2.0 ** ((t - new_ref) / hls[j])
    for (j, period), (c, s) in sorted(groups.items()):
        row = out[j]
        if period > row[OPEN_PERIOD]:
            if row[OPEN_COUNT] > 0:
                row[CLOSED] += cap_share(row[OPEN_COUNT], rules[j].points, rules[j].cap) * row[OPEN_SUM]
            row[OPEN_PERIOD], row[OPEN_COUNT], row[OPEN_SUM] = period, c, s
        elif period == row[OPEN_PERIOD]:
            row[OPEN_COUNT] += c
            row[OPEN_SUM] += s
        else:
            return None
    return np.array(out, dtype=np.float64).reshape(state.shape), new_ref


def _periods(model: ScoringModel, rule: IntArray, t: FloatArray) -> FloatArray:
    """Each matched event's cap period (:func:`period_of`; 0 for a rule without a cap)."""

    days = np.array([r.cap.days if r.cap else 0 for r in model.engagement.rules], dtype=np.float64)[rule]
    with np.errstate(divide="ignore", invalid="ignore"):
        out: FloatArray = np.where(days > 0, np.floor(t / (days * DAY)), 0.0)
    return out


def fold_batch(
    model: ScoringModel,
    state: FloatArray,
    ref: FloatArray,
    lead: IntArray,
    rule: IntArray,
    t: FloatArray,
) -> tuple[FloatArray, FloatArray, BoolArray]:
    """:func:`fold_events` for many leads at once, vectorized: ``state`` (n x rules x
    STATE_FIELDS) and ``ref`` (n) are the leads' states, ``lead`` (index into them), ``rule`` and
    ``t`` (epoch seconds) one row per (event, matching rule). Returns the new states and reference
    times, and the leads with a late event (one for a cap period before its rule's open one):
    those come back unchanged and must be rebuilt from all their events."""

    n, k = state.shape[0], state.shape[1]
    out = state.copy()
    new_ref = ref.copy()
    late = np.zeros(n, dtype=np.bool_)
    if not len(lead) or not k:
        return out, new_ref, late
    hls = _half_lives(model)
    latest = np.full(n, -np.inf)
    np.maximum.at(latest, lead, t)
    new_ref = np.where(latest > -np.inf, np.maximum(ref, latest), ref)
    # Rebase: the stored sums shrink, the new terms stay <= 1 (no overflow).
    scale = np.power(2.0, -(new_ref - ref)[:, None] / hls[None, :])
    out[:, :, CLOSED] *= scale
    out[:, :, OPEN_SUM] *= scale
    period = _periods(model, rule, t)
    term = np.power(2.0, (t - new_ref[lead]) / hls[rule])
    # Late events: before the open period of their (lead, rule).
    is_late = period < out[lead, rule, OPEN_PERIOD]
    if is_late.any():
        late[lead[is_late]] = True
    keep = ~late[lead]
    lead, rule, period, term = lead[keep], rule[keep], period[keep], term[keep]
    if not len(lead):
        out[late], new_ref[late] = state[late], ref[late]
        return out, new_ref, late
    # The open periods of the (lead, rule) pairs hit join the new events as groups of their own.
    pairs = np.unique(lead * k + rule)
    p_lead, p_rule = pairs // k, pairs % k
    has_open = out[p_lead, p_rule, OPEN_COUNT] > 0
    o_lead, o_rule = p_lead[has_open], p_rule[has_open]
    all_lead = np.concatenate([o_lead, lead])
    all_rule = np.concatenate([o_rule, rule])
    all_period = np.concatenate([out[o_lead, o_rule, OPEN_PERIOD], period])
    all_count = np.concatenate([out[o_lead, o_rule, OPEN_COUNT], np.ones(len(lead))])
    all_sum = np.concatenate([out[o_lead, o_rule, OPEN_SUM], term])
    order = np.lexsort((all_period, all_rule, all_lead))
    all_lead, all_rule, all_period = all_lead[order], all_rule[order], all_period[order]
    all_count, all_sum = all_count[order], all_sum[order]
    start = np.ones(len(all_lead), dtype=np.bool_)
    start[1:] = (
        (all_lead[1:] != all_lead[:-1])
        | (all_rule[1:] != all_rule[:-1])
        | (all_period[1:] != all_period[:-1])
    )
    idx = np.flatnonzero(start)
    g_lead, g_rule, g_period = all_lead[idx], all_rule[idx], all_period[idx]
    g_count = np.add.reduceat(all_count, idx)
    g_sum = np.add.reduceat(all_sum, idx)
    # Per (lead, rule): the latest period stays open, the earlier ones close under their caps.
    last = np.ones(len(g_lead), dtype=np.bool_)
    last[:-1] = (g_lead[1:] != g_lead[:-1]) | (g_rule[1:] != g_rule[:-1])
    closed = ~last
    np.add.at(
        out[:, :, CLOSED],
        (g_lead[closed], g_rule[closed]),
        _shares(model, g_rule[closed], g_count[closed]) * g_sum[closed],
    )
    out[g_lead[last], g_rule[last], OPEN_PERIOD] = g_period[last]
    out[g_lead[last], g_rule[last], OPEN_COUNT] = g_count[last]
    out[g_lead[last], g_rule[last], OPEN_SUM] = g_sum[last]
    out[late], new_ref[late] = state[late], ref[late]
    return out, new_ref, late


def half_lives_seconds(model: ScoringModel) -> list[float]:
    """Per engagement rule, the half-life in seconds (inf: no decay), for :func:`fold_events`."""

    return _half_lives(model).tolist()  # type: ignore[no-any-return]


def engagement_points_from_state(
    model: ScoringModel, state: FloatArray, ref: FloatArray, as_of: datetime
) -> FloatArray:
    """Points per (lead, engagement rule) at ``as_of`` from the leads' states (n x rules x
    STATE_FIELDS) and reference times. Exact for leads with no event after ``as_of``."""

    rules = model.engagement.rules
    n, k = state.shape[0], len(rules)
    if not k or not n:
        return np.zeros((n, k), dtype=np.float64)
    points = np.array([r.points for r in rules], dtype=np.float64)
    rule_idx = np.broadcast_to(np.arange(k, dtype=np.int64), (n, k))
    share = _shares(model, rule_idx.reshape(-1), state[:, :, OPEN_COUNT].reshape(-1)).reshape(n, k)
    raw = state[:, :, CLOSED] + share * state[:, :, OPEN_SUM]
    decay = np.power(2.0, -(_epoch(as_of) - ref)[:, None] / _half_lives(model)[None, :])
    result: FloatArray = points[None, :] * raw * decay
    return result


# ---------------------------------------------------------------------------------------------
# The default model: the seeds' tiers (marketing email at 60/100, sales call at 80/100)
# ---------------------------------------------------------------------------------------------

DEFAULT_DOCUMENT: dict[str, Any] = {
    "name": "Default",
    "description": (
        "Fit on firmographics and role, engagement on behaviour with a 30-day half-life. "
        "At 60/100 the lead becomes an MQL and gets the marketing email sequence; "
        "at 80/100 the owner gets a task to call."
    ),
    "scale": 100,
    "weights": {"fit": 0.5, "engagement": 0.5},
    "fit": {
        "max_points": 60,
        "rules": [
            {
                "id": "decision_maker",
                "label": "Decision maker (executive, VP or director)",
                "field": "seniority",
                "in": ["executive", "vp", "director"],
                "points": 20,
            },
            {"id": "manager", "label": "Manager", "field": "seniority", "equals": "manager", "points": 10},
            {
                "id": "company_size",
                "label": "Company of 50 to 5,000 employees",
                "field": "employee_count",
                "min": 50,
                "max": 5000,
                "points": 15,
            },
            {
                "id": "target_industry",
                "label": "Target industry",
                "field": "industry",
                "in": ["Software", "Financial Services", "Telecommunications", "Manufacturing"],
                "points": 15,
            },
            {
                "id": "revenue_role",
                "label": "Works in sales, marketing or revenue operations",
                "field": "job_title",
                "matches": r"\b(sales|marketing|revenue|growth|revops|demand)\b",
                "points": 10,
            },
            {
                "id": "free_mail",
                "label": "Free webmail address",
                "field": "free_mail",
                "equals": True,
                "points": -15,
            },
            {
                "id": "student",
                "label": "Student or intern",
                "field": "seniority",
                "equals": "student",
                "points": -30,
            },
            {
                "id": "competitor",
                "label": "Works at a competitor",
                "field": "email_domain",
                "in": ["competitor.example"],
                "points": -60,
            },
            {
                "id": "unsubscribed",
                "label": "Unsubscribed from email",
                "field": "unsubscribed",
                "equals": True,
                "points": -20,
            },
        ],
    },
    "engagement": {
        "max_points": 100,
        "half_life_days": 30,
        "rules": [
            {
                "id": "pricing_page",
                "label": "Viewed the pricing page",
                "event": "page_view",
                "where": {"url": {"prefix": "/pricing"}},
                "points": 10,
                "cap": {"points": 30, "days": 7},
            },
            {
                "id": "page_view",
                "label": "Viewed a page",
                "event": "page_view",
                "points": 1,
                "cap": {"points": 10, "days": 7},
            },
            {
                "id": "email_open",
                "label": "Opened an email",
                "event": "email_open",
                "points": 1,
                "cap": {"points": 5, "days": 7},
            },
            {
                "id": "email_click",
                "label": "Clicked an email",
                "event": "email_click",
                "points": 3,
                "cap": {"points": 15, "days": 7},
            },
            {"id": "form_submit", "label": "Submitted a form", "event": "form_submit", "points": 10},
            {
                "id": "content_download",
                "label": "Downloaded content",
                "event": "content_download",
                "points": 8,
                "cap": {"points": 24, "days": 30},
            },
            {"id": "webinar", "label": "Attended a webinar", "event": "webinar", "points": 10},
            {"id": "demo_request", "label": "Requested a demo", "event": "demo_request", "points": 30},
            {"id": "pricing_request", "label": "Requested pricing", "event": "pricing_request", "points": 25},
            {"id": "trial_start", "label": "Started a free trial", "event": "trial_start", "points": 30},
        ],
    },
    "grades": {"A": 75, "B": 50, "C": 25},
    "thresholds": [
        {
            "id": "marketing_email",
            "label": "Marketing qualified: send the marketing email",
            "score": "total",
            "at": 60,
            "hysteresis": 5,
            "actions": [
                {"type": "move_to_mql"},
                {"type": "enroll_sequence", "sequence": "marketing-email"},
            ],
        },
        {
            "id": "sales_call",
            "label": "Sales call",
            "score": "total",
            "at": 80,
            "hysteresis": 5,
            "actions": [
                {"type": "create_task", "task": "call", "title": "Call the lead", "due_in_hours": 24}
            ],
        },
    ],
}


def default_model() -> ScoringModel:
    return parse_model(DEFAULT_DOCUMENT)


def explanation_summary(
    model: ScoringModel, fit_row: Sequence[float], eng_row: Sequence[float]
) -> list[dict[str, Any]]:
    """The compact explanation the bulk path stores: the rules that fired and their points."""

    out: list[dict[str, Any]] = []
    for rule, pts in zip(model.fit.rules, fit_row, strict=True):
        if pts:
            out.append({"rule_id": rule.id, "kind": "fit", "points": round(float(pts), 4)})
    for erule, pts in zip(model.engagement.rules, eng_row, strict=True):
        if pts:
            out.append({"rule_id": erule.id, "kind": "engagement", "points": round(float(pts), 4)})
    return out


__all__ = [
    "DEFAULT_DOCUMENT",
    "EngagementGroups",
    "EventRecord",
    "InvalidScoringModel",
    "LeadScore",
    "ModelError",
    "Reason",
    "ScoreArrays",
    "ScoringModel",
    "default_model",
    "empty_state",
    "engagement_groups",
    "engagement_key",
    "engagement_points_from_groups",
    "engagement_points_from_state",
    "evaluate_thresholds",
    "fit_points_matrix",
    "fold_batch",
    "fold_events",
    "half_lives_seconds",
    "parse_model",
    "rule_matcher",
    "scale_scores",
    "score_lead",
    "state_from_groups",
    "thresholds_step",
]
