"""Screenshots of the web UI's main pages on the demo data, into docs/screenshots/.

    .venv/bin/python scripts/screenshots.py            # all pages
    .venv/bin/python scripts/screenshots.py --out /tmp/shots

Builds a throwaway SQLite database with the demo data (2,000 leads), scores it, opens deals for
the prospects and a few tasks, serves it with uvicorn on a free local port and drives Debian's
Chromium with Playwright, signed in as an EMEA sales manager.
"""

from __future__ import annotations

import argparse
import random
import socket
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

import uvicorn
from playwright.sync_api import Page, sync_playwright
from sqlalchemy import select

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
from leadflow.tasks import service as tasks

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
WHO = "sofia.lindqvist"  # EMEA sales manager


def _demo_deals() -> object:
    import importlib.util

    spec = importlib.util.spec_from_file_location("demo_deals", ROOT / "scripts" / "demo_deals.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prepare(db: Database) -> None:
    upgrade(db.engine)
    load_demo(db, leads=2000)
    scoring.rescore_all(db, SYSTEM)
    _demo_deals().add_deals(db)  # type: ignore[attr-defined]
    rng = random.Random(3)
    with db.transaction() as s:
        team = list(s.scalars(select(User.id).where(User.team == "EMEA")))
        ids = list(
            s.scalars(
                select(Lead.id).where(Lead.owner_id.in_(team), Lead.stage.in_(["mql", "sal"])).limit(12)
            )
        )
        for i, lead_id in enumerate(ids):
            lead = s.get(Lead, lead_id)
            assert lead is not None
            kind = "call" if i % 3 else "email"
            title = (
                "Call " if kind == "call" else "Email "
            ) + f"{lead.first_name} about the {rng.choice(['demo', 'pricing', 'trial'])}"
            due = utcnow() + timedelta(hours=rng.randint(-50, 6))
            tasks.create_task(
                s, SYSTEM, lead_id=lead_id, kind=kind, title=title, due_at=due, owner_id=lead.owner_id
            )


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def shoot(page: Page, url: str, path: Path, *, full: bool = False) -> None:
    page.goto(url)
    page.wait_for_load_state("networkidle")
    time.sleep(0.3)  # charts finish their first paint
    page.screenshot(path=str(path), full_page=full)
    print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{tmp}/screens.db")
        prepare(db)
        port = _port()
        server = uvicorn.Server(
            uvicorn.Config(create_app(db), host="127.0.0.1", port=port, log_level="warning")
        )
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        with db.transaction() as s:
            lead_id = s.scalar(
                select(Lead.id)
                .join(User, User.id == Lead.owner_id)
                .where(User.team == "EMEA", Lead.stage == "sal")
                .order_by(Lead.id)
                .limit(1)
            )
            opp_id = s.scalar(
                select(Opportunity.id)
                .join(User, User.id == Opportunity.owner_id)
                .where(User.team == "EMEA", Opportunity.status == "open")
                .order_by(Opportunity.id)
                .limit(1)
            )
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
            page = browser.new_page(viewport={"width": 1366, "height": 860})
            shoot(page, base + "/app/login", args.out / "web-sign-in.png")
            page.get_by_label("Email").fill(f"{WHO}@leadflow-demo.com")
            page.get_by_label("Password").fill(DEMO_PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_load_state("networkidle")
            shoot(page, base + "/app/leads?sort=created_at&dir=desc", args.out / "web-inbox.png")
            shoot(page, f"{base}/app/leads/{lead_id}", args.out / "web-lead.png", full=True)
            shoot(page, base + "/app/tasks?scope=team", args.out / "web-tasks.png")
            shoot(page, base + "/app/pipeline", args.out / "web-kanban.png")
            shoot(page, f"{base}/app/opportunities/{opp_id}", args.out / "web-opportunity.png")
            shoot(page, base + "/app/dashboard", args.out / "web-dashboard.png", full=True)
            shoot(page, base + "/app/imports", args.out / "web-import.png")
            shoot(page, base + "/app/settings/scoring", args.out / "web-settings.png")
            phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
            phone.context.add_cookies(page.context.cookies())
            shoot(phone, base + "/app/leads", args.out / "web-phone-inbox.png")
            browser.close()
        server.should_exit = True
        time.sleep(0.5)
        db.dispose()


if __name__ == "__main__":
    main()
