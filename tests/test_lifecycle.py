"""The lifecycle state machine, tested through its public functions only.

The legal moves are written out below as data, from the domain rules rather than from the module:
marketing leads go new/cold -> MQL -> SAL -> SQL -> opportunity -> customer; sales-sourced leads may
skip MQL (new/cold -> SAL); every working stage may leave to nurture, unqualified or bad; unqualified
and bad come back only through recycled; customer is terminal. Every (source, target, origin) triple
is checked against that table, and random walks check the invariants the table implies.
"""

from __future__ import annotations

import itertools
import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from leadflow.core.lifecycle import (
    BadReason,
    DealWon,
    DiscoveryCall,
    IllegalTransition,
    Imported,
    LifecycleError,
    MarketingReview,
    MissingEvidence,
    NeedsAssessment,
    OpportunityOpened,
    Origin,
    ScoreThreshold,
    Stage,
    Transition,
    describe,
    evidence_from_dict,
    evidence_to_dict,
    initial,
    legal_targets,
    transition,
)

# ---------------------------------------------------------------------------------------------
# The expected machine, as plain data
# ---------------------------------------------------------------------------------------------

MKT, SALES = "marketing", "sales"
BOTH = frozenset({MKT, SALES})
ONLY_SALES = frozenset({SALES})

# Declaration order of the stages: funnel first, then the side states. Lists of legal targets
# come back in this order.
ORDER = [
    "new",
    "cold",
    "mql",
    "sal",
    "sql",
    "opportunity",
    "customer",
    "nurture",
    "unqualified",
    "bad",
    "recycled",
]
LEAVE = {"nurture": BOTH, "unqualified": BOTH, "bad": BOTH}  # any working stage may leave

# source -> {target: origins for which the move is legal}
EXPECTED: dict[str, dict[str, frozenset[str]]] = {
    "new": {"cold": BOTH, "mql": BOTH, "sal": ONLY_SALES, **LEAVE},
    "cold": {"mql": BOTH, "sal": ONLY_SALES, **LEAVE},
    "mql": {"sal": BOTH, **LEAVE},
    "sal": {"sql": BOTH, **LEAVE},
    "sql": {"opportunity": BOTH, **LEAVE},
    # A lost deal goes back to the top of the funnel.
    "opportunity": {"customer": BOTH, "recycled": BOTH, **LEAVE},
    "customer": {},
    # Nurture re-enters the funnel like a cold lead (marketing through MQL), or is given up.
    "nurture": {"mql": BOTH, "sal": ONLY_SALES, "recycled": BOTH, "unqualified": BOTH, "bad": BOTH},
    "unqualified": {"recycled": BOTH, "bad": BOTH},
    "bad": {"recycled": BOTH},
    "recycled": {"cold": BOTH, "mql": BOTH, "sal": ONLY_SALES, **LEAVE},
}

# What entering each stage needs.
EVIDENCE_KINDS: dict[str, list[str]] = {
    "mql": ["score_threshold", "marketing_review"],
    "sal": ["needs_assessment"],
    "sql": ["discovery_call"],
    "opportunity": ["opportunity_opened"],
    "customer": ["deal_won"],
}
NEEDS_REASON = {"nurture", "unqualified", "recycled"}
NEEDS_BAD_REASON = {"bad"}

# Where a brand-new lead may start without imported history.
EXPECTED_INITIAL = {MKT: ["new", "cold", "nurture"], SALES: ["new", "cold", "sal"]}

ALL_KINDS = [
    "score_threshold",
    "marketing_review",
    "needs_assessment",
    "discovery_call",
    "opportunity_opened",
    "deal_won",
    "imported",
]


def expected_legal(source: str, origin: str) -> list[str]:
    return [t for t in ORDER if origin in EXPECTED[source].get(t, frozenset())]


def values(stages: list[Stage]) -> list[str]:
    return [s.value for s in stages]


