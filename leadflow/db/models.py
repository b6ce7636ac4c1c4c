"""Imports every feature's models so that Alembic and ``create_all`` see the whole schema."""

from leadflow.assignment.models import AssignmentRule, RepCapacity
from leadflow.audit.models import AuditEntry
from leadflow.auth.models import ApiToken, User
from leadflow.cadences.models import Appointment, Enrollment, Sequence, StepRun, WorkingHoursRow
from leadflow.db.base import Base
from leadflow.leads.models import Account, Activity, ImportJob, Lead, StageChange, WebForm
from leadflow.ops.models import IdempotencyKey
from leadflow.pipeline.models import (
    BuyingSignal,
    Opportunity,
    OpportunityStageChange,
    OutcomeReason,
    Pipeline,
    PipelineStage,
    SignalRuleRow,
)
from leadflow.qualification.models import (
    AssessmentRecord,
    DiscoveryCallRecord,
    FrameworkDef,
    Handoff,
    LeadQualification,
    QualificationSetting,
    QuestionnaireDef,
)
from leadflow.reports.models import FunnelCount, LeadFunnelFact, ReportState, StageDurationCount
from leadflow.scoring.models import (
    EngagementBuild,
    FitDirty,
    LeadEngagement,
    LeadScore,
    ScoreHistory,
    ScoringModelVersion,
    ThresholdFiring,
)
from leadflow.scoring.predictive_models import PredictiveModel
from leadflow.tasks.models import Task
from leadflow.web.models import SavedSegment
from leadflow.webhooks.models import WebhookAttempt, WebhookDelivery

__all__ = [
    "Account",
    "Activity",
    "ApiToken",
    "Appointment",
    "AssessmentRecord",
    "AssignmentRule",
    "AuditEntry",
    "Base",
    "BuyingSignal",
    "DiscoveryCallRecord",
    "EngagementBuild",
    "Enrollment",
    "FitDirty",
    "FrameworkDef",
    "FunnelCount",
    "Handoff",
    "IdempotencyKey",
    "ImportJob",
    "Lead",
    "LeadEngagement",
    "LeadFunnelFact",
    "LeadQualification",
    "LeadScore",
    "Opportunity",
    "OpportunityStageChange",
    "OutcomeReason",
    "Pipeline",
    "PipelineStage",
    "PredictiveModel",
    "QualificationSetting",
    "QuestionnaireDef",
    "RepCapacity",
    "ReportState",
    "SavedSegment",
    "ScoreHistory",
    "ScoringModelVersion",
    "Sequence",
    "SignalRuleRow",
    "StageChange",
    "StageDurationCount",
    "StepRun",
    "Task",
    "ThresholdFiring",
    "User",
    "WebForm",
    "WebhookAttempt",
    "WebhookDelivery",
    "WorkingHoursRow",
]
