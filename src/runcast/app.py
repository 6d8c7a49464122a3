"""The Starlette app: ``/graphql`` (HTTP, WebSockets), the dashboard, health probes, metrics.

``create_app`` builds it; its lifespan opens and closes every resource (the
upstream and its HTTP client or embedded engine, the live hub). ``runcast serve``
runs it with the serving helper (``runcast._serve``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from runcast._graphql_app import GraphQLTransport
from runcast._host_guard import AllowedHostsMiddleware, HostPolicy
from runcast.documents import OperationDocuments, PersistedQueryStore
from runcast.errors import ConfigurationError, RuncastError, UpstreamError
from runcast.live import LiveHub, budget_for
from runcast.live.cluster import ClusterCheck, ClusterLive
from runcast.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from runcast.metrics import Metrics
from runcast.readiness import BudgetCheck, EngineStoreCheck, Readiness, UpstreamCheck
from runcast.schema import ExtensionFactory, build_schema
from runcast.schema._telemetry import OperationTelemetry
from runcast.settings import Settings
from runcast.upstream import LimitedUpstream, RunAPI
from runcast.upstream.factory import open_upstream

if TYPE_CHECKING:
    from runcast.tracing import Tracing


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


@dataclass
class _Gateway:
    """What ``create_app`` built: the lifespan that opens the resources, and the probes."""

    settings: Settings
    metrics: Metrics
    documents: OperationDocuments
    tracing: Tracing | None
    owns_tracing: bool
    upstream: RunAPI | None
    """An upstream the caller opened (and closes), or ``None`` to open the settings' one."""
    shared_documents: bool
    """The caller gave the persisted-query store: cluster mode leaves it alone."""
    resources: _Resources = field(default_factory=_Resources)
    readiness: Readiness = field(default_factory=Readiness)

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        settings, resources, readiness = self.settings, self.resources, self.readiness
        async with AsyncExitStack() as stack:
            if self.owns_tracing and self.tracing is not None:
                stack.push_async_callback(self.tracing.aclose)
            await _load_trusted_documents(self.documents, settings)
            opened = self.upstream
            if opened is None:
                opened = await stack.enter_async_context(
                    open_upstream(settings, metrics=self.metrics, tracing=self.tracing)
                )
            resources.upstream = opened
            stack.callback(setattr, resources, "upstream", None)
            resources.live = await stack.enter_async_context(
                await _open_live(
                    stack,
                    opened,
                    settings,
                    self.metrics,
                    readiness,
                    documents=None if self.shared_documents else self.documents,
                )
            )
            stack.callback(setattr, resources, "live", None)
            _add_checks(readiness, opened, resources.live)
            stack.callback(readiness.checks.clear)
            yield

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        body, ready = await self.readiness.answer(self.resources.upstream.name)
        return JSONResponse(body, status_code=200 if ready else 503)

    async def metrics_endpoint(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    def routes(self) -> list[BaseRoute]:
        """The probes, ``/metrics``, ``/graphql`` (HTTP and WebSocket) and the dashboard."""
        schema = build_schema(self.settings, observers=self._observers(), documents=self.documents)
        transport = GraphQLTransport(schema, settings=self.settings, resources=self.resources)
        routes: list[BaseRoute] = [
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
            # Every method reaches the transport, which answers other methods with a JSON 405.
            Route("/graphql", transport),
            WebSocketRoute("/graphql", transport),
            Route("/metrics", self.metrics_endpoint, methods=["GET"]),
        ]
        if self.settings.dashboard:
            from runcast.dashboard import dashboard_routes

            routes.extend(dashboard_routes())
        return routes

    def _observers(self) -> list[ExtensionFactory]:
        """What watches each operation: telemetry (metrics, logs) and, while tracing, spans."""
        recorder = self.metrics if self.settings.metrics else None
        observers: list[ExtensionFactory] = [lambda: OperationTelemetry(recorder=recorder)]
        if self.tracing is not None:
            observers.append(_operation_tracing(self.tracing))
        return observers


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
    owns_tracing = tracing is None and settings.otel
    if owns_tracing:
        from runcast.tracing import Tracing

        tracing = Tracing.from_environment()
    gateway = _Gateway(
        settings=settings,
        metrics=metrics or Metrics(),
        documents=OperationDocuments.from_settings(settings, store=persisted_queries),
        tracing=tracing,
        owns_tracing=owns_tracing,
        upstream=upstream,
        shared_documents=persisted_queries is not None,
    )
    app = Starlette(
        routes=gateway.routes(),
        middleware=_middleware(settings, host_policy, tracing),
        lifespan=gateway.lifespan,
    )
    app.state.settings = settings
    app.state.metrics = gateway.metrics
    app.state.readiness = gateway.readiness
    return app


def _middleware(
    settings: Settings, host_policy: HostPolicy, tracing: Tracing | None
) -> list[Middleware]:
    """The Host guard (outermost), CORS when origins are allowed, and spans while tracing."""
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
    return middleware


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
    quota = upstream.quota if isinstance(upstream, LimitedUpstream) else None
    hub = LiveHub(
        upstream,
        settings,
        metrics=metrics,
        bus=cluster.bus,
        limits=cluster.limits(upstream.name, budget_for(upstream.name, settings), quota),
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


__all__ = ["create_app"]
