"""Qualification use cases: needs assessments (-> SAL, nurture or unqualified), discovery calls
(-> SQL or unqualified), call scripts, the three qualification levels and the buying committee.

Every record is the evidence of the stage move it causes: the move goes through
``leads.service.transition_lead`` with a typed ``NeedsAssessment`` / ``DiscoveryCall`` payload
carrying the record's id, in the same transaction as the record, so a refused move stores
nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from leadflow.audit.service import record
from leadflow.auth.models import Role, User
from leadflow.auth.principal import Perm, Principal
from leadflow.core import lifecycle
from leadflow.core import qualification as core
from leadflow.core.engagement import ActivityType
from leadflow.core.lifecycle import Origin, Stage
from leadflow.db.base import utcnow
from leadflow.errors import InvalidInput, NotFound
from leadflow.events import emit
from leadflow.leads import activities
from leadflow.leads.forms import HONEYPOT_FIELD, PUBLIC_FIELDS
from leadflow.leads.models import Account, Activity, Lead
from leadflow.leads.service import create_lead, get_lead, transition_lead, visibility_clause
from leadflow.qualification import config
from leadflow.qualification.models import (
    AssessmentRecord,
    DiscoveryCallRecord,
    LeadQualification,
    QuestionnaireDef,
)

Channel = Literal["web_form", "api", "call"]
CHANNELS = ("web_form", "api", "call")
# A needs assessment moves a lead only while it is still in marketing's part of the funnel: a
# form filled again by a prospect must not pull an SQL back to nurture.
AUTO_MOVE_FROM = frozenset({Stage.NEW, Stage.COLD, Stage.MQL, Stage.NURTURE, Stage.RECYCLED})
_DECISION_STAGE = {"sal": Stage.SAL, "nurture": Stage.NURTURE, "unqualified": Stage.UNQUALIFIED}


def rule_actor(label: str) -> Principal:
    """The qualifying rule acting on its own (public form): sales rights, named in the audit."""

    return Principal(user_id=None, label=label, role=Role.ADMIN)


# ------------------------------------------------------------------------------ assessments


@dataclass
class AssessmentResult:
    record: AssessmentRecord
    decision: core.AssessmentDecision
    stage: str
    applied: bool
    not_applied_reason: str | None = None
    task_due_at: datetime | None = None


def _move_for(
    lead: Lead, actor: Principal, decision: core.AssessmentDecision
) -> tuple[Stage | None, str | None]:
    current = Stage(lead.stage)
    target = _DECISION_STAGE[decision.outcome]
    if current is target:
        return None, f"the lead is already {current.value}"
    if current not in AUTO_MOVE_FROM:
        return None, f"the lead is already {current.value}: an assessment does not move it back"
    if not actor.can_move_to(target):
        return None, f"role {actor.role.value} cannot move leads to {target.value}; sales accepts leads"
    legal = lifecycle.legal_targets(current, Origin(lead.origin))
    if target not in legal:
        if target is Stage.SAL and lead.origin == Origin.MARKETING.value:
            return None, "marketing-sourced leads must become MQL before sales accepts them (SAL)"
        return None, f"moving from {current.value} to {target.value} is not a legal move"
    return target, None


def record_assessment(
    session: Session,
    actor: Principal,
    lead_id: int,
    answers: Mapping[str, Any],
    *,
    channel: Channel = "api",
    questionnaire_key: str | None = None,
    apply: bool = True,
    move_actor: Principal | None = None,
    now: datetime | None = None,
) -> AssessmentResult:
    """Store a completed needs assessment, decide SAL / nurture / unqualified by the
    questionnaire's rule and, when ``apply`` and the move is legal for the lead and the actor,
    make the move with the assessment as evidence. A qualifying assessment asks the owner for the
    first follow-up (``task.requested``)."""

    actor.require(Perm.LEADS_WRITE)
    if channel not in CHANNELS:
        raise InvalidInput("channel", f"must be one of {', '.join(CHANNELS)}")
    lead = get_lead(session, actor, lead_id)
    if lead.merged_into_id is not None:
        raise InvalidInput("lead_id", f"lead {lead_id} was merged into lead {lead.merged_into_id}")
    row = config.questionnaire_row(session, questionnaire_key)
    q = config.questionnaire(row)
    if not isinstance(answers, Mapping):
        raise InvalidInput("answers", "must be an object of question key -> answer")
    try:
        clean = core.validate_answers(q, answers)
    except core.AnswerErrors as exc:
        key, msg = exc.errors[0]
        raise InvalidInput(
            ["answers", key], msg, errors=[{"loc": ["answers", k], "msg": m} for k, m in exc.errors]
        ) from None
    decision = core.evaluate_assessment(q, clean)
    mover = move_actor or actor
    target, why_not = _move_for(lead, mover, decision) if apply else (None, "recorded without applying")
    when = now or utcnow()
    rec = AssessmentRecord(
        lead_id=lead.id,
        questionnaire_key=q.key,
        questionnaire_version=row.version,
        channel=channel,
        answers=clean,
        outcome=decision.outcome,
        reason=decision.reason,
        checks=list(decision.checks),
        applied_stage=target.value if target else None,
        not_applied_reason=why_not,
        created_by=actor.user_id,
        created_at=when,
    )
    session.add(rec)
    session.flush()
    record(
        session,
        actor,
        "lead",
        lead.id,
        "needs_assessment",
        after={"assessment_id": rec.id, "outcome": decision.outcome, "channel": channel},
        reason=decision.reason,
    )
    if channel == "call":
        activities.log_activity(
            session,
            actor,
            lead.id,
            ActivityType.CALL,
            occurred_at=when,
            properties={"purpose": "needs_assessment", "assessment_id": rec.id},
        )
    if target is not None:
        evidence = lifecycle.NeedsAssessment(
            assessment_id=str(rec.id), answers=clean, qualified=decision.outcome == "sal"
        )
        transition_lead(
            session,
            mover,
            lead.id,
            target,
            evidence=evidence,
            reason=None if target is Stage.SAL else decision.reason,
            at=when,
        )
    due: datetime | None = None
    if decision.outcome == "sal":
        # "Thank you, our team will be in touch": the owner's first follow-up, due by the SLA.
        policy = config.handoff_policy(session)
        cal = policy.calendar(lead.timezone, lead.country)
        due = cal.add(when, timedelta(minutes=policy.first_touch_minutes))
        name = " ".join(x for x in (lead.first_name, lead.last_name) if x) or lead.email or f"lead {lead.id}"
        emit(
            session,
            "task.requested",
            lead_id=lead.id,
            owner_id=lead.owner_id,
            kind="call",
            title=f"Follow up on {name}'s needs assessment",
            due_at=due,
            source="needs_assessment",
        )
    return AssessmentResult(rec, decision, lead.stage, target is not None, why_not, due)


def list_assessments(session: Session, actor: Principal, lead_id: int) -> list[AssessmentRecord]:
    get_lead(session, actor, lead_id)
    stmt = select(AssessmentRecord).where(AssessmentRecord.lead_id == lead_id).order_by(AssessmentRecord.id)
    return list(session.scalars(stmt))


def get_assessment(session: Session, actor: Principal, assessment_id: int) -> AssessmentRecord:
    rec = session.get(AssessmentRecord, assessment_id)
    if rec is None:
        raise NotFound(f"needs assessment {assessment_id} not found")
    get_lead(session, actor, rec.lead_id)  # visibility of the lead is visibility of its records
    return rec


def apply_assessment(session: Session, actor: Principal, assessment_id: int) -> AssessmentResult:
    """Make the move a stored assessment decided, now (e.g. once a marketing lead became MQL)."""

    rec = get_assessment(session, actor, assessment_id)
    actor.require(Perm.LEADS_TRANSITION)
    lead = get_lead(session, actor, rec.lead_id)
    decision = core.AssessmentDecision(rec.outcome, rec.reason or "", tuple(rec.checks or ()))  # type: ignore[arg-type]
    target = _DECISION_STAGE[rec.outcome]
    evidence = lifecycle.NeedsAssessment(
        assessment_id=str(rec.id), answers=rec.answers, qualified=rec.outcome == "sal"
    )
    transition_lead(
        session,
        actor,
        lead.id,
        target,
        evidence=evidence,
        reason=None if target is Stage.SAL else rec.reason,
    )
    rec.applied_stage, rec.not_applied_reason = target.value, None
    return AssessmentResult(rec, decision, lead.stage, True)


# ------------------------------------------------------------------------------ discovery calls


@dataclass
class CallInput:
    criteria: Mapping[str, Any]
    outcome: Literal["sql", "unqualified", "pending"]
    framework: str | None = None
    reason: str | None = None
    override_reason: str | None = None
    referral: str | None = None
    recommended_vendor: str | None = None
    notes: str | None = None
    held_at: datetime | None = None
    buying_role: str | None = None


@dataclass
class CallResult:
    record: DiscoveryCallRecord
    recommendation: core.CallRecommendation
    stage: str


def record_call(session: Session, actor: Principal, lead_id: int, data: CallInput) -> CallResult:
    """Store a discovery call and move the lead: SQL (prospect) or unqualified with the reason.
    An outcome against the framework's recommendation needs an ``override_reason``."""

    actor.require(Perm.LEADS_TRANSITION)
    lead = get_lead(session, actor, lead_id)
    if data.outcome not in ("sql", "unqualified", "pending"):
        raise InvalidInput("outcome", "must be sql, unqualified or pending")
    row = config.framework_row(session, data.framework)
    fw = config.framework(row)
    try:
        criteria = core.validate_call_criteria(fw, data.criteria)
    except core.DefinitionError as exc:
        raise InvalidInput(exc.loc, exc.message) from None
    rec_ = core.recommend(fw, criteria)
    reason = (data.reason or "").strip() or None
    override = (data.override_reason or "").strip() or None
    if data.outcome == "unqualified" and not reason:
        raise InvalidInput("reason", "an unqualified outcome needs the reason")
    if data.outcome != "pending" and data.outcome != rec_.outcome and not override:
        raise InvalidInput(
            "override_reason",
            f"the {fw.name} ratings recommend {rec_.outcome} ({rec_.reason}); "
            f"say why the outcome is {data.outcome}",
        )
    role = None
    if data.buying_role is not None:
        try:
            role = core.BuyingRole(data.buying_role)
        except ValueError:
            raise InvalidInput(
                "buying_role", f"must be one of {', '.join(r.value for r in core.BuyingRole)}"
            ) from None
    held = data.held_at or utcnow()
    if data.referral and len(data.referral) > 2000:
        raise InvalidInput("referral", "is longer than 2000 characters")
    rec = DiscoveryCallRecord(
        lead_id=lead.id,
        framework_key=fw.key,
        framework_version=row.version,
        criteria=criteria,
        total=rec_.total,
        recommendation=rec_.outcome,
        outcome=data.outcome,
        reason=reason,
        override_reason=override,
        referral=(data.referral or "").strip() or None,
        recommended_vendor=(data.recommended_vendor or "").strip()[:200] or None,
        notes=data.notes,
        held_at=held,
        created_by=actor.user_id,
    )
    session.add(rec)
    session.flush()
    record(
        session,
        actor,
        "lead",
        lead.id,
        "discovery_call",
        after={"call_id": rec.id, "framework": fw.key, "outcome": data.outcome, "total": rec_.total},
        reason=reason or override,
    )
    activities.log_activity(
        session,
        actor,
        lead.id,
        ActivityType.CALL,
        occurred_at=held,
        properties={"purpose": "discovery_call", "call_id": rec.id, "framework": fw.key},
    )
    # The stakeholder criterion (authority, economic buyer) tells who the contact is.
    if role is None:
        for c in fw.criteria:
            if c.stakeholder and criteria[c.key]["rating"] >= c.min_rating:
                role = core.BuyingRole.DECISION_MAKER
            elif c.stakeholder and criteria[c.key]["rating"] == 1:
                role = core.BuyingRole.INFLUENCER
    if role is not None:
        _set_role(session, actor, lead.id, role, "call", f"discovery call {rec.id}")
    if data.outcome != "pending":
        evidence = lifecycle.DiscoveryCall(
            call_id=str(rec.id),
            framework=fw.key,
            criteria=criteria,
            outcome="qualified" if data.outcome == "sql" else "unqualified",
            held_at=held,
        )
        target = Stage.SQL if data.outcome == "sql" else Stage.UNQUALIFIED
        why = reason
        if target is Stage.UNQUALIFIED and (rec.referral or rec.recommended_vendor):
            extra = "; ".join(
                x
                for x in (
                    f"referred to {rec.referral}" if rec.referral else None,
                    f"recommended vendor {rec.recommended_vendor}" if rec.recommended_vendor else None,
                )
                if x
            )
            why = f"{reason} ({extra})"
        transition_lead(
            session,
            actor,
            lead.id,
            target,
            evidence=evidence,
            reason=why if target is Stage.UNQUALIFIED else (override or None),
            at=held,
        )
        rec.applied_stage = target.value
    return CallResult(rec, rec_, lead.stage)


