"""Lead qualification as data (pure): needs-assessment questionnaires and their qualifying rule,
discovery-call frameworks (BANT, MEDDIC, CHAMP, custom), the three qualification levels and the
rep's call script.

Seeds: a needs assessment (source, need, product interest, solution, timeline) makes a lead an
SAL when it shows a need the product meets; a discovery call (budget, authority, need, timeline,
...) makes the SAL an SQL (= prospect) or unqualified. Qualification happens at three levels:
organization (ICP fit), opportunity (need and interest) and stakeholder (decision maker?).

Definitions arrive as JSON documents; ``parse_*`` validate them and raise
:class:`DefinitionError` naming the bad part (``loc``), so the API answers 422 on that field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import Any, Literal

KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


class DefinitionError(ValueError):
    def __init__(self, loc: Sequence[str | int], message: str) -> None:
        super().__init__(f"{'.'.join(str(p) for p in loc)}: {message}")
        self.loc = list(loc)
        self.message = message


def _key(value: Any, loc: Sequence[str | int]) -> str:
    key = str(value or "").strip()
    if not key or not set(key) <= KEY_CHARS or len(key) > 64:
        raise DefinitionError(loc, "must be 1-64 lowercase letters, digits or underscores")
    return key


def _text(value: Any, loc: Sequence[str | int], *, max_len: int = 500, required: bool = True) -> str:
    text = str(value or "").strip()
    if required and not text:
        raise DefinitionError(loc, "is required")
    if len(text) > max_len:
        raise DefinitionError(loc, f"is longer than {max_len} characters")
    return text


def _only(data: Mapping[str, Any], known: set[str], loc: Sequence[str | int]) -> None:
    if not isinstance(data, Mapping):
        raise DefinitionError(loc, "must be an object")
    unknown = sorted(set(data) - known)
    if unknown:
        raise DefinitionError([*loc, unknown[0]], f"is not a known field (known: {', '.join(sorted(known))})")


# ---------------------------------------------------------------------------------------------
# Questionnaires
# ---------------------------------------------------------------------------------------------


class AnswerType(StrEnum):
    TEXT = "text"
    LONG_TEXT = "long_text"
    CHOICE = "choice"
    MULTI_CHOICE = "multi_choice"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATE = "date"


@dataclass(frozen=True)
class Question:
    key: str
    label: str
    type: AnswerType = AnswerType.TEXT
    required: bool = False
    options: tuple[str, ...] = ()
    help: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "label": self.label, "type": self.type.value}
        out["required"] = self.required
        if self.options:
            out["options"] = list(self.options)
        if self.help:
            out["help"] = self.help
        return out


Op = Literal["present", "absent", "equals", "not_equals", "in", "not_in", "gte", "lte", "contains"]
OPS: tuple[str, ...] = ("present", "absent", "equals", "not_equals", "in", "not_in", "gte", "lte", "contains")


@dataclass(frozen=True)
class Condition:
    question: str
    op: str
    value: Any = None
    reason: str = ""

    def holds(self, answers: Mapping[str, Any]) -> bool:
        v = answers.get(self.question)
        empty = v is None or v == "" or v == []
        match self.op:
            case "present":
                return not empty
            case "absent":
                return empty
            case "equals":
                return not empty and bool(v == self.value)
            case "not_equals":
                return bool(v != self.value)
            case "in":
                return not empty and (
                    any(x in self.value for x in v) if isinstance(v, list) else v in self.value
                )
            case "not_in":
                return empty or not (
                    any(x in self.value for x in v) if isinstance(v, list) else v in self.value
                )
            case "gte":
                return isinstance(v, int | float) and not isinstance(v, bool) and bool(v >= self.value)
            case "lte":
                return isinstance(v, int | float) and not isinstance(v, bool) and bool(v <= self.value)
            case "contains":
                if isinstance(v, list):
                    return self.value in v
                return isinstance(v, str) and str(self.value).lower() in v.lower()
        return False  # pragma: no cover - parse_condition refuses other ops

    def describe(self) -> str:
        if self.op in ("present", "absent"):
            return f"{self.question} is {'answered' if self.op == 'present' else 'not answered'}"
        return f"{self.question} {self.op.replace('_', ' ')} {self.value!r}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"question": self.question, "op": self.op}
        if self.op not in ("present", "absent"):
            out["value"] = self.value
        if self.reason:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True)
class QualifyingRule:
    """SAL when every ``qualify_when`` condition holds; unqualified (with that condition's
    reason) when any ``unqualify_when`` condition holds; otherwise ``otherwise`` (nurture by
    default: not ready now, marketing keeps warming the lead)."""

    qualify_when: tuple[Condition, ...] = ()
    unqualify_when: tuple[Condition, ...] = ()
    otherwise: Literal["nurture", "unqualified"] = "nurture"

    def to_dict(self) -> dict[str, Any]:
        return {
            "qualify_when": [c.to_dict() for c in self.qualify_when],
            "unqualify_when": [c.to_dict() for c in self.unqualify_when],
            "otherwise": self.otherwise,
        }


@dataclass(frozen=True)
class Questionnaire:
    key: str
    name: str
    questions: tuple[Question, ...]
    rule: QualifyingRule = field(default_factory=QualifyingRule)
    thank_you: str = "Thank you! Our team will be in touch shortly."

    def question(self, key: str) -> Question | None:
        return next((q for q in self.questions if q.key == key), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "name": self.name,
            "questions": [q.to_dict() for q in self.questions],
            "rule": self.rule.to_dict(),
            "thank_you": self.thank_you,
        }


def _parse_question(data: Any, loc: list[str | int]) -> Question:
    _only(data, {"key", "label", "type", "required", "options", "help"}, loc)
    try:
        kind = AnswerType(str(data.get("type", "text")))
    except ValueError:
        raise DefinitionError(
            [*loc, "type"], f"must be one of {', '.join(t.value for t in AnswerType)}"
        ) from None
    options: tuple[str, ...] = ()
    if kind in (AnswerType.CHOICE, AnswerType.MULTI_CHOICE):
        raw = data.get("options")
        if not isinstance(raw, list) or not raw:
            raise DefinitionError([*loc, "options"], "a choice question needs a non-empty list of options")
        options = tuple(_key(o, [*loc, "options", i]) for i, o in enumerate(raw))
        if len(set(options)) != len(options):
            raise DefinitionError([*loc, "options"], "options must be unique")
    elif data.get("options"):
        raise DefinitionError([*loc, "options"], f"only choice questions have options, not {kind.value}")
    required = data.get("required", False)
    if not isinstance(required, bool):
        raise DefinitionError([*loc, "required"], "must be true or false")
    return Question(
        key=_key(data.get("key"), [*loc, "key"]),
        label=_text(data.get("label"), [*loc, "label"]),
        type=kind,
        required=required,
        options=options,
        help=_text(data.get("help"), [*loc, "help"], required=False),
    )


def _parse_condition(
    data: Any, loc: list[str | int], questions: Mapping[str, Question], *, needs_reason: bool
) -> Condition:
    _only(data, {"question", "op", "value", "reason"}, loc)
    qkey = str(data.get("question") or "")
    question = questions.get(qkey)
    if question is None:
        raise DefinitionError([*loc, "question"], f"no question {qkey!r} in this questionnaire")
    op = str(data.get("op") or "")
    if op not in OPS:
        raise DefinitionError([*loc, "op"], f"must be one of {', '.join(OPS)}")
    value = data.get("value")
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            raise DefinitionError([*loc, "value"], f"'{op}' needs a non-empty list")
        if question.options and not set(value) <= set(question.options):
            bad = next(v for v in value if v not in question.options)
            raise DefinitionError([*loc, "value"], f"{bad!r} is not an option of {qkey}")
    elif op in ("gte", "lte"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise DefinitionError([*loc, "value"], f"'{op}' needs a number")
    elif op in ("equals", "not_equals", "contains") and value is None:
        raise DefinitionError([*loc, "value"], f"'{op}' needs a value")
    reason = _text(data.get("reason"), [*loc, "reason"], required=needs_reason)
    return Condition(qkey, op, value, reason)


def parse_questionnaire(data: Any) -> Questionnaire:
    _only(data, {"key", "name", "questions", "rule", "thank_you"}, [])
    raw_questions = data.get("questions")
    if not isinstance(raw_questions, list) or not raw_questions:
        raise DefinitionError(["questions"], "a questionnaire needs at least one question")
    if len(raw_questions) > 100:
        raise DefinitionError(["questions"], "at most 100 questions")
    questions = [_parse_question(q, ["questions", i]) for i, q in enumerate(raw_questions)]
    by_key: dict[str, Question] = {}
    for i, q in enumerate(questions):
        if q.key in by_key:
            raise DefinitionError(["questions", i, "key"], f"duplicate question key {q.key!r}")
        by_key[q.key] = q
    rule_doc = data.get("rule") or {}
    _only(rule_doc, {"qualify_when", "unqualify_when", "otherwise"}, ["rule"])
    qualify = rule_doc.get("qualify_when") or []
    unqualify = rule_doc.get("unqualify_when") or []
    for name, value in (("qualify_when", qualify), ("unqualify_when", unqualify)):
        if not isinstance(value, list):
            raise DefinitionError(["rule", name], "must be a list of conditions")
    otherwise = rule_doc.get("otherwise", "nurture")
    if otherwise not in ("nurture", "unqualified"):
        raise DefinitionError(["rule", "otherwise"], "must be 'nurture' or 'unqualified'")
    rule = QualifyingRule(
        qualify_when=tuple(
            _parse_condition(c, ["rule", "qualify_when", i], by_key, needs_reason=False)
            for i, c in enumerate(qualify)
        ),
        unqualify_when=tuple(
            _parse_condition(c, ["rule", "unqualify_when", i], by_key, needs_reason=True)
            for i, c in enumerate(unqualify)
        ),
        otherwise=otherwise,
    )
    return Questionnaire(
        key=_key(data.get("key"), ["key"]),
        name=_text(data.get("name"), ["name"], max_len=200),
        questions=tuple(questions),
        rule=rule,
        thank_you=_text(data.get("thank_you"), ["thank_you"], required=False)
        or "Thank you! Our team will be in touch shortly.",
    )


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _answer(q: Question, value: Any) -> Any:
    """One answer in its canonical type; raises ValueError with a message for the rep/form."""

    if value is None or (isinstance(value, str) and not value.strip()) or value == []:
        return None
    match q.type:
        case AnswerType.TEXT | AnswerType.LONG_TEXT:
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                raise ValueError("must be text")
            text = str(value).strip()
            limit = 500 if q.type is AnswerType.TEXT else 5000
            if len(text) > limit:
                raise ValueError(f"is longer than {limit} characters")
            return text
        case AnswerType.CHOICE:
            choice = str(value).strip().lower()
            if choice not in q.options:
                raise ValueError(f"must be one of {', '.join(q.options)}")
            return choice
        case AnswerType.MULTI_CHOICE:
            items = value if isinstance(value, list) else [p for p in str(value).split(",")]
            chosen = []
            for item in items:
                c = str(item).strip().lower()
                if c not in q.options:
                    raise ValueError(f"{item!r} is not one of {', '.join(q.options)}")
                if c not in chosen:
                    chosen.append(c)
            return chosen or None
        case AnswerType.NUMBER:
            if isinstance(value, bool):
                raise ValueError("must be a number")
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ValueError("must be a number") from None
            if number != number or number in (float("inf"), float("-inf")):
                raise ValueError("must be a finite number")
            return int(number) if number.is_integer() else number
        case AnswerType.BOOLEAN:
            if isinstance(value, bool):
                return value
            flag = str(value).strip().lower()
            if flag in _TRUE:
                return True
            if flag in _FALSE:
                return False
            raise ValueError("must be yes or no")
        case AnswerType.DATE:
            try:
                return date.fromisoformat(str(value).strip()).isoformat()
            except ValueError:
                raise ValueError("must be a date like 2026-12-31") from None
    raise ValueError("unknown answer type")  # pragma: no cover


@dataclass
class AnswerErrors(ValueError):
    errors: list[tuple[str, str]]

    def __str__(self) -> str:
        return "; ".join(f"{k}: {m}" for k, m in self.errors)


def validate_answers(
    q: Questionnaire, answers: Mapping[str, Any], *, complete: bool = True
) -> dict[str, Any]:
    """Answers in their canonical types, in question order. Unknown keys and bad values are
    errors; missing required answers are errors when ``complete`` (a rep may save a draft)."""

    errors: list[tuple[str, str]] = []
    known = {x.key for x in q.questions}
    for key in answers:
        if key not in known:
            errors.append((key, f"is not a question of {q.key} (questions: {', '.join(sorted(known))})"))
    out: dict[str, Any] = {}
    for question in q.questions:
        try:
            value = _answer(question, answers.get(question.key))
        except ValueError as exc:
            errors.append((question.key, str(exc)))
            continue
        if value is None:
            if question.required and complete:
                errors.append((question.key, "is required"))
            continue
        out[question.key] = value
    if errors:
        raise AnswerErrors(errors)
    return out


@dataclass(frozen=True)
class AssessmentDecision:
    outcome: Literal["sal", "nurture", "unqualified"]
    reason: str
    checks: tuple[dict[str, Any], ...] = ()


def evaluate_assessment(q: Questionnaire, answers: Mapping[str, Any]) -> AssessmentDecision:
    """Apply the questionnaire's qualifying rule to validated answers; the decision carries
    each condition's result so the outcome is explained."""

    checks: list[dict[str, Any]] = []
    for cond in q.rule.unqualify_when:
        held = cond.holds(answers)
        checks.append({"rule": "unqualify_when", "condition": cond.describe(), "holds": held})
        if held:
            return AssessmentDecision("unqualified", cond.reason, tuple(checks))
    failed: list[Condition] = []
    for cond in q.rule.qualify_when:
        held = cond.holds(answers)
        checks.append({"rule": "qualify_when", "condition": cond.describe(), "holds": held})
        if not held:
            failed.append(cond)
    if not failed:
        return AssessmentDecision("sal", "the needs assessment shows a need the product meets", tuple(checks))
    why = "; ".join(c.reason or f"{c.describe()} does not hold" for c in failed)
    return AssessmentDecision(q.rule.otherwise, f"not qualified: {why}", tuple(checks))


