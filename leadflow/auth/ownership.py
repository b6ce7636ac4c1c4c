"""Record ownership, the same for every owned record (leads, opportunities, tasks): who may see
a record by its owner, and to whom an actor may hand one. Features call these instead of keeping
their own copies, so a change to the rules reaches every route at once."""

from __future__ import annotations

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from leadflow.auth.models import Role, User
from leadflow.auth.principal import Principal, Visibility
from leadflow.errors import Forbidden, InvalidInput


def owner_visibility(
    actor: Principal, owner_column: InstrumentedAttribute[int | None]
) -> ColumnElement[bool] | None:
    """WHERE clause for records ``actor`` may see by their owner; None means everything.
    Unassigned records are visible to all (they wait for someone to pick them up)."""

    mode = actor.visibility
    if mode is Visibility.ALL:
        return None
    if mode is Visibility.OWN or actor.team is None:
        if actor.user_id is None:
            return owner_column.is_(None)
        return or_(owner_column == actor.user_id, owner_column.is_(None))
    team_ids = select(User.id).where(User.team == actor.team)
    return or_(owner_column.is_(None), owner_column.in_(team_ids))


def can_see_owner(session: Session, actor: Principal, owner_id: int | None) -> bool:
    """The same rule as ``owner_visibility``, for one record already loaded."""

    mode = actor.visibility
    if mode is Visibility.ALL or owner_id is None or owner_id == actor.user_id:
        return True
    if mode is Visibility.OWN:
        return False
    owner = session.get(User, owner_id)
    return owner is not None and actor.team is not None and owner.team == actor.team


def require_assignable_owner(session: Session, actor: Principal, owner_id: int | None, noun: str) -> None:
    """``owner_id`` must be an active user ``actor`` may hand ``noun`` (e.g. "leads") to: a rep
    only to themselves, a manager within the team; 422 for a missing user, 403 otherwise."""

    if owner_id is None:
        return
    owner = session.get(User, owner_id)
    if owner is None or not owner.active:
        raise InvalidInput("owner_id", f"no active user with id {owner_id}")
    if actor.role is Role.SALES_REP and owner_id != actor.user_id:
        raise Forbidden(f"sales reps can assign {noun} only to themselves", field="owner_id")
    if actor.role is Role.MANAGER and owner.team != actor.team and owner_id != actor.user_id:
        raise Forbidden(f"managers assign {noun} only within their team", field="owner_id")
