"""Scoring use cases: model versions, incremental and full rescoring, thresholds that act,
explanations and history.

* A model version is validated before it is stored; activating one flips the active flag in one
  transaction, so the active model never changes half-way. Version 0 is the built-in default
  (the seeds' tiers), in force until a model is activated.
* Incremental: for a database passed to :func:`register`, the leads named by a commit's
  ``activities.ingested``, ``lead.created``, ``lead.merged`` and ``leads.imported`` events (one
  per committed import chunk) are rescored after that commit, in a transaction of their own.
* Engagement is rolled forward: each lead keeps decayed per-rule sums (``lead_engagement``, see
  :mod:`leadflow.core.scoring`), folded forward with the new events on the incremental path.
* Full: :func:`rescore_all` works on id ranges of leads: fit attributes are pulled as columns
  into NumPy, engagement comes from the kept states (or, after the engagement rules changed or
  when the states are out of step with the events, from one SQL pass over the events that
  rebuilds them), and scores, history and armed state are written with set-based statements.
  No ORM object per lead.
* Both paths hand the new scores to the same threshold logic; actions: move to MQL (through
  :func:`leadflow.leads.service.transition_lead` with score evidence, only where the move is legal),
  create a task and enroll in a sequence (domain events the cadences feature subscribes to), and
  webhook (recorded, and emitted as a domain event for the webhook delivery feature).
"""

from __future__ import annotations

import gc
import itertools
import json
import logging
import math
import multiprocessing
import re
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Connection, delete, event, func, insert, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.schema import DropIndex

from leadflow.audit.service import record
from leadflow.auth.models import Role
from leadflow.auth.principal import Perm, Principal
from leadflow.core import lifecycle
from leadflow.core import scoring as core
from leadflow.core.lifecycle import Origin, Stage
from leadflow.db.base import Database, engine_of, sqlite_time, utcnow
from leadflow.errors import Conflict, Forbidden, InvalidInput, NotFound
from leadflow.events import DomainEvent, emit
from leadflow.leads import service as leads
from leadflow.leads.models import Activity, Lead
from leadflow.scoring.models import (
    TOTAL_INDEX,
    EngagementBuild,
    LeadScore,
    ScoreHistory,
    ScoringModelVersion,
    ThresholdFiring,
    ensure_total_index,
)
from leadflow.webhooks import service as webhooks

log = logging.getLogger("leadflow.scoring")

SCORING_ACTOR = Principal(user_id=None, label="lead scoring", role=Role.ADMIN)
MANAGERS = frozenset({Role.ADMIN, Role.MARKETING})
# Leads that are customers, disqualified or bad get no follow-up from their score (it is still
# computed, kept and explained).
QUIET_STAGES = frozenset({Stage.CUSTOMER.value, Stage.UNQUALIFIED.value, Stage.BAD.value})
HISTORY_EPSILON = 0.005  # a score point is written to the history when a score moves this much
CHUNK = 50_000
# From this many leads on, a full rescore reads ahead in a second process (starting it costs
# about a second: the imports).
PARALLEL_MIN_LEADS = 200_000
READ_AHEAD = 2  # ranges requested from the full rescore's second process ahead of the writes
READ_HERE = 2  # ranges the main process reads itself ahead while it would wait for the second
# A full rescore on SQLite drops ix_lead_scores_total for the rest of the run once the ranges done
# moved at least half of their scores and this many leads are left (building the index again
# costs under a second per million scores; updating it, about 4 us per score written).
REINDEX_MIN_LEADS = 100_000
ALL_EVENTS = "1 = 1"  # the full rescore's filter on activities: every event, in storage order
INCREMENTAL_BATCH = 10_000
RESCORE_ATTEMPTS = 3  # incremental rescoring after a commit, on lock timeouts and deadlocks

ProgressFn = Callable[[int, int], None]


# ---------------------------------------------------------------------------------------------
# Rights
# ---------------------------------------------------------------------------------------------


def _require_read(actor: Principal) -> None:
    if not actor.can(Perm.LEADS_READ):
        raise Forbidden(f"role {actor.role.value} lacks the right {Perm.LEADS_READ.value}")


def _require_manage(actor: Principal) -> None:
    """Scoring models are marketing's (seeds: lead scoring is the marketing team's job)."""

    if actor.role not in MANAGERS or not actor.can(Perm.LEADS_WRITE):
        raise Forbidden(f"role {actor.role.value} cannot change scoring models (admin or marketing)")


# ---------------------------------------------------------------------------------------------
# Model versions
# ---------------------------------------------------------------------------------------------

_parsed: dict[tuple[int, str], core.ScoringModel] = {}


def validate_document(document: Any) -> core.ScoringModel:
    """Parse a model document; a bad one raises InvalidInput (422) naming each rule and field."""

    try:
        return core.parse_model(document)
    except core.InvalidScoringModel as exc:
        first = exc.errors[0]
        raise InvalidInput(
            list(first.loc) or ["document"],
            str(first),
            errors=[
                {"loc": list(e.loc), "msg": str(e), "rule": e.rule, "field": e.field} for e in exc.errors
            ],
        ) from None


def _model_of(row: ScoringModelVersion) -> core.ScoringModel:
    key = (row.version, json.dumps(row.document, sort_keys=True))
    model = _parsed.get(key)
    if model is None:
        model = core.parse_model(row.document)
        _parsed[key] = model
    return model


@dataclass(frozen=True)
class ActiveModel:
    version: int
    model: core.ScoringModel


def active_model(session: Session) -> ActiveModel:
    row = session.scalar(select(ScoringModelVersion).where(ScoringModelVersion.active.is_(True)).limit(1))
    if row is None:
        return ActiveModel(0, core.default_model())
    return ActiveModel(row.version, _model_of(row))


def get_version(session: Session, actor: Principal, version: int) -> ScoringModelVersion:
    _require_read(actor)
    row = session.scalar(select(ScoringModelVersion).where(ScoringModelVersion.version == version))
    if row is None:
        raise NotFound(f"scoring model version {version} not found")
    return row


def list_versions(session: Session, actor: Principal) -> list[ScoringModelVersion]:
    _require_read(actor)
    return list(session.scalars(select(ScoringModelVersion).order_by(ScoringModelVersion.version.desc())))


def save_model(
    session: Session, actor: Principal, document: Any, *, activate: bool = False
) -> ScoringModelVersion:
    """Store a new version of the model document (validated first); optionally activate it."""

    _require_manage(actor)
    model = validate_document(document)
    latest = session.scalar(select(func.max(ScoringModelVersion.version))) or 0
    row = ScoringModelVersion(
        version=latest + 1,
        name=model.name,
        document=model.to_document(),
        active=False,
        created_by=actor.user_id,
        created_at=utcnow(),
    )
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        raise Conflict("another model version was stored at the same moment; retry") from None
    record(session, actor, "scoring_model", row.version, "create", after={"name": row.name})
    if activate:
        activate_version(session, actor, row.version)
    return row


def activate_version(session: Session, actor: Principal, version: int) -> ScoringModelVersion:
    """Make ``version`` the active model (also a rollback to an older one), atomically."""

    _require_manage(actor)
    row = session.scalar(
        select(ScoringModelVersion).where(ScoringModelVersion.version == version).with_for_update()
    )
    if row is None:
        raise NotFound(f"scoring model version {version} not found")
    validate_document(row.document)
    previous = session.scalar(
        select(ScoringModelVersion.version).where(ScoringModelVersion.active.is_(True)).limit(1)
    )
    session.execute(
        update(ScoringModelVersion)
        .where(ScoringModelVersion.active.is_(True), ScoringModelVersion.version != version)
        .values(active=False)
        .execution_options(synchronize_session=False)
    )
    row.active = True
    row.activated_at = utcnow()
    record(
        session,
        actor,
        "scoring_model",
        version,
        "activate",
        before={"active_version": previous},
        after={"active_version": version},
    )
    emit(session, "scoring.model_activated", version=version, previous=previous)
    return row


# ---------------------------------------------------------------------------------------------
# Reading attributes and events (the same extraction for both paths)
# ---------------------------------------------------------------------------------------------

# Rule attribute -> SQL over leads l LEFT JOIN accounts a; predictive features read the same.
LEAD_COLUMNS = {
    "email": "l.email",
    "job_title": "l.job_title",
    "seniority": "l.seniority",
    "department": "l.department",
    "company": "l.company",
    "country": "COALESCE(l.country, a.country)",
    "source": "l.source",
    "campaign": "l.campaign",
    "origin": "l.origin",
    "consent": "l.consent",
    "unsubscribed": "l.unsubscribed",
    "industry": "a.industry",
    "employee_count": "a.employee_count",
    "annual_revenue": "a.annual_revenue",
    "account_domain": "a.domain",
}


def _json_text(dialect: str, column: str, key: str) -> str:
    """SQL for the text of a top-level JSON property (keys are validated identifiers-ish)."""

    safe = key.replace("'", "''")
    if dialect == "postgresql":
        return f"({column} ->> '{safe}')"
    quoted = safe.replace('"', '""')
    return f"json_extract({column}, '$.\"{quoted}\"')"


def _attribute_sql(model: core.ScoringModel, dialect: str) -> tuple[list[str], str]:
    names = core.fit_fields_needed(model)
    exprs = []
    for name in names:
        if name.startswith(core.ATTRIBUTE_PREFIX):
            exprs.append(_json_text(dialect, "l.attributes", name[len(core.ATTRIBUTE_PREFIX) :]))
        else:
            exprs.append(LEAD_COLUMNS[name])
    cols = ", ".join(["l.id", *exprs])
    return names, f"SELECT {cols} FROM leads l LEFT JOIN accounts a ON a.id = l.account_id"


def _convert(name: str, values: list[Any]) -> np.ndarray[Any, Any]:
    kind = core.FIT_FIELDS.get(name, "any")
    if kind == "number":
        return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    arr = np.empty(len(values), dtype=object)
    if kind == "bool":
        arr[:] = [None if v is None else bool(v) for v in values]
    else:
        arr[:] = values
    return arr


def _attribute_columns(
    session: Session, model: core.ScoringModel, where: str, params: Mapping[str, Any]
) -> tuple[list[int], dict[str, np.ndarray[Any, Any]]]:
    dialect = session.get_bind().dialect.name
    names, sql = _attribute_sql(model, dialect)
    rows = _raw_rows(session, f"{sql} WHERE l.merged_into_id IS NULL AND {where} ORDER BY l.id", params)
    if not rows:
        return [], {name: np.empty(0, dtype=object) for name in names}
    cols = list(zip(*rows, strict=True))
    ids = [int(i) for i in cols[0]]
    columns = {name: _convert(name, list(cols[i + 1])) for i, name in enumerate(names)}
    return ids, columns


def _attributes_for(
    session: Session, model: core.ScoringModel, ids: Sequence[int]
) -> dict[int, dict[str, Any]]:
    """Live leads' attributes as the fit rules see them, by lead id."""

    if not ids:
        return {}
    found, cols = _attribute_columns(session, model, f"l.id IN ({_id_list(ids)})", {})
    out: dict[int, dict[str, Any]] = {lid: {} for lid in found}
    for name, arr in cols.items():
        for lid, v in zip(found, arr.tolist(), strict=True):
            if isinstance(v, float):
                v = None if math.isnan(v) else (int(v) if v.is_integer() else v)
            if name.startswith(core.ATTRIBUTE_PREFIX):
                out[lid].setdefault("attributes", {})[name[len(core.ATTRIBUTE_PREFIX) :]] = v
            else:
                out[lid][name] = v
    return out


def lead_attributes(session: Session, model: core.ScoringModel, lead_id: int) -> dict[str, Any] | None:
    """One lead's attributes as the fit rules see them (None: no such live lead)."""

    return _attributes_for(session, model, [lead_id]).get(lead_id)


def _events_for(session: Session, ids: Sequence[int]) -> dict[int, list[core.EventRecord]]:
    out: dict[int, list[core.EventRecord]] = {int(i): [] for i in ids}
    if not ids:
        return out
    rows = session.execute(
        select(Activity.lead_id, Activity.id, Activity.type, Activity.occurred_at, Activity.properties).where(
            Activity.lead_id.in_(ids)
        )
    ).all()
    for lid, i, t, at, p in rows:
        out[int(lid)].append(core.EventRecord(int(i), str(t), at, p))
    return out


def lead_events(session: Session, lead_id: int) -> list[core.EventRecord]:
    return _events_for(session, [lead_id])[lead_id]


def _id_list(ids: Sequence[int]) -> str:
    return ",".join(str(int(i)) for i in ids)


