"""FastAPI dependencies: the database and the authenticated principal."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from leadflow.auth.principal import Perm, Principal
from leadflow.auth.service import authenticate_token
from leadflow.db.base import Database
from leadflow.errors import Unauthenticated
from leadflow.ops.logging import note_actor

_bearer = HTTPBearer(auto_error=False, description="An API token: `leadflow token create`")


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def current_principal(
    request: Request,
    db: Annotated[Database, Depends(get_db)],
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    token = creds.credentials if creds else None
    if not token:
        # The web UI signs in with a session; the API with a bearer token.
        principal = getattr(request.state, "principal", None)
        if isinstance(principal, Principal):
            note_actor(principal.label)
            return principal
        raise Unauthenticated("missing bearer token (Authorization: Bearer lf_...)")
    with db.transaction() as session:
        principal = authenticate_token(session, token)
    note_actor(principal.label)
    return principal


def require(perm: Perm) -> object:
    def check(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        principal.require(perm)
        return principal

    return Depends(check)


DB = Annotated[Database, Depends(get_db)]
Actor = Annotated[Principal, Depends(current_principal)]
