"""Pipeline kanban, opportunity page and converting a prospect into a deal, on
``leadflow.pipeline.service`` (rights, visibility and move rules live there)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Form
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import func, select

from leadflow.auth import service as auth
from leadflow.core import pipeline as core
from leadflow.db.base import utcnow
from leadflow.errors import InvalidInput, NotFound
from leadflow.leads import service as leads
from leadflow.leads.models import Account, Lead
from leadflow.pipeline import service as svc
from leadflow.pipeline.models import Opportunity
from leadflow.web.core import PREFIX, CtxDep, redirect, render

router = APIRouter(prefix=PREFIX, include_in_schema=False)

CARDS_PER_COLUMN = 50


def _opp_url(opp_id: int) -> str:
    return f"{PREFIX}/opportunities/{opp_id}"


@router.get("/pipeline", response_class=HTMLResponse)
def kanban(ctx: CtxDep, pipeline: str | None = None, mine: bool = False) -> Response:
    now = utcnow()
    with ctx.db.transaction() as s:
        pipes = [p for p in svc.list_pipelines(s, ctx.principal) if p.active]
        pipe = svc.get_pipeline(s, ctx.principal, pipeline)
        stages = svc.stages_of(s, pipe.id)
        vis = svc.visibility_clause(ctx.principal)
        # Count and weighted total per stage: one grouped query over the deals the user sees.
        agg = select(
            Opportunity.stage_id,
            func.count(),
            func.coalesce(func.sum(Opportunity.amount), 0),
            func.coalesce(func.sum(Opportunity.amount * Opportunity.probability / 100.0), 0),
        ).where(Opportunity.pipeline_id == pipe.id)
        if vis is not None:
            agg = agg.where(vis)
        if mine:
            agg = agg.where(Opportunity.owner_id == ctx.user.id)
        totals = {
            sid: (int(n), float(a), float(w))
            for sid, n, a, w in s.execute(agg.group_by(Opportunity.stage_id))
        }
        columns = []
        for st in stages:
            f = svc.OpportunityFilter(
                pipeline_id=pipe.id, stage=st.key, owner_id=ctx.user.id if mine else None
            )
            # Open stages list the idlest deals first (they need attention); closed ones the newest.
            page = svc.list_opportunities(
                s, ctx.principal, f, sort="updated_at", descending=st.kind != "open", limit=CARDS_PER_COLUMN
            )
            cards = [
                {
                    "opp": o,
                    "rotting": st.kind == "open"
                    and core.is_rotting(o.stage_entered_at, o.last_activity_at, st.rotting_days, now),
                    "idle": core.idle_days(o.stage_entered_at, o.last_activity_at, now),
                }
                for o in page.items
            ]
            n, amount, weighted = totals.get(st.id, (0, 0.0, 0.0))
            columns.append({"stage": st, "cards": cards, "count": n, "amount": amount, "weighted": weighted})
        reasons = {k: svc.list_reasons(s, ctx.principal, k) for k in ("won", "lost")}
        owners = {u.id: u for u in auth.list_users(s)}
    return render(
        ctx,
        ctx.request,
        "kanban.html",
        nav="pipeline",
        pipe=pipe,
        pipes=pipes,
        columns=columns,
        reasons=reasons,
        owners=owners,
        mine=mine,
    )


@router.post("/opportunities/move")
def move(
    ctx: CtxDep,
    card: Annotated[int, Form()],
    stage: Annotated[str, Form()],
    reason: Annotated[str, Form()] = "",
    reason_key: Annotated[str, Form()] = "",
    lead_stage: Annotated[str, Form()] = "",
    back: Annotated[str, Form()] = "",
) -> Response:
    with ctx.db.transaction() as s:
        svc.move_stage(
            s,
            ctx.principal,
            card,
            stage,
            reason=reason.strip() or None,
            reason_key=reason_key or None,
            lead_stage=lead_stage or None,
        )
    target = back if back.startswith(PREFIX + "/") else _opp_url(card)
    return redirect(ctx, target)


@router.get("/opportunities/{opp_id}", response_class=HTMLResponse)
def opportunity_page(ctx: CtxDep, opp_id: int) -> Response:
    with ctx.db.transaction() as s:
        opp = svc.get_opportunity(s, ctx.principal, opp_id)
        pipe = svc.get_pipeline(s, ctx.principal, opp.pipeline_id)
        stages = svc.stages_of(s, pipe.id)
        spans = svc.stage_history(s, ctx.principal, opp_id)
        tl = svc.timeline(s, ctx.principal, opp_id, limit=100)
        account = s.get(Account, opp.account_id) if opp.account_id else None
        contact = None
        if opp.contact_lead_id is not None:
            try:
                contact = leads.get_lead(s, ctx.principal, opp.contact_lead_id)
            except NotFound:  # the contact may be invisible to this user; the deal is not
                contact = None
        reasons = {k: svc.list_reasons(s, ctx.principal, k) for k in ("won", "lost")}
        owners = {u.id: u for u in auth.list_users(s)}
    current = next((st for st in stages if st.id == opp.stage_id), None)
    rotting = bool(
        current
        and opp.status == "open"
        and core.is_rotting(opp.stage_entered_at, opp.last_activity_at, current.rotting_days, utcnow())
    )
    return render(
        ctx,
        ctx.request,
        "opportunity.html",
        nav="pipeline",
        opp=opp,
        pipe=pipe,
        stages=stages,
        current=current,
        spans=spans,
        tl=tl,
        account=account,
        contact=contact,
        reasons=reasons,
        owners=owners,
        rotting=rotting,
        weighted=core.weighted(opp.amount, opp.probability),
    )


@router.post("/opportunities/{opp_id}/edit")
def edit(
    ctx: CtxDep,
    opp_id: int,
    version: Annotated[int, Form()],
    amount: Annotated[str, Form()] = "",
    expected_close_date: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
) -> Response:
    data: dict[str, Any] = {}
    if name.strip():
        data["name"] = name.strip()
    if amount.strip():
        try:
            data["amount"] = float(amount)
        except ValueError:
            raise InvalidInput("amount", "must be a number") from None
    if expected_close_date.strip():
        try:
            data["expected_close_date"] = date.fromisoformat(expected_close_date)
        except ValueError:
            raise InvalidInput("expected_close_date", "must be a date YYYY-MM-DD") from None
    with ctx.db.transaction() as s:
        svc.update_opportunity(
            s, ctx.principal, opp_id, data, expected_version=version, reason="edited in the web UI"
        )
    return redirect(ctx, _opp_url(opp_id))


@router.post("/leads/{lead_id}/convert")
def convert(
    ctx: CtxDep,
    lead_id: int,
    name: Annotated[str, Form()] = "",
    amount: Annotated[str, Form()] = "0",
    expected_close_date: Annotated[str, Form()] = "",
    pipeline: Annotated[str, Form()] = "",
    signals: Annotated[list[str] | None, Form()] = None,
) -> Response:
    try:
        value = float(amount or 0)
    except ValueError:
        raise InvalidInput("amount", "must be a number") from None
    close = None
    if expected_close_date:
        try:
            close = date.fromisoformat(expected_close_date)
        except ValueError:
            raise InvalidInput("expected_close_date", "must be a date YYYY-MM-DD") from None
    inp = svc.ConvertInput(
        name=name.strip() or None,
        amount=value,
        expected_close_date=close,
        pipeline=pipeline or None,
        signals=list(signals or []),
    )
    with ctx.db.transaction() as s:
        opp = svc.convert_lead(s, ctx.principal, lead_id, inp)
        opp_id = opp.id
    return redirect(ctx, _opp_url(opp_id))


def lead_opportunities(session: Any, ctx: CtxDep, lead: Lead) -> dict[str, Any]:
    """What the lead page shows of the pipeline: the lead's deals and the convert form."""

    if not ctx.can("opportunities:read"):
        return {"opportunities": [], "pipelines": [], "signal_kinds": []}
    page = svc.list_opportunities(session, ctx.principal, svc.OpportunityFilter(lead_id=lead.id), limit=20)
    return {
        "opportunities": page.items,
        "pipelines": [p for p in svc.list_pipelines(session, ctx.principal) if p.active],
        "signal_kinds": list(core.SIGNAL_KINDS),
    }
