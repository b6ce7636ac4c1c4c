"""Reading CSV files: encodings, delimiters, and every kind of malformed file, which is refused
with the line and the reason before anything is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from leadflow.db.base import Database
from leadflow.imports.reader import HARD_FIELD_LIMIT, ImportFileError, inspect_file, iter_records
from leadflow.imports.service import ImportResult, run_import
from leadflow.leads.models import ImportJob, Lead

HEADER = "Email,First Name,Last Name,Company\n"
ROWS = "zoe@müller-bau.de,Zoë,Müller,Müller Bau GmbH\nrene@acme-corp.com,René,Lefèvre,Acme\n"


def write(path: Path, data: str | bytes, encoding: str = "utf-8") -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode(encoding))
    return path


def run(db: Database, path: Path, tmp_path: Path, **kw: Any) -> ImportResult:
    return run_import(db, path, report_dir=tmp_path / "reports", **kw)


def lead_names(db: Database) -> dict[str, tuple[str | None, str | None]]:
    with db.transaction() as s:
        return {lead.email or "": (lead.first_name, lead.last_name) for lead in s.scalars(select(Lead))}


def refused(db: Database, path: Path, tmp_path: Path) -> ImportFileError:
    with pytest.raises(ImportFileError) as info:
        run(db, path, tmp_path)
    with db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(Lead)) == 0
        job = s.scalars(select(ImportJob).order_by(ImportJob.id.desc())).first()
    assert job is not None and job.status == "rejected" and job.message == info.value.message
    assert info.value.extra["import_id"] == job.id
    return info.value


# --------------------------------------------------------------------------------- encodings


@pytest.mark.parametrize(
    ("encoding", "label"),
    [
        ("utf-8", "UTF-8"),
        ("utf-8-sig", "UTF-8 (BOM)"),
        ("utf-16", "UTF-16 (BOM)"),
        ("utf-16-be", "UTF-16 (BOM)"),
        ("cp1252", "Windows-1252"),
    ],
)
def test_encodings(db: Database, tmp_path: Path, encoding: str, label: str) -> None:
    text = HEADER + ROWS
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    path = write(tmp_path / "enc.csv", data)
    result = run(db, path, tmp_path)
    assert (result.encoding, result.created) == (label, 2)
    assert lead_names(db) == {
        "zoe@müller-bau.de": ("Zoë", "Müller"),
        "rene@acme-corp.com": ("René", "Lefèvre"),
    }
    assert not list((tmp_path / "reports").glob("leadflow-import-*"))  # the UTF-8 copy of UTF-16 is gone


def test_latin1_fallback(db: Database, tmp_path: Path) -> None:
    # 0x81 is undefined in Windows-1252, so only Latin-1 reads this file.
    path = write(tmp_path / "l1.csv", (HEADER + "ann@acme-corp.com,Ann\x81,Lee,Acme\n").encode("latin-1"))
    result = run(db, path, tmp_path)
    assert (result.encoding, result.created) == ("Latin-1", 1)


@pytest.mark.parametrize(
    ("text", "delimiter"),
    [
        ("Email;First Name;Company\nann@acme-corp.com;Ann;Acme, Inc.\n", ";"),
        ("Email\tFirst Name\tCompany\nann@acme-corp.com\tAnn\tAcme, Inc.\n", "\t"),
        ('Email,First Name,Company\nann@acme-corp.com,Ann,"Acme; Inc."\n', ","),
        ("sep=;\nEmail;First Name;Company\nann@acme-corp.com;Ann;Acme, Inc.\n", ";"),
        ("Email\nann@acme-corp.com\n", ","),
    ],
)
def test_delimiters(db: Database, tmp_path: Path, text: str, delimiter: str) -> None:
    result = run(db, write(tmp_path / "d.csv", text), tmp_path)
    assert (result.delimiter, result.created, result.failed) == (delimiter, 1, 0)


def test_line_endings_and_multiline_fields(db: Database, tmp_path: Path) -> None:
    crlf = 'Email,First Name,Notes\r\nann@acme-corp.com,Ann,"two\r\nlines"\r\n\r\nbob@acme-corp.com,Bob,x\r\n'
    result = run(db, write(tmp_path / "crlf.csv", crlf), tmp_path)
    assert (result.created, result.failed) == (2, 0)
    mac = "Email,First Name\rcy@acme-corp.com,Cy\rdi@acme-corp.com,Di\r"
    result = run(db, write(tmp_path / "mac.csv", mac), tmp_path)
    assert result.created == 2
    assert set(lead_names(db)) == {
        "ann@acme-corp.com",
        "bob@acme-corp.com",
        "cy@acme-corp.com",
        "di@acme-corp.com",
    }


def test_line_numbers_count_physical_lines(tmp_path: Path) -> None:
    path = write(tmp_path / "lines.csv", 'a,b\n1,"x\ny"\n\n2,z\n3,"p\n\nq"\n4,w\n')
    info = inspect_file(path, chunk_size=2)
    assert [line for line, _ in iter_records(info)] == [2, 5, 6, 9]
    assert [c.records for c in info.chunks] == [2, 2]


# --------------------------------------------------------------------------------- refused files


def test_empty_file(db: Database, tmp_path: Path) -> None:
    assert refused(db, write(tmp_path / "e.csv", b""), tmp_path).reason == "the file is empty"
    assert (
        refused(db, write(tmp_path / "ws.csv", b"\xef\xbb\xbf \r\n\n"), tmp_path).reason
        == "the file is empty"
    )


def test_header_without_rows(db: Database, tmp_path: Path) -> None:
    exc = refused(db, write(tmp_path / "h.csv", "Email,Name\n\n"), tmp_path)
    assert (exc.line, exc.reason) == (1, "line 1: the file has a header line but no data rows")


def test_missing_email_column(db: Database, tmp_path: Path) -> None:
    exc = refused(db, write(tmp_path / "m.csv", "Name,Phone\nAnn,+1 212 555 0100\n"), tmp_path)
    assert exc.line == 1 and "no email column" in exc.reason and "Columns found: Name, Phone" in exc.reason


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (b"PK\x03\x04\x14\x00\x06\x00" + b"\x00" * 100, "Excel workbook (.xlsx)"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, "old-style Excel"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "PDF"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "PNG"),
        (b"\x1f\x8b\x08\x00" + bytes(range(256)), "gzip"),
    ],
)
def test_not_a_csv_file(db: Database, tmp_path: Path, data: bytes, what: str) -> None:
    exc = refused(db, write(tmp_path / "x.csv", data), tmp_path)
    assert what in exc.reason and "not a CSV file" in exc.reason


def test_binary_data(db: Database, tmp_path: Path) -> None:
    exc = refused(
        db, write(tmp_path / "nul.csv", HEADER.encode() + b"ann@acme-corp.com,A\x00n,Lee,Acme\n"), tmp_path
    )
    assert exc.line == 2 and "binary data" in exc.reason
    noise = bytes((i * 37 + 11) % 32 for i in range(4000)).replace(b"\n", b"\x01").replace(b"\r", b"\x02")
    exc = refused(db, write(tmp_path / "ctl.csv", noise.replace(b"\x00", b"\x03")), tmp_path)
    assert "binary data" in exc.reason


def test_unclosed_quote(db: Database, tmp_path: Path) -> None:
    text = (
        HEADER
        + 'ann@acme-corp.com,Ann,Lee,Acme\nbob@acme-corp.com,"Bob,Baker,Bakery\ncy@acme-corp.com,Cy,Cole,Co\n'
    )
    exc = refused(db, write(tmp_path / "q.csv", text), tmp_path)
    assert exc.line == 3 and "never closed (unbalanced quote)" in exc.reason


def test_quote_swallowing_lines(db: Database, tmp_path: Path) -> None:
    # The quote opened on line 3 closes on line 5: lines 3-5 read as one record of the wrong size.
    text = (
        HEADER
        + 'a@acme-corp.com,A,B,C\nb@acme-corp.com,"B,B,B\nc@acme-corp.com,C,C,C\nd@acme-corp.com,D",D\n'
    )
    exc = refused(db, write(tmp_path / "sw.csv", text), tmp_path)
    assert exc.line == 3 and "runs to line 5" in exc.reason and "unbalanced quote" in exc.reason


def test_stray_quote_after_closing_quote(db: Database, tmp_path: Path) -> None:
    text = HEADER + 'ann@acme-corp.com,"Ann"x,Lee,Acme\n'
    exc = refused(db, write(tmp_path / "st.csv", text), tmp_path)
    assert exc.line == 2 and 'must be doubled ("")' in exc.reason


def test_field_beyond_the_hard_limit(db: Database, tmp_path: Path) -> None:
    huge = "y" * (HARD_FIELD_LIMIT + 10)
    exc = refused(
        db, write(tmp_path / "big.csv", HEADER + f'ann@acme-corp.com,"{huge}",Lee,Acme\n'), tmp_path
    )
    assert exc.line == 2 and "longer than 1,048,576 characters" in exc.reason


def test_invalid_utf8_after_a_bom(db: Database, tmp_path: Path) -> None:
    data = b"\xef\xbb\xbf" + HEADER.encode() + b"ann@acme-corp.com,Ann\xe9,Lee,Acme\n"
    exc = refused(db, write(tmp_path / "bom.csv", data), tmp_path)
    assert "UTF-8 byte order mark but is not valid UTF-8" in exc.reason


def test_missing_file(db: Database, tmp_path: Path) -> None:
    exc = refused(db, tmp_path / "nope.csv", tmp_path)
    assert "is not a file" in exc.reason


def test_quoted_quotes_and_unquoted_quote_characters_are_fine(db: Database, tmp_path: Path) -> None:
    text = HEADER + 'ann@acme-corp.com,"Ann ""Nan""",O\'Neil,5" Displays\n'
    result = run(db, write(tmp_path / "ok.csv", text), tmp_path)
    assert result.created == 1
    assert lead_names(db)["ann@acme-corp.com"] == ('Ann "Nan"', "O'Neil")
