"""One CSV row -> the values to store, or the reasons it cannot be stored (pure; runs in workers).

Normalization is :func:`leadflow.core.identity.normalize_lead`, the same function every other
capture path uses (phones included: :mod:`leadflow.core.phones`), so an imported lead looks like
one typed into the API. Only non-blank cells are passed on, so a blank cell never erases a stored
value.

Row rules (leadflow/imports/README.md gives the whole list):
- every row needs a valid email (imports match leads by email, the only unique key a lead has);
  an invalid email, or any value identity refuses, fails the row;
- a row whose number of fields differs from the header fails (trailing empty fields are ignored);
- a value longer than MAX_FIELD_CHARS fails its row;
- an unknown stage value, or an owner that matches no active user, is a *warning*: the lead is
  stored (stage new / unassigned) and the original value kept in ``attributes``.
"""

from __future__ import annotations

import contextlib
import json
import marshal
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from leadflow.core import lifecycle
from leadflow.core.identity import normalize_lead
from leadflow.core.lifecycle import Imported, Origin, Stage
from leadflow.imports.mapping import (
    HUBSPOT_STATUS_OVERRIDES,
    PRE_SQL,
    ColumnPlan,
    map_stage,
)
from leadflow.imports.reader import MAX_FIELD_CHARS, Chunk, FileInfo, read_chunk

PHONE_RAW_MAX = 64
INDUSTRY_MAX = 100
DOMAIN_MAX = 253
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
_REPORT_VALUE_MAX = 200
WORKER_NICENESS = 5


class Issue(NamedTuple):
    """A line of the error report."""

    line: int
    column: str
    value: str
    reason: str
    severity: str  # "error": the row was not imported; "warning": imported, see reason


# The lead columns a worker fills, in this order (the writer appends account, timestamps, import).
# origin, consent and unsubscribed are None when the row does not give them (the insert defaults
# them); JSON columns travel as JSON text.
WORKER_COLUMNS = (
    "first_name",
    "last_name",
    "email",
    "phone",
    "phone_raw",
    "job_title",
    "seniority",
    "department",
    "company",
    "country",
    "timezone",
    "source",
    "campaign",
    "origin",
    "owner_id",
    "stage",
    "status_reason",
    "bad_reason",
    "bad_candidate_reasons",
    "consent",
    "unsubscribed",
    "attributes",
)
FIRMOGRAPHICS = ("industry", "employee_count", "annual_revenue", "country")


class NormRow(NamedTuple):
    """A valid row, as compact as possible: rows cross a process boundary (marshal)."""

    line: int
    email: str
    params: tuple[Any, ...]  # WORKER_COLUMNS
    soft: tuple[str, ...]  # inferred values (time zone from phone, seniority from title): fill-only
    has_phone: bool
    has_name: bool
    account_domain: str | None
    company_key: str | None
    company_name: str | None
    account_values: tuple[Any, ...]  # FIRMOGRAPHICS
    evidence: str | None  # the stage's evidence, JSON

    def given(self) -> dict[str, Any]:
        """The lead values the row gives (JSON decoded), for merging into a stored lead."""

        out = {k: v for k, v in zip(WORKER_COLUMNS, self.params, strict=True) if v is not None}
        for key in ("attributes", "bad_candidate_reasons"):
            if key in out:
                out[key] = json.loads(out[key])
        return out


class ChunkResult(NamedTuple):
    rows: bytes  # marshal of [tuple(NormRow), ...]
    issues: list[Issue]
    processed: int
    failed: int  # rows with an error issue

    def norm_rows(self) -> list[NormRow]:
        return [NormRow._make(t) for t in marshal.loads(self.rows)]


# One encoder for every row (json.dumps with options builds a new encoder per call).
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _json(value: Any) -> str | None:
    return None if value is None else _ENCODER.encode(value)


@dataclass(frozen=True)
class UserRef:
    id: int
    active: bool
    label: str
    team: str | None = None


