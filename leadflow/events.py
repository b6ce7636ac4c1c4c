"""Domain events, dispatched after the transaction that raised them commits.

Cross-feature reactions (a score crossing a threshold opens a task, a stage change fires a
webhook) subscribe here instead of features importing each other's internals. Events raised in a
transaction that rolls back are dropped.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

log = logging.getLogger("leadflow.events")


@dataclass(frozen=True)
class DomainEvent:
    name: str
    payload: dict[str, Any]


Handler = Callable[[DomainEvent], None]
_handlers: dict[str, list[Handler]] = defaultdict(list)


def subscribe(name: str, handler: Handler) -> None:
    _handlers[name].append(handler)


def unsubscribe(name: str, handler: Handler) -> None:
    if handler in _handlers.get(name, []):
        _handlers[name].remove(handler)


def emit(session: Session, name: str, **payload: Any) -> None:
    session.info.setdefault("pending_events", []).append(DomainEvent(name, payload))


@event.listens_for(Session, "after_commit")
def _dispatch(session: Session) -> None:
    pending: list[DomainEvent] = session.info.pop("pending_events", [])
    for ev in pending:
        for handler in list(_handlers.get(ev.name, ())):
            try:
                handler(ev)
            except Exception:  # a failing subscriber must not undo a committed change
                log.exception("event handler failed for %s", ev.name)


@event.listens_for(Session, "after_rollback")
def _drop(session: Session) -> None:
    session.info.pop("pending_events", None)
