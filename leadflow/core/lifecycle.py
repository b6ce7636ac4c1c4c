"""The lead lifecycle as a pure state machine.

Vocabulary from the seeds: a *lead* is new or cold until marketing scoring makes it an MQL; sales
accepts it as an SAL after a needs assessment and qualifies it as an SQL (= *prospect*) on a
discovery call; an *opportunity* is the deal opened for the prospect and a won deal makes a
*customer*. Sales-sourced leads skip the MQL step. Side states hold leads that are not moving
forward: nurture, unqualified (reason required), bad (typed reason), recycled.

Every move names the evidence it needs. Evidence is a typed payload so that later features
(needs assessments, discovery calls, opportunities) can hand in their records without this module
knowing about databases or HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal


class Stage(StrEnum):
    NEW = "new"
    COLD = "cold"
    MQL = "mql"
    SAL = "sal"
    SQL = "sql"
    OPPORTUNITY = "opportunity"
    CUSTOMER = "customer"
    NURTURE = "nurture"
    UNQUALIFIED = "unqualified"
    BAD = "bad"
    RECYCLED = "recycled"


class Origin(StrEnum):
    """Who generated the lead: marketing leads pass through MQL, sales-sourced ones skip it."""

    MARKETING = "marketing"
    SALES = "sales"


class BadReason(StrEnum):
    INVALID_CONTACT_DATA = "invalid_contact_data"
    BAD_FIT = "bad_fit"
    COMPETITOR = "competitor"
    DUPLICATE = "duplicate"


# The main road, in order. Side states are not on it.
FUNNEL: tuple[Stage, ...] = (
    Stage.NEW,
    Stage.COLD,
    Stage.MQL,
    Stage.SAL,
    Stage.SQL,
    Stage.OPPORTUNITY,
    Stage.CUSTOMER,
)
SIDE_STATES: frozenset[Stage] = frozenset({Stage.NURTURE, Stage.UNQUALIFIED, Stage.BAD, Stage.RECYCLED})
TERMINAL: frozenset[Stage] = frozenset({Stage.CUSTOMER})
# Seeds: a prospect is an SQL; everything from SQL onwards is past lead qualification.
PROSPECT_STAGES: frozenset[Stage] = frozenset({Stage.SQL, Stage.OPPORTUNITY, Stage.CUSTOMER})


# ---------------------------------------------------------------------------------------------
# Evidence payloads
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreThreshold:
    """Lead scoring crossed the MQL threshold."""

    kind: Literal["score_threshold"] = "score_threshold"
    score: float = 0.0
    threshold: float = 0.0
    model_version: str | None = None


@dataclass(frozen=True)
class MarketingReview:
    """A marketer qualified the lead by hand (e.g. a booth conversation), with a note."""

    kind: Literal["marketing_review"] = "marketing_review"
    note: str = ""


@dataclass(frozen=True)
class NeedsAssessment:
    """A needs assessment showed a need the product can meet (seeds: source, need, product
    interest, solution, timeline)."""

    kind: Literal["needs_assessment"] = "needs_assessment"
    assessment_id: str | None = None
    answers: Mapping[str, Any] = field(default_factory=dict)
    qualified: bool = True


@dataclass(frozen=True)
class DiscoveryCall:
    """A discovery call under a qualification framework (BANT by default)."""

    kind: Literal["discovery_call"] = "discovery_call"
    call_id: str | None = None
    framework: str = "BANT"
    criteria: Mapping[str, Any] = field(default_factory=dict)
    outcome: Literal["qualified", "unqualified"] = "qualified"
    held_at: datetime | None = None


@dataclass(frozen=True)
class OpportunityOpened:
    """An opportunity was opened for the prospect, usually on a buying signal."""

    kind: Literal["opportunity_opened"] = "opportunity_opened"
    opportunity_id: str | None = None
    signals: tuple[str, ...] = ()


@dataclass(frozen=True)
class DealWon:
    kind: Literal["deal_won"] = "deal_won"
    opportunity_id: str | None = None
    amount: float | None = None


@dataclass(frozen=True)
class Imported:
    """The stage came from another system's export (only valid when a lead is first stored)."""

    kind: Literal["imported"] = "imported"
    system: str = ""
    original_value: str = ""


