"""The lead page's needs assessment and discovery call, driven by the configured questionnaire
and the chosen framework (BANT, MEDDIC, CHAMP or a custom one), recorded through
``leadflow.qualification.service`` exactly as the API records them: outcome by the qualifying
rule or the framework's recommendation, the stage move with the record as its evidence, audit,
the handoff touch and the follow-up task."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from leadflow.auth.principal import Perm
from leadflow.core import qualification as core
from leadflow.core.lifecycle import Stage
from leadflow.errors import InvalidInput, NotFound
from leadflow.leads import service as leads
from leadflow.leads.models import Lead
from leadflow.qualification import config as qconfig
from leadflow.qualification import service as qsvc
from leadflow.web.core import PREFIX, Ctx, CtxDep, redirect, render

router = APIRouter(prefix=PREFIX, include_in_schema=False)

OUTCOMES = {
    "auto": "As the ratings recommend",
    "sql": "SQL: qualified prospect",
    "unqualified": "Unqualified",
    "pending": "Pending: no decision yet",
}


def field_errors(exc: InvalidInput) -> dict[str, str]:
    """``{"answers.need": "is required", ...}``: the form's field names are the error locs."""

    raw = exc.extra.get("errors") or [{"loc": exc.loc, "msg": exc.reason}]
    out: dict[str, str] = {}
    for e in raw:
        loc = ".".join(str(x) for x in (e.get("loc") or []) if x != "body") or "_form"
        out.setdefault(loc, str(e.get("msg")))
    return out


def _active_q(session: Session, ctx: Ctx) -> list[Any]:
    return [r for r in qconfig.list_questionnaires(session, ctx.principal) if r.active]


def _active_fw(session: Session, ctx: Ctx) -> list[Any]:
    return [r for r in qconfig.list_frameworks(session, ctx.principal) if r.active]


def lead_qualification(
    session: Session,
    ctx: Ctx,
    lead: Lead,
    *,
    questionnaire_key: str | None = None,
    framework_key: str | None = None,
) -> dict[str, Any]:
    """What the lead page's qualification forms need (the chosen questionnaire and framework,
    the call script, the earlier records)."""

    stage = Stage(lead.stage)
    out: dict[str, Any] = {
        "show_assessment": stage in qsvc.AUTO_MOVE_FROM and ctx.can(Perm.LEADS_WRITE),
        "show_call": stage in (Stage.SAL, Stage.SQL) and ctx.can(Perm.LEADS_TRANSITION),
        "rating_labels": core.RATING_LABELS,
        "dc_outcomes": OUTCOMES,
        "buying_roles": [r.value for r in core.BuyingRole],
        "assessments": qsvc.list_assessments(session, ctx.principal, lead.id),
        "calls": qsvc.list_calls(session, ctx.principal, lead.id),
    }
    if out["show_assessment"]:
        try:
            qrow = qconfig.questionnaire_row(session, questionnaire_key or None)
        except NotFound:
            qrow = qconfig.questionnaire_row(session)
        out.update(questionnaires=_active_q(session, ctx), qrow=qrow, nq=qconfig.questionnaire(qrow))
    if out["show_call"]:
        try:
            frow = qconfig.framework_row(session, framework_key or None)
        except NotFound:
            frow = qconfig.framework_row(session)
        fw = qconfig.framework(frow)
        script = qsvc.call_script(session, ctx.principal, lead.id, fw.key)
        out.update(
            frameworks=_active_fw(session, ctx),
            fw=fw,
            script=script,
            script_questions={q["criterion"]: q for q in script["questions"]},
        )
    return out


def _lead_page(ctx: Ctx, lead_id: int, status: int, **extra: Any) -> Response:
    from leadflow.web.routes import render_lead_page  # the lead page lives there

    return render_lead_page(ctx, lead_id, status_code=status, **extra)


def _fragment(ctx: Ctx, lead_id: int, name: str, status: int, **values: Any) -> Response:
    """The form alone (an HTMX swap into the form), with its values and errors."""

    with ctx.db.transaction() as s:
        lead = leads.get_lead(s, ctx.principal, lead_id)
        part = lead_qualification(
            s,
            ctx,
            lead,
            questionnaire_key=values.get("na_questionnaire"),
            framework_key=values.get("call_framework"),
        )
    return render(ctx, ctx.request, name, status_code=status, lead=lead, **part, **values)


# ------------------------------------------------------------------------------ needs assessment


def _answers(form: FormData, q: core.Questionnaire) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for question in q.questions:
        name = f"answers.{question.key}"
        if question.type is core.AnswerType.MULTI_CHOICE:
            chosen = [str(v) for v in form.getlist(name) if str(v)]
            if chosen:
                answers[question.key] = chosen
        else:
            value = str(form.get(name) or "").strip()
            if value:
                answers[question.key] = value
    return answers


