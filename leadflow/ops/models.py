"""Tables of the operations feature."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from leadflow.db.base import Base, JSONType, UTCDateTime, utcnow


class IdempotencyKey(Base):
    """A creating request made with an ``Idempotency-Key`` header and, once it succeeded, the
    response to replay for a retry of the same request by the same caller."""

    __tablename__ = "idempotency_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Who sent it: "user:<id>" for a token or session user, "anon:<hash>" otherwise.
    actor: Mapped[str] = mapped_column(String(100))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(10))
    path: Mapped[str] = mapped_column(String(1000))
    # NULL while the first request is being processed.
    status_code: Mapped[int | None] = mapped_column(Integer)
    response_headers: Mapped[list[list[str]] | None] = mapped_column(JSONType)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("actor", "key", name="uq_idempotency_keys_actor_key"),
        Index("ix_idempotency_keys_created_at", "created_at"),
    )

    def headers_list(self) -> list[tuple[bytes, bytes]]:
        raw: Any = self.response_headers or []
        return [(str(k).encode("latin-1"), str(v).encode("latin-1")) for k, v in raw]
