"""The web UI's pages. Thin: parse the form, call the feature's service with the user's
Principal inside one transaction, render a template."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from leadflow.auth import service as auth
from leadflow.auth.models import User
from leadflow.auth.principal import Perm
from leadflow.core import lifecycle
from leadflow.core.engagement import ActivityType
from leadflow.core.lifecycle import (
    BadReason,
    MarketingReview,
    Origin,
    Stage,
)
from leadflow.db.base import utcnow
from leadflow.errors import InvalidInput, LeadflowError, Unauthenticated
from leadflow.leads import accounts
from leadflow.leads import service as leads
from leadflow.leads.activities import ActivityFilter, list_activities, log_activity
from leadflow.leads.service import LeadFilter
from leadflow.scoring import service as scoring
from leadflow.web import email as web_email
from leadflow.web import service as web
from leadflow.web.core import PREFIX, Ctx, CtxDep, redirect, render, sessions, web_session
from leadflow.web.pipeline import lead_opportunities
from leadflow.web.qualification import lead_qualification
from leadflow.web.sla import STATES as SLA_STATES
from leadflow.web.sla import badges as sla_badges
from leadflow.web.sla import sla_condition
from leadflow.web.tasks import lead_tasks

router = APIRouter(prefix=PREFIX, include_in_schema=False)

PAGE_SIZE = 50
COUNT_CAP = 10_000  # the inbox says "10,000+" rather than counting a million rows
# Stages entered through their own form (needs assessment, discovery call, convert, deal won),
# never through the plain "change stage" form.
EVIDENCE_FORMS = frozenset({Stage.SAL, Stage.SQL, Stage.OPPORTUNITY, Stage.CUSTOMER})
SORTS = {
    "created_at": "Created",
    "updated_at": "Updated",
    "stage_changed_at": "Stage changed",
    "last_name": "Last name",
    "id": "Id",
}


def _users(session: Any) -> list[User]:
    return [u for u in auth.list_users(session) if u.active]


# --------------------------------------------------------------------------------- sign-in


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = PREFIX + "/") -> Response:
    return render(None, request, "login.html", next=next, error=None)


def _safe_next(next_url: str) -> str:
    # Only local web pages: an open redirect would make a phishing link of our sign-in page.
    if next_url.startswith(PREFIX) and not next_url.startswith("//") and "\\" not in next_url:
        return next_url
    return PREFIX + "/"


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = PREFIX + "/",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    ws = web_session(request)
    if not sessions(request).csrf_ok(ws, csrf_token):
        return render(None, request, "login.html", 403, next=next, error="The form expired; try again.")
    db = request.app.state.db
    try:
        with db.transaction() as s:
            user = auth.authenticate_password(s, email, password)
            uid = user.id
    except Unauthenticated:
        return render(
            None, request, "login.html", 401, next=next, error="Wrong email or password.", email=email
        )
    sessions(request).sign_in(ws, uid)
    return redirect(None, _safe_next(next))


@router.post("/logout")
def logout(ctx: CtxDep) -> Response:
    sessions(ctx.request).sign_out(ctx.session)
    return redirect(ctx, PREFIX + "/login")


@router.get("/")
def home(ctx: CtxDep) -> Response:
    return redirect(None, PREFIX + "/leads")


# --------------------------------------------------------------------------------- inbox


def _float(name: str, raw: str | None) -> float | None:
    if raw is None or raw.strip() == "":
        return None
    try:
        return float(raw)
    except ValueError:
        raise InvalidInput(name, "must be a number") from None


def _inbox_filter(ctx: CtxDep, params: Any) -> LeadFilter:
    stages = []
    for raw in params.getlist("stage"):
        if raw:
            try:
                stages.append(Stage(raw))
            except ValueError:
                raise InvalidInput("stage", f"unknown stage {raw!r}") from None
    owner = params.get("owner") or ""
    f = LeadFilter(
        stage=stages or None,
        source=params.get("source") or None,
        q=params.get("q") or None,
        score_min=_float("score_min", params.get("score_min")),
        score_max=_float("score_max", params.get("score_max")),
    )
    sla = params.get("sla") or ""
    if sla:
        f.where = (sla_condition(sla, utcnow()),)
    if owner == "me":
        f.owner_id = ctx.user.id
    elif owner == "none":
        f.unassigned = True
    elif owner:
        try:
            f.owner_id = int(owner)
        except ValueError:
            raise InvalidInput("owner", "must be a user id, 'me' or 'none'") from None
    return f


def _filter_query(params: Any) -> str:
    keep = [(k, v) for k, v in params.multi_items() if k not in ("cursor", "msg") and v != ""]
    return urlencode(keep)


@router.get("/leads", response_class=HTMLResponse)
def inbox(ctx: CtxDep) -> Response:
    params = ctx.request.query_params
    f = _inbox_filter(ctx, params)
    sort = params.get("sort") or "created_at"
    descending = params.get("dir", "desc") != "asc"
    cursor = params.get("cursor") or None
    with ctx.db.transaction() as s:
        page = leads.list_leads(
            s, ctx.principal, f, sort=sort, descending=descending, cursor=cursor, limit=PAGE_SIZE
        )
        scores = web.scores_for(s, [lead.id for lead in page.items])
        badges = sla_badges(s, [lead.id for lead in page.items], utcnow())
        users = _users(s)
        segments = web.list_segments(s, ctx.principal)
    owners = {u.id: u for u in users}
    query = _filter_query(params)
    values: dict[str, Any] = {
        "page": page,
        "scores": scores,
        "sla_badges": badges,
        "owners": owners,
        "query": query,
        "more_url": f"{PREFIX}/leads?{query}&cursor={page.next_cursor}" if page.next_cursor else None,
    }
    if ctx.is_htmx and ctx.request.headers.get("HX-Target") != "inbox":
        return render(ctx, ctx.request, "_lead_rows.html", **values)
    return render(
        ctx,
        ctx.request,
        "inbox.html",
        **values,
        f=f,
        params=params,
        stages=list(Stage),
        sorts=SORTS,
        sort=sort,
        descending=descending,
        users=users,
        segments=segments,
        sla_states=SLA_STATES,
        bad_reasons=list(BadReason),
        msg=params.get("msg"),
    )


@router.get("/leads/count", response_class=HTMLResponse)
def inbox_count(ctx: CtxDep) -> Response:
    f = _inbox_filter(ctx, ctx.request.query_params)
    with ctx.db.transaction() as s:
        n = leads.count_leads(s, ctx.principal, f, cap=COUNT_CAP + 1)
    if n > COUNT_CAP:
        return HTMLResponse(f"{COUNT_CAP:,}+ leads")
    return HTMLResponse(f"{n:,} lead{'s' if n != 1 else ''}")


@router.post("/leads/bulk")
async def bulk(ctx: CtxDep) -> Response:
    form = await ctx.request.form()
    ids: list[int] = []
    for raw in form.getlist("ids"):
        try:
            ids.append(int(str(raw)))
        except ValueError:
            raise InvalidInput("ids", "must be lead ids") from None
    if not ids:
        raise InvalidInput("ids", "select at least one lead")
    if len(ids) > 1000:
        raise InvalidInput("ids", "at most 1000 leads at once")
    action = str(form.get("action") or "")
    done, refused = 0, []
    with ctx.db.transaction() as s:
        if action == "assign":
            raw_owner = str(form.get("owner_id") or "")
            owner_id = int(raw_owner) if raw_owner.isdigit() else None
            for lead_id in ids:
                try:
                    # One savepoint per lead: a refused lead leaves the others' changes intact.
                    with s.begin_nested():
                        lead = leads.get_lead(s, ctx.principal, lead_id)
                        leads.update_lead(
                            s,
                            ctx.principal,
                            lead_id,
                            {"owner_id": owner_id},
                            expected_version=lead.version,
                            reason="bulk assign (web)",
                        )
                    done += 1
                except (LeadflowError, lifecycle.LifecycleError) as exc:
                    refused.append(f"#{lead_id}: {getattr(exc, 'message', exc)}")
        elif action == "stage":
            try:
                target = Stage(str(form.get("stage") or ""))
            except ValueError:
                raise InvalidInput("stage", "choose a stage") from None
            reason = str(form.get("reason") or "").strip() or None
            raw_bad = str(form.get("bad_reason") or "")
            bad = BadReason(raw_bad) if raw_bad in {b.value for b in BadReason} else None
            for lead_id in ids:
                try:
                    with s.begin_nested():
                        leads.transition_lead(
                            s, ctx.principal, lead_id, target, reason=reason, bad_reason=bad
                        )
                    done += 1
                except (LeadflowError, lifecycle.LifecycleError) as exc:
                    refused.append(f"#{lead_id}: {getattr(exc, 'message', exc)}")
        else:
            raise InvalidInput("action", "must be assign or stage")
    msg = f"{done} lead{'s' if done != 1 else ''} updated"
    if refused:
        msg += f"; {len(refused)} refused: " + "; ".join(refused[:5]) + (" …" if len(refused) > 5 else "")
    back = str(form.get("back") or "")
    return redirect(ctx, f"{PREFIX}/leads?{back}{'&' if back else ''}{urlencode({'msg': msg})}")


@router.post("/segments")
async def save_segment(
    ctx: CtxDep, name: Annotated[str, Form()] = "", query: Annotated[str, Form()] = ""
) -> Response:
    with ctx.db.transaction() as s:
        web.save_segment(s, ctx.principal, name, query)
    return redirect(ctx, f"{PREFIX}/leads?{query}")


@router.post("/segments/{segment_id}/delete")
def delete_segment(ctx: CtxDep, segment_id: int) -> Response:
    with ctx.db.transaction() as s:
        web.delete_segment(s, ctx.principal, segment_id)
    return redirect(ctx, f"{PREFIX}/leads")


# --------------------------------------------------------------------------------- lead page


def _lead_url(lead_id: int) -> str:
    return f"{PREFIX}/leads/{lead_id}"


@router.get("/leads/{lead_id}", response_class=HTMLResponse)
def lead_page(ctx: CtxDep, lead_id: int) -> Response:
    params = ctx.request.query_params
    return render_lead_page(
        ctx,
        lead_id,
        msg=params.get("msg"),
        na_questionnaire=params.get("questionnaire") or None,
        call_framework=params.get("framework") or None,
    )


def render_lead_page(ctx: Ctx, lead_id: int, status_code: int = 200, **extra: Any) -> Response:
    """The lead page; ``extra`` carries a form's values and field errors when it is shown
    again after a refused submission."""

    with ctx.db.transaction() as s:
        lead = leads.get_lead(s, ctx.principal, lead_id)
        if lead.merged_into_id is not None:
            return redirect(None, _lead_url(lead.merged_into_id))
        account = committee = None
        if lead.account_id is not None and ctx.can(Perm.ACCOUNTS_READ):
            account = accounts.get_account(s, ctx.principal, lead.account_id)
            committee = leads.list_leads(
                s, ctx.principal, LeadFilter(account_id=lead.account_id), sort="last_name", limit=25
            ).items
        score = scoring.explain(s, ctx.principal, lead_id, history_limit=100)
        history = leads.stage_history(s, ctx.principal, lead_id)
        acts = list_activities(s, ctx.principal, ActivityFilter(lead_id=lead_id), limit=30).items
        audit = leads.lead_audit(s, ctx.principal, lead_id, limit=200) if ctx.can(Perm.AUDIT_READ) else []
        users = _users(s)
        pipeline_part = lead_opportunities(s, ctx, lead)
        tasks_part = lead_tasks(s, ctx, lead)
        qual_part = lead_qualification(
            s,
            ctx,
            lead,
            questionnaire_key=extra.get("na_questionnaire"),
            framework_key=extra.get("call_framework"),
        )
        legal = [
            t
            for t in lifecycle.legal_targets(Stage(lead.stage), Origin(lead.origin))
            if ctx.principal.can_move_to(t)
        ]
    owners = {u.id: u for u in users}
    chart = {
        "type": "line",
        "labels": [h.at.strftime("%Y-%m-%d %H:%M") for h in score.history],
        "series": [
            {"label": "Total", "data": [round(h.total, 1) for h in score.history]},
            {"label": "Fit", "data": [round(h.fit, 1) for h in score.history]},
            {"label": "Engagement", "data": [round(h.engagement, 1) for h in score.history]},
        ],
        "max": 100,
    }
    return render(
        ctx,
        ctx.request,
        "lead.html",
        status_code,
        lead=lead,
        account=account,
        committee=committee or [],
        score=score,
        chart=chart,
        history=history,
        activities=acts,
        audit=audit,
        owners=owners,
        users=users,
        legal=legal,
        rules=lifecycle.ENTRY_RULES,
        bad_reasons=list(BadReason),
        email_refusal=web_email.why_not(lead),
        moves=[t for t in legal if t not in EVIDENCE_FORMS],
        **pipeline_part,
        **tasks_part,
        **qual_part,
        **extra,
    )


@router.post("/leads/{lead_id}/activities")
async def log_touch(
    ctx: CtxDep,
    lead_id: int,
    kind: Annotated[str, Form()] = "note",
    subject: Annotated[str, Form()] = "",
    notes: Annotated[str, Form()] = "",
) -> Response:
    # Calls go through /leads/{id}/call (tasks.log_call: outcome, wrong-number review).
    allowed = {
        "email": ActivityType.EMAIL_SENT,
        "meeting": ActivityType.MEETING,
        "note": ActivityType.NOTE,
    }
    if kind not in allowed:
        raise InvalidInput("kind", f"must be one of {', '.join(allowed)}")
    props: dict[str, Any] = {}
    if subject.strip():
        props["subject"] = subject.strip()[:300]
    if notes.strip():
        props["notes"] = notes.strip()[:5000]
    if kind == "note" and not props.get("notes"):
        raise InvalidInput("notes", "write the note")
    with ctx.db.transaction() as s:
        log_activity(s, ctx.principal, lead_id, allowed[kind], occurred_at=utcnow(), properties=props)
    return redirect(ctx, _lead_url(lead_id))


@router.post("/leads/{lead_id}/email")
def send_email(
    ctx: CtxDep,
    lead_id: int,
    subject: Annotated[str, Form()] = "",
    body: Annotated[str, Form()] = "",
) -> Response:
    sent = web_email.send_email(ctx.db, ctx.principal, lead_id, subject, body)
    msg = f"Email sent to {sent.to}."
    return redirect(ctx, f"{_lead_url(lead_id)}?{urlencode({'msg': msg})}")


@router.post("/leads/{lead_id}/assign")
def assign(
    ctx: CtxDep, lead_id: int, owner_id: Annotated[str, Form()] = "", version: Annotated[int, Form()] = 0
) -> Response:
    owner = int(owner_id) if owner_id.isdigit() else None
    with ctx.db.transaction() as s:
        leads.update_lead(
            s,
            ctx.principal,
            lead_id,
            {"owner_id": owner},
            expected_version=version,
            reason="assigned in the web UI",
        )
    return redirect(ctx, _lead_url(lead_id))


@router.post("/leads/{lead_id}/transition")
def transition(
    ctx: CtxDep,
    lead_id: int,
    to: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    bad_reason: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
    version: Annotated[int | None, Form()] = None,
) -> Response:
    try:
        target = Stage(to)
    except ValueError:
        raise InvalidInput("to", "choose a stage") from None
    bad = None
    if bad_reason:
        try:
            bad = BadReason(bad_reason)
        except ValueError:
            raise InvalidInput(
                "bad_reason", f"must be one of {', '.join(b.value for b in BadReason)}"
            ) from None
    evidence = MarketingReview(note=note.strip()) if target is Stage.MQL and note.strip() else None
    with ctx.db.transaction() as s:
        leads.transition_lead(
            s,
            ctx.principal,
            lead_id,
            target,
            evidence=evidence,
            reason=reason.strip() or None,
            bad_reason=bad,
            expected_version=version,
        )
    return redirect(ctx, _lead_url(lead_id))
