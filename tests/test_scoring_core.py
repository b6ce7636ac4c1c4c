"""The pure scoring core: the model document, rules, decay, caps, scaling, grades, thresholds,
explanations, and the agreement of the per-lead and the vectorized paths."""

from __future__ import annotations

import itertools
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadflow.core import scoring as sc

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def model(**overrides: Any) -> sc.ScoringModel:
    doc: dict[str, Any] = {"name": "t", **overrides}
    return sc.parse_model(doc)


def errors_of(doc: dict[str, Any]) -> list[sc.ModelError]:
    with pytest.raises(sc.InvalidScoringModel) as info:
        sc.parse_model(doc)
    return info.value.errors


# ------------------------------------------------------------------------------ the document


def test_default_model_reproduces_the_seed_tiers() -> None:
    m = sc.default_model()
    by_id = {t.id: t for t in m.thresholds}
    assert by_id["marketing_email"].at == 60
    assert [a.type for a in by_id["marketing_email"].actions] == ["move_to_mql", "enroll_sequence"]
    assert by_id["sales_call"].at == 80
    assert by_id["sales_call"].actions[0].type == "create_task"
    assert m.scale == 100
    negative = {r.id for r in m.fit.rules if r.points < 0}
    assert {"free_mail", "student", "competitor", "unsubscribed"} <= negative


def test_document_round_trips() -> None:
    m = sc.default_model()
    doc = m.to_document()
    assert sc.parse_model(doc) == m
    assert doc["fit"]["rules"][0]["in"] == ["executive", "vp", "director"]
    no_decay = model(
        engagement={"half_life_days": None, "rules": [{"id": "d", "event": "demo_request", "points": 5}]}
    )
    assert sc.parse_model(no_decay.to_document()) == no_decay
    assert no_decay.half_life(no_decay.engagement.rules[0]) is None


def test_unknown_attribute_names_the_rule_and_the_field() -> None:
    errs = errors_of(
        {"name": "x", "fit": {"rules": [{"id": "icp", "field": "industri", "in": ["a"], "points": 5}]}}
    )
    assert errs[0].rule == "icp" and errs[0].field == "field"
    assert "industri" in errs[0].msg
    assert errs[0].loc == ("fit", "rules", "icp", "field")


@pytest.mark.parametrize(
    ("rule", "field", "words"),
    [
        ({"field": "industry", "points": 5}, "field", "exactly one"),
        ({"field": "industry", "in": ["a"], "equals": "b", "points": 5}, "equals", "exactly one"),
        ({"field": "industry", "min": 1, "points": 5}, "min", "numeric"),
        ({"field": "employee_count", "min": 10, "max": 5, "points": 5}, "max", "below min"),
        ({"field": "employee_count", "contains": "x", "points": 5}, "contains", "text"),
        ({"field": "employee_count", "in": ["ten"], "points": 5}, "in", "number"),
        ({"field": "free_mail", "equals": "yes", "points": 5}, "equals", "true or false"),
        ({"field": "job_title", "matches": "(unclosed", "points": 5}, "matches", "regular expression"),
        ({"field": "industry", "in": [], "points": 5}, "in", "at least one"),
        ({"field": "industry", "in": ["a"], "points": 0}, "points", "non-zero"),
        ({"field": "industry", "in": ["a"], "points": 5, "weight": 2}, "weight", "Extra"),
        ({"field": "industry", "in": ["a"]}, "points", "required"),
    ],
)
def test_invalid_fit_rules_name_rule_and_field(rule: dict[str, Any], field: str, words: str) -> None:
    errs = errors_of(
        {
            "name": "x",
            "fit": {
                "rules": [
                    {"id": "ok", "field": "country", "equals": "DE", "points": 1},
                    {"id": "bad", **rule},
                ]
            },
        }
    )
    assert errs[0].rule == "bad", errs
    assert errs[0].field == field, errs
    assert words.lower() in errs[0].msg.lower(), errs
    assert str(errs[0]).startswith("rule bad: ")


