"""Buying signals: demo and pricing requests, free-trial starts and a shared decision timeline
mark a prospect *opportunity-ready*, with the activities as evidence; an optional rule opens the
opportunity automatically.

How it runs: ``activities.ingested`` and ``lead.stage_changed`` (to sql) are domain events; their
lead ids are collected while the events are dispatched and handled right after the outermost
commit, in a transaction of their own (the ingest that raised them is never undone by a failing
rule). ``leadflow pipeline signals scan`` does the same for every lead (catch-up after a bulk
load, or with no API process running).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, insert, literal, select, update
from sqlalchemy.orm import Session

from leadflow.audit.service import record
from leadflow.auth.principal import SYSTEM, Perm, Principal
from leadflow.core import pipeline as core
from leadflow.core.engagement import ActivityType
from leadflow.core.lifecycle import Stage
from leadflow.db.base import Database, engine_of, utcnow
from leadflow.errors import InvalidInput, LeadflowError
from leadflow.events import DomainEvent, subscribe, unsubscribe
from leadflow.leads import activities as activity_svc
from leadflow.leads import service as leads
from leadflow.leads.models import Activity, Lead
from leadflow.pipeline import service as svc
from leadflow.pipeline.models import BuyingSignal, Opportunity, SignalRuleRow

log = logging.getLogger("leadflow.pipeline")
CHUNK = 5000


def scan(session: Session, lead_ids: Sequence[int] | None = None, *, since_id: int | None = None) -> int:
    """Record a buying signal for every signal activity not yet recorded (set-based; idempotent:
    one signal per activity); ``since_id``: only activities with an id at or above it (the new
    events of an ingest: the (lead_id, occurred_at, id) index then rules out the leads' older
    events without reading their rows). Returns how many were added."""

    now = utcnow()
    added = 0
    chunks: Iterable[Sequence[int] | None] = (
        [lead_ids[i : i + CHUNK] for i in range(0, len(lead_ids), CHUNK)] if lead_ids is not None else [None]
    )
    for chunk in chunks:
        src = select(
            Activity.lead_id,
            Activity.type,
            Activity.id,
            Activity.occurred_at,
            Activity.properties,
            literal(now, BuyingSignal.created_at.type),
        ).where(
            Activity.type.in_(core.SIGNAL_KINDS),
            ~exists().where(BuyingSignal.activity_id == Activity.id),
        )
        if chunk is not None:
            src = src.where(Activity.lead_id.in_(chunk))
        if since_id is not None:
            src = src.where(Activity.id >= since_id)
        # RETURNING counts the rows on both backends (psycopg reports no rowcount here).
        res = session.execute(
            insert(BuyingSignal)
            .from_select(["lead_id", "kind", "activity_id", "occurred_at", "detail", "created_at"], src)
            .returning(BuyingSignal.id)
        )
        added += len(res.all())
    return added


@dataclass
class ReadyProspect:
    lead_id: int
    name: str
    company: str | None
    owner_id: int | None
    signals: list[dict[str, Any]]


def ready_prospects(session: Session, actor: Principal, *, limit: int = 200) -> list[ReadyProspect]:
    """Prospects (SQL) with buying signals not yet used by an opportunity: opportunity-ready,
    with the evidence."""

    actor.require(Perm.OPPORTUNITIES_READ)
    stmt = (
        select(Lead)
        .where(
            Lead.stage == Stage.SQL.value,
            Lead.merged_into_id.is_(None),
            exists().where(BuyingSignal.lead_id == Lead.id, BuyingSignal.opportunity_id.is_(None)),
        )
        .order_by(Lead.id)
        .limit(limit)
    )
    vis = leads.visibility_clause(session, actor)
    if vis is not None:
        stmt = stmt.where(vis)
    found = list(session.scalars(stmt))
    by_lead: dict[int, list[dict[str, Any]]] = {ld.id: [] for ld in found}
    if found:
        for s in session.scalars(
            select(BuyingSignal)
            .where(BuyingSignal.lead_id.in_(by_lead), BuyingSignal.opportunity_id.is_(None))
            .order_by(BuyingSignal.occurred_at)
        ):
            by_lead[s.lead_id].append(
                {
                    "kind": s.kind,
                    "occurred_at": s.occurred_at,
                    "activity_id": s.activity_id,
                    "detail": s.detail,
                }
            )
    return [
        ReadyProspect(
            ld.id,
            " ".join(p for p in (ld.first_name, ld.last_name) if p) or (ld.email or f"lead {ld.id}"),
            ld.company,
            ld.owner_id,
            by_lead[ld.id],
        )
        for ld in found
    ]


def lead_signals(session: Session, actor: Principal, lead_id: int) -> list[BuyingSignal]:
    leads.get_lead(session, actor, lead_id)
    return list(
        session.scalars(
            select(BuyingSignal).where(BuyingSignal.lead_id == lead_id).order_by(BuyingSignal.occurred_at)
        )
    )


def record_decision_timeline(
    session: Session, actor: Principal, lead_id: int, *, decision_date: date, note: str | None = None
) -> BuyingSignal:
    """The prospect shared when it will decide: logged as a ``decision_timeline`` activity (a
    buying signal)."""

    act = activity_svc.log_activity(
        session,
        actor,
        lead_id,
        ActivityType.DECISION_TIMELINE,
        properties={"decision_date": decision_date.isoformat(), **({"note": note} if note else {})},
    )
    scan(session, [lead_id])
    sig = session.scalar(select(BuyingSignal).where(BuyingSignal.activity_id == act.id))
    assert sig is not None
    return sig


# ------------------------------------------------------------------------------ the rule


def get_rule(session: Session, actor: Principal) -> SignalRuleRow | None:
    actor.require(Perm.OPPORTUNITIES_READ)
    return session.scalar(select(SignalRuleRow).order_by(SignalRuleRow.id).limit(1))


def set_rule(
    session: Session,
    actor: Principal,
    *,
    active: bool,
    signals: Sequence[str] = core.SIGNAL_KINDS,
    min_signals: int = 1,
    pipeline: int | str | None = None,
    stage_key: str | None = None,
    amount: float = 0.0,
    close_in_days: int = svc.DEFAULT_CLOSE_DAYS,
) -> SignalRuleRow:
    actor.require(Perm.PIPELINES_ADMIN)
    unknown = [s for s in signals if s not in core.SIGNAL_KINDS]
    if unknown or not signals:
        raise InvalidInput("signals", f"name at least one of {', '.join(core.SIGNAL_KINDS)}")
    if not 1 <= min_signals <= len(core.SIGNAL_KINDS):
        raise InvalidInput("min_signals", f"must be between 1 and {len(core.SIGNAL_KINDS)}")
    if not 1 <= close_in_days <= 3650:
        raise InvalidInput("close_in_days", "must be between 1 and 3650")
    if not 0 <= amount < svc.MAX_AMOUNT:
        raise InvalidInput("amount", "must not be negative")
    pipe = svc.get_pipeline(session, actor, pipeline)
    stage = svc._stage_by_key(session, pipe, stage_key, loc="stage_key")
    if stage.kind != "open":
        raise InvalidInput("stage_key", "must be an open stage")
    row = get_rule(session, actor)
    before = None
    if row is None:
        row = SignalRuleRow(name="Open an opportunity on buying signals", signals=[], pipeline_id=pipe.id)
        session.add(row)
    else:
        before = {"active": row.active, "signals": row.signals, "min_signals": row.min_signals}
    row.active, row.signals, row.min_signals = active, list(signals), min_signals
    row.pipeline_id, row.stage_key, row.amount, row.close_in_days = pipe.id, stage.key, amount, close_in_days
    session.flush()
    record(
        session,
        actor,
        "opportunity_rule",
        row.id,
        "set",
        before=before,
        after={"active": active, "signals": list(signals), "min_signals": min_signals, "pipeline": pipe.key},
    )
    return row


def apply_rule(
    session: Session, lead_ids: Sequence[int] | None = None, *, actor: Principal = SYSTEM
) -> list[int]:
    """Open an opportunity for every prospect (SQL) whose unused signals satisfy the active rule.
    Each lead in its own savepoint: one refusal does not stop the others. Returns the new
    opportunity ids."""

    rule = session.scalar(select(SignalRuleRow).where(SignalRuleRow.active.is_(True)).limit(1))
    if rule is None:
        return []
    spec = core.SignalRule(tuple(rule.signals), rule.min_signals)
    stmt = (
        select(BuyingSignal.lead_id, func.count(func.distinct(BuyingSignal.kind)))
        .join(Lead, and_(Lead.id == BuyingSignal.lead_id, Lead.stage == Stage.SQL.value))
        .where(BuyingSignal.opportunity_id.is_(None), BuyingSignal.kind.in_(spec.signals))
        .group_by(BuyingSignal.lead_id)
        .having(func.count(func.distinct(BuyingSignal.kind)) >= spec.min_signals)
    )
    if lead_ids is not None:
        stmt = stmt.where(BuyingSignal.lead_id.in_(lead_ids))
    opened: list[int] = []
    for lead_id, _n in session.execute(stmt).all():
        kinds = sorted(
            set(session.scalars(select(BuyingSignal.kind).where(BuyingSignal.lead_id == lead_id)))
            & set(spec.signals)
        )
        lead = session.get(Lead, lead_id)
        if lead is None:
            continue
        inp = svc.ConvertInput(
            amount=float(rule.amount),
            pipeline=rule.pipeline_id,
            stage=rule.stage_key,
            expected_close_date=(utcnow() + timedelta(days=rule.close_in_days)).date(),
            owner_id=lead.owner_id,
            owner_set=True,
            reason=f"opened automatically on buying signals: {', '.join(kinds)}",
        )
        try:
            with session.begin_nested():
                opp = svc.convert_lead(session, actor, lead_id, inp)
            opened.append(opp.id)
        except LeadflowError as exc:
            log.warning("automatic conversion of lead %s refused: %s", lead_id, exc.message)
    return opened


# ------------------------------------------------------------------------------ event wiring

_databases: dict[int, Database] = {}
_pending = threading.local()
_EVENTS = ("activities.ingested", "lead.stage_changed", "lead.merged")


def _ids() -> set[int]:
    ids: set[int] | None = getattr(_pending, "ids", None)
    if ids is None:
        ids = set()
        _pending.ids = ids
    return ids


def _merges() -> list[tuple[int, int]]:
    merges: list[tuple[int, int]] | None = getattr(_pending, "merges", None)
    if merges is None:
        merges = []
        _pending.merges = merges
    return merges


def _fresh() -> list[tuple[int, list[int]]]:
    fresh: list[tuple[int, list[int]]] | None = getattr(_pending, "fresh", None)
    if fresh is None:
        fresh = []
        _pending.fresh = fresh
    return fresh


def _on_event(ev: DomainEvent) -> None:
    p = ev.payload
    if ev.name == "lead.merged":
        _merges().append((int(p["winner_id"]), int(p["loser_id"])))
        return
    if ev.name == "lead.stage_changed":
        if p.get("target") == Stage.SQL.value:
            _ids().add(int(p["lead_id"]))
        return
    if p.get("first_id") is not None:  # an ingest that knows where its new events start
        _fresh().append((int(p["first_id"]), [int(i) for i in p.get("lead_ids") or ()]))
        return
    _ids().update(int(i) for i in p.get("lead_ids") or ())


def handle(
    db: Database, lead_ids: Sequence[int], fresh: Sequence[tuple[int, Sequence[int]]] = ()
) -> list[int]:
    """Record the leads' new signals and apply the rule, in a transaction of its own. ``fresh``:
    (first id, leads) of ingests whose new events are all at or above that id (only those are
    scanned for these leads); ``lead_ids`` are scanned in full."""

    with db.transaction() as s:
        if lead_ids:
            scan(s, lead_ids)
        for first_id, ids in fresh:
            scan(s, ids, since_id=first_id)
        every = sorted({*lead_ids, *(i for _, ids in fresh for i in ids)})
        return apply_rule(s, every)


def follow_merge(session: Session, winner_id: int, loser_id: int) -> None:
    """A merged-away lead's deals and signals belong to the lead it was merged into."""

    for column in (Opportunity.lead_id, Opportunity.contact_lead_id):
        session.execute(
            update(Opportunity)
            .where(column == loser_id)
            .values({column.key: winner_id})
            .execution_options(synchronize_session=False)
        )
    session.execute(
        update(BuyingSignal)
        .where(BuyingSignal.lead_id == loser_id)
        .values(lead_id=winner_id)
        .execution_options(synchronize_session=False)
    )