TIMELINE_OPTIONS = ("now", "this_quarter", "next_quarter", "this_year", "later", "no_plans")
SOURCE_OPTIONS = ("search", "referral", "event", "social", "advertising", "partner", "press", "other")

DEFAULT_QUESTIONNAIRE: dict[str, Any] = {
    "key": "default",
    "name": "Needs assessment",
    "questions": [
        {
            "key": "source",
            "label": "Where did you hear about us?",
            "type": "choice",
            "options": list(SOURCE_OPTIONS),
        },
        {
            "key": "need",
            "label": "What are your current goals or priorities?",
            "type": "long_text",
            "required": True,
        },
        {"key": "product_interest", "label": "Which of our products interest you?", "type": "text"},
        {
            "key": "solution",
            "label": "How do you see our product helping you?",
            "type": "long_text",
        },
        {
            "key": "timeline",
            "label": "When are you planning to purchase?",
            "type": "choice",
            "options": list(TIMELINE_OPTIONS),
            "required": True,
        },
    ],
    "rule": {
        "qualify_when": [
            {"question": "need", "op": "present", "reason": "no goal or priority was named"},
            {"question": "solution", "op": "present", "reason": "no use of the product was named"},
            {
                "question": "timeline",
                "op": "in",
                "value": ["now", "this_quarter", "next_quarter", "this_year"],
                "reason": "no purchase planned within a year",
            },
        ],
        "unqualify_when": [],
        "otherwise": "nurture",
    },
    "thank_you": "Thank you! Our team will be in touch shortly.",
}