def list_calls(session: Session, actor: Principal, lead_id: int) -> list[DiscoveryCallRecord]:
    get_lead(session, actor, lead_id)
    stmt = (
        select(DiscoveryCallRecord)
        .where(DiscoveryCallRecord.lead_id == lead_id)
        .order_by(DiscoveryCallRecord.id)
    )
    return list(session.scalars(stmt))


# ------------------------------------------------------------------------------ call script


def _facts(session: Session, lead: Lead, rep: User | None) -> core.CallFacts:
    account = session.get(Account, lead.account_id) if lead.account_id else None
    recent = session.execute(
        select(Activity.type, Activity.occurred_at)
        .where(Activity.lead_id == lead.id)
        .order_by(Activity.occurred_at.desc())
        .limit(5)
    ).all()
    latest = session.scalar(
        select(AssessmentRecord)
        .where(AssessmentRecord.lead_id == lead.id)
        .order_by(AssessmentRecord.id.desc())
        .limit(1)
    )
    committee: list[str] = []
    if account is not None:
        others = session.execute(
            select(Lead.first_name, Lead.last_name, Lead.job_title)
            .where(Lead.account_id == account.id, Lead.id != lead.id, Lead.merged_into_id.is_(None))
            .order_by(Lead.id)
            .limit(5)
        ).all()
        committee = [
            " ".join(x for x in (f, la) if x) + (f" ({t})" if t else "") for f, la, t in others if f or la
        ]
    return core.CallFacts(
        first_name=lead.first_name,
        last_name=lead.last_name,
        job_title=lead.job_title,
        company=(account.name if account else None) or lead.company,
        industry=account.industry if account else None,
        employee_count=account.employee_count if account else None,
        country=lead.country or (account.country if account else None),
        source=lead.source,
        campaign=lead.campaign,
        recent_activities=tuple(f"{t.replace('_', ' ')} on {at:%Y-%m-%d}" for t, at in recent),
        answers=latest.answers if latest else {},
        committee=tuple(committee),
        rep_name=rep.name if rep else None,
    )


