"""Lead scoring benchmark: full set-based rescore and event ingest with incremental scoring.

    .venv/bin/python bench/rescore.py                                   # 20k leads, 200k events
    .venv/bin/python bench/rescore.py --leads 1000000 --events 10000000 # the issue's full run
    .venv/bin/python bench/rescore.py --db postgresql+psycopg://user:pw@127.0.0.1/bench

Leads, accounts and events are generated with NumPy and written with bulk inserts straight into a
fresh, migrated database (no services: this measures scoring, not capture). Then, each with wall
and CPU time and the load average (the machine is shared):

1. a full rescore with the default model, silent (no threshold actions: every lead starts armed,
   so a first scoring would fire for every lead already above a line). The events were written
   behind the scorer's back, so this one builds the engagement state with one pass over the
   events, as after a change of the engagement rules;
2. the daily decay refresh: a full rescore a day later, from the kept state (no event pass);
3. a full rescore after activating a changed model that keeps the engagement rules (fit weighted
   higher), acting on crossings (MQL moves through the lifecycle service, task and sequence
   requests as domain events), unless ``--skip-actions``;
4. event ingest through the batch service (``activities.ingest``, 10,000 events per batch, the
   API's maximum, dated over the last few hours as a live stream is) with incremental rescoring
   of the touched leads after each commit, as the API runs it. ``--http`` sends the same batches
   through the HTTP API in-process instead; ``--no-scoring`` ingests without scoring.

``--dir DIR`` keeps the SQLite file; ``--reuse`` then measures again on it without generating.
PostgreSQL: the database must exist and be empty; the script runs the migrations and drops
nothing. Results are documented in docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, update

from leadflow.auth.principal import SYSTEM
from leadflow.core import scoring as core
from leadflow.core.identity import infer_seniority
from leadflow.db.base import Database
from leadflow.db.migrate import upgrade
from leadflow.leads import activities
from leadflow.scoring import service as scoring
from leadflow.scoring.models import EngagementBuild, LeadScore

TITLES = [
    "CEO", "CTO", "Founder", "VP Sales", "VP of Marketing", "Head of Growth", "Director of Operations",
    "Marketing Manager", "Sales Manager", "Software Engineer", "Data Analyst", "Marketing Coordinator",
    "Account Executive", "Office Manager", "Product Manager", "Consultant", "Student", "Intern",
]  # fmt: skip
INDUSTRIES = ["Software", "Financial Services", "Healthcare", "Manufacturing", "Retail", "Education", "Media"]
FREE = ["gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "gmx.de"]
TYPES = [
    ("page_view", 48), ("email_open", 20), ("email_click", 8), ("form_submit", 4), ("content_download", 5),
    ("webinar", 3), ("demo_request", 1), ("pricing_request", 1), ("trial_start", 1), ("call", 4),
    ("email_sent", 3), ("meeting", 1), ("note", 1),
]  # fmt: skip
URLS = [
    "/pricing",
    "/pricing/enterprise",
    "/",
    "/features",
    "/docs/setup",
    "/blog/lead-scoring",
    "/customers",
]


def ts(dialect: str, t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S.%f") + ("+00:00" if dialect == "postgresql" else "")


def insert(db: Database, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    """Bulk insert: COPY on PostgreSQL, executemany on SQLite."""

    if not rows:
        return
    with db.engine.begin() as conn:
        if db.dialect == "postgresql":
            raw: Any = conn.connection.driver_connection
            with raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join("?" for _ in columns)
            conn.exec_driver_sql(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)


def generate(db: Database, n_leads: int, n_events: int, seed: int, now: datetime) -> None:
    rng = np.random.default_rng(seed)
    d = db.dialect
    stamp = ts(d, now)
    n_accounts = max(1, n_leads // 8)
    sizes = rng.lognormal(4.5, 1.6, n_accounts).astype(np.int64)
    industry = rng.integers(0, len(INDUSTRIES), n_accounts)
    insert(
        db,
        "accounts",
        ["id", "name", "name_key", "domain", "industry", "employee_count", "country", "created_at",
         "updated_at", "version"],
        [
            (i + 1, f"Company {i + 1}", f"company {i + 1}", f"company{i + 1}.example",
             INDUSTRIES[industry[i]], int(sizes[i]), "US", stamp, stamp, 1)
            for i in range(n_accounts)
        ],
    )  # fmt: skip
    seniority = {t: infer_seniority(t) for t in TITLES}
    step = 200_000
    for start in range(0, n_leads, step):
        k = min(step, n_leads - start)
        title = rng.integers(0, len(TITLES), k)
        account = rng.integers(1, n_accounts + 1, k)
        free = rng.random(k) < 0.2
        freemail = rng.integers(0, len(FREE), k)
        origin = rng.random(k) < 0.8
        unsub = rng.random(k) < 0.03
        rows = []
        for j in range(k):
            i = start + j + 1
            t = TITLES[title[j]]
            domain = FREE[freemail[j]] if free[j] else f"company{account[j]}.example"
            rows.append(
                (i, f"First{i}", f"Last{i}", f"lead{i}@{domain}", t, seniority[t],
                 None if free[j] else int(account[j]), "US", "marketing" if origin[j] else "sales", "new",
                 "unknown", bool(unsub[j]), stamp, stamp, stamp, 1)
            )  # fmt: skip
        insert(
            db,
            "leads",
            ["id", "first_name", "last_name", "email", "job_title", "seniority", "account_id", "country",
             "origin", "stage", "consent", "unsubscribed", "created_at", "updated_at", "stage_changed_at",
             "version"],
            rows,
        )  # fmt: skip
    names = [t for t, _ in TYPES]
    weights = np.array([w for _, w in TYPES], dtype=np.float64)
    weights /= weights.sum()
    year = 365 * 86400
    url_json = [json.dumps({"url": u}) for u in URLS]
    step = 500_000
    for start in range(0, n_events, step):
        k = min(step, n_events - start)
        # Engagement is skewed: a few leads are very active, most leads have a handful of events.
        lead = np.minimum((rng.pareto(1.2, k) * n_leads / 20).astype(np.int64) % n_leads + 1, n_leads)
        lead = np.where(rng.random(k) < 0.5, rng.integers(1, n_leads + 1, k), lead)
        kind = rng.choice(len(names), size=k, p=weights)
        age = (rng.random(k) ** 2 * year).astype(np.int64)  # more recent events are more common
        url = rng.integers(0, len(URLS), k)
        # Timestamps as text in bulk (the storage format of UTCDateTime), not one datetime per event.
        at = np.datetime64(now.replace(tzinfo=None), "us") - age.astype("timedelta64[s]")
        stamps = np.char.replace(np.datetime_as_string(at, unit="us"), "T", " ")
        if d == "postgresql":
            stamps = np.char.add(stamps, "+00:00")
        kinds = np.array(names, dtype=object)[kind]
        props = np.where(kind == names.index("page_view"), np.array(url_json, dtype=object)[url], None)
        rows2 = list(
            zip(lead.tolist(), kinds.tolist(), stamps.tolist(), props.tolist(), [stamp] * k, strict=True)
        )
        insert(db, "activities", ["lead_id", "type", "occurred_at", "properties", "created_at"], rows2)
        print(f"  events {start + k:>11,} / {n_events:,}", flush=True)
    if d == "postgresql":
        with db.engine.begin() as conn:
            for table in ("accounts", "leads"):
                conn.exec_driver_sql(f"SELECT setval('{table}_id_seq', (SELECT max(id) FROM {table}))")
            conn.exec_driver_sql("ANALYZE")
    else:
        with db.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")


def progress_printer(label: str) -> scoring.ProgressFn:
    last = [0.0]

    def show(done: int, total: int) -> None:
        now = time.perf_counter()
        if now - last[0] > 2 or done == total:
            last[0] = now
            print(f"  {label}: {done:>9,} / {total:,}", flush=True)

    return show


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ingest_floor(
    db: Database, n_leads: int, n_events: int, batch: int, seed: int, now: datetime, without: frozenset[str]
) -> None:
    """SQLite's own floor for step 4: only the writes a batch of ingested events makes with
    incremental scoring, from tuples built in advance (no validation, no reads, no scoring
    arithmetic, no Python between statements), in the product's two transactions: the events,
    then per distinct lead its engagement state, score and history point. Same connection
    settings as the product (background checkpoints included). ``without``: ``states`` leaves
    out the engagement state upsert, to measure what a storage without that B-tree would cost (a
    what-if: the product writes it). Until 2026-12-05 the first transaction also updated each
    touched lead's ``last_activity_at`` (now derived from the events; docs/PERFORMANCE.md)."""

    from leadflow.db import checkpoint

    rng = np.random.default_rng(seed + 2)
    raw: Any = db.engine.raw_connection()
    conn = raw.driver_connection
    ck = checkpoint.of(db.engine)
    state = conn.execute(
        "SELECT ruleset, ref, events, last_event_id, max_at, state FROM lead_engagement LIMIT 1"
    ).fetchone()
    armed = conn.execute("SELECT armed FROM lead_scores LIMIT 1").fetchone()[0]
    run = time.time_ns()
    plans = []
    for b in range(0, n_events, batch):
        k = min(batch, n_events - b)
        leads = rng.integers(1, n_leads + 1, k).tolist()
        at = ts("sqlite", now)
        events = [
            (lid, "page_view", at, '{"url": "/pricing"}', f"floor-{run}-{b + j}", None, None, at)
            for j, lid in enumerate(leads)
        ]
        distinct = sorted(set(leads))
        plans.append(
            (
                events,
                [(i, *state) for i in distinct],
                [(i, 1, 30.0, 20.0, 40.0 + (i % 40), "B", None, armed, at) for i in distinct],
                [(i, at, 30.0, 20.0, 40.0 + (i % 40), 1) for i in distinct],
            )
        )
    t, cpu = time.perf_counter(), time.process_time()
    for events, states, scores, history in plans:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO activities (lead_id, type, occurred_at, properties, external_id, source, actor_id, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            events,
        )
        conn.execute("COMMIT")
        if ck is not None:
            ck.notify()
        conn.execute("BEGIN IMMEDIATE")
        if "states" not in without:
            conn.executemany(
                "INSERT INTO lead_engagement (lead_id, ruleset, ref, events, last_event_id, max_at, state) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (lead_id) DO UPDATE SET "
                "ruleset = excluded.ruleset, ref = excluded.ref, events = excluded.events, "
                "last_event_id = excluded.last_event_id, max_at = excluded.max_at, state = excluded.state",
                states,
            )
        conn.executemany(
            "INSERT INTO lead_scores (lead_id, model_version, fit, engagement, total, grade, explanation, "
            "armed, computed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (lead_id) DO UPDATE SET "
            "model_version = excluded.model_version, fit = excluded.fit, engagement = excluded.engagement, "
            "total = excluded.total, grade = excluded.grade, armed = excluded.armed, "
            "computed_at = excluded.computed_at",
            scores,
        )
        conn.executemany(
            "INSERT INTO score_history (lead_id, at, fit, engagement, total, model_version) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            history,
        )
        conn.execute("COMMIT")
        if ck is not None:
            ck.notify()
    took, cpu = time.perf_counter() - t, time.process_time() - cpu
    raw.close()
    left_out = f", without {' and '.join(sorted(without))}" if without else ""
    print(
        f"INGEST FLOOR (SQLite writes only{left_out}): "
        f"{n_events:,} events in {len(plans)} batches of {batch:,} "
        f"in {took:.2f}s wall, {cpu:.2f}s CPU (this process, checkpoint thread included) = "
        f"{n_events / took:,.0f} events/s ({n_events / cpu:,.0f} per CPU second); load {load()}"
    )