# ---------------------------------------------------------------------------------------------
# Discovery-call frameworks
# ---------------------------------------------------------------------------------------------

RATING_MAX = 3
RATING_LABELS = {0: "not met / unknown", 1: "weak", 2: "met", 3: "strong"}


@dataclass(frozen=True)
class Criterion:
    key: str
    label: str
    questions: tuple[str, ...]
    required: bool = True
    min_rating: int = 2
    # Needs-assessment answers that speak to this criterion (quoted back in the call script).
    assessment_keys: tuple[str, ...] = ()
    # The buying role this criterion establishes when rated met (authority -> decision maker).
    stakeholder: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "label": self.label,
            "questions": list(self.questions),
            "required": self.required,
            "min_rating": self.min_rating,
            "assessment_keys": list(self.assessment_keys),
            "stakeholder": self.stakeholder,
        }


@dataclass(frozen=True)
class Framework:
    key: str
    name: str
    criteria: tuple[Criterion, ...]
    min_total: int = 0  # optional: the ratings must also add up to this

    def criterion(self, key: str) -> Criterion | None:
        return next((c for c in self.criteria if c.key == key), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "name": self.name,
            "criteria": [c.to_dict() for c in self.criteria],
            "min_total": self.min_total,
            "rating_scale": {str(k): v for k, v in RATING_LABELS.items()},
        }