def register(db: Database) -> None:
    """Watch ingested activities and new prospects for buying signals. Idempotent."""

    from sqlalchemy import event
    from sqlalchemy.orm import Session as _Session

    if not _databases:
        for name in _EVENTS:
            subscribe(name, _on_event)
        if not event.contains(_Session, "after_commit", _after_commit):
            event.listen(_Session, "after_commit", _after_commit)
    _databases[id(db.engine)] = db


def unregister(db: Database) -> None:
    if _databases.pop(id(db.engine), None) is not None and not _databases:
        for name in _EVENTS:
            unsubscribe(name, _on_event)


def _after_commit(session: Session) -> None:
    # Runs after leadflow.events dispatched the commit's events (registered later than it).
    if session.in_nested_transaction():
        return
    ids, merges, fresh = _ids(), _merges(), _fresh()
    if not ids and not merges and not fresh:
        return
    _pending.ids, _pending.merges, _pending.fresh = set(), [], []
    db = _databases.get(id(engine_of(session)))
    if db is None:
        return
    try:
        if merges:
            with db.transaction() as s:
                for winner, loser in merges:
                    follow_merge(s, winner, loser)
        if ids or fresh:
            handle(db, sorted(ids), fresh)
    except Exception:  # the change is committed; a failing follow-up must not undo it
        log.exception("pipeline follow-up for %d leads failed", len(ids) + len(merges) + len(fresh))
