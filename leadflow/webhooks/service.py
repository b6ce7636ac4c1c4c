"""Webhook delivery: a transactional outbox, signed POSTs, retries with backoff, a delivery log.

* :func:`enqueue` writes a delivery row inside the caller's transaction (a threshold firing):
  if that transaction commits, the message will be sent; if it rolls back, it never existed.
* :func:`deliver_due` (called by the worker, or ``leadflow webhooks deliver``) claims the
  deliveries that are due, sends them with httpx outside any database transaction, and records
  each attempt. A claim pushes ``next_attempt_at`` forward by a lease, so a worker that dies
  mid-flight leaves its claims to be retried once the lease runs out (at-least-once delivery;
  receivers deduplicate on the ``Leadflow-Webhook-Id`` header).
* A failed attempt (network error, timeout, any non-2xx answer) is retried with exponential
  backoff and jitter until ``max_attempts``; then the delivery is ``failed``. A manual
  :func:`redeliver` queues it again with a fresh retry budget.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from leadflow import __version__
from leadflow.audit.service import record
from leadflow.auth.models import Role
from leadflow.auth.principal import Principal
from leadflow.core import scoring
from leadflow.core import webhooks as core
from leadflow.db.base import Database, utcnow
from leadflow.errors import Forbidden, InvalidInput, NotFound
from leadflow.leads.models import Lead
from leadflow.webhooks.models import WebhookAttempt, WebhookDelivery

log = logging.getLogger("leadflow.webhooks")

POLICY = core.RetryPolicy()
TIMEOUT_SECONDS = 10.0
CONCURRENCY = 8  # simultaneous sends in one batch
BATCH = 200
JOB_BUDGET_SECONDS = 50.0  # the worker runs the job every minute
# A claimed delivery is not claimed again for this long (longer than any attempt can take).
LEASE = timedelta(minutes=5)
STATUSES = ("pending", "delivered", "failed")
MANAGERS = frozenset({Role.ADMIN, Role.MARKETING})
_RESPONSE_EXCERPT = 500


def _require_manage(actor: Principal) -> None:
    """Webhooks carry lead data to other systems: admin and marketing (who own scoring) only."""

    if actor.role not in MANAGERS:
        raise Forbidden(f"role {actor.role.value} cannot see or send webhooks (admin or marketing)")


def _now(now: datetime | None) -> datetime:
    return (now or utcnow()).astimezone(UTC)


# ---------------------------------------------------------------------------------------------
# The outbox
# ---------------------------------------------------------------------------------------------


def enqueue(
    session: Session,
    *,
    event: str,
    url: str,
    data: dict[str, Any],
    secret_env: str | None = None,
    lead_id: int | None = None,
    source: str | None = None,
    now: datetime | None = None,
    max_attempts: int | None = None,
) -> WebhookDelivery:
    """Queue one delivery inside the caller's transaction (nothing is sent here)."""

    if not url.startswith(("http://", "https://")):
        raise InvalidInput("url", "a webhook URL must be http(s)")
    when = _now(now)
    uid = str(uuid.uuid4())
    body = json.dumps(
        {"id": uid, "type": event, "created_at": when.isoformat(), "data": data},
        separators=(",", ":"),
        sort_keys=True,
        default=str,
    )
    row = WebhookDelivery(
        uid=uid,
        event=event,
        url=url,
        secret_env=secret_env,
        body=body,
        lead_id=lead_id,
        source=source,
        status="pending",
        attempts=0,
        max_attempts=max_attempts or POLICY.max_attempts,
        next_attempt_at=when,
        created_at=when,
    )
    session.add(row)
    session.flush()
    return row


# ---------------------------------------------------------------------------------------------
# Sending
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    id: int
    uid: str
    event: str
    url: str
    secret_env: str | None
    body: str
    attempt: int  # the number of this attempt (1-based)
    manual: bool = False


@dataclass(frozen=True)
class _Outcome:
    status_code: int | None
    latency_ms: float
    error: str | None
    response: str | None


@dataclass
class DeliveryRun:
    """What one :func:`deliver_due` call did."""

    attempted: int = 0
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    ids: list[int] = field(default_factory=list)


