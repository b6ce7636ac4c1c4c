"""Engagement events and sales touches: idempotent batch ingest, per-item errors, listing with
filters and a cursor, and activities logged by people."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import Actor, make_user
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from leadflow.auth.models import Role
from leadflow.db.base import Database
from leadflow.errors import InvalidInput
from leadflow.leads import activities as activity_svc
from leadflow.leads.models import Activity

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def iso(dt: datetime) -> str:
    return dt.isoformat()


def lead(client: TestClient, actor: Actor, email: str, **fields: Any) -> dict[str, Any]:
    r = client.post("/api/leads", json={"email": email, **fields}, headers=actor.headers)
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def post_events(client: TestClient, actor: Actor, events: list[dict[str, Any]]) -> dict[str, Any]:
    r = client.post("/api/events", json={"events": events}, headers=actor.headers)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def activity_count(db: Database, lead_id: int | None = None) -> int:
    stmt = select(func.count()).select_from(Activity)
    if lead_id is not None:
        stmt = stmt.where(Activity.lead_id == lead_id)
    with db.transaction() as s:
        return int(s.scalar(stmt) or 0)


def get(client: TestClient, actor: Actor, lead_id: int) -> dict[str, Any]:
    out: dict[str, Any] = client.get(f"/api/leads/{lead_id}", headers=actor.headers).json()
    return out


# ----------------------------------------------------------------------------------- ingest


def test_ingest_by_lead_id_and_by_email(client: TestClient, admin: Actor, db: Database) -> None:
    ada = lead(client, admin, "ada@acme.io")
    bob = lead(client, admin, "bob@acme.io")
    out = post_events(
        client,
        admin,
        [
            {
                "lead_id": ada["id"],
                "type": "page_view",
                "occurred_at": iso(T0),
                "properties": {"url": "/pricing"},
            },
            {"email": " BOB@acme.io ", "type": "email_open", "occurred_at": iso(T0), "source": "mailer"},
            {"email": "bob@acme.io", "type": "webinar", "occurred_at": iso(T0 + timedelta(hours=1))},
        ],
    )
    assert out == {"accepted": 3, "duplicates": 0, "errors": []}
    assert activity_count(db, ada["id"]) == 1
    assert activity_count(db, bob["id"]) == 2
    items = client.get("/api/activities", params={"lead_id": bob["id"]}, headers=admin.headers).json()[
        "items"
    ]
    assert [(a["type"], a["source"], a["actor_id"]) for a in items] == [
        ("webinar", None, None),
        ("email_open", "mailer", None),
    ]
    first = client.get("/api/activities", params={"lead_id": ada["id"]}, headers=admin.headers).json()
    assert first["items"][0]["properties"] == {"url": "/pricing"}
    assert datetime.fromisoformat(first["items"][0]["occurred_at"]) == T0


def test_same_batch_twice_is_counted_as_duplicates(client: TestClient, admin: Actor, db: Database) -> None:
    ada = lead(client, admin, "ada@acme.io")
    events = [
        {"lead_id": ada["id"], "type": "email_click", "external_id": f"esp-{i}", "occurred_at": iso(T0)}
        for i in range(5)
    ]
    assert post_events(client, admin, events) == {"accepted": 5, "duplicates": 0, "errors": []}
    assert post_events(client, admin, events) == {"accepted": 0, "duplicates": 5, "errors": []}
    more = [*events[:2], {"lead_id": ada["id"], "type": "page_view", "external_id": "esp-new"}]
    assert post_events(client, admin, more) == {"accepted": 1, "duplicates": 2, "errors": []}
    assert activity_count(db) == 6


def test_duplicates_inside_one_batch(client: TestClient, admin: Actor, db: Database) -> None:
    ada = lead(client, admin, "ada@acme.io")
    ev = {"lead_id": ada["id"], "type": "page_view", "external_id": "x-1", "occurred_at": iso(T0)}
    out = post_events(client, admin, [ev, ev, {**ev, "type": "email_open"}, {**ev, "external_id": "x-2"}])
    assert out == {"accepted": 2, "duplicates": 2, "errors": []}
    assert activity_count(db) == 2
    # Without an external id nothing is deduplicated.
    plain = {"lead_id": ada["id"], "type": "page_view", "occurred_at": iso(T0)}
    assert post_events(client, admin, [plain, plain])["accepted"] == 2
    assert activity_count(db) == 4


def test_unknown_leads_are_per_item_errors_and_good_items_land(
    client: TestClient, admin: Actor, db: Database
) -> None:
    ada = lead(client, admin, "ada@acme.io")
    out = post_events(
        client,
        admin,
        [
            {"lead_id": 9999, "type": "page_view"},
            {"lead_id": ada["id"], "type": "page_view", "external_id": "ok-1"},
            {"email": "ghost@acme.io", "type": "page_view", "external_id": "ghost-1"},
            {"type": "page_view"},
        ],
    )
    assert out["accepted"] == 1
    assert out["duplicates"] == 0
    errors = {e["index"]: e for e in out["errors"]}
    assert set(errors) == {0, 2, 3}
    assert errors[0]["loc"] == ["lead_id"] and "9999" in errors[0]["msg"]
    assert errors[2]["loc"] == ["email"]
    assert errors[3]["loc"] == ["lead_id"]
    assert activity_count(db) == 1
    # The failed item's external id was not consumed.
    ghost = lead(client, admin, "ghost@acme.io")
    out = post_events(
        client, admin, [{"email": "ghost@acme.io", "type": "page_view", "external_id": "ghost-1"}]
    )
    assert out["accepted"] == 1
    assert activity_count(db, ghost["id"]) == 1


def test_a_lead_the_actor_cannot_see_is_an_error_not_a_write(client: TestClient, db: Database) -> None:
    rep = make_user(db, "Rita", Role.SALES_REP, "east")
    other = make_user(db, "Olaf", Role.SALES_REP, "west")
    theirs = lead(client, other, "theirs@acme.io")
    mine = lead(client, rep, "mine@acme.io")
    out = post_events(
        client,
        rep,
        [
            {"lead_id": theirs["id"], "type": "call"},
            {"email": "theirs@acme.io", "type": "call"},
            {"lead_id": mine["id"], "type": "call"},
        ],
    )
    assert out["accepted"] == 1
    assert [(e["index"], e["loc"]) for e in out["errors"]] == [(0, ["lead_id"]), (1, ["lead_id"])]
    assert all("not found" in e["msg"] for e in out["errors"])
    assert activity_count(db, theirs["id"]) == 0


def test_last_activity_at_moves_forward_only(client: TestClient, admin: Actor) -> None:
    ada = lead(client, admin, "ada@acme.io")
    assert ada["last_activity_at"] is None
    post_events(
        client,
        admin,
        [
            {"lead_id": ada["id"], "type": "page_view", "occurred_at": iso(T0)},
            {"lead_id": ada["id"], "type": "page_view", "occurred_at": iso(T0 + timedelta(days=2))},
            {"lead_id": ada["id"], "type": "page_view", "occurred_at": iso(T0 + timedelta(days=1))},
        ],
    )
    assert datetime.fromisoformat(get(client, admin, ada["id"])["last_activity_at"]) == T0 + timedelta(days=2)
    post_events(client, admin, [{"lead_id": ada["id"], "type": "page_view", "occurred_at": iso(T0)}])
    assert datetime.fromisoformat(get(client, admin, ada["id"])["last_activity_at"]) == T0 + timedelta(days=2)
    post_events(
        client,
        admin,
        [{"lead_id": ada["id"], "type": "email_open", "occurred_at": iso(T0 + timedelta(days=5))}],
    )
    assert datetime.fromisoformat(get(client, admin, ada["id"])["last_activity_at"]) == T0 + timedelta(days=5)


def test_naive_and_aware_timestamps_mix_in_one_batch(client: TestClient, admin: Actor) -> None:
    """A timestamp without an offset is UTC; mixing both kinds must not fail the batch."""

    ada = lead(client, admin, "ada@acme.io")
    out = post_events(
        client,
        admin,
        [
            {"lead_id": ada["id"], "type": "page_view", "occurred_at": "2026-03-01T09:00:00"},
            {"lead_id": ada["id"], "type": "page_view", "occurred_at": "2026-03-02T09:00:00+02:00"},
            {"lead_id": ada["id"], "type": "page_view"},
            {"lead_id": ada["id"], "type": "page_view", "occurred_at": "2026-03-03T09:00:00"},
        ],
    )
    assert out["accepted"] == 4
    items = client.get(
        "/api/activities", params={"lead_id": ada["id"], "sort": "occurred_at"}, headers=admin.headers
    ).json()["items"]
    stamps = [datetime.fromisoformat(a["occurred_at"]) for a in items]
    assert stamps[:3] == [
        datetime(2026, 3, 1, 9, tzinfo=UTC),
        datetime(2026, 3, 2, 7, tzinfo=UTC),
        datetime(2026, 3, 3, 9, tzinfo=UTC),
    ]


def test_event_batch_validation(client: TestClient, admin: Actor) -> None:
    ada = lead(client, admin, "ada@acme.io")
    r = client.post(
        "/api/events", json={"events": [{"lead_id": ada["id"], "type": "telepathy"}]}, headers=admin.headers
    )
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "events", 0, "type"]
    assert client.post("/api/events", json={"events": []}, headers=admin.headers).status_code == 422
    r = client.post(
        "/api/events",
        json={"events": [{"lead_id": ada["id"], "type": "call", "x": 1}]},
        headers=admin.headers,
    )
    assert r.status_code == 422
    assert (
        client.post("/api/events", json={"events": [{"lead_id": ada["id"], "type": "call"}]}).status_code
        == 401
    )


def test_service_ingest_reports_bad_items_by_index_and_field(db: Database, admin: Actor) -> None:
    with db.transaction() as s:
        from leadflow.leads.service import create_lead

        lead_id = create_lead(s, admin.principal, {"email": "ada@acme.io"}).lead.id
    with db.transaction() as s:
        res = activity_svc.ingest(
            s,
            admin.principal,
            [
                {"lead_id": lead_id, "type": "telepathy"},
                {"lead_id": lead_id, "type": "call", "occurred_at": "yesterday"},
                {"lead_id": lead_id, "type": "call", "properties": ["not", "an", "object"]},
                {"lead_id": lead_id, "type": "call", "occurred_at": "2026-03-01T10:00:00+00:00"},
            ],
        )
    assert res.accepted == 1
    assert [(e["index"], e["loc"]) for e in res.errors] == [
        (0, ["type"]),
        (1, ["occurred_at"]),
        (2, ["properties"]),
    ]
    assert res.lead_ids == [lead_id]
    with db.transaction() as s, pytest.raises(InvalidInput) as exc:
        activity_svc.ingest(s, admin.principal, [{"lead_id": lead_id, "type": "call"}] * 10_001)
    assert exc.value.loc == ["events"]
    assert activity_count(db) == 1


# ----------------------------------------------------------------------------------- listing


@pytest.fixture
def timeline(client: TestClient, admin: Actor) -> tuple[dict[str, Any], dict[str, Any]]:
    ada = lead(client, admin, "ada@acme.io")
    bob = lead(client, admin, "bob@acme.io")
    events = []
    kinds = ["page_view", "email_open", "webinar", "demo_request"]
    for i in range(30):
        events.append(
            {
                "lead_id": (ada if i % 3 else bob)["id"],
                "type": kinds[i % 4],
                # Runs of equal timestamps: the cursor must break ties by id.
                "occurred_at": iso(T0 + timedelta(hours=i // 4)),
            }
        )
    post_events(client, admin, events)
    return ada, bob


def _walk(client: TestClient, actor: Actor, path: str, limit: int, **params: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        q = {**params, "limit": limit}
        if cursor:
            q["cursor"] = cursor
        r = client.get(path, params=q, headers=actor.headers)
        assert r.status_code == 200, r.text
        page = r.json()
        out.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return out
    raise AssertionError("the cursor never ends")


def _order_key(a: dict[str, Any]) -> tuple[datetime, int]:
    return datetime.fromisoformat(a["occurred_at"]), a["id"]


def test_activity_cursor_walks_every_row_once_in_both_directions(
    client: TestClient, admin: Actor, timeline: Any
) -> None:
    everything = _walk(client, admin, "/api/activities", 1000)
    assert len(everything) == 30
    newest_first = sorted(everything, key=_order_key, reverse=True)
    assert everything == newest_first  # default: newest first
    for limit in (3, 29):
        desc = _walk(client, admin, "/api/activities", limit)
        asc = _walk(client, admin, "/api/activities", limit, sort="occurred_at")
        assert [a["id"] for a in desc] == [a["id"] for a in newest_first]
        assert [a["id"] for a in asc] == [a["id"] for a in reversed(newest_first)]


def test_activity_filters(client: TestClient, admin: Actor, timeline: Any) -> None:
    ada, bob = timeline
    everything = _walk(client, admin, "/api/activities", 1000)
    by_lead = _walk(client, admin, "/api/activities", 4, lead_id=bob["id"])
    assert {a["lead_id"] for a in by_lead} == {bob["id"]}
    assert len(by_lead) == sum(a["lead_id"] == bob["id"] for a in everything) == 10
    webinars = _walk(client, admin, "/api/activities", 3, type="webinar")
    assert {a["type"] for a in webinars} == {"webinar"} and len(webinars) == 7
    two = _walk(client, admin, "/api/activities", 5, type=["webinar", "demo_request"])
    assert len(two) == 14
    since, until = T0 + timedelta(hours=2), T0 + timedelta(hours=5)
    window = _walk(client, admin, "/api/activities", 2, since=iso(since), until=iso(until))
    expected = [a["id"] for a in everything if since <= datetime.fromisoformat(a["occurred_at"]) < until]
    assert [a["id"] for a in window] == expected and len(expected) == 12
    per_lead = _walk(client, admin, f"/api/leads/{ada['id']}/activities", 3, type="page_view")
    assert {(a["lead_id"], a["type"]) for a in per_lead} == {(ada["id"], "page_view")}
    assert len(per_lead) == sum(a["lead_id"] == ada["id"] and a["type"] == "page_view" for a in everything)
    assert client.get("/api/leads/9999/activities", headers=admin.headers).status_code == 404
    assert client.get("/api/activities?lead_id=9999", headers=admin.headers).status_code == 404
    assert client.get("/api/activities?cursor=%%%", headers=admin.headers).status_code == 422


# ----------------------------------------------------------------------------------- logging


def test_logging_a_call_records_the_actor(client: TestClient, db: Database) -> None:
    rep = make_user(db, "Rita", Role.SALES_REP, "east")
    ada = lead(client, rep, "ada@acme.io")
    at = T0 + timedelta(days=3)
    r = client.post(
        f"/api/leads/{ada['id']}/activities",
        json={"type": "call", "occurred_at": iso(at), "properties": {"outcome": "voicemail", "minutes": 2}},
        headers=rep.headers,
    )
    assert r.status_code == 201, r.text
    act = r.json()
    assert (act["lead_id"], act["type"], act["actor_id"]) == (ada["id"], "call", rep.user_id)
    assert act["properties"] == {"outcome": "voicemail", "minutes": 2}
    assert datetime.fromisoformat(act["occurred_at"]) == at
    assert datetime.fromisoformat(get(client, rep, ada["id"])["last_activity_at"]) == at
    note = client.post(
        f"/api/leads/{ada['id']}/activities", json={"type": "note"}, headers=rep.headers
    ).json()
    assert note["id"] != act["id"] and note["actor_id"] == rep.user_id
    listed = client.get(f"/api/leads/{ada['id']}/activities", headers=rep.headers).json()["items"]
    assert {a["id"] for a in listed} == {act["id"], note["id"]}


def test_logging_validation(client: TestClient, admin: Actor) -> None:
    ada = lead(client, admin, "ada@acme.io")
    assert (
        client.post("/api/leads/9999/activities", json={"type": "call"}, headers=admin.headers).status_code
        == 404
    )
    r = client.post(
        f"/api/leads/{ada['id']}/activities", json={"type": "smoke_signal"}, headers=admin.headers
    )
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "type"]


def test_far_off_event_dates_are_refused_by_index_and_field(client: TestClient, admin: Actor) -> None:
    ada = lead(client, admin, "ada@acme.io")
    soon = datetime.now(UTC) + timedelta(days=30)  # a scheduled meeting: believable
    out = post_events(
        client,
        admin,
        [
            {"lead_id": ada["id"], "type": "page_view", "occurred_at": "9999-12-31T00:00:00+00:00"},
            {"lead_id": ada["id"], "type": "page_view", "occurred_at": "0001-01-01T00:00:00+00:00"},
            {"lead_id": ada["id"], "type": "meeting", "occurred_at": iso(soon)},
        ],
    )
    assert out["accepted"] == 1
    assert [(e["index"], e["loc"]) for e in out["errors"]] == [(0, ["occurred_at"]), (1, ["occurred_at"])]
    r = client.get(f"/api/leads/{ada['id']}/activities", headers=admin.headers)
    assert r.status_code == 200 and len(r.json()["items"]) == 1
