"""The Starlette app: ``/graphql`` (HTTP, WebSockets), the dashboard, health probes, metrics.

``create_app`` builds it; its lifespan opens and closes every resource (the
upstream and its HTTP client or embedded engine, the live hub). ``serve`` runs
it with uvicorn for ``runcast serve``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from runcast._connection_guard import ConnectionLimits, guarded_protocol
from runcast._graphql_app import GraphQLTransport
from runcast._process import freeze_startup_objects
from runcast.documents import OperationDocuments, PersistedQueryStore
from runcast.errors import RuncastError, UpstreamError
from runcast.live import LiveHub, budget_for
from runcast.live.cluster import ClusterCheck, ClusterLive
from runcast.logs import configure_logging, parse_log_format, parse_log_level
from runcast.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from runcast.metrics import Metrics
from runcast.readiness import BudgetCheck, EngineStoreCheck, Readiness, UpstreamCheck
from runcast.schema import ExtensionFactory, build_schema
from runcast.schema._telemetry import OperationTelemetry
from runcast.settings import Settings, default_db_path
from runcast.upstream import LimitedUpstream, RunAPI

if TYPE_CHECKING:
    from runcast.engine.observer import EngineObserver
    from runcast.tracing import Tracing
    from runcast.upstream._http import TransportLayer

logger = logging.getLogger("runcast.app")


class ConfigurationError(RuncastError):
    """A setting cannot be used (unknown upstream, unreadable folder, port in use)."""


WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::"})
"""``host`` values that listen on every interface."""

UNGUARDED_PATHS = frozenset({"/healthz", "/readyz"})
"""Paths answered whatever the ``Host`` header: probes address the gateway by IP or pod name."""


def _split_host(header: str) -> str | None:
    """The name or address in a ``Host`` header, lower-case, without port or trailing dot.

    ``None`` when the header is malformed (an unclosed ``[``, a port that is not a number).
    """
    header = header.strip().lower()
    if header.startswith("["):
        end = header.find("]")
        if end < 0:
            return None
        name, rest = header[1:end], header[end + 1 :]
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None
        return name or None
    if header.count(":") > 1:  # a bare IPv6 address
        return header
    name, colon, port = header.partition(":")
    if colon and not port.isdigit():
        return None
    return name.rstrip(".") or None


def _is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostPolicy:
    """Which ``Host`` header values the gateway answers (the guard against DNS rebinding).

    Always allowed: any IP address (a browser sends one only when it connected to that
    address, so it cannot be a rebound name), ``localhost`` and ``*.localhost`` (which
    browsers resolve to loopback themselves) and ``host`` when it is a name. Besides
    those, each entry of ``allowed_hosts``: a name, ``*.example.com`` (any subdomain of
    example.com, not example.com itself) or ``*`` (any host at all).

    Raises:
        ConfigurationError: an entry has a scheme, a port, a path or a misplaced ``*``.
    """

    def __init__(self, allowed_hosts: tuple[str, ...], *, bind_host: str = "") -> None:
        self.allow_any = False
        self.names: set[str] = {"localhost"}
        self.suffixes: list[str] = [".localhost"]
        for entry in allowed_hosts:
            self._add(entry)
        bind = bind_host.strip().strip("[]").lower().rstrip(".")
        if bind not in WILDCARD_BINDS and not _is_ip_address(bind):
            self.names.add(bind)

    def _add(self, entry: str) -> None:
        text = entry.strip().lower()
        if text == "*":
            self.allow_any = True
            return
        name = text[2:] if text.startswith("*.") else text
        name = name.strip("[]").rstrip(".")
        if _is_ip_address(name) and not text.startswith("*."):
            return  # IP addresses are always allowed
        label_chars = set("abcdefghijklmnopqrstuvwxyz0123456789-._")
        if not name or not set(name) <= label_chars or ".." in name or name.startswith("."):
            raise ConfigurationError(
                f"allowed host {entry!r} is not a host name, '*.domain' or '*' "
                "(write it without scheme, port or path)"
            )
        if text.startswith("*."):
            self.suffixes.append("." + name)
        else:
            self.names.add(name)

    def allows(self, host_header: str | None) -> bool:
        """Whether a request whose ``Host`` header is ``host_header`` may be answered."""
        if self.allow_any:
            return True
        if not host_header:
            return False
        name = _split_host(host_header)
        if name is None:
            return False
        if name in self.names or _is_ip_address(name):
            return True
        return any(name.endswith(suffix) for suffix in self.suffixes)


class AllowedHostsMiddleware:
    """Refuse HTTP requests (400, JSON) and WebSocket handshakes whose ``Host`` is not allowed.

    Paths in ``exempt_paths`` (the health probes) are answered whatever the ``Host``.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        policy: HostPolicy,
        exempt_paths: frozenset[str] = UNGUARDED_PATHS,
    ) -> None:
        self.app = app
        self.policy = policy
        self.exempt_paths = exempt_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] not in {"http", "websocket"}
            or self.policy.allow_any
            or scope["path"] in self.exempt_paths
        ):
            await self.app(scope, receive, send)
            return
        host = Headers(scope=scope).get("host")
        if self.policy.allows(host):
            await self.app(scope, receive, send)
            return
        shown = (host or "")[:100]
        response = JSONResponse(
            {
                "errors": [
                    {
                        "message": f"Host {shown!r} is not allowed: add it to "
                        "RUNCAST_ALLOWED_HOSTS to serve it",
                        "extensions": {"code": "HOST_NOT_ALLOWED"},
                    }
                ]
            },
            status_code=400,
        )
        if scope["type"] == "http":
            await response(scope, receive, send)
            return
        # A WebSocket handshake: a 400 answer where the server can send one, else a close
        # before accepting (which the server turns into 403).
        websocket = WebSocket(scope, receive, send)
        if "websocket.http.response" in scope.get("extensions", {}):
            await websocket.send_denial_response(response)
        else:
            await websocket.close(code=1008, reason="Host not allowed")