_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def _raw_rows(session: Session, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """Run SQL with ``:name`` parameters on the DBAPI cursor: plain tuples, no Row objects
    (the bulk path reads hundreds of thousands of rows)."""

    conn = session.connection()
    raw: Any = conn.connection.driver_connection
    if conn.dialect.name == "postgresql":
        sql = _NAMED.sub(r"%(\1)s", sql.replace("%", "%%"))
    cur = raw.cursor()
    try:
        cur.execute(sql, dict(params))
        rows: list[tuple[Any, ...]] = cur.fetchall()
    finally:
        cur.close()
    return rows


# ---------------------------------------------------------------------------------------------
# Engagement in SQL (bulk path)
# ---------------------------------------------------------------------------------------------


def _epoch_sql(dialect: str, column: str = "act.occurred_at") -> str:
    """Seconds since the epoch of an event, exact to the microsecond (julianday() is not)."""

    if dialect == "postgresql":
        return f"EXTRACT(EPOCH FROM {column})::float8"
    # UTCDateTime stores 'YYYY-MM-DD HH:MM:SS.ffffff' (naive UTC) on SQLite.
    whole = (
        f"unixepoch({column})"
        if sqlite3.sqlite_version_info >= (3, 38)
        else (f"CAST(strftime('%s', {column}) AS INTEGER)")
    )
    return f"({whole} + CAST(substr({column}, 20) AS REAL))"


def _property_text_sql(dialect: str, column: str, key: str) -> str:
    """SQL for :func:`leadflow.core.scoring.property_text` of a top-level event property."""

    if dialect == "postgresql":
        return _json_text(dialect, column, key)  # ->> spells true/false and numbers as JSON does
    path = "'$.\"" + key.replace("'", "''").replace('"', '""') + "\"'"
    return (
        f"(CASE json_type({column}, {path}) WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' "
        f"ELSE CAST(json_extract({column}, {path}) AS TEXT) END)"
    )


def _condition_sql(dialect: str, key: str, cond: core.PropertyCondition, params: dict[str, Any]) -> str:
    value = _property_text_sql(dialect, "act.properties", key)
    n = len(params)

    def bind(v: Any) -> str:
        nonlocal n
        name = f"p{n}"
        n += 1
        params[name] = core.property_text(v)
        return f":{name}"

    op = cond.op
    if op == "exists":
        return f"{value} IS {'NOT ' if cond.exists else ''}NULL"
    if op == "equals":
        return f"{value} = {bind(cond.equals)}"
    if op == "prefix":
        p = bind(cond.prefix)
        return f"substr({value}, 1, length({p})) = {p}"
    if op == "contains":
        return (
            f"strpos({value}, {bind(cond.contains)}) > 0"
            if dialect == "postgresql"
            else (f"instr({value}, {bind(cond.contains)}) > 0")
        )
    options = ", ".join(bind(v) for v in cond.in_ or [])
    return f"{value} IN ({options})"


def _rules_sql(model: core.ScoringModel, dialect: str, params: dict[str, Any]) -> tuple[str, str]:
    """The rules as a VALUES table r(idx, type), and the condition that an event (columns of
    ``act``) passes rule r.idx's property filters."""

    rules = model.engagement.rules
    values = ", ".join(f"({j}, :t{j})" for j in range(len(rules)))
    for j, rule in enumerate(rules):
        params[f"t{j}"] = rule.event
    conds = []
    for j, rule in enumerate(rules):
        if rule.where:
            sql = " AND ".join(_condition_sql(dialect, k, c, params) for k, c in rule.where.items())
            conds.append(f"WHEN {j} THEN ({sql})")
    match = f"(CASE r.idx {' '.join(conds)} ELSE TRUE END)" if conds else "TRUE"
    return values, match


def _engagement_sql(model: core.ScoringModel, dialect: str, where: str) -> tuple[str, dict[str, Any]]:
    """One pass over the activities in ``where``: each event joins the rules for its type (a tiny
    VALUES table), property filters apply per rule, and matching events are grouped by (lead,
    rule, cap period) with their count and the sum of their decay factors; the outer query applies
    the caps and sums the points per (lead, rule)."""

    rules = model.engagement.rules
    if not rules:
        return "", {}
    params: dict[str, Any] = {}
    epoch = _epoch_sql(dialect)
    values, match = _rules_sql(model, dialect, params)
    greatest = "GREATEST" if dialect == "postgresql" else "MAX"
    least = "LEAST" if dialect == "postgresql" else "MIN"
    decays, periods, points, caps = [], [], [], []
    for j, rule in enumerate(rules):
        hl = model.half_life(rule)
        if hl is not None:
            decays.append(f"WHEN {j} THEN power(0.5, {greatest}(:now - e.ep, 0) / {float(hl) * 86400.0!r})")
        if rule.cap:
            periods.append(f"WHEN {j} THEN floor(e.ep / {float(rule.cap.days * 86400)!r})")
            caps.append(f"WHEN {j} THEN {float(rule.cap.points)!r}")
        points.append(f"WHEN {j} THEN {float(rule.points)!r}")
    decay = f"(CASE r.idx {' '.join(decays)} ELSE 1.0 END)" if decays else "1.0"
    period = f"(CASE r.idx {' '.join(periods)} ELSE 0 END)" if periods else "0"
    pts = f"(CASE g.idx {' '.join(points)} END)"
    share = (
        f"(CASE WHEN (CASE g.idx {' '.join(caps)} ELSE NULL END) IS NULL THEN 1.0 "
        f"ELSE {least}(1.0, (CASE g.idx {' '.join(caps)} END) / (g.n * ABS({pts}))) END)"
        if caps
        else "1.0"
    )
    # SQLite would walk the (lead_id, occurred_at) index and fetch each event's row out of order.
    scan = " NOT INDEXED" if where == ALL_EVENTS and dialect == "sqlite" else ""
    pivot = ", ".join(f"SUM(CASE h.idx WHEN {j} THEN h.c ELSE 0 END)" for j in range(len(rules)))
    sql = (
        f"WITH r(idx, type) AS (VALUES {values}) "
        f"SELECT h.lead_id, {pivot} FROM ("
        f"SELECT g.lead_id AS lead_id, g.idx AS idx, {pts} * {share} * g.dsum AS c FROM ("
        f"SELECT e.lead_id AS lead_id, r.idx AS idx, {period} AS period, COUNT(*) AS n, SUM({decay}) AS dsum "
        f"FROM (SELECT act.lead_id AS lead_id, act.type AS type, act.properties AS properties, {epoch} AS ep "
        # CROSS JOIN: SQLite keeps the activities as the outer loop (one pass over them).
        f"FROM activities act{scan} WHERE {where}) e CROSS JOIN r "
        f"WHERE r.type = e.type AND {match.replace('act.properties', 'e.properties')} "
        # (a constant in GROUP BY would name a column: no period term without caps)
        f"GROUP BY e.lead_id, r.idx{', ' + period if periods else ''}) g) h GROUP BY h.lead_id"
    )
    return sql, params


@dataclass(frozen=True)
class EngagementTable:
    """Engagement points per (lead, rule) for the leads that have matching events."""

    leads: np.ndarray[Any, np.dtype[np.int64]]  # sorted
    points: np.ndarray[Any, np.dtype[np.float64]]  # (len(leads), rules)

    def rows_for(self, ids: Sequence[int], n_rules: int) -> np.ndarray[Any, np.dtype[np.float64]]:
        out = np.zeros((len(ids), n_rules), dtype=np.float64)
        if not len(self.leads) or not len(ids):
            return out
        id_arr = np.asarray(ids, dtype=np.int64)
        pos = np.searchsorted(self.leads, id_arr)
        ok = (pos < len(self.leads)) & (self.leads[np.minimum(pos, len(self.leads) - 1)] == id_arr)
        out[ok] = self.points[pos[ok]]
        return out


def _engagement_table(
    session: Session, model: core.ScoringModel, where: str, params: Mapping[str, Any], as_of: datetime
) -> EngagementTable:
    n = len(model.engagement.rules)
    sql, p = _engagement_sql(model, session.get_bind().dialect.name, where)
    rows = _raw_rows(session, sql, {**params, **p, "now": as_of.timestamp()}) if sql else []
    if not rows:
        return EngagementTable(np.zeros(0, dtype=np.int64), np.zeros((0, n), dtype=np.float64))
    arr = np.array(rows, dtype=np.float64)
    leads = arr[:, 0].astype(np.int64)
    order = np.argsort(leads, kind="stable")
    return EngagementTable(leads[order], arr[order, 1:])


def _engagement_matrix(
    session: Session,
    model: core.ScoringModel,
    ids: Sequence[int],
    where: str,
    params: Mapping[str, Any],
    as_of: datetime,
) -> np.ndarray[Any, np.dtype[np.float64]]:
    if not ids:
        return np.zeros((0, len(model.engagement.rules)), dtype=np.float64)
    table = _engagement_table(session, model, where, params, as_of)
    return table.rows_for(ids, len(model.engagement.rules))


# ---------------------------------------------------------------------------------------------
# Engagement rolled forward: per-lead state (see leadflow.core.scoring), kept up to date on ingest
# ---------------------------------------------------------------------------------------------

_STATE_COLUMNS = ("ruleset", "ref", "events", "last_event_id", "max_at", "state")
STALE_REBUILD_SHARE = 0.05  # more leads than this out of step: rebuild all from the events


@dataclass
class _LeadState:
    ruleset: str
    ref: float
    events: int
    last_event_id: int
    max_at: float
    state: np.ndarray[Any, np.dtype[np.float64]]

    def row(self, lead_id: int) -> tuple[Any, ...]:
        return (
            lead_id,
            self.ruleset,
            self.ref,
            self.events,
            self.last_event_id,
            self.max_at,
            self.state.astype(np.float64).tobytes(),
        )


def _state_size(n_rules: int) -> int:
    return n_rules * core.STATE_FIELDS * 8


def refresh_states(session: Session, model: core.ScoringModel, ids: Sequence[int]) -> dict[int, _LeadState]:
    """:func:`refresh_arrays` as one state per lead (leads without events and without a stored
    state have none)."""

    wanted = sorted({int(i) for i in ids})
    state, ref, max_at, events, last, present = refresh_arrays(session, model, wanted)
    key = core.engagement_key(model)
    return {
        lid: _LeadState(key, float(ref[i]), int(events[i]), int(last[i]), float(max_at[i]), state[i])
        for i, lid in enumerate(wanted)
        if present[i]
    }


def _matched_events(
    session: Session, model: core.ScoringModel, event_ids: Sequence[int]
) -> tuple[
    np.ndarray[Any, np.dtype[np.int64]],
    np.ndarray[Any, np.dtype[np.int64]],
    np.ndarray[Any, np.dtype[np.float64]],
]:
    """One row per (event, engagement rule it matches) of these events: lead id, rule index and
    time (epoch seconds), matched in SQL as the full rescore's pass over the events matches."""

    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64))
    if not event_ids or not model.engagement.rules:
        return empty
    dialect = session.get_bind().dialect.name
    params: dict[str, Any] = {}
    values, match = _rules_sql(model, dialect, params)
    epoch = _epoch_sql(dialect)
    parts = []
    for start in range(0, len(event_ids), 20_000):
        part = event_ids[start : start + 20_000]
        rows = _raw_rows(
            session,
            f"WITH r(idx, type) AS (VALUES {values}) SELECT e.lead_id, r.idx, e.ep FROM ("
            f"SELECT act.lead_id AS lead_id, act.type AS type, act.properties AS properties, {epoch} AS ep "
            f"FROM activities act WHERE act.id IN ({_id_list(part)})) e CROSS JOIN r "
            f"WHERE r.type = e.type AND {match.replace('act.properties', 'e.properties')}",
            params,
        )
        if rows:
            parts.append(np.array(rows, dtype=np.float64).reshape(-1, 3))
    if not parts:
        return empty
    arr = np.concatenate(parts)
    return arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64), arr[:, 2]


# Per commit, at most this many id ranges of new events are read by range (more: by lead).
MAX_EVENT_RANGES = 8


def _range_events(
    session: Session, model: core.ScoringModel, ranges: Sequence[tuple[int, int]]
) -> tuple[np.ndarray[Any, np.dtype[np.float64]], np.ndarray[Any, np.dtype[np.float64]]]:
    """The events with ids in ``ranges`` (inclusive), read by id (SQLite: a rowid range scan of
    pages just written, instead of one index probe per lead), each matched to the engagement
    rules in the same statement: (lead, id, time) per event and (lead, id, time, rule) per
    (event, rule it matches)."""

    dialect = session.get_bind().dialect.name
    where = " OR ".join(f"act.id BETWEEN {int(a)} AND {int(b)}" for a, b in ranges)
    epoch = _epoch_sql(dialect)
    params: dict[str, Any] = {}
    if model.engagement.rules:
        values, match = _rules_sql(model, dialect, params)
        sql = (
            f"WITH r(idx, type) AS (VALUES {values}) "
            f"SELECT act.lead_id, act.id, {epoch}, COALESCE(r.idx, -1) FROM activities act "
            f"LEFT JOIN r ON r.type = act.type AND {match} WHERE {where}"
        )
    else:
        sql = f"SELECT act.lead_id, act.id, {epoch}, -1 FROM activities act WHERE {where}"
    rows = _raw_rows(session, sql, params)
    arr = np.array(rows, dtype=np.float64).reshape(-1, 4) if rows else np.zeros((0, 4))
    _, first = np.unique(arr[:, 1], return_index=True)  # an event matching two rules has two rows
    return arr[first, :3], arr[arr[:, 3] >= 0]


