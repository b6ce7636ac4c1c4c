"""Imports every feature's models so that Alembic and ``create_all`` see the whole schema."""

from leadflow.audit.models import AuditEntry
from leadflow.auth.models import ApiToken, User
from leadflow.db.base import Base
from leadflow.leads.models import Account, Activity, ImportJob, Lead, StageChange, WebForm
from leadflow.scoring.models import LeadScore, ScoreHistory, ScoringModelVersion, ThresholdFiring
from leadflow.web.models import SavedSegment

__all__ = [
    "Account",
    "Activity",
    "ApiToken",
    "AuditEntry",
    "Base",
    "ImportJob",
    "Lead",
    "LeadScore",
    "SavedSegment",
    "ScoreHistory",
    "ScoringModelVersion",
    "StageChange",
    "ThresholdFiring",
    "User",
    "WebForm",
]