def call_script(
    session: Session, actor: Principal, lead_id: int, framework_key: str | None = None
) -> dict[str, Any]:
    lead = get_lead(session, actor, lead_id)
    fw = config.framework(config.framework_row(session, framework_key))
    rep = session.get(User, actor.user_id) if actor.user_id else None
    latest = session.scalar(
        select(AssessmentRecord.questionnaire_key)
        .where(AssessmentRecord.lead_id == lead.id)
        .order_by(AssessmentRecord.id.desc())
        .limit(1)
    )
    q = None
    if latest:
        try:
            q = config.questionnaire(config.questionnaire_row(session, latest))
        except NotFound:
            q = None
    return {"lead_id": lead.id, **core.call_script(fw, _facts(session, lead, rep), q)}


# ------------------------------------------------------------------------------ three levels


def _qual_row(session: Session, lead_id: int) -> LeadQualification:
    row = session.get(LeadQualification, lead_id)
    if row is None:
        row = LeadQualification(lead_id=lead_id, overrides={}, updated_at=utcnow())
        session.add(row)
        session.flush()
    return row


def _set_role(
    session: Session, actor: Principal, lead_id: int, role: core.BuyingRole, source: str, reason: str
) -> None:
    row = _qual_row(session, lead_id)
    if source == "call" and row.buying_role_source == "manual":
        return  # a rep's explicit edit outranks what a later call suggests
    if row.buying_role == role.value and row.buying_role_source == source:
        return
    before = {"buying_role": row.buying_role}
    row.buying_role, row.buying_role_source, row.updated_at = role.value, source, utcnow()
    record(
        session,
        actor,
        "lead",
        lead_id,
        "buying_role",
        before=before,
        after={"buying_role": role.value},
        reason=reason,
    )


