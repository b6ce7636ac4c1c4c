"""Response bodies of the import API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class ImportOut(BaseModel):
    """An import job: what ran, by whom, and what it did."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    filename: str
    mapping: str
    dry_run: bool
    status: str = Field(
        description="running, completed, failed (stopped part-way) or rejected (file refused)"
    )
    created_by: int | None
    started_at: datetime
    finished_at: datetime | None
    rows_total: int
    created: int
    updated: int
    skipped: int = Field(description="rows whose lead exists and was left unchanged")
    failed: int
    message: str | None
    errors_url: str | None = Field(None, description="the error report (CSV: line, column, value, reason)")


class ImportSummary(ImportOut):
    """The answer to an upload: the job plus how the file was read."""

    warnings: int
    accounts_created: int
    encoding: str
    delimiter: str
    columns: dict[str, str | None] = Field(description="each header and the field it fed (null: attributes)")
    seconds: float
    rows_per_second: float