def allowed_hosts_notice(settings: Settings) -> str | None:
    """What ``runcast serve`` tells a user who listens on every interface without naming hosts."""
    if settings.host.strip().strip("[]") not in WILDCARD_BINDS or settings.allowed_hosts:
        return None
    return (
        "listening on every interface, but only requests addressed to an IP address or "
        "localhost are answered: set RUNCAST_ALLOWED_HOSTS=name,... (or *) to serve "
        "requests by host name"
    )


def check_settings(settings: Settings) -> None:
    """Refuse settings that cannot work, before anything is opened.

    Raises:
        ConfigurationError: unknown upstream scheme, missing Cloudflare account,
            an unreadable workflows folder, or an allowed host that is not a name.
    """
    HostPolicy(settings.allowed_hosts, bind_host=settings.host)
    parse_log_format(settings.log_format)
    parse_log_level(settings.log_level)
    upstream = settings.upstream
    if upstream == "embedded":
        folder = settings.workflows_dir
        if folder is not None and not (folder.is_dir() and os.access(folder, os.R_OK | os.X_OK)):
            raise ConfigurationError(f"workflows folder {str(folder)!r} is not a readable folder")
        return
    parts = urlsplit(upstream)
    if parts.scheme in {"http", "https"}:
        if not parts.hostname:
            raise ConfigurationError(f"upstream URL {upstream!r} has no host")
        return
    if parts.scheme == "cloudflare":
        if not parts.netloc:
            raise ConfigurationError(
                f"upstream {upstream!r} names no account: use cloudflare://ACCOUNT_ID"
            )
        return
    raise ConfigurationError(
        f"unknown upstream {upstream!r}: use 'embedded', an AwaitStep URL "
        "(http:// or https://) or cloudflare://ACCOUNT_ID"
    )


@asynccontextmanager
async def open_upstream(
    settings: Settings, *, metrics: Metrics | None = None, tracing: Tracing | None = None
) -> AsyncIterator[RunAPI]:
    """Open the upstream ``settings`` name, and close it (and its engine or client) on exit.

    Args:
        settings: which upstream, and its timeouts and limits.
        metrics: counts every HTTP attempt to an HTTP upstream, when given.
        tracing: makes spans of upstream HTTP calls (or of the embedded engine's runs).

    Raises:
        ConfigurationError: see :func:`check_settings`.
    """
    check_settings(settings)
    upstream = settings.upstream
    if upstream == "embedded":
        engine_metrics = metrics if settings.metrics else None
        async with _embedded_upstream(settings, metrics=engine_metrics, tracing=tracing) as local:
            yield local
        return
    parts = urlsplit(upstream)
    on_request = metrics.observe_upstream_request if metrics is not None else None
    adapter: RunAPI
    if parts.scheme == "cloudflare":
        from runcast.upstream.cloudflare import CloudflareUpstream

        adapter = CloudflareUpstream(
            parts.netloc,
            base_url=settings.cloudflare_base_url,
            token=settings.cloudflare_token,
            settings=settings,
            on_request=on_request,
            wrap_transport=_traced(tracing, "cloudflare"),
        )
    else:
        from runcast.upstream.awaitstep import AwaitStepUpstream

        adapter = AwaitStepUpstream(
            upstream,
            settings=settings,
            on_request=on_request,
            wrap_transport=_traced(tracing, "awaitstep"),
        )
    try:
        yield adapter
    finally:
        await adapter.aclose()


