"""Sequence worker benchmark: how many due steps per second one process runs.

    .venv/bin/python bench/cadences.py                   # 2,000 leads, fresh SQLite file
    .venv/bin/python bench/cadences.py --leads 5000
    .venv/bin/python bench/cadences.py --db postgresql+psycopg://user:pw@127.0.0.1/bench

Enrolls the leads in a two-step sequence (a call task, then an email), then times the two ticks:
the call steps (claim + task + next step, all in one transaction each) and the email steps
(claim, render, SMTP to a local aiosmtpd server, finish + email_sent activity). PostgreSQL: the
database must exist and be empty (the script runs the migrations).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--leads", type=int, default=2000)
    ap.add_argument("--db", default=None)
    args = ap.parse_args()
    from smtp_server import smtp_server

    tmp = tempfile.mkdtemp(prefix="lf-cadence-bench-")
    url = args.db or f"sqlite:///{tmp}/bench.db"
    with smtp_server() as (inbox, port):
        os.environ.update(
            {
                "LEADFLOW_SMTP_HOST": "127.0.0.1",
                "LEADFLOW_SMTP_PORT": str(port),
                "LEADFLOW_SECRET_KEY": "bench",
                "LEADFLOW_CADENCE_WEEKLY_CAP": "50",
            }
        )
        from sqlalchemy import insert

        from leadflow.auth.principal import SYSTEM
        from leadflow.cadences import service as svc
        from leadflow.db.base import Database
        from leadflow.db.migrate import upgrade
        from leadflow.leads.models import Lead

        db = Database(url)
        upgrade(db.engine)
        steps = [
            {"type": "call", "title": "Call {{ lead.full_name }}"},
            {"type": "email", "subject": "Hi {{ lead.first_name }}", "body": "About {{ lead.company }}."},
        ]
        with db.transaction() as s:
            svc.create_sequence(
                s, SYSTEM, {"key": "bench", "name": "Bench", "steps": steps, "on_exhausted": "none"}
            )
            s.execute(
                insert(Lead),
                [
                    {
                        "first_name": f"L{i}",
                        "email": f"l{i}@bench-co.com",
                        "company": "Bench Co",
                        "consent": "granted",
                    }
                    for i in range(args.leads)
                ],
            )
        t0 = time.perf_counter()
        with db.transaction() as s:
            for lead_id in range(1, args.leads + 1):
                svc.enroll(s, SYSTEM, lead_id, "bench")
        enroll_s = time.perf_counter() - t0
        # Far enough ahead that every step is due (business days, working hours).
        from datetime import timedelta

        from leadflow.clock import now

        at = now() + timedelta(days=7)
        t0 = time.perf_counter()
        calls = svc.run_due(db, now=at, limit=args.leads)
        call_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        emails = svc.run_due(db, now=at, limit=args.leads)
        email_s = time.perf_counter() - t0
        print(f"database: {db.dialect}, leads: {args.leads:,}")
        print(f"enroll:      {args.leads / enroll_s:8.0f} leads/s  ({enroll_s:.2f} s)")
        print(f"call steps:  {calls.claimed / call_s:8.0f} steps/s  ({call_s:.2f} s, {calls.outcomes})")
        print(f"email steps: {emails.claimed / email_s:8.0f} steps/s  ({email_s:.2f} s, {emails.outcomes})")
        print(f"messages received by the SMTP server: {len(inbox.messages):,}")
        db.dispose()


if __name__ == "__main__":
    main()
