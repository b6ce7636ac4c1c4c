"""Background work: a registry of periodic jobs run by the worker through the huey task queue.

Features add their periodic jobs with :func:`register_job` (name, interval, ``fn(db, now)``): the
sequence steps that fell due, webhook deliveries, SLA breach checks. ``leadflow worker`` runs a
huey consumer (separate processes in production); ``leadflow serve``/``demo`` run the same consumer
in-process on threads. The queue lives next to the data: its own SQLite file beside an SQLite
database, tables prefixed ``huey_`` inside a PostgreSQL database. No broker to operate.

Why huey (docs/cadences.md): maintained, small, periodic tasks built in, storage on SQLite and on
any peewee database (PostgreSQL with ``FOR UPDATE SKIP LOCKED``), an immediate mode for tests.
The queue may deliver a job twice or lose one when a worker dies; correctness never depends on it:
each sequence step is claimed in our own database with a compare-and-set.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from huey import Huey, SqliteHuey, crontab
from huey.consumer import Consumer

from leadflow.clock import now as clock_now
from leadflow.config import Settings, get_settings
from leadflow.db.base import Database

log = logging.getLogger("leadflow.jobs")

JobFn = Callable[[Database, datetime], Any]


@dataclass(frozen=True)
class Job:
    name: str
    interval_seconds: int
    fn: JobFn


_JOBS: dict[str, Job] = {}


def register_job(name: str, interval_seconds: int, fn: JobFn) -> None:
    """Add (or replace) a periodic job. Intervals are whole minutes in the queue's scheduler
    (rounded up); jobs also run once when a worker starts."""

    _JOBS[name] = Job(name, max(int(interval_seconds), 1), fn)


def registered_jobs() -> list[Job]:
    _load_feature_jobs()
    return sorted(_JOBS.values(), key=lambda j: j.name)


def run_job(db: Database, name: str, now: datetime | None = None) -> Any:
    _load_feature_jobs()
    job = _JOBS.get(name)
    if job is None:
        raise KeyError(name)
    return job.fn(db, now or clock_now())


def run_all_once(db: Database, now: datetime | None = None) -> dict[str, Any]:
    """Every registered job once, in this thread (``leadflow worker --once``, tests)."""

    out: dict[str, Any] = {}
    for job in registered_jobs():
        try:
            out[job.name] = job.fn(db, now or clock_now())
        except Exception as exc:  # one failing job must not keep the others from running
            log.exception("job %s failed", job.name)
            out[job.name] = f"failed: {exc}"
    return out


_loaded = False


def _load_feature_jobs() -> None:
    """Import the features that contribute jobs (each registers at import)."""

    global _loaded
    if _loaded:
        return
    _loaded = True
    import leadflow.cadences.jobs
    import leadflow.qualification.jobs
    import leadflow.webhooks.jobs  # noqa: F401


# ------------------------------------------------------------------------------- the queue


class _PrefixedSqlHuey:
    """huey's SQL storage with its tables named huey_* (they share our PostgreSQL database)."""

    @staticmethod
    def create(name: str, url: str) -> Huey:
        from huey.contrib.sql_huey import BytesBlobField, SqlStorage
        from peewee import CharField, CompositeKey, FloatField, IntegerField, Model, TimestampField

        class Storage(SqlStorage):  # type: ignore[misc]
            # The same models as huey's, under our table names (the index is declared after the
            # name, so it refers to the right table).
            def create_models(self) -> Any:
                database = self.database

                class Base(Model):
                    class Meta:
                        pass

                Base._meta.database = database

                class KV(Base):
                    queue = CharField()
                    key = CharField()
                    value = BytesBlobField()

                    class Meta:
                        table_name = "huey_kv"
                        primary_key = CompositeKey("queue", "key")

                class Schedule(Base):
                    queue = CharField()
                    data = BytesBlobField()
                    timestamp = TimestampField(resolution=1000)

                    class Meta:
                        table_name = "huey_schedule"
                        indexes = ((("queue", "timestamp"), False),)

                class Task(Base):
                    queue = CharField()
                    data = BytesBlobField()
                    priority = FloatField(default=0.0)

                    class Meta:
                        table_name = "huey_task"

                Task.add_index(Task.priority.desc(), Task._meta.primary_key)

                class Counter(Base):
                    queue = CharField()
                    key = CharField()
                    value = IntegerField()

                    class Meta:
                        table_name = "huey_counter"
                        primary_key = CompositeKey("queue", "key")

                return (KV, Schedule, Task, Counter)

        return Huey(name, storage_class=Storage, database=url, utc=True)