def test_invalid_engagement_rules_and_thresholds() -> None:
    errs = errors_of(
        {
            "name": "x",
            "engagement": {
                "rules": [
                    {"id": "v", "event": "page_visit", "points": 1},
                    {
                        "id": "w",
                        "event": "page_view",
                        "where": {"url": {"prefix": "/a", "equals": "/b"}},
                        "points": 1,
                    },
                    {"id": "v", "event": "webinar", "points": 1},
                ]
            },
            "thresholds": [
                {"id": "hi", "at": 120, "actions": [{"type": "move_to_mql"}]},
                {"id": "lo", "at": 10, "hysteresis": 10, "actions": [{"type": "move_to_mql"}]},
            ],
        }
    )
    got = {(e.rule, e.field) for e in errs}
    assert ("v", "event") in got
    assert ("w", "url") in got
    assert ("v", "id") in got  # duplicate id
    assert ("hi", "at") in got
    assert ("lo", "hysteresis") in got


def test_invalid_action_names_the_threshold_and_the_field() -> None:
    errs = errors_of(
        {
            "name": "x",
            "thresholds": [{"id": "hook", "at": 50, "actions": [{"type": "webhook", "url": "ftp://x"}]}],
        }
    )
    assert errs[0].rule == "hook" and errs[0].field == "url"
    errs = errors_of({"name": "x", "thresholds": [{"id": "t", "at": 50, "actions": [{"type": "fax"}]}]})
    assert errs[0].rule == "t"
    errs = errors_of({"name": "x", "grades": {"A": 10, "B": 50, "C": 25}})
    assert errs[0].loc == ("grades",)


def test_not_an_object() -> None:
    assert errors_of([1, 2])[0].msg  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ fit rules


def fit_of(rule: dict[str, Any], attrs: dict[str, Any]) -> float:
    m = model(fit={"max_points": 100, "rules": [{"id": "r", **rule}]})
    return sc.score_lead(m, attrs, [], NOW).fit_points


def test_fit_predicates() -> None:
    assert fit_of({"field": "industry", "in": ["Software"], "points": 10}, {"industry": " software "}) == 10
    assert fit_of({"field": "industry", "in": ["Software"], "points": 10}, {"industry": None}) == 0
    assert fit_of({"field": "industry", "not_in": ["Retail"], "points": 4}, {"industry": "Software"}) == 4
    assert (
        fit_of({"field": "industry", "not_in": ["Retail"], "points": 4}, {}) == 0
    )  # missing matches nothing
    assert (
        fit_of({"field": "employee_count", "min": 50, "max": 500, "points": 7}, {"employee_count": 50}) == 7
    )
    assert (
        fit_of({"field": "employee_count", "min": 50, "max": 500, "points": 7}, {"employee_count": 501}) == 0
    )
    assert fit_of({"field": "employee_count", "min": 50, "points": 7}, {"employee_count": 10_000}) == 7
    assert (
        fit_of({"field": "job_title", "matches": r"\bvp\b", "points": 3}, {"job_title": "VP Marketing"}) == 3
    )
    assert (
        fit_of({"field": "job_title", "contains": "market", "points": 3}, {"job_title": "Head of Marketing"})
        == 3
    )
    assert fit_of({"field": "country", "equals": "de", "points": 2}, {"country": "DE"}) == 2
    assert fit_of({"field": "country", "exists": False, "points": -2}, {"country": None}) == -2
    assert fit_of({"field": "free_mail", "equals": True, "points": -5}, {"email": "a@gmail.com"}) == -5
    assert fit_of({"field": "free_mail", "equals": True, "points": -5}, {"email": "a@acme.io"}) == 0
    assert (
        fit_of({"field": "email_domain", "in": ["rival.io"], "points": -50}, {"email": "x@Rival.io"}) == -50
    )
    assert fit_of({"field": "unsubscribed", "equals": True, "points": -9}, {"unsubscribed": True}) == -9
    assert (
        fit_of({"field": "attributes.plan", "in": ["pro"], "points": 6}, {"attributes": {"plan": "Pro"}}) == 6
    )
    assert fit_of({"field": "attributes.seats", "min": 10, "points": 6}, {"attributes": {"seats": "25"}}) == 6
    assert fit_of({"field": "attributes.seats", "min": 10, "points": 6}, {"attributes": None}) == 0