def refresh_arrays(
    session: Session,
    model: core.ScoringModel,
    ids: Sequence[int],
    new_events: Sequence[tuple[int, int]] | None = None,
) -> tuple[
    np.ndarray[Any, np.dtype[np.float64]],
    np.ndarray[Any, np.dtype[np.float64]],
    np.ndarray[Any, np.dtype[np.float64]],
    np.ndarray[Any, np.dtype[np.int64]],
    np.ndarray[Any, np.dtype[np.int64]],
    np.ndarray[Any, np.dtype[np.bool_]],
]:
    """Bring the engagement state of these leads (sorted ids) up to date with their events, and
    store it: new events (ids above the lead's last folded one) are folded in, for the whole
    batch at once (:func:`leadflow.core.scoring.fold_batch`); a lead whose events do not add up
    (none stored yet, another ruleset, events moved by a merge or committed out of id order, an
    event for a closed cap period) is rebuilt from all its events. Returns, aligned with ``ids``:
    state, ref, max_at, events, last event id, and whether the lead has a state at all.
    ``new_events``: id ranges (inclusive) that hold the events the caller's commit stored
    (SQLite's ingest knows them exactly): those are read by id range. Correct whatever they
    hold: a lead whose state plus the events read does not add up to its events is rebuilt."""

    key = core.engagement_key(model)
    k = len(model.engagement.rules)
    n = len(ids)
    want = np.asarray(ids, dtype=np.int64)
    state = core.empty_state(n, k)
    ref = np.zeros(n, dtype=np.float64)
    max_at = np.full(n, -np.inf)
    events = np.zeros(n, dtype=np.int64)
    last = np.zeros(n, dtype=np.int64)
    stored = np.zeros(n, dtype=np.bool_)  # a row exists
    usable = np.zeros(n, dtype=np.bool_)  # ... of this ruleset
    if not n:
        return state, ref, max_at, events, last, stored
    id_list = _id_list(ids)
    rows = _raw_rows(
        session,
        f"SELECT lead_id, ruleset, ref, events, last_event_id, max_at, state FROM lead_engagement "
        f"WHERE lead_id IN ({id_list})",
        {},
    )
    if rows:  # vectorized: no Python work per lead
        lid, rulesets, refs, counts_, lasts, maxes, blobs = zip(*rows, strict=True)
        size = _state_size(k)
        pos = np.searchsorted(want, np.fromiter(lid, dtype=np.int64, count=len(rows)))
        stored[pos] = True
        ok = np.fromiter(
            (r == key and len(b) == size for r, b in zip(rulesets, blobs, strict=True)),
            dtype=np.bool_,
            count=len(rows),
        )
        if ok.any():
            good = pos[ok]
            usable[good] = True
            data = b"".join(itertools.compress(map(bytes, blobs), ok.tolist()))
            state[good] = np.frombuffer(data, dtype=np.float64).reshape(-1, k, core.STATE_FIELDS)
            ref[good] = np.asarray(refs, dtype=np.float64)[ok]
            events[good] = np.asarray(counts_, dtype=np.int64)[ok]
            last[good] = np.asarray(lasts, dtype=np.int64)[ok]
            max_at[good] = np.asarray(maxes, dtype=np.float64)[ok]
    dialect = session.get_bind().dialect.name
    # Per lead: how many events and the highest id (index-only on (lead_id, occurred_at, id)),
    # and the events above the lead's last folded one with their times: a batch's leads have
    # ~10 events each and ~1 new, so the old events themselves are not read.
    counts = _raw_rows(
        session,
        f"SELECT lead_id, count(*), max(id) FROM activities WHERE lead_id IN ({id_list}) GROUP BY lead_id",
        {},
    )
    n_all = np.zeros(n, dtype=np.int64)
    all_last = np.zeros(n, dtype=np.int64)
    if counts:
        c = np.array(counts, dtype=np.int64).reshape(-1, 3)
        c_pos = np.searchsorted(want, c[:, 0])
        n_all[c_pos], all_last[c_pos] = c[:, 1], c[:, 2]
    pre: np.ndarray[Any, np.dtype[np.float64]] | None = None  # (lead, id, time, rule) matched ahead
    if new_events:
        ev, pre = _range_events(session, model, new_events)
        inside = want[np.minimum(np.searchsorted(want, ev[:, 0].astype(np.int64)), n - 1)] == ev[:, 0]
        ev = ev[inside]
    else:
        fresh = _raw_rows(
            session,
            f"SELECT act.lead_id, act.id, {_epoch_sql(dialect, 'act.occurred_at')} FROM activities act "
            f"LEFT JOIN lead_engagement g ON g.lead_id = act.lead_id "
            f"WHERE act.lead_id IN ({id_list}) AND act.id > COALESCE(g.last_event_id, 0)",
            {},
        )
        ev = np.array(fresh, dtype=np.float64).reshape(-1, 3) if fresh else np.zeros((0, 3))
    ev_pos = np.searchsorted(want, ev[:, 0].astype(np.int64))
    # A lead without a usable state folds nothing: all its new events are counted from 0.
    is_new = ev[:, 1].astype(np.int64) > last[ev_pos]
    ev, ev_pos = ev[is_new], ev_pos[is_new]
    n_new = np.bincount(ev_pos, minlength=n)
    top_new = np.zeros(n, dtype=np.int64)
    np.maximum.at(top_new, ev_pos, ev[:, 1].astype(np.int64))
    # The state and the new events must hold every event: as many, and the highest among them
    # (an event outside the ranges read, or moved in by a merge, makes the lead rebuild).
    fold = usable & (events + n_new == n_all) & (all_last == np.maximum(last, top_new))
    rebuild = ~fold & ((n_all > 0) | stored)
    changed = (fold & (n_new > 0)) | rebuild
    if rebuild.any():  # every event of the leads to rebuild (few: a state out of step)
        sub = want[rebuild].tolist()
        old = _raw_rows(
            session,
            f"SELECT lead_id, id, {_epoch_sql(dialect, 'occurred_at')} FROM activities "
            f"WHERE lead_id IN ({_id_list(sub)})",
            {},
        )
        ev_fold = ev[~rebuild[ev_pos]]
        ev = np.concatenate([ev_fold, np.array(old, dtype=np.float64).reshape(-1, 3)])
        ev_pos = np.searchsorted(want, ev[:, 0].astype(np.int64))
    ev_id = ev[:, 1].astype(np.int64)
    ev_t = ev[:, 2]

    def fold_in(
        lead_mask: np.ndarray[Any, np.dtype[np.bool_]], ev_mask: np.ndarray[Any, np.dtype[np.bool_]]
    ) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """Fold the events in ``ev_mask`` into the leads of ``lead_mask``; returns the leads with a
        late event (left as they were)."""

        needed = ev_id[ev_mask]
        if pre is not None and new_events:
            # The ranges' events were matched when read; the others (a rebuild's) are matched now.
            ahead = pre[np.isin(pre[:, 1].astype(np.int64), needed)]
            read = np.zeros(len(needed), dtype=np.bool_)
            for a, b in new_events:
                read |= (needed >= a) & (needed <= b)
            q_lead, q_rule, q_t = _matched_events(session, model, needed[~read].tolist())
            m_lead = np.concatenate([ahead[:, 0].astype(np.int64), q_lead])
            m_rule = np.concatenate([ahead[:, 3].astype(np.int64), q_rule])
            m_t = np.concatenate([ahead[:, 2], q_t])
        else:
            m_lead, m_rule, m_t = _matched_events(session, model, needed.tolist())
        pos = np.searchsorted(want, m_lead)
        sub = np.flatnonzero(lead_mask)
        local = np.full(n, -1, dtype=np.int64)
        local[sub] = np.arange(len(sub))
        new_state, new_ref, late = core.fold_batch(model, state[sub], ref[sub], local[pos], m_rule, m_t)
        state[sub], ref[sub] = new_state, new_ref
        out = np.zeros(n, dtype=np.bool_)
        out[sub[late]] = True
        return out

    # Leads to rebuild start from nothing; then one fold of every event needed (``ev`` holds the
    # new events of the leads that fold and every event of the leads to rebuild).
    state[rebuild] = core.empty_state(int(rebuild.sum()), k)
    ref[rebuild] = 0.0
    folding = (fold & (n_new > 0)) | rebuild
    late = fold_in(folding, folding[ev_pos])
    if late.any():  # an event for a cap period already closed: rebuild those from all events
        sub = want[late].tolist()
        old = _raw_rows(
            session,
            f"SELECT lead_id, id, {_epoch_sql(dialect, 'occurred_at')} FROM activities "
            f"WHERE lead_id IN ({_id_list(sub)})",
            {},
        )
        ev = np.concatenate([ev[~late[ev_pos]], np.array(old, dtype=np.float64).reshape(-1, 3)])
        ev_pos = np.searchsorted(want, ev[:, 0].astype(np.int64))
        ev_id = ev[:, 1].astype(np.int64)
        ev_t = ev[:, 2]
        state[late] = core.empty_state(int(late.sum()), k)
        ref[late] = 0.0
        fold_in(late, late[ev_pos])
        rebuild |= late
    # Highest id (from the counts), latest time and count of the events folded.
    new_max = np.full(n, -np.inf)
    np.maximum.at(new_max, ev_pos, ev_t)
    max_at = np.where(rebuild, new_max, np.maximum(max_at, new_max))
    last = np.where(rebuild, all_last, np.maximum(last, all_last))
    events = np.where(rebuild, n_all, events + n_new)
    out_rows = [
        (lid, key, float(ref[i]), int(events[i]), int(last[i]), float(max_at[i]), state[i].tobytes())
        for i, lid in zip(np.flatnonzero(changed).tolist(), want[changed].tolist(), strict=True)
    ]
    _upsert_states(session, out_rows)
    return state, ref, max_at, events, last, stored | (n_all > 0)


def _upsert_states(session: Session, rows: list[tuple[Any, ...]]) -> None:
    if not rows:
        return
    columns = ("lead_id", *_STATE_COLUMNS)
    update = ", ".join(f"{c} = excluded.{c}" for c in _STATE_COLUMNS)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text(
                "CREATE TEMP TABLE IF NOT EXISTS engagement_in (lead_id integer, ruleset text, ref float8, "
                "events integer, last_event_id integer, max_at float8, state bytea) ON COMMIT DELETE ROWS"
            )
        )
        _copy(session, "engagement_in", columns, rows)
        session.execute(
            text(
                f"INSERT INTO lead_engagement ({', '.join(columns)}) SELECT {', '.join(columns)} "
                f"FROM engagement_in ON CONFLICT (lead_id) DO UPDATE SET {update}"
            )
        )
        session.execute(text("DELETE FROM engagement_in"))
        return
    _executemany(
        session,
        f"INSERT INTO lead_engagement ({', '.join(columns)}) VALUES (?, ?, ?, ?, ?, ?, ?) "
        f"ON CONFLICT (lead_id) DO UPDATE SET {update}",
        rows,
    )


def _engagement_from_states(
    session: Session,
    model: core.ScoringModel,
    ids: Sequence[int],
    states: Mapping[int, _LeadState],
    as_of: datetime,
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Points per (lead, rule) at ``as_of``: from the states, and from the events for the few
    leads with events dated after ``as_of`` (those count undecayed, which a state cannot say)."""

    n_rules = len(model.engagement.rules)
    n = len(ids)
    state = core.empty_state(n, n_rules)
    ref = np.zeros(n, dtype=np.float64)
    max_at = np.full(n, -np.inf)
    for i, lid in enumerate(ids):
        st = states.get(lid)
        if st is not None:
            state[i], ref[i], max_at[i] = st.state, st.ref, st.max_at
    return _engagement_from_arrays(session, model, ids, state, ref, max_at, as_of)


def _engagement_from_arrays(
    session: Session,
    model: core.ScoringModel,
    ids: Sequence[int],
    state: np.ndarray[Any, np.dtype[np.float64]],
    ref: np.ndarray[Any, np.dtype[np.float64]],
    max_at: np.ndarray[Any, np.dtype[np.float64]],
    as_of: datetime,
) -> np.ndarray[Any, np.dtype[np.float64]]:
    eng = core.engagement_points_from_state(model, state, ref, as_of)
    ahead = np.flatnonzero(max_at > as_of.timestamp()).tolist()
    if ahead and len(model.engagement.rules):
        sub = [ids[i] for i in ahead]
        eng[ahead] = _engagement_matrix(session, model, sub, f"act.lead_id IN ({_id_list(sub)})", {}, as_of)
    return eng


def _state_arrays(
    session: Session,
    model: core.ScoringModel,
    key: str,
    ids: Sequence[int],
    where: str,
    params: Mapping[str, Any],
) -> tuple[
    np.ndarray[Any, np.dtype[np.float64]],
    np.ndarray[Any, np.dtype[np.float64]],
    np.ndarray[Any, np.dtype[np.float64]],
]:
    """The stored states of ``ids`` (sorted; ``where`` selects a superset of their rows) as arrays
    aligned with ``ids``: state, ref, max_at. Vectorized: no object per lead. A row out of step
    (another ruleset) is refreshed from the events."""

    n = len(ids)
    if not len(model.engagement.rules) or not n:
        return (
            core.empty_state(n, len(model.engagement.rules)),
            np.zeros(n, dtype=np.float64),
            np.full(n, -np.inf),
        )
    read = _read_states(session, model, key, ids, where, params)
    stale = np.flatnonzero(read.other).tolist()
    if stale:
        fresh = refresh_states(session, model, [ids[i] for i in stale])
        for i in stale:
            st = fresh.get(ids[i])
            if st is not None:
                read.state[i], read.ref[i], read.max_at[i] = st.state, st.ref, st.max_at
    return read.state, read.ref, read.max_at


@dataclass(frozen=True)
class _Build:
    """Every lead's engagement state as of one pass over the events (a full rescore after the
    engagement rules changed): matching events grouped by (lead, rule, period), and per lead the
    count, highest id and latest time of all its events, both sorted by lead."""

    ref: float
    g_lead: np.ndarray[Any, np.dtype[np.int64]]
    g_rule: np.ndarray[Any, np.dtype[np.int64]]
    g_period: np.ndarray[Any, np.dtype[np.float64]]
    g_count: np.ndarray[Any, np.dtype[np.float64]]
    g_sum: np.ndarray[Any, np.dtype[np.float64]]
    s_lead: np.ndarray[Any, np.dtype[np.int64]]
    s_events: np.ndarray[Any, np.dtype[np.int64]]
    s_last: np.ndarray[Any, np.dtype[np.int64]]
    s_max_at: np.ndarray[Any, np.dtype[np.float64]]

    def counts_for(
        self, ids: Sequence[int]
    ) -> tuple[np.ndarray[Any, np.dtype[np.int64]], np.ndarray[Any, np.dtype[np.int64]]]:
        """Per lead of ``ids``: how many events the pass saw, and the highest id (0 and 0: none)."""

        return _aligned(ids, self.s_lead, self.s_events, self.s_last)

    def states_for(self, model: core.ScoringModel, key: str, ids: Sequence[int]) -> dict[int, _LeadState]:
        if not len(ids):
            return {}
        lo, hi = int(min(ids)), int(max(ids))
        a, b = np.searchsorted(self.g_lead, [lo, hi + 1])
        c, d = np.searchsorted(self.s_lead, [lo, hi + 1])
        wanted = np.asarray(sorted(ids), dtype=np.int64)
        s_lead = self.s_lead[c:d]
        keep = np.isin(s_lead, wanted)
        leads = s_lead[keep]
        g_lead = self.g_lead[a:b]
        gk = np.isin(g_lead, leads)
        state = core.state_from_groups(
            model,
            np.searchsorted(leads, g_lead[gk]),
            self.g_rule[a:b][gk],
            self.g_period[a:b][gk],
            self.g_count[a:b][gk],
            self.g_sum[a:b][gk],
            len(leads),
        )
        out: dict[int, _LeadState] = {}
        for i, (lid, n, last, max_at) in enumerate(
            zip(
                leads.tolist(),
                self.s_events[c:d][keep].tolist(),
                self.s_last[c:d][keep].tolist(),
                self.s_max_at[c:d][keep].tolist(),
                strict=True,
            )
        ):
            out[lid] = _LeadState(key, self.ref, n, last, max_at, state[i])
        return out


def _aligned(
    ids: Sequence[int],
    leads: np.ndarray[Any, np.dtype[np.int64]],
    events: np.ndarray[Any, np.dtype[np.int64]],
    last: np.ndarray[Any, np.dtype[np.int64]],
) -> tuple[np.ndarray[Any, np.dtype[np.int64]], np.ndarray[Any, np.dtype[np.int64]]]:
    """``events`` and ``last`` (given per lead of the sorted ``leads``) aligned with ``ids``."""

    want = np.asarray(ids, dtype=np.int64)
    n_out = np.zeros(len(want), dtype=np.int64)
    last_out = np.zeros(len(want), dtype=np.int64)
    if len(leads) and len(want):
        pos = np.minimum(np.searchsorted(leads, want), len(leads) - 1)
        hit = leads[pos] == want
        n_out[hit] = events[pos[hit]]
        last_out[hit] = last[pos[hit]]
    return n_out, last_out


def _event_counts(
    session: Session, where: str, params: Mapping[str, Any]
) -> tuple[
    np.ndarray[Any, np.dtype[np.int64]],
    np.ndarray[Any, np.dtype[np.int64]],
    np.ndarray[Any, np.dtype[np.int64]],
]:
    """Per lead with events in ``where`` (on ``lead_id``), sorted by lead: the number of its
    events and the highest id, now (an index-only scan of (lead_id, occurred_at, id))."""

    rows = _raw_rows(
        session, f"SELECT lead_id, count(*), max(id) FROM activities WHERE {where} GROUP BY lead_id", params
    )
    if not rows:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy(), empty.copy()
    arr = np.array(rows, dtype=np.int64).reshape(-1, 3)
    arr = arr[np.argsort(arr[:, 0], kind="stable")]
    return arr[:, 0], arr[:, 1], arr[:, 2]


def _build_states(session: Session, model: core.ScoringModel, as_of: datetime) -> _Build:
    """One pass over all events, one statement (one snapshot on both databases): each event joins
    the rules for its type, with its cap period and ``2 ** ((t - ref) / half-life)``; a second
    branch counts every lead's events. Grouping happens in NumPy (no SQL sort of the events)."""

    dialect = session.get_bind().dialect.name
    rules = model.engagement.rules
    # ref: the latest event or now, so that every term is at most 1 (no overflow, however small
    # the half-life).
    latest = [
        session.scalar(select(func.max(Activity.occurred_at)).where(Activity.type == t))
        for t in sorted({r.event for r in rules})
    ]
    ref = max([as_of.timestamp(), *(t.timestamp() for t in latest if t is not None)])
    params: dict[str, Any] = {"ref": ref}
    epoch = _epoch_sql(dialect)
    values, match = _rules_sql(model, dialect, params) if rules else ("(0, '')", "FALSE")
    terms, periods = [], []
    for j, rule in enumerate(rules):
        hl = model.half_life(rule)
        if hl is not None:
            terms.append(f"WHEN {j} THEN power(2.0, (e.ep - :ref) / {float(hl) * core.DAY!r})")
        if rule.cap:
            periods.append(f"WHEN {j} THEN floor(e.ep / {float(rule.cap.days) * core.DAY!r})")
    term = f"(CASE r.idx {' '.join(terms)} ELSE 1.0 END)" if terms else "1.0"
    period = f"(CASE r.idx {' '.join(periods)} ELSE 0 END)" if periods else "0"
    scan = " NOT INDEXED" if dialect == "sqlite" else ""
    sql = (
        f"WITH r(idx, type) AS (VALUES {values}) "
        f"SELECT e.lead_id, r.idx, {period}, {term}, 0 FROM ("
        f"SELECT act.lead_id AS lead_id, act.type AS type, act.properties AS properties, {epoch} AS ep "
        f"FROM activities act{scan}) e CROSS JOIN r "
        f"WHERE r.type = e.type AND {match.replace('act.properties', 'e.properties')} "
        "UNION ALL "
        f"SELECT act.lead_id, -1, act.n, act.last_id, {_epoch_sql(dialect)} FROM ("
        "SELECT lead_id, count(*) AS n, max(id) AS last_id, max(occurred_at) AS occurred_at "
        "FROM activities GROUP BY lead_id) act"
    )
    conn = session.connection()
    raw: Any = conn.connection.driver_connection
    if dialect == "postgresql":
        sql = _NAMED.sub(r"%(\1)s", sql.replace("%", "%%"))
        cur = raw.cursor(name="lf_engagement_build")  # server-side: rows stream in batches
    else:
        cur = raw.cursor()
    chunks: list[np.ndarray[Any, np.dtype[np.float64]]] = []
    try:
        cur.execute(sql, params)
        while True:
            rows = cur.fetchmany(500_000)
            if not rows:
                break
            chunks.append(np.array(rows, dtype=np.float64).reshape(-1, 5))
    finally:
        cur.close()
    arr = np.concatenate(chunks) if chunks else np.zeros((0, 5), dtype=np.float64)
    del chunks
    is_stat = arr[:, 1] < 0
    stats = arr[is_stat]
    groups = arr[~is_stat]
    del arr
    s_order = np.argsort(stats[:, 0], kind="stable")
    stats = stats[s_order]
    lead = groups[:, 0].astype(np.int64)
    rule_ix = groups[:, 1].astype(np.int64)
    order = np.lexsort((groups[:, 2], rule_ix, lead))
    lead, rule_ix, per, term_v = lead[order], rule_ix[order], groups[order, 2], groups[order, 3]
    del groups
    if len(lead):
        start = np.ones(len(lead), dtype=np.bool_)
        start[1:] = (lead[1:] != lead[:-1]) | (rule_ix[1:] != rule_ix[:-1]) | (per[1:] != per[:-1])
        idx = np.flatnonzero(start)
        count = np.diff(np.append(idx, len(lead))).astype(np.float64)
        sums = np.add.reduceat(term_v, idx)
        lead, rule_ix, per = lead[idx], rule_ix[idx], per[idx]
    else:
        count = sums = np.zeros(0, dtype=np.float64)
    return _Build(
        ref,
        lead,
        rule_ix,
        per,
        count,
        sums,
        stats[:, 0].astype(np.int64),
        stats[:, 2].astype(np.int64),
        stats[:, 3].astype(np.int64),
        stats[:, 4],
    )


