"""Concurrency: optimistic locking through the API under real threads, and eight concurrent
writers importing, ingesting events and rescoring at once with consistent totals (PostgreSQL in
the PostgreSQL run; SQLite serializes the same writers on its write lock)."""

from __future__ import annotations

import csv
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import Actor, make_user
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from leadflow.auth.models import Role
from leadflow.auth.principal import SYSTEM
from leadflow.db.base import Database
from leadflow.imports.service import run_import
from leadflow.leads import activities as activity_svc
from leadflow.leads.models import Activity, ImportJob, Lead
from leadflow.scoring import service as scoring
from leadflow.scoring.models import LeadScore


def _together(fns: list[Callable[[], Any]]) -> list[Any]:
    """Run the callables in threads released at the same instant; re-raise the first error."""

    barrier = threading.Barrier(len(fns))
    results: list[Any] = [None] * len(fns)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = fns[i]()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def test_two_users_editing_the_same_lead_one_gets_409_and_nothing_is_lost(
    client: TestClient, admin: Actor, db: Database
) -> None:
    marketer = make_user(db, "Marketer", Role.MARKETING)
    for round_ in range(6):
        r = client.post("/api/leads", json={"email": f"race{round_}@example.com"}, headers=admin.headers)
        lead_id = r.json()["id"]
        v = client.get(f"/api/leads/{lead_id}", headers=admin.headers).json()["version"]

        def edit(actor: Actor, name: str, lead_id: int = lead_id, v: int = v) -> tuple[int, str]:
            res = client.patch(
                f"/api/leads/{lead_id}", json={"version": v, "job_title": name}, headers=actor.headers
            )
            return res.status_code, name

        results = _together([lambda: edit(admin, "Admin title"), lambda: edit(marketer, "Marketing title")])
        codes = sorted(code for code, _ in results)
        assert codes == [200, 409], results
        winner = next(name for code, name in results if code == 200)
        lead = client.get(f"/api/leads/{lead_id}", headers=admin.headers).json()
        assert (lead["job_title"], lead["version"]) == (winner, v + 1)
        audit = client.get(f"/api/leads/{lead_id}/audit", headers=admin.headers).json()
        assert sum(a["action"] == "update" for a in audit) == 1
        # The loser re-reads and retries: its change lands on top, nothing is lost.
        loser = admin if winner != "Admin title" else marketer
        retry = client.patch(
            f"/api/leads/{lead_id}", json={"version": v + 1, "department": "IT"}, headers=loser.headers
        )
        assert retry.status_code == 200
        assert (retry.json()["job_title"], retry.json()["department"]) == (winner, "it") or retry.json()[
            "job_title"
        ] == winner


def _csv(path: Path, ids: range) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["Email", "First Name", "Last Name", "Company", "Title"])
        for i in ids:
            w.writerow([f"c{i}@conc{i % 37}.example.com", f"F{i}", f"L{i}", f"Conc {i % 37}", "CTO"])


MODEL = {
    "name": "Concurrency",
    "fit": {
        "max_points": 20,
        "rules": [{"id": "cto", "field": "job_title", "matches": r"\bCTO\b", "points": 20}],
    },
    "engagement": {
        "max_points": 50,
        "half_life_days": None,
        "rules": [{"id": "pv", "event": "page_view", "points": 1}],
    },
}


def test_eight_writers_import_ingest_and_rescore_with_consistent_totals(db: Database, tmp_path: Path) -> None:
    with db.transaction() as s:
        scoring.save_model(s, SYSTEM, MODEL, activate=True)
    # As in the API process: leads are rescored when they are created or get events.
    scoring.register(db)
    per_file = 1500
    files = []
    for k in range(4):
        # Each file overlaps half of the next one: the same people arrive twice at once.
        path = tmp_path / f"part{k}.csv"
        _csv(path, range(k * per_file // 2, k * per_file // 2 + per_file))
        files.append(path)
    unique = {f"c{i}@conc{i % 37}.example.com" for i in range(0, 3 * per_file // 2 + per_file)}

    def importer(path: Path) -> Callable[[], Any]:
        return lambda: run_import(db, path, workers=0, report_dir=tmp_path / "reports", chunk_size=250)

    events = [
        {"email": f"c{i}@conc{i % 37}.example.com", "type": "page_view", "external_id": f"pv-{i}-{j}"}
        for i in range(0, 600)
        for j in range(3)
    ]

    def ingester() -> Counter[str]:
        # Both ingesters send the same events (a retried delivery): each event lands once.
        seen: Counter[str] = Counter()
        for start in range(0, len(events), 200):
            with db.transaction() as s:
                res = activity_svc.ingest(s, SYSTEM, events[start : start + 200])
            seen["accepted"] += res.accepted
            seen["duplicates"] += res.duplicates
        return seen

    def rescorer() -> Any:
        return scoring.rescore_all(db, SYSTEM, fire=False)

    results = _together([*(importer(f) for f in files), ingester, ingester, rescorer, rescorer])
    imports = results[:4]
    assert all(r.failed == 0 for r in imports), [r.as_dict() for r in imports]
    assert sum(r.created for r in imports) == len(unique)
    assert sum(r.created + r.updated + r.skipped for r in imports) == 4 * per_file

    # Events for leads that did not exist yet were refused; deliver them again now (retry).
    ingester()
    with db.engine.connect() as conn:
        emails = [e for (e,) in conn.execute(select(Lead.email))]
        assert len(emails) == len(set(emails)) == len(unique)
        assert set(emails) == unique
        per_event = conn.execute(
            select(Activity.external_id, func.count()).group_by(Activity.external_id).having(func.count() > 1)
        ).all()
        assert per_event == []
        assert conn.execute(select(func.count()).select_from(Activity)).scalar() == len(events)
        jobs = conn.execute(select(ImportJob.status)).scalars().all()
        assert len(jobs) == 4 and set(jobs) <= {"done", "completed", "finished", "succeeded"}, jobs

    # Scores: every lead has one, and they are the scores a quiet full rescore computes.
    with db.engine.connect() as conn:
        before = dict(conn.execute(select(LeadScore.lead_id, LeadScore.total)).all())
    final = scoring.rescore_all(db, SYSTEM, fire=False)
    with db.engine.connect() as conn:
        after = dict(conn.execute(select(LeadScore.lead_id, LeadScore.total)).all())
        events_per_lead = dict(
            conn.execute(select(Activity.lead_id, func.count()).group_by(Activity.lead_id)).all()
        )
    assert len(after) == len(unique)
    for lead_id, total in after.items():
        assert total == (100 + min(events_per_lead.get(lead_id, 0), 50) / 50 * 100) / 2
    stale = {k for k in after if before.get(k) != after[k]}
    assert final.changed == len(stale)
    assert not stale, f"{len(stale)} leads had stale scores after the concurrent run"