def _send(client: httpx.Client, job: _Job) -> _Outcome:
    body = job.body.encode("utf-8")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"Leadflow-Webhooks/{__version__}",
        core.ID_HEADER: job.uid,
        core.EVENT_HEADER: job.event,
        core.ATTEMPT_HEADER: str(job.attempt),
    }
    if job.secret_env:
        secret = os.environ.get(job.secret_env)
        if not secret:
            # Not sent unsigned: the receiver would (rightly) refuse it, and we would leak data.
            return _Outcome(None, 0.0, f"environment variable {job.secret_env} (the secret) is not set", None)
        # Signed with the wall clock (receivers compare it with theirs), whatever ``now`` is.
        headers[core.SIGNATURE_HEADER] = core.sign(secret, body, int(time.time()))
    started = time.perf_counter()
    try:
        resp = client.post(job.url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        ms = (time.perf_counter() - started) * 1000
        return _Outcome(None, ms, f"{type(exc).__name__}: {exc}"[:1000] or type(exc).__name__, None)
    ms = (time.perf_counter() - started) * 1000
    excerpt = resp.text[:_RESPONSE_EXCERPT] if resp.content else None
    error = None if core.is_success(resp.status_code) else f"HTTP {resp.status_code}"
    return _Outcome(resp.status_code, ms, error, excerpt)


def _claim(
    db: Database, now: datetime, limit: int, ids: Sequence[int] | None, manual: bool = False
) -> list[_Job]:
    """Take due deliveries for this worker: push their next attempt past a lease, commit."""

    with db.transaction() as s:
        stmt = select(WebhookDelivery).where(WebhookDelivery.status == "pending")
        if ids is not None:
            stmt = stmt.where(WebhookDelivery.id.in_(list(ids)))
        else:
            stmt = stmt.where(WebhookDelivery.next_attempt_at <= now)
        stmt = stmt.order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id).limit(limit)
        if db.dialect == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)  # concurrent workers take different rows
        rows = list(s.scalars(stmt))
        jobs = []
        for r in rows:
            r.next_attempt_at = now + LEASE
            jobs.append(_Job(r.id, r.uid, r.event, r.url, r.secret_env, r.body, r.attempts + 1, manual))
        return jobs


def _settle(
    db: Database, job: _Job, outcome: _Outcome, at: datetime, run: DeliveryRun, rng: random.Random | None
) -> None:
    with db.transaction() as s:
        row = s.get(WebhookDelivery, job.id, with_for_update=db.dialect == "postgresql")
        if row is None:  # deleted meanwhile (its lead was erased)
            return
        row.attempts = job.attempt
        row.last_status_code = outcome.status_code
        row.last_error = outcome.error
        detail: dict[str, Any] = {}
        if outcome.error is None:
            row.status = "delivered"
            row.delivered_at = at
            row.next_attempt_at = None
            run.delivered += 1
        elif job.attempt >= row.max_attempts:
            row.status = "failed"
            row.next_attempt_at = None
            detail["gave_up"] = True
            run.failed += 1
            log.warning("webhook %s to %s failed after %d attempts", row.uid, row.url, job.attempt)
        else:
            delay = POLICY.delay(job.attempt, rng)
            row.next_attempt_at = at + timedelta(seconds=delay)
            detail["retry_in_seconds"] = round(delay, 1)
            run.retrying += 1
        s.add(
            WebhookAttempt(
                delivery_id=row.id,
                attempt=job.attempt,
                at=at,
                status_code=outcome.status_code,
                latency_ms=round(outcome.latency_ms, 3),
                error=outcome.error,
                response=outcome.response,
                manual=job.manual,
                detail=detail or None,
            )
        )


def deliver_due(
    db: Database,
    now: datetime | None = None,
    *,
    limit: int = 100,
    client: httpx.Client | None = None,
    rng: random.Random | None = None,
    ids: Sequence[int] | None = None,
    manual: bool = False,
) -> DeliveryRun:
    """Send the deliveries that are due at ``now`` (at most ``limit``); the worker's entry point.

    ``ids`` restricts the run to those pending deliveries, due or not (a manual redeliver)."""

    when = _now(now)
    jobs = _claim(db, when, limit, ids, manual)
    run = DeliveryRun()
    if not jobs:
        return run
    own = client is None
    http = client or httpx.Client(timeout=TIMEOUT_SECONDS, follow_redirects=False)
    sent_at = utcnow() if now is None else when
    try:
        # Sends run side by side (one slow receiver does not hold up the others' deliveries);
        # their outcomes are recorded one transaction each.
        with ThreadPoolExecutor(max_workers=max(1, min(CONCURRENCY, len(jobs)))) as pool:
            outcomes = list(pool.map(lambda job: _send(http, job), jobs))
    finally:
        if own:
            http.close()
    for job, outcome in zip(jobs, outcomes, strict=True):
        run.attempted += 1
        run.ids.append(job.id)
        _settle(db, job, outcome, sent_at, run, rng)
    return run


