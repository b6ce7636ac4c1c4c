"""Response bodies of the webhook API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class AttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    attempt: int
    at: datetime
    status_code: int | None
    latency_ms: float
    error: str | None
    response: str | None
    manual: bool
    detail: dict[str, Any] | None


class DeliveryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    uid: str
    event: str
    url: str
    secret_env: str | None
    lead_id: int | None
    source: str | None
    status: str
    attempts: int
    max_attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class DeliveryDetail(DeliveryOut):
    body: dict[str, Any]
    log: list[AttemptOut]


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    counts: dict[str, int]
    next_before_id: int | None


class DeliveryRunOut(BaseModel):
    attempted: int
    delivered: int
    retrying: int
    failed: int
