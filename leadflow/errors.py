"""Domain errors raised by services; the HTTP and CLI edges translate them (no web imports)."""

from __future__ import annotations

from typing import Any


class LeadflowError(Exception):
    status = 400
    code = "error"

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra


class NotFound(LeadflowError):
    status = 404
    code = "not_found"


class Conflict(LeadflowError):
    status = 409
    code = "conflict"


class StaleVersion(Conflict):
    code = "stale_version"


class Duplicate(Conflict):
    code = "duplicate"


class Forbidden(LeadflowError):
    status = 403
    code = "forbidden"


class Unauthenticated(LeadflowError):
    status = 401
    code = "unauthenticated"


class InvalidInput(LeadflowError):
    """Bad input naming the field (``loc``) and why; HTTP 422, CLI exit code 2."""

    status = 422
    code = "invalid"

    def __init__(self, field: str | list[str | int], message: str, **extra: Any) -> None:
        loc = [field] if isinstance(field, str) else list(field)
        super().__init__(f"{'.'.join(str(p) for p in loc)}: {message}", **extra)
        self.loc = loc
        self.reason = message
