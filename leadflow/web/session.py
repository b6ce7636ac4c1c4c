"""Web sessions and CSRF protection.

A session is a signed cookie (itsdangerous, HMAC-SHA256) holding a random session id and, once
signed in, the user id. It is HttpOnly, SameSite=Lax, Secure when the request came over HTTPS,
and expires after ``SESSION_MAX_AGE``. Every unsafe request (POST, PUT, PATCH, DELETE) must
carry the CSRF token, an HMAC of the session id, as the ``csrf_token`` form field or the
``X-CSRF-Token`` header (HTMX sends the header from ``hx-headers`` on <body>). The user is loaded
on every request, so a deactivated user is signed out at once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from leadflow.auth.models import User
from leadflow.auth.principal import Principal
from leadflow.auth.service import principal_for
from leadflow.config import installation_secret
from leadflow.db.base import Database

COOKIE = "lf_session"
SESSION_MAX_AGE = 12 * 3600
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def load_secret() -> str:
    return installation_secret()


@dataclass
class WebSession:
    sid: str
    user_id: int | None = None
    # Set when the cookie must be (re)written on the response.
    dirty: bool = False


class Sessions:
    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()
        self._serializer = URLSafeTimedSerializer(secret, salt="leadflow.web.session")

    def read(self, request: Request) -> WebSession:
        raw = request.cookies.get(COOKIE)
        if raw:
            try:
                data: Any = self._serializer.loads(raw, max_age=SESSION_MAX_AGE)
                if isinstance(data, dict) and isinstance(data.get("s"), str):
                    uid = data.get("u")
                    return WebSession(sid=data["s"], user_id=uid if isinstance(uid, int) else None)
            except BadSignature:
                pass
        return WebSession(sid=secrets.token_urlsafe(18), dirty=True)

    def csrf_token(self, session: WebSession) -> str:
        return hmac.new(self._secret, b"csrf:" + session.sid.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: WebSession, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_token(session), token or "")

    def write(self, request: Request, response: Response, session: WebSession) -> None:
        value = self._serializer.dumps({"s": session.sid, "u": session.user_id})
        response.set_cookie(
            COOKIE,
            value,
            max_age=SESSION_MAX_AGE,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            path="/",
        )

    @staticmethod
    def sign_in(session: WebSession, user_id: int) -> None:
        # A new session id on sign-in: a session id planted before sign-in is worth nothing.
        session.sid = secrets.token_urlsafe(18)
        session.user_id = user_id
        session.dirty = True

    @staticmethod
    def sign_out(session: WebSession) -> None:
        session.sid = secrets.token_urlsafe(18)
        session.user_id = None
        session.dirty = True


def load_user(db: Database, user_id: int | None) -> tuple[User, Principal] | None:
    if user_id is None:
        return None
    with db.transaction() as s:
        user = s.get(User, user_id)
        if user is None or not user.active:
            return None
        s.expunge(user)
        return user, principal_for(user)
