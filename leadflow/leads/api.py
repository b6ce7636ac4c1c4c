"""HTTP routes for leads, accounts and activities (thin: parse, call the service, shape)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Response, status

from leadflow.auth.deps import DB, Actor
from leadflow.core import lifecycle
from leadflow.core.engagement import ActivityType
from leadflow.core.lifecycle import Origin, Stage
from leadflow.errors import InvalidInput
from leadflow.leads import accounts as account_svc
from leadflow.leads import activities as activity_svc
from leadflow.leads import service as svc
from leadflow.leads.schemas import (
    AccountCreate,
    AccountOut,
    AccountPage,
    AccountUpdate,
    ActivityIn,
    ActivityOut,
    ActivityPage,
    AuditOut,
    BatchIn,
    BatchItemOut,
    BatchOut,
    EventBatchIn,
    EventBatchOut,
    LeadCreate,
    LeadOut,
    LeadPage,
    LeadUpdate,
    MergeIn,
    StageChangeOut,
    TransitionIn,
)

router = APIRouter(prefix="/api", tags=["leads"])


def _sort(sort: str) -> tuple[str, bool]:
    return (sort[1:], True) if sort.startswith("-") else (sort, False)


def _version(body_version: int | None, if_match: str | None) -> int:
    if body_version is not None:
        return body_version
    if if_match:
        try:
            return int(if_match.strip().strip('W/"').strip('"'))
        except ValueError:
            raise InvalidInput(["header", "If-Match"], "must be the lead's version number") from None
    raise InvalidInput("version", "send the version you read (body field version or an If-Match header)")


def _evidence(data: dict[str, Any] | None) -> lifecycle.Evidence | None:
    try:
        evidence = lifecycle.evidence_from_dict(data)
    except ValueError as exc:
        raise InvalidInput("evidence", str(exc)) from None
    if isinstance(evidence, lifecycle.Imported):
        # Imported history lets a lead start at any stage; only an import run may claim it,
        # or anyone could skip the evidence a stage needs by calling it "imported".
        raise InvalidInput(
            ["evidence", "kind"], "imported evidence is written by CSV imports (/api/imports) only"
        )
    return evidence


# ------------------------------------------------------------------------------------ lifecycle


@router.get("/lifecycle", summary="The lifecycle state machine: stages, required evidence, legal moves")
def describe_lifecycle() -> list[dict[str, Any]]:
    return lifecycle.describe()


# ------------------------------------------------------------------------------------ leads


@router.get("/leads", response_model=LeadPage, summary="List leads with filters, sorting and a cursor")
def list_leads(
    db: DB,
    actor: Actor,
    stage: Annotated[list[Stage] | None, Query(description="Repeat for several stages")] = None,
    owner_id: int | None = None,
    unassigned: bool | None = None,
    source: str | None = None,
    campaign: str | None = None,
    account_id: int | None = None,
    origin: Origin | None = None,
    country: str | None = None,
    q: Annotated[str | None, Query(description="Prefix of email, first/last name or company")] = None,
    email: str | None = None,
    bad_candidate: bool | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    updated_after: datetime | None = None,
    sort: Annotated[
        str,
        Query(
            pattern=r"^-?(id|created_at|updated_at|last_name|stage_changed_at)$",
            description="'-' = descending",
        ),
    ] = "id",
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    include_total: bool = False,
) -> LeadPage:
    f = svc.LeadFilter(
        stage=stage,
        owner_id=owner_id,
        unassigned=unassigned,
        source=source,
        campaign=campaign,
        account_id=account_id,
        origin=origin,
        country=country,
        q=q,
        email=email,
        bad_candidate=bad_candidate,
        created_after=created_after,
        created_before=created_before,
        updated_after=updated_after,
    )
    key, desc = _sort(sort)
    with db.transaction() as s:
        page = svc.list_leads(s, actor, f, sort=key, descending=desc, cursor=cursor, limit=limit)
        total = svc.count_leads(s, actor, f) if include_total else None
        return LeadPage(
            items=[LeadOut.model_validate(x) for x in page.items], next_cursor=page.next_cursor, total=total
        )


@router.post("/leads", response_model=LeadOut, status_code=status.HTTP_201_CREATED, summary="Create a lead")
def create_lead(
    body: LeadCreate,
    db: DB,
    actor: Actor,
    response: Response,
    on_duplicate: Annotated[Literal["error", "update"], Query()] = "error",
) -> LeadOut:
    data = body.model_dump(exclude_unset=True, exclude={"stage", "reason", "evidence", "bad_reason"})
    with db.transaction() as s:
        res = svc.create_lead(
            s,
            actor,
            data,
            stage=body.stage,
            evidence=_evidence(body.evidence),
            reason=body.reason,
            bad_reason=body.bad_reason,
            on_duplicate=on_duplicate,
        )
        if not res.created:
            response.status_code = status.HTTP_200_OK
        response.headers["Location"] = f"/api/leads/{res.lead.id}"
        return LeadOut.model_validate(res.lead)


@router.post("/leads/batch", response_model=BatchOut, summary="Create or update up to 1,000 leads")
def create_batch(body: BatchIn, db: DB, actor: Actor) -> BatchOut:
    items = [x.model_dump(exclude_unset=True) for x in body.leads]
    with db.transaction() as s:
        results = svc.create_leads_batch(s, actor, items, on_duplicate=body.on_duplicate)
    out = [BatchItemOut(index=r.index, status=r.status, lead_id=r.lead_id, errors=r.errors) for r in results]
    return BatchOut(
        created=sum(r.status == "created" for r in results),
        updated=sum(r.status == "updated" for r in results),
        failed=sum(r.status == "error" for r in results),
        results=out,
    )


@router.get("/leads/{lead_id}", response_model=LeadOut)
def get_lead(lead_id: int, db: DB, actor: Actor, response: Response) -> LeadOut:
    with db.transaction() as s:
        lead = svc.get_lead(s, actor, lead_id)
        response.headers["ETag"] = f'"{lead.version}"'
        return LeadOut.model_validate(lead)


@router.patch("/leads/{lead_id}", response_model=LeadOut, summary="Update fields (optimistic locking)")
def update_lead(
    lead_id: int,
    body: LeadUpdate,
    db: DB,
    actor: Actor,
    response: Response,
    if_match: Annotated[str | None, Header()] = None,
) -> LeadOut:
    expected = _version(body.version, if_match)
    data = body.model_dump(exclude_unset=True, exclude={"version", "reason"})
    with db.transaction() as s:
        lead = svc.update_lead(s, actor, lead_id, data, expected_version=expected, reason=body.reason)
        response.headers["ETag"] = f'"{lead.version}"'
        return LeadOut.model_validate(lead)


@router.delete("/leads/{lead_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Erase a lead")
def delete_lead(lead_id: int, db: DB, actor: Actor, reason: str | None = None) -> Response:
    # Erasure reaches every feature's records of the person (ops.privacy), not only the lead's.
    from leadflow.ops.privacy import erase_person

    with db.transaction() as s:
        erase_person(s, actor, lead_id, reason=reason)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/leads/{lead_id}/transitions",
    response_model=LeadOut,
    summary="Move a lead to another stage, with evidence",
    responses={409: {"description": "Illegal move (the legal ones are listed) or stale version"}},
)
def transition(lead_id: int, body: TransitionIn, db: DB, actor: Actor) -> LeadOut:
    with db.transaction() as s:
        lead = svc.transition_lead(
            s,
            actor,
            lead_id,
            body.to,
            evidence=_evidence(body.evidence),
            reason=body.reason,
            bad_reason=body.bad_reason,
            expected_version=body.version,
        )
        return LeadOut.model_validate(lead)


@router.get("/leads/{lead_id}/transitions", summary="Stage history and the moves legal from here")
def transitions(lead_id: int, db: DB, actor: Actor) -> dict[str, Any]:
    with db.transaction() as s:
        lead = svc.get_lead(s, actor, lead_id)
        legal = lifecycle.legal_targets(Stage(lead.stage), Origin(lead.origin))
        history = svc.stage_history(s, actor, lead_id)
        return {
            "stage": lead.stage,
            "legal": [
                {"to": t.value, **{k: v for k, v in _rule(t).items()}} for t in legal if actor.can_move_to(t)
            ],
            "history": [StageChangeOut.model_validate(h).model_dump(mode="json") for h in history],
        }


def _rule(stage: Stage) -> dict[str, Any]:
    r = lifecycle.ENTRY_RULES[stage]
    return {
        "requires_evidence": list(r.evidence),
        "requires_reason": r.reason_required,
        "requires_bad_reason": r.bad_reason_required,
    }


@router.post("/leads/{lead_id}/merge", response_model=LeadOut, summary="Merge another lead into this one")
def merge(lead_id: int, body: MergeIn, db: DB, actor: Actor) -> LeadOut:
    with db.transaction() as s:
        return LeadOut.model_validate(svc.merge_leads(s, actor, lead_id, body.loser_id, reason=body.reason))


@router.get("/leads/{lead_id}/audit", response_model=list[AuditOut], summary="Audit trail of a lead")
def audit(lead_id: int, db: DB, actor: Actor) -> list[AuditOut]:
    with db.transaction() as s:
        return [AuditOut.model_validate(a) for a in svc.lead_audit(s, actor, lead_id)]


@router.get("/leads/{lead_id}/activities", response_model=ActivityPage)
def lead_activities(
    lead_id: int,
    db: DB,
    actor: Actor,
    type: Annotated[list[ActivityType] | None, Query()] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> ActivityPage:
    with db.transaction() as s:
        page = activity_svc.list_activities(
            s, actor, activity_svc.ActivityFilter(lead_id=lead_id, type=type), cursor=cursor, limit=limit
        )
        return ActivityPage(
            items=[ActivityOut.model_validate(a) for a in page.items], next_cursor=page.next_cursor
        )


@router.post(
    "/leads/{lead_id}/activities",
    response_model=ActivityOut,
    status_code=status.HTTP_201_CREATED,
    summary="Log a call, email, meeting or note",
)
def log_activity(lead_id: int, body: ActivityIn, db: DB, actor: Actor) -> ActivityOut:
    with db.transaction() as s:
        act = activity_svc.log_activity(
            s, actor, lead_id, body.type, occurred_at=body.occurred_at, properties=body.properties
        )
        return ActivityOut.model_validate(act)


# ------------------------------------------------------------------------------------ events


@router.post("/events", response_model=EventBatchOut, summary="Ingest engagement events (idempotent)")
def ingest_events(body: EventBatchIn, db: DB, actor: Actor) -> EventBatchOut:
    items = body.model_dump(exclude_none=True)["events"]  # one call into pydantic-core, not one per event
    with db.transaction() as s:
        res = activity_svc.ingest(s, actor, items)
    return EventBatchOut(accepted=res.accepted, duplicates=res.duplicates, errors=res.errors)


@router.get("/activities", response_model=ActivityPage, summary="List activities across leads")
def list_activities(
    db: DB,
    actor: Actor,
    lead_id: int | None = None,
    type: Annotated[list[ActivityType] | None, Query()] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    sort: Annotated[Literal["occurred_at", "-occurred_at"], Query()] = "-occurred_at",
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> ActivityPage:
    f = activity_svc.ActivityFilter(lead_id=lead_id, type=type, since=since, until=until)
    with db.transaction() as s:
        page = activity_svc.list_activities(
            s, actor, f, descending=sort.startswith("-"), cursor=cursor, limit=limit
        )
        return ActivityPage(
            items=[ActivityOut.model_validate(a) for a in page.items], next_cursor=page.next_cursor
        )


# ------------------------------------------------------------------------------------ accounts


@router.get("/accounts", response_model=AccountPage, tags=["accounts"])
def list_accounts(
    db: DB,
    actor: Actor,
    q: str | None = None,
    domain: str | None = None,
    industry: str | None = None,
    country: str | None = None,
    owner_id: int | None = None,
    sort: Annotated[str, Query(pattern=r"^-?(id|name|created_at|updated_at)$")] = "id",
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> AccountPage:
    key, desc = _sort(sort)
    f = account_svc.AccountFilter(q=q, domain=domain, industry=industry, country=country, owner_id=owner_id)
    with db.transaction() as s:
        page = account_svc.list_accounts(s, actor, f, sort=key, descending=desc, cursor=cursor, limit=limit)
        counts = account_svc.lead_counts(s, actor, [a.id for a in page.items])
        items = [
            AccountOut.model_validate(a).model_copy(update={"lead_count": counts.get(a.id, 0)})
            for a in page.items
        ]
        return AccountPage(items=items, next_cursor=page.next_cursor)


@router.post("/accounts", response_model=AccountOut, status_code=status.HTTP_201_CREATED, tags=["accounts"])
def create_account(body: AccountCreate, db: DB, actor: Actor) -> AccountOut:
    with db.transaction() as s:
        return AccountOut.model_validate(
            account_svc.create_account(s, actor, body.model_dump(exclude_unset=True))
        )


@router.get("/accounts/{account_id}", response_model=AccountOut, tags=["accounts"])
def get_account(account_id: int, db: DB, actor: Actor) -> AccountOut:
    with db.transaction() as s:
        account = account_svc.get_account(s, actor, account_id)
        n = account_svc.lead_counts(s, actor, [account_id]).get(account_id, 0)
        return AccountOut.model_validate(account).model_copy(update={"lead_count": n})


@router.patch("/accounts/{account_id}", response_model=AccountOut, tags=["accounts"])
def update_account(
    account_id: int,
    body: AccountUpdate,
    db: DB,
    actor: Actor,
    if_match: Annotated[str | None, Header()] = None,
) -> AccountOut:
    expected = _version(body.version, if_match)
    with db.transaction() as s:
        account = account_svc.update_account(
            s,
            actor,
            account_id,
            body.model_dump(exclude_unset=True, exclude={"version"}),
            expected_version=expected,
        )
        return AccountOut.model_validate(account)


@router.get("/accounts/{account_id}/leads", response_model=LeadPage, tags=["accounts"])
def account_leads(
    account_id: int,
    db: DB,
    actor: Actor,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> LeadPage:
    with db.transaction() as s:
        account_svc.get_account(s, actor, account_id)
        page = svc.list_leads(s, actor, svc.LeadFilter(account_id=account_id), cursor=cursor, limit=limit)
        return LeadPage(items=[LeadOut.model_validate(x) for x in page.items], next_cursor=page.next_cursor)
