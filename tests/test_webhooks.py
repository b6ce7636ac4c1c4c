"""Webhook delivery against a real HTTP server on 127.0.0.1: the outbox row is written with the
threshold firing, bodies are signed (HMAC-SHA256 over timestamp and body), failures are retried
with backoff and given up after the maximum, every attempt is logged, redelivery works."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from conftest import Actor, make_user
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from leadflow.auth.models import Role
from leadflow.auth.principal import SYSTEM
from leadflow.config import get_settings
from leadflow.core import scoring as core
from leadflow.core import webhooks as wcore
from leadflow.db.base import Database
from leadflow.errors import Forbidden
from leadflow.leads import service as leads
from leadflow.scoring import service as scoring
from leadflow.scoring.models import ThresholdFiring
from leadflow.webhooks import service as svc
from leadflow.webhooks.models import WebhookAttempt, WebhookDelivery

SECRET = "whsec_test_0123456789"
HOT = {"email": "vp@acme.io", "job_title": "VP Sales", "industry": "Software", "employee_count": 300}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A local HTTP server answering with the programmed status codes (then 200)."""

    url: str
    answers: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            n = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(n)
            state.received.append(Received(self.path, {k: v for k, v in self.headers.items()}, body))
            code = state.answers.pop(0) if state.answers else 200
            reply = b'{"ok": true}' if code < 300 else b"upstream broke"
            self.send_response(code)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/leadflow"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("LF_TEST_HOOK_SECRET", SECRET)
    return SECRET


@pytest.fixture
def quiet(db: Database) -> Database:
    scoring.unregister(db)
    return db


def _hook_model(db: Database, actor: Actor, url: str) -> None:
    doc = core.default_model().to_document()
    doc["thresholds"] = [
        {
            "id": "hook",
            "label": "Hot lead",
            "at": 40,
            "actions": [{"type": "webhook", "url": url, "secret_env": "LF_TEST_HOOK_SECRET"}],
        }
    ]
    with db.transaction() as s:
        scoring.save_model(s, actor.principal, doc, activate=True)


def _fire(db: Database) -> int:
    with db.transaction() as s:
        lid = leads.create_lead(s, SYSTEM, dict(HOT)).lead.id
    with db.transaction() as s:
        scoring.rescore_leads(s, [lid])
    return lid


@pytest.mark.usefixtures("quiet")
def test_a_firing_queues_a_signed_delivery_and_the_worker_sends_it(
    db: Database, admin: Actor, receiver: Receiver, secret: str
) -> None:
    _hook_model(db, admin, receiver.url)
    lid = _fire(db)
    with db.transaction() as s:
        firing = s.scalars(select(ThresholdFiring)).one()
        delivery = s.scalars(select(WebhookDelivery)).one()
        assert (firing.action, firing.outcome) == ("webhook", "queued")
        assert firing.payload is not None and firing.payload["delivery_id"] == delivery.id
        assert (delivery.status, delivery.lead_id, delivery.attempts) == ("pending", lid, 0)
    assert receiver.received == []  # nothing is sent inside the scoring transaction

    run = svc.deliver_due(db)
    assert (run.attempted, run.delivered) == (1, 1)
    [got] = receiver.received
    assert got.path == "/hooks/leadflow"
    body = json.loads(got.body)
    assert body["type"] == "scoring.threshold_crossed"
    assert body["data"]["lead"]["id"] == lid and body["data"]["lead"]["email"] == "vp@acme.io"
    assert body["data"]["threshold"]["id"] == "hook" and body["data"]["score"] >= 40
    assert got.headers[wcore.ID_HEADER] == body["id"]
    assert got.headers[wcore.EVENT_HEADER] == "scoring.threshold_crossed"
    # The receiver verifies the signature with the shared secret; a wrong secret or a tampered
    # body fails.
    ts = wcore.verify(secret, got.body, got.headers[wcore.SIGNATURE_HEADER])
    assert abs(ts - datetime.now(UTC).timestamp()) < 60
    with pytest.raises(wcore.InvalidSignature):
        wcore.verify("not-the-secret", got.body, got.headers[wcore.SIGNATURE_HEADER])
    with pytest.raises(wcore.InvalidSignature):
        wcore.verify(secret, got.body + b" ", got.headers[wcore.SIGNATURE_HEADER])
    with db.transaction() as s:
        d = s.scalars(select(WebhookDelivery)).one()
        assert (d.status, d.attempts, d.last_status_code) == ("delivered", 1, 200)
        [attempt] = svc.attempts_of(s, d.id)
        assert (attempt.attempt, attempt.status_code, attempt.error) == (1, 200, None)
        assert attempt.latency_ms > 0
    assert svc.deliver_due(db).attempted == 0  # delivered once, not again