def parse_framework(data: Any) -> Framework:
    _only(data, {"key", "name", "criteria", "min_total", "rating_scale"}, [])
    raw = data.get("criteria")
    if not isinstance(raw, list) or not raw:
        raise DefinitionError(["criteria"], "a framework needs at least one criterion")
    criteria: list[Criterion] = []
    seen: set[str] = set()
    known = {"key", "label", "questions", "required", "min_rating", "assessment_keys", "stakeholder"}
    for i, c in enumerate(raw):
        loc: list[str | int] = ["criteria", i]
        _only(c, known, loc)
        key = _key(c.get("key"), [*loc, "key"])
        if key in seen:
            raise DefinitionError([*loc, "key"], f"duplicate criterion key {key!r}")
        seen.add(key)
        questions = c.get("questions") or []
        if not isinstance(questions, list) or not questions:
            raise DefinitionError([*loc, "questions"], "list at least one question the rep asks")
        min_rating = c.get("min_rating", 2)
        if (
            isinstance(min_rating, bool)
            or not isinstance(min_rating, int)
            or not 0 <= min_rating <= RATING_MAX
        ):
            raise DefinitionError([*loc, "min_rating"], f"must be an integer from 0 to {RATING_MAX}")
        for flag in ("required", "stakeholder"):
            if not isinstance(c.get(flag, False), bool):
                raise DefinitionError([*loc, flag], "must be true or false")
        criteria.append(
            Criterion(
                key=key,
                label=_text(c.get("label"), [*loc, "label"], max_len=200),
                questions=tuple(_text(q, [*loc, "questions", j]) for j, q in enumerate(questions)),
                required=c.get("required", True),
                min_rating=min_rating,
                assessment_keys=tuple(
                    _key(k, [*loc, "assessment_keys", j])
                    for j, k in enumerate(c.get("assessment_keys") or [])
                ),
                stakeholder=c.get("stakeholder", False),
            )
        )
    min_total = data.get("min_total", 0)
    if isinstance(min_total, bool) or not isinstance(min_total, int) or min_total < 0:
        raise DefinitionError(["min_total"], "must be a non-negative integer")
    if min_total > RATING_MAX * len(criteria):
        raise DefinitionError(
            ["min_total"], f"cannot exceed {RATING_MAX * len(criteria)} (all criteria strong)"
        )
    return Framework(
        key=_key(data.get("key"), ["key"]),
        name=_text(data.get("name"), ["name"], max_len=200),
        criteria=tuple(criteria),
        min_total=min_total,
    )


