"""Settings for the gateway and the embedded engine, from arguments or ``RUNCAST_*`` variables."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from runcast.errors import BadUserInput

MIB = 1024 * 1024


def default_db_path() -> Path:
    """Where ``runcast serve``'s embedded engine keeps its SQLite file unless told otherwise."""
    return Path(platformdirs.user_data_dir("runcast")) / "runcast.db"


def default_engine_db_path() -> Path:
    """Where ``runcast engine`` keeps its SQLite file unless told otherwise.

    Not ``default_db_path()``: one database has one owner, so ``runcast serve`` and
    ``runcast engine`` started side by side with no ``--db`` each get their own file.
    """
    return Path(platformdirs.user_data_dir("runcast")) / "engine.db"


@dataclass(frozen=True)
class Settings:
    """Everything ``create_app`` and ``runcast serve`` can be told.

    Args:
        upstream: ``embedded`` (the default), an AwaitStep base URL
            (``http(s)://host/...``), or ``cloudflare://ACCOUNT_ID``.
        workflows_dir: folder of workflow definitions for the embedded engine;
            ``None`` loads the demo set shipped with the package.
        db_path: the embedded engine's SQLite file; ``None`` means ``default_db_path()``
            for ``runcast serve`` and ``default_engine_db_path()`` for ``runcast engine``.
    """

    upstream: str = "embedded"
    workflows_dir: Path | None = None
    db_path: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    engine_api_keys: tuple[str, ...] = field(default=(), repr=False)
    max_running: int = 1000

    # GraphQL guards
    max_body_bytes: int = 2 * MIB
    max_event_payload_bytes: int = MIB
    max_query_depth: int = 15
    max_query_tokens: int = 2000
    max_aliases: int = 30
    introspection: bool = True
    allowed_origins: tuple[str, ...] = ()
    # Host names the gateway answers to besides IP addresses, localhost and ``host``
    # (``*`` = any, ``*.example.com`` = its subdomains); guards against DNS rebinding.
    allowed_hosts: tuple[str, ...] = ()
    # The browser dashboard at / and /ui/ (static files speaking the public GraphQL API).
    dashboard: bool = True

    # upstream HTTP
    upstream_connect_timeout: float = 5.0
    upstream_read_timeout: float = 30.0
    upstream_get_retries: int = 3

    # live layer
    poll_min_interval: float = 1.0
    poll_max_interval: float = 30.0
    request_budget_per_second: float | None = None
    live_list_page_size: int = 100
    ws_connection_init_timeout: float = 10.0
    ws_max_operations: int = 100
    ws_keepalive_interval: float = 15.0
    # permessage-deflate costs a zlib compressor and decompressor per WebSocket (about
    # 40 KiB each connection measured); our messages are small JSON, so it is off.
    ws_per_message_deflate: bool = False

    # observability
    log_format: str = "text"  # text | json (one object per line)
    log_level: str = "info"
    access_log: bool = True

    # cloudflare
    cloudflare_token: str | None = field(default=None, repr=False)
    cloudflare_base_url: str = "https://api.cloudflare.com/client/v4"

    def replace(self, **changes: object) -> Settings:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read ``RUNCAST_<FIELD>`` variables (upper-case field names); others keep defaults.

        Raises:
            BadUserInput: a variable's value is not of the field's type.
        """
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f"RUNCAST_{f.name.upper()}")
            if raw is None:
                continue
            values[f.name] = _parse_field(f.name, str(f.type), raw)
        return cls(**values)  # type: ignore[arg-type]


def _parse_field(name: str, type_name: str, raw: str) -> object:
    try:
        if type_name.startswith("tuple"):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        if type_name.startswith("Path"):
            return Path(raw) if raw else None
        if type_name == "bool":
            if raw.lower() in {"1", "true", "yes", "on"}:
                return True
            if raw.lower() in {"0", "false", "no", "off"}:
                return False
            raise ValueError(raw)
        if type_name == "int":
            return int(raw)
        if type_name.startswith("float"):
            return float(raw) if raw else None
        return raw or None if "None" in type_name else raw
    except ValueError as exc:
        raise BadUserInput(f"RUNCAST_{name.upper()}={raw!r} is not a valid {type_name}") from exc
