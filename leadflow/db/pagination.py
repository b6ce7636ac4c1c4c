"""Keyset (cursor) pagination: stable under inserts and fast at any depth, unlike OFFSET."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.types import TypeDecorator

from leadflow.errors import InvalidInput

T = TypeVar("T")


@dataclass
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_cursor(value: Any, ident: int) -> str:
    if isinstance(value, datetime):
        value = {"dt": value.isoformat()}
    raw = json.dumps([value, ident], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[Any, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value, ident = json.loads(raw)
        if isinstance(value, dict) and "dt" in value:
            value = datetime.fromisoformat(value["dt"])
        if not isinstance(ident, int):
            raise ValueError("bad id")
    except (ValueError, TypeError, json.JSONDecodeError):
        raise InvalidInput("cursor", "is not a cursor returned by this endpoint") from None
    return value, ident


def _python_type(column: InstrumentedAttribute[Any]) -> type:
    sql_type = column.type
    if isinstance(sql_type, TypeDecorator):  # e.g. UTCDateTime: the type it decorates
        sql_type = sql_type.impl_instance
    try:
        python_type: type = sql_type.python_type
    except NotImplementedError:  # pragma: no cover - every sortable column has one
        return object
    return python_type


def keyset(
    stmt: Select[Any],
    column: InstrumentedAttribute[Any],
    id_column: InstrumentedAttribute[int],
    *,
    descending: bool,
    cursor: str | None,
    limit: int,
) -> Select[Any]:
    """Order by (column, id) and start after the cursor. NULLs sort as the smallest value on
    both SQLite and PostgreSQL by ordering explicitly."""

    if cursor:
        value, ident = decode_cursor(cursor)
        if value is not None and column is not id_column and not isinstance(value, _python_type(column)):
            # A cursor of another sort order (or a forged one): comparing it to this column would
            # fail in PostgreSQL and give wrong pages in SQLite.
            raise InvalidInput("cursor", "does not belong to this sort order; start again without it")
        cond: ColumnElement[bool]
        if column is id_column:
            cond = id_column < ident if descending else id_column > ident
        elif value is None:
            cond = (
                and_(column.is_(None), id_column < ident)
                if descending
                else or_(and_(column.is_(None), id_column > ident), column.is_not(None))
            )
        elif descending:
            cond = or_(column < value, and_(column == value, id_column < ident), column.is_(None))
        else:
            cond = or_(column > value, and_(column == value, id_column > ident))
        stmt = stmt.where(cond)
    if column is id_column:
        order = [id_column.desc() if descending else id_column.asc()]
    elif descending:
        order = [column.desc().nulls_last(), id_column.desc()]
    else:
        order = [column.asc().nulls_first(), id_column.asc()]
    return stmt.order_by(*order).limit(limit + 1)


def page_of(rows: list[T], limit: int, key: Any) -> Page[T]:
    """Trim the extra row fetched by :func:`keyset` into a next cursor."""

    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        value, ident = key(last)
        return Page(rows, encode_cursor(value, ident))
    return Page(rows, None)