def _states_consistent(session: Session, key: str) -> bool:
    """Whether the stored states hold every event: the counts add up and no state is missing
    or of another ruleset (events stored while incremental scoring was not running, a merge, a
    model change without a rescore would show here)."""

    # One statement: one snapshot of both tables (SQLite reads outside a write transaction see
    # the newest data statement by statement). The count and the highest id in subqueries of
    # their own: SQLite counts a table's rows from its B-tree pages only in a bare count(*)
    # (0.2 s at 10M events; with max(id) beside it, a scan of every index entry: 1.4 s).
    n_events, last, folded, folded_last, other = session.execute(
        text(
            "SELECT a.n, a.last, le.n, le.last, le.other FROM "
            "(SELECT (SELECT count(*) FROM activities) AS n, (SELECT max(id) FROM activities) AS last) a, "
            "(SELECT sum(events) AS n, max(last_event_id) AS last, "
            "sum(CASE WHEN ruleset = :k THEN 0 ELSE 1 END) AS other FROM lead_engagement) le"
        ),
        {"k": key},
    ).one()
    return int(n_events or 0) == int(folded or 0) and int(last or 0) == int(folded_last or 0) and not other


def _states_from_build(
    session: Session,
    model: core.ScoringModel,
    key: str,
    build: _Build,
    ids: Sequence[int],
    where: str,
    params: Mapping[str, Any],
) -> dict[int, _LeadState]:
    """The engagement states of ``ids`` (under the leads' lock), stored: the pass over the events
    gives them, except for leads whose events changed since the pass (events committed after it,
    by ingest or by a merge): those are brought up to date from their stored state and events as
    the incremental path does. So a rebuild never writes a state that misses an event, whatever
    incremental update committed in between."""

    built_n, built_last = build.counts_for(ids)
    now_n, now_last = _aligned(ids, *_event_counts(session, where.format(col="lead_id"), params))
    moved = (built_n != now_n) | (built_last != now_last)
    states = build.states_for(model, key, [lid for lid, m in zip(ids, moved.tolist(), strict=True) if not m])
    _upsert_states(session, [st.row(lid) for lid, st in states.items()])
    if moved.any():
        stale = np.asarray(ids, dtype=np.int64)[moved].tolist()
        states.update(refresh_states(session, model, stale))
    return states


@dataclass
class RescoreResult:
    model_version: int
    leads: int = 0
    changed: int = 0  # leads whose score moved (by HISTORY_EPSILON or more) or is new
    written: int = 0  # scores written (a full rescore leaves moves that do not show alone)
    history: int = 0  # history points written
    crossings: int = 0
    actions: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    rebuilt: bool = False  # the engagement states were built from the events (full rescore)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase (full rescore)
    # Full rescore, SQLite: ranges written from what was read ahead, unchecked (nobody else
    # committed meanwhile).
    trusted_ranges: int = 0
    # Full rescore: leads whose stored fit score was carried forward (fit inputs unchanged, same
    # fit key) instead of computed from their attributes.
    fit_carried: int = 0
    # Full rescore with a second process: ranges the main process read itself while waiting.
    ranges_read_here: int = 0

    def timed(self, phase: str, since: float) -> float:
        now = time.perf_counter()
        self.timings[phase] = self.timings.get(phase, 0.0) + now - since
        return now

    def count(self, outcome: str) -> None:
        self.actions[outcome] = self.actions.get(outcome, 0) + 1


def _stamp(dialect: str, t: datetime) -> Any:
    # SQLite keeps naive UTC text (as UTCDateTime writes it); PostgreSQL takes the aware value.
    return sqlite_time(t) if dialect == "sqlite" else t


def _executemany(session: Session, sql: str, rows: list[tuple[Any, ...]]) -> None:
    """executemany with ``?`` placeholders and plain DBAPI values (bulk writes without per-row
    SQLAlchemy type processing); through the connection, so that the engine's events run (on
    SQLite: BEGIN IMMEDIATE before the first write)."""

    if not rows:
        return
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        sql = sql.replace("?", "%s")
    conn.exec_driver_sql(sql, rows)


_SCORE_COLUMNS = (
    "model_version",
    "fit",
    "engagement",
    "total",
    "grade",
    "explanation",
    "armed",
    "computed_at",
)


def _copy(session: Session, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
    """PostgreSQL COPY (much faster than executemany for thousands of rows)."""

    raw: Any = session.connection().connection.driver_connection
    with raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _upsert(session: Session, rows: list[tuple[Any, ...]]) -> None:
    """rows: (lead_id, model_version, fit, engagement, total, grade, explanation JSON text or None,
    armed JSON text, computed_at)."""

    if not rows:
        return
    update = ", ".join(f"{c} = excluded.{c}" for c in _SCORE_COLUMNS)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text(
                "CREATE TEMP TABLE IF NOT EXISTS scores_in (lead_id integer, model_version integer, "
                "fit float8, engagement float8, total float8, grade text, explanation jsonb, armed jsonb, "
                "computed_at timestamptz) ON COMMIT DELETE ROWS"
            )
        )
        _copy(session, "scores_in", ("lead_id", *_SCORE_COLUMNS), rows)
        session.execute(
            text(
                f"INSERT INTO lead_scores (lead_id, {', '.join(_SCORE_COLUMNS)}) "
                f"SELECT lead_id, {', '.join(_SCORE_COLUMNS)} FROM scores_in "
                f"ON CONFLICT (lead_id) DO UPDATE SET {update}"
            )
        )
        session.execute(text("DELETE FROM scores_in"))
        return
    _executemany(
        session,
        f"INSERT INTO lead_scores (lead_id, {', '.join(_SCORE_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
        f"ON CONFLICT (lead_id) DO UPDATE SET {update}",
        rows,
    )


def _insert_history(session: Session, rows: list[tuple[Any, ...]]) -> None:
    columns = ("lead_id", "at", "fit", "engagement", "total", "model_version")
    if not rows:
        return
    if session.get_bind().dialect.name == "postgresql":
        _copy(session, "score_history", columns, rows)
    else:
        _executemany(
            session, f"INSERT INTO score_history ({', '.join(columns)}) VALUES (?, ?, ?, ?, ?, ?)", rows
        )


# PostgreSQL: writers of scores and engagement states lock the leads they write by id block
# (transaction-scoped advisory locks, taken in ascending order, so two writers never deadlock on
# them): an incremental update and a full rescore's chunk never interleave for one lead, also for
# leads that have no score or state row yet (a row lock cannot cover a row that does not exist).
# SQLite: any write takes the database write lock.
LOCK_NAMESPACE = 0x5C0E
LOCK_BLOCK_BITS = 14  # 16,384 lead ids per lock: a 1M-lead database has 62 of them


def _lock_leads(session: Session, ids: Sequence[int] = (), span: tuple[int, int] | None = None) -> None:
    """Serialize writers of these leads' scores and engagement states (``ids``, or the id range
    ``span`` = [lo, hi)); reads after this see what the previous writer committed."""

    if session.get_bind().dialect.name == "postgresql":
        blocks = {int(i) >> LOCK_BLOCK_BITS for i in ids}
        if span is not None and span[1] > span[0]:
            blocks.update(range(span[0] >> LOCK_BLOCK_BITS, ((span[1] - 1) >> LOCK_BLOCK_BITS) + 1))
        for block in sorted(blocks):
            session.execute(text("SELECT pg_advisory_xact_lock(:ns, :b)"), {"ns": LOCK_NAMESPACE, "b": block})
    else:  # a write statement takes the lock even when it changes no row
        session.execute(text("UPDATE lead_scores SET model_version = model_version WHERE 0"))


@dataclass
class _Previous:
    """The stored scores of some leads, aligned with their ids (found: a score exists)."""

    found: np.ndarray[Any, np.dtype[np.bool_]]
    fit: np.ndarray[Any, np.dtype[np.float64]]
    engagement: np.ndarray[Any, np.dtype[np.float64]]
    total: np.ndarray[Any, np.dtype[np.float64]]
    armed: np.ndarray[Any, np.dtype[np.bool_]]  # leads x thresholds (never seen: armed)
    version: np.ndarray[Any, np.dtype[np.int64]]
    grade: np.ndarray[Any, np.dtype[np.object_]]
    # The stored armed state names exactly the model's thresholds (else it is rewritten).
    armed_exact: np.ndarray[Any, np.dtype[np.bool_]]

    def take(self, keep: np.ndarray[Any, np.dtype[np.bool_]]) -> _Previous:
        return _Previous(*(getattr(self, f)[keep] for f in _PREVIOUS_FIELDS))


_PREVIOUS_FIELDS = ("found", "fit", "engagement", "total", "armed", "version", "grade", "armed_exact")


def _previous(
    session: Session,
    ids: Sequence[int],
    tids: Sequence[str],
    span: tuple[int, int] | None = None,
) -> _Previous:
    """The stored scores of ``ids``; ``span`` = [lo, hi) (the full rescore's chunk, a superset of
    ``ids``): read with one range scan instead of lists of ids."""

    n = len(ids)
    out = _Previous(
        np.zeros(n, dtype=np.bool_),
        np.zeros(n),
        np.zeros(n),
        np.zeros(n),
        np.ones((n, len(tids)), dtype=np.bool_),
        np.full(n, -1, dtype=np.int64),
        np.full(n, None, dtype=object),
        np.zeros(n, dtype=np.bool_),
    )
    if not n:
        return out
    want = np.asarray(ids, dtype=np.int64)
    order = np.argsort(want, kind="stable")
    parsed: dict[Any, int] = {}  # distinct armed values (a handful) -> row of ``table``
    table: list[list[bool]] = []
    exact: list[bool] = []

    def code_of(a: Any) -> int:
        key = tuple(sorted(a.items())) if isinstance(a, dict) else a
        code = parsed.get(key)
        if code is None:
            value = a if isinstance(a, dict) or a is None else json.loads(a)
            value = value or {}
            code = parsed[key] = len(table)
            table.append([bool(value.get(t, True)) for t in tids])
            exact.append(a is not None and set(value) == set(tids))
        return code

    select_sql = "SELECT lead_id, fit, engagement, total, armed, model_version, grade FROM lead_scores "
    if span is not None:
        parts = [(f"{select_sql} WHERE lead_id >= :lo AND lead_id < :hi", {"lo": span[0], "hi": span[1]})]
    else:
        parts = [
            (f"{select_sql} WHERE lead_id IN ({_id_list(ids[start : start + 30_000])})", {})
            for start in range(0, n, 30_000)
        ]
    for sql, params in parts:
        rows = _raw_rows(session, sql, params)
        if not rows:
            continue
        lid_arr = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        found_at = np.minimum(np.searchsorted(want, lid_arr, sorter=order), n - 1)
        wanted = want[order[found_at]] == lid_arr
        if not wanted.all():  # the range holds leads not asked for (merged, scored since)
            rows = list(itertools.compress(rows, wanted.tolist()))
            if not rows:
                continue
            found_at = found_at[wanted]
        _, fit, eng, total, armed, version, grade = zip(*rows, strict=True)
        pos = order[found_at]
        if not any(issubclass(k, dict) for k in set(map(type, armed))):  # (types at C speed)
            # JSON text (SQLite): a handful of distinct values, mapped at C speed.
            distinct = {a: code_of(a) for a in dict.fromkeys(armed)}
            codes = np.fromiter(map(distinct.__getitem__, armed), dtype=np.int64, count=len(armed))
        else:
            codes = np.fromiter(map(code_of, armed), dtype=np.int64, count=len(armed))
        out.found[pos] = True
        out.fit[pos] = np.asarray(fit, dtype=np.float64)
        out.engagement[pos] = np.asarray(eng, dtype=np.float64)
        out.total[pos] = np.asarray(total, dtype=np.float64)
        out.version[pos] = np.asarray(version, dtype=np.int64)
        out.grade[pos] = np.asarray(grade, dtype=object)
        out.armed_exact[pos] = np.asarray(exact, dtype=np.bool_)[codes]
        if tids:
            out.armed[pos] = np.asarray(table, dtype=np.bool_).reshape(-1, len(tids))[codes]
    return out


