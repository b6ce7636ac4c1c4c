"""Domain events, dispatched after the transaction that raised them commits.

Cross-feature reactions (a score crossing a threshold opens a task, a stage change fires a
webhook) subscribe here instead of features importing each other's internals. Events raised in a
transaction that rolls back are dropped.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

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


# Reactions that must commit or roll back with the change that raised the event (an assignment
# made when a lead becomes MQL, audited atomically with the move) run inside the emitting
# transaction, at once; an exception there fails the whole unit of work.
InlineHandler = Callable[[Session, DomainEvent], None]
_inline: dict[str, list[InlineHandler]] = defaultdict(list)


def subscribe_in_transaction(name: str, handler: InlineHandler) -> None:
    if handler not in _inline[name]:
        _inline[name].append(handler)


def unsubscribe_in_transaction(name: str, handler: InlineHandler) -> None:
    if handler in _inline.get(name, []):
        _inline[name].remove(handler)


# A reaction that is cheaper done for many events at once (opening the sales handoffs of 300
# leads a rescoring moved to MQL) subscribes to the whole list: :func:`emit_many` hands it the
# events of one set-based change together, :func:`emit` a list of one.
InlineBatchHandler = Callable[[Session, list[DomainEvent]], None]
_inline_many: dict[str, list[InlineBatchHandler]] = defaultdict(list)


def subscribe_in_transaction_many(name: str, handler: InlineBatchHandler) -> None:
    if handler not in _inline_many[name]:
        _inline_many[name].append(handler)


def unsubscribe_in_transaction_many(name: str, handler: InlineBatchHandler) -> None:
    if handler in _inline_many.get(name, []):
        _inline_many[name].remove(handler)


def emit(session: Session, name: str, **payload: Any) -> None:
    emit_many(session, name, [payload])


def emit_many(session: Session, name: str, payloads: list[dict[str, Any]]) -> None:
    """One event per payload, as many :func:`emit` calls; in-transaction subscribers to the list
    (:func:`subscribe_in_transaction_many`) are called once with all of them."""

    events = [DomainEvent(name, payload) for payload in payloads]
    if not events:
        return
    session.info.setdefault("pending_events", []).extend(events)
    for ev in events:
        for handler in list(_inline.get(name, ())):
            handler(session, ev)
    for batch_handler in list(_inline_many.get(name, ())):
        batch_handler(session, events)


# Events belong to the transaction that raised them: a rolled-back SAVEPOINT drops the events
# raised inside it (and only those), a released one hands them to its parent, and they are
# dispatched once the outermost transaction commits. SQLAlchemy fires after_commit and
# after_rollback for savepoints too, so the bookkeeping below tells the two apart.


@event.listens_for(Session, "after_transaction_create")
def _mark(session: Session, transaction: SessionTransaction) -> None:
    if transaction.nested:
        marks = session.info.setdefault("event_marks", {})
        marks[transaction] = len(session.info.get("pending_events", ()))


# The dispatch of one commit's events is a scope: a subscriber that reacts to many events of
# one commit (a batch of 10,000 ingested events crossing 300 thresholds) may group its work, e.g.
# one transaction with a savepoint per event instead of one transaction per event, and finish it
# in a hook run when the dispatch ends (with the depth of the dispatch that ended: a subscriber's
# own commit dispatches its events in a dispatch nested one deeper).
_scope = threading.local()
DispatchEndHook = Callable[[int], None]
_dispatch_end: list[DispatchEndHook] = []


def dispatch_depth() -> int:
    """How many dispatches are under way on this thread (0: not inside a subscriber)."""

    return int(getattr(_scope, "depth", 0))


def on_dispatch_end(hook: DispatchEndHook) -> None:
    if hook not in _dispatch_end:
        _dispatch_end.append(hook)


@event.listens_for(Session, "after_commit")
def _dispatch(session: Session) -> None:
    nested = session.get_nested_transaction()
    if nested is not None:  # a SAVEPOINT was released: its events wait for the outer commit
        session.info.setdefault("released_savepoints", set()).add(nested)
        return
    # Take the list first: a subscriber that commits its own work in this session re-enters.
    pending: list[DomainEvent] = session.info.pop("pending_events", [])
    if not pending:
        return
    depth = dispatch_depth() + 1
    _scope.depth = depth
    try:
        for ev in pending:
            for handler in list(_handlers.get(ev.name, ())):
                try:
                    handler(ev)
                except Exception:  # a failing subscriber must not undo a committed change
                    log.exception("event handler failed for %s", ev.name)
    finally:
        _scope.depth = depth - 1
        for hook in list(_dispatch_end):
            try:
                hook(depth)
            except Exception:
                log.exception("dispatch end hook failed")


@event.listens_for(Session, "after_transaction_end")
def _settle(session: Session, transaction: SessionTransaction) -> None:
    if transaction.nested:
        mark = session.info.get("event_marks", {}).pop(transaction, None)
        released: set[SessionTransaction] = session.info.get("released_savepoints", set())
        if transaction in released:
            released.discard(transaction)
        elif mark is not None and "pending_events" in session.info:
            del session.info["pending_events"][mark:]  # rolled back: drop what it raised
    elif transaction.parent is None:
        # The outermost transaction ended; after a commit its events were already dispatched.
        session.info.pop("pending_events", None)
