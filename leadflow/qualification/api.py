"""HTTP routes of qualification: configuration, needs assessments (API and public web form),
discovery calls and call scripts, the three levels, buying committees, the sales queue (handoff)
and the SLA and rejection reports."""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from leadflow.auth.deps import DB, Actor
from leadflow.config import get_settings
from leadflow.leads.forms_api import read_public_fields
from leadflow.qualification import config as cfg
from leadflow.qualification import handoff as ho
from leadflow.qualification import service as svc
from leadflow.qualification.models import Handoff, QuestionnaireDef
from leadflow.qualification.schemas import (
    AssessmentIn,
    AssessmentOut,
    AssessmentResultOut,
    BreachCheckOut,
    CallIn,
    CallOut,
    CallResultOut,
    FrameworkIn,
    FrameworkOut,
    HandoffOut,
    LevelIn,
    QuestionnaireIn,
    QuestionnaireOut,
    QueueItemOut,
    RejectIn,
    RoleIn,
    SettingIn,
    TouchIn,
)

router = APIRouter(prefix="/api/qualification", tags=["qualification"])
public_router = APIRouter(tags=["qualification"])
_limiter = MovingWindowRateLimiter(MemoryStorage())


def _q_out(row: QuestionnaireDef) -> QuestionnaireOut:
    out = QuestionnaireOut.model_validate(row)
    return out.model_copy(
        update={"post_url": f"/forms/assessments/{row.public_key}" if row.public_key else None}
    )


# ------------------------------------------------------------------------------ configuration


@router.get(
    "/questionnaires", response_model=list[QuestionnaireOut], summary="Needs-assessment questionnaires"
)
def list_questionnaires(db: DB, actor: Actor) -> list[QuestionnaireOut]:
    with db.transaction() as s:
        return [_q_out(r) for r in cfg.list_questionnaires(s, actor)]


@router.put(
    "/questionnaires", response_model=QuestionnaireOut, summary="Create or replace a questionnaire (by key)"
)
def put_questionnaire(body: QuestionnaireIn, db: DB, actor: Actor) -> QuestionnaireOut:
    with db.transaction() as s:
        row = cfg.put_questionnaire(
            s,
            actor,
            body.definition,
            make_default=body.make_default,
            redirect_url=body.redirect_url,
            expected_version=body.version,
        )
        return _q_out(row)


@router.get("/frameworks", response_model=list[FrameworkOut], summary="Discovery-call frameworks (BANT, ...)")
def list_frameworks(db: DB, actor: Actor) -> list[FrameworkOut]:
    with db.transaction() as s:
        return [FrameworkOut.model_validate(r) for r in cfg.list_frameworks(s, actor)]


@router.put(
    "/frameworks", response_model=FrameworkOut, summary="Create or replace a framework, or load a preset"
)
def put_framework(body: FrameworkIn, db: DB, actor: Actor) -> FrameworkOut:
    with db.transaction() as s:
        row = cfg.put_framework(
            s,
            actor,
            body.definition,
            preset=body.preset,
            make_default=body.make_default,
            expected_version=body.version,
        )
        return FrameworkOut.model_validate(row)


@router.get("/settings", summary="Handoff SLA, rejection reasons and the ideal customer profile")
def get_settings_(db: DB, actor: Actor) -> dict[str, Any]:
    with db.transaction() as s:
        return cfg.get_settings(s, actor)


@router.put("/settings/{key}", summary="Replace the 'handoff' or 'icp' settings document")
def put_setting(key: str, body: SettingIn, db: DB, actor: Actor) -> dict[str, Any]:
    with db.transaction() as s:
        return cfg.put_setting(s, actor, key, body.value, expected_version=body.version)


# ------------------------------------------------------------------------------ assessments


def _result_out(res: svc.AssessmentResult) -> AssessmentResultOut:
    return AssessmentResultOut(
        assessment=AssessmentOut.model_validate(res.record),
        outcome=res.decision.outcome,
        reason=res.decision.reason,
        applied=res.applied,
        not_applied_reason=res.not_applied_reason,
        stage=res.stage,
        follow_up_due_at=res.task_due_at,
    )


@router.post(
    "/leads/{lead_id}/assessments",
    response_model=AssessmentResultOut,
    status_code=status.HTTP_201_CREATED,
    summary="Record a needs assessment (API or a rep on a call); its rule decides SAL/nurture/unqualified",
)
def create_assessment(lead_id: int, body: AssessmentIn, db: DB, actor: Actor) -> AssessmentResultOut:
    with db.transaction() as s:
        res = svc.record_assessment(
            s,
            actor,
            lead_id,
            body.answers,
            channel=body.channel,
            questionnaire_key=body.questionnaire,
            apply=body.apply,
        )
        return _result_out(res)


@router.get("/leads/{lead_id}/assessments", response_model=list[AssessmentOut])
def list_assessments(lead_id: int, db: DB, actor: Actor) -> list[AssessmentOut]:
    with db.transaction() as s:
        return [AssessmentOut.model_validate(r) for r in svc.list_assessments(s, actor, lead_id)]


