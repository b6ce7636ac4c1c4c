from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from leadflow.tasks.models import TaskKind
from leadflow.tasks.service import CallOutcome


class TaskIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lead_id: int | None = None
    kind: TaskKind = TaskKind.TODO
    title: str = Field(min_length=1, max_length=300)
    notes: str | None = Field(None, max_length=10_000)
    due_at: datetime | None = None
    owner_id: int | None = None
    duration_minutes: int | None = Field(None, ge=1, le=1440)


class TaskUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int | None = None
    title: str | None = Field(None, min_length=1, max_length=300)
    notes: str | None = None
    due_at: datetime | None = None
    owner_id: int | None = None


class TaskComplete(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: str | None = Field(None, description="for calls: connected, voicemail, no_answer, wrong_number")
    notes: str | None = Field(None, max_length=10_000)


class TaskCancel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(None, max_length=1000)


class CallIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lead_id: int
    outcome: CallOutcome
    notes: str | None = Field(None, max_length=10_000)


class TaskOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    lead_id: int | None
    owner_id: int | None
    kind: str
    title: str
    notes: str | None
    due_at: datetime | None
    duration_minutes: int | None
    status: str
    outcome: str | None
    source: str
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    completed_by: int | None
    version: int


class TaskPage(BaseModel):
    items: list[TaskOut]
    next_cursor: str | None
