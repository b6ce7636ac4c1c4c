"""Sequence definitions and their planning rules (pure: no database, no web).

A sequence is an ordered list of steps: ``call`` (a task for the lead's owner), ``email`` (a
message rendered from a template with merge fields) and ``wait`` (N business days in the lead's
time zone). Waits are not executed; they delay the next call or email.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any, Literal

from jinja2 import Template, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

KEY_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,59}$")


class StopReason(StrEnum):
    REPLY = "reply"
    MEETING_BOOKED = "meeting_booked"
    STAGE_CHANGE = "stage_change"
    UNSUBSCRIBED = "unsubscribed"
    MAX_ATTEMPTS = "max_attempts"
    COMPLETED = "completed"  # every step ran
    MANUAL = "manual"
    LEAD_CLOSED = "lead_closed"  # merged away, erased, or in a stage that takes no follow-up


class Exhausted(StrEnum):
    """Where a lead goes when the attempts ran out without an answer."""

    COLD = "cold"
    NURTURE = "nurture"
    NONE = "none"


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CallStep(_Step):
    type: Literal["call"]
    title: str = Field("Call {{ lead.full_name }}", min_length=1, max_length=300)
    notes: str | None = Field(None, max_length=5000)


class EmailStep(_Step):
    type: Literal["email"]
    subject: str = Field(min_length=1, max_length=500)
    body: str = Field(min_length=1, max_length=50_000)


class WaitStep(_Step):
    type: Literal["wait"]
    days: int = Field(ge=1, le=60, description="business days in the lead's time zone")


Step = Annotated[CallStep | EmailStep | WaitStep, Field(discriminator="type")]
_STEPS: TypeAdapter[list[Step]] = TypeAdapter(list[Step])

# Merge fields render in a sandbox: templates are written by users, and a template must not reach
# Python internals. Missing values render empty (a lead without a first name is not an error).
TEMPLATES = SandboxedEnvironment(autoescape=False, keep_trailing_newline=True)


class StepError(ValueError):
    def __init__(self, loc: list[str | int], message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


def parse_steps(raw: Any) -> list[CallStep | EmailStep | WaitStep]:
    """Validate a step list (raises StepError naming the step and field)."""

    try:
        steps = _STEPS.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [p for p in first["loc"] if p not in ("call", "email", "wait")]
        raise StepError([str(p) if not isinstance(p, int) else p for p in loc], first["msg"]) from None
    if not any(not isinstance(s, WaitStep) for s in steps):
        raise StepError([], "a sequence needs at least one call or email step")
    for i, s in enumerate(steps):
        fields: dict[str, str] = {}
        if isinstance(s, CallStep):
            fields = {"title": s.title}
        elif isinstance(s, EmailStep):
            fields = {"subject": s.subject, "body": s.body}
        for name, source in fields.items():
            try:
                TEMPLATES.parse(source)
            except TemplateSyntaxError as exc:
                raise StepError([i, name], f"template error on line {exc.lineno}: {exc.message}") from None
    return steps


@dataclass(frozen=True)
class NextStep:
    index: int
    wait_days: int  # business days to wait before it (sum of the waits in between)


def next_step(steps: Sequence[CallStep | EmailStep | WaitStep], after: int | None) -> NextStep | None:
    """The next call or email step after index ``after`` (None: from the start), with the
    business days of waiting before it; None when the sequence has no more steps."""

    wait = 0
    for i in range(0 if after is None else after + 1, len(steps)):
        step = steps[i]
        if isinstance(step, WaitStep):
            wait += step.days
        else:
            return NextStep(i, wait)
    return None


@lru_cache(maxsize=512)
def _compiled(source: str) -> Template:
    return TEMPLATES.from_string(source)


def render(source: str, context: dict[str, Any]) -> str:
    return _compiled(source).render(context)


@lru_cache(maxsize=256)
def _parsed(document: str) -> tuple[CallStep | EmailStep | WaitStep, ...]:
    return tuple(parse_steps(json.loads(document)))


def stored_steps(raw: list[dict[str, Any]]) -> tuple[CallStep | EmailStep | WaitStep, ...]:
    """Steps already validated when their sequence was saved, parsed once per distinct list."""

    return _parsed(json.dumps(raw, sort_keys=True))


# Seeds: "a call and an email about every other day", stopping after five attempts.
DEFAULT_SEQUENCE: dict[str, Any] = {
    "key": "default-follow-up",
    "name": "Default follow-up",
    "description": (
        "A call and an email about every other day; stops after 5 attempts, on a reply, a booked "
        "meeting, a stage change or an unsubscribe; then the lead goes to nurture."
    ),
    "max_attempts": 5,
    "on_exhausted": Exhausted.NURTURE.value,
    "steps": [
        {"type": "call", "title": "Call {{ lead.full_name }} ({{ lead.company }}): first follow-up"},
        {
            "type": "email",
            "subject": "{{ lead.first_name or 'Hello' }}, following up from {{ owner.name }}",
            "body": (
                "Hi {{ lead.first_name or 'there' }},\n\n"
                "I tried to reach you by phone about {{ lead.company or 'your team' }}'s interest. "
                "Would a short call this week help? Just reply with a time that suits you.\n\n"
                "Best,\n{{ owner.name }}\n"
            ),
        },
        {"type": "wait", "days": 2},
        {"type": "call", "title": "Call {{ lead.full_name }}: second attempt"},
        {"type": "wait", "days": 2},
        {
            "type": "email",
            "subject": "Quick question, {{ lead.first_name or 'there' }}",
            "body": (
                "Hi {{ lead.first_name or 'there' }},\n\n"
                "Following up on my last note: is improving this on your list for this quarter? "
                "If someone else owns it, I'd be grateful for a pointer.\n\n"
                "{{ owner.name }}\n"
            ),
        },
        {"type": "wait", "days": 2},
        {"type": "call", "title": "Call {{ lead.full_name }}: last attempt"},
        {"type": "wait", "days": 2},
        {
            "type": "email",
            "subject": "Closing the loop",
            "body": (
                "Hi {{ lead.first_name or 'there' }},\n\n"
                "I haven't heard back, so I'll stop following up for now. If timing changes, "
                "reply to this email and I'll be glad to help.\n\n{{ owner.name }}\n"
            ),
        },
    ],
}


# The default scoring model's "marketing email at 60" (seeds) enrolls a lead here: emails only,
# from the owner, three of them about every other business day; an unanswered lead stays where it
# is (the sales call at 80 is a task of its own).
MARKETING_EMAIL_SEQUENCE: dict[str, Any] = {
    "key": "marketing-email",
    "name": "Marketing email",
    "description": (
        "Three emails about every other day for a newly marketing-qualified lead; stops on a reply, "
        "a booked meeting, a stage change or an unsubscribe."
    ),
    "max_attempts": 3,
    "on_exhausted": Exhausted.NONE.value,
    "steps": [
        {
            "type": "email",
            "subject": "{{ lead.first_name or 'Hello' }}, resources for {{ lead.company or 'your team' }}",
            "body": (
                "Hi {{ lead.first_name or 'there' }},\n\n"
                "Thanks for your interest. Here is what teams like {{ lead.company or 'yours' }} "
                "usually look at first; if a short walkthrough would help, just reply to this email.\n\n"
                "Best,\n{{ owner.name }}\n"
            ),
        },
        {"type": "wait", "days": 2},
        {
            "type": "email",
            "subject": "How others solved it, {{ lead.first_name or 'there' }}",
            "body": (
                "Hi {{ lead.first_name or 'there' }},\n\n"
                "A short story of a customer in a similar spot, and what changed for them. "
                "Happy to share more if it is relevant for you.\n\n{{ owner.name }}\n"
            ),
        },
        {"type": "wait", "days": 2},
        {
            "type": "email",
            "subject": "Worth a conversation?",
            "body": (
                "Hi {{ lead.first_name or 'there' }},\n\n"
                "If improving this is on your list this quarter, reply with a time that suits you "
                "and I will set up a call.\n\n{{ owner.name }}\n"
            ),
        },
    ],
}

# Seeded on first use (and by the demo), in this order.
DEFAULT_SEQUENCES: tuple[dict[str, Any], ...] = (DEFAULT_SEQUENCE, MARKETING_EMAIL_SEQUENCE)
