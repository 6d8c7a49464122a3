"""The engine's own settings: what the gateway's settings give it, and what it refuses."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from runcast.errors import ConfigurationError
from runcast.settings import Settings


def test_the_engine_and_its_server_get_the_settings_values(tmp_path: Path) -> None:
    """engine_settings() carries every engine and server setting (renamed where names differ)."""
    settings = Settings(
        workflows_dir=tmp_path,
        workflows_strict=True,
        engine_api_keys=("k1",),
        max_running=7,
        max_event_payload_bytes=4096,
        retention_complete="1h",
        retention_interval=2.5,
        host="::1",
        port=8123,
        http_parser="httptools",
        max_header_bytes=2048,
        max_connections=9,
        max_body_bytes=8192,
    )
    engine = settings.engine_settings(default_db=tmp_path / "default.db")
    assert engine.db_path == tmp_path / "default.db"
    assert (engine.workflows_dir, engine.workflows_strict, engine.api_keys) == (
        tmp_path,
        True,
        ("k1",),
    )
    assert (engine.max_running, engine.max_event_payload_bytes, engine.max_body_bytes) == (
        7,
        4096,
        8192,
    )
    assert engine.retention.complete == timedelta(hours=1)
    assert engine.retention_interval == 2.5
    server = engine.server
    assert (server.host, server.port, server.http_parser) == ("::1", 8123, "httptools")
    assert (server.max_header_bytes, server.max_connections, server.ws_max_size) == (2048, 9, 8192)
    given = settings.replace(db_path=tmp_path / "mine.db")
    assert given.engine_settings(default_db=tmp_path / "x.db").db_path == tmp_path / "mine.db"


def test_a_retention_that_is_not_a_duration_names_its_variable(tmp_path: Path) -> None:
    """RUNCAST_RETENTION_ERRORED=soon is a ConfigurationError naming the variable."""
    with pytest.raises(ConfigurationError, match="RUNCAST_RETENTION_ERRORED"):
        Settings(retention_errored="soon").engine_settings(default_db=tmp_path / "e.db")


def test_an_unreadable_workflows_folder_is_refused(tmp_path: Path) -> None:
    """EngineSettings.check() refuses a workflows folder that is not a folder."""
    engine = Settings(workflows_dir=tmp_path / "missing").engine_settings(default_db=tmp_path)
    with pytest.raises(ConfigurationError, match="not a readable folder"):
        engine.check()
