"""Backup and restore.

SQLite: the sqlite3 online backup API copies a consistent snapshot while the application keeps
running (readers and writers are not stopped); restore copies a backup back page by page into the
live file under one write lock. PostgreSQL: ``pg_dump`` in the custom format and ``pg_restore
--clean``; the password goes through the environment, never the command line.

Every backup writes a manifest next to it (``PATH.manifest.json``): row counts and a checksum per
table, computed from the same snapshot the backup holds. ``restore`` compares the restored
database with it and fails when they differ; ``verify`` checks a backup without restoring it
(SQLite: opens the copy; PostgreSQL: ``pg_restore --list`` reads the archive).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, inspect, text
from sqlalchemy.engine import make_url

from leadflow.db.base import Database

MANIFEST_SUFFIX = ".manifest.json"


class BackupError(Exception):
    pass


@dataclass(frozen=True)
class TableFingerprint:
    rows: int
    checksum: str


Fingerprint = dict[str, TableFingerprint]


def _normalize(value: Any) -> Any:
    if isinstance(value, datetime):
        value = value if value.tzinfo else value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat()
    if isinstance(value, bytes | memoryview):
        return hashlib.sha256(bytes(value)).hexdigest()
    if isinstance(value, float):
        return repr(value)
    return value


def fingerprint_connection(conn: Connection) -> Fingerprint:
    """Row count and an order-independent checksum of every table (primary-key order)."""

    insp = inspect(conn)
    out: Fingerprint = {}
    for table in sorted(insp.get_table_names()):
        if table.startswith("sqlite_"):
            continue
        pk = insp.get_pk_constraint(table).get("constrained_columns") or []
        cols = [c["name"] for c in insp.get_columns(table)]
        order = ", ".join(f'"{c}"' for c in (pk or cols))
        digest = hashlib.sha256()
        n = 0
        result = conn.execution_options(stream_results=True).execute(
            text(f'SELECT {", ".join(chr(34) + c + chr(34) for c in cols)} FROM "{table}" ORDER BY {order}')
        )
        for row in result:
            digest.update(json.dumps([_normalize(v) for v in row], sort_keys=True, default=str).encode())
            n += 1
        out[table] = TableFingerprint(n, digest.hexdigest())
    return out


def fingerprint(db: Database | Engine) -> Fingerprint:
    engine = db.engine if isinstance(db, Database) else db
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        return fingerprint_connection(conn)


def _write_manifest(path: Path, dialect: str, fp: Fingerprint) -> Path:
    manifest = Path(str(path) + MANIFEST_SUFFIX)
    data = {
        "format": "leadflow-backup/1",
        "dialect": dialect,
        "created_at": datetime.now(UTC).isoformat(),
        "tables": {t: {"rows": f.rows, "checksum": f.checksum} for t, f in fp.items()},
    }
    manifest.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return manifest


def read_manifest(path: Path) -> tuple[str, Fingerprint]:
    manifest = Path(str(path) + MANIFEST_SUFFIX)
    if not manifest.exists():
        raise BackupError(f"no manifest {manifest} next to the backup")
    data = json.loads(manifest.read_text(encoding="utf-8"))
    return data["dialect"], {
        t: TableFingerprint(int(v["rows"]), str(v["checksum"])) for t, v in data["tables"].items()
    }


def differences(expected: Fingerprint, actual: Fingerprint) -> list[str]:
    diffs = []
    for table in sorted(set(expected) | set(actual)):
        e, a = expected.get(table), actual.get(table)
        if e is None:
            diffs.append(f"{table}: not in the backup")
        elif a is None:
            diffs.append(f"{table}: missing after restore")
        elif e != a:
            diffs.append(
                f"{table}: {e.rows} rows expected, {a.rows} found "
                f"(checksum {'same' if e.checksum == a.checksum else 'differs'})"
            )
    return diffs


# ------------------------------------------------------------------------------------ SQLite


def _sqlite_path(db: Database) -> str:
    path = db.engine.url.database
    if not path or path == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return path


@dataclass(frozen=True)
class BackupResult:
    path: Path
    manifest: Path
    dialect: str
    tables: Fingerprint
    bytes: int

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.tables.values())


def _sqlite_backup(db: Database, dest: Path) -> Fingerprint:
    tmp = dest.with_name(dest.name + ".partial")
    tmp.unlink(missing_ok=True)
    src = sqlite3.connect(_sqlite_path(db), timeout=30)
    try:
        out = sqlite3.connect(tmp)
        try:
            src.backup(out, pages=4096)
        finally:
            out.close()
    finally:
        src.close()
    # The manifest describes the copy itself: the snapshot the backup API took.
    engine = create_engine(f"sqlite:///{tmp}")
    try:
        with engine.connect() as conn:
            check = conn.execute(text("PRAGMA integrity_check")).scalar()
            if check != "ok":
                raise BackupError(f"the copy failed its integrity check: {check}")
            fp = fingerprint_connection(conn)
    finally:
        engine.dispose()
    os.replace(tmp, dest)  # a crash never leaves a half-written file under the final name
    return fp


def _sqlite_restore(db: Database, src_path: Path) -> None:
    check = sqlite3.connect(f"file:{src_path}?mode=ro", uri=True)
    try:
        if check.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            raise BackupError(f"{src_path} is not a sound SQLite database")
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{src_path} is not a SQLite database: {exc}") from None
    finally:
        check.close()
    db.engine.dispose()  # our pooled connections would keep reading the old pages
    src = sqlite3.connect(f"file:{src_path}?mode=ro", uri=True)
    try:
        dest = sqlite3.connect(_sqlite_path(db), timeout=30)
        try:
            src.backup(dest)
        finally:
            dest.close()
    finally:
        src.close()


# ------------------------------------------------------------------------------------ PostgreSQL


def _pg_args(db: Database) -> tuple[list[str], dict[str, str]]:
    url = make_url(db.url)
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    args = []
    if url.host:
        args += ["-h", url.host]
    if url.port:
        args += ["-p", str(url.port)]
    if url.username:
        args += ["-U", url.username]
    if not url.database:
        raise BackupError("the PostgreSQL URL names no database")
    args += ["-d", url.database]
    return args, env


def _run(cmd: list[str], env: dict[str, str]) -> None:
    tool = cmd[0]
    if shutil.which(tool) is None:
        raise BackupError(f"{tool} not found on PATH (install the PostgreSQL client tools)")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BackupError(f"{tool} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")


def _pg_backup(db: Database, dest: Path) -> Fingerprint:
    args, env = _pg_args(db)
    tmp = dest.with_name(dest.name + ".partial")
    # pg_dump dumps the snapshot our transaction exported, so the manifest and the archive
    # describe the same instant even while the application keeps writing.
    with db.engine.connect() as conn:
        conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
        fp = fingerprint_connection(conn)
        _run(["pg_dump", "-Fc", "--no-owner", f"--snapshot={snapshot}", "-f", str(tmp), *args], env)
    os.replace(tmp, dest)
    return fp


def _pg_restore(db: Database, src: Path) -> None:
    args, env = _pg_args(db)
    _run(["pg_restore", "--list", str(src)], env)  # a damaged archive fails before we drop anything
    db.engine.dispose()
    _run(
        [
            "pg_restore",
            "--clean",
            "--if-exists",
            "--no-owner",
            "--single-transaction",
            "--exit-on-error",
            *args,
            str(src),
        ],
        env,
    )


# ------------------------------------------------------------------------------------ public


def backup(db: Database, dest: Path) -> BackupResult:
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if db.dialect == "sqlite":
        fp = _sqlite_backup(db, dest)
    elif db.dialect == "postgresql":
        fp = _pg_backup(db, dest)
    else:  # pragma: no cover - only two backends are supported
        raise BackupError(f"backups of {db.dialect} are not supported")
    manifest = _write_manifest(dest, db.dialect, fp)
    return BackupResult(dest, manifest, db.dialect, fp, dest.stat().st_size)


def verify(path: Path) -> Fingerprint:
    """Check a backup without restoring it; returns the manifest's fingerprint."""

    path = Path(path)
    if not path.exists():
        raise BackupError(f"{path} does not exist")
    dialect, expected = read_manifest(path)
    if dialect == "sqlite":
        engine = create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
        try:
            with engine.connect() as conn:
                diffs = differences(expected, fingerprint_connection(conn))
        except Exception as exc:
            raise BackupError(f"{path} cannot be read as SQLite: {exc}") from None
        finally:
            engine.dispose()
        if diffs:
            raise BackupError("the backup does not match its manifest: " + "; ".join(diffs))
    else:
        _run(["pg_restore", "--list", str(path)], dict(os.environ))
    return expected


def restore(db: Database, src: Path) -> Fingerprint:
    """Replace the database's contents with the backup and check them against the manifest."""

    src = Path(src)
    if not src.exists():
        raise BackupError(f"{src} does not exist")
    dialect, expected = read_manifest(src)
    if dialect != db.dialect:
        raise BackupError(f"the backup is of a {dialect} database; this one is {db.dialect}")
    if dialect == "sqlite":
        _sqlite_restore(db, src)
    else:
        _pg_restore(db, src)
    actual = fingerprint(db)
    diffs = differences(expected, actual)
    if diffs:
        raise BackupError("the restored database differs from the backup: " + "; ".join(diffs))
    return actual
