"""The pure pipeline rules: stage lists, stage moves, rotting, histogram quantiles."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leadflow.core import pipeline as core
from leadflow.core.pipeline import PipelineError, StageKind, StageSpec

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def test_default_stages_are_valid_and_ordered() -> None:
    core.validate_stages(core.DEFAULT_STAGES)
    probs = [s.probability for s in core.DEFAULT_STAGES if s.kind is StageKind.OPEN]
    assert probs == sorted(probs)


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ([], "needs stages"),
        ([StageSpec("a", "A", 10), StageSpec("w", "W", 100, StageKind.WON)], "one lost"),
        ([StageSpec("w", "W", 100, StageKind.WON), StageSpec("l", "L", 0, StageKind.LOST)], "open stage"),
        ([StageSpec("a", "A", 10), StageSpec("a", "B", 20)], "duplicate"),
        ([StageSpec("a", "A", 120)], "between 0 and 100"),
        ([StageSpec("a b", "A", 10)], "letters"),
    ],
)
def test_invalid_stage_lists(stages: list[StageSpec], message: str) -> None:
    with pytest.raises(PipelineError, match=message):
        core.validate_stages(stages)


def test_moves() -> None:
    o, w, lost = StageKind.OPEN, StageKind.WON, StageKind.LOST
    assert core.decide_move(
        o, o, same_stage=False, reason_key=None, allowed_reasons=[], reason_required=False
    ) == core.Move(core.Status.OPEN, False)
    with pytest.raises(PipelineError, match="needs a reason"):
        core.decide_move(
            o, lost, same_stage=False, reason_key=None, allowed_reasons=["price"], reason_required=True
        )
    with pytest.raises(PipelineError, match="unknown"):
        core.decide_move(
            o, w, same_stage=False, reason_key="luck", allowed_reasons=["fit"], reason_required=False
        )
    with pytest.raises(PipelineError, match="reopen"):
        core.decide_move(
            w, lost, same_stage=False, reason_key="price", allowed_reasons=["price"], reason_required=True
        )
    assert core.decide_move(
        lost, o, same_stage=False, reason_key=None, allowed_reasons=[], reason_required=False
    ).reopened
    with pytest.raises(PipelineError, match="already"):
        core.decide_move(o, o, same_stage=True, reason_key=None, allowed_reasons=[], reason_required=False)


def test_rotting_and_weighting() -> None:
    entered = NOW - timedelta(days=20)
    assert core.is_rotting(entered, None, 14, NOW)
    assert not core.is_rotting(entered, NOW - timedelta(days=2), 14, NOW)  # touched recently
    assert not core.is_rotting(entered, None, None, NOW)
    assert core.idle_days(entered, None, NOW) == 20.0
    assert core.weighted(12345.0, 25) == 3086.25
    assert core.ready(["demo_request", "demo_request"], core.SignalRule(min_signals=2)) is False
    assert core.ready(["demo_request", "trial_start"], core.SignalRule(min_signals=2)) is True


@given(
    st.lists(st.integers(min_value=0, max_value=500), min_size=1, max_size=200),
    st.sampled_from([0.5, 0.9, 0.1, 1.0]),
)
def test_histogram_quantile_is_nearest_rank(values: list[int], q: float) -> None:
    ordered = sorted(values)
    expected = ordered[max(1, math.ceil(q * len(ordered))) - 1]
    assert core.percentile_from_histogram(Counter(values), q) == expected
    assert core.percentile_from_histogram({}, q) is None