def _c(key: str, label: str, *questions: str, **kw: Any) -> dict[str, Any]:
    return {"key": key, "label": label, "questions": list(questions), **kw}


PRESETS: dict[str, dict[str, Any]] = {
    "bant": {
        "key": "bant",
        "name": "BANT",
        "criteria": [
            _c(
                "budget",
                "Budget",
                "Is there budget set aside for solving this, and roughly what range?",
                "How are purchases like this usually funded?",
            ),
            _c(
                "authority",
                "Authority",
                "Who besides you is involved in choosing a solution?",
                "Who signs off on the purchase?",
                stakeholder=True,
            ),
            _c(
                "need",
                "Need",
                "What is the biggest problem with the way you work today?",
                "What happens if nothing changes?",
                assessment_keys=["need", "solution", "product_interest"],
            ),
            _c(
                "timeline",
                "Timeline",
                "When do you need a solution in place, and what drives that date?",
                assessment_keys=["timeline"],
            ),
        ],
    },
    "meddic": {
        "key": "meddic",
        "name": "MEDDIC",
        "criteria": [
            _c("metrics", "Metrics", "Which numbers would tell you this worked?", "What are they today?"),
            _c(
                "economic_buyer",
                "Economic buyer",
                "Who owns the budget this comes from?",
                "Can we include them in the next conversation?",
                stakeholder=True,
            ),
            _c("decision_criteria", "Decision criteria", "How will you compare the options you look at?"),
            _c(
                "decision_process",
                "Decision process",
                "What are the steps from here to a signed order, and who takes them?",
                assessment_keys=["timeline"],
            ),
            _c(
                "identify_pain",
                "Identify pain",
                "What is the problem costing you today?",
                assessment_keys=["need", "solution"],
            ),
            _c("champion", "Champion", "Who inside would push for this with you?", required=False),
        ],
    },
    "champ": {
        "key": "champ",
        "name": "CHAMP",
        "criteria": [
            _c(
                "challenges",
                "Challenges",
                "What challenges brought you to look for a solution?",
                assessment_keys=["need", "solution"],
            ),
            _c("authority", "Authority", "Who makes the final decision?", stakeholder=True),
            _c("money", "Money", "Is budget available, or would it need to be requested?"),
            _c(
                "prioritization",
                "Prioritization",
                "Where does this rank against your other priorities this year?",
                assessment_keys=["timeline"],
            ),
        ],
    },
}


