"""The report registry: every report is a function from (session, actor, params) to a
:class:`ReportResult` (columns, rows, an optional chart), registered under a name. The API
(``/api/reports/{name}``), the CLI (``leadflow report NAME``), CSV export and PNG charts work for
every registered report with no further code. See docs/reports.md for adding one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from leadflow.auth.models import User
from leadflow.auth.principal import Perm, Principal, Visibility
from leadflow.errors import InvalidInput, NotFound

ColumnKind = Literal["text", "int", "money", "pct", "days", "date"]
ParamKind = Literal["str", "int", "month", "date", "choice", "bool"]


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    kind: ColumnKind = "text"


@dataclass(frozen=True)
class Chart:
    """How to draw the result: ``x`` is a column of labels, ``y`` the value columns."""

    kind: Literal["bar", "barh", "stacked", "funnel", "line"]
    x: str
    y: tuple[str, ...]
    title: str = ""
    ylabel: str = ""
    exclude_total: bool = True  # leave the "total" row out of the picture


@dataclass
class ReportResult:
    title: str
    columns: list[Column]
    rows: list[dict[str, Any]]
    chart: Chart | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self, name: str, params: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "name": name,
            "title": self.title,
            "params": {k: (v.isoformat() if isinstance(v, date) else v) for k, v in params.items()},
            "columns": [{"key": c.key, "label": c.label, "kind": c.kind} for c in self.columns],
            "rows": self.rows,
            "notes": self.notes,
        }


@dataclass(frozen=True)
class Param:
    name: str
    kind: ParamKind = "str"
    default: Any = None
    choices: tuple[str, ...] = ()
    help: str = ""

    def parse(self, raw: Any) -> Any:
        if raw is None or raw == "":
            return self.default
        value = str(raw).strip()
        try:
            if self.kind == "int":
                return int(value)
            if self.kind == "bool":
                if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError
                return value.lower() in ("1", "true", "yes")
            if self.kind == "date":
                return date.fromisoformat(value)
            if self.kind == "month":
                y, m = value.split("-")
                if len(y) != 4 or not 1 <= int(m) <= 12:
                    raise ValueError
                return f"{int(y):04d}-{int(m):02d}"
        except ValueError:
            expected = {"int": "a whole number", "date": "a date YYYY-MM-DD", "month": "a month YYYY-MM"}
            raise InvalidInput(self.name, f"must be {expected.get(self.kind, 'true or false')}") from None
        if self.kind == "choice" and value not in self.choices:
            raise InvalidInput(self.name, f"must be one of {', '.join(self.choices)}")
        return value


ReportFn = Callable[[Session, Principal, dict[str, Any]], ReportResult]


@dataclass(frozen=True)
class Report:
    name: str
    title: str
    description: str
    fn: ReportFn
    params: tuple[Param, ...] = ()
    permission: Perm = Perm.REPORTS_READ
    refresh_facts: bool = False  # the report reads the funnel facts: refresh them first

    def parse(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        known = {p.name for p in self.params}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise InvalidInput(
                unknown[0],
                f"is not a parameter of report {self.name} (known: {', '.join(sorted(known)) or 'none'})",
            )
        return {p.name: p.parse(raw.get(p.name)) for p in self.params}


REPORTS: dict[str, Report] = {}


def register(
    name: str,
    title: str,
    *,
    params: tuple[Param, ...] = (),
    permission: Perm = Perm.REPORTS_READ,
    refresh_facts: bool = False,
) -> Callable[[ReportFn], ReportFn]:
    """Decorator: ``@register("sla", "Handoff SLA compliance", params=(...))`` on a report
    function makes it available everywhere."""

    def wrap(fn: ReportFn) -> ReportFn:
        REPORTS[name] = Report(name, title, (fn.__doc__ or "").strip(), fn, params, permission, refresh_facts)
        return fn

    return wrap


def get(name: str) -> Report:
    _load_builtins()
    report = REPORTS.get(name)
    if report is None:
        raise NotFound(f"no report {name!r} (reports: {', '.join(sorted(REPORTS))})")
    return report


def all_reports() -> list[Report]:
    _load_builtins()
    return [REPORTS[k] for k in sorted(REPORTS)]


def run(
    session: Session, actor: Principal, name: str, raw: Mapping[str, Any]
) -> tuple[Report, dict[str, Any], ReportResult]:
    report = get(name)
    actor.require(Perm.REPORTS_READ)
    actor.require(report.permission)
    params = report.parse(raw)
    if report.refresh_facts:
        from leadflow.reports.facts import refresh

        refresh(session)
    return report, params, report.fn(session, actor, params)


def _load_builtins() -> None:
    # Importing the module registers its reports; other features register theirs on import of
    # their own reports module (listed here so that every entry point sees them).
    import leadflow.qualification.reports
    import leadflow.reports.builtin  # noqa: F401


# ------------------------------------------------------------------------------ helpers for reports


def scope_owner_ids(session: Session, actor: Principal) -> list[int] | None:
    """Whose records a report may count for this actor: None = everyone (marketing, admins), a
    manager's team, a rep's own."""

    mode = actor.visibility
    if mode is Visibility.ALL:
        return None
    if mode is Visibility.OWN or actor.team is None:
        return [actor.user_id] if actor.user_id is not None else []
    return list(session.scalars(select(User.id).where(User.team == actor.team)))


def owner_filter(column: Any, owners: list[int] | None) -> ColumnElement[bool] | None:
    if owners is None:
        return None
    result: ColumnElement[bool] = column.in_(owners)
    return result


def user_names(session: Session, ids: set[int | None]) -> dict[int | None, str]:
    wanted = [i for i in ids if i is not None]
    names: dict[int | None, str] = {None: "(unassigned)"}
    if wanted:
        names.update(
            {
                uid: name
                for uid, name in session.execute(select(User.id, User.name).where(User.id.in_(wanted)))
            }
        )
    return names