def _act(
    session: Session,
    active: ActiveModel,
    crossings: Sequence[tuple[int, core.Threshold, float]],
    now: datetime,
    result: RescoreResult,
) -> list[dict[str, Any]]:
    """Carry out the crossings' actions (in order: lead, then threshold); returns the
    threshold_firings rows. The moves to MQL of all these leads go first, together
    (:func:`_moves_to_mql`), so that the other actions see each lead after its move (as one lead
    at a time would: the move is the first action of its threshold)."""

    leads_by_id = {
        lead.id: lead
        for lead in session.scalars(select(Lead).where(Lead.id.in_(sorted({c[0] for c in crossings}))))
    }
    mql = _moves_to_mql(
        session,
        active,
        [
            (leads_by_id[lid], t, value)
            for lid, t, value in crossings
            if lid in leads_by_id and any(isinstance(a, core.MoveToMql) for a in t.actions)
        ],
    )
    rows: list[dict[str, Any]] = []
    for lead_id, threshold, value in crossings:
        result.crossings += 1
        lead = leads_by_id.get(lead_id)
        if lead is None:
            continue
        rows += _apply_actions(session, active, lead, threshold, value, now, result, mql)
    return rows


def _apply_actions(
    session: Session,
    active: ActiveModel,
    lead: Lead,
    threshold: core.Threshold,
    value: float,
    now: datetime,
    result: RescoreResult,
    mql: Mapping[tuple[int, str], tuple[str, str | None]],
) -> list[dict[str, Any]]:
    """One crossing's actions (the move to MQL already made: ``mql`` has its outcome)."""

    lead_id = lead.id
    rows: list[dict[str, Any]] = []
    base = {"lead_id": lead_id, "threshold_id": threshold.id, "model_version": active.version, "score": value}
    emit(
        session,
        "scoring.threshold_crossed",
        lead_id=lead_id,
        threshold_id=threshold.id,
        score=value,
        at=threshold.at,
        model_version=active.version,
    )
    for action in threshold.actions:
        payload: dict[str, Any] = action.model_dump(mode="json")
        outcome, detail = "emitted", None
        if isinstance(action, core.MoveToMql):
            outcome, detail = mql[(lead_id, threshold.id)]
        elif lead.stage in QUIET_STAGES:
            outcome, detail = "skipped", f"the lead is {lead.stage}: no follow-up"
        elif isinstance(action, core.CreateTask):
            due = now + timedelta(hours=action.due_in_hours)
            payload.update(owner_id=lead.owner_id, due_at=due.isoformat())
            emit(
                session,
                "scoring.task_requested",
                lead_id=lead_id,
                owner_id=lead.owner_id,
                task=action.task,
                title=action.title or threshold.label or threshold.id,
                due_at=due,
                threshold_id=threshold.id,
            )
            detail = "task requested from the cadences feature" + (
                "" if lead.owner_id else " (lead has no owner)"
            )
        elif isinstance(action, core.EnrollSequence):
            emit(
                session,
                "scoring.sequence_enrollment_requested",
                lead_id=lead_id,
                sequence=action.sequence,
                threshold_id=threshold.id,
            )
            detail = f"enrollment in sequence {action.sequence} requested from the cadences feature"
        elif isinstance(action, core.Webhook):
            # The delivery row is written in this transaction (an outbox): the worker sends it.
            delivery = webhooks.enqueue_threshold(
                session, lead, threshold, value, active.version, action, now
            )
            outcome, detail = "queued", f"webhook delivery {delivery.id} queued"
            payload["delivery_id"] = delivery.id
            emit(
                session,
                "scoring.webhook_requested",
                lead_id=lead_id,
                url=action.url,
                secret_env=action.secret_env,
                threshold_id=threshold.id,
                score=value,
                delivery_id=delivery.id,
            )
        result.count(outcome)
        rows.append(
            {
                **base,
                "action": action.type,
                "outcome": outcome,
                "detail": detail,
                "at": now,
                "payload": payload,
            }
        )
    return rows


def _moves_to_mql(
    session: Session, active: ActiveModel, wanted: Sequence[tuple[Lead, core.Threshold, float]]
) -> dict[tuple[int, str], tuple[str, str | None]]:
    """Move these leads to MQL, set-based (:func:`leadflow.leads.service.transition_many`: one
    stage change, audit entry and ``lead.stage_changed`` per lead); the outcome and detail per
    (lead, threshold). Leads for whom the move is not legal are skipped with the reason. Should
    the set-based move fail (a lead changed meanwhile, an in-transaction subscriber refusing
    one), it is undone and the leads move one at a time, each in its own savepoint."""

    out: dict[tuple[int, str], tuple[str, str | None]] = {}
    batch: list[tuple[Lead, core.Threshold, float]] = []
    moving: set[int] = set()
    for lead, threshold, value in wanted:
        current = Stage(lead.stage)
        if lead.merged_into_id is not None:
            out[(lead.id, threshold.id)] = ("skipped", f"lead was merged into lead {lead.merged_into_id}")
        elif lead.origin == Origin.SALES.value:
            out[(lead.id, threshold.id)] = ("skipped", "sales-sourced leads skip the MQL step")
        elif lead.id in moving or Stage.MQL not in lifecycle.legal_targets(current, Origin(lead.origin)):
            stage = Stage.MQL.value if lead.id in moving else current.value
            out[(lead.id, threshold.id)] = ("skipped", f"moving from {stage} to mql is not a legal move")
        else:
            moving.add(lead.id)
            batch.append((lead, threshold, value))
    if not batch:
        return out
    moves = [
        (
            lead,
            lifecycle.ScoreThreshold(score=value, threshold=threshold.at, model_version=str(active.version)),
            f"score {value:.1f} reached {threshold.at:g} ({threshold.label or threshold.id})",
        )
        for lead, threshold, value in batch
    ]
    before = {lead.id: lead.stage for lead, _, _ in batch}
    try:
        with session.begin_nested():
            leads.transition_many(session, SCORING_ACTOR, moves, Stage.MQL)
    except (lifecycle.LifecycleError, InvalidInput, Forbidden, Conflict):
        for lead, _, _ in batch:
            session.expire(lead)
        for lead, threshold, value in batch:
            out[(lead.id, threshold.id)] = _move_to_mql(session, active, lead, threshold, value)
        return out
    for lead, threshold, _ in batch:
        out[(lead.id, threshold.id)] = ("done", f"moved from {before[lead.id]} to mql")
    return out


def _move_to_mql(
    session: Session, active: ActiveModel, lead: Lead, threshold: core.Threshold, value: float
) -> tuple[str, str | None]:
    current = Stage(lead.stage)
    if lead.merged_into_id is not None:
        return "skipped", f"lead was merged into lead {lead.merged_into_id}"
    if lead.origin == Origin.SALES.value:
        return "skipped", "sales-sourced leads skip the MQL step"
    if Stage.MQL not in lifecycle.legal_targets(current, Origin(lead.origin)):
        return "skipped", f"moving from {current.value} to mql is not a legal move"
    evidence = lifecycle.ScoreThreshold(
        score=value, threshold=threshold.at, model_version=str(active.version)
    )
    try:
        with session.begin_nested():
            leads.transition_lead(
                session,
                SCORING_ACTOR,
                lead.id,
                Stage.MQL,
                evidence=evidence,
                reason=f"score {value:.1f} reached {threshold.at:g} ({threshold.label or threshold.id})",
            )
    except (lifecycle.LifecycleError, InvalidInput, Forbidden) as exc:
        return "skipped", getattr(exc, "message", str(exc))
    return "done", f"moved from {current.value} to mql"


def _shown(x: np.ndarray[Any, np.dtype[np.float64]]) -> np.ndarray[Any, np.dtype[np.float64]]:
    """A score as the UI shows it: a whole number (half up)."""

    shown: np.ndarray[Any, np.dtype[np.float64]] = np.floor(x + 0.5)
    return shown


