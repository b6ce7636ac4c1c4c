"""The webhook feature's periodic job: send the deliveries that are due (every minute)."""

from leadflow.jobs import register_job
from leadflow.webhooks.service import deliver_job

register_job("webhooks.deliver_due", 60, deliver_job)