Evidence = (
    ScoreThreshold
    | MarketingReview
    | NeedsAssessment
    | DiscoveryCall
    | OpportunityOpened
    | DealWon
    | Imported
)

EVIDENCE_TYPES: dict[str, type[Any]] = {
    "score_threshold": ScoreThreshold,
    "marketing_review": MarketingReview,
    "needs_assessment": NeedsAssessment,
    "discovery_call": DiscoveryCall,
    "opportunity_opened": OpportunityOpened,
    "deal_won": DealWon,
    "imported": Imported,
}


# ---------------------------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """What entering a stage requires."""

    evidence: tuple[str, ...] = ()  # any one of these evidence kinds; empty = none required
    reason_required: bool = False
    bad_reason_required: bool = False
    sales_sourced_only: bool = False
    description: str = ""


# Legal moves: source -> targets. Every working stage can also leave to nurture, unqualified or
# bad; unqualified and bad leads come back only through recycling.
_EXITS = frozenset({Stage.NURTURE, Stage.UNQUALIFIED, Stage.BAD})
TRANSITIONS: dict[Stage, frozenset[Stage]] = {
    Stage.NEW: frozenset({Stage.COLD, Stage.MQL, Stage.SAL}) | _EXITS,
    Stage.COLD: frozenset({Stage.MQL, Stage.SAL}) | _EXITS,
    Stage.MQL: frozenset({Stage.SAL}) | _EXITS,
    Stage.SAL: frozenset({Stage.SQL}) | _EXITS,
    Stage.SQL: frozenset({Stage.OPPORTUNITY}) | _EXITS,
    Stage.OPPORTUNITY: frozenset({Stage.CUSTOMER, Stage.RECYCLED}) | _EXITS,
    Stage.CUSTOMER: frozenset(),
    Stage.NURTURE: frozenset({Stage.MQL, Stage.SAL, Stage.RECYCLED, Stage.UNQUALIFIED, Stage.BAD}),
    Stage.UNQUALIFIED: frozenset({Stage.RECYCLED, Stage.BAD}),
    Stage.BAD: frozenset({Stage.RECYCLED}),
    Stage.RECYCLED: frozenset({Stage.COLD, Stage.MQL, Stage.SAL}) | _EXITS,
}

ENTRY_RULES: dict[Stage, Rule] = {
    Stage.NEW: Rule(description="Captured, not yet worked."),
    Stage.COLD: Rule(description="Nobody from the company has contacted the lead yet."),
    Stage.MQL: Rule(
        evidence=("score_threshold", "marketing_review"),
        description="Marketing qualified: fits the ICP and showed interest (lead scoring or review).",
    ),
    Stage.SAL: Rule(
        evidence=("needs_assessment",),
        description="Sales accepted after a needs assessment showed a need the product meets.",
    ),
    Stage.SQL: Rule(
        evidence=("discovery_call",),
        description="Prospect: qualified on a discovery call (BANT or another framework).",
    ),
    Stage.OPPORTUNITY: Rule(
        evidence=("opportunity_opened",),
        description="A deal was opened for the prospect.",
    ),
    Stage.CUSTOMER: Rule(evidence=("deal_won",), description="The deal was won."),
    Stage.NURTURE: Rule(reason_required=True, description="Not ready now; marketing keeps nurturing."),
    Stage.UNQUALIFIED: Rule(reason_required=True, description="Disqualified, with the reason."),
    Stage.BAD: Rule(
        bad_reason_required=True,
        description="Wrong contact data or an obvious bad fit (typed reason).",
    ),
    Stage.RECYCLED: Rule(reason_required=True, description="Returned to the top of the funnel."),
}

# Stages a lead may be stored in when it is first created without imported evidence.
INITIAL_STAGES: dict[Origin, frozenset[Stage]] = {
    Origin.MARKETING: frozenset({Stage.NEW, Stage.COLD, Stage.NURTURE}),
    Origin.SALES: frozenset({Stage.NEW, Stage.COLD, Stage.SAL}),
}


# ---------------------------------------------------------------------------------------------
# Errors and decisions
# ---------------------------------------------------------------------------------------------


