"""Settings from the environment (``LEADFLOW_*``) and an optional ``.env`` file."""

from __future__ import annotations

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
    # Log lines as JSON objects (for log shippers) or readable console lines.
    log_format: str = "console"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