@dataclass(frozen=True)
class RowContext:
    """Everything a worker needs, sent once per worker."""

    plan: ColumnPlan
    users_by_email: dict[str, UserRef] = field(default_factory=dict)
    users_by_name: dict[str, list[UserRef]] = field(default_factory=dict)
    # Who imports: a manager assigns leads only within their team (as in leads.service).
    actor_role: str = "admin"
    actor_id: int | None = None
    actor_team: str | None = None

    @property
    def columns(self) -> tuple[tuple[int, str, str | None], ...]:
        cached: tuple[tuple[int, str, str | None], ...] | None = self.__dict__.get("_columns")
        if cached is None:
            cached = tuple((c.index, c.header, c.field) for c in self.plan.columns)
            object.__setattr__(self, "_columns", cached)
        return cached

    def memo(self, name: str) -> dict[Any, Any]:
        """A memo table that lives and dies with this context."""

        table: dict[Any, Any] | None = self.__dict__.get("_memo_" + name)
        if table is None:
            table = {}
            object.__setattr__(self, "_memo_" + name, table)
        return table


def report_value(value: str) -> str:
    """A cell as the error report shows it: shortened, and never a spreadsheet formula (the
    report is opened in Excel; a value from the file must not run there)."""

    text = value if len(value) <= _REPORT_VALUE_MAX else value[:_REPORT_VALUE_MAX] + "..."
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


_NUMBER_NOISE = re.compile(r"^\s*(?:[$€£¥]|usd|eur|gbp|chf)?\s*|\s*(?:usd|eur|gbp|chf)?\s*$", re.IGNORECASE)
_SUFFIX = {"k": 1_000, "m": 1_000_000, "mm": 1_000_000, "b": 1_000_000_000, "bn": 1_000_000_000}
_SUFFIXED = re.compile(r"^([0-9][0-9,_]*(?:\.[0-9]+)?)\s*(k|m|mm|b|bn)$", re.IGNORECASE)


def clean_number(value: str) -> str:
    """'$1,200,000', '1.2M', '250 USD' -> a plain number identity can read; else unchanged."""

    if value.isdigit():
        return value
    text = _NUMBER_NOISE.sub("", value)
    m = _SUFFIXED.match(text)
    if m:
        number = float(m.group(1).replace(",", "").replace("_", "")) * _SUFFIX[m.group(2).lower()]
        return str(int(number))
    return text


_EMAIL_IN_TEXT = re.compile(r"[^\s<>()\"',;]+@[^\s<>()\"',;]+")
_SPACES = re.compile(r"\s+")


def _resolve_owner(ctx: RowContext, value: str) -> tuple[int | None, str | None]:
    """(user id, warning)."""

    memo = ctx.memo("owner")
    hit: tuple[int | None, str | None] | None = memo.get(value)
    if hit is None:
        hit = _match_owner(ctx, value)
        if len(memo) > _MEMO_MAX:
            memo.clear()
        memo[value] = hit
    return hit


def _match_owner(ctx: RowContext, value: str) -> tuple[int | None, str | None]:
    m = _EMAIL_IN_TEXT.search(value)
    candidates: list[UserRef]
    if m:
        user = ctx.users_by_email.get(m.group(0).lower())
        candidates = [user] if user else []
    else:
        candidates = ctx.users_by_name.get(_SPACES.sub(" ", value.strip().lower()), [])
    if not candidates:
        return None, f"no user matches owner {value!r}; the lead is left unassigned"
    active = [u for u in candidates if u.active]
    if len(active) > 1:
        return None, f"several users are named {value!r}; the lead is left unassigned (use the owner's email)"
    if not active:
        return None, f"owner {value!r} is an inactive user; the lead is left unassigned"
    owner = active[0]
    if ctx.actor_role == "manager" and owner.team != ctx.actor_team and owner.id != ctx.actor_id:
        return (
            None,
            f"owner {value!r} is not in your team (managers assign within their team); left unassigned",
        )
    return owner.id, None


@dataclass(frozen=True)
class _StageChoice:
    stage: str
    reason: str | None
    bad_reason: str | None
    evidence: str | None  # JSON
    used: str | None  # the column that decided the stage
    stage_unknown: bool
    status_unknown: bool


# Memo tables (per import context): stage columns and owners repeat the same few values all
# file long. They live on the context, not in a module dict keyed by id(ctx): ids are reused
# once a context is freed, and a later import would read the earlier one's answers.
_MEMO_MAX = 10_000


