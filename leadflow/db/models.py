"""Imports every feature's models so that Alembic and ``create_all`` see the whole schema."""

from leadflow.audit.models import AuditEntry
from leadflow.auth.models import ApiToken, User
from leadflow.db.base import Base
from leadflow.leads.models import Account, Activity, ImportJob, Lead, StageChange, WebForm
from leadflow.scoring.models import (
    EngagementBuild,
    LeadEngagement,
    LeadScore,
    ScoreHistory,
    ScoringModelVersion,
    ThresholdFiring,
)

__all__ = [
    "Account",
    "Activity",
    "ApiToken",
    "AuditEntry",
    "Base",
    "EngagementBuild",
    "ImportJob",
    "Lead",
    "LeadEngagement",
    "LeadScore",
    "ScoreHistory",
    "ScoringModelVersion",
    "StageChange",
    "ThresholdFiring",
    "User",
    "WebForm",
]
