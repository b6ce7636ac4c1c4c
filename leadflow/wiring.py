"""The cross-feature reactions every composition root wires (the API app, the CLI): a lead
imported, created or moved from the command line is handed off, scored, watched for buying
signals and given its tasks and sequences exactly as one that arrived through the API."""

from __future__ import annotations

from leadflow.cadences import handlers as cadence_handlers
from leadflow.db.base import Database
from leadflow.pipeline import signals as pipeline_signals
from leadflow.qualification import handoff as qualification_handoff
from leadflow.scoring import service as scoring


def register_reactions(database: Database) -> None:
    """Subscribe every feature's reactions for ``database``. Idempotent."""

    qualification_handoff.register()  # MQL -> sales queue, routing and SLA, in the move's transaction
    pipeline_signals.register(database)  # buying signals mark prospects ready; the rule converts
    scoring.register(database)  # rescore leads when their events arrive or they are created
    cadence_handlers.register(database)  # tasks and sequences from other features' events
