"""Imports every feature's models so that Alembic and ``create_all`` see the whole schema."""

from leadflow.audit.models import AuditEntry
from leadflow.auth.models import ApiToken, User
from leadflow.cadences.models import Appointment, Enrollment, Sequence, StepRun, WorkingHoursRow
from leadflow.db.base import Base
from leadflow.leads.models import Account, Activity, ImportJob, Lead, StageChange, WebForm
from leadflow.scoring.models import LeadScore, ScoreHistory, ScoringModelVersion, ThresholdFiring
from leadflow.tasks.models import Task

__all__ = [
    "Account",
    "Activity",
    "ApiToken",
    "Appointment",
    "AuditEntry",
    "Base",
    "Enrollment",
    "ImportJob",
    "Lead",
    "LeadScore",
    "ScoreHistory",
    "ScoringModelVersion",
    "Sequence",
    "StageChange",
    "StepRun",
    "Task",
    "ThresholdFiring",
    "User",
    "WebForm",
    "WorkingHoursRow",
]