@dataclass(frozen=True)
class CallRecommendation:
    outcome: Literal["sql", "unqualified"]
    total: int
    unmet: tuple[str, ...]
    reason: str


def validate_call_criteria(fw: Framework, criteria: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{criterion: {"answer": text, "rating": 0..3}}`` checked against the framework."""

    out: dict[str, dict[str, Any]] = {}
    for key in criteria:
        if fw.criterion(key) is None:
            keys = ", ".join(c.key for c in fw.criteria)
            raise DefinitionError(["criteria", key], f"is not a criterion of {fw.name} ({keys})")
    for c in fw.criteria:
        raw = criteria.get(c.key)
        if raw is None:
            out[c.key] = {"answer": "", "rating": 0}
            continue
        if not isinstance(raw, Mapping):
            raise DefinitionError(["criteria", c.key], "must be an object with answer and rating")
        _only(raw, {"answer", "rating"}, ["criteria", c.key])
        rating = raw.get("rating", 0)
        if isinstance(rating, bool) or not isinstance(rating, int) or not 0 <= rating <= RATING_MAX:
            raise DefinitionError(["criteria", c.key, "rating"], f"must be an integer from 0 to {RATING_MAX}")
        answer = _text(raw.get("answer"), ["criteria", c.key, "answer"], max_len=5000, required=False)
        out[c.key] = {"answer": answer, "rating": rating}
    return out


def recommend(fw: Framework, criteria: Mapping[str, Mapping[str, Any]]) -> CallRecommendation:
    """SQL when every required criterion reaches its minimum rating (and the total reaches the
    framework's minimum); the reps' outcome may differ only with a stated reason."""

    total = sum(int(criteria.get(c.key, {}).get("rating", 0)) for c in fw.criteria)
    unmet = tuple(
        c.key
        for c in fw.criteria
        if c.required and int(criteria.get(c.key, {}).get("rating", 0)) < c.min_rating
    )
    if unmet:
        labels = ", ".join(fw.criterion(k).label for k in unmet if fw.criterion(k))  # type: ignore[union-attr]
        return CallRecommendation("unqualified", total, unmet, f"{fw.name} criteria not met: {labels}")
    if total < fw.min_total:
        return CallRecommendation(
            "unqualified", total, (), f"{fw.name} total {total} is below the minimum {fw.min_total}"
        )
    return CallRecommendation("sql", total, (), f"every required {fw.name} criterion is met")


# ---------------------------------------------------------------------------------------------
# Three-level qualification
# ---------------------------------------------------------------------------------------------


class Level(StrEnum):
    ORGANIZATION = "organization"
    OPPORTUNITY = "opportunity"
    STAKEHOLDER = "stakeholder"


class LevelStatus(StrEnum):
    QUALIFIED = "qualified"
    PARTIAL = "partial"
    UNQUALIFIED = "unqualified"
    UNKNOWN = "unknown"


class BuyingRole(StrEnum):
    DECISION_MAKER = "decision_maker"
    INFLUENCER = "influencer"
    USER = "user"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ICP:
    """The ideal customer profile: empty lists mean any."""

    industries: tuple[str, ...] = ()
    min_employees: int | None = None
    max_employees: int | None = None
    countries: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "industries": list(self.industries),
            "min_employees": self.min_employees,
            "max_employees": self.max_employees,
            "countries": list(self.countries),
        }


def parse_icp(data: Any) -> ICP:
    _only(data, {"industries", "min_employees", "max_employees", "countries"}, [])
    for name in ("industries", "countries"):
        if not isinstance(data.get(name) or [], list):
            raise DefinitionError([name], "must be a list")
    bounds: dict[str, int | None] = {}
    for name in ("min_employees", "max_employees"):
        v = data.get(name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise DefinitionError([name], "must be a non-negative integer or null")
        bounds[name] = v
    lo, hi = bounds["min_employees"], bounds["max_employees"]
    if lo is not None and hi is not None and lo > hi:
        raise DefinitionError(["max_employees"], "must not be below min_employees")
    return ICP(
        industries=tuple(str(i).strip().lower() for i in data.get("industries") or []),
        min_employees=lo,
        max_employees=hi,
        countries=tuple(str(c).strip().upper() for c in data.get("countries") or []),
    )


@dataclass(frozen=True)
class LevelResult:
    status: LevelStatus
    reason: str


def organization_fit(
    icp: ICP, industry: str | None, employees: int | None, country: str | None
) -> LevelResult:
    misses: list[str] = []
    unknown: list[str] = []
    if icp.industries:
        if not industry:
            unknown.append("industry")
        elif industry.strip().lower() not in icp.industries:
            misses.append(f"industry {industry} is outside the ICP")
    if icp.min_employees is not None or icp.max_employees is not None:
        if employees is None:
            unknown.append("company size")
        elif icp.min_employees is not None and employees < icp.min_employees:
            misses.append(f"{employees} employees is below {icp.min_employees}")
        elif icp.max_employees is not None and employees > icp.max_employees:
            misses.append(f"{employees} employees is above {icp.max_employees}")
    if icp.countries:
        if not country:
            unknown.append("country")
        elif country.upper() not in icp.countries:
            misses.append(f"country {country} is outside the ICP regions")
    if misses:
        return LevelResult(LevelStatus.UNQUALIFIED, "; ".join(misses))
    if unknown:
        return LevelResult(LevelStatus.UNKNOWN, f"unknown: {', '.join(unknown)}")
    return LevelResult(LevelStatus.QUALIFIED, "fits the ideal customer profile")


def opportunity_level(assessment_outcome: str | None, call_need_met: bool | None) -> LevelResult:
    """Need and interest: a discovery call's need criterion outranks the needs assessment."""

    if call_need_met is True:
        return LevelResult(LevelStatus.QUALIFIED, "the discovery call confirmed the need")
    if call_need_met is False:
        return LevelResult(LevelStatus.UNQUALIFIED, "the discovery call found no confirmed need")
    if assessment_outcome == "sal":
        return LevelResult(LevelStatus.QUALIFIED, "the needs assessment showed a need the product meets")
    if assessment_outcome == "nurture":
        return LevelResult(LevelStatus.PARTIAL, "interest shown, but not ready to buy")
    if assessment_outcome == "unqualified":
        return LevelResult(LevelStatus.UNQUALIFIED, "the needs assessment disqualified the lead")
    return LevelResult(LevelStatus.UNKNOWN, "no needs assessment or discovery call yet")


_DM_WORDS = ("chief", "ceo", "cfo", "cto", "cio", "coo", "cmo", "founder", "owner", "president", "partner")
_INFLUENCER_WORDS = ("vp", "vice president", "head", "director", "manager", "lead", "principal")


def infer_buying_role(seniority: str | None, job_title: str | None) -> BuyingRole:
    """A first guess from seniority and title; the discovery call's authority criterion or a
    rep's edit replaces it."""

    s = (seniority or "").strip().lower()
    if s in ("c_level", "c-level", "executive", "owner", "founder"):
        return BuyingRole.DECISION_MAKER
    if s in ("vp", "director", "head", "manager"):
        return BuyingRole.INFLUENCER
    title = f" {(job_title or '').lower()} "
    if any(f" {w}" in title for w in _DM_WORDS):
        return BuyingRole.DECISION_MAKER
    if any(f" {w}" in title for w in _INFLUENCER_WORDS):
        return BuyingRole.INFLUENCER
    if s or title.strip():
        return BuyingRole.USER
    return BuyingRole.UNKNOWN


def stakeholder_level(role: BuyingRole) -> LevelResult:
    match role:
        case BuyingRole.DECISION_MAKER:
            return LevelResult(LevelStatus.QUALIFIED, "speaking with the decision maker")
        case BuyingRole.INFLUENCER:
            return LevelResult(
                LevelStatus.PARTIAL, "an influencer: the decision maker still needs to be engaged"
            )
        case BuyingRole.USER:
            return LevelResult(LevelStatus.PARTIAL, "a user of the product: find the decision maker")
    return LevelResult(LevelStatus.UNKNOWN, "the contact's role in the decision is not known yet")


# ---------------------------------------------------------------------------------------------
# Call script
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallFacts:
    """What research knows about the lead and its account."""

    first_name: str | None = None
    last_name: str | None = None
    job_title: str | None = None
    company: str | None = None
    industry: str | None = None
    employee_count: int | None = None
    country: str | None = None
    source: str | None = None
    campaign: str | None = None
    recent_activities: tuple[str, ...] = ()
    answers: Mapping[str, Any] = field(default_factory=dict)
    committee: tuple[str, ...] = ()  # other people of the account already in touch
    rep_name: str | None = None


def _say(value: Any) -> str:
    return (
        ", ".join(str(v).replace("_", " ") for v in value)
        if isinstance(value, list)
        else str(value).replace("_", " ")
    )


def call_script(
    fw: Framework, facts: CallFacts, questionnaire: Questionnaire | None = None
) -> dict[str, Any]:
    """Opening, agenda, questions and close for a discovery call, from the research facts and
    the framework's questions. Answers from the needs assessment are quoted back for the rep to
    confirm instead of asked again."""

    name = facts.first_name or "there"
    company = facts.company or "your company"
    rep = facts.rep_name or "your account executive"
    research: list[str] = []
    if facts.job_title:
        research.append(f"{facts.first_name or 'The lead'} is {facts.job_title} at {company}.")
    firmo = [
        x
        for x in (
            facts.industry,
            f"{facts.employee_count:,} employees" if facts.employee_count else None,
            facts.country,
        )
        if x
    ]
    if firmo:
        research.append(f"{company}: {', '.join(firmo)}.")
    if facts.source:
        research.append(
            f"Came in through {facts.source}" + (f" ({facts.campaign})" if facts.campaign else "") + "."
        )
    if facts.recent_activities:
        research.append(f"Recently: {', '.join(facts.recent_activities)}.")
    if facts.committee:
        research.append(f"Others at {company} we talk to: {', '.join(facts.committee)}.")

    opening = [f"Hi {name}, this is {rep}. Thanks for making the time today."]
    if facts.answers.get("need"):
        opening.append(
            f'In your assessment you mentioned: "{_say(facts.answers["need"])}". I\'d like to dig into that.'
        )
    elif facts.source:
        opening.append(f"You found us through {_say(facts.source)}; I'd love to hear what prompted that.")
    agenda = [
        f"Understand the situation at {company} and what you want to achieve",
        f"Walk through the {fw.name} points that matter for a decision: "
        + ", ".join(c.label.lower() for c in fw.criteria),
        "Agree on whether and how we continue, and the next step",
    ]
    questions: list[dict[str, Any]] = []
    for c in fw.criteria:
        known = []
        for key in c.assessment_keys:
            if facts.answers.get(key):
                label = key
                if questionnaire is not None and (q := questionnaire.question(key)) is not None:
                    label = q.label
                known.append(f'{label} -> "{_say(facts.answers[key])}"')
        questions.append(
            {
                "criterion": c.key,
                "label": c.label,
                "required": c.required,
                "ask": list(c.questions),
                "confirm": [f"Earlier answer: {k}. Is that still right?" for k in known],
            }
        )
    close = [
        "Summarize what you heard for each point and check it back with them.",
        "If qualified: propose the next meeting (demo or proposal) with the decision maker in the room.",
        "If not a fit now: say so honestly and offer a referral or useful resources.",
        f"Thank {name} and confirm the follow-up in writing today.",
    ]
    return {
        "framework": fw.key,
        "research": research,
        "opening": opening,
        "agenda": agenda,
        "questions": questions,
        "close": close,
    }