def test_scaling_clips_and_negative_rules_subtract() -> None:
    m = model(
        fit={
            "max_points": 20,
            "rules": [
                {"id": "big", "field": "employee_count", "min": 100, "points": 30},
                {"id": "free", "field": "free_mail", "equals": True, "points": -15},
            ],
        }
    )
    assert sc.score_lead(m, {"employee_count": 500, "email": "a@acme.io"}, [], NOW).fit == 100
    s = sc.score_lead(m, {"employee_count": 500, "email": "a@gmail.com"}, [], NOW)
    assert s.fit_points == 15 and s.fit == 75
    assert sc.score_lead(m, {"email": "a@gmail.com"}, [], NOW).fit == 0  # never below 0


def test_grades() -> None:
    m = model(
        fit={"max_points": 100, "rules": [{"id": "x", "field": "employee_count", "min": 0, "points": 1}]}
    )
    assert [sc.grade_of(m, v) for v in (100, 75, 74.99, 50, 25, 24.9, 0)] == [
        "A",
        "A",
        "B",
        "B",
        "C",
        "D",
        "D",
    ]


def test_weights_make_the_total() -> None:
    m = model(weights={"fit": 1, "engagement": 3})
    assert sc.total_of(m, 100, 0) == 25
    assert sc.total_of(m, 0, 100) == 75


# ------------------------------------------------------------------------------ engagement


def ev(i: int, kind: str, days_ago: float, **props: Any) -> sc.EventRecord:
    return sc.EventRecord(i, kind, NOW - timedelta(days=days_ago), props or None)


def test_decay_halves_points_each_half_life() -> None:
    m = model(
        engagement={"half_life_days": 10, "rules": [{"id": "demo", "event": "demo_request", "points": 40}]}
    )
    assert sc.score_lead(m, {}, [ev(1, "demo_request", 0)], NOW).engagement_points == pytest.approx(40)
    assert sc.score_lead(m, {}, [ev(1, "demo_request", 10)], NOW).engagement_points == pytest.approx(20)
    assert sc.score_lead(m, {}, [ev(1, "demo_request", 20)], NOW).engagement_points == pytest.approx(10)
    assert sc.score_lead(m, {}, [ev(1, "demo_request", -3)], NOW).engagement_points == pytest.approx(40)


def test_rule_half_life_overrides_and_null_disables() -> None:
    m = model(
        engagement={
            "half_life_days": 10,
            "rules": [
                {"id": "a", "event": "webinar", "points": 8, "half_life_days": 5},
                {"id": "b", "event": "trial_start", "points": 8, "half_life_days": None},
            ],
        }
    )
    s = sc.score_lead(m, {}, [ev(1, "webinar", 5), ev(2, "trial_start", 500)], NOW)
    pts = {r.rule_id: r.points for r in s.reasons}
    assert pts == pytest.approx({"a": 4, "b": 8})


