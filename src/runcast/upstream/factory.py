"""The upstream factory: the run API that ``Settings.upstream`` names, opened and closed.

``embedded`` is the in-process engine behind :class:`~runcast.upstream.local.LocalUpstream`;
an ``http(s)://`` URL is the AwaitStep REST API; ``cloudflare://ACCOUNT_ID`` is
Cloudflare's Workflows REST API.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from runcast.errors import ConfigurationError
from runcast.settings import Settings, default_db_path
from runcast.upstream._port import RunAPI

if TYPE_CHECKING:
    from runcast.engine.observer import EngineObserver
    from runcast.metrics import Metrics
    from runcast.tracing import Tracing
    from runcast.upstream._http import TransportLayer

logger = logging.getLogger("runcast.app")


def check_upstream(settings: Settings) -> None:
    """Refuse an upstream that cannot work, before anything is opened.

    Raises:
        ConfigurationError: unknown upstream scheme, a URL without host, a Cloudflare
            upstream without account, or (embedded) an unreadable workflows folder.
    """
    upstream = settings.upstream
    if upstream == "embedded":
        settings.engine_settings(default_db=default_db_path()).check()
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
        ConfigurationError: see :func:`check_upstream`.
    """
    check_upstream(settings)
    if settings.upstream == "embedded":
        engine_metrics = metrics if settings.metrics else None
        async with _embedded_upstream(settings, metrics=engine_metrics, tracing=tracing) as local:
            yield local
        return
    adapter = _http_upstream(settings, metrics=metrics, tracing=tracing)
    try:
        yield adapter
    finally:
        await adapter.aclose()


def _http_upstream(
    settings: Settings, *, metrics: Metrics | None, tracing: Tracing | None
) -> RunAPI:
    """The AwaitStep or Cloudflare adapter ``settings.upstream`` names (its client not opened)."""
    parts = urlsplit(settings.upstream)
    on_request = metrics.observe_upstream_request if metrics is not None else None
    if parts.scheme == "cloudflare":
        from runcast.upstream.cloudflare import CloudflareUpstream

        return CloudflareUpstream(
            parts.netloc,
            base_url=settings.cloudflare_base_url,
            token=settings.cloudflare_token,
            settings=settings,
            on_request=on_request,
            wrap_transport=_traced(tracing, "cloudflare"),
        )
    from runcast.upstream.awaitstep import AwaitStepUpstream

    return AwaitStepUpstream(
        settings.upstream,
        settings=settings,
        on_request=on_request,
        wrap_transport=_traced(tracing, "awaitstep"),
    )


def _traced(tracing: Tracing | None, peer: str) -> TransportLayer | None:
    """A span per HTTP attempt while tracing (wrapping the adapter's transport); else ``None``."""
    if tracing is None:
        return None
    from runcast.tracing import TracingTransport

    tracer = tracing.tracer("runcast.upstream")
    return lambda inner: TracingTransport(inner, tracer=tracer, peer=peer)


def _engine_observers(metrics: Metrics | None, tracing: Tracing | None) -> list[EngineObserver]:
    from runcast.engine.standalone import tracing_observers

    observers: list[EngineObserver] = []
    if metrics is not None:
        observers.append(metrics.engine_metrics())
    return observers + tracing_observers(tracing)


@asynccontextmanager
async def _embedded_upstream(
    settings: Settings, *, metrics: Metrics | None, tracing: Tracing | None
) -> AsyncIterator[RunAPI]:
    from runcast.engine.standalone import open_engine
    from runcast.upstream.local import LocalUpstream

    def warn(line: str) -> None:
        logger.warning("%s", line)

    engine_settings = settings.engine_settings(default_db=default_db_path())
    observers = _engine_observers(metrics, tracing)
    async with open_engine(engine_settings, warn=warn, observers=observers) as engine:
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