def set_buying_role(
    session: Session, actor: Principal, lead_id: int, role: str, reason: str
) -> dict[str, Any]:
    actor.require(Perm.LEADS_WRITE)
    get_lead(session, actor, lead_id)
    try:
        br = core.BuyingRole(role)
    except ValueError:
        raise InvalidInput("role", f"must be one of {', '.join(r.value for r in core.BuyingRole)}") from None
    if not (reason or "").strip():
        raise InvalidInput("reason", "say why the role is set by hand")
    _set_role(session, actor, lead_id, br, "manual", reason.strip())
    return levels(session, actor, lead_id)


@dataclass
class _LeadFacts:
    lead: Lead
    account: Account | None
    assessment_outcome: str | None
    call_need_met: bool | None
    qual: LeadQualification | None
    extra: dict[str, Any] = field(default_factory=dict)


_NEED_KEYS = ("need", "identify_pain", "challenges")


def _call_need(session: Session, lead_ids: list[int]) -> dict[int, bool]:
    """Per lead, whether the latest discovery call confirmed the need (a need-like criterion)."""

    out: dict[int, bool] = {}
    if not lead_ids:
        return out
    calls = session.scalars(
        select(DiscoveryCallRecord)
        .where(DiscoveryCallRecord.lead_id.in_(lead_ids))
        .order_by(DiscoveryCallRecord.id)
    )
    for c in calls:
        for key in _NEED_KEYS:
            if key in c.criteria:
                out[c.lead_id] = int(c.criteria[key].get("rating", 0)) >= 2
                break
        else:
            out[c.lead_id] = c.outcome == "sql"
    return out