def good_evidence(target: str) -> dict[str, Any]:
    """Keyword arguments that satisfy the entry rule of ``target``."""

    return {
        "mql": {"evidence": ScoreThreshold(score=82.5, threshold=80.0, model_version="v1")},
        "sal": {"evidence": NeedsAssessment(assessment_id="na-1", answers={"need": "faster quotes"})},
        "sql": {"evidence": DiscoveryCall(call_id="dc-1", criteria={"budget": True}, outcome="qualified")},
        "opportunity": {"evidence": OpportunityOpened(opportunity_id="op-1", signals=("demo requested",))},
        "customer": {"evidence": DealWon(opportunity_id="op-1", amount=12000.0)},
        "nurture": {"reason": "not buying this year"},
        "unqualified": {"reason": "no budget"},
        "recycled": {"reason": "new budget cycle"},
        "bad": {"bad_reason": BadReason.INVALID_CONTACT_DATA},
    }.get(target, {})


def test_the_expected_table_covers_every_stage() -> None:
    assert sorted(ORDER) == sorted(s.value for s in Stage)
    assert set(EXPECTED) == set(ORDER)
    assert {o.value for o in Origin} == {MKT, SALES}
    for source, moves in EXPECTED.items():
        assert source not in moves, "a stage never moves to itself"
        assert set(moves) <= set(ORDER)


# ---------------------------------------------------------------------------------------------
# Every (source, target, origin) triple
# ---------------------------------------------------------------------------------------------

TRIPLES = list(itertools.product(ORDER, ORDER, [MKT, SALES]))


@pytest.mark.parametrize(("source", "origin"), list(itertools.product(ORDER, [MKT, SALES])))
def test_legal_targets_match_the_table(source: str, origin: str) -> None:
    assert values(legal_targets(Stage(source), Origin(origin))) == expected_legal(source, origin)


@pytest.mark.parametrize(("source", "target", "origin"), TRIPLES)
def test_every_move_against_the_table(source: str, target: str, origin: str) -> None:
    legal = origin in EXPECTED[source].get(target, frozenset())
    kwargs = good_evidence(target)
    if legal:
        move = transition(Stage(source), Stage(target), origin=Origin(origin), **kwargs)
        assert isinstance(move, Transition)
        assert move.source is Stage(source)
        assert move.target is Stage(target)
        assert move.evidence == kwargs.get("evidence")
        assert move.reason == kwargs.get("reason")
        assert move.bad_reason == kwargs.get("bad_reason")
    else:
        # Refused as illegal even with perfect evidence, and the error lists the real options.
        with pytest.raises(IllegalTransition) as info:
            transition(Stage(source), Stage(target), origin=Origin(origin), **kwargs)
        err = info.value
        assert err.code == "illegal_transition"
        assert err.current is Stage(source)
        assert err.target is Stage(target)
        assert values(err.legal) == expected_legal(source, origin)


@pytest.mark.parametrize(("source", "target", "origin"), TRIPLES)
def test_legal_moves_refuse_missing_requirements(source: str, target: str, origin: str) -> None:
    if origin not in EXPECTED[source].get(target, frozenset()):
        return
    needs = EVIDENCE_KINDS.get(target) or (
        ["reason"] if target in NEEDS_REASON else ["bad_reason"] if target in NEEDS_BAD_REASON else []
    )
    if not needs:
        transition(Stage(source), Stage(target), origin=Origin(origin))  # nothing required
        return
    with pytest.raises(MissingEvidence) as info:
        transition(Stage(source), Stage(target), origin=Origin(origin))
    err = info.value
    assert err.code == "missing_evidence"
    assert err.required == needs
    assert err.current is Stage(source)
    assert err.target is Stage(target)
    assert values(err.legal) == expected_legal(source, origin)


# ---------------------------------------------------------------------------------------------
# Evidence requirements
# ---------------------------------------------------------------------------------------------


