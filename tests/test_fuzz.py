"""Schemathesis over Leadflow's own OpenAPI schema: every operation, as an admin and as a sales
rep, against the real app and database.

Checks for every generated request: no 5xx (and so no traceback), the response matches the
schema (content type, headers, body of documented statuses), and a refused request (4xx) changed
no row of any table (row counts and a checksum of every table, compared before and after).

The suite runs a short pass (``LEADFLOW_FUZZ_EXAMPLES``, default 3 per operation and actor);
``make fuzz`` runs >= 10,000 requests and writes the counts to ``LEADFLOW_FUZZ_REPORT``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from conftest import Actor, make_user
from hypothesis import HealthCheck, given, settings
from schemathesis import checks
from sqlalchemy import select

from leadflow.api import create_app
from leadflow.auth.models import Role
from leadflow.auth.principal import SYSTEM
from leadflow.db.base import Base, Database
from leadflow.leads import service as leads

EXAMPLES = int(os.environ.get("LEADFLOW_FUZZ_EXAMPLES", "3"))
REPORT = os.environ.get("LEADFLOW_FUZZ_REPORT")

STATS: Counter[str] = Counter()
PER_OPERATION: Counter[str] = Counter()
FAILURES: list[str] = []


def _fingerprint(db: Database) -> dict[str, tuple[int, int]]:
    """Row count and a hash of every row of every table (the token's last-use time excepted)."""

    out: dict[str, tuple[int, int]] = {}
    with db.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            cols = [c for c in table.columns if not (table.name == "api_tokens" and c.name == "last_used_at")]
            rows = conn.execute(select(*cols).order_by(*table.primary_key.columns)).all()
            out[table.name] = (len(rows), hash(tuple(map(repr, rows))))
    return out


class World:
    fingerprint: dict[str, tuple[int, int]] | None = None

    def __init__(self, db: Database) -> None:
        self.db = db
        self.admin = make_user(db, "FuzzAdmin", Role.ADMIN)
        self.rep = make_user(db, "FuzzRep", Role.SALES_REP, team="east")
        self.other = make_user(db, "OtherRep", Role.SALES_REP, team="west")
        with db.transaction() as s:
            for i, owner in enumerate([self.rep.user_id, self.other.user_id, None, self.rep.user_id]):
                leads.create_lead(
                    s,
                    SYSTEM,
                    {
                        "email": f"seed{i}@seed-{i}.com",
                        "first_name": f"Seed{i}",
                        "company": f"Seed Co {i}",
                        "owner_id": owner,
                    },
                )


@pytest.fixture
def world(db: Database) -> World:
    return World(db)


def _operations(world: World) -> list[Any]:
    app = create_app(world.db)
    loaded = schemathesis.openapi.from_asgi("/openapi.json", app, timeout=120)
    ops = [r.ok() for r in loaded.get_all_operations()]
    assert len(ops) >= 30, "the schema lost its operations"
    return ops


CHECKS = [
    checks.not_a_server_error,
    checks.response_schema_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
]


def _small_ids(case: Any) -> None:
    """Most generated ids would miss every row; point half of them at the seeded records."""

    params = case.path_parameters or {}
    for k, v in list(params.items()):
        if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 10**6 and v % 2 == 0:
            params[k] = v % 6 + 1


def _run(case: Any, world: World, actor: Actor) -> None:
    _small_ids(case)
    headers = dict(case.headers or {})
    headers["Authorization"] = actor.headers["Authorization"]
    case.headers = headers
    # Nothing changes the database between two requests: the fingerprint taken after the last
    # one is this one's "before" (one full read per request instead of two for a refusal).
    before = world.fingerprint if world.fingerprint is not None else _fingerprint(world.db)
    world.fingerprint = None
    op = f"{case.method.upper()} {case.path}"
    try:
        response = case.call(timeout=120)
    except Exception:  # an exception escaped the app: a 500 with a traceback
        STATS["requests"] += 1
        STATS["status_5xx"] += 1
        STATS["server_errors"] += 1
        PER_OPERATION[op] += 1
        raise
    STATS["requests"] += 1
    STATS[f"status_{response.status_code // 100}xx"] += 1
    PER_OPERATION[op] += 1
    if response.status_code >= 500:
        STATS["server_errors"] += 1
    after = _fingerprint(world.db)
    world.fingerprint = after
    case.validate_response(response, checks=CHECKS)
    if 400 <= response.status_code < 500:
        changed = sorted(t for t in set(before) | set(after) if before.get(t) != after.get(t))
        if changed:
            STATS["refused_but_changed"] += 1
        assert not changed, (
            f"{op} answered {response.status_code} but changed {changed}: {response.text[:300]}"
        )


def _fuzz(world: World, actor: Actor) -> None:
    failed: list[str] = []
    for op in _operations(world):

        @given(case=op.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=os.environ.get("LEADFLOW_FUZZ_RANDOM") is None,
            database=None,
        )
        def run(case: Any) -> None:
            _run(case, world, actor)

        # Every operation is fuzzed even after one failed: one run reports every failure.
        try:
            run()
        except Exception as exc:
            failed.append(f"{op.method.upper()} {op.path}: {type(exc).__name__}: {str(exc)[:500]}")
    FAILURES.extend(failed)
    assert not failed, "\n".join(failed)


def test_fuzz_every_operation_as_admin(world: World) -> None:
    _fuzz(world, world.admin)


def test_fuzz_every_operation_as_a_rep(world: World) -> None:
    _fuzz(world, world.rep)


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    if REPORT:
        Path(REPORT).write_text(
            json.dumps(
                {
                    "examples_per_operation_and_actor": EXAMPLES,
                    "operations": len(PER_OPERATION),
                    **dict(STATS),
                    "per_operation": dict(sorted(PER_OPERATION.items())),
                    "failures": FAILURES,
                },
                indent=2,
            )
            + "\n"
        )