class LifecycleError(Exception):
    """Base class: the move was refused."""

    code = "lifecycle_error"

    def __init__(self, message: str, *, current: Stage, target: Stage, legal: list[Stage]) -> None:
        super().__init__(message)
        self.message = message
        self.current = current
        self.target = target
        self.legal = legal


class IllegalTransition(LifecycleError):
    code = "illegal_transition"


class MissingEvidence(LifecycleError):
    code = "missing_evidence"

    def __init__(
        self, message: str, *, current: Stage, target: Stage, legal: list[Stage], required: list[str]
    ):
        super().__init__(message, current=current, target=target, legal=legal)
        self.required = required


@dataclass(frozen=True)
class Transition:
    """An accepted move, ready to be applied and audited."""

    source: Stage | None
    target: Stage
    reason: str | None
    bad_reason: BadReason | None
    evidence: Evidence | None


def legal_targets(current: Stage, origin: Origin) -> list[Stage]:
    """The stages reachable from ``current`` for a lead of ``origin``, in funnel order."""

    targets = TRANSITIONS[current]
    if origin is Origin.MARKETING and current in {Stage.NEW, Stage.COLD, Stage.RECYCLED, Stage.NURTURE}:
        # Seeds: marketing leads go through every stage; only sales-sourced leads skip MQL.
        targets = targets - {Stage.SAL}
    order = {s: i for i, s in enumerate(Stage)}
    return sorted(targets, key=order.__getitem__)


def _check_requirements(
    current: Stage | None,
    target: Stage,
    legal: list[Stage],
    evidence: Evidence | None,
    reason: str | None,
    bad_reason: BadReason | None,
) -> None:
    rule = ENTRY_RULES[target]
    cur = current if current is not None else target
    if rule.evidence and (evidence is None or evidence.kind not in rule.evidence):
        raise MissingEvidence(
            f"moving to {target.value} needs evidence of kind {' or '.join(rule.evidence)}",
            current=cur,
            target=target,
            legal=legal,
            required=list(rule.evidence),
        )
    # A score under the threshold is evidence against MQL ("not >=" also refuses a NaN score).
    if (
        isinstance(evidence, ScoreThreshold)
        and target is Stage.MQL
        and not evidence.score >= evidence.threshold
    ):
        raise MissingEvidence(
            f"the score {evidence.score} is below the MQL threshold {evidence.threshold}",
            current=cur,
            target=target,
            legal=legal,
            required=list(rule.evidence),
        )
    if isinstance(evidence, NeedsAssessment) and target is Stage.SAL and not evidence.qualified:
        raise MissingEvidence(
            "the needs assessment did not qualify the lead; move it to nurture or unqualified instead",
            current=cur,
            target=target,
            legal=legal,
            required=["needs_assessment"],
        )
    if isinstance(evidence, DiscoveryCall) and target is Stage.SQL and evidence.outcome != "qualified":
        raise MissingEvidence(
            "the discovery call's outcome was not 'qualified'; move the lead to unqualified instead",
            current=cur,
            target=target,
            legal=legal,
            required=["discovery_call"],
        )
    if rule.reason_required and not (reason and reason.strip()):
        raise MissingEvidence(
            f"moving to {target.value} needs a reason",
            current=cur,
            target=target,
            legal=legal,
            required=["reason"],
        )
    if rule.bad_reason_required and bad_reason is None:
        raise MissingEvidence(
            f"moving to bad needs a bad_reason: one of {', '.join(r.value for r in BadReason)}",
            current=cur,
            target=target,
            legal=legal,
            required=["bad_reason"],
        )


def transition(
    current: Stage,
    target: Stage,
    *,
    origin: Origin,
    evidence: Evidence | None = None,
    reason: str | None = None,
    bad_reason: BadReason | None = None,
) -> Transition:
    """Decide whether ``current -> target`` is legal with the given evidence.

    Raises :class:`IllegalTransition` (the move is never legal from here) or
    :class:`MissingEvidence` (legal, but the evidence, reason or bad reason is missing).
    """

    legal = legal_targets(current, origin)
    if target not in legal:
        if target is current:
            msg = f"the lead is already {current.value}"
        elif target is Stage.SAL and origin is Origin.MARKETING and target in TRANSITIONS[current]:
            msg = "marketing-sourced leads must become MQL before sales accepts them (SAL)"
        else:
            msg = f"cannot move from {current.value} to {target.value}"
        raise IllegalTransition(msg, current=current, target=target, legal=legal)
    if isinstance(evidence, Imported):
        raise MissingEvidence(
            "imported evidence only sets a lead's stage when the lead is first stored",
            current=current,
            target=target,
            legal=legal,
            required=list(ENTRY_RULES[target].evidence) or ["none"],
        )
    _check_requirements(current, target, legal, evidence, reason, bad_reason)
    return Transition(current, target, reason, bad_reason if target is Stage.BAD else None, evidence)