@pytest.mark.usefixtures("quiet")
def test_a_rolled_back_firing_leaves_no_delivery(db: Database, admin: Actor, receiver: Receiver) -> None:
    _hook_model(db, admin, receiver.url)
    with db.transaction() as s:
        lid = leads.create_lead(s, SYSTEM, dict(HOT)).lead.id
    with pytest.raises(RuntimeError), db.transaction() as s:
        scoring.rescore_leads(s, [lid])
        assert s.scalars(select(WebhookDelivery)).one()
        raise RuntimeError("the process dies before the commit")
    with db.transaction() as s:
        assert s.scalars(select(WebhookDelivery)).all() == []
        assert s.scalars(select(ThresholdFiring)).all() == []


def test_500s_are_retried_with_backoff_then_delivered(db: Database, receiver: Receiver, secret: str) -> None:
    with db.transaction() as s:
        d = svc.enqueue(
            s, event="test.ping", url=receiver.url, data={"n": 1}, secret_env="LF_TEST_HOOK_SECRET"
        )
        did = d.id
    receiver.answers = [500, 503]
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    rng = random.Random(7)
    run = svc.deliver_due(db, t0, rng=rng)
    assert (run.attempted, run.retrying) == (1, 1)
    with db.transaction() as s:
        row = s.get(WebhookDelivery, did)
        assert row is not None and row.status == "pending" and row.last_status_code == 500
        assert row.next_attempt_at is not None
        first_delay = (row.next_attempt_at - t0).total_seconds()
    base = svc.POLICY.base_seconds
    assert base / 2 <= first_delay <= base
    assert svc.deliver_due(db, t0 + timedelta(seconds=first_delay - 1)).attempted == 0  # not due yet
    t1 = t0 + timedelta(seconds=first_delay)
    assert svc.deliver_due(db, t1, rng=rng).retrying == 1
    with db.transaction() as s:
        row = s.get(WebhookDelivery, did)
        assert row is not None and row.next_attempt_at is not None
        second_delay = (row.next_attempt_at - t1).total_seconds()
    assert base <= second_delay <= 2 * base  # exponential
    assert svc.deliver_due(db, t1 + timedelta(seconds=second_delay)).delivered == 1
    assert len(receiver.received) == 3
    # The same id and body every time; each attempt signed afresh and numbered.
    assert len({r.body for r in receiver.received}) == 1
    assert [r.headers[wcore.ATTEMPT_HEADER] for r in receiver.received] == ["1", "2", "3"]
    for r in receiver.received:
        wcore.verify(secret, r.body, r.headers[wcore.SIGNATURE_HEADER], now=t1.timestamp(), tolerance=10**9)
    with db.transaction() as s:
        log = svc.attempts_of(s, did)
        assert [(a.attempt, a.status_code) for a in log] == [(1, 500), (2, 503), (3, 200)]
        assert log[0].error == "HTTP 500" and log[0].response == "upstream broke"
        assert log[0].detail is not None and log[0].detail["retry_in_seconds"] > 0


def test_gives_up_after_max_attempts_and_a_manual_redeliver_sends_again(
    db: Database, admin: Actor, receiver: Receiver, secret: str
) -> None:
    with db.transaction() as s:
        d = svc.enqueue(
            s, event="test.ping", url=receiver.url, data={}, secret_env="LF_TEST_HOOK_SECRET", max_attempts=3
        )
        did = d.id
    receiver.answers = [500, 500, 500, 500]
    t = datetime(2030, 1, 1, tzinfo=UTC)
    for _ in range(3):
        svc.deliver_due(db, t)
        t += timedelta(days=1)
    assert svc.deliver_due(db, t).attempted == 0
    with db.transaction() as s:
        row = s.get(WebhookDelivery, did)
        assert row is not None and (row.status, row.attempts, row.next_attempt_at) == ("failed", 3, None)
        log = svc.attempts_of(s, did)
        assert log[-1].detail == {"gave_up": True}
    assert len(receiver.received) == 3

    # A manual redelivery that fails again is retried on a fresh budget, then gets through.
    receiver.answers = [500]
    row2 = svc.redeliver_now(db, admin.principal, did)
    assert (row2.status, row2.attempts, row2.max_attempts) == ("pending", 4, 3 + svc.POLICY.max_attempts)
    run = svc.deliver_due(db, datetime.now(UTC) + timedelta(days=1))
    assert run.delivered == 1
    with db.transaction() as s:
        log = svc.attempts_of(s, did)
        assert [(a.attempt, a.manual, a.status_code) for a in log[-2:]] == [(4, True, 500), (5, False, 200)]


