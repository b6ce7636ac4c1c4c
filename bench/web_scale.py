"""The web UI's heavy queries at scale: the inbox filtered by source + unassigned, and the
dashboard's lead aggregates (from the reports feature's funnel facts), with their query plans.

    .venv/bin/python bench/web_scale.py --leads 1000000
    LEADFLOW_BENCH_DATABASE_URL=postgresql+psycopg://... .venv/bin/python bench/web_scale.py --leads 1000000

Bare leads (bench/web_pages.py's ``add_bare_leads``: spread over stages, sources and owners, a
share unassigned) in a fresh database; the figures are service-layer times (median and worst of
--runs, ms) as an admin (no visibility filter) and as a team manager. The plans are
EXPLAIN QUERY PLAN (SQLite) / EXPLAIN (PostgreSQL) of the statements the inbox really ran.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from web_pages import add_bare_leads

from leadflow.auth import service as auth
from leadflow.auth.models import Role
from leadflow.auth.principal import SYSTEM, Principal
from leadflow.db.base import Database
from leadflow.db.migrate import upgrade
from leadflow.leads import service as leads
from leadflow.leads.service import LeadFilter
from leadflow.web import service as web


def timed(fn: Callable[[], Any], runs: int) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), max(times)


def plans(db: Database, fn: Callable[[], Any]) -> list[str]:
    seen: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, params))

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        fn()
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    out = []
    with db.engine.connect() as conn:
        for statement, params in seen:
            if "FROM leads" not in statement and "report_lead_funnel" not in statement:
                continue
            prefix = "EXPLAIN QUERY PLAN " if db.dialect == "sqlite" else "EXPLAIN "
            rows = conn.exec_driver_sql(prefix + statement, params).all()
            plan = "\n    ".join(str(r[-1]) if db.dialect == "sqlite" else str(r[0]) for r in rows)
            out.append(" ".join(statement.split())[:160] + " ...\n    " + plan)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = os.environ.get("LEADFLOW_BENCH_DATABASE_URL") or f"sqlite:///{Path(tmp) / 'bench.db'}"
        db = Database(url)
        if db.dialect == "postgresql":
            with db.engine.begin() as conn:
                conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        upgrade(db.engine)
        with db.transaction() as s:
            users = [
                auth.create_user(
                    s, SYSTEM, name=f"U{i}", email=f"u{i}@bench.example.com", role=role, team=team
                )
                for i, (role, team) in enumerate(
                    [(Role.ADMIN, None), (Role.MANAGER, "EMEA")]
                    + [(Role.SALES_REP, "EMEA" if i % 2 else "NA") for i in range(8)]
                )
            ]
            admin, manager = auth.principal_for(users[0]), auth.principal_for(users[1])
        t0 = time.perf_counter()
        add_bare_leads(db, args.leads)
        # Leads written a day ago: the funnel facts' incremental refresh re-reads leads updated in
        # the last minutes, which would otherwise be every bare lead on every request.
        with db.engine.begin() as conn:
            shift = (
                "datetime(updated_at, '-1 day')"
                if db.dialect == "sqlite"
                else "updated_at - interval '1 day'"
            )
            conn.execute(text(f"UPDATE leads SET updated_at = {shift}"))
        print(f"{args.leads:,} leads ready in {time.perf_counter() - t0:.1f} s on {db.dialect}")

        def inbox(who: Principal) -> Callable[[], Any]:
            def run() -> Any:
                with db.transaction() as s:
                    f = LeadFilter(source="webinar", unassigned=True)
                    return leads.list_leads(s, who, f, sort="created_at", descending=True, limit=50)

            return run

        def dashboard(who: Principal) -> Callable[[], Any]:
            def run() -> Any:
                with db.transaction() as s:
                    return web.overview(s, who)

            return run

        t0 = time.perf_counter()
        dashboard(admin)()
        print(f"first dashboard (builds the funnel facts once): {(time.perf_counter() - t0) * 1000:,.0f} ms")
        print(f"median / worst of {args.runs}, ms")
        for name, who in (("admin", admin), ("manager", manager)):
            for label, fn in (
                ("inbox source+unassigned", inbox(who)),
                ("dashboard lead charts", dashboard(who)),
            ):
                fn()
                med, worst = timed(fn, args.runs)
                print(f"  {name:8s} {label:26s} {med:9.1f} {worst:9.1f}")
        print("\nplans (manager):")
        for p in plans(db, inbox(manager)) + plans(db, dashboard(manager)):
            print("  " + p)
        db.dispose()


if __name__ == "__main__":
    main()
