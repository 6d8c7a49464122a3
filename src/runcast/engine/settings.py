"""What the embedded engine is told: by ``runcast engine``, or by the gateway that embeds it."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from runcast._server import ServerOptions
from runcast.engine.definitions import Retention
from runcast.errors import ConfigurationError


@dataclass(frozen=True)
class EngineSettings:
    """The engine's settings; ``Settings.engine_settings()`` maps the gateway's onto these.

    Args:
        db_path: the SQLite file; its folder is created if missing.
        workflows_dir: folder of workflow definitions; ``None`` loads the demo set.
        workflows_strict: a bad workflow file (or an empty folder) stops the start.
        workflows_reload: reload the folder when a file is added, changed or removed.
        api_keys: when not empty, the REST APIs need one of these bearer tokens.
        max_running: runs executing at once; the rest stay queued.
        max_event_payload_bytes: the largest event payload (compact JSON).
        max_body_bytes: the largest REST request body (at least a payload and its envelope).
        retention: how long finished runs are kept, by status (a workflow's own overrides it).
        retention_interval: seconds between sweeps of expired runs.
        otel: export traces over OTLP (``OTEL_EXPORTER_OTLP_*`` configure the exporter).
        server: where ``runcast engine`` listens and how it holds connections.
    """

    db_path: Path
    workflows_dir: Path | None
    workflows_strict: bool
    workflows_reload: bool
    api_keys: tuple[str, ...] = field(repr=False)
    max_running: int
    max_event_payload_bytes: int
    max_body_bytes: int
    retention: Retention
    retention_interval: float
    otel: bool
    server: ServerOptions

    def check(self) -> EngineSettings:
        """Return ``self`` if the workflows folder can be read.

        Raises:
            ConfigurationError: the workflows folder is not a readable folder.
        """
        folder = self.workflows_dir
        if folder is not None and not (folder.is_dir() and os.access(folder, os.R_OK | os.X_OK)):
            raise ConfigurationError(f"workflows folder {str(folder)!r} is not a readable folder")
        return self