def one_of_each_kind() -> dict[str, Any]:
    return {
        "score_threshold": ScoreThreshold(score=90, threshold=80),
        "marketing_review": MarketingReview(note="talked at the booth"),
        "needs_assessment": NeedsAssessment(),
        "discovery_call": DiscoveryCall(),
        "opportunity_opened": OpportunityOpened(),
        "deal_won": DealWon(),
        "imported": Imported(system="hubspot", original_value="MQL"),
    }


@pytest.mark.parametrize(
    ("source", "target"),
    [("new", "mql"), ("mql", "sal"), ("sal", "sql"), ("sql", "opportunity"), ("opportunity", "customer")],
)
@pytest.mark.parametrize("kind", ALL_KINDS)
def test_only_the_named_evidence_kinds_open_a_stage(source: str, target: str, kind: str) -> None:
    evidence = one_of_each_kind()[kind]
    if kind in EVIDENCE_KINDS[target]:
        move = transition(Stage(source), Stage(target), origin=Origin.MARKETING, evidence=evidence)
        assert move.evidence is evidence
        return
    with pytest.raises(MissingEvidence) as info:
        transition(Stage(source), Stage(target), origin=Origin.MARKETING, evidence=evidence)
    if kind != "imported":
        assert info.value.required == EVIDENCE_KINDS[target]


def test_mql_accepts_a_marketing_review() -> None:
    move = transition(Stage.COLD, Stage.MQL, origin=Origin.MARKETING, evidence=MarketingReview(note="booth"))
    assert move.evidence == MarketingReview(note="booth")


def test_mql_accepts_a_score_exactly_at_the_threshold() -> None:
    transition(Stage.NEW, Stage.MQL, origin=Origin.MARKETING, evidence=ScoreThreshold(score=80, threshold=80))


@pytest.mark.parametrize("score", [79.99, 0.0, -5.0, math.nan])
def test_mql_refuses_a_score_below_the_threshold(score: float) -> None:
    with pytest.raises(MissingEvidence) as info:
        transition(
            Stage.NEW, Stage.MQL, origin=Origin.MARKETING, evidence=ScoreThreshold(score=score, threshold=80)
        )
    assert info.value.required == ["score_threshold", "marketing_review"]


@pytest.mark.parametrize("origin", list(Origin))
@pytest.mark.parametrize("source", [Stage.MQL, Stage.NEW, Stage.COLD])
def test_sal_needs_a_qualified_needs_assessment(origin: Origin, source: Stage) -> None:
    if Stage.SAL not in legal_targets(source, origin):
        return
    with pytest.raises(MissingEvidence) as info:
        transition(source, Stage.SAL, origin=origin, evidence=NeedsAssessment(qualified=False))
    assert info.value.required == ["needs_assessment"]
    assert "nurture or unqualified" in info.value.message
    move = transition(source, Stage.SAL, origin=origin, evidence=NeedsAssessment(qualified=True))
    assert move.target is Stage.SAL


def test_sql_needs_a_discovery_call_that_qualified() -> None:
    with pytest.raises(MissingEvidence) as info:
        transition(Stage.SAL, Stage.SQL, origin=Origin.SALES, evidence=DiscoveryCall(outcome="unqualified"))
    assert info.value.required == ["discovery_call"]
    assert "unqualified" in info.value.message
    held = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
    call = DiscoveryCall(framework="MEDDIC", criteria={"metrics": "3x"}, outcome="qualified", held_at=held)
    assert transition(Stage.SAL, Stage.SQL, origin=Origin.SALES, evidence=call).evidence == call


@pytest.mark.parametrize("target", sorted(NEEDS_REASON))
@pytest.mark.parametrize("reason", [None, "", "   ", "\n\t"])
def test_side_states_need_a_real_reason(target: str, reason: str | None) -> None:
    source = Stage.OPPORTUNITY if target == "recycled" else Stage.SAL
    with pytest.raises(MissingEvidence) as info:
        transition(source, Stage(target), origin=Origin.SALES, reason=reason)
    assert info.value.required == ["reason"]
    move = transition(source, Stage(target), origin=Origin.SALES, reason=" budget frozen ")
    assert move.reason == " budget frozen "
    assert move.bad_reason is None