@router.post(
    "/assessments/{assessment_id}/apply",
    response_model=AssessmentResultOut,
    summary="Make the move a stored assessment decided (e.g. after the lead became MQL)",
)
def apply_assessment(assessment_id: int, db: DB, actor: Actor) -> AssessmentResultOut:
    with db.transaction() as s:
        return _result_out(svc.apply_assessment(s, actor, assessment_id))


# ------------------------------------------------------------------------------ discovery calls


@router.post(
    "/leads/{lead_id}/discovery-calls",
    response_model=CallResultOut,
    status_code=status.HTTP_201_CREATED,
    summary="Record a discovery call; SQL (prospect) or unqualified with the reason",
)
def create_call(lead_id: int, body: CallIn, db: DB, actor: Actor) -> CallResultOut:
    data = svc.CallInput(
        criteria={k: v.model_dump() for k, v in body.criteria.items()},
        outcome=body.outcome,
        framework=body.framework,
        reason=body.reason,
        override_reason=body.override_reason,
        referral=body.referral,
        recommended_vendor=body.recommended_vendor,
        notes=body.notes,
        held_at=body.held_at,
        buying_role=body.buying_role,
    )
    with db.transaction() as s:
        res = svc.record_call(s, actor, lead_id, data)
        return CallResultOut(
            call=CallOut.model_validate(res.record),
            recommendation=res.recommendation.outcome,
            recommendation_reason=res.recommendation.reason,
            unmet=list(res.recommendation.unmet),
            stage=res.stage,
        )


@router.get("/leads/{lead_id}/discovery-calls", response_model=list[CallOut])
def list_calls(lead_id: int, db: DB, actor: Actor) -> list[CallOut]:
    with db.transaction() as s:
        return [CallOut.model_validate(r) for r in svc.list_calls(s, actor, lead_id)]


@router.get(
    "/leads/{lead_id}/call-script", summary="A discovery-call script from research facts and the framework"
)
def call_script(lead_id: int, db: DB, actor: Actor, framework: str | None = None) -> dict[str, Any]:
    with db.transaction() as s:
        return svc.call_script(s, actor, lead_id, framework)


# ------------------------------------------------------------------------------ levels and committee


@router.get("/leads/{lead_id}/levels", summary="Organization, opportunity and stakeholder qualification")
def levels(lead_id: int, db: DB, actor: Actor) -> dict[str, Any]:
    with db.transaction() as s:
        return svc.levels(s, actor, lead_id)


@router.put(
    "/leads/{lead_id}/levels/{level}", summary="Override a level's status with a reason (null clears)"
)
def override_level(lead_id: int, level: str, body: LevelIn, db: DB, actor: Actor) -> dict[str, Any]:
    with db.transaction() as s:
        return svc.override_level(s, actor, lead_id, level, body.status, body.reason)


@router.put("/leads/{lead_id}/buying-role", summary="Set the lead's role in the buying committee")
def buying_role(lead_id: int, body: RoleIn, db: DB, actor: Actor) -> dict[str, Any]:
    with db.transaction() as s:
        return svc.set_buying_role(s, actor, lead_id, body.role, body.reason)


@router.get("/accounts/{account_id}/committee", summary="The buying committee of an account")
def committee(account_id: int, db: DB, actor: Actor) -> dict[str, Any]:
    with db.transaction() as s:
        return svc.committee(s, actor, account_id)


# ------------------------------------------------------------------------------ handoff


@router.get(
    "/queue",
    response_model=list[QueueItemOut],
    summary="The sales queue: MQLs waiting for sales, most urgent first",
)
def sales_queue(
    db: DB,
    actor: Actor,
    owner_id: int | None = None,
    breached: bool | None = None,
    limit: int = Query(200, ge=1, le=1000),
) -> list[QueueItemOut]:
    now = datetime.now().astimezone()
    with db.transaction() as s:
        return [
            QueueItemOut(
                handoff=HandoffOut.model_validate(h),
                lead_name=" ".join(x for x in (lead.first_name, lead.last_name) if x) or None,
                email=lead.email,
                stage=lead.stage,
                overdue=h.first_touch_at is None and h.due_at < now,
            )
            for h, lead in ho.queue(s, actor, owner_id=owner_id, breached=breached, limit=limit)
        ]


@router.get("/leads/{lead_id}/handoffs", response_model=list[HandoffOut])
def lead_handoffs(lead_id: int, db: DB, actor: Actor) -> list[HandoffOut]:
    with db.transaction() as s:
        return [HandoffOut.model_validate(h) for h in ho.history(s, actor, lead_id)]


@router.post(
    "/leads/{lead_id}/handoff/reject",
    response_model=HandoffOut,
    summary="Sales rejects the MQL (back to nurture)",
)
def reject(lead_id: int, body: RejectIn, db: DB, actor: Actor) -> Handoff:
    with db.transaction() as s:
        return ho.reject(s, actor, lead_id, body.reason, body.note)


@router.post(
    "/leads/{lead_id}/handoff/touch", response_model=HandoffOut, summary="Record the first touch by hand"
)
def touch(lead_id: int, body: TouchIn, db: DB, actor: Actor) -> Handoff:
    with db.transaction() as s:
        return ho.touch(s, actor, lead_id, at=body.at)


