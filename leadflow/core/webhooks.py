"""Webhook signatures and retry schedule (pure: no database, no HTTP).

Signatures follow Stripe's scheme: the header ``Leadflow-Signature: t=<unix seconds>,v1=<hex>``
where ``<hex>`` is HMAC-SHA256 over ``"<t>.<raw body>"`` with the shared secret. Signing the
timestamp with the body lets a receiver refuse replays of an old delivery (compare ``t`` with its
clock) and still verify redeliveries, which are signed afresh.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import time
from dataclasses import dataclass

SIGNATURE_HEADER = "Leadflow-Signature"
ID_HEADER = "Leadflow-Webhook-Id"
EVENT_HEADER = "Leadflow-Event"
ATTEMPT_HEADER = "Leadflow-Attempt"
DEFAULT_TOLERANCE_SECONDS = 300


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The signature header value for ``body`` sent at ``timestamp`` (unix seconds)."""

    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


class InvalidSignature(ValueError):
    pass


def verify(
    secret: str,
    body: bytes,
    header: str | None,
    *,
    now: float | None = None,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
) -> int:
    """Check a received signature header (what a receiver does); returns its timestamp.

    Raises :class:`InvalidSignature` when the header is missing or malformed, no ``v1`` signature
    matches (compared in constant time), or the timestamp is further than ``tolerance`` seconds
    from ``now``."""

    if not header:
        raise InvalidSignature("no signature header")
    ts: int | None = None
    sigs: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            ts = int(value)
        elif key == "v1" and value:
            sigs.append(value)
    if ts is None or not sigs:
        raise InvalidSignature("malformed signature header")
    expected = sign(secret, body, ts).rpartition("v1=")[2]
    if not any(hmac.compare_digest(expected, s) for s in sigs):
        raise InvalidSignature("signature does not match")
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance:
        raise InvalidSignature(f"timestamp {ts} is outside the tolerance of {tolerance}s")
    return ts


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with equal jitter: the delay after the n-th failed attempt is drawn
    from ``[d/2, d]`` where ``d = min(base * factor ** (n - 1), max)``; jitter spreads the retries
    of many deliveries that failed together (a receiver's outage) instead of stampeding back."""

    max_attempts: int = 8
    base_seconds: float = 30.0
    factor: float = 2.0
    max_seconds: float = 6 * 3600.0

    def delay(self, failed_attempts: int, rng: random.Random | None = None) -> float:
        n = max(failed_attempts, 1)
        d = min(self.base_seconds * self.factor ** (n - 1), self.max_seconds)
        r = (rng or random).random()
        return d / 2 + r * d / 2

    def gives_up(self, attempts: int) -> bool:
        return attempts >= self.max_attempts


def is_success(status_code: int | None) -> bool:
    return status_code is not None and 200 <= status_code < 300