@pytest.mark.parametrize("bad_reason", list(BadReason))
def test_bad_needs_a_typed_reason(bad_reason: BadReason) -> None:
    with pytest.raises(MissingEvidence) as info:
        transition(Stage.NEW, Stage.BAD, origin=Origin.MARKETING, reason="wrong number")
    assert info.value.required == ["bad_reason"]
    assert all(r.value in info.value.message for r in BadReason)
    move = transition(Stage.NEW, Stage.BAD, origin=Origin.MARKETING, bad_reason=bad_reason, reason="x")
    assert move.bad_reason is bad_reason
    assert move.reason == "x"


def test_bad_reason_is_dropped_on_other_moves() -> None:
    move = transition(
        Stage.NEW, Stage.UNQUALIFIED, origin=Origin.SALES, reason="no fit", bad_reason=BadReason.BAD_FIT
    )
    assert move.bad_reason is None


def test_bad_reasons_are_the_documented_ones() -> None:
    assert {r.value for r in BadReason} == {"invalid_contact_data", "bad_fit", "competitor", "duplicate"}


@pytest.mark.parametrize(("source", "target"), [("new", "cold"), ("mql", "sal"), ("sql", "opportunity")])
def test_imported_evidence_is_refused_on_a_move(source: str, target: str) -> None:
    with pytest.raises(MissingEvidence) as info:
        transition(Stage(source), Stage(target), origin=Origin.SALES, evidence=Imported(system="csv"))
    assert info.value.required == (EVIDENCE_KINDS.get(target) or ["none"])
    assert "first stored" in info.value.message


# ---------------------------------------------------------------------------------------------
# Error types and messages
# ---------------------------------------------------------------------------------------------


def test_error_hierarchy() -> None:
    assert issubclass(IllegalTransition, LifecycleError)
    assert issubclass(MissingEvidence, LifecycleError)
    assert issubclass(LifecycleError, Exception)
    assert LifecycleError.code == "lifecycle_error"


def test_illegal_transition_error_carries_context() -> None:
    with pytest.raises(IllegalTransition) as info:
        transition(Stage.NEW, Stage.CUSTOMER, origin=Origin.MARKETING, evidence=DealWon())
    err = info.value
    assert str(err) == err.message == "cannot move from new to customer"
    assert err.current is Stage.NEW and err.target is Stage.CUSTOMER
    assert values(err.legal) == ["cold", "mql", "nurture", "unqualified", "bad"]
    assert all(isinstance(s, Stage) for s in err.legal)


@pytest.mark.parametrize("stage", ORDER)
def test_staying_put_is_refused_with_a_clear_message(stage: str) -> None:
    with pytest.raises(IllegalTransition) as info:
        transition(Stage(stage), Stage(stage), origin=Origin.SALES, **good_evidence(stage))
    assert info.value.message == f"the lead is already {stage}"


@pytest.mark.parametrize("source", ["new", "cold", "nurture", "recycled"])
def test_marketing_leads_are_told_to_become_mql_first(source: str) -> None:
    with pytest.raises(IllegalTransition) as info:
        transition(Stage(source), Stage.SAL, origin=Origin.MARKETING, **good_evidence("sal"))
    assert "MQL" in info.value.message
    assert Stage.MQL in info.value.legal
    assert Stage.SAL not in info.value.legal


def test_customer_is_terminal() -> None:
    for origin in Origin:
        assert legal_targets(Stage.CUSTOMER, origin) == []
        for target in Stage:
            with pytest.raises(IllegalTransition) as info:
                transition(Stage.CUSTOMER, target, origin=origin, **good_evidence(target.value))
            assert info.value.legal == []