def test_cap_per_period_and_property_filter() -> None:
    m = model(
        engagement={
            "half_life_days": None,
            "rules": [
                {
                    "id": "pricing",
                    "event": "page_view",
                    "where": {"url": {"prefix": "/pricing"}},
                    "points": 10,
                    "cap": {"points": 30, "days": 7},
                }
            ],
        }
    )
    # Periods are fixed 7-day windows from the epoch: pick a time at the start of one.
    start = datetime.fromtimestamp(math.ceil(NOW.timestamp() / (7 * 86400)) * 7 * 86400 - 14 * 86400, UTC)
    views = [
        sc.EventRecord(i, "page_view", start + timedelta(hours=i), {"url": "/pricing"}) for i in range(5)
    ]
    views.append(sc.EventRecord(9, "page_view", start, {"url": "/blog"}))
    views.append(sc.EventRecord(10, "page_view", start, {"url": "/Pricing"}))  # case-sensitive
    s = sc.score_lead(m, {}, views, NOW)
    (reason,) = s.reasons
    assert reason.points == pytest.approx(30) and reason.capped and reason.event_count == 5
    assert {e.event_id for e in reason.events} == {0, 1, 2, 3, 4}
    assert all(e.points == pytest.approx(6) for e in reason.events)
    later = [*views, sc.EventRecord(20, "page_view", start + timedelta(days=8), {"url": "/pricing/team"})]
    assert sc.score_lead(m, {}, later, NOW).engagement_points == pytest.approx(40)


def test_explanation_lists_rules_points_and_events() -> None:
    m = sc.default_model()
    s = sc.score_lead(
        m,
        {
            "seniority": "vp",
            "employee_count": 300,
            "industry": "Software",
            "email": "v@acme.io",
            "job_title": "VP Sales",
        },
        [ev(7, "demo_request", 0), ev(8, "email_open", 1)],
        NOW,
    )
    doc = s.explanation()
    ids = [r["rule_id"] for r in doc["reasons"]]
    assert ids == [
        "decision_maker",
        "company_size",
        "target_industry",
        "revenue_role",
        "email_open",
        "demo_request",
    ]
    demo = next(r for r in doc["reasons"] if r["rule_id"] == "demo_request")
    assert demo["events"][0]["id"] == 7 and demo["points"] == 30
    assert sum(r["points"] for r in doc["reasons"]) == pytest.approx(s.fit_points + s.engagement_points)
    assert s.fit == 100 and s.grade == "A"
    assert doc["total"] == pytest.approx((100 + 31 * 1.0 - (1 - 0.5 ** (1 / 30))) / 2, abs=0.01)


# ------------------------------------------------------------------------------ thresholds


def _score(total: float) -> sc.LeadScore:
    return sc.LeadScore(fit=0, engagement=0, total=total, grade="D", fit_points=0, engagement_points=0)


def test_threshold_fires_once_per_crossing_with_hysteresis() -> None:
    m = sc.default_model()
    armed: dict[str, bool] | None = None
    fired_log: list[list[str]] = []
    for total in (10, 61, 59, 62, 56, 61, 54, 60, 85, 79, 81, 74, 80):
        fired, armed = sc.evaluate_thresholds(m, _score(total), armed)
        fired_log.append([t.id for t in fired])
    assert fired_log == [
        [],
        ["marketing_email"],
        [],
        [],  # hovering at the line does not fire again
        [],
        [],
        [],  # 54 < 60 - 5 re-arms
        ["marketing_email"],
        ["sales_call"],
        [],
        [],
        [],  # 74 < 75 re-arms the call
        ["sales_call"],
    ]


def test_a_jump_fires_every_threshold_passed() -> None:
    fired, state = sc.evaluate_thresholds(sc.default_model(), _score(95), {})
    assert [t.id for t in fired] == ["marketing_email", "sales_call"]
    assert state == {"marketing_email": False, "sales_call": False}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.floats(0, 100), min_size=1, max_size=12), min_size=1, max_size=8))
def test_vectorized_thresholds_agree(series: list[list[float]]) -> None:
    m = sc.default_model()
    width = max(len(s) for s in series)
    rows = [s + [s[-1]] * (width - len(s)) for s in series]
    armed = np.ones((len(rows), len(m.thresholds)), dtype=bool)
    states: list[dict[str, bool] | None] = [None] * len(rows)
    for step in range(width):
        totals = np.array([r[step] for r in rows])
        fired, armed = sc.thresholds_step(m, {"total": totals, "fit": totals, "engagement": totals}, armed)
        for i, r in enumerate(rows):
            f, states[i] = sc.evaluate_thresholds(m, _score(r[step]), states[i])
            assert [t.id for t in f] == [t.id for j, t in enumerate(m.thresholds) if fired[i, j]]
            assert [states[i][t.id] for t in m.thresholds] == list(armed[i])  # type: ignore[index]


