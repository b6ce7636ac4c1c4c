"""Opportunity use cases: pipelines and their stages, won/lost reasons, converting a prospect into
an opportunity, stage moves with their history, reopening, listing with visibility.

Each function runs inside the caller's transaction, checks the actor's rights and record
visibility, and writes the audit trail in the same transaction. The lead's lifecycle follows the
deal through :func:`leadflow.leads.service.transition_lead` (SQL -> opportunity with
OpportunityOpened evidence, opportunity -> customer with DealWon evidence).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import pycountry
from sqlalchemy import ColumnElement, Select, func, or_, select, update
from sqlalchemy.orm import Session

from leadflow.audit.service import changes, record
from leadflow.auth.ownership import owner_visibility, require_assignable_owner
from leadflow.auth.principal import Perm, Principal
from leadflow.core import pipeline as core
from leadflow.core.engagement import SALES_TOUCHES
from leadflow.core.lifecycle import DealWon, OpportunityOpened, Stage
from leadflow.db.base import utcnow
from leadflow.db.pagination import Page, keyset, page_of
from leadflow.errors import Conflict, InvalidInput, NotFound, StaleVersion
from leadflow.events import emit
from leadflow.leads import accounts as account_svc
from leadflow.leads import service as leads
from leadflow.leads.models import Account, Activity, Lead
from leadflow.pipeline.models import (
    BuyingSignal,
    Opportunity,
    OpportunityStageChange,
    OutcomeReason,
    Pipeline,
    PipelineStage,
)

MAX_AMOUNT = 10**13
DEFAULT_CLOSE_DAYS = 60
SNAPSHOT_FIELDS = (
    "name",
    "amount",
    "currency",
    "expected_close_date",
    "owner_id",
    "probability",
    "forecast_category",
    "stage_id",
    "status",
    "close_reason",
    "account_id",
    "contact_lead_id",
)
EDITABLE = frozenset(
    {"name", "amount", "currency", "expected_close_date", "owner_id", "probability", "forecast_category"}
)


def snapshot(opp: Opportunity) -> dict[str, Any]:
    out = {f: getattr(opp, f) for f in SNAPSHOT_FIELDS}
    if out["expected_close_date"] is not None:
        out["expected_close_date"] = out["expected_close_date"].isoformat()
    return out


# ------------------------------------------------------------------------------ configuration


def _stage_row(pipeline_id: int, position: int, spec: core.StageSpec) -> PipelineStage:
    return PipelineStage(
        pipeline_id=pipeline_id,
        key=spec.key,
        name=spec.name,
        position=position,
        probability=spec.probability,
        kind=spec.kind.value,
        rotting_days=spec.rotting_days,
        forecast_category=spec.forecast_category.value,
        active=True,
    )


def ensure_defaults(session: Session) -> Pipeline:
    """The default sales pipeline and the stock won/lost reasons, created on first use (a fresh
    database, or one emptied by tests, works without a setup step). Returns the default pipeline."""

    default = session.scalar(select(Pipeline).where(Pipeline.is_default.is_(True)).limit(1))
    if default is None:
        default = session.scalar(select(Pipeline).where(Pipeline.active.is_(True)).order_by(Pipeline.id))
    if default is None:
        now = utcnow()
        default = Pipeline(
            key="sales",
            name="Sales",
            currency="USD",
            is_default=True,
            active=True,
            created_at=now,
            updated_at=now,
        )
        session.add(default)
        session.flush()
        for i, spec in enumerate(core.DEFAULT_STAGES):
            session.add(_stage_row(default.id, i, spec))
        session.flush()
    if session.scalar(select(func.count()).select_from(OutcomeReason)) == 0:
        for kind, reasons in (("lost", core.DEFAULT_LOSS_REASONS), ("won", core.DEFAULT_WIN_REASONS)):
            for i, (key, label) in enumerate(reasons):
                session.add(OutcomeReason(kind=kind, key=key, label=label, position=i, active=True))
        session.flush()
    return default


def list_pipelines(session: Session, actor: Principal) -> list[Pipeline]:
    actor.require(Perm.OPPORTUNITIES_READ)
    ensure_defaults(session)
    return list(session.scalars(select(Pipeline).order_by(Pipeline.id)))


def get_pipeline(session: Session, actor: Principal, ref: int | str | None) -> Pipeline:
    """A pipeline by id or key; the default one for None."""

    actor.require(Perm.OPPORTUNITIES_READ)
    default = ensure_defaults(session)
    if ref is None:
        return default
    found: Pipeline | None
    if isinstance(ref, int) or str(ref).isdigit():
        found = session.get(Pipeline, int(ref))
    else:
        found = session.scalar(select(Pipeline).where(Pipeline.key == str(ref)))
    if found is None:
        raise NotFound(f"pipeline {ref} not found")
    return found


def stages_of(session: Session, pipeline_id: int, *, include_inactive: bool = False) -> list[PipelineStage]:
    stmt = select(PipelineStage).where(PipelineStage.pipeline_id == pipeline_id)
    if not include_inactive:
        stmt = stmt.where(PipelineStage.active.is_(True))
    return list(session.scalars(stmt.order_by(PipelineStage.position, PipelineStage.id)))


def _spec(data: Mapping[str, Any], i: int) -> core.StageSpec:
    try:
        return core.StageSpec(
            key=str(data["key"]).strip(),
            name=str(data.get("name") or str(data["key"]).replace("_", " ").capitalize()),
            probability=int(data["probability"]),
            kind=core.StageKind(data.get("kind") or "open"),
            rotting_days=None if data.get("rotting_days") is None else int(data["rotting_days"]),
            forecast_category=core.ForecastCategory(
                data.get("forecast_category")
                or {"won": "closed", "lost": "omitted"}.get(str(data.get("kind") or "open"), "pipeline")
            ),
        )
    except KeyError as exc:
        raise InvalidInput(["stages", i, str(exc.args[0])], "is required") from None
    except ValueError as exc:
        raise InvalidInput(["stages", i], str(exc)) from None


def _validate(specs: Sequence[core.StageSpec]) -> None:
    try:
        core.validate_stages(specs)
    except core.PipelineError as exc:
        loc: list[str | int] = [int(p) if p.isdigit() else p for p in exc.field.split(".")]
        raise InvalidInput(loc, exc.message) from None


def _currency(value: str | None, loc: str = "currency") -> str:
    code = (value or "").strip().upper()
    if len(code) != 3 or pycountry.currencies.get(alpha_3=code) is None:
        raise InvalidInput(loc, f"{value!r} is not an ISO 4217 currency code")
    return code


def create_pipeline(
    session: Session,
    actor: Principal,
    *,
    key: str,
    name: str,
    currency: str = "USD",
    stages: Sequence[Mapping[str, Any]] | None = None,
    is_default: bool = False,
) -> Pipeline:
    actor.require(Perm.PIPELINES_ADMIN)
    ensure_defaults(session)
    key = key.strip()
    if not key or not key.replace("_", "").replace("-", "").isalnum():
        raise InvalidInput("key", "must be letters, digits, '_' or '-'")
    if not name.strip():
        raise InvalidInput("name", "is empty")
    if session.scalar(select(Pipeline.id).where(Pipeline.key == key)) is not None:
        raise Conflict(f"a pipeline with key {key} exists")
    specs = [_spec(s, i) for i, s in enumerate(stages)] if stages else list(core.DEFAULT_STAGES)
    _validate(specs)
    now = utcnow()
    pipe = Pipeline(
        key=key,
        name=name.strip(),
        currency=_currency(currency),
        is_default=False,
        active=True,
        created_at=now,
        updated_at=now,
    )
    session.add(pipe)
    session.flush()
    for i, spec in enumerate(specs):
        session.add(_stage_row(pipe.id, i, spec))
    if is_default:
        session.execute(
            update(Pipeline).values(is_default=False).execution_options(synchronize_session=False)
        )
        pipe.is_default = True
    session.flush()
    record(
        session,
        actor,
        "pipeline",
        pipe.id,
        "create",
        after={"key": key, "name": pipe.name, "stages": [s.key for s in specs], "default": is_default},
    )
    return pipe


def set_stages(
    session: Session,
    actor: Principal,
    pipeline_id: int,
    stages: Sequence[Mapping[str, Any]],
    *,
    reason: str | None,
) -> list[PipelineStage]:
    """Replace a pipeline's stage list (order = list order). Known keys keep their id, so deals
    in them stay put; a dropped stage that still holds deals is refused; one only named in
    history is deactivated."""

    actor.require(Perm.PIPELINES_ADMIN)
    pipe = get_pipeline(session, actor, pipeline_id)
    specs = [_spec(s, i) for i, s in enumerate(stages)]
    _validate(specs)
    existing = {s.key: s for s in stages_of(session, pipe.id, include_inactive=True)}
    before = [f"{s.key}:{s.probability}" for s in stages_of(session, pipe.id)]
    wanted = {s.key for s in specs}
    for key, row in existing.items():
        if key in wanted or not row.active:
            continue
        held = session.scalar(
            select(func.count()).select_from(Opportunity).where(Opportunity.stage_id == row.id)
        )
        if held:
            raise InvalidInput("stages", f"stage {key!r} still holds {held} opportunities; move them first")
        row.active = False
    for i, spec in enumerate(specs):
        found = existing.get(spec.key)
        if found is None:
            session.add(_stage_row(pipe.id, i, spec))
            continue
        row = found
        if row.kind != spec.kind.value and session.scalar(
            select(func.count()).select_from(Opportunity).where(Opportunity.stage_id == row.id)
        ):
            raise InvalidInput(
                ["stages", i, "kind"], f"stage {spec.key!r} holds deals; its kind cannot change"
            )
        row.name, row.position, row.probability = spec.name, i, spec.probability
        row.kind, row.rotting_days = spec.kind.value, spec.rotting_days
        row.forecast_category, row.active = spec.forecast_category.value, True
    pipe.version += 1
    pipe.updated_at = utcnow()
    session.flush()
    after = [f"{s.key}:{s.probability}" for s in stages_of(session, pipe.id)]
    record(
        session,
        actor,
        "pipeline",
        pipe.id,
        "set_stages",
        before={"stages": before},
        after={"stages": after},
        reason=reason,
    )
    return stages_of(session, pipe.id)


def list_reasons(session: Session, actor: Principal, kind: str | None = None) -> list[OutcomeReason]:
    actor.require(Perm.OPPORTUNITIES_READ)
    ensure_defaults(session)
    stmt = select(OutcomeReason).where(OutcomeReason.active.is_(True))
    if kind is not None:
        stmt = stmt.where(OutcomeReason.kind == kind)
    return list(session.scalars(stmt.order_by(OutcomeReason.kind, OutcomeReason.position, OutcomeReason.id)))


def add_reason(session: Session, actor: Principal, kind: str, key: str, label: str) -> OutcomeReason:
    actor.require(Perm.PIPELINES_ADMIN)
    ensure_defaults(session)
    if kind not in ("won", "lost"):
        raise InvalidInput("kind", "must be won or lost")
    key = key.strip()
    if not key or not key.replace("_", "").replace("-", "").isalnum():
        raise InvalidInput("key", "must be letters, digits, '_' or '-'")
    if not label.strip():
        raise InvalidInput("label", "is empty")
    row = session.scalar(select(OutcomeReason).where(OutcomeReason.kind == kind, OutcomeReason.key == key))
    if row is not None and row.active:
        raise Conflict(f"a {kind} reason {key} exists")
    if row is None:
        pos = session.scalar(select(func.max(OutcomeReason.position)).where(OutcomeReason.kind == kind)) or 0
        row = OutcomeReason(kind=kind, key=key, label=label.strip(), position=pos + 1, active=True)
        session.add(row)
    else:
        row.active, row.label = True, label.strip()
    session.flush()
    record(
        session,
        actor,
        "outcome_reason",
        row.id,
        "create",
        after={"kind": kind, "key": key, "label": row.label},
    )
    return row


def retire_reason(session: Session, actor: Principal, kind: str, key: str) -> None:
    """Take a reason off the list; deals closed with it keep it."""

    actor.require(Perm.PIPELINES_ADMIN)
    row = session.scalar(select(OutcomeReason).where(OutcomeReason.kind == kind, OutcomeReason.key == key))
    if row is None or not row.active:
        raise NotFound(f"no active {kind} reason {key}")
    row.active = False
    record(session, actor, "outcome_reason", row.id, "retire", before={"key": key})


# ------------------------------------------------------------------------------ visibility


def visibility_clause(actor: Principal) -> ColumnElement[bool] | None:
    """Deals an actor may see: a rep its own (and unassigned) ones, a manager the team's."""

    return owner_visibility(actor, Opportunity.owner_id)


