"""Nested transactions (SAVEPOINTs) and domain events on both backends: a released savepoint is
undone by an outer rollback, a rolled-back savepoint drops only the events raised inside it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from leadflow import events
from leadflow.audit.models import AuditEntry
from leadflow.db.base import Database


class Boom(Exception):
    pass


@pytest.fixture
def seen() -> Iterator[list[str]]:
    got: list[str] = []

    def handler(ev: events.DomainEvent) -> None:
        got.append(ev.payload["tag"])

    events.subscribe("test.tx", handler)
    yield got
    events.unsubscribe("test.tx", handler)


def _audit(session: Session, tag: str) -> None:
    session.add(AuditEntry(entity_type="test", entity_id=1, action=tag, actor_label="test"))


def _count(db: Database) -> int:
    with db.transaction() as s:
        return int(s.scalar(select(func.count()).select_from(AuditEntry)) or 0)


def test_outer_rollback_undoes_a_released_savepoint(db: Database) -> None:
    with pytest.raises(Boom), db.transaction() as s:
        with s.begin_nested():
            _audit(s, "inner")
        s.flush()
        raise Boom
    assert _count(db) == 0


def test_rolled_back_savepoint_keeps_the_outer_work(db: Database) -> None:
    with db.transaction() as s:
        _audit(s, "outer")
        s.flush()
        with pytest.raises(Boom), s.begin_nested():
            _audit(s, "inner")
            s.flush()
            raise Boom
    with db.transaction() as s:
        assert list(s.scalars(select(AuditEntry.action))) == ["outer"]


def test_events_follow_their_transaction(db: Database, seen: list[str]) -> None:
    with db.transaction() as s:
        events.emit(s, "test.tx", tag="outer")
        with s.begin_nested():
            events.emit(s, "test.tx", tag="released")
        with pytest.raises(Boom), s.begin_nested():
            events.emit(s, "test.tx", tag="dropped")
            raise Boom
        assert seen == []  # nothing is dispatched before the outermost commit
        events.emit(s, "test.tx", tag="last")
    assert seen == ["outer", "released", "last"]


def test_events_of_a_rolled_back_transaction_are_dropped(db: Database, seen: list[str]) -> None:
    with pytest.raises(Boom), db.transaction() as s:
        with s.begin_nested():
            events.emit(s, "test.tx", tag="released")
        raise Boom
    with db.transaction() as s:
        events.emit(s, "test.tx", tag="next")
    assert seen == ["next"]
