"""Browser tests: Playwright drives Debian's Chromium against a real uvicorn server (a thread on a
free port) with its own temporary SQLite database. `scripts/test.sh` installs chromium with
apt-get when /usr/bin/chromium is missing."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, Page, expect, sync_playwright
from sqlalchemy import select

from leadflow.api import create_app
from leadflow.auth import service as auth
from leadflow.auth.models import Role
from leadflow.auth.principal import SYSTEM
from leadflow.db.base import Database
from leadflow.db.migrate import upgrade
from leadflow.leads import service as leads
from leadflow.leads.models import Lead
from leadflow.pipeline.models import Opportunity
from leadflow.scoring import service as scoring

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "browser-test-pw"
# Generous waits: the machines running the suite are shared and often busy.
expect.set_options(timeout=20_000)


@dataclass
class Live:
    url: str
    db: Database
    users: dict[str, int]
    leads: dict[str, int]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("browser")
    db = Database(f"sqlite:///{root / 'browser.db'}")
    upgrade(db.engine)
    users: dict[str, int] = {}
    with db.transaction() as s:
        for key, role, team in (
            ("manager", Role.MANAGER, "EMEA"),
            ("rep", Role.SALES_REP, "EMEA"),
            ("west", Role.SALES_REP, "Americas"),
            ("admin", Role.ADMIN, None),
        ):
            user = auth.create_user(
                s,
                SYSTEM,
                name=f"{key.title()} User",
                email=f"{key}@leadflow-test.io",
                role=role,
                team=team,
                password=PASSWORD,
            )
            users[key] = user.id
    lead_ids: dict[str, int] = {}
    with db.transaction() as s:
        for key, owner in (("west_lead", "west"), ("rep_lead", "rep")):
            res = leads.create_lead(
                s,
                SYSTEM,
                {
                    "email": f"{key}@example.org",
                    "first_name": key.title(),
                    "last_name": "Person",
                    "owner_id": users[owner],
                    "company": "Acme Corp",
                },
            )
            lead_ids[key] = res.lead.id
    app = create_app(db)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield Live(f"http://127.0.0.1:{port}", db, users, lead_ids)
    server.should_exit = True
    thread.join(timeout=10)
    scoring.unregister(db)
    db.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/test.sh (installs it) or apt-get install chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1366, "height": 900}, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    yield pg
    context.close()


def sign_in(page: Page, live: Live, who: str) -> None:
    page.goto(live.url + "/app/leads")
    expect(page).to_have_url(re.compile(r"/app/login\?next="))
    page.get_by_label("Email").fill(f"{who}@leadflow-test.io")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Lead inbox")).to_be_visible()


def test_wrong_password_stays_on_sign_in(page: Page, live: Live) -> None:
    page.goto(live.url + "/app/login")
    page.get_by_label("Email").fill("rep@leadflow-test.io")
    page.get_by_label("Password").fill("wrong-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Wrong email or password")


def test_import_qualify_convert_and_drag_across_the_kanban(page: Page, live: Live, tmp_path: Path) -> None:
    sign_in(page, live, "manager")

    # CSV import with progress and the row-error report
    csv_file = tmp_path / "webinar.csv"
    csv_file.write_text(
        "Email,First Name,Last Name,Company,Job Title\n"
        "grace.hopper@navy-systems.example.com,Grace,Hopper,Navy Systems,CTO\n"
        "alan@turing-machines.example.com,Alan,Turing,Turing Machines,Head of Research\n"
        "not-an-email,Broken,Row,Nowhere,\n"
    )
    page.get_by_role("link", name="Import").click()
    page.get_by_label("CSV file").set_input_files(str(csv_file))
    page.get_by_role("button", name="Import").click()
    expect(page.locator("#import-done")).to_contain_text("3 rows, 2 created", timeout=30_000)
    with page.expect_download() as dl:
        page.locator("#error-report").click()
    report = Path(dl.value.path()).read_text()
    assert "not-an-email" in report

    # Find the imported lead in the inbox and open it
    page.get_by_role("link", name="Leads", exact=True).click()
    page.get_by_label("Search").fill("grace")
    page.get_by_role("button", name="Apply").click()
    page.get_by_role("link", name="Grace Hopper").click()
    expect(page.get_by_role("heading", name=re.compile("Grace Hopper"))).to_be_visible()
    lead_url = page.url

    # Log a call
    page.locator("#log-call").get_by_label("Outcome").select_option("connected")
    page.locator("#log-call").get_by_label("Notes").fill("Interested in the pro plan")
    page.locator("#log-call").get_by_role("button", name="Log call").click()
    expect(page.locator("#activities")).to_contain_text("Interested in the pro plan")

    # Marketing review -> MQL, needs assessment -> SAL, then the discovery call -> SQL
    page.get_by_text("Change stage", exact=True).click()
    move = page.locator("#transition")
    move.get_by_label("Move to").select_option("mql")
    move.get_by_label("Marketing review note (MQL by hand)").fill("Asked for pricing at the webinar")
    move.get_by_role("button", name="Move").click()
    expect(page.locator("h1 .stage")).to_have_text("mql")
    page.get_by_text("Needs assessment", exact=True).click()
    form = page.locator("#needs-assessment")
    form.get_by_label("Where did you hear about us?").select_option("event")
    form.get_by_label("What are your current goals or priorities?").fill("pipeline visibility")
    form.get_by_label("Which of our products interest you?").fill("Leadflow Pro")
    form.get_by_label("How do you see our product helping you?").fill("Pro plan, 20 seats")
    form.get_by_label("When are you planning to purchase?").select_option("next_quarter")
    form.get_by_role("button", name="Save assessment").click()
    expect(page.locator("h1 .stage")).to_have_text("sal")

    call = page.locator("#discovery-call")
    for criterion in ("Budget", "Authority", "Need", "Timeline"):
        call.get_by_role("group", name=criterion).get_by_label("met", exact=True).check()
    call.get_by_role("group", name="Budget").get_by_label("Answer").fill("40k approved")
    call.get_by_role("button", name="Complete discovery call").click()
    expect(page.locator("h1 .stage")).to_have_text("sql")
    timeline = page.locator(".timeline")
    expect(timeline).to_contain_text("Evidence: discovery call")
    expect(timeline).to_contain_text("40k approved")
    assert page.url.split("?")[0] == lead_url

    # Convert to an opportunity, then drag it across the kanban
    convert = page.locator("#convert")
    convert.get_by_label("Deal name").fill("Navy Systems — Pro")
    convert.get_by_label("Amount").fill("40000")
    convert.get_by_role("button", name="Convert to opportunity").click()
    expect(page.get_by_role("heading", name=re.compile("Navy Systems — Pro"))).to_be_visible()
    expect(page.locator("#opp-stage")).to_have_text("Qualification")
    with live.db.transaction() as s:
        lead_stage = s.scalar(select(Lead.stage).where(Lead.email == "grace.hopper@navy-systems.example.com"))
        opp_id = s.scalar(select(Opportunity.id).where(Opportunity.name == "Navy Systems — Pro"))
    assert lead_stage == "opportunity"

    page.get_by_role("link", name="Pipeline", exact=True).click()
    card = page.locator(f'[data-card="{opp_id}"]')
    expect(page.locator("#column-qualification")).to_contain_text("Navy Systems — Pro")
    card.drag_to(page.locator("#column-proposal"))
    expect(page.locator("#column-proposal")).to_contain_text("Navy Systems — Pro")
    expect(page.locator("#column-proposal h2")).to_contain_text("1")
    expect(page.locator("#column-proposal")).to_contain_text("weighted 20,000")

    # Closing lost asks for the reason first
    page.locator(f'[data-card="{opp_id}"]').drag_to(page.locator("#column-closed_lost"))
    dialog = page.locator("#column-closed_lost dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Reason").select_option(index=0)
    dialog.get_by_label("Note").fill("went with a spreadsheet")
    dialog.get_by_role("button", name=re.compile("Move to")).click()
    expect(page.locator("#column-closed_lost")).to_contain_text("Navy Systems — Pro")
    with live.db.transaction() as s:
        opp = s.get(Opportunity, opp_id)
        assert opp is not None and opp.status == "lost" and opp.close_note == "went with a spreadsheet"


def test_qualification_forms_follow_the_questionnaire_and_framework(page: Page, live: Live) -> None:
    with live.db.transaction() as s:
        lead_id = leads.create_lead(
            s,
            SYSTEM,
            {
                "email": "ruth@example.org",
                "first_name": "Ruth",
                "last_name": "Teitelbaum",
                "owner_id": live.users["rep"],
                "origin": "sales",
                "company": "Eniac Ltd",
            },
        ).lead.id
    sign_in(page, live, "rep")
    page.goto(f"{live.url}/app/leads/{lead_id}")
    page.get_by_text("Needs assessment", exact=True).click()
    form = page.locator("#needs-assessment")
    form.get_by_label("Which of our products interest you?").fill("Leadflow Pro")
    form.get_by_role("button", name="Save assessment").click()
    # The refused answers come back next to their fields, what was typed is kept.
    expect(page.locator("#na-need-err")).to_have_text("is required")
    expect(page.locator("#na-timeline-err")).to_have_text("is required")
    expect(form.get_by_label("Which of our products interest you?")).to_have_value("Leadflow Pro")
    expect(page.locator("h1 .stage")).to_have_text("new")
    form.get_by_label("What are your current goals or priorities?").fill("forecasting")
    form.get_by_label("How do you see our product helping you?").fill("one pipeline view")
    form.get_by_label("When are you planning to purchase?").select_option("this_quarter")
    form.get_by_role("button", name="Save assessment").click()
    expect(page.locator("h1 .stage")).to_have_text("sal")

    # The call form and its script follow the chosen framework.
    discovery = page.locator("#discovery")
    discovery.get_by_label("Framework").select_option("meddic")
    expect(discovery.get_by_role("group", name="Economic buyer")).to_be_visible()
    discovery.get_by_text("Call script (MEDDIC)").click()
    expect(discovery.locator("#call-script")).to_contain_text("Hi Ruth")
    call = page.locator("#discovery-call")
    call.get_by_role("group", name="Metrics").get_by_label("met", exact=True).check()
    call.get_by_label("SQL: qualified prospect").check()
    call.get_by_role("button", name="Complete discovery call").click()
    expect(page.locator("#call-override_reason-err")).to_contain_text(
        "the MEDDIC ratings recommend unqualified"
    )
    call = page.locator("#discovery-call")
    call.get_by_label("Why the outcome differs from the recommendation").fill("CFO confirmed budget by email")
    call.get_by_role("button", name="Complete discovery call").click()
    expect(page.locator("h1 .stage")).to_have_text("sql")
    expect(page.locator(".timeline")).to_contain_text(re.compile("framework: meddic", re.I))


def test_dashboard_draws_its_charts(page: Page, live: Live) -> None:
    sign_in(page, live, "admin")
    page.get_by_role("link", name="Dashboards").click()
    for chart in ("chart-funnel", "chart-sources", "chart-scores", "chart-report-funnel"):
        canvas = page.locator(f'canvas[data-chart="{chart}"]')
        expect(canvas).to_have_attribute("data-drawn", "1")
        drawn = page.evaluate(
            f"() => !!Chart.getChart(document.querySelector('canvas[data-chart=\"{chart}\"]'))"
        )
        assert drawn


def test_a_rep_is_denied_another_teams_lead(page: Page, live: Live) -> None:
    sign_in(page, live, "rep")
    expect(page.get_by_role("link", name="Rep_Lead Person")).to_be_visible()
    expect(page.get_by_role("link", name="West_Lead Person")).to_have_count(0)
    response = page.goto(f"{live.url}/app/leads/{live.leads['west_lead']}")
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()


def test_bulk_assign_from_the_inbox(page: Page, live: Live) -> None:
    sign_in(page, live, "manager")
    page.get_by_label("Search").fill("rep_lead")
    page.get_by_role("button", name="Apply").click()
    page.get_by_label("Select all leads on this page").check()
    page.locator("#bulk-form").get_by_label("Assign to").select_option(label="Manager User (EMEA)")
    page.get_by_role("button", name="Assign selected").click()
    expect(page.locator("#flash")).to_contain_text("1 lead updated")
    with live.db.transaction() as s:
        owner = s.scalar(select(Lead.owner_id).where(Lead.id == live.leads["rep_lead"]))
    assert owner == live.users["manager"]


def test_pages_fit_a_phone_screen(browser: Browser, live: Live) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    try:
        sign_in(page, live, "admin")
        for path in ("/app/leads", f"/app/leads/{live.leads['rep_lead']}", "/app/dashboard"):
            page.goto(live.url + path)
            overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, f"{path} scrolls sideways by {overflow}px on a phone"
    finally:
        context.close()


def test_task_inbox_logs_an_outcome_in_one_click(page: Page, live: Live) -> None:
    from datetime import timedelta

    from leadflow.db.base import utcnow
    from leadflow.tasks import service as tasks
    from leadflow.tasks.models import Task

    with live.db.transaction() as s:
        lead_id = leads.create_lead(
            s, SYSTEM, {"email": "renewal@example.org", "last_name": "Renewal", "owner_id": live.users["rep"]}
        ).lead.id
        task_id = tasks.create_task(
            s,
            SYSTEM,
            lead_id=lead_id,
            kind="call",
            title="Call about the renewal",
            due_at=utcnow() - timedelta(hours=1),
            owner_id=live.users["rep"],
        ).id
    sign_in(page, live, "rep")
    page.get_by_role("link", name="Tasks").click()
    row = page.locator(f"#task-{task_id}")
    expect(row).to_contain_text("Call about the renewal")
    row.get_by_role("button", name="Connected: Call about the renewal").click()
    expect(page.get_by_role("status")).to_contain_text("Call about the renewal (connected)")
    with live.db.transaction() as s:
        task = s.get(Task, task_id)
        assert task is not None and task.status == "done"