def get_opportunity(session: Session, actor: Principal, opp_id: int) -> Opportunity:
    actor.require(Perm.OPPORTUNITIES_READ)
    stmt = select(Opportunity).where(Opportunity.id == opp_id)
    vis = visibility_clause(actor)
    if vis is not None:
        stmt = stmt.where(vis)
    opp = session.scalar(stmt)
    if opp is None:
        raise NotFound(f"opportunity {opp_id} not found")
    return opp


def _check_owner(session: Session, actor: Principal, owner_id: int | None) -> None:
    require_assignable_owner(session, actor, owner_id, "opportunities")


def _bump(session: Session, opp: Opportunity, expected: int | None) -> None:
    """Compare-and-set on version, as for leads."""

    if expected is not None and expected != opp.version:
        raise StaleVersion(
            f"opportunity {opp.id} was changed by someone else (your version {expected}, current "
            f"{opp.version}); reload and retry",
            current_version=opp.version,
        )
    now = utcnow()
    res = session.execute(
        update(Opportunity)
        .where(Opportunity.id == opp.id, Opportunity.version == opp.version)
        .values(version=opp.version + 1, updated_at=now, last_activity_at=now)
        .execution_options(synchronize_session=False)
    )
    if res.rowcount != 1:  # type: ignore[attr-defined]
        session.expire(opp)
        raise StaleVersion(f"opportunity {opp.id} was changed by someone else; reload and retry")
    opp.version += 1
    opp.updated_at = opp.last_activity_at = now