def _traced(tracing: Tracing | None, peer: str) -> TransportLayer | None:
    """A span per HTTP attempt while tracing (wrapping the adapter's transport); else ``None``."""
    if tracing is None:
        return None
    from runcast.tracing import TracingTransport

    tracer = tracing.tracer("runcast.upstream")
    return lambda inner: TracingTransport(inner, tracer=tracer, peer=peer)


def _engine_observers(metrics: Metrics | None, tracing: Tracing | None) -> list[EngineObserver]:
    observers: list[EngineObserver] = []
    if metrics is not None:
        observers.append(metrics.engine_metrics())
    if tracing is not None:
        from runcast.engine.tracing import EngineTracing

        observers.append(EngineTracing(tracing.tracer("runcast.engine")))
    return observers


@asynccontextmanager
async def _embedded_upstream(
    settings: Settings, *, metrics: Metrics | None, tracing: Tracing | None
) -> AsyncIterator[RunAPI]:
    from runcast.engine import Engine
    from runcast.engine.server import settings_retention
    from runcast.engine.workflow_folder import load_folder, reloading
    from runcast.upstream.local import LocalUpstream

    def warn(line: str) -> None:
        logger.warning("%s", line)

    folder = settings.workflows_dir
    loaded = await asyncio.to_thread(
        load_folder, folder, strict=settings.workflows_strict, warn=warn
    )
    db_path = settings.db_path or default_db_path()
    try:
        await asyncio.to_thread(db_path.parent.mkdir, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot create the folder for the database {str(db_path)!r}: {exc.strerror}"
        ) from exc
    engine = Engine(
        loaded.definitions,
        db_path=db_path,
        max_running=settings.max_running,
        max_event_payload_bytes=settings.max_event_payload_bytes,
        retention=settings_retention(settings),
        retention_interval=settings.retention_interval,
        observers=_engine_observers(metrics, tracing),
    )
    async with engine, reloading(engine, folder, enabled=settings.workflows_reload, warn=warn):
        if metrics is not None:
            metrics.engine_metrics().watch(engine)
        local = LocalUpstream(
            engine,
            api_keys=settings.engine_api_keys,
            on_request=metrics.observe_upstream_request if metrics is not None else None,
        )
        try:
            yield local
        finally:
            await local.aclose()


class _Resources:
    """What the lifespan opened, for the GraphQL transport to use."""

    def __init__(self) -> None:
        self._upstream: RunAPI | None = None
        self.live: LiveHub | None = None

    @property
    def upstream(self) -> RunAPI:
        if self._upstream is None:
            raise UpstreamError("the gateway is not started (its lifespan has not run)")
        return self._upstream

    @upstream.setter
    def upstream(self, value: RunAPI | None) -> None:
        self._upstream = value


