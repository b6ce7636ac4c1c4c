"""``Idempotency-Key`` on creating requests (every POST): a client that retries a POST after a
timeout or a dropped connection gets the first answer again instead of a second lead, account,
token or import.

The key is scoped to the caller (the user behind the bearer token, or the session cookie, or
the client address for anonymous form posts) and bound to the request: a retry must send the
same method, path, query and body. Outcomes:

* first use: the request runs; a 2xx answer is stored and the key is kept for 24 hours;
  any other answer frees the key (fix the request and retry with the same key);
* same key, same request, answer stored: the stored answer is replayed with the header
  ``Idempotent-Replayed: true``;
* same key, same request, still running: 409 ``idempotency_key_in_progress``;
* same key, different request: 422 ``idempotency_key_reused``.

The key row and the operation commit in separate transactions. A process that dies between the
two leaves the key pending; after ``PENDING_LEASE`` a retry runs the request again, so such a
crash can still duplicate: the window is one commit wide.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from leadflow.auth.service import authenticate_token
from leadflow.db.base import Database, utcnow
from leadflow.errors import LeadflowError
from leadflow.ops.models import IdempotencyKey

HEADER = "idempotency-key"
RETENTION = timedelta(hours=24)
PENDING_LEASE = timedelta(minutes=5)
MAX_KEY_LENGTH = 255
# Replayed answers omit hop-specific headers.
_SKIP_HEADERS = {b"content-length", b"date", b"server", b"x-request-id", b"set-cookie"}


def _json(status: int, body: dict[str, Any], extra: list[tuple[bytes, bytes]] | None = None) -> list[Message]:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    return [
        {"type": "http.response.start", "status": status, "headers": headers + (extra or [])},
        {"type": "http.response.body", "body": payload},
    ]


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {k.lower(): v for k, v in scope.get("headers", [])}


def _valid_key(key: str) -> bool:
    return 0 < len(key) <= MAX_KEY_LENGTH and all(33 <= ord(c) <= 126 for c in key)


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp, db: Database) -> None:
        self.app = app
        self.db = db

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        raw_key = headers.get(HEADER.encode())
        if raw_key is None:
            await self.app(scope, receive, send)
            return
        key = raw_key.decode("latin-1").strip()
        if not _valid_key(key):
            for m in _json(
                422,
                {
                    "detail": [
                        {
                            "loc": ["header", "Idempotency-Key"],
                            "msg": f"must be 1 to {MAX_KEY_LENGTH} visible ASCII characters",
                            "type": "value_error",
                        }
                    ],
                    "code": "invalid",
                },
            ):
                await send(m)
            return

        # Read the whole body: it is part of what the key is bound to, and the app reads it after.
        chunks: list[bytes] = []
        digest = hashlib.sha256()
        digest.update(f"{scope['method']} {scope['path']}?".encode())
        digest.update(scope.get("query_string", b""))
        digest.update(b"\n")
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            chunks.append(body)
            digest.update(body)
            more = bool(message.get("more_body"))
        request_hash = digest.hexdigest()

        actor = await run_in_threadpool(self._actor, scope, headers)
        if actor is None:  # a bad token: let the app answer 401 without touching the key table
            await self.app(scope, _replay(chunks, receive), send)
            return
        verdict = await run_in_threadpool(self._claim, actor, key, request_hash, scope)
        if isinstance(verdict, list):
            for m in verdict:
                await send(m)
            return
        row_id = verdict

        status = 500
        out_headers: list[tuple[bytes, bytes]] = []
        out_body: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal status, out_headers
            if message["type"] == "http.response.start":
                status = int(message["status"])
                out_headers = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                out_body.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, _replay(chunks, receive), capture)
        finally:
            await run_in_threadpool(self._finish, row_id, status, out_headers, b"".join(out_body))

    # -------------------------------------------------------------------------- database steps

    def _actor(self, scope: Scope, headers: dict[bytes, bytes]) -> str | None:
        auth = headers.get(b"authorization", b"").decode("latin-1")
        if auth.lower().startswith("bearer "):
            try:
                with self.db.transaction() as s:
                    principal = authenticate_token(s, auth[7:].strip())
            except LeadflowError:
                return None
            return f"user:{principal.user_id}"
        cookie = headers.get(b"cookie")
        if cookie:
            return "session:" + hashlib.sha256(cookie).hexdigest()[:40]
        client = (scope.get("client") or ("unknown",))[0]
        return "anon:" + hashlib.sha256(str(client).encode()).hexdigest()[:40]

    def _claim(self, actor: str, key: str, request_hash: str, scope: Scope) -> int | list[Message]:
        now = utcnow()
        try:
            with self.db.transaction() as s:
                s.execute(delete(IdempotencyKey).where(IdempotencyKey.created_at < now - RETENTION))
                row = IdempotencyKey(
                    actor=actor,
                    key=key,
                    request_hash=request_hash,
                    method=scope["method"],
                    path=scope["path"][:1000],
                    created_at=now,
                )
                s.add(row)
                s.flush()
                return row.id
        except IntegrityError:
            pass
        with self.db.transaction() as s:
            existing = s.scalar(
                select(IdempotencyKey).where(IdempotencyKey.actor == actor, IdempotencyKey.key == key)
            )
            if existing is None:  # expired and purged in between: treat as a conflict to retry
                return _json(
                    409, {"detail": "idempotency key busy, retry", "code": "idempotency_key_in_progress"}
                )
            if existing.request_hash != request_hash:
                return _json(
                    422,
                    {
                        "detail": [
                            {
                                "loc": ["header", "Idempotency-Key"],
                                "msg": "this key was used for a different request; use a new key",
                                "type": "value_error",
                            }
                        ],
                        "code": "idempotency_key_reused",
                    },
                )
            if existing.status_code is not None:
                body = existing.response_body or b""
                headers = [(k, v) for k, v in existing.headers_list() if k.lower() not in _SKIP_HEADERS]
                headers += [
                    (b"content-length", str(len(body)).encode()),
                    (b"idempotent-replayed", b"true"),
                ]
                return [
                    {"type": "http.response.start", "status": existing.status_code, "headers": headers},
                    {"type": "http.response.body", "body": body},
                ]
            if existing.created_at > now - PENDING_LEASE:
                return _json(
                    409,
                    {
                        "detail": "a request with this Idempotency-Key is still being processed",
                        "code": "idempotency_key_in_progress",
                    },
                )
            # An abandoned claim (its process died): take it over, unless another retry did.
            taken = s.execute(
                update(IdempotencyKey)
                .where(
                    IdempotencyKey.id == existing.id,
                    IdempotencyKey.status_code.is_(None),
                    IdempotencyKey.created_at == existing.created_at,
                )
                .values(created_at=now)
            )
            if taken.rowcount != 1:  # type: ignore[attr-defined]
                return _json(
                    409, {"detail": "idempotency key busy, retry", "code": "idempotency_key_in_progress"}
                )
            return existing.id

    def _finish(self, row_id: int, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        with self.db.transaction() as s:
            if 200 <= status < 300:
                s.execute(
                    update(IdempotencyKey)
                    .where(IdempotencyKey.id == row_id)
                    .values(
                        status_code=status,
                        response_headers=[
                            [k.decode("latin-1"), v.decode("latin-1")]
                            for k, v in headers
                            if k.lower() not in _SKIP_HEADERS
                        ],
                        response_body=body,
                        completed_at=utcnow(),
                    )
                )
            else:
                # Not done: the caller may fix the request and retry with the same key.
                s.execute(delete(IdempotencyKey).where(IdempotencyKey.id == row_id))


def _replay(chunks: list[bytes], receive: Receive) -> Receive:
    """The body already read, then the real channel (which reports a client disconnect)."""

    pending = list(chunks) or [b""]

    async def replay() -> Message:
        if pending:
            body = pending.pop(0)
            return {"type": "http.request", "body": body, "more_body": bool(pending)}
        return await receive()

    return replay


def document(openapi: dict[str, Any]) -> dict[str, Any]:
    """Add the optional ``Idempotency-Key`` header to every POST operation of the schema."""

    param = {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "Retry-safe creation: the same key with the same request replays the first "
        "answer for 24 hours; with a different request it is refused (422).",
        "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH, "pattern": "^[!-~]+$"},
    }
    for path_item in openapi.get("paths", {}).values():
        op = path_item.get("post")
        if op is not None:
            params = op.setdefault("parameters", [])
            if not any(p.get("name") == "Idempotency-Key" for p in params):
                params.append(param)
    return openapi