# ------------------------------------------------------------------------------ convert


@dataclass
class ConvertInput:
    name: str | None = None
    amount: float = 0.0
    currency: str | None = None
    expected_close_date: date | None = None
    pipeline: int | str | None = None
    stage: str | None = None
    owner_id: int | None = None
    probability: int | None = None
    forecast_category: str | None = None
    account_id: int | None = None  # an existing account
    account: dict[str, Any] | None = None  # or a new one (name, domain, industry, ...)
    contact_lead_id: int | None = None  # an existing contact (lead) of the account
    signals: list[str] = field(default_factory=list)
    reason: str | None = None
    owner_set: bool = False  # owner_id given explicitly (None then means unassigned)


def _stage_by_key(session: Session, pipe: Pipeline, key: str | None, *, loc: str = "stage") -> PipelineStage:
    stages = stages_of(session, pipe.id)
    if key is None:
        return next(s for s in stages if s.kind == "open")
    for s in stages:
        if s.key == key:
            return s
    raise InvalidInput(
        loc, f"pipeline {pipe.key} has no stage {key!r} (stages: {', '.join(s.key for s in stages)})"
    )


def _fill_empty(obj: Any, values: Mapping[str, Any]) -> dict[str, Any]:
    """Set only the attributes that are empty (Salesforce's merge on conversion)."""

    filled = {}
    for key, value in values.items():
        if value not in (None, "") and getattr(obj, key) in (None, ""):
            filled[key] = value
    return filled