def children_cpu() -> float:
    """CPU seconds of this process's ended children (the full rescore's second process ends with
    the rescore)."""

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--leads", type=int, default=20_000)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--ingest", type=int, default=50_000, help="events to ingest in the ingest benchmark")
    ap.add_argument("--batch", type=int, default=10_000, help="events per ingest batch (API maximum 10,000)")
    ap.add_argument("--chunk", type=int, default=scoring.CHUNK, help="leads per rescore transaction")
    ap.add_argument("--db", help="database URL (default: a fresh SQLite file in a temporary directory)")
    ap.add_argument("--dir", help="directory for the SQLite file (kept)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--http", action="store_true", help="ingest through the HTTP API (in-process) instead")
    ap.add_argument("--skip-actions", action="store_true", help="skip the rescore that acts on crossings")
    ap.add_argument("--no-scoring", action="store_true", help="ingest without incremental scoring (baseline)")
    ap.add_argument(
        "--only-ingest",
        action="store_true",
        help="with --reuse: skip the full rescores (steps 1-3), measure the ingest alone",
    )
    ap.add_argument(
        "--skip-build",
        action="store_true",
        help="with --reuse: skip step 1 (use the engagement states an earlier run built); steps 2-3 "
        "then run two days after generation",
    )
    ap.add_argument("--silent", action="store_true", help="step 3 does not act on crossings either")
    ap.add_argument(
        "--ingest-floor",
        action="store_true",
        help="with --reuse, SQLite: instead of step 4, only the writes its batches make (the floor)",
    )
    ap.add_argument(
        "--floor-without",
        action="append",
        choices=["states"],
        default=[],
        help="with --ingest-floor: leave out the engagement state upsert (a what-if figure for "
        "another storage layout)",
    )
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="with --dir or --db: keep a database generated by an earlier run (skip generation)",
    )
    args = ap.parse_args()

    tmp = None
    if args.db:
        url = args.db
    else:
        folder = Path(args.dir) if args.dir else Path(tmp := tempfile.mkdtemp(prefix="lf-rescore-"))
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "rescore.db"
        if not args.reuse:
            for suffix in ("", "-wal", "-shm", ".now"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{path}"
    db = Database(url)
    upgrade(db.engine)
    with db.engine.connect() as conn:
        existing = conn.exec_driver_sql("SELECT count(*) FROM leads").scalar() or 0
    version = sys.version.split()[0]
    # The generation time, for --reuse (events are dated relative to it).
    stamp_file = (
        Path(tempfile.gettempdir()) / f"lf-rescore-{hashlib.sha256(url.encode()).hexdigest()[:16]}.now"
    )
    if args.reuse and existing:
        now = datetime.fromisoformat(stamp_file.read_text()) if stamp_file.exists() else datetime.now(UTC)
        args.leads = int(existing)
        with db.engine.connect() as conn:
            args.events = int(conn.exec_driver_sql("SELECT count(*) FROM activities").scalar() or 0)
        print(
            f"database: {db.dialect}; reusing {args.leads:,} leads, {args.events:,} events; python {version}"
        )
    else:
        now = datetime.now(UTC)
        print(f"database: {db.dialect}; {args.leads:,} leads, {args.events:,} events; python {version}")
        t = time.perf_counter()
        generate(db, args.leads, args.events, args.seed, now)
        stamp_file.write_text(now.isoformat())
        print(f"generated in {time.perf_counter() - t:.1f}s")

    def rescore(label: str, as_of: datetime, fire: bool) -> None:
        t, cpu, side = time.perf_counter(), time.process_time(), children_cpu()
        res = scoring.rescore_all(
            db, SYSTEM, as_of=as_of, chunk=args.chunk, fire=fire, progress=progress_printer("rescore")
        )
        took, cpu, side = time.perf_counter() - t, time.process_time() - cpu, children_cpu() - side
        print(
            f"FULL RESCORE, {label}: {res.leads:,} leads, {args.events:,} events in {took:.2f}s wall, "
            f"{cpu:.2f}s CPU (+ {side:.2f}s in the second process) = {res.leads / took:,.0f} leads/s; "
            "engagement "
            f"{'rebuilt from the events' if res.rebuilt else 'from the kept state'}; {res.changed:,} scores "
            f"moved ({getattr(res, 'written', res.changed):,} written), {res.history:,} history points, "
            f"{res.crossings:,} crossings; "
            f"peak RSS {rss_mib():,.0f} MiB; load {load()}"
        )
        print("  phases: " + ", ".join(f"{k} {v:.2f}s" for k, v in res.timings.items()))

    if args.only_ingest and not (args.reuse and existing):
        ap.error("--only-ingest needs --reuse and a database generated by an earlier run")
    if args.skip_build and not (args.reuse and existing):
        ap.error("--skip-build needs --reuse and a database generated by an earlier run")
    later = now + timedelta(days=2 if args.skip_build else 1)
    if not args.only_ingest and not args.skip_build:
        # 1. The first rescore builds the engagement state with one pass over the events (as
        #    after a change of the engagement rules); silent: every lead starts armed.
        with db.transaction() as s:
            s.execute(delete(EngagementBuild))
            # A reused database keeps the last run's scores, computed for a day ahead (step 2):
            # they would count as newer than this rescore and be left alone.
            s.execute(update(LeadScore).values(computed_at=now - timedelta(days=1)))
        rescore("engagement state built (silent)", now, False)
    if not args.only_ingest:
        # 2. The nightly decay refresh: a day later, no event pass.
        rescore("a day later, decay refresh (silent)", later, False)
    if not args.skip_actions and not args.only_ingest:
        # 3. A model change that keeps the engagement rules (fit weighted higher), acting.
        doc = core.default_model().to_document()
        doc["name"] = "Fit weighted"
        doc["weights"] = {"fit": 0.6, "engagement": 0.4}
        with db.transaction() as s:
            scoring.save_model(s, SYSTEM, doc, activate=True)
        acting = not args.silent
        rescore(f"after a model change (weights), {'acting' if acting else 'silent'}", later, acting)

    if args.ingest_floor:
        if db.dialect != "sqlite" or not (args.reuse and existing):
            ap.error("--ingest-floor needs --reuse and a SQLite database generated by an earlier run")
        ingest_floor(db, args.leads, args.ingest, args.batch, args.seed, now, frozenset(args.floor_without))
        db.dispose()
        return

    # Ingest: batches of events for random leads, incremental scoring after each commit.
    if not args.no_scoring:
        scoring.register(db)
    rng = np.random.default_rng(args.seed + 1)
    run = time.time_ns()  # fresh external ids: a reused database has the last run's
    batches = []
    for b in range(0, args.ingest, args.batch):
        k = min(args.batch, args.ingest - b)
        lead = rng.integers(1, args.leads + 1, k)
        kind = rng.choice(
            ["page_view", "email_open", "email_click", "webinar"], size=k, p=[0.6, 0.25, 0.1, 0.05]
        )
        batches.append(
            [
                {
                    "lead_id": int(lead[j]),
                    "type": str(kind[j]),
                    "occurred_at": (now - timedelta(seconds=int(j))).isoformat(),
                    "properties": {"url": "/pricing"} if kind[j] == "page_view" else None,
                    "external_id": f"bench-{run}-{b + j}",
                }
                for j in range(k)
            ]
        )
    t, cpu = time.perf_counter(), time.process_time()
    if args.http:
        from fastapi.testclient import TestClient

        from leadflow.api import create_app
        from leadflow.auth import service as auth
        from leadflow.auth.models import Role

        with db.transaction() as s:
            user = auth.create_user(
                s, SYSTEM, name="Bench", email=f"bench-{run}@leadflow.example", role=Role.ADMIN
            )
            token = auth.create_token(s, SYSTEM, user.id, name="bench").token
        with TestClient(create_app(db)) as client:
            t, cpu = time.perf_counter(), time.process_time()
            for batch in batches:
                r = client.post(
                    "/api/events", json={"events": batch}, headers={"Authorization": f"Bearer {token}"}
                )
                assert r.status_code == 200, r.text
    else:
        for batch in batches:
            with db.transaction() as s:
                out = activities.ingest(s, SYSTEM, batch)
                assert not out.errors, out.errors[:3]
    took, cpu = time.perf_counter() - t, time.process_time() - cpu
    print(
        f"INGEST{' (HTTP)' if args.http else ''}: {args.ingest:,} events in {len(batches)} batches "
        f"of {args.batch:,} in {took:.2f}s wall, {cpu:.2f}s CPU = {args.ingest / took:,.0f} events/s "
        f"({args.ingest / cpu:,.0f} per CPU second), "
        + ("without scoring (--no-scoring)" if args.no_scoring else "incremental scoring included")
        + f"; load {load()}"
    )
    scoring.unregister(db)
    db.dispose()
    if tmp and not os.environ.get("KEEP"):
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
