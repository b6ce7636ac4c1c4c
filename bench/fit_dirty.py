"""What the fit_dirty triggers (leadflow.scoring.models.fit_dirty_ddl) cost the statements that
update leads, on a database of leads made by bench/import.py:

    .venv/bin/python bench/import.py --rows 100000 --dir /tmp/fd_imp   # 100k leads in SQLite
    .venv/bin/python bench/fit_dirty.py --db sqlite:////tmp/fd_imp/bench.db
    .venv/bin/python bench/fit_dirty.py --db postgresql+psycopg://user:pw@127.0.0.1/bench

Every round runs three statements over every lead, each once with the triggers and once with them
dropped, inside a transaction that is rolled back (the database is left as it was):

* the importer's UPDATE (every column of leadflow.imports.writer.LEAD_UPDATE, executemany in
  batches of 5,000) with the job title changed: a fit input, every lead gets marked;
* the same with only the first name changed: the trigger's WHEN is evaluated, nothing is marked;
* a stage move (stage, stage_changed_at and version, as a lead transition writes them): no column
  of the trigger's UPDATE OF list, so the trigger is not even considered. (Until 2026-12-05 this
  case was the event ingest's ``last_activity_at`` update, which the ingest no longer makes.)

Rounds alternate which goes first, and the minimum and median per lead are printed (the machine is
shared; see the load). SQLite runs in this process: CPU time is this process's. PostgreSQL's work
is in the server: wall time only, round trips included (``EXPLAIN ANALYZE`` of a set-based UPDATE
in psql shows the trigger's own time: see docs/PERFORMANCE.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from leadflow.db.base import Database, sqlite_time
from leadflow.imports.writer import LEAD_UPDATE
from leadflow.scoring.models import FIT_TRIGGERS

BATCH = 5000
JSON_COLUMNS = {"attributes", "bad_candidate_reasons"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", required=True, help="database URL (leads made by bench/import.py)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    db = Database(args.db)
    pg = db.dialect == "postgresql"
    ph = "%s" if pg else "?"
    raw: Any = db.engine.raw_connection()
    conn = raw.driver_connection
    select_cols = [f"{c}::text" if pg and c in JSON_COLUMNS else c for c in LEAD_UPDATE]
    rows = conn.execute(f"SELECT {', '.join(select_cols)}, id FROM leads ORDER BY id").fetchall()
    if not rows:
        raise SystemExit("no leads: make some with bench/import.py first")
    title, first = LEAD_UPDATE.index("job_title"), LEAD_UPDATE.index("first_name")
    sets = ", ".join(
        f"{c} = CAST({ph} AS jsonb)" if pg and c in JSON_COLUMNS else f"{c} = {ph}" for c in LEAD_UPDATE
    )
    update = f"UPDATE leads SET {sets}, updated_at = {ph}, version = version + 1 WHERE id = {ph}"
    now = datetime.now(UTC)
    stamp: Any = now if pg else sqlite_time(now)

    def changed(i: int) -> list[tuple[Any, ...]]:
        return [(*r[:i], f"{r[i] or ''}x", *r[i + 1 : -1], stamp, r[-1]) for r in rows]

    by_title, by_name = changed(title), changed(first)
    ids = [int(r[-1]) for r in rows]

    def run_update(params: list[tuple[Any, ...]]) -> Callable[[], None]:
        def go() -> None:
            cur = conn.cursor()
            for i in range(0, len(params), BATCH):
                cur.executemany(update, params[i : i + BATCH])
            cur.close()

        return go

    def stage_move() -> None:
        # A lead transition's columns (leadflow.leads.service.transition_many).
        if pg:
            conn.execute(
                "UPDATE leads SET stage = 'nurture', stage_changed_at = v.at, version = version + 1 "
                "FROM unnest(%s::integer[], %s::timestamptz[]) AS v(id, at) WHERE leads.id = v.id",
                (ids, [now] * len(ids)),
            )
        else:
            conn.executemany(
                "UPDATE leads SET stage = 'nurture', stage_changed_at = ?2, version = version + 1 "
                "WHERE id = ?1",
                [(i, stamp) for i in ids],
            )

    # No marks to start from (the rescore takes them every night), and none left as dead rows
    # in the index: re-marking ids deleted in the same transaction costs PostgreSQL a visibility
    # check per id.
    conn.execute("DELETE FROM fit_dirty")
    conn.commit()
    if pg:
        raw.driver_connection.autocommit = True
        conn.execute("VACUUM ANALYZE fit_dirty")
        raw.driver_connection.autocommit = False

    def timed(work: Callable[[], None], triggers: bool) -> tuple[float, float, int]:
        if not pg:
            conn.execute("BEGIN IMMEDIATE")
        if not triggers:
            for name, table in FIT_TRIGGERS.items():
                conn.execute(f"DROP TRIGGER {name}" + (f" ON {table}" if pg else ""))
        t, cpu = time.perf_counter(), time.process_time()
        work()
        wall, cpu = time.perf_counter() - t, time.process_time() - cpu
        marked = int(conn.execute("SELECT count(*) FROM fit_dirty").fetchone()[0])
        conn.rollback()
        if pg:  # the rolled-back row versions would slow every later round
            raw.driver_connection.autocommit = True
            conn.execute("VACUUM leads")
            raw.driver_connection.autocommit = False
        return wall * 1e6 / len(ids), cpu * 1e6 / len(ids), marked

    cases: list[tuple[str, Callable[[], None]]] = [
        ("import UPDATE, job title changed", run_update(by_title)),
        ("import UPDATE, first name changed", run_update(by_name)),
        ("stage move", stage_move),
    ]
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"database: {db.dialect}, {len(ids):,} leads; {args.rounds} rounds; load before {load}")
    for label, work in cases:
        results: dict[bool, list[tuple[float, float, int]]] = {False: [], True: []}
        for i in range(args.rounds):
            for triggers in (False, True) if i % 2 == 0 else (True, False):
                results[triggers].append(timed(work, triggers))
        parts = []
        for triggers in (False, True):
            walls = [r[0] for r in results[triggers]]
            cpus = [r[1] for r in results[triggers]]
            figure = (
                f"wall {min(walls):.1f}/{statistics.median(walls):.1f}"
                if pg
                else f"CPU {min(cpus):.1f}/{statistics.median(cpus):.1f}"
            )
            parts.append(
                f"{'with' if triggers else 'without'} triggers {figure} us (min/median), "
                f"marked {results[triggers][-1][2]:,}"
            )
        print(f"{label}: " + "; ".join(parts))
    print(f"load after {'/'.join(f'{x:.1f}' for x in os.getloadavg())}")
    raw.close()
    db.dispose()


if __name__ == "__main__":
    main()
