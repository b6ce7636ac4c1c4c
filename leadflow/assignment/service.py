"""Assignment rules as data: manage them, and apply them to leads in sets.

``assign_many`` is the one entry point (at MQL, at handoff, on import, on demand): it loads the
rules, the reps' loads and caps and the round-robin turns once, decides every lead in memory with
:class:`leadflow.core.assignment.Assigner`, writes the new owners with one executemany and the
audit rows with one insert, in the caller's transaction. Every reassignment is audited with the
rule that made it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.orm import Session

from leadflow.assignment.models import AssignmentRule, RepCapacity
from leadflow.audit.service import record, record_many
from leadflow.auth.models import Role, User
from leadflow.auth.principal import Perm, Principal
from leadflow.core import assignment as core
from leadflow.core.qualification import DefinitionError
from leadflow.db.base import utcnow
from leadflow.errors import InvalidInput, NotFound, StaleVersion
from leadflow.events import emit
from leadflow.leads.models import Account, Lead

# The rep's working queue, counted against a capacity cap.
OPEN_STAGES = ("mql", "sal", "sql")
CHUNK = 2000


def _require_admin(actor: Principal) -> None:
    actor.require(Perm.ASSIGNMENT_ADMIN)


def ensure_defaults(session: Session) -> None:
    """The default rule set (the account owner wins) on first use."""

    if session.info.get("assignment.defaults"):
        return
    if session.scalar(select(AssignmentRule.id).limit(1)) is None:
        for i, doc in enumerate(core.DEFAULT_RULES):
            rule = core.parse_rule(doc)
            session.add(AssignmentRule(position=i + 1, name=rule.name, definition=rule.to_dict()))
        session.flush()
    session.info["assignment.defaults"] = True


def _parse(doc: Mapping[str, Any], rule_id: int | None = None) -> core.Rule:
    try:
        return core.parse_rule(doc, rule_id=rule_id)
    except DefinitionError as exc:
        raise InvalidInput(exc.loc or ["body"], exc.message) from None


def _stored(row: AssignmentRule) -> core.Rule:
    d = row.definition
    return core.parse_rule(
        {
            "name": d["name"],
            "strategy": d["strategy"],
            "match": d.get("match") or {},
            "user_id": d.get("user_id"),
            "team": d.get("team"),
        },
        rule_id=row.id,
    )


def _check_target(session: Session, rule: core.Rule) -> None:
    if rule.strategy == "user":
        user = session.get(User, rule.user_id)
        if user is None or not user.active:
            raise InvalidInput("user_id", f"no active user with id {rule.user_id}")
    if rule.strategy == "round_robin" and not session.scalar(
        select(User.id).where(User.team == rule.team, User.active.is_(True)).limit(1)
    ):
        raise InvalidInput("team", f"team {rule.team!r} has no active users")


def list_rules(session: Session, actor: Principal) -> list[AssignmentRule]:
    actor.require(Perm.LEADS_READ)
    ensure_defaults(session)
    return list(session.scalars(select(AssignmentRule).order_by(AssignmentRule.position, AssignmentRule.id)))


def create_rule(
    session: Session, actor: Principal, doc: Mapping[str, Any], *, position: int | None = None
) -> AssignmentRule:
    _require_admin(actor)
    _forget(session)
    ensure_defaults(session)
    rule = _parse(doc)
    _check_target(session, rule)
    rows = list_rules(session, actor)
    pos = len(rows) + 1 if position is None else max(1, min(position, len(rows) + 1))
    for r in rows:
        if r.position >= pos:
            r.position += 1
    row = AssignmentRule(position=pos, name=rule.name, definition=rule.to_dict())
    session.add(row)
    session.flush()
    record(session, actor, "assignment_rule", row.id, "create", after={**rule.to_dict(), "position": pos})
    return row


def get_rule(session: Session, actor: Principal, rule_id: int) -> AssignmentRule:
    actor.require(Perm.LEADS_READ)
    row = session.get(AssignmentRule, rule_id)
    if row is None:
        raise NotFound(f"assignment rule {rule_id} not found")
    return row


def update_rule(
    session: Session,
    actor: Principal,
    rule_id: int,
    doc: Mapping[str, Any],
    *,
    active: bool | None = None,
    expected_version: int | None = None,
) -> AssignmentRule:
    _require_admin(actor)
    _forget(session)
    row = get_rule(session, actor, rule_id)
    if expected_version is not None and row.version != expected_version:
        raise StaleVersion(f"assignment rule {rule_id} was changed by someone else; reload and retry")
    rule = _parse(doc, rule_id)
    _check_target(session, rule)
    before = {**row.definition, "active": row.active}
    row.name, row.definition = rule.name, rule.to_dict()
    if active is not None:
        row.active = active
    row.version += 1
    row.updated_at = utcnow()
    record(
        session,
        actor,
        "assignment_rule",
        row.id,
        "update",
        before=before,
        after={**row.definition, "active": row.active},
    )
    return row


def delete_rule(session: Session, actor: Principal, rule_id: int) -> None:
    _require_admin(actor)
    _forget(session)
    row = get_rule(session, actor, rule_id)
    record(session, actor, "assignment_rule", row.id, "delete", before=row.definition)
    session.delete(row)
    session.flush()
    for i, r in enumerate(
        session.scalars(select(AssignmentRule).order_by(AssignmentRule.position, AssignmentRule.id))
    ):
        r.position = i + 1


def reorder_rules(session: Session, actor: Principal, ids: Sequence[int]) -> list[AssignmentRule]:
    _require_admin(actor)
    _forget(session)
    rows = {r.id: r for r in list_rules(session, actor)}
    if sorted(ids) != sorted(rows) or len(set(ids)) != len(ids):
        raise InvalidInput("ids", f"list every rule id exactly once: {sorted(rows)}")
    before = [r.id for r in sorted(rows.values(), key=lambda r: r.position)]
    for i, rid in enumerate(ids):
        rows[rid].position = i + 1
    record(
        session, actor, "assignment_rule", 0, "reorder", before={"order": before}, after={"order": list(ids)}
    )
    session.flush()
    return [rows[i] for i in ids]


# ------------------------------------------------------------------------------ capacity


def set_capacity(
    session: Session, actor: Principal, user_id: int, max_open_leads: int | None
) -> dict[str, Any]:
    _require_admin(actor)
    _forget(session)
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    if max_open_leads is not None and (isinstance(max_open_leads, bool) or max_open_leads < 0):
        raise InvalidInput("max_open_leads", "must be a non-negative integer or null (no cap)")
    row = session.get(RepCapacity, user_id)
    before = row.max_open_leads if row else None
    if max_open_leads is None:
        if row is not None:
            session.delete(row)
    elif row is None:
        session.add(RepCapacity(user_id=user_id, max_open_leads=max_open_leads, updated_at=utcnow()))
    else:
        row.max_open_leads, row.updated_at = max_open_leads, utcnow()
    session.flush()
    record(
        session,
        actor,
        "user",
        user_id,
        "capacity",
        before={"max_open_leads": before},
        after={"max_open_leads": max_open_leads},
    )
    return {
        "user_id": user_id,
        "max_open_leads": max_open_leads,
        "open_leads": _loads(session, [user_id]).get(user_id, 0),
    }


def _loads(session: Session, user_ids: Iterable[int] | None = None) -> dict[int, int]:
    stmt = (
        select(Lead.owner_id, func.count())
        .where(Lead.owner_id.is_not(None), Lead.stage.in_(OPEN_STAGES), Lead.merged_into_id.is_(None))
        .group_by(Lead.owner_id)
    )
    if user_ids is not None:
        stmt = stmt.where(Lead.owner_id.in_(list(user_ids)))
    return {int(u): int(n) for u, n in session.execute(stmt) if u is not None}


def capacities(session: Session, actor: Principal) -> list[dict[str, Any]]:
    actor.require(Perm.LEADS_READ)
    reps = list(session.scalars(select(User).where(User.role == Role.SALES_REP.value).order_by(User.id)))
    caps = {c.user_id: c.max_open_leads for c in session.scalars(select(RepCapacity))}
    loads = _loads(session)
    return [
        {
            "user_id": u.id,
            "name": u.name,
            "team": u.team,
            "active": u.active,
            "max_open_leads": caps.get(u.id),
            "open_leads": loads.get(u.id, 0),
        }
        for u in reps
    ]


# ------------------------------------------------------------------------------ applying


_CACHE = "assignment.assigner"


def _forget(session: Session) -> None:
    session.info.pop(_CACHE, None)


def build_assigner(session: Session) -> tuple[core.Assigner, dict[int, AssignmentRule]]:
    """The rules, loads, caps and turns, read once per transaction: a rescoring that makes
    thousands of MQLs in one transaction routes them without re-reading (the assigner keeps the
    loads and turns it hands out up to date itself)."""

    cached = session.info.get(_CACHE)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    ensure_defaults(session)
    rows = list(
        session.scalars(
            select(AssignmentRule)
            .where(AssignmentRule.active.is_(True))
            .order_by(AssignmentRule.position, AssignmentRule.id)
        )
    )
    rules = [_stored(r) for r in rows]
    reps_rows = session.execute(
        select(User.id, User.team).where(User.active.is_(True), User.role == Role.SALES_REP.value)
    ).all()
    caps = {c.user_id: c.max_open_leads for c in session.scalars(select(RepCapacity))}
    loads = _loads(session)
    reps = {
        int(uid): core.Rep(int(uid), team, loads.get(int(uid), 0), caps.get(int(uid)))
        for uid, team in reps_rows
    }
    active = frozenset(int(u) for u in session.scalars(select(User.id).where(User.active.is_(True))))
    cursors = {r.id: r.last_user_id for r in rows if r.last_user_id is not None}
    built = (core.Assigner(rules, reps, cursors, active), {r.id: r for r in rows})
    session.info[_CACHE] = built
    return built


@dataclass
class AssignResult:
    decisions: list[core.Decision]
    changed: int

    @property
    def unassigned(self) -> int:
        return sum(1 for d in self.decisions if d.owner_id is None)


def assign_many(
    session: Session,
    actor: Principal,
    lead_ids: Sequence[int],
    *,
    trigger: str,
    only_unowned: bool = True,
    bump_version: bool = True,
) -> AssignResult:
    """Apply the rules to ``lead_ids`` (set-based). By default only leads without an owner are
    routed (an owner set by a person stays); ``only_unowned=False`` re-routes every lead given.
    Returns every decision, including the leads no rule could place (with the reason)."""

    assigner, rows = build_assigner(session)
    decisions: list[core.Decision] = []
    updates: list[dict[str, Any]] = []
    audit: list[dict[str, Any]] = []
    ids = sorted(set(lead_ids))
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        stmt = (
            select(
                Lead.id,
                Lead.owner_id,
                Lead.country,
                Lead.source,
                Account.industry,
                Account.owner_id,
                Account.country,
            )
            .outerjoin(Account, Account.id == Lead.account_id)
            .where(Lead.id.in_(chunk), Lead.merged_into_id.is_(None))
            .order_by(Lead.id)
        )
        for lid, owner, country, source, industry, acc_owner, acc_country in session.execute(stmt):
            if only_unowned and owner is not None:
                continue
            facts = core.LeadFacts(int(lid), country or acc_country, industry, source, acc_owner)
            d = assigner.decide(facts)
            decisions.append(d)
            if d.owner_id is None or d.owner_id == owner:
                continue
            updates.append({"b_id": lid, "b_owner": d.owner_id})
            audit.append(
                {
                    "entity_type": "lead",
                    "entity_id": lid,
                    "action": "assign",
                    "before": {"owner_id": owner},
                    "after": {"owner_id": d.owner_id},
                    "reason": d.explanation,
                    "evidence": {
                        "kind": "assignment_rule",
                        "rule_id": d.rule.id if d.rule else None,
                        "rule": d.rule.name if d.rule else None,
                        "trigger": trigger,
                    },
                }
            )
    if updates:
        now = utcnow()
        table: Table = Lead.__table__  # type: ignore[assignment]
        values: dict[str, Any] = {"owner_id": bindparam("b_owner"), "updated_at": now}
        if bump_version:
            values["version"] = table.c.version + 1
        # A Core executemany: one statement for the whole set.
        session.execute(update(table).where(table.c.id == bindparam("b_id")).values(**values), updates)
        # The objects some callers hold in this session must not show the old owner.
        changed = {u["b_id"] for u in updates}
        for obj in list(session.identity_map.values()):
            if isinstance(obj, Lead) and obj.id in changed:
                session.expire(obj, ["owner_id", "updated_at", "version"])
        record_many(session, actor, audit)
        for a in audit:
            emit(
                session,
                "lead.assigned",
                lead_id=a["entity_id"],
                owner_id=a["after"]["owner_id"],
                previous=a["before"]["owner_id"],
            )
    for rid, last in assigner.cursors.items():
        row = rows.get(rid)
        if row is not None and row.last_user_id != last:
            row.last_user_id = last
    return AssignResult(decisions, len(updates))


def apply(
    session: Session,
    actor: Principal,
    lead_ids: Sequence[int] | None,
    *,
    unassigned: bool = False,
    force: bool = False,
) -> AssignResult:
    """Route leads on demand: the given ids (visible to the actor) or every unassigned open lead."""

    _require_admin(actor)
    if lead_ids is None and not unassigned:
        raise InvalidInput("lead_ids", "give lead ids or ask for every unassigned lead")
    if lead_ids is not None:
        if len(lead_ids) > 100_000:
            raise InvalidInput("lead_ids", "at most 100000 leads per call")
        found = set(session.scalars(select(Lead.id).where(Lead.id.in_(list(lead_ids)))))
        missing = sorted(set(lead_ids) - found)
        if missing:
            raise InvalidInput("lead_ids", f"no lead with id {missing[0]}")
        ids = list(lead_ids)
    else:
        ids = list(
            session.scalars(
                select(Lead.id).where(
                    Lead.owner_id.is_(None), Lead.stage.in_(OPEN_STAGES), Lead.merged_into_id.is_(None)
                )
            )
        )
    return assign_many(session, actor, ids, trigger="manual", only_unowned=not force)
