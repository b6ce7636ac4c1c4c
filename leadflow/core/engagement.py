"""Engagement event types (pure)."""

from __future__ import annotations

from enum import StrEnum


class ActivityType(StrEnum):
    PAGE_VIEW = "page_view"
    EMAIL_OPEN = "email_open"
    EMAIL_CLICK = "email_click"
    FORM_SUBMIT = "form_submit"
    CONTENT_DOWNLOAD = "content_download"
    WEBINAR = "webinar"
    DEMO_REQUEST = "demo_request"
    PRICING_REQUEST = "pricing_request"
    TRIAL_START = "trial_start"
    # The prospect shared its decision timeline (a buying signal; see leadflow/pipeline).
    DECISION_TIMELINE = "decision_timeline"
    CALL = "call"
    EMAIL_SENT = "email_sent"
    EMAIL_REPLY = "email_reply"  # the lead answered an email (stops follow-up sequences)
    MEETING = "meeting"
    NOTE = "note"


# Seeds: requesting a demo or pricing, or starting a free trial, marks a buying signal.
BUYING_SIGNALS: frozenset[ActivityType] = frozenset(
    {ActivityType.DEMO_REQUEST, ActivityType.PRICING_REQUEST, ActivityType.TRIAL_START}
)
# Touches by the company's people rather than the lead's own behaviour.
SALES_TOUCHES: frozenset[ActivityType] = frozenset(
    {ActivityType.CALL, ActivityType.EMAIL_SENT, ActivityType.MEETING, ActivityType.NOTE}
)
