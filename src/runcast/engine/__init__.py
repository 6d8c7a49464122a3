"""The embedded run engine: workflow definitions, a SQLite store, an executor and a REST API.

``Engine`` runs workflows loaded by ``load_workflows`` durably on one SQLite file.
"""

from __future__ import annotations

from runcast.engine.actions import NonRetryableError
from runcast.engine.engine import DatabaseInUse, DatabaseUnusable, Engine
from runcast.engine.loader import (
    LoadProblem,
    LoadResult,
    demo_workflows_dir,
    load_workflows,
    parse_duration,
)

__all__ = [
    "DatabaseInUse",
    "DatabaseUnusable",
    "Engine",
    "LoadProblem",
    "LoadResult",
    "NonRetryableError",
    "demo_workflows_dir",
    "load_workflows",
    "parse_duration",
]
