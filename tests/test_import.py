"""CSV import through the service layer, against the real test database (SQLite or PostgreSQL)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from leadflow.audit.models import AuditEntry
from leadflow.auth import service as auth
from leadflow.auth.models import Role
from leadflow.auth.principal import SYSTEM, Principal
from leadflow.db.base import Database
from leadflow.errors import Forbidden, InvalidInput
from leadflow.imports.service import ImportResult, run_import
from leadflow.leads.models import Account, ImportJob, Lead, StageChange
from leadflow.leads.service import lead_audit

DATA = Path(__file__).parent / "data" / "imports"


@pytest.fixture
def sam(db: Database) -> int:
    with db.transaction() as s:
        return auth.create_user(
            s, SYSTEM, name="Sam Sales", email="sam@leadflow-test.io", role=Role.SALES_REP
        ).id


def run(db: Database, path: Path, tmp_path: Path, **kw: Any) -> ImportResult:
    kw.setdefault("report_dir", tmp_path / "reports")
    return run_import(db, path, **kw)


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def leads(db: Database) -> dict[str, Lead]:
    with db.transaction() as s:
        return {lead.email: lead for lead in s.scalars(select(Lead)) if lead.email}


def count(db: Database, model: type[Any]) -> int:
    with db.transaction() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def report(result: ImportResult) -> list[dict[str, str]]:
    assert result.error_report
    with open(result.error_report, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def stage_history(db: Database, lead_id: int) -> list[StageChange]:
    with db.transaction() as s:
        return list(
            s.scalars(select(StageChange).where(StageChange.lead_id == lead_id).order_by(StageChange.id))
        )


# --------------------------------------------------------------------------------- presets


def test_salesforce_export(db: Database, sam: int, tmp_path: Path) -> None:
    result = run(db, DATA / "salesforce_leads.csv", tmp_path, mapping="salesforce")

    assert (result.rows_total, result.created, result.updated, result.skipped, result.failed) == (
        8,
        6,
        0,
        0,
        2,
    )
    assert result.columns["Lead Status"] == "stage"
    assert result.columns["Rating"] is None  # kept in attributes
    by = leads(db)
    assert set(by) == {
        "ada@analytical.co.uk",
        "grace.hopper@compiler.io",
        "linus@gmail.com",
        "margaret@compiler.io",
        "test@example.com",
        "katherine@nasa.gov",
    }

    ada = by["ada@analytical.co.uk"]
    assert (ada.first_name, ada.last_name, ada.job_title, ada.seniority) == (
        "Ada",
        "Lovelace",
        "CTO",
        "executive",
    )
    assert (ada.phone, ada.phone_raw, ada.country, ada.timezone) == (
        "+442079460018",
        "020 7946 0018",
        "GB",
        "Europe/London",
    )
    assert (ada.source, ada.campaign, ada.stage, ada.owner_id) == ("Web", "Spring Webinar", "cold", sam)
    assert ada.attributes == {"Lead ID": "00Q5e000001", "Rating": "Hot"}
    assert ada.import_id == result.id and ada.bad_candidate_reasons is None and ada.unsubscribed is False

    grace = by["grace.hopper@compiler.io"]
    assert (grace.first_name, grace.last_name, grace.stage, grace.owner_id) == ("Grace", "Hopper", "mql", sam)
    assert grace.phone == "+14155550143" and grace.timezone == "America/Los_Angeles"

    linus = by["linus@gmail.com"]
    assert (linus.stage, linus.unsubscribed, linus.account_id) == ("sql", True, None)  # free mail: no account

    margaret = by["margaret@compiler.io"]
    assert margaret.phone == "+16175550199"  # the Mobile column stands in for an empty Phone
    assert (margaret.stage, margaret.status_reason) == (
        "unqualified",
        "imported from salesforce: Closed - Not Converted",
    )
    assert margaret.owner_id is None and margaret.attributes == {
        "Lead ID": "00Q5e000004",
        "Lead Owner": "Nobody Known",
    }
    assert margaret.account_id == grace.account_id  # "Compiler Corp" = "Compiler Corp." by domain

    fake = by["test@example.com"]
    assert fake.stage == "nurture" and fake.phone is None and fake.phone_raw == "12345"
    reasons = fake.bad_candidate_reasons or []
    assert any("placeholder" in r and "example.com" in r for r in reasons)
    assert any(r.startswith("phone '12345'") for r in reasons)
    assert any(r.startswith("name 'test test'") for r in reasons)

    katherine = by["katherine@nasa.gov"]
    assert katherine.stage == "new" and katherine.attributes == {
        "Lead ID": "00Q5e000008",
        "Lead Status": "Qualifying Lead",
    }

    # Stage history: the first entry of each lead, with the other system's value as evidence.
    first = stage_history(db, ada.id)
    assert len(first) == 1
    assert (first[0].from_stage, first[0].to_stage, first[0].reason) == (None, "cold", f"import #{result.id}")
    assert first[0].evidence == {
        "kind": "imported",
        "system": "salesforce",
        "original_value": "Open - Not Contacted",
    }
    assert stage_history(db, katherine.id)[0].evidence is None  # unknown status: plain new, no evidence

    with db.transaction() as s:
        accounts = {a.domain: a for a in s.scalars(select(Account))}
    assert set(accounts) == {"analytical.co.uk", "compiler.io", "nasa.gov", "example.com"}
    analytical = accounts["analytical.co.uk"]
    assert (analytical.name, analytical.name_key, analytical.industry) == (
        "Analytical Engines Ltd",
        "analytical engines",
        "Computing",
    )
    assert (analytical.employee_count, analytical.annual_revenue, analytical.country) == (
        120,
        1_500_000,
        "GB",
    )
    assert (accounts["compiler.io"].employee_count, accounts["nasa.gov"].annual_revenue) == (
        5000,
        24_900_000_000,
    )

    rows = report(result)
    assert [(r["line"], r["column"], r["severity"]) for r in rows] == [
        ("5", "Lead Owner", "warning"),
        ("7", "Email", "error"),
        ("8", "Email", "error"),
        ("9", "Lead Status", "warning"),
    ]
    assert rows[1]["value"] == "not-an-email" and "@" in rows[1]["reason"]
    assert rows[2]["reason"].startswith("duplicate of line 2")
    assert "Nobody Known" in rows[0]["reason"] and "unassigned" in rows[0]["reason"]


def test_salesforce_api_names(db: Database, tmp_path: Path) -> None:
    path = write(
        tmp_path / "api.csv",
        "FirstName,LastName,Email,Phone,Company,Title,LeadSource,Status,Country,Website,NumberOfEmployees,"
        "AnnualRevenue,HasOptedOutOfEmail,OwnerId\n"
        "Jo,Doe,jo@doe-industries.com,030 1234567,Doe Industries,Buyer,Web,Working - Contacted,DE,,50,"
        "2000000,true,005000000000001\n",
    )
    result = run(db, path, tmp_path, mapping="salesforce")
    assert result.created == 1 and result.warnings == 1  # an owner id matches no user
    jo = leads(db)["jo@doe-industries.com"]
    assert (jo.phone, jo.stage, jo.unsubscribed, jo.source) == ("+49301234567", "mql", True, "Web")


HUBSPOT_STAGES = {
    "alan@bletchley.org": ("new", "Subscriber"),
    "joan@bletchley.org": ("new", "Lead"),
    "claude@bell-labs.com": ("unqualified", "Unqualified"),  # the lead status moves an MQL aside
    "johnny@ias.edu": ("sql", "Sales Qualified Lead"),
    "hedy@lamarr.tech": ("opportunity", "Opportunity"),
    "barbara@mit.edu": ("customer", "Customer"),
    "dmr@unix.org": ("customer", "Evangelist"),
    "ken@unix.org": ("nurture", "Bad Timing"),
    "frances@ibm.com": ("new", None),
}


def test_hubspot_export(db: Database, sam: int, tmp_path: Path) -> None:
    result = run(db, DATA / "hubspot_contacts.csv", tmp_path, mapping="hubspot")

    assert (result.created, result.failed, result.warnings) == (9, 0, 1)
    assert result.columns["Lifecycle Stage"] == "stage" and result.columns["Lead Status"] == "lead_status"
    assert result.columns["Time Zone"] is None and result.columns["Marketing contact status"] is None
    by = leads(db)
    for email, (stage, original) in HUBSPOT_STAGES.items():
        lead = by[email]
        assert lead.stage == stage, email
        evidence = stage_history(db, lead.id)[0].evidence
        if original is None:
            assert evidence is None
        else:
            assert evidence == {"kind": "imported", "system": "hubspot", "original_value": original}

    alan = by["alan@bletchley.org"]
    assert alan.owner_id == sam and alan.phone == "+442079460321" and alan.country == "GB"
    assert alan.attributes == {
        "Record ID": "101",
        "Marketing contact status": "Marketing contact",
        "Time Zone": "Europe/London",
    }
    claude = by["claude@bell-labs.com"]
    assert claude.status_reason == "imported from hubspot: Unqualified"
    assert (
        claude.attributes is not None and claude.attributes["Lifecycle Stage"] == "Marketing Qualified Lead"
    )
    assert by["johnny@ias.edu"].attributes == {
        "Record ID": "104",
        "Marketing contact status": "Marketing contact",
        "Lead Status": "Connected",
    }
    assert by["barbara@mit.edu"].unsubscribed is True
    assert by["frances@ibm.com"].attributes is not None
    assert by["frances@ibm.com"].attributes["Lifecycle Stage"] == "Partner Prospect"
    assert by["alan@bletchley.org"].account_id == by["joan@bletchley.org"].account_id
    with db.transaction() as s:
        bell = s.scalar(select(Account).where(Account.domain == "bell-labs.com"))
    assert bell is not None and (bell.employee_count, bell.annual_revenue, bell.industry) == (
        1200,
        1_000_000,
        "Telecom",
    )


def test_auto_mapping_recognizes_common_headers(db: Database, tmp_path: Path) -> None:
    path = write(
        tmp_path / "auto.csv",
        "E-Mail Address;first_name;LAST NAME;Company Name;Job_Title;Mobile Phone;Country Code;Status;"
        "Favourite Colour\n"
        "x@widgets.example.org;ann;lee;Widgets;Buyer;+1 212 555 0123;us;Open - Not Contacted;blue\n"
        "y@widgets.example.org;Bo;Ek;Widgets;;;;MQL;\n",
    )
    result = run(db, path, tmp_path)
    assert result.delimiter == ";"
    assert result.columns == {
        "E-Mail Address": "email",
        "first_name": "first_name",
        "LAST NAME": "last_name",
        "Company Name": "company",
        "Job_Title": "job_title",
        "Mobile Phone": "mobile",
        "Country Code": "country",
        "Status": "stage",
        "Favourite Colour": None,
    }
    by = leads(db)
    x = by["x@widgets.example.org"]
    assert (x.first_name, x.last_name, x.phone, x.country, x.stage) == (
        "Ann",
        "Lee",
        "+12125550123",
        "US",
        "cold",
    )
    assert x.attributes == {"Favourite Colour": "blue"}
    assert by["y@widgets.example.org"].stage == "mql"


# --------------------------------------------------------------------------------- reruns


def test_rerun_creates_no_duplicates(db: Database, sam: int, tmp_path: Path) -> None:
    first = run(db, DATA / "salesforce_leads.csv", tmp_path, mapping="salesforce")
    snapshot = {e: (lead.id, lead.version, lead.updated_at) for e, lead in leads(db).items()}
    counts = (count(db, Lead), count(db, Account), count(db, StageChange), count(db, AuditEntry))

    second = run(db, DATA / "salesforce_leads.csv", tmp_path, mapping="salesforce")

    assert (second.created, second.updated, second.skipped, second.failed) == (0, 0, first.created, 2)
    assert {e: (lead.id, lead.version, lead.updated_at) for e, lead in leads(db).items()} == snapshot
    # Only the second job's own audit entry is new.
    assert (count(db, Lead), count(db, Account), count(db, StageChange), count(db, AuditEntry)) == (
        counts[0],
        counts[1],
        counts[2],
        counts[3] + 1,
    )
    with db.transaction() as s:
        jobs = list(s.scalars(select(ImportJob).order_by(ImportJob.id)))
    assert [(j.status, j.created, j.skipped, j.failed) for j in jobs] == [
        ("completed", 6, 0, 2),
        ("completed", 0, 6, 2),
    ]


def test_changed_rows_update_and_blank_cells_never_erase(db: Database, tmp_path: Path) -> None:
    header = "Email,First Name,Last Name,Title,Phone,Country,Lead Status,Email Opt Out,Rating\n"
    run(
        db,
        write(
            tmp_path / "v1.csv",
            header
            + "a@acme-corp.com,Ann,Archer,Buyer,+1 212 555 0100,US,Open - Not Contacted,1,Hot\n"
            + "b@acme-corp.com,Ben,Baker,Engineer,+1 212 555 0101,US,Open - Not Contacted,0,Cold\n"
            + "c@acme-corp.com,Cy,Cole,Analyst,,US,,0,\n",
        ),
        tmp_path,
        mapping="salesforce",
    )
    before = leads(db)

    # a: new title; opt-out column says 0 (an unsubscribe is never undone) and the status moved
    # (a stored lead's stage only moves through transitions). b: blank cells only. c: unchanged.
    result = run(
        db,
        write(
            tmp_path / "v2.csv",
            header
            + "a@acme-corp.com,Ann,Archer,Head of Purchasing,+1 212 555 0100,US,Closed - Converted,0,Warm\n"
            + "b@acme-corp.com,,,,,,,,\n"
            + "c@acme-corp.com,Cy,Cole,Analyst,,US,,0,\n",
        ),
        tmp_path,
        mapping="salesforce",
    )
    assert (result.created, result.updated, result.skipped, result.failed) == (0, 1, 2, 0)
    after = leads(db)
    a = after["a@acme-corp.com"]
    assert (a.job_title, a.seniority, a.unsubscribed, a.stage, a.version) == (
        "Head of Purchasing",
        "vp",
        True,
        "cold",
        2,
    )
    assert a.attributes == {"Rating": "Warm"}
    b = after["b@acme-corp.com"]
    assert (b.first_name, b.job_title, b.phone, b.attributes, b.version) == (
        "Ben",
        "Engineer",
        "+12125550101",
        {"Rating": "Cold"},
        1,
    )
    assert after["c@acme-corp.com"].updated_at == before["c@acme-corp.com"].updated_at
    with db.transaction() as s:
        entry = s.scalar(
            select(AuditEntry).where(AuditEntry.entity_type == "lead", AuditEntry.action == "update")
        )
    assert entry is not None and entry.entity_id == a.id and entry.reason == f"import #{result.id}"
    assert entry.before == {"job_title": "Buyer", "seniority": None, "attributes": {"Rating": "Hot"}}
    assert entry.after == {
        "job_title": "Head of Purchasing",
        "seniority": "vp",
        "attributes": {"Rating": "Warm"},
    }
    assert len(stage_history(db, a.id)) == 1


def test_duplicates_within_a_file(db: Database, tmp_path: Path) -> None:
    path = write(
        tmp_path / "dups.csv",
        "email,first name\nann@acme-corp.com,Ann\nbob@acme-corp.com,Bob\nANN@Acme-Corp.com,Annie\n",
    )
    result = run(db, path, tmp_path)
    assert (result.created, result.failed) == (2, 1)
    assert leads(db)["ann@acme-corp.com"].first_name == "Ann"  # the first row wins
    (row,) = report(result)
    assert (row["line"], row["column"], row["value"]) == ("4", "email", "ann@acme-corp.com")
    assert row["reason"] == "duplicate of line 2 (same email); only the first row is imported"


# --------------------------------------------------------------------------------- accounts


def test_accounts_match_by_domain_then_name_and_free_mail_never_matches(db: Database, tmp_path: Path) -> None:
    with db.transaction() as s:
        by_domain = Account(
            name="Globex", name_key="globex", domain="globex.com", industry="Energy", version=1
        )
        by_name = Account(name="Initech LLC", name_key="initech", domain=None, version=1)
        s.add_all([by_domain, by_name])
        s.flush()
        globex_id, initech_id = by_domain.id, by_name.id
    path = write(
        tmp_path / "acc.csv",
        "email,company,website,industry,employees\n"
        "hank@globex.com,Globex Corporation,,Utilities,900\n"  # domain match; industry already set
        "peter@initech.io,Initech,,Software,120\n"  # name match; the account gets initech.io
        "milton@initech.io,,,,\n"  # now a domain match
        "joe@gmail.com,Initech,,,\n"  # free mail: matched by name only
        "sue@gmail.com,,,,\n"  # free mail, no company: no account
        "amy@hooli.example.net,Hooli,www.hooli.com,Tech,\n"  # website domain wins over the email
        "dan@hooli.com,,,,\n",
    )
    result = run(db, path, tmp_path)
    assert result.created == 7 and result.accounts_created == 1
    by = leads(db)
    assert by["hank@globex.com"].account_id == globex_id
    assert by["peter@initech.io"].account_id == initech_id
    assert by["milton@initech.io"].account_id == initech_id
    assert by["joe@gmail.com"].account_id == initech_id
    assert by["sue@gmail.com"].account_id is None
    assert by["amy@hooli.example.net"].account_id == by["dan@hooli.com"].account_id is not None
    with db.transaction() as s:
        globex = s.get(Account, globex_id)
        initech = s.get(Account, initech_id)
        hooli = s.scalar(select(Account).where(Account.domain == "hooli.com"))
        gmail = s.scalar(select(Account).where(Account.domain == "gmail.com"))
    assert globex is not None and (globex.industry, globex.employee_count) == ("Energy", 900)  # fill only
    assert initech is not None and (initech.domain, initech.industry, initech.employee_count) == (
        "initech.io",
        "Software",
        120,
    )
    assert hooli is not None and (hooli.name, hooli.industry) == ("Hooli", "Tech")
    assert gmail is None
    with db.transaction() as s:
        created = s.scalars(
            select(AuditEntry).where(AuditEntry.entity_type == "account", AuditEntry.action == "create")
        ).all()
    assert [e.entity_id for e in created] == [hooli.id]


# --------------------------------------------------------------------------------- row errors


def test_row_errors_are_reported_and_other_rows_land(db: Database, tmp_path: Path) -> None:
    long_value = "x" * 100_000
    path = write(
        tmp_path / "rows.csv",
        "Email,First Name,Country,No. of Employees,Website,Notes\n"
        "ok@acme-corp.com,Ok,US,10,,\n"
        ",Nobody,US,,,\n"
        "short@acme-corp.com,Short\n"
        f"long@acme-corp.com,Long,US,,,{long_value}\n"
        "bad@acme-corp.com,Bad,Narnia,,,\n"
        "num@acme-corp.com,Num,US,lots,,\n"
        "web@acme-corp.com,Web,US,,http://,\n"
        "extra@acme-corp.com,Extra,US,,,,,\n",
    )
    result = run(db, path, tmp_path)
    assert (result.created, result.failed) == (2, 6)
    assert set(leads(db)) == {"ok@acme-corp.com", "extra@acme-corp.com"}  # trailing empty fields are fine
    rows = {int(r["line"]): r for r in report(result)}
    assert rows[3]["column"] == "Email" and "every row needs one" in rows[3]["reason"]
    assert rows[4]["column"] == "" and rows[4]["reason"] == "the row has 2 fields, the header has 6"
    assert rows[5]["column"] == "Notes" and "100,000 characters" in rows[5]["reason"]
    assert len(rows[5]["value"]) < 300
    assert rows[6]["column"] == "Country" and "Narnia" in rows[6]["reason"]
    assert rows[7]["column"] == "No. of Employees" and rows[7]["value"] == "lots"
    assert rows[8]["column"] == "Website"
    assert all(r["severity"] == "error" for r in rows.values())
    # No half-written row: nothing of a failed row exists anywhere.
    assert count(db, StageChange) == 2
    with db.transaction() as s:
        (batch,) = s.scalars(select(AuditEntry).where(AuditEntry.entity_type == "leads"))
        ids = {e: lead.id for e, lead in leads(db).items()}
    assert batch.after is not None and batch.after["lines"] == [2, 9]
    assert batch.after["ids"] == [[ids["ok@acme-corp.com"], ids["extra@acme-corp.com"]]]


def test_a_row_the_database_refuses_fails_alone(db: Database, tmp_path: Path) -> None:
    """The chunk is retried and split until the refused row is isolated (here: an owner id
    that no longer exists when the rows are written)."""

    from leadflow.imports.mapping import Mapping, plan_columns
    from leadflow.imports.rows import RowContext, UserRef, process_chunk
    from leadflow.imports.writer import ChunkWriter

    plan = plan_columns(["email", "owner"], Mapping.AUTO)
    ghost = UserRef(987654, True, "Ghost")
    ctx = RowContext(plan, {"ghost@acme-corp.com": ghost}, {})
    records = [(i + 2, [f"u{i}@acme-corp.com", "ghost@acme-corp.com" if i == 5 else ""]) for i in range(10)]
    rows = process_chunk(ctx, records).norm_rows()
    with db.transaction() as s:
        job = ImportJob(filename="x.csv", mapping="auto")
        s.add(job)
        s.flush()
        job_id = job.id
    writer = ChunkWriter(db, job_id=job_id, actor=SYSTEM, dry_run=False)
    with writer.connected():
        out = writer.write(rows)
    assert (out.created, out.failed) == (9, 1)
    assert out.issues[0].line == 7 and "refused" in out.issues[0].reason
    assert "u5@acme-corp.com" not in leads(db) and len(leads(db)) == 9


def test_owner_and_stage_answers_belong_to_one_import() -> None:
    """An import's memo of owner matches must not answer for a later import whose users differ
    (the memo was once keyed by id() of the context, and ids are reused after a free)."""

    from leadflow.imports.mapping import Mapping, plan_columns
    from leadflow.imports.rows import WORKER_COLUMNS, RowContext, UserRef, process_chunk

    plan = plan_columns(["email", "owner"], Mapping.AUTO)
    records = [(2, ["a@acme-corp.com", "Sam Sales"])]
    sam = UserRef(41, True, "Sam")
    staff = {"sam sales": [sam]}
    for _ in range(20):  # CPython hands a freed context's memory (and so its id) straight out
        alone = RowContext(plan)
        (row,) = process_chunk(alone, records).norm_rows()
        assert row.params[WORKER_COLUMNS.index("owner_id")] is None
        del alone
        staffed = RowContext(plan, {}, staff)
        (row,) = process_chunk(staffed, records).norm_rows()
        assert row.params[WORKER_COLUMNS.index("owner_id")] == 41
        del staffed


# --------------------------------------------------------------------------------- jobs and audit


def test_job_and_audit_trail(db: Database, tmp_path: Path) -> None:
    with db.transaction() as s:
        admin = auth.create_user(
            s, SYSTEM, name="Ada Admin", email="ada@leadflow-test.io", role=Role.MARKETING
        )
        actor = auth.principal_for(admin)
    result = run(db, DATA / "salesforce_leads.csv", tmp_path, mapping="salesforce", actor=actor)
    with db.transaction() as s:
        job = s.get(ImportJob, result.id)
        entries = list(s.scalars(select(AuditEntry).order_by(AuditEntry.id)))
    assert job is not None
    assert (job.status, job.created_by, job.rows_total, job.created, job.failed, job.mapping) == (
        "completed",
        admin.id,
        8,
        6,
        2,
        "salesforce",
    )
    assert job.finished_at is not None and job.error_report == result.error_report
    # One audit entry for the leads the transaction created; each lead's audit shows its part of
    # it as its own creation: who, when, why (the import), the file line, the imported evidence.
    (batch,) = [e for e in entries if e.entity_type == "leads"]
    assert (batch.action, batch.actor_id, batch.actor_label, batch.reason) == (
        "import",
        admin.id,
        actor.label,
        f"import #{result.id}",
    )
    assert not [e for e in entries if e.entity_type == "lead"]
    by_email = leads(db)
    lines = {}
    with db.transaction() as s:
        for email, lead in by_email.items():
            (created,) = lead_audit(s, actor, lead.id)
            assert (created.entity_type, created.entity_id, created.action) == ("lead", lead.id, "create")
            assert (created.actor_id, created.actor_label, created.at) == (admin.id, actor.label, batch.at)
            assert created.reason == f"import #{result.id}"
            assert created.after is not None and created.after["import_id"] == result.id
            (first,) = stage_history(db, lead.id)
            assert created.evidence == first.evidence
            lines[email] = created.after["line"]
    assert sorted(lines.values()) == [2, 3, 4, 5, 6, 9]
    assert (lines["ada@analytical.co.uk"], lines["katherine@nasa.gov"]) == (2, 9)
    (job_entry,) = [e for e in entries if e.entity_type == "import"]
    assert (job_entry.entity_id, job_entry.action, job_entry.actor_id) == (result.id, "import", admin.id)
    assert job_entry.after is not None and job_entry.after["created"] == 6


def test_dry_run_writes_nothing(db: Database, tmp_path: Path) -> None:
    run(db, write(tmp_path / "one.csv", "email,title\nann@acme-corp.com,Buyer\n"), tmp_path)
    path = write(
        tmp_path / "dry.csv",
        "email,title\nann@acme-corp.com,CEO\nbob@acme-corp.com,\nbob@acme-corp.com,\nnot-an-email,\n",
    )
    result = run(db, path, tmp_path, dry_run=True)
    assert (result.dry_run, result.created, result.updated, result.skipped, result.failed) == (
        True,
        1,
        1,
        0,
        2,
    )
    assert set(leads(db)) == {"ann@acme-corp.com"} and leads(db)["ann@acme-corp.com"].job_title == "Buyer"
    with db.transaction() as s:
        job = s.get(ImportJob, result.id)
        import_audits = s.scalar(
            select(func.count()).select_from(AuditEntry).where(AuditEntry.entity_type == "import")
        )
    assert job is not None and job.dry_run and job.status == "completed" and job.created == 1
    assert import_audits == 1  # only the real import's


def test_importing_needs_the_import_right(db: Database, tmp_path: Path) -> None:
    rep = Principal(user_id=None, label="rep", role=Role.SALES_REP)
    with pytest.raises(Forbidden):
        run(db, DATA / "salesforce_leads.csv", tmp_path, actor=rep)
    with pytest.raises(InvalidInput, match="mapping"):
        run(db, DATA / "salesforce_leads.csv", tmp_path, mapping="pipedrive")
    assert count(db, ImportJob) == 0


# --------------------------------------------------------------------------------- the worker pool


def test_worker_pool_gives_the_same_result_as_inline(db: Database, tmp_path: Path) -> None:
    lines = ["Email,First Name,Last Name,Phone,Country,Company,Lead Status"]
    for i in range(240):
        email = f"person{i}@company{i % 7}.com" if i % 50 != 7 else "broken"
        lines.append(f"{email},first{i},last{i},+1 212 555 {i:04d},US,Company {i % 7},Working - Contacted")
    lines.append("person3@company3.com,dup,dup,,,,")
    path = write(tmp_path / "pool.csv", "\n".join(lines) + "\n")

    pooled = run(db, path, tmp_path, workers=2, chunk_size=40, mapping="salesforce")
    stored = {
        e: (lead.first_name, lead.phone, lead.timezone, lead.stage, lead.account_id)
        for e, lead in leads(db).items()
    }
    pooled_report = report(pooled)

    db_inline_rows = count(db, Lead)
    again = run(db, path, tmp_path, workers=0, chunk_size=40, mapping="salesforce")
    assert (pooled.created, pooled.failed, db_inline_rows) == (235, 6, 235)
    assert (again.created, again.skipped, again.failed) == (0, 235, 6)
    assert report(again) == pooled_report
    assert len(stored) == 235 and stored["person10@company3.com"][1:4] == (
        "+12125550010",
        "America/New_York",
        "mql",
    )
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Account)) == 7
    assert json.loads(json.dumps(pooled.columns))["Lead Status"] == "stage"


def test_each_chunk_publishes_one_event(db: Database, tmp_path: Path) -> None:
    from leadflow.events import DomainEvent, subscribe, unsubscribe

    seen: list[DomainEvent] = []
    subscribe("leads.imported", seen.append)
    try:
        path = write(tmp_path / "ev.csv", "email\n" + "".join(f"p{i}@acme-corp.com\n" for i in range(5)))
        first = run(db, path, tmp_path, chunk_size=2)
        run(db, path, tmp_path, dry_run=True)
        run(
            db,
            write(tmp_path / "ev2.csv", "email,title\np0@acme-corp.com,CEO\np1@acme-corp.com,\n"),
            tmp_path,
        )
    finally:
        unsubscribe("leads.imported", seen.append)
    ids = {e: lead.id for e, lead in leads(db).items()}
    assert [len(e.payload["created_ids"]) for e in seen] == [2, 2, 1, 0]
    assert seen[0].payload["import_id"] == first.id
    assert seen[-1].payload["updated_ids"] == [ids["p0@acme-corp.com"]] == seen[-1].payload["lead_ids"]


def test_a_manager_assigns_only_within_the_team(db: Database, tmp_path: Path) -> None:
    with db.transaction() as s:
        boss = auth.create_user(
            s, SYSTEM, name="Mia Manager", email="mia@leadflow-test.io", role=Role.MANAGER, team="east"
        )
        auth.create_user(
            s, SYSTEM, name="Eve East", email="eve@leadflow-test.io", role=Role.SALES_REP, team="east"
        )
        auth.create_user(
            s, SYSTEM, name="Wes West", email="wes@leadflow-test.io", role=Role.SALES_REP, team="west"
        )
        actor = auth.principal_for(boss)
    path = write(
        tmp_path / "own.csv", "email,owner\na@acme-corp.com,Eve East\nb@acme-corp.com,wes@leadflow-test.io\n"
    )
    result = run(db, path, tmp_path, actor=actor)
    assert (result.created, result.warnings) == (2, 1)
    by = leads(db)
    assert by["a@acme-corp.com"].owner_id is not None and by["b@acme-corp.com"].owner_id is None
    (row,) = report(result)
    assert row["line"] == "3" and "not in your team" in row["reason"]


def test_report_values_never_become_formulas(db: Database, tmp_path: Path) -> None:
    path = write(tmp_path / "f.csv", 'email,name\n"=HYPERLINK(""http://x"")",X\n+1,Y\n')
    result = run(db, path, tmp_path)
    assert [r["value"] for r in report(result)] == ['\'=HYPERLINK("http://x")', "'+1"]


def test_concurrent_imports_of_overlapping_files(db: Database, tmp_path: Path) -> None:
    """Two imports at once (threads, each with its own connection): every email ends up once, and
    each lead was created by exactly one of them."""

    from concurrent.futures import ThreadPoolExecutor

    rows = [f"user{i}@corp{i % 5}.com,Company {i % 5}" for i in range(300)]
    a = write(tmp_path / "a.csv", "email,company\n" + "\n".join(rows[:200]) + "\n")
    b = write(tmp_path / "b.csv", "email,company\n" + "\n".join(reversed(rows[100:])) + "\n")
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda p: run(db, p, tmp_path, chunk_size=25, workers=0), [a, b]))
    assert sum(r.created for r in results) == 300
    assert all(r.failed == 0 and r.created + r.skipped == 200 for r in results)
    assert count(db, Lead) == 300 and count(db, StageChange) == 300
    with db.transaction() as s:
        assert s.scalar(select(func.count(func.distinct(Account.name_key)))) == count(db, Account) == 5
