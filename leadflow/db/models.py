"""Imports every feature's models so that Alembic and ``create_all`` see the whole schema."""

from leadflow.assignment.models import AssignmentRule, RepCapacity
from leadflow.audit.models import AuditEntry
from leadflow.auth.models import ApiToken, User
from leadflow.db.base import Base
from leadflow.leads.models import Account, Activity, ImportJob, Lead, StageChange, WebForm
from leadflow.qualification.models import (
    AssessmentRecord,
    DiscoveryCallRecord,
    FrameworkDef,
    Handoff,
    LeadQualification,
    QualificationSetting,
    QuestionnaireDef,
)
from leadflow.scoring.models import LeadScore, ScoreHistory, ScoringModelVersion, ThresholdFiring

__all__ = [
    "Account",
    "Activity",
    "ApiToken",
    "AssessmentRecord",
    "AssignmentRule",
    "AuditEntry",
    "Base",
    "DiscoveryCallRecord",
    "FrameworkDef",
    "Handoff",
    "ImportJob",
    "Lead",
    "LeadQualification",
    "LeadScore",
    "QualificationSetting",
    "QuestionnaireDef",
    "RepCapacity",
    "ScoreHistory",
    "ScoringModelVersion",
    "StageChange",
    "ThresholdFiring",
    "User",
    "WebForm",
]