# ---------------------------------------------------------------------------------------------
# initial()
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("target", "origin"), list(itertools.product(ORDER, [MKT, SALES])))
def test_initial_stage_for_new_leads(target: str, origin: str) -> None:
    kwargs = good_evidence(target)
    if target in EXPECTED_INITIAL[origin]:
        move = initial(Stage(target), origin=Origin(origin), **kwargs)
        assert move.source is None
        assert move.target is Stage(target)
        assert move.evidence == kwargs.get("evidence")
        return
    with pytest.raises(IllegalTransition) as info:
        initial(Stage(target), origin=Origin(origin), **kwargs)
    assert values(info.value.legal) == EXPECTED_INITIAL[origin]
    assert info.value.target is Stage(target)
    if target == "sal":
        assert "sales-sourced leads may start at sal" in info.value.message


def test_initial_checks_requirements() -> None:
    with pytest.raises(MissingEvidence) as info:
        initial(Stage.NURTURE, origin=Origin.MARKETING)
    assert info.value.required == ["reason"]
    assert values(info.value.legal) == EXPECTED_INITIAL[MKT]
    with pytest.raises(MissingEvidence) as info:
        initial(Stage.SAL, origin=Origin.SALES)
    assert info.value.required == ["needs_assessment"]
    with pytest.raises(MissingEvidence):
        initial(Stage.SAL, origin=Origin.SALES, evidence=NeedsAssessment(qualified=False))
    with pytest.raises(MissingEvidence):
        initial(Stage.SAL, origin=Origin.SALES, evidence=MarketingReview(note="x"))


@pytest.mark.parametrize(("target", "origin"), list(itertools.product(ORDER, [MKT, SALES])))
def test_imported_history_may_start_anywhere(target: str, origin: str) -> None:
    ev = Imported(system="salesforce", original_value=target.upper())
    move = initial(Stage(target), origin=Origin(origin), evidence=ev)
    assert move == Transition(None, Stage(target), None, BadReason.BAD_FIT if target == "bad" else None, ev)


def test_imported_bad_lead_keeps_its_reason() -> None:
    ev = Imported(system="csv")
    move = initial(Stage.BAD, origin=Origin.SALES, evidence=ev, bad_reason=BadReason.COMPETITOR, reason="r")
    assert move.bad_reason is BadReason.COMPETITOR
    assert move.reason == "r"
    move = initial(Stage.COLD, origin=Origin.SALES, evidence=ev, bad_reason=BadReason.COMPETITOR)
    assert move.bad_reason is None


# ---------------------------------------------------------------------------------------------
# Evidence as JSON
# ---------------------------------------------------------------------------------------------

EXAMPLES = [
    ScoreThreshold(score=81.5, threshold=80, model_version="fit-v2"),
    MarketingReview(note="met at the trade show booth"),
    NeedsAssessment(
        assessment_id="na-7",
        answers={"source": "webinar", "need": "pipeline visibility", "timeline": "Q3"},
        qualified=True,
    ),
    DiscoveryCall(
        call_id="dc-3",
        framework="BANT",
        criteria={"budget": True, "authority": "CFO", "need": True, "timeline": "90 days"},
        outcome="unqualified",
        held_at=datetime(2026, 1, 15, 9, 0, tzinfo=UTC),
    ),
    OpportunityOpened(opportunity_id="op-9", signals=("requested pricing", "started a trial")),
    DealWon(opportunity_id="op-9", amount=49000.0),
    Imported(system="pipedrive", original_value="Qualified"),
]


@pytest.mark.parametrize("evidence", EXAMPLES, ids=lambda e: e.kind)
def test_evidence_round_trips_through_json(evidence: Any) -> None:
    data = evidence_to_dict(evidence)
    assert data is not None
    assert data["kind"] == evidence.kind
    text = json.dumps(data)  # plain JSON, no custom encoder
    assert evidence_from_dict(json.loads(text)) == evidence


