"""Settings for the gateway and the embedded engine, from arguments or ``RUNCAST_*`` variables."""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import platformdirs

from runcast.errors import BadUserInput, ConfigurationError
from runcast.logs import LOG_FORMATS, LOG_LEVELS

if TYPE_CHECKING:
    from runcast._server import ServerOptions
    from runcast.engine.definitions import Retention
    from runcast.engine.settings import EngineSettings

MIB = 1024 * 1024
T = TypeVar("T")
ENV_PREFIX = "RUNCAST_"


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
    # --strict: a bad workflow file (or an empty folder) stops the server from starting.
    workflows_strict: bool = False
    # Reload the workflows folder when a file is added, changed or removed.
    workflows_reload: bool = True
    db_path: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    engine_api_keys: tuple[str, ...] = field(default=(), repr=False)
    max_running: int = 1000
    # How long the embedded engine keeps finished runs, by status (durations such as 7d,
    # 12h); a workflow's own ``retention:`` overrides them. Swept every interval seconds.
    retention_complete: str = "7d"
    retention_errored: str = "30d"
    retention_terminated: str = "30d"
    retention_interval: float = 60.0

    # GraphQL guards
    max_body_bytes: int = 2 * MIB
    max_event_payload_bytes: int = MIB
    max_query_fields: int = 1000
    max_query_depth: int = 15
    max_query_tokens: int = 2000
    max_aliases: int = 30
    max_field_comparisons: int = 2000
    operation_timeout: float = 30.0

    # HTTP server connections (runcast serve)
    http_parser: str = "h11"
    max_header_bytes: int = 32 * 1024
    header_timeout: float = 15.0
    idle_timeout: float = 15.0
    max_connections: int = 4096
    introspection: bool = True
    allowed_origins: tuple[str, ...] = ()
    # Host names the gateway answers to besides IP addresses, localhost and ``host``
    # (``*`` = any, ``*.example.com`` = its subdomains); guards against DNS rebinding.
    allowed_hosts: tuple[str, ...] = ()
    # The browser dashboard at / and /ui/ (static files speaking the public GraphQL API).
    dashboard: bool = True

    # persisted queries (Apollo's automatic persisted queries) and trusted documents
    # (only the operations of this manifest run); a cache size of 0 turns APQ off.
    persisted_queries_cache_size: int = 1000
    persisted_queries_cache_bytes: int = 8 * MIB
    trusted_documents: Path | None = None

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
    # uvicorn's WebSocket implementation (its "websockets" one is deprecated); bench/fanout.py
    # --ws compares their memory per idle subscriber.
    ws_implementation: str = "websockets-sansio"

    # cluster mode (several replicas sharing one live layer and one budget through Redis)
    # ``redis_url`` may hold a password, so neither it nor the secret is in ``repr``.
    redis_url: str | None = field(default=None, repr=False)
    cluster_secret: str | None = field(default=None, repr=False)
    cluster_lease_seconds: float = 5.0
    cluster_key_prefix: str = "runcast"

    # observability
    log_format: str = "text"  # text | json (one object per line)
    log_level: str = "info"
    access_log: bool = True
    # per-operation and engine metrics (false: only the live layer's and upstream's series)
    metrics: bool = True
    # OpenTelemetry traces over OTLP/HTTP (OTEL_EXPORTER_OTLP_* configure the exporter)
    otel: bool = False

    # cloudflare
    cloudflare_token: str | None = field(default=None, repr=False)
    cloudflare_base_url: str = "https://api.cloudflare.com/client/v4"

    def check(self) -> Settings:
        """Return ``self`` if every setting is in its range (see ``SETTING_RANGES``).

        Raises:
            BadUserInput: one sentence naming the first setting out of range and its range.
        """
        for f in dataclasses.fields(self):
            allowed = SETTING_RANGES.get(f.name)
            value = getattr(self, f.name)
            if allowed is not None and not allowed.admits(value):
                raise BadUserInput(
                    f"setting {f.name}={value!r} ({env_name(f.name)}) is out of range: "
                    f"it must be {allowed.describe()}"
                )
        for name, choices in SETTING_CHOICES.items():
            if getattr(self, name) not in choices:
                raise BadUserInput(
                    f"setting {name}={getattr(self, name)!r} ({env_name(name)}) is not "
                    f"allowed: it must be one of {', '.join(choices)}"
                )
        if self.poll_max_interval < self.poll_min_interval:
            raise BadUserInput(
                f"setting poll_max_interval={self.poll_max_interval!r} "
                f"({env_name('poll_max_interval')}) is out of range: it must be at least "
                f"poll_min_interval ({self.poll_min_interval!r})"
            )
        return self

    def server_options(self) -> ServerOptions:
        """Where the server listens, how it holds connections and logs (serve and engine)."""
        from runcast._server import ServerOptions

        # A GraphQL document over WebSocket is held to the same limit as a POST body.
        return self._project(ServerOptions, ws_max_size=self.max_body_bytes)

    def engine_settings(self, *, default_db: Path) -> EngineSettings:
        """The embedded engine's part of these settings (``default_db`` unless ``db_path``).

        Raises:
            ConfigurationError: a ``RUNCAST_RETENTION_*`` period is not a duration.
        """
        from runcast.engine.settings import EngineSettings

        return self._project(
            EngineSettings,
            db_path=self.db_path or default_db,
            api_keys=self.engine_api_keys,
            retention=self._retention(),
            server=self.server_options(),
        )

    def _project(self, kind: Callable[..., T], **given: object) -> T:
        """A ``kind`` (a dataclass) with ``given`` and, for its other fields, these settings'."""
        wanted = [f.name for f in dataclasses.fields(kind) if f.name not in given]  # type: ignore[arg-type]
        return kind(**{name: getattr(self, name) for name in wanted}, **given)

    def _retention(self) -> Retention:
        from runcast.engine import parse_duration
        from runcast.engine.definitions import Retention

        periods = {}
        for status in ("complete", "errored", "terminated"):
            try:
                periods[status] = parse_duration(getattr(self, f"retention_{status}"))
            except ValueError as exc:
                raise ConfigurationError(f"{env_name(f'retention_{status}')}: {exc}") from exc
        return Retention(**periods)

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
            raw = env.get(env_name(f.name))
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


