from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class SequenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str
    name: str
    description: str | None = None
    steps: list[dict[str, Any]] = Field(description="call / email / wait steps")
    max_attempts: int = 5
    on_exhausted: str = "nurture"
    active: bool = True


class SequenceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    description: str | None = None
    steps: list[dict[str, Any]] | None = None
    max_attempts: int | None = None
    on_exhausted: str | None = None
    active: bool | None = None


class SequenceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    key: str
    name: str
    description: str | None
    steps: list[dict[str, Any]]
    max_attempts: int
    on_exhausted: str
    active: bool
    version: int


class EnrollIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lead_ids: list[int] = Field(min_length=1, max_length=1000)


class EnrollmentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    lead_id: int
    sequence_id: int
    status: str
    stop_reason: str | None
    stop_detail: str | None
    source: str
    enrolled_at: datetime
    finished_at: datetime | None


class EnrollmentDetail(EnrollmentOut):
    sequence: str | None = None
    attempts: int = 0
    max_attempts: int | None = None
    next_step: dict[str, Any] | None = None


class EnrollResult(BaseModel):
    enrolled: list[EnrollmentOut]
    already: list[int]
    errors: list[dict[str, Any]]


class EnrollmentPage(BaseModel):
    items: list[EnrollmentOut]
    next_cursor: str | None


class StopIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(None, max_length=1000)


class StepRunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    enrollment_id: int
    lead_id: int
    step_index: int
    kind: str
    due_at: datetime
    status: str
    worker_id: str | None
    claimed_at: datetime | None
    finished_at: datetime | None
    tries: int
    deferrals: int
    task_id: int | None
    subject: str | None
    detail: str | None


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["sent", "retry", "skip"]
    note: str | None = Field(None, max_length=1000)


class SlotOut(BaseModel):
    starts_at: datetime
    ends_at: datetime


class SlotsOut(BaseModel):
    owner_id: int
    timezone: str
    slots: list[SlotOut]


class AppointmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lead_id: int
    starts_at: datetime
    duration_minutes: int = Field(30, ge=10, le=480)
    owner_id: int | None = None
    title: str | None = Field(None, max_length=300)
    location: str | None = Field(None, max_length=500)


class AppointmentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    lead_id: int
    owner_id: int | None
    starts_at: datetime
    ends_at: datetime
    title: str
    location: str | None
    status: str
    activity_id: int | None
    task_id: int | None


class WorkingHoursIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timezone: str
    day_start: str = "09:00"
    day_end: str = "17:00"
    workdays: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5])


class WorkingHoursOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    user_id: int
    timezone: str
    day_start: str
    day_end: str
    workdays: list[int]
