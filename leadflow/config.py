"""Settings from the environment (``LEADFLOW_*``) and an optional ``.env`` file."""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LEADFLOW_", env_file=".env", extra="ignore")

    # SQLite file by default; postgresql+psycopg://user:pass@host/db in production.
    database_url: str = "sqlite:///var/leadflow.db"
    host: str = "127.0.0.1"
    port: int = 8000
    # Public web-to-lead forms: requests per IP (a `limits` rate string).
    form_rate_limit: str = "20/minute"
    # Where import error reports are kept.
    data_dir: Path = Path("var")
    log_level: str = "info"
    # Signs web UI session cookies and unsubscribe links; when unset, a random key is kept in
    # data_dir/secret_key (see installation_secret).
    secret_key: str | None = None

    # Follow-up cadences (docs/cadences.md). Outgoing email goes over SMTP to this server.
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    smtp_timeout: float = 30.0
    mail_from: str = "Leadflow <sales@leadflow.example.com>"
    # Where unsubscribe links point (the public address of this server).
    public_url: str = "http://127.0.0.1:8000"
    # Sequence touches (emails sent, call tasks opened) per lead per 7 days, across all sequences.
    cadence_weekly_cap: int = 5
    # A step claimed this long ago and never finished is flagged for review, never re-sent.
    cadence_stale_after_seconds: int = 900
    # Working hours for people and leads without their own time zone.
    default_timezone: str = "UTC"
    # The task queue (huey): its own SQLite file for an SQLite database, tables in the same
    # PostgreSQL database otherwise; None derives it from database_url.
    queue_url: str | None = None
    worker_threads: int = 2
    # Log lines as JSON objects (for log shippers) or readable console lines.
    log_format: str = "console"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def installation_secret(settings: Settings | None = None) -> str:
    """LEADFLOW_SECRET_KEY, else a random key kept in data_dir/secret_key (created once, 0600),
    so signatures survive a restart and every process of one installation shares the key."""

    settings = settings or get_settings()
    if settings.secret_key:
        return settings.secret_key
    path = Path(settings.data_dir) / "secret_key"
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its key
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(key)
    return key
