"""Qualification records for the demo data set: every demo lead that became SAL or SQL (or was
disqualified on the way) gets the needs assessment or discovery call its stage change cites, its
buying role, and every MQL a handoff with its SLA clock and sales' verdict. Rows are built from
the generated plan and written in bulk by ``leadflow.demo.load``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from leadflow.core.business_hours import calendar_from_dict
from leadflow.core.lifecycle import DiscoveryCall, Evidence, NeedsAssessment, Stage
from leadflow.core.qualification import BuyingRole
from leadflow.qualification.config import DEFAULT_SETTINGS
from leadflow.qualification.models import AssessmentRecord, DiscoveryCallRecord, Handoff, LeadQualification

_SLA = DEFAULT_SETTINGS["handoff"]
_CAL = calendar_from_dict(_SLA["business_hours"])
_SALES_TOUCH = ("call", "email_sent", "meeting")
# What a rep's move out of MQL says about the handoff, as a rejection reason.
_REJECTED = {Stage.NURTURE: "bad_timing", Stage.UNQUALIFIED: "no_need", Stage.BAD: "wrong_contact"}

InsertIds = Callable[[Session, Any, list[dict[str, Any]]], list[int]]
Insert = Callable[[Session, Any, list[dict[str, Any]]], int]


class DemoRecords:
    """Collects rows per lead, inserts them, then links the stage changes' evidence to them."""

    def __init__(self) -> None:
        self.assessments: list[dict[str, Any]] = []
        self.calls: list[dict[str, Any]] = []
        self.handoffs: list[dict[str, Any]] = []
        self.quals: list[dict[str, Any]] = []
        self._keys: dict[int, tuple[str, int]] = {}  # id(evidence) -> (kind, row index)
        # Holds each keyed evidence alive: a freed one's id could be handed to another.
        self._held: list[Evidence] = []
        self._ids: dict[str, list[int]] = {}

    def add_lead(
        self,
        lead_id: int,
        steps: Sequence[Any],
        *,
        owner_id: int | None,
        actor_ids: Sequence[int | None],
        buying_role: str | None,
        touches: Sequence[tuple[str, datetime]],
        source: str | None,
    ) -> None:
        for step, actor_id in zip(steps, actor_ids, strict=True):
            ev: Evidence | None = step.evidence
            if isinstance(ev, NeedsAssessment):
                self._keys[id(ev)] = ("na", len(self.assessments))
                self._held.append(ev)
                self.assessments.append(
                    {
                        "lead_id": lead_id,
                        "questionnaire_key": "default",
                        "questionnaire_version": 1,
                        "channel": "call" if actor_id is not None else "web_form",
                        "answers": dict(ev.answers),
                        "outcome": "sal" if ev.qualified else "unqualified",
                        "reason": step.reason
                        or (
                            "the needs assessment shows a need the product meets"
                            if ev.qualified
                            else "not qualified"
                        ),
                        "checks": None,
                        "applied_stage": step.stage.value,
                        "not_applied_reason": None,
                        "created_by": actor_id,
                        "created_at": step.at,
                    }
                )
            elif isinstance(ev, DiscoveryCall):
                self._keys[id(ev)] = ("dc", len(self.calls))
                self._held.append(ev)
                criteria: dict[str, dict[str, Any]] = {
                    k: {"answer": str(v.get("note", "")), "rating": 2 if v.get("met") else 0}
                    for k, v in dict(ev.criteria).items()
                    if isinstance(v, dict)
                }
                total = sum(c["rating"] for c in criteria.values())
                sql = ev.outcome == "qualified"
                self.calls.append(
                    {
                        "lead_id": lead_id,
                        "framework_key": "bant",
                        "framework_version": 1,
                        "criteria": criteria,
                        "total": total,
                        "recommendation": "sql"
                        if all(c["rating"] >= 2 for c in criteria.values())
                        else "unqualified",
                        "outcome": "sql" if sql else "unqualified",
                        "reason": None if sql else step.reason,
                        "override_reason": None,
                        "referral": None,
                        "recommended_vendor": None,
                        "notes": None,
                        "held_at": ev.held_at or step.at,
                        "applied_stage": step.stage.value,
                        "created_by": actor_id,
                        "created_at": step.at,
                    }
                )
        if buying_role in {r.value for r in BuyingRole}:
            self.quals.append(
                {
                    "lead_id": lead_id,
                    "buying_role": buying_role,
                    "buying_role_source": "manual",
                    "overrides": {},
                    "updated_at": steps[0].at if steps else None,
                }
            )
        for i, step in enumerate(steps):
            if step.stage is not Stage.MQL:
                continue
            queued = step.at
            due = _CAL.add(queued, timedelta(minutes=int(_SLA["first_touch_minutes"])))
            nxt = steps[i + 1] if i + 1 < len(steps) else None
            end = nxt.at if nxt is not None else None
            touch = min(
                (
                    at
                    for kind, at in touches
                    if kind in _SALES_TOUCH and at >= queued and (end is None or at <= end)
                ),
                default=None,
            )
            row: dict[str, Any] = {
                "lead_id": lead_id,
                "source": source,
                "owner_id": owner_id,
                "status": "queued",
                "queued_at": queued,
                "due_at": due,
                "sla_minutes": int(_SLA["first_touch_minutes"]),
                "timezone": _CAL.timezone,
                "first_touch_at": touch,
                "touch_kind": None,
                "breached_at": None,
                "decided_at": None,
                "decided_by": None,
                "rejection_reason": None,
                "rejection_note": None,
            }
            if nxt is not None:
                row["decided_at"] = nxt.at
                if nxt.stage in (Stage.SAL, Stage.SQL):
                    row["status"] = "accepted"
                    row["first_touch_at"] = min(touch or nxt.at, nxt.at)
                elif nxt.stage in _REJECTED and actor_ids[i + 1] is not None:
                    row["status"] = "rejected"
                    row["rejection_reason"] = _REJECTED[nxt.stage]
                    row["decided_by"] = actor_ids[i + 1]
                    row["first_touch_at"] = min(touch or nxt.at, nxt.at)
                else:
                    row["status"] = "closed"
            if row["first_touch_at"] is not None:
                row["touch_kind"] = "call"
                if row["first_touch_at"] > due:
                    row["breached_at"] = row["first_touch_at"]
            self.handoffs.append(row)

    def insert(self, session: Session, insert_ids: InsertIds) -> None:
        self._ids["na"] = insert_ids(session, AssessmentRecord, self.assessments)
        self._ids["dc"] = insert_ids(session, DiscoveryCallRecord, self.calls)

    def link(self, ev: Evidence | None, doc: dict[str, Any] | None) -> dict[str, Any] | None:
        """The stage change's evidence, pointing at the stored record."""

        key = self._keys.get(id(ev)) if ev is not None else None
        if key is None or doc is None:
            return doc
        kind, index = key
        doc = dict(doc)
        doc["assessment_id" if kind == "na" else "call_id"] = str(self._ids[kind][index])
        return doc

    def finish(self, session: Session, bulk: Insert) -> dict[str, int]:
        if self.quals:
            session.execute(insert(LeadQualification), self.quals)
        return {
            "assessments": len(self.assessments),
            "discovery_calls": len(self.calls),
            "handoffs": bulk(session, Handoff, self.handoffs),
        }