def create_app(
    settings: Settings,
    *,
    upstream: RunAPI | None = None,
    metrics: Metrics | None = None,
    tracing: Tracing | None = None,
    persisted_queries: PersistedQueryStore | None = None,
) -> Starlette:
    """Build the gateway app.

    Args:
        settings: limits, guards, allowed origins and the upstream to open.
        upstream: an already open run API to use instead of the one ``settings``
            names; its lifetime stays with the caller.
        metrics: the registry ``/metrics`` serves; a new one when ``None``.
        tracing: where spans go (its lifetime stays with the caller); when ``None`` and
            ``settings.otel`` is set, the app exports over OTLP and closes it in its lifespan.
        persisted_queries: the APQ store (one shared by replicas, say) instead of the
            in-process LRU ``settings`` sizes; its lifetime stays with the caller.

    Returns:
        A Starlette app whose lifespan opens (and closes) the upstream and the live hub.
    """
    host_policy = HostPolicy(settings.allowed_hosts, bind_host=settings.host)
    documents = OperationDocuments.from_settings(settings, store=persisted_queries)
    resources = _Resources()
    metrics = metrics or Metrics()
    owns_tracing = tracing is None and settings.otel
    if owns_tracing:
        from runcast.tracing import Tracing

        tracing = Tracing.from_environment()
    recorder = metrics if settings.metrics else None
    observers: list[ExtensionFactory] = [lambda: OperationTelemetry(recorder=recorder)]
    if tracing is not None:
        observers.append(_operation_tracing(tracing))
    schema = build_schema(settings, observers=observers, documents=documents)
    readiness = Readiness()
    transport = GraphQLTransport(schema, settings=settings, resources=resources)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            if owns_tracing and tracing is not None:
                stack.push_async_callback(tracing.aclose)
            await _load_trusted_documents(documents, settings)
            opened = upstream
            if opened is None:
                opened = await stack.enter_async_context(
                    open_upstream(settings, metrics=metrics, tracing=tracing)
                )
            resources.upstream = opened
            stack.callback(setattr, resources, "upstream", None)
            resources.live = await stack.enter_async_context(
                await _open_live(
                    stack,
                    opened,
                    settings,
                    metrics,
                    readiness,
                    documents=documents if persisted_queries is None else None,
                )
            )
            if isinstance(opened, LimitedUpstream):
                # One budget for every request: polls, operations, retries and resends.
                opened.limit_requests(resources.live.budget)
            stack.callback(setattr, resources, "live", None)
            _add_checks(readiness, opened, resources.live)
            stack.callback(readiness.checks.clear)
            yield

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        body, ready = await readiness.answer(resources.upstream.name)
        return JSONResponse(body, status_code=200 if ready else 503)

    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        # Every method reaches the transport, which answers other methods with a JSON 405.
        Route("/graphql", transport),
        WebSocketRoute("/graphql", transport),
    ]

    async def metrics_endpoint(request: Request) -> Response:
        return Response(metrics.render(), media_type=METRICS_CONTENT_TYPE)

    routes.append(Route("/metrics", metrics_endpoint, methods=["GET"]))
    if settings.dashboard:
        from runcast.dashboard import dashboard_routes

        routes.extend(dashboard_routes())

    # Outermost, so that a CORS preflight from a rebound name is refused too.
    middleware: list[Middleware] = [Middleware(AllowedHostsMiddleware, policy=host_policy)]
    if settings.allowed_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.allowed_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type", "Accept"],
                max_age=600,
            )
        )
    if tracing is not None:
        from runcast.tracing import TracingMiddleware

        middleware.append(Middleware(TracingMiddleware, tracer=tracing.tracer("runcast.gateway")))
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.readiness = readiness
    return app


async def _open_live(
    stack: AsyncExitStack,
    upstream: RunAPI,
    settings: Settings,
    metrics: Metrics,
    readiness: Readiness,
    *,
    documents: OperationDocuments | None = None,
) -> LiveHub:
    """The live hub: of this process alone, or (``redis_url`` set) shared with the cluster.

    In cluster mode, ``documents`` (when given, and APQ is on) keeps its persisted queries
    in the cluster's Redis, shared by every replica.
    """
    if settings.redis_url is None:
        return LiveHub(upstream, settings, metrics=metrics)
    cluster = await stack.enter_async_context(ClusterLive(settings, registry=metrics.registry))
    if documents is not None and documents.store is not None:
        from runcast._persisted_redis import RedisPersistedQueryStore

        documents.store = RedisPersistedQueryStore(
            cluster.link,
            max_entries=settings.persisted_queries_cache_size,
            max_bytes=settings.persisted_queries_cache_bytes,
        )
    name = cluster.budget_name(upstream.name, settings.cloudflare_token)
    hub = LiveHub(
        upstream,
        settings,
        metrics=metrics,
        bus=cluster.bus,
        budget=cluster.budget(name, budget_for(upstream.name, settings)),
        gate=cluster.bus,
    )
    cluster.on_gained = hub.poll_now
    cluster.on_alone = hub.poll_all
    readiness.add(ClusterCheck(cluster))
    return hub


async def _load_trusted_documents(documents: OperationDocuments, settings: Settings) -> None:
    try:
        await documents.load_trusted(settings.trusted_documents)
    except RuncastError as exc:
        raise ConfigurationError(exc.message) from exc


def _operation_tracing(tracing: Tracing) -> ExtensionFactory:
    from runcast.schema._telemetry import OperationTracing

    tracer = tracing.tracer("runcast.graphql")
    return lambda: OperationTracing(tracer=tracer)


def _add_checks(readiness: Readiness, upstream: RunAPI, live: LiveHub) -> None:
    """The ``/readyz`` checks for what the lifespan opened.

    A shared change bus (Redis) adds its check here too, with ``readiness.add``.
    """
    readiness.add(UpstreamCheck(upstream))
    from runcast.upstream.local import LocalUpstream

    if isinstance(upstream, LocalUpstream):
        readiness.add(EngineStoreCheck(upstream.engine))
    if not live.pushes:
        readiness.add(BudgetCheck(live.budget))


