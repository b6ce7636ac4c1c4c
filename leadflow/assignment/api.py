"""HTTP routes of lead assignment: the ordered rules, rep capacity caps, applying the rules."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status

from leadflow.assignment import service as svc
from leadflow.assignment.models import AssignmentRule
from leadflow.auth.deps import DB, Actor
from leadflow.qualification.schemas import (
    ApplyIn,
    ApplyOut,
    CapacityIn,
    DecisionOut,
    OrderIn,
    RuleCreate,
    RuleOut,
    RuleUpdate,
)

router = APIRouter(prefix="/api/assignment", tags=["assignment"])


def _doc(body: RuleCreate | RuleUpdate) -> dict[str, Any]:
    return body.model_dump(include={"name", "strategy", "match", "user_id", "team"})


@router.get("/rules", response_model=list[RuleOut], summary="Assignment rules in evaluation order")
def list_rules(db: DB, actor: Actor) -> list[AssignmentRule]:
    with db.transaction() as s:
        return svc.list_rules(s, actor)


@router.post("/rules", response_model=RuleOut, status_code=status.HTTP_201_CREATED)
def create_rule(body: RuleCreate, db: DB, actor: Actor) -> AssignmentRule:
    with db.transaction() as s:
        return svc.create_rule(s, actor, _doc(body), position=body.position)


@router.put(
    "/rules/order", response_model=list[RuleOut], summary="Reorder: every rule id, first evaluated first"
)
def reorder(body: OrderIn, db: DB, actor: Actor) -> list[AssignmentRule]:
    with db.transaction() as s:
        return svc.reorder_rules(s, actor, body.ids)


@router.put("/rules/{rule_id}", response_model=RuleOut)
def update_rule(rule_id: int, body: RuleUpdate, db: DB, actor: Actor) -> AssignmentRule:
    with db.transaction() as s:
        return svc.update_rule(
            s, actor, rule_id, _doc(body), active=body.active, expected_version=body.version
        )


@router.delete("/rules/{rule_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_rule(rule_id: int, db: DB, actor: Actor) -> Response:
    with db.transaction() as s:
        svc.delete_rule(s, actor, rule_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/capacity", summary="Sales reps with their open leads and caps")
def capacity(db: DB, actor: Actor) -> list[dict[str, Any]]:
    with db.transaction() as s:
        return svc.capacities(s, actor)


@router.put("/capacity/{user_id}", summary="Set a rep's cap on open (MQL/SAL/SQL) leads; null removes it")
def set_capacity(user_id: int, body: CapacityIn, db: DB, actor: Actor) -> dict[str, Any]:
    with db.transaction() as s:
        return svc.set_capacity(s, actor, user_id, body.max_open_leads)


@router.post("/apply", response_model=ApplyOut, summary="Apply the rules to leads now (every change audited)")
def apply(body: ApplyIn, db: DB, actor: Actor) -> ApplyOut:
    with db.transaction() as s:
        res = svc.apply(s, actor, body.lead_ids, unassigned=body.unassigned, force=body.force)
        return ApplyOut(
            considered=len(res.decisions),
            changed=res.changed,
            unassigned=res.unassigned,
            decisions=[
                DecisionOut(
                    lead_id=d.lead_id,
                    owner_id=d.owner_id,
                    rule_id=d.rule.id if d.rule else None,
                    rule=d.rule.name if d.rule else None,
                    explanation=d.explanation,
                )
                for d in res.decisions[:1000]
            ],
        )
