"""Time as a dependency: services that schedule or run due work read ``now`` from a clock.

Production uses :data:`SYSTEM_CLOCK`; tests install a :class:`SettableClock` and move time forward
("three business days later") without sleeping. :func:`get_clock`/:func:`set_clock` hold the
process-wide clock the worker and the event handlers use.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class SettableClock:
    """A clock that only moves when told to (tests, simulations)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = _aware(start or datetime.now(UTC))
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = _aware(when)

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        step = delta if delta is not None else timedelta(**kwargs)
        with self._lock:
            self._now += step
            return self._now


def _aware(when: datetime) -> datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


SYSTEM_CLOCK = SystemClock()
_current: Clock = SYSTEM_CLOCK


def get_clock() -> Clock:
    return _current


def set_clock(clock: Clock | None) -> None:
    """Install a process-wide clock (None restores the system clock)."""

    global _current
    _current = clock or SYSTEM_CLOCK


def now() -> datetime:
    return _current.now()
