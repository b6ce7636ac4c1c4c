"""Assignment benchmark: route N unassigned leads through the rules in one ``assign_many`` call
(territory, industry and round-robin rules with capacity caps), report leads/s.

    .venv/bin/python bench/assign.py                   # 100k leads, fresh SQLite file
    .venv/bin/python bench/assign.py --leads 20000
    .venv/bin/python bench/assign.py --db postgresql+psycopg://user:pw@127.0.0.1/bench   # empty db

Results are documented in docs/PERFORMANCE.md (section "Assignment").
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, insert, select

from leadflow.assignment import service as assignment
from leadflow.auth.models import Role, User
from leadflow.auth.principal import SYSTEM
from leadflow.db.base import Database, utcnow
from leadflow.db.migrate import upgrade
from leadflow.leads.models import Account, Lead

COUNTRIES = ["US", "CA", "BR", "MX", "DE", "FR", "GB", "JP", "IN", "AU"]
INDUSTRIES = ["software", "banking", "retail", "health", "manufacturing"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--leads", type=int, default=100_000)
    ap.add_argument("--db", default=None)
    args = ap.parse_args()
    url = args.db or f"sqlite:///{Path(tempfile.mkdtemp()) / 'assign.db'}"
    db = Database(url)
    upgrade(db.engine)
    rng = random.Random(7)
    now = utcnow()
    with db.transaction() as s:
        users = [
            {
                "name": f"Rep {i}",
                "email": f"rep{i}@bench.io",
                "role": Role.SALES_REP.value,
                "team": ("amer", "emea", "apac")[i % 3],
                "active": True,
                "created_at": now,
            }
            for i in range(30)
        ]
        s.execute(insert(User), users)
        s.execute(
            insert(Account),
            [
                {
                    "name": f"Acc {i}",
                    "name_key": f"acc {i}",
                    "industry": rng.choice(INDUSTRIES),
                    "country": rng.choice(COUNTRIES),
                    "created_at": now,
                    "updated_at": now,
                    "version": 1,
                }
                for i in range(5000)
            ],
        )
        s.execute(
            insert(Lead),
            [
                {
                    "email": f"l{i}@bench.io",
                    "country": rng.choice(COUNTRIES),
                    "account_id": rng.randint(1, 5000),
                    "stage": "new",
                    "origin": "marketing",
                    "created_at": now,
                    "updated_at": now,
                    "stage_changed_at": now,
                    "version": 1,
                }
                for i in range(args.leads)
            ],
        )
        rep_ids = list(s.scalars(select(User.id).order_by(User.id)))
        for doc in (
            {
                "name": "Banks",
                "strategy": "user",
                "user_id": rep_ids[0],
                "match": {"industries": ["banking"]},
            },
            {
                "name": "Americas",
                "strategy": "round_robin",
                "team": "amer",
                "match": {"regions": ["NA", "LATAM"]},
            },
            {"name": "EMEA", "strategy": "round_robin", "team": "emea", "match": {"regions": ["EMEA"]}},
            {"name": "Rest", "strategy": "round_robin", "team": "apac"},
        ):
            assignment.create_rule(s, SYSTEM, doc)
        assignment.set_capacity(s, SYSTEM, rep_ids[0], args.leads // 50)
    with db.transaction() as s:
        ids = list(s.scalars(select(Lead.id)))
    started = time.perf_counter()
    with db.transaction() as s:
        res = assignment.assign_many(s, SYSTEM, ids, trigger="bench")
    seconds = time.perf_counter() - started
    with db.transaction() as s:
        assigned = s.scalar(select(func.count()).select_from(Lead).where(Lead.owner_id.is_not(None)))
    print(
        f"{db.dialect}: {len(ids):,} leads routed in {seconds:.2f} s ({len(ids) / seconds:,.0f} leads/s), "
        f"{res.changed:,} assigned ({assigned:,} in the database), {res.unassigned:,} unplaced"
    )


if __name__ == "__main__":
    main()