def _changes_as_shown(
    prev: _Previous, arrays: core.ScoreArrays, new_armed: np.ndarray[Any, np.dtype[np.bool_]]
) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Which leads' scores change as shown: another whole number of total or engagement, fit
    moved (fit does not decay), another grade, a threshold fired or re-armed. Under the model
    version that computed the stored score, a full rescore writes a history point (of the leads
    that moved) and the score row only for these: the nightly decay refresh otherwise wrote a
    point per lead per day (365 million rows a year at a million leads), most a fraction of a
    point from the one before. A new model version records every moved lead (docs/scoring.md,
    "Explanations and history")."""

    shown: np.ndarray[Any, np.dtype[np.bool_]] = (
        (np.abs(prev.fit - arrays.fit) >= HISTORY_EPSILON)
        | (_shown(prev.total) != _shown(arrays.total))
        | (_shown(prev.engagement) != _shown(arrays.engagement))
        | (prev.grade != arrays.grade)
        | (prev.armed != new_armed).any(axis=1)
    )
    return shown


def _write(
    session: Session,
    active: ActiveModel,
    ids: Sequence[int],
    arrays: core.ScoreArrays,
    explanations: Sequence[Any] | None,
    now: datetime,
    result: RescoreResult,
    fire: bool,
    *,
    span: tuple[int, int] | None = None,
    drift_history: bool = False,
    prev: _Previous | None = None,
) -> None:
    """Store scores, history and armed state for ``ids`` and act on threshold crossings.
    ``span``: the id range holding ``ids`` (read the stored scores by range). ``drift_history``
    (the full rescore): under the same model version, a history point only when the score as
    shown moves (:func:`_changes_as_shown`). ``prev``: the stored scores of ``ids`` when the caller
    knows them still current (the full rescore's read-ahead)."""

    model = active.model
    tids = [t.id for t in model.thresholds]
    if prev is None:
        prev = _previous(session, ids, tids, span)
    fired, new_armed = core.thresholds_step(model, arrays.as_mapping(), prev.armed)
    if not fire:
        # A silent rescore still moves the armed state, so nothing fires later for an old crossing.
        fired[:] = False
    # The armed state as JSON text: one per distinct combination (a handful), shared by the rows.
    if tids:
        if len(tids) < 63:  # each row as the bits of one integer: np.unique(axis=0) sorts far slower
            bits = np.left_shift(1, np.arange(len(tids), dtype=np.int64))
            packed, combo_of = np.unique(new_armed.astype(np.int64) @ bits, return_inverse=True)
            combos = (packed[:, None] & bits) != 0
        else:
            combos, combo_of = np.unique(new_armed, axis=0, return_inverse=True)
        texts = [json.dumps(dict(zip(tids, map(bool, c), strict=True))) for c in combos.tolist()]
        armed_text = [texts[i] for i in combo_of.reshape(-1).tolist()]
    else:
        armed_text = ["{}"] * len(ids)
    dialect = session.get_bind().dialect.name
    stamp = _stamp(dialect, now)
    n = len(ids)
    fit, eng, total = arrays.fit.tolist(), arrays.engagement.tolist(), arrays.total.tolist()
    moved = ~prev.found | (
        (np.abs(prev.fit - arrays.fit) >= HISTORY_EPSILON)
        | (np.abs(prev.engagement - arrays.engagement) >= HISTORY_EPSILON)
        | (np.abs(prev.total - arrays.total) >= HISTORY_EPSILON)
    )
    kept_version = prev.found & (prev.version == active.version)
    shown = _changes_as_shown(prev, arrays, new_armed) if drift_history else None
    points = moved if shown is None else moved & (~kept_version | shown)
    point_at = np.flatnonzero(points).tolist()
    # A score that is exactly what is stored (same model version, values, grade and armed state)
    # is not written again: a rescore that changes nothing writes nothing.
    same = (
        kept_version
        & (prev.fit == arrays.fit)
        & (prev.engagement == arrays.engagement)
        & (prev.total == arrays.total)
        & (prev.grade == arrays.grade)
        & prev.armed_exact
        & (prev.armed == new_armed).all(axis=1)
    )
    write = ~same if explanations is None else np.ones(n, dtype=np.bool_)
    if shown is not None:
        # The full rescore under the model version that computed the stored score (the nightly
        # decay refresh): a score is written when it changes as shown (the test for a history
        # point), not for a fraction of a point of decay. What is stored then shows what a
        # recomputation shows, and thresholds act on the computed values; the stored fraction
        # lags by less than half a point until the shown number moves (docs/scoring.md,
        # "Stored scores in a full rescore"). At a million leads, two thirds of a night's
        # moves are such fractions.
        write &= ~kept_version | ~prev.armed_exact | shown
    # SQLite: a stored score whose fit stays (the nightly decay refresh, a model change that
    # keeps the fit rules, most incremental updates) gets an UPDATE of the columns that can move
    # instead of an upsert of every column (a third less CPU per row: one lookup instead of an
    # insert attempt and its conflict); under the same version, grade and version stay too.
    narrow = (
        write & prev.found & (prev.fit == arrays.fit)
        if explanations is None and dialect == "sqlite"
        else np.zeros(n, dtype=np.bool_)
    )
    narrowest = narrow & kept_version & (prev.grade == arrays.grade)
    grade = arrays.grade.tolist()
    expl = [json.dumps(e) for e in explanations] if explanations is not None else itertools.repeat(None, n)
    rows = zip(
        ids,
        itertools.repeat(active.version, n),
        fit,
        eng,
        total,
        grade,
        expl,
        armed_text,
        itertools.repeat(stamp, n),
        strict=False,
    )
    wide = write & ~narrow
    _upsert(session, list(rows) if wide.all() else list(itertools.compress(rows, wide.tolist())))
    _executemany(
        session,
        "UPDATE lead_scores SET engagement = ?2, total = ?3, armed = ?4, computed_at = ?5, "
        "explanation = NULL WHERE lead_id = ?1",
        list(
            itertools.compress(
                zip(ids, eng, total, armed_text, itertools.repeat(stamp, n), strict=False),
                narrowest.tolist(),
            )
        ),
    )
    _executemany(
        session,
        "UPDATE lead_scores SET model_version = ?2, engagement = ?3, total = ?4, grade = ?5, armed = ?6, "
        "computed_at = ?7, explanation = NULL WHERE lead_id = ?1",
        list(
            itertools.compress(
                zip(
                    ids,
                    itertools.repeat(active.version, n),
                    eng,
                    total,
                    grade,
                    armed_text,
                    itertools.repeat(stamp, n),
                    strict=False,
                ),
                (narrow & ~narrowest).tolist(),
            )
        ),
    )
    if dialect == "sqlite" and point_at and not (points & ~write).any():
        # Each point's values are those just written to its lead's score row (a point needs a
        # move, and a move is written): copied in SQL instead of binding six values per row
        # again (~15% of the insert's time; a model change writes a million points).
        session.connection().exec_driver_sql(
            "INSERT INTO score_history (lead_id, at, fit, engagement, total, model_version) "
            "SELECT lead_id, computed_at, fit, engagement, total, model_version FROM lead_scores "
            f"WHERE lead_id IN ({_id_list([ids[i] for i in point_at])})"
        )
    else:
        _insert_history(
            session, [(ids[i], stamp, fit[i], eng[i], total[i], active.version) for i in point_at]
        )
    result.leads += n
    result.changed += int(moved.sum())
    result.written += int(write.sum())
    result.history += len(point_at)
    crossings = [
        (
            ids[int(i)],
            model.thresholds[int(j)],
            float(arrays.as_mapping()[model.thresholds[int(j)].score][int(i)]),
        )
        for i, j in zip(*np.nonzero(fired), strict=True)
    ]
    if crossings:
        firing_rows = _act(session, active, crossings, now, result)
        if firing_rows:
            session.execute(insert(ThresholdFiring), firing_rows)


# ---------------------------------------------------------------------------------------------
# Incremental path
# ---------------------------------------------------------------------------------------------


def score_one(
    session: Session, active: ActiveModel, lead_id: int, as_of: datetime
) -> tuple[core.LeadScore, list[core.EventRecord]] | None:
    attrs = lead_attributes(session, active.model, lead_id)
    if attrs is None:
        return None
    events = lead_events(session, lead_id)
    return core.score_lead(active.model, attrs, events, as_of), events


def rescore_leads(
    session: Session,
    lead_ids: Iterable[int],
    *,
    as_of: datetime | None = None,
    fire: bool = True,
    new_events: Sequence[tuple[int, int]] | None = None,
) -> RescoreResult:
    """Rescore the given leads now (the incremental path), inside the caller's transaction.
    ``new_events``: id ranges holding the events just stored for them (see :func:`refresh_arrays`)."""

    ids = sorted({int(i) for i in lead_ids})
    active = active_model(session)
    result = RescoreResult(active.version)
    if not ids:
        return result
    for start in range(0, len(ids), INCREMENTAL_BATCH):
        part = ids[start : start + INCREMENTAL_BATCH]
        _rescore_some(session, active, part, as_of, result, fire, new_events)
    return result


def _rescore_some(
    session: Session,
    active: ActiveModel,
    ids: Sequence[int],
    as_of: datetime | None,
    result: RescoreResult,
    fire: bool,
    new_events: Sequence[tuple[int, int]] | None = None,
) -> None:
    """The bulk computation restricted to a few leads (the same SQL and NumPy as a full rescore;
    :func:`score_one` and the explanation compute the same scores in Python)."""

    _lock_leads(session, ids)
    # The time is taken once the lock is held: of two writers of a lead, the later one also
    # computes for the later time (a full rescore keeps the scores computed after its start).
    now = as_of or utcnow()
    model = active.model
    want = np.asarray(ids, dtype=np.int64)
    prev = _previous(session, ids, [t.id for t in model.thresholds])
    # Fit carried, as in the full rescore: a lead scored under the active version whose fit
    # inputs did not change since (no fit_dirty mark) keeps its stored fit score, and its
    # attributes are not read. A merged-away lead is no longer scored (its mark may be gone).
    kept = prev.found & (prev.version == active.version)
    if kept.any():
        kept_list = _id_list(want[kept].tolist())
        marked = [
            r[0]
            for r in _raw_rows(session, f"SELECT lead_id FROM fit_dirty WHERE lead_id IN ({kept_list})", {})
        ]
        merged = [r[0] for r in _raw_rows(session, _merged_sql(session, kept_list), {})]
        if marked or merged:
            kept &= ~np.isin(want, np.asarray(marked + merged, dtype=np.int64))
    need = want[~kept].tolist()
    got, cols = (
        _attribute_columns(session, model, f"l.id IN ({_id_list(need)})", {})
        if need
        else ([], {name: np.empty(0, dtype=object) for name in core.fit_fields_needed(model)})
    )
    live = kept | np.isin(want, np.asarray(got, dtype=np.int64))
    gone = want[~live].tolist()  # merged away (their events moved to the winner) or deleted
    if gone:
        session.execute(text(f"DELETE FROM lead_engagement WHERE lead_id IN ({_id_list(gone)})"))
    if not live.any():
        return
    scored: list[int] = want[live].tolist()
    fit = np.zeros((len(scored), len(model.fit.rules)), dtype=np.float64)
    if got:
        fit[np.searchsorted(want[live], np.asarray(got, dtype=np.int64))] = core.fit_points_matrix(
            model, cols, len(got)
        )
    prev = prev.take(live)
    fit_scaled = np.where(kept[live], prev.fit, np.nan)
    result.fit_carried += int(kept.sum())
    state, ref, max_at, *_ = refresh_arrays(session, model, scored, new_events)
    eng = _engagement_from_arrays(session, model, scored, state, ref, max_at, now)
    arrays = core.scale_scores(model, fit, eng, fit_scaled)
    # No explanation stored: :func:`explain` computes the full one on request.
    _write(session, active, scored, arrays, None, now, result, fire, prev=prev)


def _merged_sql(session: Session, id_list: str) -> str:
    """The merged-away leads among ``id_list``, from the partial index of merged leads (SQLite
    would otherwise look every lead up in the table)."""

    indexed = " INDEXED BY ix_leads_merged_into_id" if session.get_bind().dialect.name == "sqlite" else ""
    return f"SELECT id FROM leads{indexed} WHERE merged_into_id IS NOT NULL AND id IN ({id_list})"


# Leads touched by the events of one commit, rescored together right after it (a batch of 1,000
# created leads is one rescoring transaction, not 1,000), in the database that committed them.
# They are read from the committing session's own pending domain events (not gathered by a
# subscriber into a per-thread set: a transaction that another subscriber of the same commit ran
# on the same thread took that set, rescored it in its own database or dropped it, and rolled
# back or committed elsewhere: seen as "600 leads had stale scores" in the 8-writer test).
_databases: dict[int, Database] = {}  # id(engine) -> the registered Database using it
_EVENTS = frozenset({"activities.ingested", "lead.created", "lead.merged", "leads.imported"})
_TOUCHED = "scoring_touched"  # session.info key: the lead ids of the commit being dispatched
_RANGES = "scoring_ranges"  # ... and the id ranges of its ingested events (None: some unknown)


def _touched_by(ev: DomainEvent) -> list[int]:
    p = ev.payload
    # activities.ingested: lead_ids; lead.created: lead_id; lead.merged: the winner got the
    # loser's events (the loser's engagement state goes).
    ids = p.get("lead_ids") or [p[k] for k in ("lead_id", "winner_id", "loser_id") if p.get(k) is not None]
    return [int(i) for i in ids]


@event.listens_for(Session, "after_commit", insert=True)
def _collect_touched(session: Session) -> None:
    """Runs first on a commit, before leadflow.events dispatches (and pops) the commit's events:
    note the leads they touch on the session itself."""

    if session.get_nested_transaction() is not None:  # a savepoint released: wait for the outer
        return
    pending = session.info.get("pending_events") or ()
    ids = {i for ev in pending if ev.name in _EVENTS for i in _touched_by(ev)}
    if ids:
        session.info.setdefault(_TOUCHED, set()).update(ids)
        ranges: list[tuple[int, int]] | None = session.info.setdefault(_RANGES, [])
        for ev in pending:
            if ev.name == "activities.ingested" and ranges is not None:
                first, last = ev.payload.get("first_id"), ev.payload.get("last_id")
                ranges = None if first is None or last is None else [*ranges, (int(first), int(last))]
        session.info[_RANGES] = ranges if ranges is not None and len(ranges) <= MAX_EVENT_RANGES else None


@event.listens_for(Session, "after_commit")
def _rescore_touched(session: Session) -> None:
    """Runs after leadflow.events dispatched the commit's events (listeners run in the order they
    were registered, and leadflow.events registered first): rescore the leads this session's
    commit touched, in a transaction of its own on the same database."""

    if session.get_nested_transaction() is not None:
        # A savepoint was released (SQLAlchemy fires after_commit for those too, and
        # leadflow.events dispatches then): wait for the outermost commit.
        return
    ids: set[int] = session.info.pop(_TOUCHED, set())
    ranges: list[tuple[int, int]] | None = session.info.pop(_RANGES, None)
    if not ids:
        return
    db = _databases.get(id(engine_of(session)))
    if db is None:  # scoring is not registered for this database
        return
    for attempt in range(1, RESCORE_ATTEMPTS + 1):
        try:
            with db.transaction() as s:
                rescore_leads(s, ids, new_events=ranges)
            return
        except DBAPIError as exc:  # a lock timeout or a deadlock with another writer: again
            if attempt == RESCORE_ATTEMPTS:
                log.exception("incremental rescoring of %d leads failed", len(ids))
            else:
                log.warning("incremental rescoring of %d leads failed (%s); retrying", len(ids), exc)
        except Exception:  # the change that touched the leads is committed; never undo it
            # The next full rescore repairs them: their states do not add up with the events.
            log.exception("incremental rescoring of %d leads failed", len(ids))
            return


@event.listens_for(Session, "after_rollback")
def _forget_touched(session: Session) -> None:
    if session.get_nested_transaction() is None:
        session.info.pop(_TOUCHED, None)
        session.info.pop(_RANGES, None)


def register(db: Database) -> None:
    """Rescore leads when their events arrive, when they are created and when a merge moves
    events (after the commit, in a transaction of their own). Idempotent."""

    _databases[id(db.engine)] = db


def registered() -> list[Database]:
    """The databases whose leads are rescored incrementally (``register``)."""

    return list(_databases.values())


def unregister(db: Database) -> None:
    _databases.pop(id(db.engine), None)


# ---------------------------------------------------------------------------------------------
# Full, set-based rescore
# ---------------------------------------------------------------------------------------------


@dataclass
class _Fitted:
    """The live leads of an id range (sorted) and their fit points, read by the second thread;
    with their engagement states when the kept ones are used (checked again under the lock)."""

    ids: list[int]
    fit: np.ndarray[Any, np.dtype[np.float64]]
    timings: dict[str, float]
    states: _States | None = None
    # With ``scores``: the stored scores of ``ids`` and the leads among them rescored since
    # the rescore's snapshot (used as they are when nothing was committed since they were read).
    prev: _Previous | None = None
    newer: list[int] | None = None
    # Fit scores carried forward (NaN: computed from the attributes in ``fit``), or None.
    fit_scaled: np.ndarray[Any, np.dtype[np.float64]] | None = None
    # Engagement points per (lead, rule) from ``states`` at the rescore's time, or None.
    eng: np.ndarray[Any, np.dtype[np.float64]] | None = None


@dataclass
class _States:
    """Engagement states aligned with some lead ids. ``found``: a row of the wanted ruleset was
    read; ``events`` and ``last`` identify the events it holds (to check it is still current)."""

    state: np.ndarray[Any, np.dtype[np.float64]]
    ref: np.ndarray[Any, np.dtype[np.float64]]
    max_at: np.ndarray[Any, np.dtype[np.float64]]
    found: np.ndarray[Any, np.dtype[np.bool_]]
    other: np.ndarray[Any, np.dtype[np.bool_]]  # a row of another ruleset (or size) exists
    events: np.ndarray[Any, np.dtype[np.int64]]
    last: np.ndarray[Any, np.dtype[np.int64]]


def _read_states(
    session: Session,
    model: core.ScoringModel,
    key: str,
    ids: Sequence[int],
    where: str,
    params: Mapping[str, Any],
) -> _States:
    """The stored states of ``ids`` (sorted; ``where`` selects a superset of their rows), read
    only: rows out of step are flagged in ``other``, not refreshed (:func:`_state_arrays` does)."""

    n_rules = len(model.engagement.rules)
    n = len(ids)
    out = _States(
        core.empty_state(n, n_rules),
        np.zeros(n, dtype=np.float64),
        np.full(n, -np.inf),
        np.zeros(n, dtype=np.bool_),
        np.zeros(n, dtype=np.bool_),
        np.zeros(n, dtype=np.int64),
        np.zeros(n, dtype=np.int64),
    )
    if not n:
        return out
    # (the ruleset compared in SQL: a small int per row instead of a string)
    rows = _raw_rows(
        session,
        "SELECT lead_id, CASE WHEN ruleset = :lf_key THEN 1 ELSE 0 END, ref, max_at, events, "
        f"last_event_id, state FROM lead_engagement WHERE {where}",
        {**params, "lf_key": key},
    )
    if not rows:
        return out
    lid, same_key, refs, maxes, events, lasts, blobs = zip(*rows, strict=True)
    size = _state_size(n_rules)
    id_arr = np.fromiter(lid, dtype=np.int64, count=len(rows))
    joined = b"".join(blobs)
    if same_key.count(1) == len(rows) and len(joined) == size * len(rows):  # the usual case
        ok = np.ones(len(rows), dtype=np.bool_)
    else:
        ok = np.fromiter(
            (k == 1 and len(b) == size for k, b in zip(same_key, blobs, strict=True)),
            dtype=np.bool_,
            count=len(rows),
        )
    want = np.asarray(ids, dtype=np.int64)
    pos = np.minimum(np.searchsorted(want, id_arr), n - 1)
    inside = want[pos] == id_arr
    good = ok & inside
    if good.any() and n_rules:
        data = joined if good.all() else b"".join(itertools.compress(blobs, good.tolist()))
        out.state[pos[good]] = np.frombuffer(data, dtype=np.float64).reshape(-1, n_rules, core.STATE_FIELDS)
    out.ref[pos[good]] = np.asarray(refs, dtype=np.float64)[good]
    out.max_at[pos[good]] = np.asarray(maxes, dtype=np.float64)[good]
    out.found[pos[good]] = True
    out.other[pos[inside & ~ok]] = True
    out.events[pos[inside]] = np.asarray(events, dtype=np.int64)[inside]
    out.last[pos[inside]] = np.asarray(lasts, dtype=np.int64)[inside]
    return out


@dataclass(frozen=True)
class _ReadScores:
    """What the read-ahead also reads of the stored scores: the model's thresholds, and the
    snapshot after which a stored score counts as newer (None: none does)."""

    tids: list[str]
    since: datetime | None
    # Model versions whose fit scores are the active model's (same fit key): a stored fit score
    # of one of them is carried forward for a lead not marked in fit_dirty. None: no carrying.
    carry: list[int] | None = None
    # The time scores are computed for: the engagement points of the states read are computed
    # ahead too.
    as_of: datetime | None = None
    # Read the stored scores whole (they may be trusted: SQLite); else only what carrying the fit
    # needs (PostgreSQL reads them again under the lock anyway).
    whole: bool = True


def _fit_range(
    db: Database,
    model: core.ScoringModel,
    start: int,
    end: int,
    key: str | None,
    scores: _ReadScores | None = None,
) -> _Fitted:
    """Attributes and fit points of the live leads in [start, end), with ``key`` their kept
    engagement states, with ``scores`` their stored scores, in a read transaction of their own
    (the full rescore's second process)."""

    t = time.perf_counter()
    params = {"lo": start, "hi": end}
    prev: _Previous | None = None
    newer: list[int] | None = None
    fit_scaled: np.ndarray[Any, np.dtype[np.float64]] | None = None
    fit = np.zeros((0, len(model.fit.rules)), dtype=np.float64)
    carry = scores.carry if scores is not None else None
    marks = np.zeros((0, 2), dtype=np.int64)
    with db.transaction() as session:
        if carry is not None:
            # The live leads and which are marked: the attributes of the others are not read.
            rows = _raw_rows(
                session,
                "SELECT l.id, CASE WHEN d.lead_id IS NULL THEN 0 ELSE 1 END FROM leads l "
                "LEFT JOIN fit_dirty d ON d.lead_id = l.id "
                "WHERE l.id >= :lo AND l.id < :hi AND l.merged_into_id IS NULL ORDER BY l.id",
                params,
            )
            marks = np.array(rows, dtype=np.int64).reshape(-1, 2)
            ids: list[int] = marks[:, 0].tolist()
            cols: dict[str, np.ndarray[Any, Any]] = {}
        else:
            ids, cols = _attribute_columns(session, model, "l.id >= :lo AND l.id < :hi", params)
        t1 = time.perf_counter()
        states = (
            _read_states(session, model, key, ids, "lead_id >= :lo AND lead_id < :hi", params)
            if key is not None
            else None
        )
        t2 = time.perf_counter()
        stored_fit: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]] | None = None
        if scores is not None and scores.whole:
            prev = _previous(session, ids, scores.tids, (start, end))
            newer = _newer(session, start, end, scores.since)
            stored_fit = prev.found, prev.fit, prev.version
        elif carry is not None:
            stored_fit = _stored_fit(session, ids, start, end)
        t3 = time.perf_counter()
        if carry is not None and stored_fit is not None:
            found, stored, version = stored_fit
            kept = found & np.isin(version, carry) & (marks[:, 1] == 0)
            fit_scaled = np.where(kept, stored, np.nan)
            need = np.flatnonzero(~kept)
            fit = np.zeros((len(ids), len(model.fit.rules)), dtype=np.float64)
            if len(need):
                sub = [ids[i] for i in need.tolist()]
                got, cols = _attribute_columns(session, model, f"l.id IN ({_id_list(sub)})", {})
                # (a lead merged away meanwhile is not in ``got``: the main process drops it)
                at = np.searchsorted(np.asarray(ids, dtype=np.int64), np.asarray(got, dtype=np.int64))
                fit[at] = core.fit_points_matrix(model, cols, len(got))
    t4 = time.perf_counter()
    if fit_scaled is None:
        fit = core.fit_points_matrix(model, cols, len(ids))
    t5 = time.perf_counter()
    eng = (
        core.engagement_points_from_state(model, states.state, states.ref, scores.as_of)
        if states is not None and scores is not None and scores.whole and scores.as_of is not None
        else None  # (used only with the stored scores read whole: a range that trusts them)
    )
    took = {
        "read attributes": t1 - t + (t4 - t3),
        "read states": t2 - t1,
        "fit rules": t5 - t4,
        "engagement": time.perf_counter() - t5,
    }
    if scores is not None:
        took["read scores"] = t3 - t2
    return _Fitted(ids, fit, took, states, prev, newer, fit_scaled, eng)