def initial(
    target: Stage,
    *,
    origin: Origin,
    evidence: Evidence | None = None,
    reason: str | None = None,
    bad_reason: BadReason | None = None,
) -> Transition:
    """Decide the stage a new lead is stored in.

    A lead starts new or cold (or nurture for marketing, SAL for sales-sourced leads with a needs
    assessment). Any stage is accepted with :class:`Imported` evidence, because a migration from
    another CRM carries the history that evidence would otherwise describe.
    """

    if isinstance(evidence, Imported):
        if target is Stage.BAD and bad_reason is None:
            bad_reason = BadReason.BAD_FIT
        return Transition(None, target, reason, bad_reason if target is Stage.BAD else None, evidence)
    allowed = INITIAL_STAGES[origin]
    legal = sorted(allowed, key=list(Stage).index)
    if target not in allowed:
        hint = " (sales-sourced leads may start at sal)" if target is Stage.SAL else ""
        raise IllegalTransition(
            f"a new {origin.value}-sourced lead cannot start at {target.value}{hint}",
            current=target,
            target=target,
            legal=legal,
        )
    _check_requirements(None, target, legal, evidence, reason, bad_reason)
    return Transition(None, target, reason, bad_reason if target is Stage.BAD else None, evidence)


def evidence_from_dict(data: Mapping[str, Any] | None) -> Evidence | None:
    """Build a typed evidence payload from its JSON form (``{"kind": ..., ...}``)."""

    if not data:
        return None
    kind = data.get("kind")
    cls = EVIDENCE_TYPES.get(str(kind))
    if cls is None:
        raise ValueError(f"unknown evidence kind {kind!r}; expected one of {', '.join(EVIDENCE_TYPES)}")
    fields = {k: v for k, v in data.items() if k != "kind"}
    # JSON types are not checked by the dataclasses: "qualified": "false" must not count as true.
    if "qualified" in fields and not isinstance(fields["qualified"], bool):
        raise ValueError(f"evidence of kind {kind}: qualified must be true or false")
    for name in ("score", "threshold"):
        if name in fields and (isinstance(fields[name], bool) or not isinstance(fields[name], int | float)):
            raise ValueError(f"evidence of kind {kind}: {name} must be a number")
    if "signals" in fields and isinstance(fields["signals"], list):
        fields["signals"] = tuple(fields["signals"])
    if "held_at" in fields and isinstance(fields["held_at"], str):
        fields["held_at"] = datetime.fromisoformat(fields["held_at"])
    try:
        ev: Evidence = cls(**fields)
    except TypeError as exc:
        raise ValueError(f"evidence of kind {kind}: {exc}") from exc
    return ev


def evidence_to_dict(evidence: Evidence | None) -> dict[str, Any] | None:
    if evidence is None:
        return None
    out: dict[str, Any] = {}
    for name in evidence.__dataclass_fields__:
        value = getattr(evidence, name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, Mapping):
            value = dict(value)
        out[name] = value
    return out


def describe() -> list[dict[str, Any]]:
    """The whole machine as data (served by the API and rendered in docs)."""

    return [
        {
            "stage": s.value,
            "description": ENTRY_RULES[s].description,
            "requires_evidence": list(ENTRY_RULES[s].evidence),
            "requires_reason": ENTRY_RULES[s].reason_required,
            "requires_bad_reason": ENTRY_RULES[s].bad_reason_required,
            "next": {
                "marketing": [t.value for t in legal_targets(s, Origin.MARKETING)],
                "sales": [t.value for t in legal_targets(s, Origin.SALES)],
            },
        }
        for s in Stage
    ]