def test_evidence_to_dict_shapes() -> None:
    data = evidence_to_dict(EXAMPLES[3])
    assert data is not None
    assert data["held_at"] == "2026-01-15T09:00:00+00:00"
    assert isinstance(data["criteria"], dict)
    signals = evidence_to_dict(EXAMPLES[4])
    assert signals is not None and signals["signals"] == ["requested pricing", "started a trial"]
    assert evidence_to_dict(None) is None


def test_evidence_from_dict_defaults_and_empty() -> None:
    assert evidence_from_dict(None) is None
    assert evidence_from_dict({}) is None
    assert evidence_from_dict({"kind": "needs_assessment"}) == NeedsAssessment()
    assert evidence_from_dict({"kind": "opportunity_opened", "signals": ["demo"]}) == OpportunityOpened(
        signals=("demo",)
    )


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"kind": "telepathy"}, "unknown evidence kind 'telepathy'"),
        ({"score": 90}, "unknown evidence kind None"),
        ({"kind": "deal_won", "price": 5}, "evidence of kind deal_won"),
        ({"kind": "needs_assessment", "qualified": "false"}, "qualified must be true or false"),
        ({"kind": "needs_assessment", "qualified": 0}, "qualified must be true or false"),
        ({"kind": "score_threshold", "score": "95", "threshold": 80}, "score must be a number"),
        ({"kind": "score_threshold", "score": 95, "threshold": True}, "threshold must be a number"),
        ({"kind": "discovery_call", "held_at": "last tuesday"}, ""),
    ],
)
def test_evidence_from_dict_rejects_bad_input(data: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        evidence_from_dict(data)
    assert fragment in str(info.value)


def test_unknown_kind_lists_the_known_ones() -> None:
    with pytest.raises(ValueError) as info:
        evidence_from_dict({"kind": "nope"})
    for kind in ALL_KINDS:
        assert kind in str(info.value)


json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=10)
mappings = st.dictionaries(st.text(max_size=8), json_scalars, max_size=4)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
texts = st.text(max_size=20)

evidences = st.one_of(
    st.builds(ScoreThreshold, score=finite, threshold=finite, model_version=st.none() | texts),
    st.builds(MarketingReview, note=texts),
    st.builds(NeedsAssessment, assessment_id=st.none() | texts, answers=mappings, qualified=st.booleans()),
    st.builds(
        DiscoveryCall,
        call_id=st.none() | texts,
        framework=st.sampled_from(["BANT", "MEDDIC", "CHAMP"]),
        criteria=mappings,
        outcome=st.sampled_from(["qualified", "unqualified"]),
        held_at=st.none() | st.datetimes(timezones=st.just(UTC)),
    ),
    st.builds(OpportunityOpened, opportunity_id=st.none() | texts, signals=st.tuples(texts) | st.just(())),
    st.builds(DealWon, opportunity_id=st.none() | texts, amount=st.none() | finite),
    st.builds(Imported, system=texts, original_value=texts),
)


@given(evidences)
def test_any_evidence_round_trips(evidence: Any) -> None:
    data = evidence_to_dict(evidence)
    assert evidence_from_dict(json.loads(json.dumps(data))) == evidence


# ---------------------------------------------------------------------------------------------
# describe()
# ---------------------------------------------------------------------------------------------


def test_describe_is_the_whole_machine_as_data() -> None:
    machine = describe()
    json.dumps(machine)
    assert [entry["stage"] for entry in machine] == ORDER
    for entry in machine:
        stage = entry["stage"]
        assert entry["description"]
        assert entry["requires_evidence"] == EVIDENCE_KINDS.get(stage, [])
        assert entry["requires_reason"] is (stage in NEEDS_REASON)
        assert entry["requires_bad_reason"] is (stage in NEEDS_BAD_REASON)
        assert entry["next"] == {MKT: expected_legal(stage, MKT), SALES: expected_legal(stage, SALES)}


# ---------------------------------------------------------------------------------------------
# Property: any call agrees with an independent oracle
# ---------------------------------------------------------------------------------------------