def _stage(
    ctx: RowContext, stage_value: str | None, status_value: str | None, origin_value: str | None
) -> _StageChoice:
    """The lead's first stage: lifecycle.initial with Imported evidence when the file names one.

    The stage column decides; a lead status next to it only moves a pre-SQL lead to a side state
    (HubSpot's UNQUALIFIED and BAD_TIMING)."""

    memo = ctx.memo("stage")
    memo_key = (stage_value, status_value, origin_value)
    hit: _StageChoice | None = memo.get(memo_key)
    if hit is not None:
        return hit
    mapping = ctx.plan.mapping
    chosen: tuple[Stage, str, str, str] | None = None  # stage, system, original, field
    unknown = {"stage": False, "lead_status": False}
    for fname, value in (("stage", stage_value), ("lead_status", status_value)):
        if value is None:
            continue
        found = map_stage(mapping, fname, value)
        if found is None:
            unknown[fname] = True
            continue
        stage, system = found
        if chosen is None or (
            fname == "lead_status" and stage in HUBSPOT_STATUS_OVERRIDES and chosen[0] in PRE_SQL
        ):
            chosen = (stage, system, value, fname)
    try:
        origin = Origin((origin_value or Origin.MARKETING.value).strip().lower())
    except ValueError:
        origin = Origin.MARKETING  # identity reports the bad origin value; the row fails there
    if chosen is None:
        move = lifecycle.initial(Stage.NEW, origin=origin)
    else:
        target, system, original, _ = chosen
        reason = (
            f"imported from {system}: {original}" if target in (Stage.UNQUALIFIED, Stage.NURTURE) else None
        )
        move = lifecycle.initial(
            target, origin=origin, evidence=Imported(system=system, original_value=original), reason=reason
        )
    result = _StageChoice(
        stage=move.target.value,
        reason=move.reason,
        bad_reason=move.bad_reason.value if move.bad_reason else None,
        evidence=_json(lifecycle.evidence_to_dict(move.evidence)),
        used=chosen[3] if chosen else None,
        stage_unknown=unknown["stage"],
        status_unknown=unknown["lead_status"],
    )
    if len(memo) > _MEMO_MAX:
        memo.clear()
    memo[memo_key] = result
    return result


