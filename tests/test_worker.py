"""The worker as production runs it: a separate `leadflow worker` process on the huey queue.

A worker killed (SIGKILL) while the SMTP server holds its message leaves the step `running`; the
restarted worker sends the other due email, flags the interrupted step for review, and never sends
it a second time: the aiosmtpd server receives exactly one copy.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from smtp_server import Inbox, smtp_server
from sqlalchemy import update

from leadflow.auth.principal import SYSTEM
from leadflow.cadences import service as svc
from leadflow.cadences.models import StepRun
from leadflow.clock import now as clock_now
from leadflow.db.base import Database
from leadflow.leads import service as leads

ONE_EMAIL = [
    {"type": "email", "subject": "Hello {{ lead.first_name }}", "body": "A note for {{ lead.company }}."}
]


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    with smtp_server() as pair:
        yield pair


def _due_now(db: Database, email: str) -> int:
    with db.transaction() as s:
        lead_id = leads.create_lead(
            s, SYSTEM, {"first_name": "Ada", "email": email, "company": "Engines", "consent": "granted"}
        ).lead.id
        enrollment, _ = svc.enroll(s, SYSTEM, lead_id, "one-email")
        # Due a minute ago, whatever the wall clock's working hours say.
        s.execute(
            update(StepRun)
            .where(StepRun.enrollment_id == enrollment.id)
            .values(due_at=clock_now() - timedelta(minutes=1))
        )
        return lead_id


def _status(db: Database, lead_id: int) -> str:
    with db.transaction() as s:
        return s.query(StepRun.status).filter(StepRun.lead_id == lead_id).one()[0]


def _wait(cond: Callable[[], bool], seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


def test_worker_killed_mid_send_never_sends_twice(
    db: Database, inbox: tuple[Inbox, int], tmp_path: Path
) -> None:
    box, port = inbox
    with db.transaction() as s:
        svc.create_sequence(
            s, SYSTEM, {"key": "one-email", "name": "One email", "steps": ONE_EMAIL, "on_exhausted": "none"}
        )
    first = _due_now(db, "first@example.org")
    env = {
        **os.environ,
        "LEADFLOW_DATABASE_URL": db.url,
        "LEADFLOW_SMTP_HOST": "127.0.0.1",
        "LEADFLOW_SMTP_PORT": str(port),
        "LEADFLOW_SECRET_KEY": "worker-test",
        "LEADFLOW_DATA_DIR": str(tmp_path),
        "LEADFLOW_QUEUE_URL": (f"sqlite:///{tmp_path / 'queue.db'}" if db.dialect == "sqlite" else ""),
    }
    if not env["LEADFLOW_QUEUE_URL"]:
        env.pop("LEADFLOW_QUEUE_URL")
    cmd = [sys.executable, "-m", "leadflow.cli", "worker", "--threads", "2"]

    box.stall_seconds = 60  # the server takes the message, then keeps the worker waiting
    worker = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert box.received.wait(90), "the worker never sent the first email"
        assert _status(db, first) == "running"
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(30)
    assert len(box.to("first@example.org")) == 1

    box.stall_seconds = 0
    second = _due_now(db, "second@example.org")
    # A short lease so the restarted worker flags the interrupted step at once.
    env["LEADFLOW_CADENCE_STALE_AFTER_SECONDS"] = "1"
    worker = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait(lambda: len(box.to("second@example.org")) == 1, 90), "the restarted worker sent nothing"
        assert _wait(lambda: _status(db, first) == "review", 30)
        time.sleep(1.0)  # room for a wrong second send to show up
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
    assert _status(db, second) == "done"
    assert _status(db, first) == "review"
    assert len(box.to("first@example.org")) == 1
    assert len(box.messages) == 2