# ------------------------------------------------------------------------------ the two paths agree

TYPES = ["page_view", "email_open", "demo_request", "webinar", "form_submit"]
URLS = ["/pricing", "/pricing/team", "/blog", "/Pricing", None, 5]

attrs_st = st.fixed_dictionaries(
    {
        "email": st.sampled_from([None, "a@gmail.com", "b@acme.io", "c@rival.io", "d@Yahoo.com"]),
        "seniority": st.sampled_from([None, "vp", "manager", "student", "executive", ""]),
        "industry": st.sampled_from([None, "Software", " software", "Retail", "SOFTWARE "]),
        "employee_count": st.one_of(st.none(), st.integers(0, 20_000)),
        "job_title": st.sampled_from([None, "VP Sales", "Marketing intern", "CTO", "growth lead"]),
        "unsubscribed": st.sampled_from([None, True, False]),
        "attributes": st.one_of(
            st.none(), st.fixed_dictionaries({"plan": st.sampled_from(["pro", "free", "PRO", 3, None])})
        ),
    }
)
event_st = st.tuples(st.sampled_from(TYPES), st.floats(-2, 400), st.sampled_from(URLS))

eng_rule_st = st.fixed_dictionaries(
    {
        "event": st.sampled_from(TYPES),
        "points": st.floats(-20, 40).filter(lambda p: abs(p) > 0.01),
    },
    optional={
        "where": st.sampled_from(
            [
                {"url": {"prefix": "/pricing"}},
                {"url": {"equals": "/blog"}},
                {"url": {"in": ["/blog", "5"]}},
                {"url": {"exists": False}},
                {"url": {"contains": "ric"}},
            ]
        ),
        "cap": st.fixed_dictionaries({"points": st.floats(1, 60), "days": st.integers(1, 30)}),
        "half_life_days": st.one_of(st.none(), st.floats(0.5, 120)),
    },
)
fit_rule_st = st.sampled_from(
    [
        {"field": "industry", "in": ["software"], "points": 15},
        {"field": "seniority", "in": ["vp", "executive"], "points": 20},
        {"field": "seniority", "equals": "student", "points": -30},
        {"field": "employee_count", "min": 50, "max": 5000, "points": 12},
        {"field": "employee_count", "in": [0, 100], "points": 3},
        {"field": "employee_count", "exists": False, "points": -4},
        {"field": "job_title", "matches": r"\b(vp|cto)\b", "points": 9},
        {"field": "job_title", "contains": "intern", "points": -8},
        {"field": "free_mail", "equals": True, "points": -15},
        {"field": "email_domain", "in": ["rival.io"], "points": -60},
        {"field": "unsubscribed", "equals": True, "points": -10},
        {"field": "attributes.plan", "in": ["pro", "3"], "points": 5},
        {"field": "industry", "not_in": ["retail"], "points": 2},
    ]
)
model_st = st.builds(
    lambda fit, eng, w, mp: sc.parse_model(
        {
            "name": "generated",
            "weights": {"fit": w, "engagement": 1 - w},
            "fit": {"rules": [{"id": f"f{i}", **r} for i, r in enumerate(fit)]},
            "engagement": {"max_points": mp, "rules": [{"id": f"e{i}", **r} for i, r in enumerate(eng)]},
        }
    ),
    st.lists(fit_rule_st, max_size=6),
    st.lists(eng_rule_st, max_size=5),
    st.floats(0.1, 0.9),
    st.floats(10, 200),
)