def normalize_row(ctx: RowContext, line: int, cells: list[str]) -> tuple[NormRow | None, list[Issue]]:
    plan = ctx.plan
    issues: list[Issue] = []
    width = plan.width
    if len(cells) != width:
        if len(cells) > width and not any(c.strip() for c in cells[width:]):
            cells = cells[:width]
        else:
            return None, [
                Issue(
                    line,
                    "",
                    f"{len(cells)} fields",
                    f"the row has {len(cells)} fields, the header has {width}",
                    "error",
                )
            ]
    raw: dict[str, str] = {}
    attributes: dict[str, str] = {}
    for index, header, target in ctx.columns:
        cell = cells[index]
        if not cell:
            continue
        if len(cell) > MAX_FIELD_CHARS:
            issues.append(
                Issue(
                    line,
                    header,
                    report_value(cell),
                    f"the value is {len(cell):,} characters long; the limit is {MAX_FIELD_CHARS:,}",
                    "error",
                )
            )
            continue
        value = cell.strip()
        if not value:
            continue
        if target is None:
            attributes[header] = value
        else:
            raw[target] = value
    if issues:
        return None, issues

    # Import-specific fields -------------------------------------------------------------
    full = raw.pop("full_name", None)
    if full is not None:
        if "first_name" in raw or "last_name" in raw:
            attributes[plan.header_of("full_name")] = full
        else:
            first, _, rest = full.partition(" ")
            if rest.strip():
                raw["first_name"], raw["last_name"] = first, rest.strip()
            else:
                raw["last_name"] = first
    mobile = raw.pop("mobile", None)
    if mobile is not None:
        if "phone" in raw:
            attributes[plan.header_of("mobile")] = mobile
        else:
            raw["phone"] = mobile
    for key in ("employee_count", "annual_revenue"):
        if key in raw:
            raw[key] = clean_number(raw[key])

    owner_id: int | None = None
    owner = raw.pop("owner", None)
    if owner is not None:
        owner_id, warning = _resolve_owner(ctx, owner)
        if warning:
            issues.append(Issue(line, plan.header_of("owner"), report_value(owner), warning, "warning"))
            attributes[plan.header_of("owner")] = owner

    stage_value = raw.pop("stage", None)
    status_value = raw.pop("lead_status", None)
    origin_value = raw.get("origin")
    stage = _stage(ctx, stage_value, status_value, origin_value)
    for fname, stage_cell, warn in (
        ("stage", stage_value, stage.stage_unknown),
        ("lead_status", status_value, stage.status_unknown),
    ):
        if stage_cell is None:
            continue
        if warn:
            issues.append(
                Issue(
                    line,
                    plan.header_of(fname),
                    report_value(stage_cell),
                    "unknown stage value; the lead starts as new (the value is kept in attributes)",
                    "warning",
                )
            )
        if stage.used != fname:
            attributes[plan.header_of(fname)] = stage_cell

    # Identity: the shared normalization (phones included) ----------------------------------
    norm = normalize_lead(raw, require_contact=False)
    values = norm.values
    reasons = values.pop("bad_candidate_reasons", None)
    for fname, reason in norm.errors:
        cell = raw.get(fname, "")
        issues.append(Issue(line, plan.header_of(fname), report_value(cell), reason, "error"))
    email = values.get("email")
    if "email" not in raw:
        issues.append(
            Issue(
                line,
                plan.header_of("email"),
                "",
                "the email is empty: imports match leads by email, so every row needs one",
                "error",
            )
        )
    phone_raw = values.get("phone_raw")
    if phone_raw is not None and len(phone_raw) > PHONE_RAW_MAX:
        issues.append(
            Issue(
                line,
                plan.header_of("phone"),
                report_value(raw["phone"]),
                f"is longer than {PHONE_RAW_MAX} characters",
                "error",
            )
        )
    # Values identity inferred (time zone from the phone, seniority from the title) only fill.
    soft: tuple[str, ...] = ()
    if values.get("timezone") and "timezone" not in raw:
        soft = ("timezone",)
    if values.get("seniority") and "seniority" not in raw:
        soft = (*soft, "seniority")

    industry = norm.account_values.get("industry")
    if industry and len(industry) > INDUSTRY_MAX:
        issues.append(
            Issue(
                line,
                plan.header_of("industry"),
                report_value(industry),
                f"is longer than {INDUSTRY_MAX} characters",
                "error",
            )
        )
    if norm.account_domain and len(norm.account_domain) > DOMAIN_MAX:
        issues.append(
            Issue(
                line,
                plan.header_of("website"),
                report_value(raw.get("website", "")),
                "the domain is too long",
                "error",
            )
        )
    for key, limit in (("employee_count", INT32_MAX), ("annual_revenue", INT64_MAX)):
        number = norm.account_values.get(key)
        if number is not None and number > limit:
            issues.append(
                Issue(line, plan.header_of(key), report_value(raw.get(key, "")), "is too large", "error")
            )
    if any(i.severity == "error" for i in issues) or not email:
        return None, issues

    values["owner_id"] = owner_id
    values["stage"] = stage.stage
    values["status_reason"] = stage.reason
    values["bad_reason"] = stage.bad_reason
    values["bad_candidate_reasons"] = _json(reasons) if reasons else None
    values["attributes"] = _json(attributes) if attributes else None
    av = norm.account_values
    row = NormRow(
        line,
        email,
        tuple(map(values.get, WORKER_COLUMNS)),
        soft,
        "phone" in raw,
        "first_name" in raw or "last_name" in raw,
        norm.account_domain,
        norm.company_key,
        values.get("company"),
        tuple(map(av.get, FIRMOGRAPHICS)),
        stage.evidence,
    )
    return row, issues


def process_chunk(ctx: RowContext, records: Iterable[tuple[int, list[str]]]) -> ChunkResult:
    rows: list[tuple[Any, ...]] = []
    issues: list[Issue] = []
    processed = failed = 0
    for line, cells in records:
        processed += 1
        row, found = normalize_row(ctx, line, cells)
        if row is not None:
            rows.append(tuple(row))
        else:
            failed += 1
        if found:
            issues.extend(found)
    return ChunkResult(marshal.dumps(rows), issues, processed, failed)


# Worker-process state: the pool's initializer sets it once per worker.
_WORKER: tuple[RowContext, FileInfo] | None = None


def init_worker(ctx: RowContext, info: FileInfo) -> None:
    global _WORKER
    _WORKER = (ctx, info)
    # The writing process is the pipeline's bottleneck (the database takes one writer): workers
    # yield the CPU to it and fill the idle time.
    with contextlib.suppress(OSError, AttributeError):
        os.nice(WORKER_NICENESS)


def work(chunk: Chunk) -> ChunkResult:
    """Read one chunk of the file and validate it (runs in a worker process)."""

    assert _WORKER is not None, "init_worker was not called"
    ctx, info = _WORKER
    return process_chunk(ctx, read_chunk(info, chunk))
