"""Property-based robustness of the two parsers that take files from outside: the CSV import
reader (with the column mapping) and the scoring-model loader. Whatever the input, they either
answer or refuse with a domain error naming the problem (InvalidInput: 422 / exit code 2), never
another exception (a traceback); and what they accept they read back exactly."""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from leadflow.errors import InvalidInput
from leadflow.imports.mapping import Mapping, plan_columns
from leadflow.imports.reader import ImportFileError, inspect_file, iter_records
from leadflow.scoring.service import validate_document

EXAMPLES = int(os.environ.get("LEADFLOW_PROPERTY_EXAMPLES", "150"))
SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)

# Cell text: printable text with the CSV specials (quotes, delimiters, line breaks) mixed in.
cell = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufeff")
    | st.sampled_from([",", ";", "\t", '"', "\n", " "]),
    max_size=12,
)
encodings = st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "cp1252"])


def _write(path: Path, header: list[str], rows: list[list[str]], delimiter: str, encoding: str) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    w.writerow(header)
    w.writerows(rows)
    path.write_bytes(buf.getvalue().encode(encoding))


@st.composite
def tables(draw: st.DrawFn) -> tuple[list[str], list[list[str]], str, str]:
    width = draw(st.integers(1, 5))
    header = ["Email"] + [f"Col{i}" for i in range(1, width)]
    rows = draw(st.lists(st.lists(cell, min_size=width, max_size=width), min_size=1, max_size=20))
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    encoding = draw(encodings)
    if encoding == "cp1252":
        rows = [[c.encode("cp1252", "replace").decode("cp1252") for c in r] for r in rows]
    return header, rows, delimiter, encoding


def _as_read(rows: list[list[str]], encoding: str) -> list[list[str]]:
    """What the reader can know: it tries UTF-8 first, so a Windows-1252 file whose bytes are
    also valid UTF-8 (e.g. "Â¡" is C2 A1, UTF-8 for "¡") is read as UTF-8, which is what such
    bytes nearly always are."""

    if encoding != "cp1252":
        return rows
    data = "\x00".join("\x00".join(r) for r in rows).encode("cp1252")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return rows
    return [[c.encode("cp1252").decode("utf-8") for c in r] for r in rows]


def _meaningful(row: list[str]) -> bool:
    return not (len(row) == 1 and not row[0].strip()) and any(row)


@SETTINGS
@given(tables())
@example((["Email"], [["Â¡"]], ",", "cp1252"))  # Windows-1252 bytes that are valid UTF-8 too
def test_a_well_formed_csv_reads_back_exactly_or_is_refused_by_name(
    table: tuple[list[str], list[list[str]], str, str],
) -> None:
    header, rows, delimiter, encoding = table
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "in.csv"
        _write(path, header, rows, delimiter, encoding)
        try:
            info = inspect_file(path, chunk_size=7, work_dir=Path(tmp))
        except ImportFileError as exc:
            assert exc.loc == ["file"] and exc.reason
            return
        plan_columns(info.header, Mapping.AUTO)
        got = [r for _, r in iter_records(info)]
        # Line endings inside quoted cells are normalized by the CSV layer; blank records skipped.
        want = [[c.replace("\r\n", "\n") for c in r] for r in _as_read(rows, encoding) if _meaningful(r)]
        norm = [[c.replace("\r\n", "\n") for c in r] for r in got]
        if info.header == header and info.delimiter == delimiter:
            assert [r for r in norm if any(r)] == [r for r in want if any(r)]


@SETTINGS
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise_anything_but_a_file_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "in.csv"
        path.write_bytes(data)
        try:
            info = inspect_file(path, chunk_size=5, work_dir=Path(tmp))
            plan_columns(info.header, Mapping.AUTO)
            list(iter_records(info))
        except ImportFileError as exc:
            assert exc.reason


@SETTINGS
@given(st.lists(st.text(max_size=20), min_size=1, max_size=12), st.sampled_from(list(Mapping)))
def test_any_header_maps_without_a_crash(header: list[str], mapping: Mapping) -> None:
    try:
        plan = plan_columns(header, mapping)
    except InvalidInput as exc:
        assert exc.reason
        return
    assert len(set(plan.fields)) == len(plan.fields) if isinstance(plan.fields, list) else True


json_leaf = st.none() | st.booleans() | st.integers(-(10**12), 10**12) | st.floats() | st.text(max_size=15)
json_values = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=25,
)

FIELDS = ["job_title", "seniority", "employee_count", "industry", "country", "free_mail", "email_domain"]
rule_keys = st.sampled_from(
    [
        "id",
        "field",
        "points",
        "equals",
        "in",
        "min",
        "max",
        "matches",
        "exists",
        "label",
        "event",
        "where",
        "cap",
    ]
)


@st.composite
def model_documents(draw: st.DrawFn) -> Any:
    """Near-valid documents: the right shape with random values, so the checks deep inside run."""

    def rule() -> dict[str, Any]:
        keys = draw(st.lists(rule_keys, max_size=6, unique=True))
        out: dict[str, Any] = {k: draw(json_values) for k in keys}
        if draw(st.booleans()):
            out["field"] = draw(st.sampled_from(FIELDS))
        if draw(st.booleans()):
            out["matches"] = draw(st.text(alphabet="()[]{}*+?\\.|^$ab", max_size=8))
        return out

    doc: dict[str, Any] = {
        "name": draw(st.text(max_size=10) | json_values),
        "fit": {"rules": [rule() for _ in range(draw(st.integers(0, 3)))]},
        "engagement": {"rules": [rule() for _ in range(draw(st.integers(0, 3)))]},
    }
    for key in draw(
        st.lists(st.sampled_from(["scale", "weights", "grades", "thresholds", "max_points"]), max_size=3)
    ):
        doc[key] = draw(json_values)
    return doc


@SETTINGS
@given(json_values | model_documents())
def test_the_scoring_model_loader_refuses_by_name_never_crashes(document: Any) -> None:
    try:
        model = validate_document(document)
    except InvalidInput as exc:
        errors = exc.extra.get("errors") or []
        assert errors and all("loc" in e and e["msg"] for e in errors)
        return
    # What it accepts survives its own round trip.
    again = validate_document(model.to_document())
    assert again.to_document() == model.to_document()
