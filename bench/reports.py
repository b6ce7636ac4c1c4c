"""Report benchmark: every registered report over a generated CRM history.

    .venv/bin/python bench/reports.py                      # 1,000,000 leads (the issue's target)
    .venv/bin/python bench/reports.py --leads 100000
    .venv/bin/python bench/reports.py --db postgresql+psycopg://user:pw@127.0.0.1/bench
    .venv/bin/python bench/reports.py --db sqlite:////tmp/x/bench.db --reuse   # time again, no regeneration

Generates ``--leads`` leads with realistic stage histories (a year of cohorts, eight sources, 96
campaigns, lognormal times in stage, marketing leads through MQL and sales-sourced ones straight
to SAL, nurture/unqualified exits, opportunities in every pipeline stage, won and lost with
reasons) with NumPy and writes them with bulk inserts (executemany on SQLite, COPY on
PostgreSQL) straight into a fresh, migrated database. Then it builds the funnel facts once
(timed), and runs every report ``--runs`` times as an admin (all data) and as a sales rep (own
data), printing the median and the slowest run in milliseconds. Each run includes the incremental
fact refresh the API does before a funnel or velocity report.

PostgreSQL: the database must exist and be empty. Figures: docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import text

from leadflow.auth.models import Role
from leadflow.auth.principal import Principal
from leadflow.core import pipeline as core
from leadflow.db.base import Database
from leadflow.db.migrate import upgrade
from leadflow.pipeline import service as pipelines
from leadflow.reports import registry
from leadflow.reports.facts import refresh

SOURCES = ["organic_search", "paid_search", "webinar", "content_download", "linkedin", "trade_show",
           "referral", "website"]  # fmt: skip
SOURCE_P = np.array([22, 18, 14, 14, 10, 8, 6, 8], dtype=float)
CHANNELS = ["google", "linkedin", "email", "website", "webinar", "bing", "event"]
DAY = 86400.0
# Funnel: probability of moving on from each stage, and median days spent there (lognormal).
P_NEXT = {"lead": 0.38, "mql": 0.55, "sal": 0.6, "sql": 0.72}
MEDIAN_DAYS = {"lead": 9.0, "mql": 3.0, "sal": 8.0, "sql": 6.0, "opp": 35.0}
REPS = 24
PARAMS: dict[str, list[dict[str, str]]] = {
    "funnel": [{"group_by": "cohort"}, {"group_by": "source"}, {"group_by": "campaign"}],
    "velocity": [{}],
    "forecast": [{"group_by": "month"}, {"group_by": "month_owner"}],
    "stale_deals": [{}],
    "attribution": [{}],
    "leaderboard": [{}],
    "loss_reasons": [{}],
}


def stamps(dialect: str, seconds: np.ndarray) -> list[str]:
    """Epoch seconds -> the text each backend stores (SQLite: SQLAlchemy's format, naive UTC)."""

    micros = np.round(seconds * 1e6).astype(np.int64)
    s = np.datetime_as_string(micros.astype("datetime64[us]"), unit="us")
    s = np.char.replace(s, "T", " ")
    if dialect == "postgresql":
        s = np.char.add(s, "+00:00")
    return s.tolist()  # type: ignore[no-any-return]


def insert(db: Database, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
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


def lognormal(rng: np.random.Generator, median_days: float, n: int) -> np.ndarray:
    return np.asarray(rng.lognormal(np.log(median_days * DAY), 0.8, n))


def generate(db: Database, n: int, seed: int, now: float) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    d = db.dialect
    year = 365 * DAY
    # Users: an admin, two managers and REPS reps in two teams.
    users = [(1, "Admin", "admin@bench.example", "admin", None)]
    users += [(2 + t, f"Manager {t}", f"manager{t}@bench.example", "manager", f"team{t}") for t in range(2)]
    users += [
        (4 + r, f"Rep {r:02d}", f"rep{r}@bench.example", "sales_rep", f"team{r % 2}") for r in range(REPS)
    ]
    created = stamps(d, np.array([now - year - 30 * DAY]))[0]
    insert(
        db,
        "users",
        ["id", "name", "email", "role", "team", "active", "created_at"],
        [(*u, True, created) for u in users],
    )
    rep_ids = np.arange(4, 4 + REPS)

    created_at = now - rng.random(n) * year
    source = rng.choice(len(SOURCES), n, p=SOURCE_P / SOURCE_P.sum())
    month = ((created_at - (now - year)) // (year / 12)).astype(int)
    campaign = source * 12 + month
    sales = rng.random(n) < 0.12
    owned = sales | (rng.random(n) < 0.6)
    owner = np.where(owned, rng.choice(rep_ids, n), 0)

    # Times of entering each stage (NaN: never). Marketing: new -> mql -> sal ...; sales: sal ...
    t_mql = np.where(
        ~sales & (rng.random(n) < P_NEXT["lead"]), created_at + lognormal(rng, MEDIAN_DAYS["lead"], n), np.nan
    )
    t_sal = np.where(
        sales,
        created_at,
        np.where(rng.random(n) < P_NEXT["mql"], t_mql + lognormal(rng, MEDIAN_DAYS["mql"], n), np.nan),
    )
    t_sql = np.where(rng.random(n) < P_NEXT["sal"], t_sal + lognormal(rng, MEDIAN_DAYS["sal"], n), np.nan)
    t_opp = np.where(rng.random(n) < P_NEXT["sql"], t_sql + lognormal(rng, MEDIAN_DAYS["sql"], n), np.nan)
    outcome = rng.random(n)  # < 0.3 won, < 0.75 lost, else still open
    close_at = t_opp + lognormal(rng, MEDIAN_DAYS["opp"], n)
    t_won = np.where(outcome < 0.3, close_at, np.nan)
    t_lost = np.where((outcome >= 0.3) & (outcome < 0.75), close_at, np.nan)
    times = [t_mql, t_sal, t_sql, t_opp, t_won]
    # Nothing happens after now: a later step (and every one after it) did not happen yet.
    for i, t in enumerate(times):
        late = ~np.isnan(t) & (t > now)
        for later in times[i:]:
            later[late] = np.nan
        if i == 3:
            t_lost[late] = np.nan
    t_lost[np.isnan(t_opp) | (t_lost > now)] = np.nan
    owner = np.where(~np.isnan(t_sal) & (owner == 0), rng.choice(rep_ids, n), owner)  # sales works it

    names = ["mql", "sal", "sql", "opportunity", "customer"]
    stage = np.full(n, "new", dtype=object)
    last_at = created_at.copy()
    for name, t in zip(names, times, strict=True):
        hit = ~np.isnan(t)
        stage[hit] = name
        last_at[hit] = t[hit]
    # Leads that stopped: some go to nurture (marketing) or unqualified (sales), after a while.
    stopped = (stage != "customer") & (stage != "opportunity") & (rng.random(n) < 0.45)
    exit_at = last_at + lognormal(rng, 20, n)
    stopped &= exit_at < now
    exit_stage = np.where(np.isin(stage, ["sal", "sql"]), "unqualified", "nurture")
    stage[stopped] = exit_stage[stopped]
    last_at[stopped] = exit_at[stopped]
    recycled = ~np.isnan(t_lost) & (rng.random(n) < 0.3)
    stage[recycled] = "recycled"
    last_at[recycled] = t_lost[recycled]

    ids = np.arange(1, n + 1)
    c_txt, l_txt = stamps(d, created_at), stamps(d, last_at)
    owner_list = [int(o) if o else None for o in owner]
    src_list = [SOURCES[s] for s in source]
    camp_list = [f"{SOURCES[s // 12]}-m{s % 12:02d}" for s in campaign]
    started = time.perf_counter()
    origin = np.where(sales, "sales", "marketing").tolist()
    rows = [
        (int(i), f"lead{i}@bench{i % 9973}.example", src_list[k], camp_list[k], origin[k],
         owner_list[k], str(stage[k]), "unknown", False, c_txt[k], l_txt[k], l_txt[k], 1)
        for k, i in enumerate(ids)
    ]  # fmt: skip
    insert(
        db,
        "leads",
        ["id", "email", "source", "campaign", "origin", "owner_id", "stage", "consent", "unsubscribed",
         "created_at", "updated_at", "stage_changed_at", "version"],
        rows,
    )  # fmt: skip
    del rows
    print(f"  leads: {n:,} in {time.perf_counter() - started:.1f}s", flush=True)

    # Stage history: the first stage, every move, the exits.
    started = time.perf_counter()
    sc: list[tuple[Any, ...]] = []
    first = np.where(sales, "sal", "new")
    for k in range(n):
        sc.append((int(ids[k]), None, first[k], c_txt[k]))
    prev = first.astype(object)
    for name, t in zip(names, times, strict=True):
        hit = np.flatnonzero(~np.isnan(t) & ~((name == "sal") & sales))
        txt = stamps(d, t[hit])
        for j, k in enumerate(hit):
            sc.append((int(ids[k]), prev[k], name, txt[j]))
            prev[k] = name
    for mask, name in ((stopped, None), (recycled, "recycled")):
        hit = np.flatnonzero(mask)
        txt = stamps(d, last_at[hit])
        for j, k in enumerate(hit):
            sc.append((int(ids[k]), prev[k], name or str(stage[k]), txt[j]))
    sc.sort(key=lambda r: r[3])  # ids grow with time, as in a CRM in use for a year
    insert(db, "stage_changes", ["lead_id", "from_stage", "to_stage", "at"], sc)
    n_sc = len(sc)
    del sc
    print(f"  stage changes: {n_sc:,} in {time.perf_counter() - started:.1f}s", flush=True)

    # Opportunities in the default pipeline, with their stage history.
    started = time.perf_counter()
    with db.transaction() as s:
        pipe = pipelines.ensure_defaults(s)
        stages = pipelines.stages_of(s, pipe.id)
    open_stages = [st for st in stages if st.kind == "open"]
    won_stage = next(st for st in stages if st.kind == "won")
    lost_stage = next(st for st in stages if st.kind == "lost")
    opp_k = np.flatnonzero(~np.isnan(t_opp))
    m = len(opp_k)
    amount = np.round(rng.lognormal(np.log(18000), 0.9, m), -2)
    reasons = [k for k, _ in core.DEFAULT_LOSS_REASONS]
    wins = [k for k, _ in core.DEFAULT_WIN_REASONS]
    at_open = rng.integers(0, len(open_stages), m)  # the open stage an open deal sits in
    opp_rows: list[tuple[Any, ...]] = []
    osc_rows: list[tuple[Any, ...]] = []
    o_txt = stamps(d, t_opp[opp_k])
    for j, k in enumerate(opp_k):
        oid = j + 1
        won, lost = not np.isnan(t_won[k]), not np.isnan(t_lost[k])
        end = t_won[k] if won else (t_lost[k] if lost else now)
        depth = (
            len(open_stages)
            if won
            else int(at_open[j]) + 1
            if not lost
            else int(rng.integers(1, len(open_stages) + 1))
        )
        cut = np.sort(rng.random(depth - 1)) * (end - t_opp[k]) + t_opp[k]
        enter = [t_opp[k], *cut.tolist()]
        path = open_stages[:depth]
        if won or lost:
            path = [*path, won_stage if won else lost_stage]
            enter.append(end)
        st = path[-1]
        status = "won" if won else "lost" if lost else "open"
        entered_txt = stamps(d, np.array(enter))
        close_date = datetime.fromtimestamp(
            end if status != "open" else now + float(rng.integers(-20, 120)) * DAY, UTC
        ).date()
        stale = status == "open" and rng.random() < 0.25
        recent = now - float(rng.integers(0, 6)) * DAY
        last_touch = enter[-1] if stale else max(enter[-1], recent)
        why = reasons[int(rng.integers(0, len(reasons)))] if lost else wins[int(rng.integers(0, len(wins)))]
        touched = stamps(d, np.array([last_touch]))[0]
        channel = CHANNELS[int(rng.integers(0, len(CHANNELS)))]
        opp_rows.append(
            (oid, f"Deal {oid}", int(ids[k]), int(ids[k]), pipe.id, st.id, owner_list[k], float(amount[j]),
             "USD", close_date, st.probability, st.forecast_category, status, why if won or lost else None,
             entered_txt[-1] if status != "open" else None, entered_txt[-1], touched,
             src_list[k], channel, o_txt[j], entered_txt[-1], 1, close_date.strftime("%Y-%m"))
        )  # fmt: skip
        for i, stg in enumerate(path):
            secs = None if i == 0 else int(enter[i] - enter[i - 1])
            osc_rows.append(
                (oid, path[i - 1].id if i else None, stg.id, entered_txt[i], secs, core.duration_bucket(secs),
                 float(amount[j]))
            )  # fmt: skip
    insert(
        db,
        "opportunities",
        ["id", "name", "lead_id", "contact_lead_id", "pipeline_id", "stage_id", "owner_id", "amount",
         "currency", "expected_close_date", "probability", "forecast_category", "status", "close_reason",
         "closed_at", "stage_entered_at", "last_activity_at", "first_touch_source", "last_touch_source",
         "created_at", "updated_at", "version", "forecast_month"],
        opp_rows,
    )  # fmt: skip
    insert(
        db,
        "opportunity_stage_changes",
        [
            "opportunity_id",
            "from_stage_id",
            "to_stage_id",
            "at",
            "seconds_in_previous",
            "duration_bucket",
            "amount",
        ],
        osc_rows,
    )
    if d == "postgresql":
        with db.engine.begin() as conn:
            for table in ("users", "leads", "opportunities"):
                seq = f"pg_get_serial_sequence('{table}', 'id')"
                conn.execute(text(f"SELECT setval({seq}, (SELECT MAX(id) FROM {table}))"))
            conn.execute(text("ANALYZE"))
    else:
        with db.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    print(
        f"  opportunities: {m:,} ({len(osc_rows):,} stage changes) in {time.perf_counter() - started:.1f}s",
        flush=True,
    )
    return {"leads": n, "stage_changes": n_sc, "opportunities": m}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--leads", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--db", help="Database URL (default: a new SQLite file in a temp dir)")
    ap.add_argument("--reuse", action="store_true", help="The database holds a generated set: migrate, time")
    args = ap.parse_args()
    tmp = None
    url = args.db
    if url is None:
        tmp = tempfile.mkdtemp(prefix="lf-reports-")
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
    db = Database(url)
    upgrade(db.engine)
    if args.reuse:
        print(f"{db.dialect}: reusing {url.rsplit('@', 1)[-1]}", flush=True)
    else:
        print(f"{db.dialect}: generating {args.leads:,} leads ({os.cpu_count()} cpus)", flush=True)
        started = time.perf_counter()
        counts = generate(db, args.leads, args.seed, time.time())
        print(f"generated in {time.perf_counter() - started:.1f}s: {counts}")
    with db.transaction() as s:
        res = refresh(s, full=not args.reuse)
    print(
        f"funnel facts built: {res.leads:,} leads in {res.seconds:.1f}s "
        "(once; later refreshes are incremental)"
    )
    if db.dialect == "postgresql":
        # After a bulk load the visibility map is empty and every index-only scan would visit the
        # heap; autovacuum fixes that in time, the benchmark does not wait for it.
        started = time.perf_counter()
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM (ANALYZE)")
        print(f"VACUUM (ANALYZE) in {time.perf_counter() - started:.1f}s")
    admin = Principal(user_id=1, label="bench admin", role=Role.ADMIN)
    rep = Principal(user_id=4, label="bench rep", role=Role.SALES_REP, team="team0")
    # CPU ms: this process's CPU time per run (SQLite works in-process, so on a machine shared
    # with other jobs it is the work itself, without the wait for a core); PostgreSQL's work happens
    # in the server, so there only the wall time counts.
    print(f"\n{'report':<34} {'as':<6} {'median ms':>10} {'max ms':>8} {'CPU ms':>8} {'rows':>6}")
    worst = 0.0
    for name, variants in PARAMS.items():
        for params in variants:
            for who, actor in (("admin", admin), ("rep", rep)):
                times, cpu = [], []
                rows = 0
                for _ in range(args.runs):
                    t0, c0 = time.perf_counter(), time.process_time()
                    with db.transaction() as s:
                        rows = len(registry.run(s, actor, name, params)[2].rows)
                    times.append((time.perf_counter() - t0) * 1000)
                    cpu.append((time.process_time() - c0) * 1000)
                label = name + (" " + ",".join(f"{k}={v}" for k, v in params.items()) if params else "")
                med = statistics.median(times)
                worst = max(worst, med)
                c = statistics.median(cpu)
                print(f"{label:<34} {who:<6} {med:>10.1f} {max(times):>8.1f} {c:>8.1f} {rows:>6}", flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nslowest median: {worst:.1f} ms (target <= 300 ms); load average at the end {load:.1f}")
    db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