def test_a_dead_receiver_and_a_missing_secret_are_logged_errors(db: Database, monkeypatch: Any) -> None:
    monkeypatch.delenv("LF_MISSING_SECRET", raising=False)
    with db.transaction() as s:
        a = svc.enqueue(s, event="test.ping", url="http://127.0.0.1:9/nothing-listens", data={}).id
        b = svc.enqueue(
            s, event="test.ping", url="http://127.0.0.1:9/x", data={}, secret_env="LF_MISSING_SECRET"
        ).id
    run = svc.deliver_due(db)
    assert run.retrying == 2
    with db.transaction() as s:
        ea = svc.attempts_of(s, a)[0]
        eb = svc.attempts_of(s, b)[0]
    assert ea.status_code is None and ea.error and "Connect" in ea.error
    assert eb.error == "environment variable LF_MISSING_SECRET (the secret) is not set"


def test_a_claimed_delivery_is_not_sent_twice_while_in_flight(db: Database, receiver: Receiver) -> None:
    """A worker that dies after claiming leaves the delivery to be retried after the lease."""

    with db.transaction() as s:
        did = svc.enqueue(s, event="test.ping", url=receiver.url, data={}).id
    t = datetime(2030, 1, 1, tzinfo=UTC)
    jobs = svc._claim(db, t, 10, None)  # a worker claims, then dies before sending
    assert [j.id for j in jobs] == [did]
    assert svc.deliver_due(db, t + timedelta(seconds=10)).attempted == 0
    assert svc.deliver_due(db, t + svc.LEASE).delivered == 1


def test_api_and_cli_list_show_and_redeliver(
    db: Database,
    client: TestClient,
    admin: Actor,
    receiver: Receiver,
    secret: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with db.transaction() as s:
        did = svc.enqueue(
            s, event="test.ping", url=receiver.url, data={"x": 1}, secret_env="LF_TEST_HOOK_SECRET"
        ).id
    receiver.answers = [502]
    svc.deliver_due(db)
    r = client.get("/api/webhooks/deliveries", headers=admin.headers)
    assert r.status_code == 200, r.text
    page = r.json()
    assert [d["id"] for d in page["items"]] == [did] and page["counts"]["pending"] == 1
    r = client.get(f"/api/webhooks/deliveries/{did}", headers=admin.headers)
    detail = r.json()
    assert detail["body"]["data"] == {"x": 1}
    assert [(a["attempt"], a["status_code"], a["error"]) for a in detail["log"]] == [(1, 502, "HTTP 502")]
    r = client.post(f"/api/webhooks/deliveries/{did}/redeliver", headers=admin.headers)
    assert r.status_code == 200 and r.json()["status"] == "delivered"
    assert client.get("/api/webhooks/deliveries?status=bogus", headers=admin.headers).status_code == 422
    assert client.get("/api/webhooks/deliveries/999999", headers=admin.headers).status_code == 404
    rep = make_user(db, "Rep", Role.SALES_REP)
    assert client.get("/api/webhooks/deliveries", headers=rep.headers).status_code == 403
    with db.transaction() as s, pytest.raises(Forbidden):
        svc.redeliver(s, rep.principal, did)

    from leadflow import cli

    monkeypatch.setenv("LEADFLOW_DATABASE_URL", db.url)
    monkeypatch.setattr(cli.console, "width", 250)
    get_settings.cache_clear()
    app = cli.app
    runner = CliRunner()
    env: dict[str, str] = {}
    res = runner.invoke(app, ["webhooks", "list"], env=env)
    assert res.exit_code == 0, res.output
    assert "delivered" in res.output
    res = runner.invoke(app, ["webhooks", "show", str(did)], env=env)
    assert res.exit_code == 0 and "HTTP 502" in res.output
    res = runner.invoke(app, ["webhooks", "redeliver", str(did)], env=env)
    assert res.exit_code == 0 and "delivered" in res.output
    res = runner.invoke(app, ["webhooks", "list", "--status", "nope"], env=env)
    assert res.exit_code == 2
    with db.transaction() as s:
        assert len(s.scalars(select(WebhookAttempt).where(WebhookAttempt.delivery_id == did)).all()) == 3
    get_settings.cache_clear()


def test_the_worker_job_is_registered_and_sends_due_deliveries(db: Database, receiver: Receiver) -> None:
    from leadflow import jobs

    assert "webhooks.deliver_due" in [j.name for j in jobs.registered_jobs()]
    with db.transaction() as s:
        for n in range(12):
            svc.enqueue(s, event="test.ping", url=receiver.url, data={"n": n})
    out = jobs.run_job(db, "webhooks.deliver_due", datetime.now(UTC))
    assert out == {"attempted": 12, "delivered": 12, "retrying": 0, "failed": 0}
    assert sorted(json.loads(r.body)["data"]["n"] for r in receiver.received) == list(range(12))