def _stored_fit(
    session: Session, ids: Sequence[int], start: int, end: int
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Aligned with ``ids`` (sorted, in [start, end)): whether a score is stored, its fit score
    and its model version."""

    n = len(ids)
    found, fit, version = np.zeros(n, dtype=np.bool_), np.zeros(n), np.full(n, -1, dtype=np.int64)
    rows = _raw_rows(
        session,
        "SELECT lead_id, fit, model_version FROM lead_scores WHERE lead_id >= :lo AND lead_id < :hi",
        {"lo": start, "hi": end},
    )
    if rows and n:
        arr = np.array(rows, dtype=np.float64).reshape(-1, 3)
        lid = arr[:, 0].astype(np.int64)
        want = np.asarray(ids, dtype=np.int64)
        pos = np.minimum(np.searchsorted(want, lid), n - 1)
        inside = want[pos] == lid
        p = pos[inside]
        found[p], fit[p], version[p] = True, arr[inside, 1], arr[inside, 2].astype(np.int64)
    return found, fit, version


def _newer(session: Session, start: int, end: int, since: datetime | None) -> list[int]:
    """The leads in [start, end) rescored incrementally after ``since`` (None: none counts)."""

    if since is None:
        return []
    return [
        int(r[0])
        for r in _raw_rows(
            session,
            "SELECT lead_id FROM lead_scores WHERE lead_id >= :lo AND lead_id < :hi AND computed_at > :since",
            {"lo": start, "hi": end, "since": _stamp(session.get_bind().dialect.name, since)},
        )
    ]


_worker: dict[str, Any] = {}  # the second process's Database and parsed model


def _fit_range_in_worker(
    url: str,
    document: dict[str, Any],
    start: int,
    end: int,
    key: str | None,
    scores: _ReadScores | None,
) -> _Fitted:
    """:func:`_fit_range` in the full rescore's second process (its own engine)."""

    db = _worker.get(url)
    if db is None:
        db = _worker[url] = Database(url)
        gc.disable()  # a process of its own for one rescore: as in rescore_all
    model = core.parse_model(document)
    return _fit_range(db, model, start, end, key, scores)


def _current_states(
    session: Session,
    model: core.ScoringModel,
    key: str,
    ids: Sequence[int],
    fitted: _Fitted,
    where: str,
    params: Mapping[str, Any],
    quiet: bool = False,
) -> tuple[
    np.ndarray[Any, np.dtype[np.float64]],
    np.ndarray[Any, np.dtype[np.float64]],
    np.ndarray[Any, np.dtype[np.float64]],
]:
    """Under the range's lock: the states read ahead, for the leads whose state row is still the
    one read (same ruleset, event count and highest event id: an incremental update in between
    changes them; ``quiet``: nothing was committed since they were read, so they all are); the
    others, and leads not read ahead, are read (and refreshed if out of step) now, as
    :func:`_state_arrays` does."""

    assert fitted.states is not None
    ahead = fitted.states
    n = len(ids)
    want = np.asarray(ids, dtype=np.int64)
    src = np.asarray(fitted.ids, dtype=np.int64)
    at = np.minimum(np.searchsorted(src, want), max(len(src) - 1, 0))
    have = (src[at] == want) if len(src) else np.zeros(n, dtype=np.bool_)
    state = ahead.state[at] if len(src) else core.empty_state(n, len(model.engagement.rules))
    ref = ahead.ref[at] if len(src) else np.zeros(n)
    max_at = ahead.max_at[at] if len(src) else np.full(n, -np.inf)
    if quiet:
        redo = np.flatnonzero(~(have & ~ahead.other[at])) if len(src) else np.arange(n)
        if len(redo):
            sub = want[redo].tolist()
            s, r, m = _state_arrays(session, model, key, sub, f"lead_id IN ({_id_list(sub)})", {})
            state[redo], ref[redo], max_at[redo] = s, r, m
        return state, ref, max_at
    rows = _raw_rows(
        session,
        f"SELECT lead_id, CASE WHEN ruleset = :key THEN 1 ELSE 0 END, events, last_event_id "
        f"FROM lead_engagement WHERE {where}",
        {**params, "key": key},
    )
    now_found = np.zeros(n, dtype=np.bool_)
    now_other = np.zeros(n, dtype=np.bool_)
    now_events = np.zeros(n, dtype=np.int64)
    now_last = np.zeros(n, dtype=np.int64)
    if rows and n:
        arr = np.array(rows, dtype=np.int64).reshape(-1, 4)
        pos = np.minimum(np.searchsorted(want, arr[:, 0]), n - 1)
        inside = want[pos] == arr[:, 0]
        p, a = pos[inside], arr[inside]
        now_found[p] = a[:, 1] == 1
        now_other[p] = a[:, 1] == 0
        now_events[p], now_last[p] = a[:, 2], a[:, 3]
    same = (
        have
        & (ahead.found[at] == now_found)
        & (ahead.other[at] == now_other)
        & ~now_other
        & (ahead.events[at] == now_events)
        & (ahead.last[at] == now_last)
    )
    redo = np.flatnonzero(~same)
    if len(redo):
        sub = want[redo].tolist()
        s, r, m = _state_arrays(session, model, key, sub, f"lead_id IN ({_id_list(sub)})", {})
        state[redo], ref[redo], max_at[redo] = s, r, m
    return state, ref, max_at


def _live_fit(
    session: Session,
    model: core.ScoringModel,
    fitted: _Fitted,
    where: str,
    params: Mapping[str, Any],
    newer: set[int],
) -> tuple[list[int], np.ndarray[Any, np.dtype[np.float64]], np.ndarray[Any, np.dtype[np.float64]] | None]:
    """Under the range's lock: the leads to rescore (live now, not rescored since the snapshot)
    with their fit points and carried fit scores. Those read ahead keep them; a lead deleted or
    merged since is dropped, one created since is read now."""

    live = np.array(
        [
            r[0]
            for r in _raw_rows(
                session,
                f"SELECT id FROM leads WHERE {where.format(col='id')} AND merged_into_id IS NULL",
                params,
            )
        ],
        dtype=np.int64,
    )
    if newer:
        live = live[~np.isin(live, np.fromiter(newer, dtype=np.int64, count=len(newer)))]
    live.sort()
    ahead = np.asarray(fitted.ids, dtype=np.int64)
    keep = np.isin(ahead, live)
    ids, fit = ahead[keep], fitted.fit[keep]
    scaled = fitted.fit_scaled[keep] if fitted.fit_scaled is not None else None
    missing = np.setdiff1d(live, ids, assume_unique=True)
    if len(missing):
        extra_ids, cols = _attribute_columns(session, model, f"l.id IN ({_id_list(missing.tolist())})", {})
        extra = core.fit_points_matrix(model, cols, len(extra_ids))
        ids = np.concatenate([ids, np.asarray(extra_ids, dtype=np.int64)])
        fit = np.concatenate([fit, extra])
        order = np.argsort(ids, kind="stable")
        ids, fit = ids[order], fit[order]
        if scaled is not None:
            scaled = np.concatenate([scaled, np.full(len(extra_ids), np.nan)])[order]
    return ids.tolist(), fit, scaled


def _take_fit_marks(session: Session, start: int, end: int, newer: set[int]) -> list[int]:
    """Delete and return the fit_dirty marks of [start, end), but those of leads left alone
    (rescored since the snapshot: their mark may be newer than their score)."""

    skip = f" AND lead_id NOT IN ({_id_list(sorted(newer))})" if newer else ""
    rows = _raw_rows(
        session,
        f"DELETE FROM fit_dirty WHERE lead_id >= :lo AND lead_id < :hi{skip} RETURNING lead_id",
        {"lo": start, "hi": end},
    )
    return sorted(int(r[0]) for r in rows)


def _refit(
    session: Session,
    model: core.ScoringModel,
    ids: Sequence[int],
    fit: np.ndarray[Any, np.dtype[np.float64]],
    scaled: np.ndarray[Any, np.dtype[np.float64]] | None,
    marked: Sequence[int],
) -> tuple[np.ndarray[Any, np.dtype[np.float64]], np.ndarray[Any, np.dtype[np.float64]] | None]:
    """Fit points of the ``marked`` leads among ``ids`` read again now (their fit scores are no
    longer carried)."""

    want = np.asarray(ids, dtype=np.int64)
    sub = np.intersect1d(want, np.asarray(marked, dtype=np.int64))
    if not len(sub):
        return fit, scaled
    got, cols = _attribute_columns(session, model, f"l.id IN ({_id_list(sub.tolist())})", {})
    at = np.searchsorted(want, np.asarray(got, dtype=np.int64))
    fit = fit.copy()
    fit[at] = core.fit_points_matrix(model, cols, len(got))
    if scaled is not None:
        scaled = scaled.copy()
        scaled[at] = np.nan
    return fit, scaled


def _rescore_range(
    db: Database,
    active: ActiveModel,
    key: str,
    build: _Build | None,
    start: int,
    end: int,
    fitted: _Fitted,
    snapshot: datetime,
    now: datetime,
    fire: bool,
    result: RescoreResult,
    pinned: Connection | None = None,
    seen: int | None = None,
) -> int:
    """One id range of the full rescore, in its own transaction; returns the leads it covered.
    ``pinned``: the connection to write on; ``seen``: its SQLite data_version when the range's
    read-ahead was started."""

    where = "{col} >= :lo AND {col} < :hi"
    params = {"lo": start, "hi": end}
    with db.transaction_on(pinned) if pinned is not None else db.transaction() as session:
        t = time.perf_counter()
        _lock_leads(session, span=(start, end))
        # SQLite's data_version of a connection moves when another connection commits: unmoved
        # since the read-ahead began, nobody else wrote meanwhile (this connection's own commits
        # touched other ranges), so the leads, states and scores read ahead are those stored now.
        quiet = seen is not None and fitted.prev is not None and _data_version(session) == seen
        prev: _Previous | None = None
        eng_ahead: np.ndarray[Any, np.dtype[np.float64]] | None = None
        if quiet:
            assert fitted.prev is not None
            result.trusted_ranges += 1
            newer = set(fitted.newer or ())
            ahead = np.asarray(fitted.ids, dtype=np.int64)
            keep = ~np.isin(ahead, np.fromiter(newer, dtype=np.int64, count=len(newer)))
            ids, fit, prev = ahead[keep].tolist(), fitted.fit[keep], fitted.prev.take(keep)
            scaled = fitted.fit_scaled[keep] if fitted.fit_scaled is not None else None
            eng_ahead = fitted.eng[keep] if fitted.eng is not None else None
        else:
            # A lead rescored incrementally since the snapshot has a newer score: leave it.
            # (Scores carry the time they were computed for: a rescore as of a later time is not
            # "newer".)
            newer = set(_newer(session, start, end, snapshot if now <= snapshot else None))
            ids, fit, scaled = _live_fit(session, active.model, fitted, where, params, newer)
        # The leads whose fit inputs changed: their marks go (they are fitted now). Unless
        # nothing was committed since the read-ahead (which read the attributes of every marked
        # lead), those are read again: they may have changed after it.
        marked = _take_fit_marks(session, start, end, newer)
        if marked and not quiet and ids:
            fit, scaled = _refit(session, active.model, ids, fit, scaled, marked)
        t = result.timed("live leads", t)
        if ids:
            if build is not None:
                states = _states_from_build(session, active.model, key, build, ids, where, params)
                eng = _engagement_from_states(session, active.model, ids, states, now)
            elif quiet and eng_ahead is not None and fitted.states is not None:
                # Computed ahead from the states read ahead, which are current: but for leads
                # whose state is of another ruleset or holds events dated after ``now``.
                st = fitted.states
                bad = np.flatnonzero(st.other[keep] | (st.max_at[keep] > now.timestamp()))
                eng = eng_ahead
                if len(bad):
                    sub = [ids[i] for i in bad.tolist()]
                    arrs = _state_arrays(session, active.model, key, sub, f"lead_id IN ({_id_list(sub)})", {})
                    eng[bad] = _engagement_from_arrays(session, active.model, sub, *arrs, now)
            else:
                arrs = _current_states(
                    session, active.model, key, ids, fitted, where.format(col="lead_id"), params, quiet
                )
                eng = _engagement_from_arrays(session, active.model, ids, *arrs, now)
            t = result.timed("engagement", t)
            arrays = core.scale_scores(active.model, fit, eng, scaled)
            if scaled is not None:
                result.fit_carried += int((~np.isnan(scaled)).sum())
            _write(
                session,
                active,
                ids,
                arrays,
                None,
                now,
                result,
                fire,
                span=(start, end),
                drift_history=True,
                prev=prev,
            )
            t = result.timed("write and act", t)
    t = result.timed("commit", t)
    return len(ids) + len(newer)


def rescore_all(
    db: Database,
    actor: Principal,
    *,
    as_of: datetime | None = None,
    progress: ProgressFn | None = None,
    chunk: int = CHUNK,
    fire: bool = True,
    rebuild: bool = False,
) -> RescoreResult:
    """Rescore every live lead with the active model, one id range per transaction. ``rebuild``:
    build the engagement states from the events even when the kept ones add up."""

    _require_manage(actor)
    started = time.perf_counter()
    now = as_of or utcnow()
    with db.transaction() as session:
        active = active_model(session)
        lo, hi, total = session.execute(
            select(func.min(Lead.id), func.max(Lead.id), func.count()).where(Lead.merged_into_id.is_(None))
        ).one()
    result = RescoreResult(active.version)
    if not total:
        if progress:
            progress(0, 0)
        return result
    if progress:
        progress(0, int(total))
    # Engagement comes from the per-lead states kept up to date on ingest (no pass over the
    # events), unless the engagement rules changed or the states are out of step with the events:
    # then one pass over the events builds them (a sequential scan: reading by lead id range
    # would fetch each event's row out of order).
    key = core.engagement_key(active.model)
    snapshot = utcnow()
    # Many leads: the attributes, fit points and kept engagement states of the next id range are
    # read and computed in a second process (its own connection and snapshot; a thread would
    # fight this one for the GIL row by row) while this one writes the current range. Under the
    # range's lock, leads deleted or merged since are dropped, leads created since are read, and
    # states changed since are read again. The process starts (~1 s of imports) and reads the
    # first range while this one checks the kept states; its states go unused if they are rebuilt.
    pool = (
        ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        # (an in-memory SQLite database cannot be opened by another process)
        if int(total) >= PARALLEL_MIN_LEADS and ":memory:" not in db.url and db.url.rstrip("/") != "sqlite:"
        else None
    )
    doc = active.model.to_document()
    states_key: str | None = key
    # SQLite database file: this process writes every range on one connection, whose
    # data_version tells whether anyone else committed since a range's read-ahead began; if
    # nobody did, the leads, states and stored scores read ahead are used as they are instead of
    # being checked again under the lock. (In memory, connections may be shared: no such check.)
    pinned = (
        db.engine.connect()
        if db.dialect == "sqlite" and ":memory:" not in db.url and db.url.rstrip("/") != "sqlite:"
        else None
    )
    scores = _ReadScores(
        [t.id for t in active.model.thresholds],
        snapshot if now <= snapshot else None,
        None if rebuild else _carry_versions(db, active.model),
        now,
        pinned is not None,
    )

    def read_ahead(lo: int, here: bool = False) -> tuple[Future[_Fitted], int | None]:
        seen = _data_version(pinned) if pinned is not None else None
        if pool is not None and not here:
            return pool.submit(_fit_range_in_worker, db.url, doc, lo, lo + chunk, states_key, scores), seen
        done_now: Future[_Fitted] = Future()
        done_now.set_result(_fit_range(db, active.model, lo, lo + chunk, states_key, scores))
        return done_now, seen

    # SQLite, a rescore that rewrites most scores: without ix_lead_scores_total while it writes
    # (dropped once the ranges done so far wrote at least half of their scores and enough leads
    # are left; built again at the end, see leadflow.scoring.models.TOTAL_INDEX). Meanwhile the
    # score order (the inbox sorted by score) is a scan and a sort instead of an index walk.
    reindex = db.dialect == "sqlite"
    dropped = False
    # No cyclic garbage collection while it runs: each range allocates ~10 tuples per lead (rows
    # fetched and written), which set off collections that scan every live object again and
    # again: ~1/4 of the CPU time of a decay refresh at 1M leads. Reference counting still frees
    # everything (the rescore makes no cycles); other threads' cycles wait until it ends.
    collecting = gc.isenabled()
    gc.disable()
    try:
        if reindex:
            with db.engine.begin() as conn:
                ensure_total_index(conn)  # a rescore killed earlier left it dropped
        # Ranges requested from the second process and not yet written: two, so that it reads
        # the second range while this process checks the kept states (and later while it waits
        # on a slow commit) instead of waiting for the next request.
        pending: deque[tuple[int, tuple[Future[_Fitted], int | None]]] = deque()
        read_here: set[int] = set()
        next_lo = int(lo)

        def top_up(depth: int) -> None:
            """Requests up to ``depth`` ranges ahead (from the second process, if any)."""

            nonlocal next_lo
            while next_lo <= int(hi) and sum(lo_k not in read_here for lo_k, _ in pending) < depth:
                pending.append((next_lo, read_ahead(next_lo)))
                next_lo += chunk

        if pool is not None:
            top_up(READ_AHEAD)
        t = time.perf_counter()
        build: _Build | None = None
        with db.transaction_on(pinned) if pinned is not None else db.transaction() as session:
            reuse = (
                not rebuild
                and session.get(EngagementBuild, key) is not None
                and _states_consistent(session, key)
            )
            if not reuse:
                build = _build_states(session, active.model, now)
        t = result.timed("engagement state check" if reuse else "engagement state build (SQL)", t)
        result.rebuilt = build is not None
        if build is not None:
            states_key = None
        top_up(1)
        done = 0
        while pending:
            start, (ahead, seen) = pending[0]
            t = time.perf_counter()
            # The second process is still on this range: rather than wait, read the next range
            # not requested yet here (both cores stay busy when this process writes faster than
            # the second one reads). At most READ_HERE of them wait to be written.
            while (
                pool is not None
                and not ahead.done()
                and next_lo <= int(hi)
                and len(read_here & {lo_k for lo_k, _ in pending}) < READ_HERE
            ):
                t_here = time.perf_counter()
                pending.append((next_lo, read_ahead(next_lo, here=True)))
                t += time.perf_counter() - t_here  # (reading, not waiting)
                read_here.add(next_lo)
                next_lo += chunk
                result.ranges_read_here += 1
            pending.popleft()
            end = start + chunk
            fitted = ahead.result()
            if pool is not None:
                top_up(READ_AHEAD)
            suffix = " (second process)" if pool is not None and start not in read_here else ""
            if pool is not None:
                t = result.timed("wait for the second process", t)
            for phase, took in fitted.timings.items():
                result.timings[phase + suffix] = result.timings.get(phase + suffix, 0.0) + took
            done += _rescore_range(
                db, active, key, build, start, end, fitted, snapshot, now, fire, result, pinned, seen
            )
            if progress:
                progress(done, int(total))
            if (
                reindex
                and not dropped
                and result.written * 2 >= result.leads
                and int(total) - done >= REINDEX_MIN_LEADS
            ):
                t = time.perf_counter()
                # (on the writing connection: another one's commit would void the next read-ahead)
                if pinned is not None:
                    with pinned.begin():
                        pinned.execute(DropIndex(TOTAL_INDEX, if_exists=True))
                else:
                    with db.engine.begin() as conn:
                        conn.execute(DropIndex(TOTAL_INDEX, if_exists=True))
                dropped = True
                result.timed("drop total index", t)
            if pool is None:
                top_up(1)
    finally:
        if collecting:
            gc.enable()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if pinned is not None:
            pinned.close()
        if dropped:
            t = time.perf_counter()
            with db.engine.begin() as conn:
                ensure_total_index(conn)
            result.timed("build total index", t)
    if build is not None:
        with db.transaction() as session:
            # States of other rulesets and of merged-away leads are out of step: drop them (under
            # the leads' locks, so that no incremental update of the same rows interleaves).
            bounds = session.execute(text("SELECT min(lead_id), max(lead_id) FROM lead_engagement")).one()
            if bounds[0] is not None:
                _lock_leads(session, span=(int(bounds[0]), int(bounds[1]) + 1))
            session.execute(text("DELETE FROM lead_engagement WHERE ruleset <> :k"), {"k": key})
            session.execute(
                text(
                    "DELETE FROM lead_engagement WHERE lead_id IN "
                    "(SELECT id FROM leads WHERE merged_into_id IS NOT NULL)"
                )
            )
            # Two full rescores may finish at once: an upsert, not a delete and an insert.
            session.execute(delete(EngagementBuild).where(EngagementBuild.ruleset != key))
            session.execute(
                text(
                    "INSERT INTO engagement_builds (ruleset, built_at) VALUES (:k, :at) "
                    "ON CONFLICT (ruleset) DO UPDATE SET built_at = excluded.built_at"
                ),
                {"k": key, "at": _stamp(session.get_bind().dialect.name, utcnow())},
            )
    result.seconds = time.perf_counter() - started
    with db.transaction() as session:
        record(
            session,
            actor,
            "scoring_model",
            active.version,
            "rescore",
            after={
                "leads": result.leads,
                "changed": result.changed,
                "written": result.written,
                "history_points": result.history,
                "crossings": result.crossings,
                "engagement_rebuilt": result.rebuilt,
            },
        )
    return result


def _carry_versions(db: Database, model: core.ScoringModel) -> list[int] | None:
    """The model versions whose stored fit scores the active model can carry forward (the same
    :func:`~leadflow.core.scoring.fit_key`); None when there is no fit rule (nothing to read)."""

    if not model.fit.rules:
        return None
    key = core.fit_key(model)
    # Version 0: the built-in default model, active while no version is stored.
    out = [0] if core.fit_key(core.default_model()) == key else []
    with db.transaction() as session:
        for version, document in session.execute(
            select(ScoringModelVersion.version, ScoringModelVersion.document)
        ):
            try:
                if core.fit_key(core.parse_model(document)) == key:
                    out.append(int(version))
            except (ValueError, TypeError):  # a document this code no longer reads: refit
                continue
    return out


def _data_version(conn: Session | Connection) -> int:
    """SQLite's ``PRAGMA data_version`` of the connection (on the DBAPI connection: no
    transaction is begun for it)."""

    c = conn.connection() if isinstance(conn, Session) else conn
    raw: Any = c.connection.driver_connection
    cur = raw.execute("PRAGMA data_version")
    try:  # read to the end and closed: a statement left open would pin its read snapshot
        return int(cur.fetchall()[0][0])
    finally:
        cur.close()


# ---------------------------------------------------------------------------------------------
# Queries: explanation and history
# ---------------------------------------------------------------------------------------------


@dataclass
class ScoreView:
    lead_id: int
    model_version: int
    score: core.LeadScore
    stored: LeadScore | None
    history: list[ScoreHistory]
    firings: list[ThresholdFiring]
    armed: dict[str, bool]
    as_of: datetime


def explain(session: Session, actor: Principal, lead_id: int, *, history_limit: int = 200) -> ScoreView:
    """The lead's score now, broken into the rules that fired with their points and the events
    behind them, plus its stored score, history and threshold firings."""

    leads.get_lead(session, actor, lead_id)
    active = active_model(session)
    now = utcnow()
    one = score_one(session, active, lead_id, now)
    if one is None:
        raise NotFound(f"lead {lead_id} was merged; its score lives on the lead it was merged into")
    stored = session.get(LeadScore, lead_id)
    history = list(
        session.scalars(
            select(ScoreHistory)
            .where(ScoreHistory.lead_id == lead_id)
            .order_by(ScoreHistory.at.desc(), ScoreHistory.id.desc())
            .limit(history_limit)
        )
    )
    history.reverse()
    firings = list(
        session.scalars(
            select(ThresholdFiring)
            .where(ThresholdFiring.lead_id == lead_id)
            .order_by(ThresholdFiring.at, ThresholdFiring.id)
        )
    )
    armed = {t.id: True for t in active.model.thresholds}
    if stored is not None and stored.armed:
        armed.update({k: v for k, v in stored.armed.items() if k in armed})
    return ScoreView(lead_id, active.version, one[0], stored, history, firings, armed, now)


def clear_scores(session: Session) -> None:
    """Forget every stored score (tests and benchmarks)."""

    for table in (ThresholdFiring, ScoreHistory, LeadScore):
        session.execute(delete(table))