def _latest_assessments(session: Session, lead_ids: list[int]) -> dict[int, str]:
    if not lead_ids:
        return {}
    latest = (
        select(func.max(AssessmentRecord.id))
        .where(AssessmentRecord.lead_id.in_(lead_ids))
        .group_by(AssessmentRecord.lead_id)
    )
    rows = session.execute(
        select(AssessmentRecord.lead_id, AssessmentRecord.outcome).where(AssessmentRecord.id.in_(latest))
    )
    return {int(lid): str(o) for lid, o in rows}


def _level_view(facts: _LeadFacts, icp: core.ICP) -> dict[str, Any]:
    lead, account = facts.lead, facts.account
    org = core.organization_fit(
        icp,
        account.industry if account else None,
        account.employee_count if account else None,
        lead.country or (account.country if account else None),
    )
    opp = core.opportunity_level(facts.assessment_outcome, facts.call_need_met)
    qual = facts.qual
    if qual is not None and qual.buying_role:
        role, role_source = core.BuyingRole(qual.buying_role), qual.buying_role_source or "manual"
    else:
        role, role_source = core.infer_buying_role(lead.seniority, lead.job_title), "inferred"
    stk = core.stakeholder_level(role)
    derived = {core.Level.ORGANIZATION: org, core.Level.OPPORTUNITY: opp, core.Level.STAKEHOLDER: stk}
    overrides = (qual.overrides if qual is not None else None) or {}
    out: dict[str, Any] = {"lead_id": lead.id, "buying_role": role.value, "buying_role_source": role_source}
    for level, res in derived.items():
        ov = overrides.get(level.value)
        entry: dict[str, Any] = {
            "status": res.status.value,
            "reason": res.reason,
            "source": "derived",
            "derived": {"status": res.status.value, "reason": res.reason},
        }
        if ov:
            entry.update(
                status=ov["status"],
                reason=ov["reason"],
                source="manual",
                set_by=ov.get("by"),
                set_at=ov.get("at"),
            )
        out[level.value] = entry
    statuses = [out[level.value]["status"] for level in core.Level]
    if all(s == "qualified" for s in statuses):
        out["overall"] = "qualified"
    elif "unqualified" in statuses:
        out["overall"] = "unqualified"
    else:
        out["overall"] = "in_progress"
    return out