@router.post("/leads/{lead_id}/needs-assessment")
async def needs_assessment(ctx: CtxDep, lead_id: int) -> Response:
    form = await ctx.request.form()
    key = str(form.get("questionnaire") or "") or None
    on_call = form.get("on_call") == "yes"
    with ctx.db.transaction() as s:
        leads.get_lead(s, ctx.principal, lead_id)  # an invisible lead is 404 before any 422
        q = qconfig.questionnaire(qconfig.questionnaire_row(s, key))
    answers = _answers(form, q)
    try:
        with ctx.db.transaction() as s:
            res = qsvc.record_assessment(
                s,
                ctx.principal,
                lead_id,
                answers,
                channel="call" if on_call else "api",
                questionnaire_key=q.key,
            )
            outcome, applied, why = res.decision.outcome, res.applied, res.not_applied_reason
            reason = res.decision.reason
    except InvalidInput as exc:
        values = {
            "na_values": {
                x.key: [str(v) for v in form.getlist(f"answers.{x.key}")]
                if x.type is core.AnswerType.MULTI_CHOICE
                else str(form.get(f"answers.{x.key}") or "")
                for x in q.questions
            },
            "na_errors": field_errors(exc),
            "na_questionnaire": q.key,
            "na_on_call": on_call,
        }
        if ctx.is_htmx:
            return _fragment(ctx, lead_id, "_needs_form.html", 422, **values)
        return _lead_page(ctx, lead_id, 422, **values)
    msg = f"Needs assessment saved: {outcome.replace('_', ' ')}"
    msg += f" ({reason})" if reason and outcome != "sal" else ""
    msg += "; lead moved." if applied else f"; not applied: {why}."
    return redirect(ctx, f"{PREFIX}/leads/{lead_id}?{_q(msg)}")


def _q(msg: str) -> str:
    return urlencode({"msg": msg})


# ------------------------------------------------------------------------------ discovery call


@router.get("/leads/{lead_id}/discovery-call", response_class=HTMLResponse)
def discovery_form(ctx: CtxDep, lead_id: int, framework: str = "") -> Response:
    """The call form for another framework: a fragment for HTMX, else the lead page."""

    if not ctx.is_htmx:
        with ctx.db.transaction() as s:
            leads.get_lead(s, ctx.principal, lead_id)  # an invisible lead is 404, not a redirect
        url = f"{PREFIX}/leads/{lead_id}" + (f"?framework={framework}" if framework else "")
        return redirect(None, url + "#discovery")
    return _fragment(ctx, lead_id, "_call_form.html", 200, call_framework=framework or None)


def _criteria(form: FormData, fw: core.Framework) -> dict[str, Any]:
    criteria: dict[str, Any] = {}
    for c in fw.criteria:
        raw = str(form.get(f"criteria.{c.key}.rating") or "").strip()
        try:
            rating = int(raw) if raw else 0
        except ValueError:
            raise InvalidInput(["criteria", c.key, "rating"], "choose a rating") from None
        criteria[c.key] = {"answer": str(form.get(f"criteria.{c.key}.answer") or ""), "rating": rating}
    return criteria


@router.post("/leads/{lead_id}/discovery-call")
async def discovery_call(ctx: CtxDep, lead_id: int) -> Response:
    form = await ctx.request.form()
    key = str(form.get("framework") or "") or None

    def text(name: str) -> str | None:
        return str(form.get(name) or "").strip() or None

    outcome = str(form.get("outcome") or "auto")
    with ctx.db.transaction() as s:
        leads.get_lead(s, ctx.principal, lead_id)  # an invisible lead is 404 before any 422
        fw = qconfig.framework(qconfig.framework_row(s, key))
    try:
        if outcome not in OUTCOMES:
            raise InvalidInput("outcome", f"must be one of {', '.join(OUTCOMES)}")
        criteria = _criteria(form, fw)
        reason = text("reason")
        if outcome == "auto":
            # The rep follows the framework: its recommendation is the outcome (and its reason,
            # naming the unmet criteria, the reason of an unqualified one unless the rep gave one).
            try:
                rec = core.recommend(fw, core.validate_call_criteria(fw, criteria))
            except core.DefinitionError as exc:
                raise InvalidInput(exc.loc, exc.message) from None
            outcome = rec.outcome
            if outcome == "unqualified" and not reason:
                reason = rec.reason
        data = qsvc.CallInput(
            criteria=criteria,
            outcome=outcome,  # type: ignore[arg-type]
            framework=fw.key,
            reason=reason,
            override_reason=text("override_reason"),
            referral=text("referral"),
            recommended_vendor=text("recommended_vendor"),
            notes=text("notes"),
            buying_role=text("buying_role"),
        )
        with ctx.db.transaction() as s:
            res = qsvc.record_call(s, ctx.principal, lead_id, data)
            final, recommended = res.record.outcome, res.recommendation.outcome
    except InvalidInput as exc:
        values = {
            "call_values": {k: str(v) for k, v in form.items()},
            "call_errors": field_errors(exc),
            "call_framework": fw.key,
        }
        if ctx.is_htmx:
            return _fragment(ctx, lead_id, "_call_form.html", 422, **values)
        return _lead_page(ctx, lead_id, 422, **values)
    msg = f"Discovery call ({fw.name}) saved: {final}"
    if final != recommended and final != "pending":
        msg += f" (the ratings recommended {recommended})"
    return redirect(ctx, f"{PREFIX}/leads/{lead_id}?{_q(msg)}")