def connection_options(settings: Settings) -> dict[str, Any]:
    """``uvicorn.Config`` arguments holding connections to the settings' limits.

    The HTTP protocol refuses oversized heads (431), closes connections slow to send
    one, and refuses connections over the cap (503); see ``runcast._connection_guard``.
    """
    limits = ConnectionLimits(
        max_header_bytes=settings.max_header_bytes,
        header_timeout=settings.header_timeout,
        max_connections=settings.max_connections,
    )
    return {
        "http": guarded_protocol(settings.http_parser, limits),
        "ws": settings.ws_implementation,
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "timeout_keep_alive": settings.idle_timeout,
        # SIGTERM stops the server within this even with WebSockets open.
        "timeout_graceful_shutdown": 10,
    }


def bind_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``, ready for uvicorn to listen on.

    Raises:
        ConfigurationError: the address cannot be resolved or the port is in use.
    """
    from runcast.engine.server import EngineConfigurationError
    from runcast.engine.server import bind_socket as bind

    try:
        return bind(host, port)
    except EngineConfigurationError as exc:
        raise ConfigurationError(exc.message) from exc


def serve(settings: Settings) -> int:
    """Run ``runcast serve``: the gateway on uvicorn until interrupted.

    The upstream (for ``embedded``, the engine and its database) is opened before
    the port starts answering, so a setting that cannot work is reported as one
    ``ConfigurationError`` instead of a failed startup.

    Returns:
        The exit code: 0 after the server stops, 1 if the app failed to start.
        Ctrl-C stops the server cleanly, then raises ``KeyboardInterrupt``.

    Raises:
        ConfigurationError: a setting cannot work (unknown upstream, unreadable
            folder, unusable database path, port in use).
    """
    check_settings(settings)
    if settings.trusted_documents is not None:
        from runcast.trusted_documents import load_trusted_documents

        try:
            load_trusted_documents(settings.trusted_documents)
        except RuncastError as exc:
            raise ConfigurationError(exc.message) from exc
    configure_logging(
        format=parse_log_format(settings.log_format),
        level=parse_log_level(settings.log_level),
        access_log=settings.access_log,
    )
    sock = bind_socket(settings.host, settings.port)
    try:
        return asyncio.run(_serve(settings, sock))
    finally:
        sock.close()


async def _serve(settings: Settings, sock: socket.socket) -> int:
    import uvicorn

    metrics = Metrics()
    tracing = None
    if settings.otel:
        from runcast.tracing import Tracing

        tracing = Tracing.from_environment()
    async with AsyncExitStack() as stack:
        if tracing is not None:
            stack.push_async_callback(tracing.aclose)
        upstream = await stack.enter_async_context(
            open_upstream(settings, metrics=metrics, tracing=tracing)
        )
        config = uvicorn.Config(
            create_app(settings, upstream=upstream, metrics=metrics, tracing=tracing),
            lifespan="on",
            log_config=None,  # configure_logging set up uvicorn's loggers
            access_log=settings.access_log,
            ws_ping_interval=20.0,
            # A GraphQL document over WebSocket is held to the same limit as a POST body.
            ws_max_size=settings.max_body_bytes,
            # Off by default: zlib state per connection is most of a subscriber's memory.
            ws_per_message_deflate=settings.ws_per_message_deflate,
            **connection_options(settings),
        )
        server = uvicorn.Server(config)
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        port = sock.getsockname()[1]
        if settings.upstream == "embedded":
            db = settings.db_path or default_db_path()
            sys.stderr.write(f"runcast: embedded engine, database {db}\n")
        notice = allowed_hosts_notice(settings)
        if notice:
            sys.stderr.write(f"runcast: {notice}\n")
        sys.stdout.write(f"runcast: GraphiQL at http://{host}:{port}/graphql\n")
        if settings.dashboard:
            sys.stdout.write(f"runcast: dashboard at http://{host}:{port}/\n")
        sys.stdout.flush()
        freeze_startup_objects()
        await server.serve(sockets=[sock])
        return 0 if server.started else 1


__all__ = [
    "AllowedHostsMiddleware",
    "ConfigurationError",
    "HostPolicy",
    "allowed_hosts_notice",
    "check_settings",
    "create_app",
    "open_upstream",
    "serve",
]
