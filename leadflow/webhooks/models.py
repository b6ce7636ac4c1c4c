"""Webhook deliveries (a durable outbox) and their attempt log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from leadflow.db.base import Base, JSONType, UTCDateTime, utcnow


class WebhookDelivery(Base):
    """One message to send to one URL. Written in the transaction that decided to send it (a
    threshold firing), so a crash between deciding and sending loses nothing; the worker sends it
    later (``leadflow.webhooks.service.deliver_due``)."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Stable across retries and redeliveries: receivers deduplicate on it.
    uid: Mapped[str] = mapped_column(String(36), unique=True)
    event: Mapped[str] = mapped_column(String(100))
    url: Mapped[str] = mapped_column(String(2000))
    # The name of the environment variable holding the HMAC secret (never the secret).
    secret_env: Mapped[str | None] = mapped_column(String(100))
    # The exact bytes sent (as text), so every attempt sends the same body.
    body: Mapped[str] = mapped_column(Text)
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    source: Mapped[str | None] = mapped_column(String(100))  # e.g. "threshold:sales_call"
    status: Mapped[str] = mapped_column(String(12), default="pending")  # pending|delivered|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_webhook_deliveries_status_next", "status", "next_attempt_at"),)


class WebhookAttempt(Base):
    """The delivery log: one row per HTTP attempt."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("webhook_deliveries.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    response: Mapped[str | None] = mapped_column(Text)  # the first 500 characters of the answer
    manual: Mapped[bool] = mapped_column(default=False)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONType)  # e.g. the retry scheduled

    __table_args__ = (Index("ix_webhook_attempts_delivery", "delivery_id", "attempt"),)
