"""HTTP routes for webhook deliveries: the delivery log, manual redelivery, a delivery run."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Query

from leadflow.auth.deps import DB, Actor
from leadflow.webhooks import service as svc
from leadflow.webhooks.models import WebhookDelivery
from leadflow.webhooks.schemas import AttemptOut, DeliveryDetail, DeliveryOut, DeliveryPage, DeliveryRunOut

router = APIRouter(prefix="/api/webhooks", tags=["webhooks"])


def _detail(row: WebhookDelivery, log: list[AttemptOut]) -> DeliveryDetail:
    base = DeliveryOut.model_validate(row).model_dump()
    return DeliveryDetail(**base, body=json.loads(row.body), log=log)


@router.get("/deliveries", response_model=DeliveryPage, summary="Webhook deliveries, newest first")
def list_deliveries(
    db: DB,
    actor: Actor,
    status: Annotated[str | None, Query(description="pending, delivered or failed")] = None,
    lead_id: Annotated[int | None, Query()] = None,
    before_id: Annotated[int | None, Query(description="Page: the next_before_id of the last page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> DeliveryPage:
    with db.transaction() as s:
        rows = svc.list_deliveries(s, actor, status=status, lead_id=lead_id, before_id=before_id, limit=limit)
        return DeliveryPage(
            items=[DeliveryOut.model_validate(r) for r in rows],
            counts=svc.counts(s, actor),
            next_before_id=rows[-1].id if len(rows) == limit else None,
        )


@router.get(
    "/deliveries/{delivery_id}",
    response_model=DeliveryDetail,
    summary="One delivery with its body and its attempt log (status code, latency, error)",
)
def get_delivery(delivery_id: int, db: DB, actor: Actor) -> DeliveryDetail:
    with db.transaction() as s:
        row = svc.get_delivery(s, actor, delivery_id)
        return _detail(row, [AttemptOut.model_validate(a) for a in svc.attempts_of(s, row.id)])


@router.post(
    "/deliveries/{delivery_id}/redeliver",
    response_model=DeliveryDetail,
    summary="Send a delivery again now (same id and body, signed afresh), with a fresh retry budget",
)
def redeliver(
    delivery_id: int,
    db: DB,
    actor: Actor,
    now: Annotated[bool, Query(description="Attempt at once (false: leave it to the worker)")] = True,
) -> DeliveryDetail:
    if now:
        svc.redeliver_now(db, actor, delivery_id)
    else:
        with db.transaction() as s:
            svc.redeliver(s, actor, delivery_id, reason="manual redelivery")
    return get_delivery(delivery_id, db, actor)


@router.post("/deliver", response_model=DeliveryRunOut, summary="Send the deliveries that are due now")
def deliver(db: DB, actor: Actor, limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> DeliveryRunOut:
    with db.transaction() as s:
        svc.counts(s, actor)  # the permission check
    run = svc.deliver_due(db, limit=limit)
    return DeliveryRunOut(
        attempted=run.attempted, delivered=run.delivered, retrying=run.retrying, failed=run.failed
    )
