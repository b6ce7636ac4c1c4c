"""The phone fast path gives exactly the answers of phonenumbers, and imported rows exactly those
of the shared normalization.

leadflow.core.phones replays phonenumbers for common inputs (every capture path uses it through
contact.normalize_phone); leadflow.imports.rows feeds core.identity.normalize_lead. These tests
hold both to the reference: the library itself (phones.library_phone, library_timezone)."""

from __future__ import annotations

import random
import re
from pathlib import Path

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberFormat

from leadflow.core.contact import normalize_phone
from leadflow.core.identity import normalize_lead
from leadflow.core.phones import fast_phone, library_phone, library_timezone, phone_and_timezone, timezone_for
from leadflow.imports.mapping import Mapping, plan_columns
from leadflow.imports.rows import WORKER_COLUMNS, RowContext, normalize_row

REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)


def reference_zone(e164: str) -> str | None:
    from phonenumbers import timezone as pn_timezone

    zones = pn_timezone.time_zones_for_number(phonenumbers.parse(e164))
    found = zones[0] if len(zones) == 1 and zones[0] != "Etc/Unknown" else None
    assert found == library_timezone(e164)
    return found


def check(raw: str, region: str | None) -> bool:
    """Assert agreement; True when the fast path decided."""

    slow = library_phone(raw, region)
    fast = fast_phone(raw, region)
    if fast is not None:
        assert fast == slow, (raw, region)
    phone, zone = phone_and_timezone(raw, region)
    assert phone == slow == normalize_phone(raw, region), (raw, region)
    if slow.e164:
        assert zone == reference_zone(slow.e164) == timezone_for(slow.e164), (raw, region)
    else:
        assert zone is None
    return fast is not None


def _examples() -> list[tuple[str, str | None]]:
    """Every region's example numbers of every type, formatted three ways, with digits changed
    at random (a mix of valid and invalid numbers), read in their region and in others."""

    rng = random.Random(20261123)
    cases: list[tuple[str, str | None]] = []
    for region in REGIONS:
        for kind in range(12):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            for fmt in (PhoneNumberFormat.NATIONAL, PhoneNumberFormat.INTERNATIONAL, PhoneNumberFormat.E164):
                text = phonenumbers.format_number(example, fmt)
                cases.append((text, region))
                cases.append((f"{text} x{rng.randint(1, 9999)}", region))
                digits = [i for i, ch in enumerate(text) if ch.isdigit()]
                for _ in range(2):
                    chars = list(text)
                    for i in rng.sample(digits, k=min(len(digits), rng.randint(1, 3))):
                        chars[i] = str(rng.randint(0, 9))
                    mutated = "".join(chars)
                    cases.append((mutated, region))
                    cases.append((mutated, rng.choice(["US", "DE", "GB", "FR", "AU", "BR", None])))
    return cases


EXAMPLES = _examples()


def test_fast_path_agrees_on_every_region_example() -> None:
    decided = sum(check(raw, region) for raw, region in EXAMPLES)
    valid = sum(1 for raw, region in EXAMPLES if library_phone(raw, region).e164)
    # The fast path must decide nearly every valid number, or it is not a fast path.
    assert decided >= 0.95 * valid, (decided, valid)


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("(415) 555-0143", "US"),
        ("1-415-555-0143", "US"),
        ("+1 (415) 555-0143", None),
        ("415.555.0143 ext. 12", "US"),
        ("030 1234567", "DE"),
        ("+49 (0)30 1234567", "DE"),
        ("0049 30 1234567", "DE"),
        ("+44 (0)20 7946 0018", "GB"),
        ("(02) 9234 5678", "AU"),
        ("(11) 91234-5678", "BR"),
        ("+358 40 1234567", "FI"),
        ("+7 495 123-45-67", None),
        ("8 (495) 123-45-67", "RU"),
        ("+800 1234 5678", None),
        ("12345", "DE"),
        ("call me", "US"),
        ("+1 (000) 000-0000", None),
    ],
)
def test_known_shapes(raw: str, region: str | None) -> None:
    check(raw, region)


@settings(max_examples=400, deadline=None)
@given(
    digits=st.text(alphabet="0123456789", min_size=3, max_size=16),
    seps=st.lists(st.sampled_from([" ", "-", ".", "(", ")", "/", ""]), min_size=16, max_size=16),
    plus=st.booleans(),
    region=st.sampled_from([*REGIONS[::7], "US", "DE", "GB", "FR", "CA", "IT", "RU", None]),
)
def test_fast_path_agrees_on_generated_numbers(
    digits: str, seps: list[str], plus: bool, region: str | None
) -> None:
    raw = ("+" if plus else "") + "".join(d + s for d, s in zip(digits, seps, strict=False))
    check(raw, region)


# --------------------------------------------------------------------------------- rows vs identity

COMPARED = ("first_name", "last_name", "email", "phone", "phone_raw", "job_title", "seniority", "country")


@pytest.mark.parametrize(
    "cells",
    [
        [
            "ann.lee@acme-corp.com",
            "ANN",
            "o'BRIEN",
            "(212) 555-0100",
            "usa",
            "VP Sales",
            "Acme, Inc.",
            "acme.com",
        ],
        ["bo@gmail.com", "bo", "ek", "0171 1234567", "Germany", "", "", ""],
        ["test@example.com", "Test", "Test", "12345", "FR", "Student", "", ""],
        ["x@acme-corp.com", "", "", "+44 20 7946 0018", "", "Chief Executive", "", "www.acme-corp.com"],
        ["y@acme-corp.com", "José", "Müller", "+61 2 9234 5678", "AU", "Head of IT", "", ""],
    ],
)
def test_rows_match_identity(cells: list[str]) -> None:
    header = ["Email", "First Name", "Last Name", "Phone", "Country", "Title", "Company", "Website"]
    plan = plan_columns(header, Mapping.AUTO)
    row, issues = normalize_row(RowContext(plan), 2, cells)
    assert row is not None and not [i for i in issues if i.severity == "error"]
    fields = ["email", "first_name", "last_name", "phone", "country", "job_title", "company", "website"]
    reference = normalize_lead({f: v for f, v in zip(fields, cells, strict=True) if v})
    values = dict(zip(WORKER_COLUMNS, row.params, strict=True))
    for key in COMPARED:
        assert values[key] == reference.values.get(key), key
    assert values["timezone"] == reference.values.get("timezone")
    import json

    reasons = json.loads(values["bad_candidate_reasons"]) if values["bad_candidate_reasons"] else None
    assert reasons == reference.values.get("bad_candidate_reasons")
    assert (row.account_domain, row.company_key) == (reference.account_domain, reference.company_key)


def test_bench_generator_numbers_take_the_fast_path() -> None:
    """The benchmark's phone formats are decided by the fast path whenever they are valid."""

    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bench_import", Path(__file__).parents[1] / "bench" / "import.py"
    )
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rng = random.Random(7)
    for code, *_ in bench.COUNTRIES:
        for _ in range(200):
            raw = bench.phone_for(rng, code)
            if library_phone(raw, code).e164:
                assert check(raw, code), (raw, code)
            else:
                assert re.search(r"\d", raw)
