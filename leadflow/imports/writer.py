"""Writing validated rows in sets: one transaction per chunk, plain ``executemany`` statements.

Per chunk (a few thousand rows) and in one transaction: the leads already stored under the
chunk's emails are read (locked on PostgreSQL), accounts are matched or created for the whole
chunk, new leads are inserted with their first stage change and their audit entries, changed
leads are updated (with an audit entry holding the changed fields), and the import's counters
move. A row is therefore all or nothing. If the database refuses a chunk (a constraint a
concurrent writer raced us to, a value the database rejects), the chunk is retried once and then
split in halves until the failing rows are isolated; those are reported and the rest stored.

The statements are SQL text built from the SQLAlchemy tables and run with the driver's
``executemany`` (SQLAlchemy's Core ``insert`` costs ~30 us a row in bind processing, more than the
database itself). Values that need a driver-specific form (timestamps, JSON, booleans) are
converted once here with the column types' own bind processors.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Connection, Table
from sqlalchemy.exc import DBAPIError, OperationalError

from leadflow.audit.models import AuditEntry
from leadflow.auth.principal import Principal
from leadflow.db import checkpoint
from leadflow.db.base import Database, utcnow
from leadflow.events import emit
from leadflow.imports.rows import FIRMOGRAPHICS, WORKER_COLUMNS, Issue, NormRow, report_value
from leadflow.leads.models import Account, ImportJob, Lead, StageChange
from leadflow.leads.service import IMPORT_BATCH, import_batch_after

LEADS: Table = Lead.__table__  # type: ignore[assignment]
ACCOUNTS: Table = Account.__table__  # type: ignore[assignment]
STAGES: Table = StageChange.__table__  # type: ignore[assignment]
AUDIT: Table = AuditEntry.__table__  # type: ignore[assignment]
IMPORTS: Table = ImportJob.__table__  # type: ignore[assignment]

# Appended by the writer to the worker's columns.
WRITER_COLUMNS = ("account_id", "created_at", "updated_at", "stage_changed_at", "import_id", "version")
_STAGE = WORKER_COLUMNS.index("stage")
_ORIGIN = WORKER_COLUMNS.index("origin")
_CONSENT = WORKER_COLUMNS.index("consent")
_UNSUBSCRIBED = WORKER_COLUMNS.index("unsubscribed")
_STATUS_REASON = WORKER_COLUMNS.index("status_reason")
# Fields a later import may change on a stored lead (stage, origin and email never change).
LEAD_UPDATE = (
    "first_name",
    "last_name",
    "phone",
    "phone_raw",
    "job_title",
    "seniority",
    "department",
    "company",
    "country",
    "timezone",
    "source",
    "campaign",
    "owner_id",
    "account_id",
    "consent",
    "unsubscribed",
    "attributes",
    "bad_candidate_reasons",
)
_IN_BATCH = 5000
_RETRYABLE = frozenset({"40P01", "40001"})  # deadlock detected, serialization failure
_ACCOUNT_BATCH = 500  # rows per multi-row INSERT (SQLite allows 32,766 parameters)


@dataclass
class ChunkOutcome:
    created: int = 0
    updated: int = 0
    skipped: int = 0
    failed: int = 0
    accounts_created: int = 0
    issues: list[Issue] = field(default_factory=list)
    created_ids: list[int] = field(default_factory=list)  # of this chunk only
    updated_ids: list[int] = field(default_factory=list)

    def add(self, other: ChunkOutcome) -> None:
        self.created += other.created
        self.updated += other.updated
        self.skipped += other.skipped
        self.failed += other.failed
        self.accounts_created += other.accounts_created
        self.issues.extend(other.issues)  # ids are not summed: each chunk publishes its own


def _lead_defaults(params: tuple[Any, ...]) -> tuple[Any, ...]:
    """Column defaults for a row the worker left open (the SQLite statement uses COALESCE; COPY
    cannot)."""

    if params[_ORIGIN] is not None and params[_CONSENT] is not None and params[_UNSUBSCRIBED] is not None:
        return params
    out = list(params)
    out[_ORIGIN] = out[_ORIGIN] or "marketing"
    out[_CONSENT] = out[_CONSENT] or "unknown"
    out[_UNSUBSCRIBED] = bool(out[_UNSUBSCRIBED])
    return tuple(out)


class _SQL:
    """Dialect-specific statement text and value conversion."""

    def __init__(self, db: Database) -> None:
        self.dialect = db.engine.dialect
        self.sqlite = db.dialect == "sqlite"
        self.ph = "?" if self.sqlite else "%s"
        self.q = self.dialect.identifier_preparer.quote

    def insert(self, table: Table, cols: Sequence[str]) -> str:
        names = ", ".join(self.q(c) for c in cols)
        return f"INSERT INTO {table.name} ({names}) VALUES ({', '.join([self.ph] * len(cols))})"

    def processor(self, column: Column[Any]) -> Callable[[Any], Any]:
        proc = column.type.dialect_impl(self.dialect).bind_processor(self.dialect)
        return proc if proc is not None else (lambda v: v)

    def result_processor(self, column: Column[Any]) -> Callable[[Any], Any] | None:
        proc: Callable[[Any], Any] | None = column.type.dialect_impl(self.dialect).result_processor(
            self.dialect, None
        )
        return proc

    def in_clause(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        if self.sqlite:
            return f"{self.q(column)} IN ({', '.join('?' * len(values))})", list(values)
        return f"{self.q(column)} = ANY(%s)", [list(values)]


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)


def _json(value: Any) -> str | None:
    """JSON text for a JSON column (text already serialized passes through)."""

    if value is None or isinstance(value, str):
        return value
    return _ENCODER.encode(value)


class _AccountCache:
    """Accounts seen so far (domain -> id, name key -> id, which firmographics are filled).

    Chunk-local changes live in ``pending`` until the chunk commits, so a rolled-back chunk never
    leaves ids in the cache that the database does not hold."""

    def __init__(self) -> None:
        self.by_domain: dict[str, int] = {}
        self.by_key: dict[str, int] = {}
        self.filled: dict[int, frozenset[str]] = {}
        self.has_domain: dict[int, bool] = {}
        self.missing_domains: set[str] = set()
        self.missing_keys: set[str] = set()


@dataclass
class _PendingAccount:
    temp: int
    name: str
    name_key: str
    domain: str | None
    values: dict[str, Any]


class ChunkWriter:
    def __init__(
        self,
        db: Database,
        *,
        job_id: int,
        actor: Principal,
        dry_run: bool,
        email_column: str = "email",
    ) -> None:
        self.db = db
        self.email_column = email_column
        self.job_id = job_id
        self.actor = actor
        self.dry_run = dry_run
        self.sql = _SQL(db)
        self.accounts = _AccountCache()
        self.seen: dict[str, int] = {}  # email -> line of its first row in this file
        self.totals = ChunkOutcome()
        self._conn: Connection | None = None
        self._retries = 0
        c = LEADS.c
        self._ts = self.sql.processor(c.created_at)
        self._bool = self.sql.processor(c.unsubscribed)
        false = "0" if self.sql.sqlite else "false"
        defaults = {"origin": "'marketing'", "consent": "'unknown'", "unsubscribed": false}
        cols = WORKER_COLUMNS + WRITER_COLUMNS
        values = ", ".join(
            f"COALESCE({self.sql.ph}, {defaults[c]})" if c in defaults else self.sql.ph for c in cols
        )
        self._lead_insert = f"INSERT INTO leads ({', '.join(self.sql.q(c) for c in cols)}) VALUES ({values})"
        self._account_cols = (
            "name",
            "name_key",
            "domain",
            *FIRMOGRAPHICS,
            "created_at",
            "updated_at",
            "version",
        )
        self._account_insert_head = (
            f"INSERT INTO accounts ({', '.join(self.sql.q(c) for c in self._account_cols)})"
        )
        self._lead_cols = cols
        self._stage_cols = ("lead_id", "from_stage", "to_stage", "at", "actor_id", "reason", "evidence")
        self._stage_insert = self.sql.insert(STAGES, self._stage_cols)
        self._audit_cols = (
            "at",
            "actor_id",
            "actor_label",
            "entity_type",
            "entity_id",
            "action",
            "before",
            "after",
            "reason",
            "evidence",
        )
        self._audit_insert = self.sql.insert(AUDIT, self._audit_cols)
        q, ph = self.sql.q, self.sql.ph
        sets = ", ".join(f"{q(col)} = {ph}" for col in LEAD_UPDATE)
        self._lead_update = (
            f"UPDATE leads SET {sets}, updated_at = {ph}, version = version + 1 WHERE id = {ph}"
        )
        self.reason = f"import #{job_id}"

    # ------------------------------------------------------------------------------ public

    def write(self, rows: list[NormRow]) -> ChunkOutcome:
        """Store one validated chunk; duplicates within the file are reported, not stored."""

        out = ChunkOutcome()
        fresh: list[NormRow] = []
        for row in rows:
            first = self.seen.get(row.email)
            if first is not None:
                out.failed += 1
                out.issues.append(
                    Issue(
                        row.line,
                        self.email_column,
                        report_value(row.email),
                        f"duplicate of line {first} (same email); only the first row is imported",
                        "error",
                    )
                )
                continue
            self.seen[row.email] = row.line
            fresh.append(row)
        if fresh:
            out.add(self._write_isolating(fresh))
        self.totals.add(out)
        return out

    # ------------------------------------------------------------------------------ chunks

    def _write_isolating(self, rows: list[NormRow], retried: bool = False) -> ChunkOutcome:
        """Write the rows in one transaction; on a database refusal retry once, then bisect."""

        try:
            return self._write_chunk(rows)
        except OperationalError as exc:
            # A deadlock or serialization failure with a concurrent writer (PostgreSQL): the
            # transaction was rolled back, so the chunk is simply tried again.
            if getattr(exc.orig, "sqlstate", None) in _RETRYABLE and self._retries < 5:
                self._retries += 1
                return self._write_isolating(rows, retried)
            raise  # locked or unreachable database: the import stops, committed chunks stay
        except DBAPIError as exc:
            # What the failed transaction read may be stale (a concurrent import may have created
            # an account we found missing): forget the negative lookups before trying again.
            self.accounts.missing_domains.clear()
            self.accounts.missing_keys.clear()
            if not retried:
                return self._write_isolating(rows, retried=True)
            if len(rows) == 1:
                row = rows[0]
                detail = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
                return ChunkOutcome(
                    failed=1,
                    issues=[
                        Issue(
                            row.line,
                            "",
                            report_value(row.email),
                            f"the database refused the row: {detail}",
                            "error",
                        )
                    ],
                )
            mid = len(rows) // 2
            out = self._write_isolating(rows[:mid], retried=True)
            out.add(self._write_isolating(rows[mid:], retried=True))
            return out

    @contextmanager
    def connected(self) -> Iterator[None]:
        """Hold one connection for the whole import (each chunk is still its own transaction).

        On SQLite the import's connection checkpoints the WAL less often (every ~64 MiB instead
        of ~4 MiB: each checkpoint rewrites the hot index pages; ~10% less CPU per row, measured),
        restored afterwards; a database file's checkpoints already run on a thread of their own
        (leadflow.db.checkpoint), past a higher mark. A larger page cache made no measurable
        difference."""

        with self.db.engine.connect() as conn:
            restore: list[str] = []
            if self.sql.sqlite and checkpoint.of(self.db.engine) is None:
                for pragma, value in (("wal_autocheckpoint", 16384),):
                    old = conn.exec_driver_sql(f"PRAGMA {pragma}").scalar()
                    conn.exec_driver_sql(f"PRAGMA {pragma}={value}")
                    restore.append(f"PRAGMA {pragma}={old}")
            conn.commit()
            self._conn = conn
            try:
                yield
            finally:
                self._conn = None
                if conn.in_transaction():
                    conn.rollback()
                for statement in restore:
                    conn.exec_driver_sql(statement)
                conn.commit()

    def _write_chunk(self, rows: list[NormRow]) -> ChunkOutcome:
        now = utcnow()
        out = ChunkOutcome()
        with self._connection() as conn:
            if self.dry_run:
                existing = self._existing(conn, [r.email for r in rows], lock=False)
                for row in rows:
                    stored = existing.get(row.email)
                    if stored is None:
                        out.created += 1
                    elif self._merge(row, stored, account_id=None, probe=True) is None:
                        out.skipped += 1
                    else:
                        out.updated += 1
                conn.rollback()
                return out
            with conn.begin():
                if self.sql.sqlite:
                    # Take SQLite's write lock first, so the reads below see what we will write over.
                    conn.exec_driver_sql(
                        f"UPDATE imports SET status = status WHERE id = {self.sql.ph}", (self.job_id,)
                    )
                existing = self._existing(conn, [r.email for r in rows], lock=True)
                new_rows = [r for r in rows if r.email not in existing]
                need_account = new_rows + [
                    r for r in rows if r.email in existing and existing[r.email]["account_id"] is None
                ]
                accounts, commit_cache = self._resolve_accounts(conn, need_account, now, out)
                self._insert_leads(conn, new_rows, accounts, now, out)
                self._update_leads(conn, rows, existing, accounts, now, out)
                totals = self.totals
                ph = self.sql.ph
                conn.exec_driver_sql(
                    f"UPDATE imports SET created = {ph}, updated = {ph}, skipped = {ph}, failed = {ph} "
                    f"WHERE id = {ph}",
                    (
                        totals.created + out.created,
                        totals.updated + out.updated,
                        totals.skipped + out.skipped,
                        totals.failed + out.failed,
                        self.job_id,
                    ),
                )
            commit_cache()
        self._publish(out)
        return out

    def _publish(self, out: ChunkOutcome) -> None:
        """One ``leads.imported`` domain event per committed chunk (subscribers such as scoring
        get the ids in sets, never one event per lead)."""

        if out.created_ids or out.updated_ids:
            with self.db.transaction() as session:
                emit(
                    session,
                    "leads.imported",
                    import_id=self.job_id,
                    lead_ids=out.created_ids + out.updated_ids,
                    created_ids=out.created_ids,
                    updated_ids=out.updated_ids,
                )

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        if self._conn is not None:
            yield self._conn
        else:
            with self.db.engine.connect() as conn:
                yield conn

    # ------------------------------------------------------------------------------ reads

    def _select(
        self,
        conn: Connection,
        table: Table,
        cols: Sequence[str],
        where: str,
        values: Sequence[Any],
        *,
        lock: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """Rows of ``table`` whose ``where`` column is in ``values``, with the column types'
        result processing (JSON decoded, booleans as bool)."""

        procs = [self.sql.result_processor(table.c[col]) for col in cols]
        names = ", ".join(self.sql.q(col) for col in cols)
        suffix = f" ORDER BY {self.sql.q(where)} FOR UPDATE" if lock and not self.sql.sqlite else ""
        for i in range(0, len(values), _IN_BATCH):
            clause, args = self.sql.in_clause(where, values[i : i + _IN_BATCH])
            result = conn.exec_driver_sql(
                f"SELECT {names} FROM {table.name} WHERE {clause}{suffix}", tuple(args)
            )
            for row in result:
                yield {
                    col: (proc(v) if proc is not None and v is not None else v)
                    for col, proc, v in zip(cols, procs, row, strict=True)
                }

    def _existing(self, conn: Connection, emails: list[str], *, lock: bool) -> dict[str, dict[str, Any]]:
        # Sorted: concurrent imports then lock shared leads in the same order.
        cols = ("id", "email", "version", *LEAD_UPDATE)
        return {m["email"]: m for m in self._select(conn, LEADS, cols, "email", sorted(emails), lock=lock)}

    # ------------------------------------------------------------------------------ accounts

    def _load_accounts(self, conn: Connection, domains: set[str], keys: set[str]) -> None:
        cache = self.accounts
        cols = ("id", "domain", "name_key", *FIRMOGRAPHICS)

        def remember(m: dict[str, Any]) -> None:
            cache.filled[m["id"]] = frozenset(f for f in FIRMOGRAPHICS if m[f] is not None)
            cache.has_domain[m["id"]] = m["domain"] is not None
            if m["domain"] is not None:
                cache.by_domain.setdefault(m["domain"], m["id"])

        wanted = sorted(domains - cache.by_domain.keys() - cache.missing_domains)
        for m in self._select(conn, ACCOUNTS, cols, "domain", wanted):
            remember(m)
        cache.missing_domains.update(d for d in wanted if d not in cache.by_domain)
        wanted = sorted(keys - cache.by_key.keys() - cache.missing_keys)
        for m in sorted(self._select(conn, ACCOUNTS, cols, "name_key", wanted), key=lambda m: m["id"]):
            remember(m)
            cache.by_key.setdefault(m["name_key"], m["id"])
        cache.missing_keys.update(k for k in wanted if k not in cache.by_key)

    def _resolve_accounts(
        self, conn: Connection, rows: list[NormRow], now: datetime, out: ChunkOutcome
    ) -> tuple[dict[int, int], Callable[[], None]]:
        """Line -> account id for the rows, creating accounts as needed (core.identity's rules:
        company domain first, never a free-mail domain, then the normalized company name)."""

        cache = self.accounts
        self._load_accounts(
            conn,
            {r.account_domain for r in rows if r.account_domain},
            {r.company_key for r in rows if r.company_key},
        )
        by_domain: dict[str, int] = {}
        by_key: dict[str, int] = {}
        filled: dict[int, frozenset[str]] = {}
        has_domain: dict[int, bool] = {}
        pending: list[_PendingAccount] = []
        set_domain: dict[int, str] = {}
        fills: dict[int, dict[str, Any]] = {}
        line_account: dict[int, int] = {}

        cache_domain, cache_key, cache_filled = cache.by_domain, cache.by_key, cache.filled
        everything = frozenset(FIRMOGRAPHICS)
        for r in rows:
            domain, ckey = r.account_domain, r.company_key
            # Account ids are never 0 (new ones are negative until inserted), so `or` chains.
            aid = (by_domain.get(domain) or cache_domain.get(domain)) if domain else None
            if aid is None and ckey:
                aid = by_key.get(ckey) or cache_key.get(ckey)
                if aid is not None and domain and not has_domain.get(aid, cache.has_domain.get(aid, True)):
                    # Matched by name, and that account has no domain yet: it gets this one.
                    has_domain[aid] = True
                    by_domain[domain] = aid
                    if aid > 0:
                        set_domain[aid] = domain
                    else:
                        pending[-aid - 1].domain = domain
            if aid is None:
                if not (domain or ckey):
                    continue
                name = r.company_name or (domain or "").split(".")[0].capitalize()
                values = {k: v for k, v in zip(FIRMOGRAPHICS, r.account_values, strict=True) if v is not None}
                acc = _PendingAccount(-(len(pending) + 1), name, ckey or domain or "", domain, values)
                pending.append(acc)
                aid = acc.temp
                if domain:
                    by_domain[domain] = aid
                if ckey:
                    by_key[ckey] = aid
                filled[aid] = frozenset(acc.values)
                has_domain[aid] = domain is not None
            else:
                have = filled.get(aid) or cache_filled.get(aid) or frozenset()
                if have is not everything and have != everything:
                    missing = {
                        k: v
                        for k, v in zip(FIRMOGRAPHICS, r.account_values, strict=True)
                        if v is not None and k not in have
                    }
                    if missing:
                        if aid > 0:
                            fills.setdefault(aid, {}).update(missing)
                        else:
                            pending[-aid - 1].values.update(missing)
                        filled[aid] = have | missing.keys()
            line_account[r.line] = aid

        real: dict[int, int] = {}
        if pending:
            ts = self._ts(now)
            ids: list[int] = []
            one = "(" + ", ".join([self.sql.ph] * len(self._account_cols)) + ")"
            for i in range(0, len(pending), _ACCOUNT_BATCH):
                part = pending[i : i + _ACCOUNT_BATCH]
                params = tuple(
                    value
                    for p in part
                    for value in (
                        p.name[:300],
                        p.name_key,
                        p.domain,
                        *(p.values.get(f) for f in FIRMOGRAPHICS),
                        ts,
                        ts,
                        1,
                    )
                )
                # Name keys are unique among the new accounts (a key that matched would have been
                # used), so the returned rows map back by key whatever their order.
                tuples = ", ".join([one] * len(part))
                returned = conn.exec_driver_sql(
                    f"{self._account_insert_head} VALUES {tuples} RETURNING id, name_key", params
                )
                new_ids = {name_key: new_id for new_id, name_key in returned}
                ids.extend(new_ids[p.name_key] for p in part)
            for p, new_id in zip(pending, ids, strict=True):
                real[p.temp] = new_id
            out.accounts_created += len(pending)
            self._audit(
                conn,
                [
                    ("account", new_id, "create", None, {"name": p.name, "domain": p.domain}, None)
                    for p, new_id in zip(pending, ids, strict=True)
                ],
                now,
            )
        if set_domain:
            ph = self.sql.ph
            conn.exec_driver_sql(
                f"UPDATE accounts SET domain = {ph}, updated_at = {ph}, version = version + 1 "
                f"WHERE id = {ph} AND domain IS NULL",
                [(d, self._ts(now), aid) for aid, d in set_domain.items()],
            )
        if fills:
            q, ph = self.sql.q, self.sql.ph
            sets = ", ".join(f"{q(f)} = COALESCE({q(f)}, {ph})" for f in FIRMOGRAPHICS)
            conn.exec_driver_sql(
                f"UPDATE accounts SET {sets}, updated_at = {ph}, version = version + 1 WHERE id = {ph}",
                [(*(v.get(f) for f in FIRMOGRAPHICS), self._ts(now), aid) for aid, v in fills.items()],
            )

        def resolve(aid: int) -> int:
            return real[aid] if aid < 0 else aid

        result = {line: resolve(aid) for line, aid in line_account.items()}

        def commit_cache() -> None:
            for d, aid in by_domain.items():
                cache.by_domain[d] = resolve(aid)
                cache.missing_domains.discard(d)
            for k, aid in by_key.items():
                cache.by_key[k] = resolve(aid)
                cache.missing_keys.discard(k)
            for aid, have in filled.items():
                cache.filled[resolve(aid)] = have
            for aid, flag in has_domain.items():
                cache.has_domain[resolve(aid)] = flag

        return result, commit_cache

    # ------------------------------------------------------------------------------ leads

    def _insert_leads(
        self,
        conn: Connection,
        rows: list[NormRow],
        accounts: dict[int, int],
        now: datetime,
        out: ChunkOutcome,
    ) -> None:
        if not rows:
            return
        ts = self._ts(now)
        job = self.job_id
        params = [(*r.params, accounts.get(r.line), ts, ts, ts, job, 1) for r in rows]
        n = len(rows)
        if self.sql.sqlite:
            # SQLite gives a new row the largest rowid + 1, and the chunk holds the write lock: the
            # chunk's leads get the next n ids in order (checked; the emails answer otherwise).
            before = conn.exec_driver_sql("SELECT max(id) FROM leads").scalar() or 0
            conn.exec_driver_sql(self._lead_insert, params)
            after = conn.exec_driver_sql("SELECT max(id) FROM leads").scalar()
            if after == before + n:
                new_ids = list(range(before + 1, before + n + 1))
            else:
                new_ids = self._ids_by_email(conn, [r.email for r in rows])
        else:
            # PostgreSQL: take n ids from the sequence first, then COPY the rows with them.
            new_ids = [
                row[0]
                for row in conn.exec_driver_sql(
                    "SELECT nextval(pg_get_serial_sequence('leads', 'id')) FROM generate_series(1, %s)", (n,)
                )
            ]
            self._copy(
                conn,
                LEADS,
                ("id", *self._lead_cols),
                ((lead_id, *_lead_defaults(p)) for lead_id, p in zip(new_ids, params, strict=True)),
            )
        ids = dict(zip([r.email for r in rows], new_ids, strict=True))
        actor_id = self.actor.user_id
        self._insert_many(
            conn,
            STAGES,
            self._stage_cols,
            self._stage_insert,
            [
                (
                    ids[r.email],
                    None,
                    r.params[_STAGE],
                    ts,
                    actor_id,
                    r.params[_STATUS_REASON] or self.reason,
                    r.evidence,
                )
                for r in rows
            ],
        )
        # One audit entry for the transaction's created leads (who, when, why: the import, and
        # each lead's file line); leads.service.lead_audit shows it as each lead's "create"
        # entry. One entry per lead cost ~13 us of SQLite time per row.
        created = sorted(zip(new_ids, (r.line for r in rows), strict=True))
        self._audit(
            conn,
            [(IMPORT_BATCH, created[0][0], "import", None, import_batch_after(job, created), None)],
            now,
        )
        out.created += len(rows)
        out.created_ids.extend(ids[r.email] for r in rows)

    def _ids_by_email(self, conn: Connection, emails: list[str]) -> list[int]:
        found: dict[str, int] = {}
        for i in range(0, len(emails), _IN_BATCH):
            clause, args = self.sql.in_clause("email", emails[i : i + _IN_BATCH])
            result = conn.exec_driver_sql(f"SELECT id, email FROM leads WHERE {clause}", tuple(args))
            found.update((e, lead_id) for lead_id, e in result)
        return [found[e] for e in emails]

    def _merge(
        self, row: NormRow, stored: dict[str, Any], *, account_id: int | None, probe: bool = False
    ) -> dict[str, Any] | None:
        """The lead's new values, or None when the row changes nothing.

        Non-blank cells overwrite (the file is the newer record), except: an unsubscribe is never
        undone by an import, consent is only set while it is unknown, inferred values (time zone
        from the phone, seniority from the title) only fill empty fields, the account is only set
        when the lead has none, and a stored lead's stage is never changed (lifecycle: imported
        evidence counts only when a lead is first stored).
        """

        given = row.given()
        merged = {k: stored[k] for k in LEAD_UPDATE}
        for key, value in given.items():
            if key not in merged:
                continue
            if key == "unsubscribed":
                merged[key] = bool(stored[key]) or bool(value)
            elif key == "consent":
                if stored[key] in (None, "unknown"):
                    merged[key] = value
            elif key in row.soft:
                if stored[key] is None:
                    merged[key] = value
            else:
                merged[key] = value
        if stored["account_id"] is None:
            if probe and (row.account_domain or row.company_key):
                merged["account_id"] = -1
            elif account_id is not None:
                merged["account_id"] = account_id
        if "attributes" in given:
            merged["attributes"] = {**(stored["attributes"] or {}), **given["attributes"]}
        # Bad-lead reasons: the row's, plus stored ones about data the row does not carry.
        kept = [
            r
            for r in (stored["bad_candidate_reasons"] or [])
            if (r.startswith("phone ") and not row.has_phone) or (r.startswith("name ") and not row.has_name)
        ]
        reasons = list(dict.fromkeys([*given.get("bad_candidate_reasons", []), *kept]))
        merged["bad_candidate_reasons"] = reasons or None
        if stored["bad_candidate_reasons"] in (None, []) and not reasons:
            merged["bad_candidate_reasons"] = stored["bad_candidate_reasons"]
        changed = any(merged[k] != stored[k] for k in LEAD_UPDATE)
        return merged if changed else None

    def _update_leads(
        self,
        conn: Connection,
        rows: list[NormRow],
        existing: dict[str, dict[str, Any]],
        accounts: dict[int, int],
        now: datetime,
        out: ChunkOutcome,
    ) -> None:
        updates: list[tuple[Any, ...]] = []
        audits: list[tuple[str, int, str, dict[str, Any] | None, dict[str, Any] | None, None]] = []
        for r in rows:
            stored = existing.get(r.email)
            if stored is None:
                continue
            merged = self._merge(r, stored, account_id=accounts.get(r.line))
            if merged is None:
                out.skipped += 1
                continue
            out.updated += 1
            out.updated_ids.append(stored["id"])
            before = {k: stored[k] for k in LEAD_UPDATE if merged[k] != stored[k]}
            after = {k: merged[k] for k in before}
            audits.append(("lead", stored["id"], "update", before, after, None))
            updates.append(
                (
                    *(
                        _json(merged[k])
                        if k in ("attributes", "bad_candidate_reasons")
                        else self._bool(merged[k])
                        if k == "unsubscribed"
                        else merged[k]
                        for k in LEAD_UPDATE
                    ),
                    self._ts(now),
                    stored["id"],
                )
            )
        if updates:
            conn.exec_driver_sql(self._lead_update, updates)
            self._audit(conn, audits, now)

    # ------------------------------------------------------------------------------ audit

    def _audit(
        self,
        conn: Connection,
        entries: Iterable[tuple[str, int, str, Any, Any, Any]],
        now: datetime,
    ) -> None:
        ts = self._ts(now)
        actor_id, label, reason = self.actor.user_id, self.actor.label, self.reason
        params = [
            (ts, actor_id, label, etype, eid, action, _json(before), _json(after), reason, _json(evidence))
            for etype, eid, action, before, after, evidence in entries
        ]
        if params:
            self._insert_many(conn, AUDIT, self._audit_cols, self._audit_insert, params)

    def _insert_many(
        self, conn: Connection, table: Table, cols: Sequence[str], sql: str, rows: list[tuple[Any, ...]]
    ) -> None:
        if self.sql.sqlite:
            conn.exec_driver_sql(sql, rows)
        else:
            self._copy(conn, table, cols, rows)

    def _copy(
        self, conn: Connection, table: Table, cols: Sequence[str], rows: Iterable[tuple[Any, ...]]
    ) -> None:
        """PostgreSQL: COPY in the chunk's transaction (several times faster than executemany,
        client and server side). A unique violation fails the whole COPY, which the chunk
        retry and split handle like any other refusal."""

        driver: Any = conn.connection.driver_connection
        names = ", ".join(self.sql.q(c) for c in cols)
        statement = f"COPY {table.name} ({names}) FROM STDIN"
        dbapi_error: type[Exception] = self.sql.dialect.loaded_dbapi.Error
        try:
            with driver.cursor() as cur, cur.copy(statement) as copy:
                for row in rows:
                    copy.write_row(row)
        except dbapi_error as exc:  # the driver's own error: classify it as SQLAlchemy would
            raise DBAPIError.instance(statement, None, exc, dbapi_error) from exc