def _vectorized(m: sc.ScoringModel, leads: list[dict[str, Any]], events: list[list[tuple[str, float, Any]]]):  # type: ignore[no-untyped-def]
    n = len(leads)
    cols: dict[str, Any] = {}
    for name in ("email", "seniority", "industry", "job_title", "unsubscribed"):
        cols[name] = np.array([a[name] for a in leads] + [None], dtype=object)[:-1]
    cols["employee_count"] = np.array(
        [np.nan if a["employee_count"] is None else a["employee_count"] for a in leads], dtype=np.float64
    )
    cols["attributes.plan"] = np.array(
        [(a["attributes"] or {}).get("plan") for a in leads] + [None], dtype=object
    )[:-1]
    fit = sc.fit_points_matrix(m, cols, n)
    flat = [(i, t, d, u) for i, evs in enumerate(events) for (t, d, u) in evs]
    lead_idx = np.array([f[0] for f in flat], dtype=np.int64)
    types = np.array([f[1] for f in flat] + [None], dtype=object)[:-1]
    epoch = np.array([(NOW - timedelta(days=f[2])).timestamp() for f in flat], dtype=np.float64)
    urls = np.array([f[3] for f in flat] + [None], dtype=object)[:-1]
    groups = sc.engagement_groups(m, lead_idx, types, epoch, {"url": urls}, NOW)
    eng = sc.engagement_points_from_groups(m, groups, n)
    return fit, eng, sc.scale_scores(m, fit, eng)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    model_st,
    st.lists(st.tuples(attrs_st, st.lists(event_st, max_size=15)), min_size=1, max_size=6),
)
def test_per_lead_and_vectorized_paths_agree(
    m: sc.ScoringModel, leads: list[tuple[dict[str, Any], list[tuple[str, float, Any]]]]
) -> None:
    attrs = [a for a, _ in leads]
    events = [evs for _, evs in leads]
    fit, eng, arrays = _vectorized(m, attrs, events)
    for i, (a, evs) in enumerate(leads):
        records = [
            sc.EventRecord(k, t, NOW - timedelta(days=d), None if u is None else {"url": u})
            for k, (t, d, u) in enumerate(evs)
        ]
        one = sc.score_lead(m, a, records, NOW)
        per_rule = {r.rule_id: r.points for r in one.reasons}
        for j, rule in enumerate(m.fit.rules):
            assert fit[i, j] == per_rule.get(rule.id, 0.0), rule
        for j, erule in enumerate(m.engagement.rules):
            assert eng[i, j] == pytest.approx(per_rule.get(erule.id, 0.0), rel=1e-9, abs=1e-9), erule
        assert arrays.fit[i] == pytest.approx(one.fit, abs=1e-9)
        assert arrays.engagement[i] == pytest.approx(one.engagement, abs=1e-9)
        assert arrays.total[i] == pytest.approx(one.total, abs=1e-9)
        assert arrays.grade[i] == one.grade
        summary = sc.explanation_summary(m, list(fit[i]), list(eng[i]))
        assert {s["rule_id"] for s in summary} == {r.rule_id for r in one.reasons if r.points}


def test_vectorized_handles_no_events_and_missing_columns() -> None:
    m = sc.default_model()
    fit = sc.fit_points_matrix(m, {}, 3)
    assert fit.shape == (3, len(m.fit.rules)) and not fit.any()
    empty = np.zeros(0, dtype=np.int64)
    groups = sc.engagement_groups(m, empty, np.array([], dtype=object), np.zeros(0), {}, NOW)
    eng = sc.engagement_points_from_groups(m, groups, 3)
    arrays = sc.scale_scores(m, fit, eng)
    assert list(arrays.total) == [0, 0, 0] and list(arrays.grade) == ["D", "D", "D"]
    assert sc.fit_fields_needed(m) == [
        "seniority",
        "employee_count",
        "industry",
        "job_title",
        "email",
        "unsubscribed",
    ]


# ------------------------------------------------------------------------------ rolled-forward state


def _records(evs: list[tuple[str, float, Any]], first_id: int = 0) -> list[sc.EventRecord]:
    return [
        sc.EventRecord(first_id + k, t, NOW - timedelta(days=d), None if u is None else {"url": u})
        for k, (t, d, u) in enumerate(evs)
    ]


