"""Apply Alembic migrations programmatically (``leadflow init`` and ``serve`` call this)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the database to the newest schema; a no-op when it is already there."""

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "heads")  # parallel feature branches may add sibling heads
    # An index a killed full rescore dropped (leadflow.scoring.models.TOTAL_INDEX) comes back, and
    # so do fit_dirty triggers a table rebuild dropped (leadflow.scoring.models.ensure_fit_triggers).
    from leadflow.scoring.models import ensure_fit_triggers, ensure_total_index

    with engine.begin() as conn:
        ensure_total_index(conn)
        ensure_fit_triggers(conn)
