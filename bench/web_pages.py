"""Server time of the web UI's pages on the demo data (and the inbox at a million leads).

    .venv/bin/python bench/web_pages.py                       # demo data (2,000 leads), SQLite
    .venv/bin/python bench/web_pages.py --extra-leads 1000000 # plus 1M bare leads: inbox at scale
    LEADFLOW_BENCH_DATABASE_URL=postgresql+psycopg://... .venv/bin/python bench/web_pages.py

Each page is requested in-process (Starlette's TestClient: the full ASGI stack, no network) after
a warm-up; the figure is the median and the worst of --runs requests, in milliseconds, signed in
as an EMEA sales manager (team visibility: the most expensive filter) and as the admin.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, insert, select, text

from leadflow.api import create_app
from leadflow.auth.models import User
from leadflow.auth.principal import SYSTEM
from leadflow.db.base import Database, utcnow
from leadflow.db.migrate import upgrade
from leadflow.demo import load_demo
from leadflow.demo.data import DEMO_PASSWORD
from leadflow.leads.models import Lead
from leadflow.pipeline.models import Opportunity
from leadflow.scoring import service as scoring

STAGES = ("new", "cold", "mql", "sal", "sql", "nurture", "unqualified", "bad")
SOURCES = ("webinar", "organic_search", "paid_search", "linkedin", "referral", "trade_show")


def add_bare_leads(db: Database, n: int) -> None:
    """n minimal leads (no activities), spread over stages, sources and the demo's owners."""

    with db.transaction() as s:
        owners: list[Any] = [*s.scalars(select(User.id)), None, None]
        start = int(s.scalar(select(func.coalesce(func.max(Lead.id), 0))) or 0) + 1
    now = utcnow()
    batch = 50_000
    for lo in range(0, n, batch):
        rows = [
            {
                "id": start + i,
                "email": f"bulk{start + i}@bench.example.com",
                "first_name": "Bulk",
                "last_name": f"Lead{i % 9973}",
                "company": f"Company {i % 50_000}",
                "source": SOURCES[i % len(SOURCES)],
                "stage": STAGES[i % len(STAGES)],
                "origin": "marketing",
                "owner_id": owners[i % len(owners)],
                "consent": "unknown",
                "unsubscribed": False,
                "created_at": now,
                "updated_at": now,
                "stage_changed_at": now,
                "version": 1,
            }
            for i in range(lo, min(n, lo + batch))
        ]
        with db.transaction() as s:
            s.execute(insert(Lead), rows)
    if db.dialect == "postgresql":
        with db.engine.begin() as conn:
            conn.execute(text("SELECT setval('leads_id_seq', (SELECT max(id) FROM leads))"))
            conn.execute(text("ANALYZE leads"))
    else:
        with db.engine.begin() as conn:
            conn.execute(text("ANALYZE"))


def sign_in(client: TestClient, email: str) -> None:
    page = client.get("/app/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token
    r = client.post(
        "/app/login",
        data={"email": email, "password": DEMO_PASSWORD, "csrf_token": token.group(1)},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text


def measure(client: TestClient, url: str, runs: int) -> tuple[float, float]:
    client.get(url)  # warm-up: template compilation, caches
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = client.get(url)
        times.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, (url, r.status_code)
    return statistics.median(times), max(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=2000, help="demo leads")
    parser.add_argument("--extra-leads", type=int, default=0, help="bare leads added for the inbox at scale")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = os.environ.get("LEADFLOW_BENCH_DATABASE_URL") or f"sqlite:///{Path(tmp) / 'bench.db'}"
        db = Database(url)
        if db.dialect == "postgresql":
            with db.engine.begin() as conn:
                conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        upgrade(db.engine)
        t0 = time.perf_counter()
        load_demo(db, leads=args.leads)
        scoring.rescore_all(db, SYSTEM)
        import importlib.util

        spec = importlib.util.spec_from_file_location(
            "demo_deals", Path(__file__).parents[1] / "scripts/demo_deals.py"
        )
        assert spec and spec.loader
        deals = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(deals)
        deals.add_deals(db)
        if args.extra_leads:
            add_bare_leads(db, args.extra_leads)
        print(f"data ready in {time.perf_counter() - t0:.1f} s on {db.dialect}")
        with db.transaction() as s:
            total = s.scalar(select(func.count()).select_from(Lead))
            lead_id = s.scalar(
                select(Lead.id)
                .join(User, User.id == Lead.owner_id)
                .where(Lead.stage == "sal", User.team == "EMEA")
                .order_by(Lead.id)
                .limit(1)
            )
            opp_id = s.scalar(select(Opportunity.id).order_by(Opportunity.id).limit(1))
        print(f"{total:,} leads; median / worst of {args.runs} requests, ms")
        pages = [
            ("inbox", "/app/leads"),
            ("inbox: stage filter", "/app/leads?stage=mql&stage=sal"),
            ("inbox: source + owner=none", "/app/leads?source=webinar&owner=none"),
            ("inbox: score 40-100", "/app/leads?score_min=40&score_max=100"),
            ("inbox: search 'bulk'", "/app/leads?q=lead1"),
            ("inbox: sort last name", "/app/leads?sort=last_name&dir=asc"),
            ("inbox: count", "/app/leads/count"),
            ("lead page", f"/app/leads/{lead_id}"),
            ("tasks", "/app/tasks?scope=team"),
            ("kanban", "/app/pipeline"),
            ("opportunity", f"/app/opportunities/{opp_id}"),
            ("dashboard", "/app/dashboard"),
            ("settings: scoring", "/app/settings/scoring"),
            ("import", "/app/imports"),
        ]
        app = create_app(db)
        for who in ("sofia.lindqvist", "admin"):
            with TestClient(app) as client:
                sign_in(client, f"{who}@leadflow-demo.com")
                page1 = client.get("/app/leads").text
                more = re.search(r'hx-get="(/app/leads\?[^"]*cursor=[^"]+)"', page1)
                extra = [("inbox: next page (cursor)", more.group(1).replace("&amp;", "&"))] if more else []
                print(f"\n  as {who}")
                for name, path in pages[:1] + extra + pages[1:]:
                    if who != "admin" and path.startswith("/app/opportunities/"):
                        continue  # the first deal may belong to another team
                    med, worst = measure(client, path, args.runs)
                    print(f"  {name:32s} {med:7.1f} {worst:7.1f}")
        scoring.unregister(db)
        db.dispose()


if __name__ == "__main__":
    main()
