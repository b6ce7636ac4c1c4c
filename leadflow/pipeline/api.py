"""HTTP routes for pipelines, opportunities, conversion and buying signals (thin)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response, status
from sqlalchemy.orm import Session

from leadflow.auth.deps import DB, Actor
from leadflow.core import pipeline as core
from leadflow.db.base import utcnow
from leadflow.errors import InvalidInput
from leadflow.pipeline import service as svc
from leadflow.pipeline import signals as sig
from leadflow.pipeline.models import Opportunity, Pipeline, PipelineStage
from leadflow.pipeline.schemas import (
    ConvertIn,
    DecisionTimelineIn,
    MoveIn,
    OpportunityOut,
    OpportunityPage,
    OpportunityUpdate,
    PipelineIn,
    PipelineOut,
    ReadyOut,
    ReasonIn,
    ReasonOut,
    ReopenIn,
    RuleIn,
    RuleOut,
    SignalOut,
    StageOut,
    StagesIn,
    StageSpanOut,
)

router = APIRouter(prefix="/api", tags=["opportunities"])


def _version(body_version: int | None, if_match: str | None) -> int:
    if body_version is not None:
        return body_version
    if if_match:
        try:
            return int(if_match.strip().strip('W/"').strip('"'))
        except ValueError:
            raise InvalidInput(["header", "If-Match"], "must be the opportunity's version number") from None
    raise InvalidInput("version", "send the version you read (body field version or an If-Match header)")


def opportunity_out(session: Session, opp: Opportunity) -> OpportunityOut:
    stage = session.get(PipelineStage, opp.stage_id)
    out = OpportunityOut.model_validate(opp)
    out.stage = stage.key if stage else None
    out.weighted_amount = core.weighted(opp.amount, opp.probability)
    if opp.status == "open" and stage is not None:
        out.rotting = core.is_rotting(
            opp.stage_entered_at, opp.last_activity_at, stage.rotting_days, utcnow()
        )
    return out


def pipeline_out(session: Session, pipe: Pipeline) -> PipelineOut:
    out = PipelineOut.model_validate(pipe)
    out.stages = [StageOut.model_validate(s) for s in svc.stages_of(session, pipe.id)]
    return out


# ------------------------------------------------------------------------------ pipelines


@router.get("/pipelines", response_model=list[PipelineOut], summary="Pipelines with their ordered stages")
def list_pipelines(db: DB, actor: Actor) -> list[PipelineOut]:
    with db.transaction() as s:
        return [pipeline_out(s, p) for p in svc.list_pipelines(s, actor)]


@router.post(
    "/pipelines", response_model=PipelineOut, status_code=status.HTTP_201_CREATED, summary="Create a pipeline"
)
def create_pipeline(body: PipelineIn, db: DB, actor: Actor) -> PipelineOut:
    with db.transaction() as s:
        pipe = svc.create_pipeline(
            s,
            actor,
            key=body.key,
            name=body.name,
            currency=body.currency,
            stages=[st.model_dump() for st in body.stages] if body.stages else None,
            is_default=body.is_default,
        )
        return pipeline_out(s, pipe)


@router.get("/pipelines/{ref}", response_model=PipelineOut, summary="A pipeline by id or key")
def get_pipeline(ref: str, db: DB, actor: Actor) -> PipelineOut:
    with db.transaction() as s:
        return pipeline_out(s, svc.get_pipeline(s, actor, ref))


@router.put("/pipelines/{ref}/stages", response_model=PipelineOut, summary="Replace a pipeline's stages")
def set_stages(ref: str, body: StagesIn, db: DB, actor: Actor) -> PipelineOut:
    with db.transaction() as s:
        pipe = svc.get_pipeline(s, actor, ref)
        svc.set_stages(s, actor, pipe.id, [st.model_dump() for st in body.stages], reason=body.reason)
        return pipeline_out(s, pipe)


@router.get("/outcome-reasons", response_model=list[ReasonOut], summary="The won and lost reasons")
def list_reasons(
    db: DB, actor: Actor, kind: Annotated[str | None, Query(pattern="^(won|lost)$")] = None
) -> Any:
    with db.transaction() as s:
        return [ReasonOut.model_validate(r) for r in svc.list_reasons(s, actor, kind)]


@router.post(
    "/outcome-reasons", response_model=ReasonOut, status_code=status.HTTP_201_CREATED, summary="Add a reason"
)
def add_reason(body: ReasonIn, db: DB, actor: Actor) -> Any:
    with db.transaction() as s:
        return ReasonOut.model_validate(svc.add_reason(s, actor, body.kind, body.key, body.label))


@router.delete(
    "/outcome-reasons/{kind}/{key}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Retire a reason (closed deals keep it)",
)
def retire_reason(kind: str, key: str, db: DB, actor: Actor) -> Response:
    with db.transaction() as s:
        svc.retire_reason(s, actor, kind, key)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# ------------------------------------------------------------------------------ conversion


@router.post(
    "/leads/{lead_id}/convert",
    response_model=OpportunityOut,
    status_code=status.HTTP_201_CREATED,
    summary="Convert a prospect (SQL) into an opportunity, account and contact",
)
def convert(lead_id: int, body: ConvertIn, db: DB, actor: Actor) -> OpportunityOut:
    inp = svc.ConvertInput(
        **body.model_dump(exclude={"account"}),
        account=body.account.model_dump(exclude_none=True) if body.account else None,
        owner_set="owner_id" in body.model_fields_set,
    )
    with db.transaction() as s:
        opp = svc.convert_lead(s, actor, lead_id, inp)
        return opportunity_out(s, opp)


@router.get(
    "/leads/{lead_id}/buying-signals", response_model=list[SignalOut], summary="A lead's buying signals"
)
def lead_signals(lead_id: int, db: DB, actor: Actor) -> Any:
    with db.transaction() as s:
        return [
            SignalOut(kind=x.kind, occurred_at=x.occurred_at, activity_id=x.activity_id, detail=x.detail)
            for x in sig.lead_signals(s, actor, lead_id)
        ]


@router.post(
    "/leads/{lead_id}/decision-timeline",
    response_model=SignalOut,
    status_code=status.HTTP_201_CREATED,
    summary="Record the decision timeline the prospect shared (a buying signal)",
)
def decision_timeline(lead_id: int, body: DecisionTimelineIn, db: DB, actor: Actor) -> Any:
    with db.transaction() as s:
        x = sig.record_decision_timeline(s, actor, lead_id, decision_date=body.decision_date, note=body.note)
        return SignalOut(kind=x.kind, occurred_at=x.occurred_at, activity_id=x.activity_id, detail=x.detail)


@router.get(
    "/opportunity-ready",
    response_model=list[ReadyOut],
    summary="Prospects with buying signals and no opportunity yet, with the evidence",
)
def ready(db: DB, actor: Actor, limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> Any:
    with db.transaction() as s:
        return [
            ReadyOut(
                lead_id=r.lead_id,
                name=r.name,
                company=r.company,
                owner_id=r.owner_id,
                signals=[SignalOut(**x) for x in r.signals],
            )
            for r in sig.ready_prospects(s, actor, limit=limit)
        ]


@router.get("/opportunity-rule", response_model=RuleOut | None, summary="The automatic conversion rule")
def get_rule(db: DB, actor: Actor) -> Any:
    with db.transaction() as s:
        row = sig.get_rule(s, actor)
        return RuleOut.model_validate(row) if row else None


@router.put("/opportunity-rule", response_model=RuleOut, summary="Set the automatic conversion rule")
def set_rule(body: RuleIn, db: DB, actor: Actor) -> Any:
    with db.transaction() as s:
        row = sig.set_rule(
            s,
            actor,
            active=body.active,
            signals=list(body.signals),
            min_signals=body.min_signals,
            pipeline=body.pipeline,
            stage_key=body.stage,
            amount=body.amount,
            close_in_days=body.close_in_days,
        )
        return RuleOut.model_validate(row)


# ------------------------------------------------------------------------------ opportunities


@router.get("/opportunities", response_model=OpportunityPage, summary="List opportunities you may see")
def list_opportunities(
    db: DB,
    actor: Actor,
    pipeline: str | None = None,
    stage: str | None = None,
    status_: Annotated[str | None, Query(alias="status", pattern="^(open|won|lost)$")] = None,
    owner_id: int | None = None,
    account_id: int | None = None,
    lead_id: int | None = None,
    close_after: date | None = None,
    close_before: date | None = None,
    q: str | None = None,
    sort: str = "id",
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> OpportunityPage:
    desc = sort.startswith("-")
    with db.transaction() as s:
        pipe_id = svc.get_pipeline(s, actor, pipeline).id if pipeline else None
        f = svc.OpportunityFilter(
            pipeline_id=pipe_id,
            stage=stage,
            status=status_,
            owner_id=owner_id,
            account_id=account_id,
            lead_id=lead_id,
            close_after=close_after,
            close_before=close_before,
            q=q,
        )
        page = svc.list_opportunities(
            s, actor, f, sort=sort.lstrip("-"), descending=desc, cursor=cursor, limit=limit
        )
        return OpportunityPage(
            items=[opportunity_out(s, o) for o in page.items], next_cursor=page.next_cursor
        )


@router.get("/opportunities/{opp_id}", response_model=OpportunityOut, summary="One opportunity")
def get_opportunity(opp_id: int, db: DB, actor: Actor, response: Response) -> OpportunityOut:
    with db.transaction() as s:
        opp = svc.get_opportunity(s, actor, opp_id)
        response.headers["ETag"] = f'"{opp.version}"'
        return opportunity_out(s, opp)


@router.patch("/opportunities/{opp_id}", response_model=OpportunityOut, summary="Edit an opportunity")
def update_opportunity(
    opp_id: int,
    body: OpportunityUpdate,
    db: DB,
    actor: Actor,
    if_match: Annotated[str | None, Header()] = None,
) -> OpportunityOut:
    data = body.model_dump(exclude_unset=True, exclude={"version", "reason"})
    with db.transaction() as s:
        opp = svc.update_opportunity(
            s, actor, opp_id, data, expected_version=_version(body.version, if_match), reason=body.reason
        )
        return opportunity_out(s, opp)


@router.post(
    "/opportunities/{opp_id}/stage",
    response_model=OpportunityOut,
    summary="Move to another stage (closed won / closed lost with a reason)",
)
def move(
    opp_id: int, body: MoveIn, db: DB, actor: Actor, if_match: Annotated[str | None, Header()] = None
) -> OpportunityOut:
    with db.transaction() as s:
        opp = svc.move_stage(
            s,
            actor,
            opp_id,
            body.stage,
            reason=body.reason,
            reason_key=body.reason_key,
            expected_version=body.version
            if body.version is not None
            else (_version(None, if_match) if if_match else None),
            lead_stage=body.lead_stage,
        )
        return opportunity_out(s, opp)


@router.post("/opportunities/{opp_id}/reopen", response_model=OpportunityOut, summary="Reopen a closed deal")
def reopen(
    opp_id: int, body: ReopenIn, db: DB, actor: Actor, if_match: Annotated[str | None, Header()] = None
) -> OpportunityOut:
    with db.transaction() as s:
        opp = svc.reopen(
            s,
            actor,
            opp_id,
            stage_key=body.stage,
            reason=body.reason,
            expected_version=body.version
            if body.version is not None
            else (_version(None, if_match) if if_match else None),
        )
        return opportunity_out(s, opp)


@router.get(
    "/opportunities/{opp_id}/stages",
    response_model=list[StageSpanOut],
    summary="Stage history with the time spent in each stage",
)
def stage_history(opp_id: int, db: DB, actor: Actor) -> Any:
    with db.transaction() as s:
        return [StageSpanOut(**x.__dict__) for x in svc.stage_history(s, actor, opp_id)]


@router.get(
    "/opportunities/{opp_id}/timeline",
    summary="The lead's whole history (stages with evidence, activities, signals) and the deal's stages",
)
def timeline(opp_id: int, db: DB, actor: Actor) -> dict[str, Any]:
    with db.transaction() as s:
        return svc.timeline(s, actor, opp_id)