def oracle(
    source: str, target: str, origin: str, evidence: Any, reason: str | None, bad: BadReason | None
) -> type[LifecycleError] | None:
    """The error class the rules predict for this call, or None when it must succeed."""

    if origin not in EXPECTED[source].get(target, frozenset()):
        return IllegalTransition
    if isinstance(evidence, Imported):
        return MissingEvidence
    kinds = EVIDENCE_KINDS.get(target)
    if kinds and (evidence is None or evidence.kind not in kinds):
        return MissingEvidence
    if target == "mql" and isinstance(evidence, ScoreThreshold) and not evidence.score >= evidence.threshold:
        return MissingEvidence
    if target == "sal" and isinstance(evidence, NeedsAssessment) and not evidence.qualified:
        return MissingEvidence
    if target == "sql" and isinstance(evidence, DiscoveryCall) and evidence.outcome != "qualified":
        return MissingEvidence
    if target in NEEDS_REASON and not (reason or "").strip():
        return MissingEvidence
    if target in NEEDS_BAD_REASON and bad is None:
        return MissingEvidence
    return None


@settings(max_examples=500)
@given(
    source=st.sampled_from(ORDER),
    target=st.sampled_from(ORDER),
    origin=st.sampled_from([MKT, SALES]),
    evidence=st.none() | evidences,
    reason=st.none() | st.sampled_from(["", "  ", "moved budget", "no need"]),
    bad=st.none() | st.sampled_from(list(BadReason)),
)
def test_transition_agrees_with_the_oracle(
    source: str, target: str, origin: str, evidence: Any, reason: str | None, bad: BadReason | None
) -> None:
    expected = oracle(source, target, origin, evidence, reason, bad)
    if expected is None:
        move = transition(
            Stage(source),
            Stage(target),
            origin=Origin(origin),
            evidence=evidence,
            reason=reason,
            bad_reason=bad,
        )
        assert (move.source, move.target, move.evidence, move.reason) == (
            Stage(source),
            Stage(target),
            evidence,
            reason,
        )
        assert move.bad_reason == (bad if target == "bad" else None)
    else:
        with pytest.raises(expected) as info:
            transition(
                Stage(source),
                Stage(target),
                origin=Origin(origin),
                evidence=evidence,
                reason=reason,
                bad_reason=bad,
            )
        assert type(info.value) is expected
        assert values(info.value.legal) == expected_legal(source, origin)


# ---------------------------------------------------------------------------------------------
# Random walks through the machine
# ---------------------------------------------------------------------------------------------

RESETS = {"new", "cold", "recycled", "nurture"}  # stages after which a marketing lead needs MQL again


def evidence_for(target: str) -> st.SearchStrategy[dict[str, Any]]:
    """Any evidence (and reason) that legitimately opens ``target``."""

    reasons = st.text(min_size=1, max_size=20).filter(lambda s: s.strip() != "")
    if target == "mql":
        score = st.builds(
            ScoreThreshold,
            threshold=st.just(80.0),
            score=st.floats(min_value=80, max_value=1000),
            model_version=st.none() | st.just("v3"),
        )
        return st.fixed_dictionaries({"evidence": score | st.builds(MarketingReview, note=reasons)})
    if target == "sal":
        return st.fixed_dictionaries({"evidence": st.builds(NeedsAssessment, answers=mappings)})
    if target == "sql":
        return st.fixed_dictionaries(
            {"evidence": st.builds(DiscoveryCall, framework=st.sampled_from(["BANT", "MEDDIC"]))}
        )
    if target == "opportunity":
        return st.fixed_dictionaries({"evidence": st.builds(OpportunityOpened, signals=st.tuples(reasons))})
    if target == "customer":
        return st.fixed_dictionaries({"evidence": st.builds(DealWon, amount=st.none() | finite)})
    if target in NEEDS_REASON:
        return st.fixed_dictionaries({"reason": reasons})
    if target == "bad":
        return st.fixed_dictionaries(
            {"bad_reason": st.sampled_from(list(BadReason)), "reason": st.none() | reasons}
        )
    return st.just({})