def _resolve_account(
    session: Session, actor: Principal, lead: Lead, inp: ConvertInput, owner_id: int | None
) -> Account | None:
    lead_values: dict[str, Any] = {"country": lead.country, "owner_id": owner_id}
    attrs = lead.attributes or {}
    for key in ("industry", "employee_count", "annual_revenue"):
        if attrs.get(key) not in (None, ""):
            lead_values[key] = attrs[key]
    if inp.account is not None and inp.account_id is not None:
        raise InvalidInput("account", "give either account_id (existing) or account (new), not both")
    if inp.account is not None:
        data = {**{k: v for k, v in lead_values.items() if v is not None}, **inp.account}
        data.setdefault("name", lead.company or "")
        try:
            return account_svc.create_account(session, actor, data)
        except InvalidInput as exc:
            raise InvalidInput(["account", *exc.loc], exc.reason) from None
    account_id = inp.account_id if inp.account_id is not None else lead.account_id
    if account_id is None:
        if not lead.company:
            return None
        return account_svc.create_account(
            session, actor, {"name": lead.company, **{k: v for k, v in lead_values.items() if v is not None}}
        )
    account = session.get(Account, account_id)
    if account is None:
        raise InvalidInput("account_id", f"no account with id {account_id}")
    fill = _fill_empty(account, lead_values)
    if fill:
        account_svc.update_account(session, actor, account.id, fill, expected_version=account.version)
    return account