def _facts_for(session: Session, leads: list[Lead]) -> list[_LeadFacts]:
    ids = [lead.id for lead in leads]
    accounts = {
        a.id: a
        for a in session.scalars(
            select(Account).where(Account.id.in_({x.account_id for x in leads if x.account_id}))
        )
    }
    assessments = _latest_assessments(session, ids)
    needs = _call_need(session, ids)
    quals = {
        q.lead_id: q
        for q in session.scalars(select(LeadQualification).where(LeadQualification.lead_id.in_(ids)))
    }
    return [
        _LeadFacts(
            lead,
            accounts.get(lead.account_id) if lead.account_id else None,
            assessments.get(lead.id),
            needs.get(lead.id),
            quals.get(lead.id),
        )
        for lead in leads
    ]


def levels(session: Session, actor: Principal, lead_id: int) -> dict[str, Any]:
    """Organization, opportunity and stakeholder status of a lead: derived from the account's
    ICP fit, the assessments and calls, and the buying role, unless a person overrode a level."""

    lead = get_lead(session, actor, lead_id)
    (facts,) = _facts_for(session, [lead])
    return _level_view(facts, config.icp(session))


def override_level(
    session: Session, actor: Principal, lead_id: int, level: str, status: str | None, reason: str | None
) -> dict[str, Any]:
    """Set a level's status by hand (with the reason), or clear the override (``status=None``)."""

    actor.require(Perm.LEADS_WRITE)
    get_lead(session, actor, lead_id)
    try:
        lvl = core.Level(level)
    except ValueError:
        raise InvalidInput("level", f"must be one of {', '.join(v.value for v in core.Level)}") from None
    row = _qual_row(session, lead_id)
    overrides = dict(row.overrides or {})
    before = overrides.get(lvl.value)
    if status is None:
        overrides.pop(lvl.value, None)
        after = None
    else:
        try:
            st = core.LevelStatus(status)
        except ValueError:
            raise InvalidInput(
                "status", f"must be one of {', '.join(v.value for v in core.LevelStatus)}"
            ) from None
        if not (reason or "").strip():
            raise InvalidInput("reason", "say why the level is set by hand")
        after = {
            "status": st.value,
            "reason": (reason or "").strip()[:2000],
            "by": actor.label,
            "at": utcnow().isoformat(),
        }
        overrides[lvl.value] = after
    row.overrides, row.updated_at = overrides, utcnow()
    record(
        session,
        actor,
        "lead",
        lead_id,
        "qualification_level",
        before={lvl.value: before},
        after={lvl.value: after},
        reason=reason or "override cleared",
    )
    return levels(session, actor, lead_id)


# ------------------------------------------------------------------------------ buying committee

_ENGAGED = frozenset({Stage.MQL, Stage.SAL, Stage.SQL, Stage.OPPORTUNITY, Stage.CUSTOMER})
_OUT = frozenset({Stage.BAD, Stage.UNQUALIFIED})