@router.post(
    "/sla/check", response_model=BreachCheckOut, summary="Detect SLA breaches now (the scheduler calls this)"
)
def check_breaches(db: DB, actor: Actor) -> BreachCheckOut:
    with db.transaction() as s:
        res = ho.check_breaches(s, actor)
        return BreachCheckOut(
            checked_at=res.checked_at, breached=[HandoffOut.model_validate(h) for h in res.breached]
        )


# ------------------------------------------------------------------------------ reports


@router.get(
    "/reports/sla", summary="SLA compliance: MQLs touched within the SLA by source and owner, breaches"
)
def sla_report(
    db: DB, actor: Actor, since: datetime | None = None, until: datetime | None = None
) -> dict[str, Any]:
    with db.transaction() as s:
        return ho.sla_report(s, actor, since=since, until=until)


@router.get("/reports/rejections", summary="Sales rejection rate of MQLs by source and reason")
def rejection_report(
    db: DB, actor: Actor, since: datetime | None = None, until: datetime | None = None
) -> dict[str, Any]:
    with db.transaction() as s:
        return ho.rejection_report(s, actor, since=since, until=until)


# ------------------------------------------------------------------------------ public web form


@public_router.get(
    "/forms/assessments/{public_key}", summary="The public needs-assessment form (HTML, or JSON with Accept)"
)
def public_form(public_key: str, request: Request, db: DB) -> Response:
    with db.transaction() as s:
        row = svc.public_questionnaire(s, public_key)
        q = cfg.questionnaire(row)
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse(q.to_dict())
    return HTMLResponse(_render_form(public_key, q))


def _render_form(public_key: str, q: Any) -> str:
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>",
        e(q.name),
        "</title>",
        "<style>body{font-family:sans-serif;max-width:40em;margin:2em auto}"
        "label{display:block;margin-top:1em}"
        "input,textarea,select{width:100%}.hp{display:none}</style></head><body>",
        f"<h1>{e(q.name)}</h1><form method='post' action='/forms/assessments/{e(public_key)}'>",
        "<label>Email <input type='email' name='email' required></label>",
        "<label>First name <input name='first_name'></label>",
        "<label>Last name <input name='last_name'></label>",
        "<label>Company <input name='company'></label>",
        "<div class='hp'><input name='website_url' tabindex='-1' autocomplete='off'></div>",
    ]
    for question in q.questions:
        req = " required" if question.required else ""
        label = e(question.label) + (" *" if question.required else "")
        name = e(question.key)
        if question.type.value == "choice":
            opts = "".join(
                f"<option value='{e(o)}'>{e(o.replace('_', ' '))}</option>" for o in question.options
            )
            parts.append(
                f"<label>{label}<select name='{name}'{req}><option value=''></option>{opts}</select></label>"
            )
        elif question.type.value == "multi_choice":
            boxes = "".join(
                f"<label><input type='checkbox' name='{name}' value='{e(o)}'> "
                f"{e(o.replace('_', ' '))}</label>"
                for o in question.options
            )
            parts.append(f"<fieldset><legend>{label}</legend>{boxes}</fieldset>")
        elif question.type.value == "long_text":
            parts.append(f"<label>{label}<textarea name='{name}'{req}></textarea></label>")
        else:
            kind = {"number": "number", "date": "date"}.get(question.type.value, "text")
            parts.append(f"<label>{label}<input type='{kind}' name='{name}'{req}></label>")
    parts.append("<p><button type='submit'>Send</button></p></form></body></html>")
    return "".join(parts)


@public_router.post(
    "/forms/assessments/{public_key}",
    status_code=status.HTTP_303_SEE_OTHER,
    summary="Public needs-assessment endpoint (HTML form or JSON); 303 to the thank-you page",
    responses={303: {"description": "Redirect to the thank-you URL"}, 429: {"description": "Rate limited"}},
)
async def submit_public(public_key: str, request: Request, db: DB) -> Response:
    ip = request.client.host if request.client else "unknown"
    if not _limiter.hit(parse(get_settings().form_rate_limit), "assessment", ip):
        return JSONResponse(
            {"detail": "too many submissions from this address; try again later"},
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            headers={"Retry-After": "60"},
        )
    # Checkbox groups (multi-choice questions) repeat their name: kept as lists.
    fields = await read_public_fields(request, repeated=True)
    with db.transaction() as s:
        sub = svc.submit_public(s, public_key, fields, ip=ip)
    body = {
        "lead_id": sub.lead_id,
        "thank_you": sub.thank_you,
        "outcome": sub.result.decision.outcome if sub.result else None,
    }
    if sub.redirect_url:
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse(
                {**body, "redirect_url": sub.redirect_url},
                status_code=303,
                headers={"Location": sub.redirect_url},
            )
        return RedirectResponse(sub.redirect_url, status_code=status.HTTP_303_SEE_OTHER)
    if "application/json" in request.headers.get("accept", ""):
        return JSONResponse(body, status_code=200)
    return HTMLResponse(f"<!doctype html><html><body><p>{html.escape(sub.thank_you)}</p></body></html>")
