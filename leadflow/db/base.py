"""Engine, sessions and the declarative base shared by every feature's models."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Connection, DateTime, Engine, MetaData, create_engine, event, make_url
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from leadflow.db import checkpoint

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


# JSON on SQLite, JSONB on PostgreSQL (indexable, compact). Python None is stored as SQL NULL,
# not as the JSON text 'null', so IS NULL filters mean what they say.
JSONType = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both backends (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def sqlite_time(t: datetime) -> str:
    """A timestamp as UTCDateTime stores it on SQLite (naive UTC text with microseconds), for the
    bulk paths that bypass the type (isoformat, not strftime: a third of the cost)."""

    if t.utcoffset():
        t = t.astimezone(UTC)
    return t.replace(tzinfo=None).isoformat(" ", "microseconds")


def _json_default(o: Any) -> Any:
    if isinstance(o, datetime):
        return o.isoformat()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


# One encoder (json.dumps with ``default=`` builds a new one per call: a third of the cost).
_ENCODER = json.JSONEncoder(default=_json_default)


def json_text(o: Any) -> str:
    """JSON text as JSONType writes it (datetimes as ISO 8601), for bulk paths that bypass it."""

    return _ENCODER.encode(o)


_SQLITE_READ = re.compile(r"\s*(SELECT|PRAGMA)\b", re.IGNORECASE)


def make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            json_serializer=lambda o: json.dumps(o, default=_json_default),
            **kwargs,
        )

        # A database file (not in memory, not a read-only URI): checkpoints run on a thread of
        # their own instead of in the committing writer (leadflow.db.checkpoint).
        file = make_url(url).database or ""
        background = (
            checkpoint.Checkpointer(file)
            if file and file != ":memory:" and not file.startswith("file:") and "mode=memory" not in url
            else None
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _rec: Any) -> None:
            # WAL lets readers run while a writer commits; NORMAL sync is safe under WAL.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA cache_size=-65536")
            if background is not None:
                cur.execute(f"PRAGMA wal_autocheckpoint={checkpoint.AUTOCHECKPOINT_PAGES}")
                cur.execute(f"PRAGMA journal_size_limit={checkpoint.JOURNAL_SIZE_LIMIT}")
            cur.close()
            # pysqlite's own transaction handling never BEGINs before a SAVEPOINT, so RELEASE
            # committed nested work early; we take transaction control away from it.
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            conn.info["lf_begin_pending"] = True

        @event.listens_for(engine, "before_cursor_execute")
        def _sqlite_begin_on_write(
            conn: Any, cursor: Any, statement: str, _p: Any, _c: Any, _m: bool
        ) -> None:
            # BEGIN IMMEDIATE right before the first write (or SAVEPOINT): reads before it see the
            # newest data instead of pinning a WAL snapshot that could not be upgraded to a write
            # later (SQLITE_BUSY_SNAPSHOT fails at once, without the busy timeout), and concurrent
            # writers queue on the busy timeout instead of failing.
            if conn.info.get("lf_begin_pending") and not _SQLITE_READ.match(statement):
                conn.info["lf_begin_pending"] = False
                conn.info["lf_wrote"] = True
                cursor.execute("BEGIN IMMEDIATE")

        @event.listens_for(engine, "commit")
        def _sqlite_commit(conn: Any) -> None:
            conn.info["lf_begin_pending"] = False
            if conn.info.pop("lf_wrote", False) and background is not None:
                background.notify()

        @event.listens_for(engine, "rollback")
        def _sqlite_end(conn: Any) -> None:
            conn.info["lf_begin_pending"] = False
            conn.info.pop("lf_wrote", None)

        if background is not None:
            event.listen(engine, "engine_disposed", lambda _engine: background.close())
            checkpoint.attach(engine, background)

        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        json_serializer=lambda o: json.dumps(o, default=_json_default),
        **kwargs,
    )


def engine_of(session: Session) -> Engine:
    """The engine a session works on, also when it is bound to one connection (the full rescore
    keeps its writes on one connection; see leadflow.scoring.service.rescore_all)."""

    bind = session.get_bind()
    return bind.engine if isinstance(bind, Connection) else bind


class Database:
    """One engine and its session factory; the composition root builds one per process."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A unit of work: commit on success, roll back on any error."""

        with self.sessions() as session, session.begin():
            yield session

    @contextmanager
    def transaction_on(self, conn: Connection) -> Iterator[Session]:
        """:meth:`transaction` on a given connection of this engine (not in a transaction)."""

        with self.sessions(bind=conn) as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
