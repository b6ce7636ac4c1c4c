"""Engagement events and sales touches: set-based, idempotent ingest and listing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, insert, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from leadflow.auth.principal import Perm, Principal
from leadflow.core.engagement import ActivityType
from leadflow.db.base import json_text, sqlite_time, utcnow
from leadflow.db.pagination import Page, keyset, page_of
from leadflow.errors import Forbidden, InvalidInput
from leadflow.events import emit
from leadflow.leads.models import Activity, Lead
from leadflow.leads.service import get_lead, in_values, visibility_clause

MAX_BATCH = 10_000


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    lead_ids: list[int] = field(default_factory=list)


_COLUMNS = ("lead_id", "type", "occurred_at", "properties", "external_id", "source", "actor_id", "created_at")


_TYPES = frozenset(t.value for t in ActivityType)
_TYPE_ERROR = f"must be one of {', '.join(t.value for t in ActivityType)}"

# A row on its way to the table: lead_id, type, occurred_at (aware), properties, external_id,
# source, actor_id.
_Row = tuple[int, str, datetime, Any, str | None, Any, int | None]


def _insert_ignoring_duplicates(
    session: Session, rows: list[_Row], now: datetime
) -> tuple[int | None, int | None]:
    """Insert the rows (an external id stored meanwhile is skipped); returns an id at or below
    every id given to them (None: unknown) and, when known, the highest. SQLite: exactly their
    range (the rows' ids are contiguous: one writer, rowids max + 1); PostgreSQL: the sequence's
    value before the insert, and no highest (concurrent inserts interleave).
    On the Core connection: an executemany without the ORM's per-row bulk-insert bookkeeping."""

    conn = session.connection()
    dialect = conn.dialect.name
    table = cast(Table, Activity.__table__)
    if dialect == "sqlite":
        # Straight to the DBAPI cursor with the values as UTCDateTime and JSONType store them
        # (SQLAlchemy's per-value type processing was most of the insert's CPU).
        created = sqlite_time(now)
        values = [
            (
                lid,
                kind,
                sqlite_time(at),
                None if props is None else json_text(props),
                ext,
                source,
                actor,
                created,
            )
            for lid, kind, at, props, ext, source, actor in rows
        ]
        # exec_driver_sql: the engine's events still run (BEGIN IMMEDIATE before the first write).
        stored = conn.exec_driver_sql(
            f"INSERT INTO activities ({', '.join(_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (external_id) DO NOTHING",
            values,
        ).rowcount
        if stored <= 0:
            return None, None
        top = conn.exec_driver_sql("SELECT max(id) FROM activities").scalar()
        return (int(top) - stored + 1, int(top)) if top is not None else (None, None)
    dicts = [dict(zip(_COLUMNS, (*row, now), strict=True)) for row in rows]
    if dialect == "postgresql":
        # The sequence only grows: every id handed out after this read (ours) is above the last
        # one handed out before it (RETURNING the ids tripled the insert's client CPU).
        last = conn.execute(
            text("SELECT pg_sequence_last_value(pg_get_serial_sequence('activities', 'id'))")
        ).scalar()
        conn.execute(pg_insert(table).on_conflict_do_nothing(index_elements=["external_id"]), dicts)
        return int(last or 0), None
    conn.execute(insert(table), dicts)  # pragma: no cover - only the two supported backends
    return None, None


# The range of believable event times. Ahead of now: a year, for scheduled meetings and clocks
# that run ahead (tests drive a simulated clock); beyond that a date is a typo, and a far-off one
# overflowed score decay (2^years).
EARLIEST_EVENT = datetime(1900, 1, 1, tzinfo=UTC)
FUTURE_SKEW = timedelta(days=366)


def _email_key(item: Mapping[str, Any]) -> str:
    return str(item.get("email") or "").strip().lower()


def ingest(session: Session, actor: Principal, items: Sequence[Mapping[str, Any]]) -> IngestResult:
    """Store a batch of events. Each item names its lead by ``lead_id`` or ``email``; an item
    whose ``external_id`` was seen before is a duplicate, not an error, so retries are safe.
    Bad items are reported by index and field; the good ones land.

    Set-based: one query per kind of lookup (emails, visible leads with their tombstones,
    external ids seen) and one executemany for the rows; the only work per item is checking its
    values. Nothing is written to the leads themselves (``Lead.last_activity_at`` is derived)."""

    actor.require(Perm.ACTIVITIES_WRITE)
    if len(items) > MAX_BATCH:
        raise InvalidInput("events", f"at most {MAX_BATCH} events per batch")
    result = IngestResult()
    given = [it.get("lead_id") for it in items]
    emails = {_email_key(it) for it, lid in zip(items, given, strict=True) if not lid and it.get("email")}
    by_email: dict[str, int] = {}
    if emails:
        found = session.execute(
            select(Lead.email, Lead.id).where(Lead.email.in_(emails), Lead.merged_into_id.is_(None))
        )
        by_email = {str(e): int(i) for e, i in found}
    lids: list[int | None] = [
        int(lid) if lid else (by_email.get(_email_key(it)) if by_email else None)
        for it, lid in zip(items, given, strict=True)
    ]
    # The leads the actor may see, with their tombstones: a merged-away lead takes no new
    # events (they would never show on the winner).
    visible: set[int] = set()
    merged: dict[int, int] = {}
    wanted = sorted({lid for lid in lids if lid})
    if wanted:
        stmt = select(Lead.id, Lead.merged_into_id).where(in_values(session, Lead.id, wanted))
        vis = visibility_clause(session, actor)
        if vis is not None:
            stmt = stmt.where(vis)
        for found_id, winner in session.execute(stmt):
            visible.add(int(found_id))
            if winner is not None:
                merged[int(found_id)] = int(winner)

    ext_ids = [str(it["external_id"]) for it in items if it.get("external_id")]
    seen: set[str] = set()
    if ext_ids:
        seen = set(
            session.scalars(
                select(Activity.external_id).where(in_values(session, Activity.external_id, ext_ids))
            )
        )

    now = utcnow()
    latest_ok = now + FUTURE_SKEW
    by_actor = actor.user_id
    rows_out: list[_Row] = []
    touched: set[int] = set()
    errors = result.errors
    for i, it in enumerate(items):
        lid = lids[i]
        if not lid:
            where = "email" if it.get("email") else "lead_id"
            errors.append({"index": i, "loc": [where], "msg": "no such lead (give lead_id or a known email)"})
            continue
        if lid not in visible:
            errors.append({"index": i, "loc": ["lead_id"], "msg": f"lead {lid} not found"})
            continue
        if lid in merged:
            errors.append(
                {"index": i, "loc": ["lead_id"], "msg": f"lead {lid} was merged into lead {merged[lid]}"}
            )
            continue
        kind = str(it.get("type"))
        if kind not in _TYPES:
            errors.append({"index": i, "loc": ["type"], "msg": _TYPE_ERROR})
            continue
        occurred = it.get("occurred_at") or now
        if not isinstance(occurred, datetime):
            try:
                occurred = datetime.fromisoformat(str(occurred))
            except ValueError:
                errors.append({"index": i, "loc": ["occurred_at"], "msg": "is not an ISO 8601 timestamp"})
                continue
        if occurred.tzinfo is None:  # no offset means UTC (as stored); never compare naive with aware
            occurred = occurred.replace(tzinfo=UTC)
        if not EARLIEST_EVENT <= occurred <= latest_ok:
            # Far-off dates are typos or garbage: they overflowed score decay (2^years) and
            # SQLite cannot read years before 1000 back (found by the reliability fuzzing).
            errors.append(
                {"index": i, "loc": ["occurred_at"], "msg": "must lie between 1900-01-01 and a year from now"}
            )
            continue
        props = it.get("properties")
        if props is not None and not isinstance(props, dict):
            errors.append({"index": i, "loc": ["properties"], "msg": "must be an object"})
            continue
        ext = it.get("external_id")
        if ext:
            ext = str(ext)
            if ext in seen:
                result.duplicates += 1
                continue
            seen.add(ext)
        rows_out.append(
            (
                lid,
                kind,
                occurred,
                props,
                ext or None,
                it.get("source"),
                by_actor if it.get("by_actor") else None,
            )
        )
        touched.add(lid)
    first_id = last_id = None
    if rows_out:
        first_id, last_id = _insert_ignoring_duplicates(session, rows_out, now)
    result.accepted = len(rows_out)
    result.lead_ids = sorted(touched)
    if rows_out:
        # first_id: every event of this batch has an id at or above it (subscribers may look at
        # the new events only); absent when unknown. last_id (SQLite): the batch's events are
        # exactly the ids first_id..last_id (and no other event has one of them).
        extra: dict[str, int] = {} if first_id is None else {"first_id": first_id}
        if first_id is not None and last_id is not None:
            extra["last_id"] = last_id
        emit(session, "activities.ingested", lead_ids=result.lead_ids, count=len(rows_out), **extra)
    return result


def log_activity(
    session: Session,
    actor: Principal,
    lead_id: int,
    kind: ActivityType,
    *,
    occurred_at: datetime | None = None,
    properties: dict[str, Any] | None = None,
) -> Activity:
    """A touch logged by a person (call, email, meeting, note) on one lead."""

    get_lead(session, actor, lead_id)
    res = ingest(
        session,
        actor,
        [
            {
                "lead_id": lead_id,
                "type": kind.value,
                "occurred_at": occurred_at,
                "properties": properties,
                "by_actor": True,
            }
        ],
    )
    if res.errors:
        err = res.errors[0]
        raise InvalidInput(err["loc"], err["msg"])
    act = session.scalars(
        select(Activity).where(Activity.lead_id == lead_id).order_by(Activity.id.desc()).limit(1)
    ).one()
    return act


@dataclass
class ActivityFilter:
    lead_id: int | None = None
    type: list[ActivityType] | None = None
    since: datetime | None = None
    until: datetime | None = None


def list_activities(
    session: Session,
    actor: Principal,
    f: ActivityFilter,
    *,
    descending: bool = True,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Activity]:
    if f.lead_id is not None:
        get_lead(session, actor, f.lead_id)
    elif not actor.can(Perm.LEADS_READ):
        raise Forbidden("lacks leads:read")
    if not 1 <= limit <= 1000:
        raise InvalidInput("limit", "must be between 1 and 1000")
    stmt = select(Activity)
    if f.lead_id is not None:
        stmt = stmt.where(Activity.lead_id == f.lead_id)
    else:
        vis = visibility_clause(session, actor)
        if vis is not None:
            stmt = stmt.join(Lead, Lead.id == Activity.lead_id).where(vis)
    if f.type:
        stmt = stmt.where(Activity.type.in_([t.value for t in f.type]))
    if f.since:
        stmt = stmt.where(Activity.occurred_at >= f.since)
    if f.until:
        stmt = stmt.where(Activity.occurred_at < f.until)
    rows = list(
        session.scalars(
            keyset(stmt, Activity.occurred_at, Activity.id, descending=descending, cursor=cursor, limit=limit)
        )
    )
    return page_of(rows, limit, lambda r: (r.occurred_at, r.id))