def committee(session: Session, actor: Principal, account_id: int) -> dict[str, Any]:
    """Every lead of an account with its buying role and levels, and whether a decision maker
    is engaged yet (in the funnel past cold, or touched, and not disqualified)."""

    actor.require(Perm.ACCOUNTS_READ)
    account = session.get(Account, account_id)
    if account is None:
        raise NotFound(f"account {account_id} not found")
    stmt = select(Lead).where(Lead.account_id == account_id, Lead.merged_into_id.is_(None)).order_by(Lead.id)
    vis = visibility_clause(session, actor)
    if vis is not None:
        stmt = stmt.where(vis)
    leads = list(session.scalars(stmt.limit(1000)))
    icp = config.icp(session)
    members = []
    dm_engaged = False
    for facts in _facts_for(session, leads):
        view = _level_view(facts, icp)
        lead = facts.lead
        stage = Stage(lead.stage)
        engaged = stage not in _OUT and (stage in _ENGAGED or lead.last_activity_at is not None)
        is_dm = view["buying_role"] == core.BuyingRole.DECISION_MAKER.value
        dm_engaged = dm_engaged or (is_dm and engaged)
        members.append(
            {
                "lead_id": lead.id,
                "name": " ".join(x for x in (lead.first_name, lead.last_name) if x) or None,
                "email": lead.email,
                "job_title": lead.job_title,
                "stage": lead.stage,
                "owner_id": lead.owner_id,
                "buying_role": view["buying_role"],
                "buying_role_source": view["buying_role_source"],
                "engaged": engaged,
                "levels": {lv.value: view[lv.value]["status"] for lv in core.Level},
            }
        )
    roles = {r.value: sum(1 for m in members if m["buying_role"] == r.value) for r in core.BuyingRole}
    return {
        "account_id": account.id,
        "account": account.name,
        "members": members,
        "roles": roles,
        "decision_maker_engaged": dm_engaged,
        "flags": [] if dm_engaged else ["no decision maker engaged yet"],
    }


# ------------------------------------------------------------------------------ public web form


@dataclass
class PublicSubmission:
    redirect_url: str | None
    thank_you: str
    lead_id: int | None
    spam: bool
    result: AssessmentResult | None = None


def public_questionnaire(session: Session, public_key: str) -> QuestionnaireDef:
    row = session.scalar(
        select(QuestionnaireDef).where(
            QuestionnaireDef.public_key == public_key, QuestionnaireDef.active.is_(True)
        )
    )
    if row is None:
        raise NotFound(f"form {public_key} not found")
    return row


def submit_public(
    session: Session, public_key: str, fields: Mapping[str, Any], *, ip: str | None
) -> PublicSubmission:
    """A needs assessment posted from the public web form: the lead is captured (or a known
    email is filled in), the assessment is recorded and its rule applied by the rule itself."""

    row = public_questionnaire(session, public_key)
    q = config.questionnaire(row)
    if str(fields.get(HONEYPOT_FIELD) or "").strip():
        return PublicSubmission(row.redirect_url, q.thank_you, None, True)
    question_keys = {x.key for x in q.questions}
    answers: dict[str, Any] = {}
    contact: dict[str, Any] = {}
    for raw_key, value in fields.items():
        k = raw_key.strip().lower()
        if k in question_keys:
            answers[k] = value
        elif k in PUBLIC_FIELDS:
            contact[k] = value
    if not (contact.get("email") or contact.get("phone")):
        raise InvalidInput("email", "an email or a phone number is required")
    contact["source"] = "needs_assessment_form"
    label = f"needs assessment form {q.name!r} ({row.public_key})"
    form_actor = Principal(user_id=None, label=label, role=Role.MARKETING)
    created = create_lead(session, form_actor, contact, on_duplicate="update")
    activities.ingest(
        session,
        form_actor,
        [
            {
                "lead_id": created.lead.id,
                "type": ActivityType.FORM_SUBMIT.value,
                "properties": {"form": q.name, "questionnaire": q.key, "ip": ip},
                "source": "needs_assessment_form",
            }
        ],
    )
    result = record_assessment(
        session,
        form_actor,
        created.lead.id,
        answers,
        channel="web_form",
        questionnaire_key=q.key,
        move_actor=rule_actor(f"qualifying rule of {q.key} via {label}"),
    )
    return PublicSubmission(row.redirect_url, q.thank_you, created.lead.id, False, result)
