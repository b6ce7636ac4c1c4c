"""Users and API tokens."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, ConfigDict, Field

from leadflow.auth import service
from leadflow.auth.deps import DB, Actor
from leadflow.auth.models import Role
from leadflow.auth.principal import Perm
from leadflow.errors import Forbidden

router = APIRouter(prefix="/api", tags=["users"])


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., min_length=1, max_length=200)
    email: str = Field(..., max_length=254)
    role: Role
    team: str | None = Field(None, max_length=100)
    password: str | None = Field(None, min_length=8, max_length=200)


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    email: str
    role: Role
    team: str | None
    active: bool
    created_at: datetime


class MeOut(BaseModel):
    user_id: int | None
    label: str
    role: Role
    team: str | None
    permissions: list[str]


class TokenIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("api", max_length=200)
    scopes: list[str] = Field(default_factory=list, description="Empty = the user's full rights")
    expires_at: datetime | None = None


class TokenOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    user_id: int
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


class IssuedTokenOut(TokenOut):
    token: str = Field(..., description="Shown once; store it now")


@router.get("/me", response_model=MeOut)
def me(actor: Actor) -> MeOut:
    return MeOut(
        user_id=actor.user_id,
        label=actor.label,
        role=actor.role,
        team=actor.team,
        permissions=sorted(p.value for p in actor.permissions),
    )


@router.get("/users", response_model=list[UserOut])
def list_users(db: DB, actor: Actor) -> list[UserOut]:
    if not actor.can(Perm.LEADS_READ):
        raise Forbidden("lacks leads:read")
    with db.transaction() as s:
        return [UserOut.model_validate(u) for u in service.list_users(s)]


@router.post("/users", response_model=UserOut, status_code=status.HTTP_201_CREATED)
def create_user(body: UserIn, db: DB, actor: Actor) -> UserOut:
    with db.transaction() as s:
        return UserOut.model_validate(service.create_user(s, actor, **body.model_dump()))


@router.post("/users/{user_id}/tokens", response_model=IssuedTokenOut, status_code=status.HTTP_201_CREATED)
def create_token(user_id: int, body: TokenIn, db: DB, actor: Actor) -> IssuedTokenOut:
    with db.transaction() as s:
        issued = service.create_token(
            s, actor, user_id, name=body.name, scopes=body.scopes, expires_at=body.expires_at
        )
        return IssuedTokenOut(**TokenOut.model_validate(issued.record).model_dump(), token=issued.token)


@router.delete("/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_token(token_id: int, db: DB, actor: Actor) -> Response:
    with db.transaction() as s:
        service.revoke_token(s, actor, token_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