def deliver_job(db: Database, now: datetime) -> dict[str, int]:
    """The worker's periodic job: batches of due deliveries until none is left or a minute's
    budget is spent."""

    total = DeliveryRun()
    started = time.monotonic()
    while time.monotonic() - started < JOB_BUDGET_SECONDS:
        run = deliver_due(db, now, limit=BATCH)
        for name in ("attempted", "delivered", "retrying", "failed"):
            setattr(total, name, getattr(total, name) + getattr(run, name))
        if run.attempted < BATCH:
            break
    return {
        "attempted": total.attempted,
        "delivered": total.delivered,
        "retrying": total.retrying,
        "failed": total.failed,
    }


# ---------------------------------------------------------------------------------------------
# Reading and redelivering
# ---------------------------------------------------------------------------------------------


def list_deliveries(
    session: Session,
    actor: Principal,
    *,
    status: str | None = None,
    lead_id: int | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> list[WebhookDelivery]:
    """Newest first; page with ``before_id`` (the smallest id of the previous page)."""

    _require_manage(actor)
    if status is not None and status not in STATUSES:
        raise InvalidInput("status", f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")
    if not 1 <= limit <= 1000:
        raise InvalidInput("limit", "must be between 1 and 1000")
    stmt = select(WebhookDelivery).order_by(WebhookDelivery.id.desc()).limit(limit)
    if status:
        stmt = stmt.where(WebhookDelivery.status == status)
    if lead_id is not None:
        stmt = stmt.where(WebhookDelivery.lead_id == lead_id)
    if before_id is not None:
        stmt = stmt.where(WebhookDelivery.id < before_id)
    return list(session.scalars(stmt))


def get_delivery(session: Session, actor: Principal, delivery_id: int) -> WebhookDelivery:
    _require_manage(actor)
    row = session.get(WebhookDelivery, delivery_id)
    if row is None:
        raise NotFound(f"webhook delivery {delivery_id} not found")
    return row


def attempts_of(session: Session, delivery_id: int) -> list[WebhookAttempt]:
    return list(
        session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id == delivery_id)
            .order_by(WebhookAttempt.attempt, WebhookAttempt.id)
        )
    )


def counts(session: Session, actor: Principal) -> dict[str, int]:
    _require_manage(actor)
    rows = session.execute(
        select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)
    ).all()
    out = dict.fromkeys(STATUSES, 0)
    out.update({str(s): int(n) for s, n in rows})
    return out


def redeliver(
    session: Session, actor: Principal, delivery_id: int, *, reason: str | None = None
) -> WebhookDelivery:
    """Queue a delivery again now, whatever its state, with a fresh retry budget (the same id and
    body: receivers that already processed it recognise it)."""

    row = get_delivery(session, actor, delivery_id)
    before = {"status": row.status, "attempts": row.attempts}
    row.status = "pending"
    row.next_attempt_at = utcnow()
    row.max_attempts = row.attempts + POLICY.max_attempts
    record(
        session,
        actor,
        "webhook_delivery",
        row.id,
        "redeliver",
        before=before,
        after={"status": "pending", "max_attempts": row.max_attempts},
        reason=reason,
    )
    return row


def redeliver_now(
    db: Database, actor: Principal, delivery_id: int, *, client: httpx.Client | None = None
) -> WebhookDelivery:
    """Redeliver and make the attempt at once (the CLI's and API's manual resend)."""

    with db.transaction() as s:
        redeliver(s, actor, delivery_id, reason="manual redelivery")
    deliver_due(db, ids=[delivery_id], limit=1, client=client, manual=True)
    with db.transaction() as s:
        return get_delivery(s, actor, delivery_id)


def enqueue_threshold(
    session: Session,
    lead: Lead,
    threshold: scoring.Threshold,
    score: float,
    model_version: int,
    action: scoring.Webhook,
    now: datetime,
) -> WebhookDelivery:
    """Queue the ``scoring.threshold_crossed`` webhook of a threshold's webhook action."""

    data = {
        "lead": lead_data(lead),
        "threshold": {
            "id": threshold.id,
            "label": threshold.label or threshold.id,
            "at": threshold.at,
            "score": threshold.score,
        },
        "score": round(score, 4),
        "model_version": model_version,
        "crossed_at": now.isoformat(),
    }
    return enqueue(
        session,
        event="scoring.threshold_crossed",
        url=action.url,
        data=data,
        secret_env=action.secret_env,
        lead_id=lead.id,
        source=f"threshold:{threshold.id}",
        now=now,
    )


def lead_data(lead: Lead) -> dict[str, Any]:
    """The lead as webhook payloads describe it (what an integrator needs to act on it)."""

    return {
        "id": lead.id,
        "email": lead.email,
        "first_name": lead.first_name,
        "last_name": lead.last_name,
        "company": lead.company,
        "job_title": lead.job_title,
        "stage": lead.stage,
        "owner_id": lead.owner_id,
        "account_id": lead.account_id,
    }
