"""SQLite WAL checkpoints off the commit path.

By default SQLite checkpoints in the connection that commits, once the WAL holds 1,000 pages: the
writer then copies the WAL back into the database file and waits for the fsyncs before its commit
returns. Under a stream of large write transactions (event batches, imports, rescores: tens of
thousands of pages each) that was a third of the wall time of a batch. Here a thread per engine
and process, on a connection of its own, checkpoints right after commits (PASSIVE: it never
blocks readers or writers; sqlite3 releases the GIL while it runs), so the writer's next
transaction overlaps the copying and the fsyncs. Writers only checkpoint themselves past a high
safety mark (``AUTOCHECKPOINT_PAGES``, for a process whose thread is gone), and when a
continuous stream never lets the WAL be reset, the thread resets it past ``RESTART_FRAMES``.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import weakref
from typing import Any

from sqlalchemy import Engine

log = logging.getLogger(__name__)

# A writer's own checkpoint (sqlite's wal_autocheckpoint) only past this many WAL pages (512 MiB
# at 4 KiB pages): the background thread normally keeps the WAL below half of it.
AUTOCHECKPOINT_PAGES = 131_072
# The thread waits for readers and writers and restarts the WAL (RESTART) past this many frames,
# which a stream of back-to-back write transactions otherwise never allows (a WAL is only
# restarted when every frame was copied back before the next write transaction begins).
RESTART_FRAMES = 65_536
# After a restart the WAL file is truncated to this size (it keeps its largest size otherwise).
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024
# A commit may finish after its notification woke the thread: look again this long after the
# last commit (and retry frames a reader's snapshot still needed), then sleep until the next.
FOLLOW_UP_SECONDS = 0.2
BUSY_TIMEOUT_MS = 10_000
RESTART_WAIT_MS = 250


class Checkpointer:
    """The background checkpoints of one SQLite database file, for one engine in one process.
    Started by the first commit (and again in a forked child, which has no thread), stopped by
    :meth:`close` (engine dispose); it starts again on the next commit."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._cond = threading.Condition()
        self._dirty = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._pid = 0
        self.checkpoints = 0  # PASSIVE checkpoints run (for tests and diagnostics)
        self.restarts = 0

    def notify(self) -> None:
        """A transaction is committing: checkpoint what it wrote, soon, on the thread."""

        with self._cond:
            self._dirty = True
            self._closed = False
            if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
                self._pid = os.getpid()
                self._thread = threading.Thread(
                    target=self._run, name=f"sqlite-checkpoint:{os.path.basename(self.path)}", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def close(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread() and self._pid == os.getpid():
            thread.join(timeout)
        self._thread = None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
        return conn

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            follow_up = False
            while True:
                with self._cond:
                    if not self._dirty and not self._closed:
                        self._cond.wait(FOLLOW_UP_SECONDS if follow_up else None)
                    if self._closed:
                        return
                    notified, self._dirty = self._dirty, False
                if conn is None:
                    conn = self._connect()
                remaining = self._checkpoint(conn)
                # Look once more a moment later: the notifying commit may not have finished,
                # and a reader may have held frames back.
                follow_up = notified or remaining
        except Exception:  # never take the process down: the writers' own checkpoints remain
            log.exception("background checkpoint of %s stopped", self.path)
        finally:
            if conn is not None:
                conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> bool:
        """One PASSIVE checkpoint (a RESTART past the mark); whether frames were left behind."""

        try:
            row: Any = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.checkpoints += 1
            if row is None or row[1] < 0:  # not in WAL mode (yet)
                return False
            _busy, frames, copied = row
            if frames >= RESTART_FRAMES:
                # RESTART holds the write lock while it waits for readers still in the WAL: a
                # short wait, so that a long report query never stalls the writers behind it
                # (the WAL then grows until that reader is done, as SQLite's own would).
                conn.execute(f"PRAGMA busy_timeout={RESTART_WAIT_MS}")
                try:
                    busy = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()[0]
                finally:
                    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                self.restarts += 1
                return bool(busy)
            return bool(copied < frames)
        except sqlite3.OperationalError as exc:  # locked by another checkpointer: try again later
            log.debug("checkpoint of %s deferred: %s", self.path, exc)
            return True


_BY_ENGINE: weakref.WeakKeyDictionary[Engine, Checkpointer] = weakref.WeakKeyDictionary()


def attach(engine: Engine, checkpointer: Checkpointer) -> None:
    _BY_ENGINE[engine] = checkpointer


def of(engine: Engine) -> Checkpointer | None:
    """The background checkpointer of an engine (None: PostgreSQL, or SQLite in memory)."""

    return _BY_ENGINE.get(engine)


def _after_fork_in_child() -> None:
    # A forked child has none of the parent's threads, and a lock one of them held stays held:
    # fresh locks; the next commit starts the child's own thread (see Checkpointer.notify).
    for ck in list(_BY_ENGINE.values()):
        ck._cond = threading.Condition()
        ck._thread = None


os.register_at_fork(after_in_child=_after_fork_in_child)
