"""Users, passwords and API tokens."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from leadflow.audit.service import record
from leadflow.auth.models import ApiToken, Role, User
from leadflow.auth.principal import Perm, Principal
from leadflow.core.contact import ContactError, normalize_email
from leadflow.db.base import utcnow
from leadflow.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated

TOKEN_PREFIX = "lf_"
_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    if not stored:
        return False
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def principal_for(user: User, scopes: Iterable[str] = ()) -> Principal:
    return Principal(
        user_id=user.id, label=user.email, role=Role(user.role), team=user.team, scopes=frozenset(scopes)
    )


def create_user(
    session: Session,
    actor: Principal,
    *,
    name: str,
    email: str,
    role: Role | str,
    team: str | None = None,
    password: str | None = None,
) -> User:
    if not actor.can(Perm.USERS_ADMIN):
        raise Forbidden("only admins manage users")
    try:
        email_n = normalize_email(email)
    except ContactError as exc:
        raise InvalidInput("email", exc.message) from None
    try:
        role_v = Role(role)
    except ValueError:
        raise InvalidInput("role", f"must be one of {', '.join(r.value for r in Role)}") from None
    if not name.strip():
        raise InvalidInput("name", "is empty")
    if session.scalar(select(User.id).where(User.email == email_n)) is not None:
        raise Conflict(f"a user with email {email_n} exists")
    if password is not None and len(password) < 8:
        raise InvalidInput("password", "must have at least 8 characters")
    user = User(
        name=name.strip(),
        email=email_n,
        role=role_v.value,
        team=team,
        password_hash=hash_password(password) if password else None,
    )
    session.add(user)
    session.flush()
    record(
        session,
        actor,
        "user",
        user.id,
        "create",
        after={"email": email_n, "role": role_v.value, "team": team},
    )
    return user


def authenticate_password(session: Session, email: str, password: str) -> User:
    user = session.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None or not user.active or not verify_password(user.password_hash, password):
        raise Unauthenticated("wrong email or password")
    return user


@dataclass(frozen=True)
class IssuedToken:
    token: str  # shown once; only its hash is stored
    record: ApiToken


def create_token(
    session: Session,
    actor: Principal,
    user_id: int,
    *,
    name: str = "api",
    scopes: Iterable[str] = (),
    expires_at: datetime | None = None,
) -> IssuedToken:
    if actor.user_id != user_id and not actor.can(Perm.USERS_ADMIN):
        raise Forbidden("only admins create tokens for other users")
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    scope_list = sorted(set(scopes))
    valid = {p.value for p in Perm}
    for s in scope_list:
        if s not in valid:
            raise InvalidInput("scopes", f"unknown scope {s!r}; known: {', '.join(sorted(valid))}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    rec = ApiToken(
        user_id=user_id,
        name=name,
        prefix=token[:10],
        token_hash=_hash_token(token),
        scopes=scope_list,
        expires_at=expires_at,
    )
    session.add(rec)
    session.flush()
    record(
        session,
        actor,
        "api_token",
        rec.id,
        "create",
        after={"user_id": user_id, "name": name, "scopes": scope_list},
    )
    return IssuedToken(token, rec)


def revoke_token(session: Session, actor: Principal, token_id: int) -> None:
    rec = session.get(ApiToken, token_id)
    if rec is None:
        raise NotFound(f"token {token_id} not found")
    if actor.user_id != rec.user_id and not actor.can(Perm.USERS_ADMIN):
        raise Forbidden("only admins revoke other users' tokens")
    if rec.revoked_at is None:
        rec.revoked_at = utcnow()
        record(session, actor, "api_token", rec.id, "revoke")


def authenticate_token(session: Session, token: str) -> Principal:
    if not token.startswith(TOKEN_PREFIX):
        raise Unauthenticated("not a Leadflow API token")
    rec = session.scalar(select(ApiToken).where(ApiToken.token_hash == _hash_token(token)))
    now = utcnow()
    if rec is None or rec.revoked_at is not None or (rec.expires_at is not None and rec.expires_at <= now):
        raise Unauthenticated("invalid, revoked or expired token")
    user = session.get(User, rec.user_id)
    if user is None or not user.active:
        raise Unauthenticated("the token's user is inactive")
    # Write last_used_at at most once a minute: a write per request would serialize SQLite.
    if rec.last_used_at is None or (now - rec.last_used_at).total_seconds() > 60:
        rec.last_used_at = now
    return principal_for(user, rec.scopes)


def get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return user


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.id)))


def team_member_ids(session: Session, team: str | None) -> list[int]:
    if team is None:
        return []
    return list(session.scalars(select(User.id).where(User.team == team)))