def _state_points(m: sc.ScoringModel, state: Any, ref: float, as_of: datetime) -> list[float]:
    return list(sc.engagement_points_from_state(m, state[None], np.array([ref]), as_of)[0])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    model_st,
    st.lists(event_st, max_size=25),
    st.lists(st.integers(0, 25), max_size=4),
    st.floats(0, 60),
)
def test_rolled_forward_state_equals_full_recomputation(
    m: sc.ScoringModel, evs: list[tuple[str, float, Any]], cuts: list[int], later: float
) -> None:
    """Events arrive in batches (in time order, as they happen); the state rolled forward batch by
    batch scores every rule as a full recomputation from all the events does, at any later time;
    a batch reaching back before a rule's open period asks for a rebuild, and the rebuild (all
    events folded into an empty state) agrees too."""

    # Oldest first (ages descending), then cut into batches.
    records = _records(sorted(evs, key=lambda e: -e[1]))
    bounds = [0, *sorted(c for c in cuts if c <= len(records)), len(records)]
    state, ref = sc.empty_state(1, len(m.engagement.rules))[0], 0.0
    for lo, hi in itertools.pairwise(bounds):
        folded = sc.fold_events(m, state, ref, records[lo:hi])
        assert folded is not None  # in time order nothing is late
        state, ref = folded
    as_of = NOW + timedelta(days=later)
    if records:
        as_of = max(as_of, max(r.occurred_at for r in records))  # no event after as_of
    full = sc.score_lead(m, {}, records, as_of)
    want = {r.rule_id: r.points for r in full.reasons if r.kind == "engagement"}
    got = _state_points(m, state, ref, as_of)
    for j, rule in enumerate(m.engagement.rules):
        assert got[j] == pytest.approx(want.get(rule.id, 0.0), rel=1e-9, abs=1e-9), rule
    # Out of order: either folded exactly or refused (then rebuilt from every event).
    shuffled = list(reversed(records))
    state2, ref2 = sc.empty_state(1, len(m.engagement.rules))[0], 0.0
    for i, r in enumerate(shuffled):
        folded = sc.fold_events(m, state2, ref2, [r])
        if folded is None:  # rebuild from the events there are so far
            so_far = sorted(shuffled[: i + 1], key=lambda e: e.occurred_at)
            folded = sc.fold_events(m, sc.empty_state(1, len(m.engagement.rules))[0], 0.0, so_far)
            assert folded is not None
        state2, ref2 = folded
    got2 = _state_points(m, state2, ref2, as_of)
    for j, rule in enumerate(m.engagement.rules):
        assert got2[j] == pytest.approx(want.get(rule.id, 0.0), rel=1e-9, abs=1e-9), rule


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(model_st, st.lists(st.lists(event_st, max_size=15), min_size=1, max_size=5))
def test_state_built_from_groups_equals_folding(
    m: sc.ScoringModel, events: list[list[tuple[str, float, Any]]]
) -> None:
    """The bulk build (grouped counts and sums, as SQL hands them over) and the incremental fold
    make states that score alike."""

    n = len(events)
    hls = [sc.DAY * h if (h := m.half_life(r)) is not None else math.inf for r in m.engagement.rules]
    ref = NOW.timestamp()
    keys: dict[tuple[int, int, float], list[float]] = {}
    for i, evs in enumerate(events):
        for rec in _records(evs):
            t = rec.occurred_at.timestamp()
            hits = sc.rule_matcher(m)(rec)
            assert hits == sc.event_rules(m, rec)
            for j in hits:
                cap = m.engagement.rules[j].cap
                p = float(sc.period_of(t, cap.days)) if cap else 0.0
                g = keys.setdefault((i, j, p), [0.0, 0.0])
                g[0] += 1
                g[1] += 2.0 ** ((t - ref) / hls[j])
    k = list(keys)
    built = sc.state_from_groups(
        m,
        np.array([x[0] for x in k], dtype=np.int64),
        np.array([x[1] for x in k], dtype=np.int64),
        np.array([x[2] for x in k], dtype=np.float64),
        np.array([keys[x][0] for x in k], dtype=np.float64),
        np.array([keys[x][1] for x in k], dtype=np.float64),
        n,
    )
    as_of = NOW + timedelta(days=3)  # every generated event is at most 2 days ahead of NOW
    points = sc.engagement_points_from_state(m, built, np.full(n, ref), as_of)
    for i, evs in enumerate(events):
        full = sc.score_lead(m, {}, _records(evs), as_of)
        want = {r.rule_id: r.points for r in full.reasons if r.kind == "engagement"}
        for j, rule in enumerate(m.engagement.rules):
            assert points[i, j] == pytest.approx(want.get(rule.id, 0.0), rel=1e-9, abs=1e-9), rule


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    model_st,
    st.lists(
        st.tuples(st.lists(event_st, max_size=10), st.lists(event_st, max_size=6)), min_size=1, max_size=5
    ),
)
def test_batch_fold_equals_folding_lead_by_lead(
    m: sc.ScoringModel, leads: list[tuple[list[tuple[str, float, Any]], list[tuple[str, float, Any]]]]
) -> None:
    """The incremental path folds a whole ingest batch at once (vectorized): per lead, the same
    state and reference time as folding that lead's new events alone, and the same leads refused
    for a late event (an event before its rule's open cap period)."""

    k = len(m.engagement.rules)
    match = sc.rule_matcher(m)
    states, refs = sc.empty_state(len(leads), k), np.zeros(len(leads))
    rows: list[tuple[int, int, float]] = []
    want: list[tuple[Any, float] | None] = []
    for i, (before, new) in enumerate(leads):
        # A state holding the older events (in time order), then a batch of new ones in any order.
        folded = sc.fold_events(m, states[i], 0.0, _records(sorted(before, key=lambda e: -e[1])))
        assert folded is not None
        states[i], refs[i] = folded
        recs = _records(new)
        want.append(sc.fold_events(m, states[i], float(refs[i]), sorted(recs, key=lambda r: r.occurred_at)))
        rows += [(i, j, r.occurred_at.timestamp()) for r in recs for j in match(r)]
    got, got_ref, late = sc.fold_batch(
        m,
        states,
        refs,
        np.array([r[0] for r in rows], dtype=np.int64),
        np.array([r[1] for r in rows], dtype=np.int64),
        np.array([r[2] for r in rows], dtype=np.float64),
    )
    for i, w in enumerate(want):
        assert bool(late[i]) == (w is None)
        if w is None:
            assert np.array_equal(got[i], states[i]) and got_ref[i] == refs[i]
            continue
        assert got_ref[i] == w[1]
        np.testing.assert_allclose(got[i], w[0], rtol=1e-12, atol=1e-300)


def test_engagement_key_ignores_what_the_state_does_not_depend_on() -> None:
    base = sc.default_model().to_document()
    key = sc.engagement_key(sc.parse_model(base))
    changed = {**base, "weights": {"fit": 0.7, "engagement": 0.3}, "thresholds": []}
    assert sc.engagement_key(sc.parse_model(changed)) == key
    uncapped = json.loads(json.dumps(base))
    uncapped["engagement"]["rules"][4]["points"] = 12  # form_submit: no cap, points apply at the end
    uncapped["engagement"]["max_points"] = 80
    assert sc.engagement_key(sc.parse_model(uncapped)) == key
    capped = json.loads(json.dumps(base))
    capped["engagement"]["rules"][0]["points"] = 12  # pricing_page is capped: shares change
    assert sc.engagement_key(sc.parse_model(capped)) != key
    decay = json.loads(json.dumps(base))
    decay["engagement"]["half_life_days"] = 14
    assert sc.engagement_key(sc.parse_model(decay)) != key