class LeadWalk(RuleBasedStateMachine):
    """One lead moved at random along legal moves, with every refusal checked on the way."""

    def __init__(self) -> None:
        super().__init__()
        self.origin = MKT
        self.stage = "new"
        self.history: list[str] = []
        self.mql_since_reset = False

    @initialize(origin=st.sampled_from([MKT, SALES]), data=st.data())
    def create(self, origin: str, data: st.DataObject) -> None:
        self.origin = origin
        start = data.draw(st.sampled_from(EXPECTED_INITIAL[origin]), label="start")
        move = initial(Stage(start), origin=Origin(origin), **data.draw(evidence_for(start), label="ev"))
        assert move.source is None and move.target is Stage(start)
        self.stage = start
        self.history = [start]
        self.mql_since_reset = False

    @precondition(lambda self: self.stage != "customer")
    @rule(data=st.data())
    def move(self, data: st.DataObject) -> None:
        options = expected_legal(self.stage, self.origin)
        target = data.draw(st.sampled_from(options), label="target")
        kwargs = data.draw(evidence_for(target), label="evidence")
        move = transition(Stage(self.stage), Stage(target), origin=Origin(self.origin), **kwargs)
        assert (move.source, move.target) == (Stage(self.stage), Stage(target))

        # Invariants about where a stage can be entered from.
        if target == "sal" and self.origin == MKT:
            assert self.mql_since_reset, f"marketing lead reached SAL without MQL: {self.history}"
        if target == "sql":
            assert self.stage == "sal"
        if target == "opportunity":
            assert self.stage == "sql"
        if target == "customer":
            assert self.stage == "opportunity"
        if self.stage in {"unqualified", "bad"}:
            assert target in {"recycled", "bad"}

        if target in RESETS:
            self.mql_since_reset = False
        if target == "mql":
            self.mql_since_reset = True
        self.stage = target
        self.history.append(target)

    @rule(to=st.sampled_from(ORDER), data=st.data())
    def illegal_move_is_refused(self, to: str, data: st.DataObject) -> None:
        target = to
        if target in expected_legal(self.stage, self.origin):
            return
        kwargs = data.draw(evidence_for(target), label="evidence")
        with pytest.raises(IllegalTransition) as info:
            transition(Stage(self.stage), Stage(target), origin=Origin(self.origin), **kwargs)
        assert values(info.value.legal) == expected_legal(self.stage, self.origin)

    @rule(data=st.data())
    def move_without_evidence_is_refused(self, data: st.DataObject) -> None:
        needy = [
            t
            for t in expected_legal(self.stage, self.origin)
            if t in EVIDENCE_KINDS or t in NEEDS_REASON or t in NEEDS_BAD_REASON
        ]
        if not needy:
            return
        target = data.draw(st.sampled_from(needy), label="target")
        with pytest.raises(MissingEvidence):
            transition(Stage(self.stage), Stage(target), origin=Origin(self.origin))

    @invariant()
    def table_holds(self) -> None:
        assert values(legal_targets(Stage(self.stage), Origin(self.origin))) == expected_legal(
            self.stage, self.origin
        )

    @invariant()
    def customer_is_absorbing(self) -> None:
        if "customer" in self.history:
            assert self.stage == "customer"
            assert self.history[-1] == "customer" and self.history.count("customer") == 1
            assert legal_targets(Stage.CUSTOMER, Origin(self.origin)) == []

    @invariant()
    def prospects_were_qualified(self) -> None:
        # An SQL (= prospect) never appears without an SAL right before it.
        for before, after in itertools.pairwise(self.history):
            if after == "sql":
                assert before == "sal"


LeadWalk.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLeadWalk = LeadWalk.TestCase
