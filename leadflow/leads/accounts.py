"""Account (organization) use cases."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from leadflow.audit.service import changes, record
from leadflow.auth.models import User
from leadflow.auth.principal import Perm, Principal
from leadflow.core.contact import ContactError, normalize_company, normalize_country, normalize_domain
from leadflow.db.base import utcnow
from leadflow.db.pagination import Page, keyset, page_of
from leadflow.errors import Conflict, InvalidInput, NotFound, StaleVersion
from leadflow.leads.models import Account, Lead

FIELDS = ("name", "domain", "industry", "employee_count", "annual_revenue", "country", "owner_id")
SORTABLE = {
    "id": Account.id,
    "name": Account.name,
    "created_at": Account.created_at,
    "updated_at": Account.updated_at,
}


def snapshot(account: Account) -> dict[str, Any]:
    return {f: getattr(account, f) for f in FIELDS}


def _normalize(data: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise InvalidInput(unknown[0], f"is not an account field (known: {', '.join(FIELDS)})")
    out = dict(data)
    if "name" in data:
        name = str(data["name"] or "").strip()
        if not name:
            raise InvalidInput("name", "is empty")
        out["name"] = name
        out["name_key"] = normalize_company(name)
    try:
        if data.get("domain"):
            out["domain"] = normalize_domain(str(data["domain"]))
        if data.get("country"):
            out["country"] = normalize_country(str(data["country"]))
    except ContactError as exc:
        raise InvalidInput(exc.field, exc.message) from None
    for key, limit in (("employee_count", 2**31 - 1), ("annual_revenue", 2**63 - 1)):
        if data.get(key) is not None and int(data[key]) < 0:
            raise InvalidInput(key, "must not be negative")
        if data.get(key) is not None and int(data[key]) > limit:  # the column's range
            raise InvalidInput(key, f"must be at most {limit}")
    return out


def _check_owner(session: Session, values: Mapping[str, Any]) -> None:
    owner_id = values.get("owner_id")
    if owner_id is not None:
        owner = session.get(User, owner_id)
        if owner is None or not owner.active:
            raise InvalidInput("owner_id", f"no active user with id {owner_id}")


def create_account(session: Session, actor: Principal, data: Mapping[str, Any]) -> Account:
    actor.require(Perm.ACCOUNTS_WRITE)
    if "name" not in data:
        raise InvalidInput("name", "is required")
    values = _normalize(data)
    _check_owner(session, values)
    if values.get("domain") and session.scalar(select(Account.id).where(Account.domain == values["domain"])):
        raise Conflict(f"an account with domain {values['domain']} exists")
    account = Account(**values)
    session.add(account)
    session.flush()
    record(session, actor, "account", account.id, "create", after=snapshot(account))
    return account


def get_account(session: Session, actor: Principal, account_id: int) -> Account:
    actor.require(Perm.ACCOUNTS_READ)
    account = session.get(Account, account_id)
    if account is None:
        raise NotFound(f"account {account_id} not found")
    return account


def update_account(
    session: Session, actor: Principal, account_id: int, data: Mapping[str, Any], *, expected_version: int
) -> Account:
    actor.require(Perm.ACCOUNTS_WRITE)
    account = get_account(session, actor, account_id)
    if account.version != expected_version:
        raise StaleVersion(f"account {account_id} was changed by someone else; reload and retry")
    values = _normalize(data)
    _check_owner(session, values)
    if values.get("domain") and session.scalar(
        select(Account.id).where(Account.domain == values["domain"], Account.id != account_id)
    ):
        raise Conflict(f"an account with domain {values['domain']} exists")
    before = snapshot(account)
    for key, value in values.items():
        setattr(account, key, value)
    b, a = changes(before, snapshot(account))
    if not a:
        return account
    now = utcnow()
    res = session.execute(
        update(Account)
        .where(Account.id == account_id, Account.version == expected_version)
        .values(version=expected_version + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if res.rowcount != 1:  # type: ignore[attr-defined]
        raise StaleVersion(f"account {account_id} was changed by someone else; reload and retry")
    account.version = expected_version + 1
    account.updated_at = now
    record(session, actor, "account", account.id, "update", before=b, after=a)
    return account


def _prefix(term: str) -> str:
    """A LIKE pattern matching values that start with ``term``: "%" and "_" are literal."""

    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


@dataclass
class AccountFilter:
    q: str | None = None
    domain: str | None = None
    industry: str | None = None
    country: str | None = None
    owner_id: int | None = None


def list_accounts(
    session: Session,
    actor: Principal,
    f: AccountFilter,
    *,
    sort: str = "id",
    descending: bool = False,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[Account]:
    actor.require(Perm.ACCOUNTS_READ)
    if sort not in SORTABLE:
        raise InvalidInput("sort", f"must be one of {', '.join(SORTABLE)}")
    if not 1 <= limit <= 1000:
        raise InvalidInput("limit", "must be between 1 and 1000")
    stmt = select(Account)
    if f.q:
        term = f.q.strip().lower()
        stmt = stmt.where(
            or_(
                Account.name_key.like(_prefix(normalize_company(term)), escape="\\"),
                Account.domain.like(_prefix(term), escape="\\"),
            )
        )
    if f.domain:
        stmt = stmt.where(Account.domain == f.domain.strip().lower())
    if f.industry:
        stmt = stmt.where(Account.industry == f.industry)
    if f.country:
        from leadflow.leads.service import country_filter

        stmt = stmt.where(Account.country == country_filter(f.country))
    if f.owner_id is not None:
        stmt = stmt.where(Account.owner_id == f.owner_id)
    column = SORTABLE[sort]
    rows = list(
        session.scalars(keyset(stmt, column, Account.id, descending=descending, cursor=cursor, limit=limit))
    )
    return page_of(rows, limit, lambda r: (getattr(r, column.key), r.id))


def lead_counts(session: Session, actor: Principal, account_ids: list[int]) -> dict[int, int]:
    """Leads per account that ``actor`` may see (a rep's count never hints at hidden leads)."""

    from leadflow.leads.service import visibility_clause

    if not account_ids:
        return {}
    stmt = (
        select(Lead.account_id, func.count())
        .where(Lead.account_id.in_(account_ids), Lead.merged_into_id.is_(None))
        .group_by(Lead.account_id)
    )
    visible = visibility_clause(session, actor)
    if visible is not None:
        stmt = stmt.where(visible)
    return {int(a): int(n) for a, n in session.execute(stmt) if a is not None}
