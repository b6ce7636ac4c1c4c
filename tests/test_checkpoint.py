"""WAL checkpoints of a SQLite database file run on a background thread, not in the writer."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from leadflow.db import checkpoint
from leadflow.db.base import Database


def _wait(cond: object, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(cond) and cond():
            return True
        time.sleep(0.02)
    return False


def _in_main_file(path: Path) -> int:
    """Rows of t in the database file itself (immutable: the WAL is not read, and no lock is
    taken: a read in the middle of a checkpoint can see a torn file, -1, and is tried again)."""

    conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 't'").fetchone():
            return 0
        return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])
    except sqlite3.DatabaseError:
        return -1
    finally:
        conn.close()


def _threads(path: Path) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"sqlite-checkpoint:{path.name}" and t.is_alive()]


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Path:
    return tmp_path / "ck.db"


def test_commits_reach_the_database_file_without_the_writer_checkpointing(sqlite_file: Path) -> None:
    db = Database(f"sqlite:///{sqlite_file}")
    try:
        with db.engine.connect() as conn:
            # The writer's own checkpoint only past the high mark (SQLite's default: 1,000 pages).
            mark = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
            assert mark == checkpoint.AUTOCHECKPOINT_PAGES
        with db.transaction() as s:
            s.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"))
        for k in range(5):  # a few small commits: far below any autocheckpoint mark
            with db.transaction() as s:
                s.execute(text("INSERT INTO t (v) VALUES (:v)"), [{"v": f"{k}-{i}"} for i in range(100)])
        # The background thread copies them into the file while the pool's connections stay open.
        assert _wait(lambda: _in_main_file(sqlite_file) == 500), _in_main_file(sqlite_file)
        ck = checkpoint.of(db.engine)
        assert ck is not None and ck.checkpoints > 0
    finally:
        db.dispose()


def test_a_stream_of_write_transactions_keeps_the_wal_bounded(
    sqlite_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small marks so that a test-sized stream crosses them (pages of 4 KiB).
    monkeypatch.setattr(checkpoint, "RESTART_FRAMES", 200)
    monkeypatch.setattr(checkpoint, "JOURNAL_SIZE_LIMIT", 1024 * 1024)
    db = Database(f"sqlite:///{sqlite_file}")
    try:
        with db.transaction() as s:
            s.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"))
        blob = "x" * 2000
        for _ in range(60):  # back to back, ~100 pages each: 6,000 pages written in all
            with db.transaction() as s:
                s.execute(text("INSERT INTO t (v) VALUES (:v)"), [{"v": blob}] * 200)
        ck = checkpoint.of(db.engine)
        assert ck is not None
        assert _wait(lambda: ck.restarts > 0)
        wal = Path(f"{sqlite_file}-wal")
        rows = [12_000]

        def write_one() -> bool:
            with db.transaction() as s:
                s.execute(text("INSERT INTO t (v) VALUES ('last')"))
            rows[0] += 1
            return wal.stat().st_size <= 4 * 1024 * 1024

        # The first writer after a completed restart starts the WAL from its beginning and
        # truncates it (the stream wrote ~24 MiB through it). Under load the checkpoint thread
        # may still be catching up with the stream: writers keep coming until it has.
        assert _wait(write_one), wal.stat().st_size
        assert _wait(lambda: _in_main_file(sqlite_file) == rows[0])
    finally:
        db.dispose()


def test_dispose_stops_the_thread_and_the_next_commit_starts_it(sqlite_file: Path) -> None:
    db = Database(f"sqlite:///{sqlite_file}")
    with db.transaction() as s:
        s.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
    assert _wait(lambda: len(_threads(sqlite_file)) == 1)
    db.dispose()
    assert _wait(lambda: not _threads(sqlite_file))
    with db.transaction() as s:
        s.execute(text("INSERT INTO t DEFAULT VALUES"))
    assert _wait(lambda: _in_main_file(sqlite_file) == 1)
    db.dispose()
    assert _wait(lambda: not _threads(sqlite_file))


def test_reads_alone_start_no_checkpoints(sqlite_file: Path) -> None:
    db = Database(f"sqlite:///{sqlite_file}")
    try:
        with db.transaction() as s:
            s.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
        ck = checkpoint.of(db.engine)
        assert ck is not None
        assert _wait(lambda: ck.checkpoints > 0)
        time.sleep(checkpoint.FOLLOW_UP_SECONDS * 3)  # the follow-up look after the commit
        before = ck.checkpoints
        for _ in range(20):
            with db.transaction() as s:
                s.execute(text("SELECT count(*) FROM t")).scalar()
        time.sleep(checkpoint.FOLLOW_UP_SECONDS * 3)
        assert ck.checkpoints == before
    finally:
        db.dispose()


def test_no_background_checkpoints_in_memory() -> None:
    db = Database("sqlite://")
    try:
        assert checkpoint.of(db.engine) is None
    finally:
        db.dispose()