def _last_touch(session: Session, lead: Lead, before: datetime) -> tuple[str | None, str | None]:
    """The channel of the last marketing touch (not a sales touch) before the conversion."""

    row = session.execute(
        select(Activity.type, Activity.source, Activity.properties)
        .where(
            Activity.lead_id == lead.id,
            Activity.occurred_at <= before,
            Activity.type.not_in([t.value for t in SALES_TOUCHES]),
        )
        .order_by(Activity.occurred_at.desc(), Activity.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return lead.source, lead.campaign
    kind, source, props = row
    props = props or {}
    channel = props.get("utm_source") or props.get("source") or source or kind
    campaign = props.get("campaign") or props.get("utm_campaign") or props.get("webinar") or props.get("form")
    return str(channel)[:100], (str(campaign)[:200] if campaign else None)


def convert_lead(session: Session, actor: Principal, lead_id: int, inp: ConvertInput) -> Opportunity:
    """Open an opportunity for a prospect (SQL), into a new or an existing account and contact;
    existing records only get their empty fields filled. The lead moves SQL -> opportunity with
    OpportunityOpened evidence naming the deal; a lead already at opportunity or customer (an
    upsell) keeps its stage."""

    actor.require(Perm.OPPORTUNITIES_WRITE)
    lead = leads.get_lead(session, actor, lead_id)
    if lead.merged_into_id is not None:
        raise InvalidInput("lead_id", f"lead {lead_id} was merged into lead {lead.merged_into_id}")
    pipe = get_pipeline(session, actor, inp.pipeline)
    if not pipe.active:
        raise InvalidInput("pipeline", f"pipeline {pipe.key} is archived")
    stage = _stage_by_key(session, pipe, inp.stage)
    if stage.kind != "open":
        raise InvalidInput("stage", "a new opportunity starts in an open stage")
    owner_id = inp.owner_id if inp.owner_set else (lead.owner_id or actor.user_id)
    _check_owner(session, actor, owner_id)
    if not 0 <= inp.amount < MAX_AMOUNT:
        raise InvalidInput("amount", f"must be between 0 and {MAX_AMOUNT}")
    currency = _currency(inp.currency or pipe.currency)
    probability = stage.probability if inp.probability is None else inp.probability
    if not 0 <= probability <= 100:
        raise InvalidInput("probability", "must be between 0 and 100")
    category = inp.forecast_category or stage.forecast_category
    if category not in core.ForecastCategory.__members__.values():
        raise InvalidInput("forecast_category", f"must be one of {', '.join(core.ForecastCategory)}")
    unknown = [s for s in inp.signals if s not in core.SIGNAL_KINDS]
    if unknown:
        raise InvalidInput("signals", f"unknown signal {unknown[0]!r}; one of {', '.join(core.SIGNAL_KINDS)}")

    account = _resolve_account(session, actor, lead, inp, owner_id)
    contact = lead
    if inp.contact_lead_id is not None and inp.contact_lead_id != lead.id:
        try:
            contact = leads.get_lead(session, actor, inp.contact_lead_id)
        except NotFound:
            raise InvalidInput("contact_lead_id", f"no lead {inp.contact_lead_id}") from None
        if account is not None and contact.account_id not in (None, account.id):
            raise InvalidInput("contact_lead_id", f"lead {contact.id} belongs to another account")
        fill = _fill_empty(
            contact,
            {k: getattr(lead, k) for k in ("phone", "job_title", "department", "country", "timezone")}
            | {"account_id": account.id if account else None},
        )
        if "phone" in fill:
            fill["phone"] = lead.phone_raw or lead.phone
        if fill:
            leads.update_lead(
                session,
                actor,
                contact.id,
                fill,
                expected_version=contact.version,
                reason=f"converted lead {lead.id}",
            )
    # The contact belongs to the account the deal was converted into (an explicit choice).
    if account is not None and lead.account_id != account.id:
        leads.update_lead(
            session,
            actor,
            lead.id,
            {"account_id": account.id},
            expected_version=lead.version,
            reason="converted",
        )

    found = list(
        session.scalars(
            select(BuyingSignal.kind).where(
                BuyingSignal.lead_id == lead.id, BuyingSignal.opportunity_id.is_(None)
            )
        )
    )
    signals = [k for k in core.SIGNAL_KINDS if k in set(inp.signals) | set(found)]
    now = utcnow()
    first_source, first_campaign = lead.source, lead.campaign
    last_source, last_campaign = _last_touch(session, lead, now)
    company = (
        (account.name if account else None)
        or lead.company
        or " ".join(p for p in (lead.first_name, lead.last_name) if p)
        or f"Lead {lead.id}"
    )
    name = (inp.name or "").strip() or f"{company} - {pipe.name}"
    if len(name) > 300:
        raise InvalidInput("name", "is longer than 300 characters")
    opp = Opportunity(
        name=name,
        lead_id=lead.id,
        contact_lead_id=contact.id,
        account_id=account.id if account else None,
        pipeline_id=pipe.id,
        stage_id=stage.id,
        owner_id=owner_id,
        amount=float(inp.amount),
        currency=currency,
        expected_close_date=inp.expected_close_date or (now + timedelta(days=DEFAULT_CLOSE_DAYS)).date(),
        probability=probability,
        forecast_category=str(category),
        status="open",
        stage_entered_at=now,
        last_activity_at=now,
        first_touch_source=first_source,
        first_touch_campaign=first_campaign,
        last_touch_source=last_source,
        last_touch_campaign=last_campaign,
        signals=signals or None,
        created_by=actor.user_id,
        created_at=now,
        updated_at=now,
        version=1,
    )
    session.add(opp)
    session.flush()
    session.add(
        OpportunityStageChange(
            opportunity_id=opp.id,
            from_stage_id=None,
            to_stage_id=stage.id,
            at=now,
            actor_id=actor.user_id,
            reason=inp.reason or "opportunity opened",
            amount=opp.amount,
        )
    )
    session.execute(
        update(BuyingSignal)
        .where(BuyingSignal.lead_id == lead.id, BuyingSignal.opportunity_id.is_(None))
        .values(opportunity_id=opp.id)
        .execution_options(synchronize_session=False)
    )
    evidence = {"kind": "conversion", "lead_id": lead.id, "signals": signals}
    record(
        session,
        actor,
        "opportunity",
        opp.id,
        "create",
        after=snapshot(opp),
        reason=inp.reason,
        evidence=evidence,
    )
    if lead.stage == Stage.SQL.value or lead.stage not in (Stage.OPPORTUNITY.value, Stage.CUSTOMER.value):
        # Anything but SQL is refused by the lifecycle with the legal moves listed.
        leads.transition_lead(
            session,
            actor,
            lead.id,
            Stage.OPPORTUNITY,
            evidence=OpportunityOpened(opportunity_id=str(opp.id), signals=tuple(signals)),
            reason=inp.reason,
        )
    emit(session, "opportunity.opened", opportunity_id=opp.id, lead_id=lead.id, owner_id=owner_id)
    return opp


# ------------------------------------------------------------------------------ edit and move


def update_opportunity(
    session: Session,
    actor: Principal,
    opp_id: int,
    data: Mapping[str, Any],
    *,
    expected_version: int,
    reason: str | None = None,
) -> Opportunity:
    actor.require(Perm.OPPORTUNITIES_WRITE)
    opp = get_opportunity(session, actor, opp_id)
    unknown = sorted(set(data) - EDITABLE)
    if unknown:
        raise InvalidInput(unknown[0], f"is not an editable field (editable: {', '.join(sorted(EDITABLE))})")
    values = dict(data)
    if "name" in values:
        values["name"] = str(values["name"] or "").strip()
        if not values["name"]:
            raise InvalidInput("name", "is empty")
    if "amount" in values:
        amount = values["amount"]
        if amount is None or not 0 <= float(amount) < MAX_AMOUNT:
            raise InvalidInput("amount", f"must be between 0 and {MAX_AMOUNT}")
        values["amount"] = float(amount)
    if "currency" in values:
        values["currency"] = _currency(values["currency"])
    if "probability" in values:
        p = values["probability"]
        if p is None or not 0 <= int(p) <= 100:
            raise InvalidInput("probability", "must be between 0 and 100")
    if "forecast_category" in values and values["forecast_category"] not in list(core.ForecastCategory):
        raise InvalidInput("forecast_category", f"must be one of {', '.join(core.ForecastCategory)}")
    if "expected_close_date" in values and values["expected_close_date"] is None:
        raise InvalidInput("expected_close_date", "is required")
    if "owner_id" in values:
        _check_owner(session, actor, values["owner_id"])
    before = snapshot(opp)
    for key, value in values.items():
        setattr(opp, key, value)
    b, a = changes(before, snapshot(opp))
    if not a:
        return opp
    _bump(session, opp, expected_version)
    record(session, actor, "opportunity", opp.id, "update", before=b, after=a, reason=reason)
    if "owner_id" in a:
        emit(session, "opportunity.assigned", opportunity_id=opp.id, owner_id=opp.owner_id)
    return opp


LEAD_EXITS = {"recycled": Stage.RECYCLED, "nurture": Stage.NURTURE, "unqualified": Stage.UNQUALIFIED}


def move_stage(
    session: Session,
    actor: Principal,
    opp_id: int,
    stage_key: str,
    *,
    reason: str | None = None,
    reason_key: str | None = None,
    expected_version: int | None = None,
    lead_stage: str | None = None,
    at: datetime | None = None,
) -> Opportunity:
    """Move a deal to another stage of its pipeline. Closing lost needs a loss reason from the
    list (a win reason is optional); a closed deal only moves back to an open stage (reopen).

    Winning moves the lead to customer (DealWon evidence). Losing leaves the lead where it is
    unless ``lead_stage`` (recycled, nurture or unqualified) asks to move it, with the loss as
    its reason."""

    actor.require(Perm.OPPORTUNITIES_WRITE)
    opp = get_opportunity(session, actor, opp_id)
    pipe = session.get(Pipeline, opp.pipeline_id)
    assert pipe is not None
    current = session.get(PipelineStage, opp.stage_id)
    assert current is not None
    target = _stage_by_key(session, pipe, stage_key)
    kind = core.StageKind(target.kind)
    allowed = (
        [r.key for r in list_reasons(session, actor, kind.value)] if kind is not core.StageKind.OPEN else []
    )
    if lead_stage is not None and lead_stage not in LEAD_EXITS:
        raise InvalidInput("lead_stage", f"must be one of {', '.join(LEAD_EXITS)}")
    if lead_stage is not None and kind is not core.StageKind.LOST:
        raise InvalidInput("lead_stage", "only a lost deal moves its lead out of the opportunity stage")
    try:
        move = core.decide_move(
            core.StageKind(current.kind),
            kind,
            same_stage=target.id == current.id,
            reason_key=reason_key,
            allowed_reasons=allowed,
            reason_required=kind is core.StageKind.LOST,
        )
    except core.PipelineError as exc:
        raise InvalidInput(exc.field, exc.message) from None
    now = at or utcnow()
    before = snapshot(opp)
    _bump(session, opp, expected_version)
    seconds = max(0, int((now - opp.stage_entered_at).total_seconds()))
    opp.stage_id = target.id
    opp.probability = target.probability
    opp.forecast_category = target.forecast_category
    opp.status = move.status.value
    opp.stage_entered_at = now
    if move.status is core.Status.OPEN:
        opp.closed_at, opp.close_reason, opp.close_note = None, None, None
    else:
        opp.closed_at, opp.close_reason, opp.close_note = now, reason_key, reason
    session.add(
        OpportunityStageChange(
            opportunity_id=opp.id,
            from_stage_id=current.id,
            to_stage_id=target.id,
            at=now,
            actor_id=actor.user_id,
            reason=reason,
            reason_key=reason_key,
            seconds_in_previous=seconds,
            amount=opp.amount,
        )
    )
    b, a = changes(before, snapshot(opp))
    action = (
        "reopen" if move.reopened else {"won": "won", "lost": "lost"}.get(move.status.value, "stage_change")
    )
    evidence = {"kind": "stage_move", "from": current.key, "to": target.key, "reason_key": reason_key}
    record(session, actor, "opportunity", opp.id, action, before=b, after=a, reason=reason, evidence=evidence)
    lead = session.get(Lead, opp.lead_id) if opp.lead_id is not None else None
    if move.status is core.Status.WON and lead is not None and lead.stage == Stage.OPPORTUNITY.value:
        leads.transition_lead(
            session,
            actor,
            lead.id,
            Stage.CUSTOMER,
            evidence=DealWon(opportunity_id=str(opp.id), amount=opp.amount),
            reason=reason,
            at=now,
        )
    if lead_stage is not None and lead is not None and lead.stage == Stage.OPPORTUNITY.value:
        still_open = session.scalar(
            select(func.count())
            .select_from(Opportunity)
            .where(Opportunity.lead_id == lead.id, Opportunity.status == "open", Opportunity.id != opp.id)
        )
        if not still_open:
            label = reason_key or "lost"
            leads.transition_lead(
                session,
                actor,
                lead.id,
                LEAD_EXITS[lead_stage],
                reason=f"opportunity {opp.id} lost ({label})" + (f": {reason}" if reason else ""),
                at=now,
            )
    emit(
        session,
        "opportunity.stage_changed",
        opportunity_id=opp.id,
        source=current.key,
        target=target.key,
        status=opp.status,
    )
    return opp


def reopen(
    session: Session,
    actor: Principal,
    opp_id: int,
    *,
    stage_key: str | None = None,
    reason: str | None = None,
    expected_version: int | None = None,
) -> Opportunity:
    """Reopen a closed deal into ``stage_key`` or the open stage it was closed from."""

    opp = get_opportunity(session, actor, opp_id)
    if opp.status == "open":
        raise InvalidInput("status", "the opportunity is open; nothing to reopen")
    if not (reason and reason.strip()):
        raise InvalidInput("reason", "reopening a closed deal needs a reason")
    if stage_key is None:
        last = session.scalar(
            select(OpportunityStageChange.from_stage_id)
            .where(
                OpportunityStageChange.opportunity_id == opp.id,
                OpportunityStageChange.to_stage_id == opp.stage_id,
            )
            .order_by(OpportunityStageChange.at.desc(), OpportunityStageChange.id.desc())
            .limit(1)
        )
        prev = session.get(PipelineStage, last) if last is not None else None
        if prev is None or prev.kind != "open" or not prev.active:
            pipe = session.get(Pipeline, opp.pipeline_id)
            assert pipe is not None
            prev = _stage_by_key(session, pipe, None)
        stage_key = prev.key
    return move_stage(session, actor, opp_id, stage_key, reason=reason, expected_version=expected_version)


# ------------------------------------------------------------------------------ queries


@dataclass
class OpportunityFilter:
    pipeline_id: int | None = None
    stage: str | None = None
    status: str | None = None
    owner_id: int | None = None
    account_id: int | None = None
    lead_id: int | None = None
    close_after: date | None = None
    close_before: date | None = None
    q: str | None = None


SORTABLE = {
    "id": Opportunity.id,
    "amount": Opportunity.amount,
    "expected_close_date": Opportunity.expected_close_date,
    "updated_at": Opportunity.updated_at,
    "created_at": Opportunity.created_at,
}


def _apply(stmt: Select[Any], f: OpportunityFilter) -> Select[Any]:
    if f.pipeline_id is not None:
        stmt = stmt.where(Opportunity.pipeline_id == f.pipeline_id)
    if f.stage:
        ids = select(PipelineStage.id).where(PipelineStage.key == f.stage)
        if f.pipeline_id is not None:
            ids = ids.where(PipelineStage.pipeline_id == f.pipeline_id)
        stmt = stmt.where(Opportunity.stage_id.in_(ids))
    if f.status:
        if f.status not in ("open", "won", "lost"):
            raise InvalidInput("status", "must be open, won or lost")
        stmt = stmt.where(Opportunity.status == f.status)
    if f.owner_id is not None:
        stmt = stmt.where(Opportunity.owner_id == f.owner_id)
    if f.account_id is not None:
        stmt = stmt.where(Opportunity.account_id == f.account_id)
    if f.lead_id is not None:
        stmt = stmt.where(or_(Opportunity.lead_id == f.lead_id, Opportunity.contact_lead_id == f.lead_id))
    if f.close_after is not None:
        stmt = stmt.where(Opportunity.expected_close_date >= f.close_after)
    if f.close_before is not None:
        stmt = stmt.where(Opportunity.expected_close_date < f.close_before)
    if f.q:
        like = f.q.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(func.lower(Opportunity.name).like(like, escape="\\"))
    return stmt


def list_opportunities(
    session: Session,
    actor: Principal,
    f: OpportunityFilter,
    *,
    sort: str = "id",
    descending: bool = False,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Opportunity]:
    actor.require(Perm.OPPORTUNITIES_READ)
    if sort not in SORTABLE:
        raise InvalidInput("sort", f"must be one of {', '.join(SORTABLE)}")
    if not 1 <= limit <= 1000:
        raise InvalidInput("limit", "must be between 1 and 1000")
    stmt = _apply(select(Opportunity), f)
    vis = visibility_clause(actor)
    if vis is not None:
        stmt = stmt.where(vis)
    column = SORTABLE[sort]
    stmt = keyset(stmt, column, Opportunity.id, descending=descending, cursor=cursor, limit=limit)
    rows = list(session.scalars(stmt))
    return page_of(rows, limit, lambda r: (getattr(r, column.key), r.id))


@dataclass
class StageSpan:
    stage_key: str
    stage_name: str
    entered_at: datetime
    left_at: datetime | None
    days: float
    actor_id: int | None
    reason: str | None
    reason_key: str | None


def stage_history(
    session: Session, actor: Principal, opp_id: int, *, now: datetime | None = None
) -> list[StageSpan]:
    """The deal's stages in order with the time spent in each (the current one until now)."""

    opp = get_opportunity(session, actor, opp_id)
    rows = list(
        session.scalars(
            select(OpportunityStageChange)
            .where(OpportunityStageChange.opportunity_id == opp.id)
            .order_by(OpportunityStageChange.at, OpportunityStageChange.id)
        )
    )
    stages = {s.id: s for s in stages_of(session, opp.pipeline_id, include_inactive=True)}
    now = now or utcnow()
    out: list[StageSpan] = []
    for i, ch in enumerate(rows):
        left = rows[i + 1].at if i + 1 < len(rows) else None
        st = stages.get(ch.to_stage_id)
        closed = st is not None and st.kind != "open"
        end = left or (ch.at if closed else now)
        out.append(
            StageSpan(
                stage_key=st.key if st else "?",
                stage_name=st.name if st else "?",
                entered_at=ch.at,
                left_at=left,
                days=round((end - ch.at).total_seconds() / 86400, 2),
                actor_id=ch.actor_id,
                reason=ch.reason,
                reason_key=ch.reason_key,
            )
        )
    return out


def timeline(session: Session, actor: Principal, opp_id: int, *, limit: int = 500) -> dict[str, Any]:
    """Everything that led to the deal: the lead's stage history (with evidence), its activities
    and the buying signals, next to the deal's own stage history."""

    opp = get_opportunity(session, actor, opp_id)
    out: dict[str, Any] = {
        "opportunity_id": opp.id,
        "lead_id": opp.lead_id,
        "lead_stages": [],
        "activities": [],
    }
    if opp.lead_id is not None:
        try:
            history = leads.stage_history(session, actor, opp.lead_id)
        except NotFound:  # the lead belongs to someone this actor cannot see
            history = []
        out["lead_stages"] = [
            {
                "at": h.at,
                "from_stage": h.from_stage,
                "to_stage": h.to_stage,
                "reason": h.reason,
                "evidence": h.evidence,
                "actor_id": h.actor_id,
            }
            for h in history
        ]
        if history:
            acts = session.scalars(
                select(Activity)
                .where(Activity.lead_id == opp.lead_id)
                .order_by(Activity.occurred_at.desc(), Activity.id.desc())
                .limit(limit)
            )
            out["activities"] = [
                {
                    "id": a.id,
                    "type": a.type,
                    "occurred_at": a.occurred_at,
                    "source": a.source,
                    "properties": a.properties,
                }
                for a in acts
            ]
    out["signals"] = [
        {"kind": s.kind, "occurred_at": s.occurred_at, "activity_id": s.activity_id, "detail": s.detail}
        for s in session.scalars(
            select(BuyingSignal)
            .where(BuyingSignal.opportunity_id == opp.id)
            .order_by(BuyingSignal.occurred_at)
        )
    ]
    out["stages"] = [s.__dict__ for s in stage_history(session, actor, opp.id)]
    return out