def env_name(field_name: str) -> str:
    """The environment variable of a setting: ``port`` -> ``RUNCAST_PORT``."""
    return ENV_PREFIX + field_name.upper()


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """One warning per ``RUNCAST_*`` variable that is no setting, naming the closest one."""
    env = os.environ if environ is None else environ
    known = [f.name.upper() for f in dataclasses.fields(Settings)]
    warnings = []
    for name in sorted(env):
        suffix = name.removeprefix(ENV_PREFIX)
        if suffix == name or suffix in known:
            continue
        closest = difflib.get_close_matches(suffix, known, n=1, cutoff=0.6)
        hint = f"; did you mean {ENV_PREFIX}{closest[0]}?" if closest else ""
        warnings.append(f"{name} is not a runcast setting and is ignored{hint}")
    return warnings


@dataclass(frozen=True)
class SettingRange:
    """The values a numeric setting admits: ``low`` to ``high``, ends included.

    Args:
        low: the smallest value allowed.
        high: the largest value allowed.
        above_low: ``low`` itself is excluded (a time that must be positive).
        optional: ``None`` is allowed too (meaning "the default behaviour").
        unit: what the number counts, for messages (``seconds``).
    """

    low: float
    high: float
    above_low: bool = False
    optional: bool = False
    unit: str = ""

    def admits(self, value: object) -> bool:
        """Whether ``value`` is in the range (and a number: booleans are not)."""
        if value is None:
            return self.optional
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if not math.isfinite(value) or value > self.high:
            return False
        return value > self.low if self.above_low else value >= self.low

    def describe(self) -> str:
        """The range in words, e.g. ``an integer from 1 to 65535``."""
        low, high = _number(self.low), _number(self.high)
        if self.above_low:
            text = f"a number above {low} and at most {high}"
        elif self.low == int(self.low) and self.high == int(self.high):
            text = f"from {low} to {high}"
        else:
            text = f"a number from {low} to {high}"
        unit = f" {self.unit}" if self.unit else ""
        return text + unit + (" (or unset)" if self.optional else "")