def queue_url(settings: Settings) -> str:
    if settings.queue_url:
        return settings.queue_url
    url = settings.database_url
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        return f"sqlite:///{path}-queue" if path and path != ":memory:" else "sqlite:///:memory:"
    # postgresql+psycopg://... -> peewee's psycopg3 scheme
    return "psycopg3://" + url.split("://", 1)[1]


def make_queue(settings: Settings | None = None, *, immediate: bool = False) -> Huey:
    s = settings or get_settings()
    if immediate:
        return Huey("leadflow", immediate=True, utc=True)
    url = queue_url(s)
    if url.startswith("sqlite"):
        return SqliteHuey("leadflow", filename=url.split("///", 1)[-1], utc=True)
    return _PrefixedSqlHuey.create("leadflow", url)


class Worker:
    """The huey tasks of one process: a periodic task per registered job, and the per-step task
    the sequence job fans out to (so several workers share a burst of due steps)."""

    def __init__(self, db: Database, huey: Huey) -> None:
        self.db = db
        self.huey = huey
        self.consumer: Consumer | None = None

        def execute_step(step_id: int) -> str:
            from leadflow.cadences.service import execute_step as run

            return run(self.db, step_id)

        def run_named(name: str) -> Any:
            return run_job(self.db, name)

        self.execute_step: Any = huey.task(name="cadences.execute_step")(execute_step)
        self.run_named: Any = huey.task(name="jobs.run")(run_named)
        for job in registered_jobs():
            minutes = max(1, -(-job.interval_seconds // 60))
            every = crontab(minute="*" if minutes == 1 else f"*/{minutes}")

            def periodic(job_name: str = job.name) -> Any:
                return run_job(self.db, job_name)

            huey.periodic_task(every, name=f"periodic.{job.name}")(periodic)

    def enqueue_step(self, step_id: int) -> None:
        self.execute_step(step_id)

    def kick(self) -> None:
        """Run every job soon (a worker that starts does not wait for the next minute)."""

        for job in registered_jobs():
            self.run_named(job.name)

    def start_threads(self, workers: int | None = None) -> None:
        """Run the consumer on background threads of this process (the embedded setup)."""

        consumer = _ThreadConsumer(
            self.huey, workers=workers or get_settings().worker_threads, worker_type="thread"
        )
        consumer.start()
        self.consumer = consumer
        self.kick()

    def run_forever(self, workers: int | None = None) -> None:
        """Run the consumer in the foreground until SIGINT/SIGTERM (``leadflow worker``)."""

        consumer = Consumer(self.huey, workers=workers or get_settings().worker_threads, worker_type="thread")
        self.consumer = consumer
        self.kick()
        consumer.run()

    def stop(self) -> None:
        if self.consumer is not None:
            self.consumer.stop(graceful=True)
            self.consumer = None


class _ThreadConsumer(Consumer):  # type: ignore[misc]
    """A consumer that leaves signal handling to its host (uvicorn owns SIGINT/SIGTERM)."""

    def _set_signal_handlers(self) -> None:
        pass


# The worker a process runs (the sequence job enqueues per-step tasks on it when present).
_current: Worker | None = None
_lock = threading.Lock()


def current_worker() -> Worker | None:
    return _current


def install(worker: Worker | None) -> None:
    global _current
    with _lock:
        _current = worker


def start_embedded_worker(db: Database) -> Worker:
    """The in-process worker of ``leadflow serve``/``demo`` (threads, same queue storage)."""

    from leadflow.cadences import handlers

    handlers.register(db)
    worker = Worker(db, make_queue())
    install(worker)
    worker.start_threads()
    return worker