def _number(value: float) -> str:
    return f"{int(value):_}" if value == int(value) else f"{value:g}"


def _seconds(high: float) -> SettingRange:
    return SettingRange(0, high, above_low=True, unit="seconds")


SETTING_RANGES: dict[str, SettingRange] = {
    "port": SettingRange(0, 65535),
    "max_running": SettingRange(1, 1_000_000),
    "retention_interval": _seconds(86_400),
    "max_body_bytes": SettingRange(1024, 1024 * MIB, unit="bytes"),
    "max_event_payload_bytes": SettingRange(1, 1024 * MIB, unit="bytes"),
    "max_query_fields": SettingRange(1, 1_000_000),
    "max_query_depth": SettingRange(1, 100),
    "max_query_tokens": SettingRange(1, 1_000_000),
    "max_aliases": SettingRange(0, 100_000),
    "max_field_comparisons": SettingRange(1, 10_000_000),
    "operation_timeout": _seconds(86_400),
    "max_header_bytes": SettingRange(1024, MIB, unit="bytes"),
    "header_timeout": _seconds(3600),
    "idle_timeout": _seconds(3600),
    "max_connections": SettingRange(1, 1_000_000),
    "upstream_connect_timeout": _seconds(600),
    "upstream_read_timeout": _seconds(3600),
    "upstream_get_retries": SettingRange(0, 10),
    "poll_min_interval": _seconds(3600),
    "poll_max_interval": _seconds(86_400),
    "request_budget_per_second": SettingRange(0, 10_000, optional=True),
    "live_list_page_size": SettingRange(1, 100),
    "ws_connection_init_timeout": _seconds(600),
    "ws_max_operations": SettingRange(1, 100_000),
    "ws_keepalive_interval": _seconds(3600),
    "cluster_lease_seconds": _seconds(3600),
    "persisted_queries_cache_size": SettingRange(0, 10_000_000),
    "persisted_queries_cache_bytes": SettingRange(0, 64 * 1024 * MIB, unit="bytes"),
}
"""The range of each numeric setting; :meth:`Settings.check` enforces them at start-up."""

SETTING_CHOICES: dict[str, tuple[str, ...]] = {
    # h11 is the parser whose request heads are bounded by uvicorn too (and it stops reading
    # pipelined requests); httptools is faster (bench/http.py measures both).
    "http_parser": ("h11", "httptools"),
    "ws_implementation": ("websockets-sansio", "wsproto"),
    "log_format": LOG_FORMATS,
    "log_level": LOG_LEVELS,
}
"""The values a setting that names one of a few choices may take."""


def _shown_default(value: object) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(value) or "empty"
    if isinstance(value, int | float):
        return _number(value)
    return str(value)


def _allowed(name: str, type_name: str) -> str:
    if name in SETTING_RANGES:
        return SETTING_RANGES[name].describe()
    if name in SETTING_CHOICES:
        return " or ".join(SETTING_CHOICES[name])
    if type_name == "bool":
        return "true or false"
    if type_name.startswith("tuple"):
        return "comma-separated list"
    if type_name.startswith("Path"):
        return "a path"
    return "text"


def settings_reference() -> str:
    """Every setting as a Markdown table (variable, default, allowed values), for the README."""
    rows = ["| variable | default | allowed |", "|---|---|---|"]
    defaults = Settings()
    for f in dataclasses.fields(Settings):
        shown = _shown_default(getattr(defaults, f.name))
        rows.append(f"| `{env_name(f.name)}` | {shown} | {_allowed(f.name, str(f.type))} |")
    return "\n".join(rows)
