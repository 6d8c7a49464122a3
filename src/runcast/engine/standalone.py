"""``runcast engine``: the embedded engine alone, serving the AwaitStep and Cloudflare REST APIs.

:func:`open_engine` opens an engine as :class:`EngineSettings` describe it (the
gateway's embedded upstream opens its engine with it too); :func:`serve_engine`
serves it with the serving helper that ``runcast serve`` uses, connection guards
included.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from runcast._server import run_server, serve_app, server_url
from runcast.engine.engine import Engine
from runcast.engine.observer import EngineObserver
from runcast.engine.settings import EngineSettings
from runcast.engine.workflow_folder import Warn, load_folder, reloading
from runcast.errors import ConfigurationError

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from runcast.tracing import Tracing

ENVELOPE_BYTES = 4096
"""Room a REST body needs around an event payload of the largest size."""


@contextlib.asynccontextmanager
async def open_engine(
    settings: EngineSettings, *, warn: Warn, observers: Sequence[EngineObserver] = ()
) -> AsyncIterator[Engine]:
    """Load the workflows, open the database and run the engine until the block ends.

    Problems in workflow files are told to ``warn`` (one line each); while the block
    runs, the folder is reloaded on changes (``workflows_reload``) and on SIGHUP.

    Raises:
        ConfigurationError: the folder is unreadable or the database's folder cannot be made.
        WorkflowFolderError: ``workflows_strict`` and a workflow file has a problem.
        DatabaseUnusable: the database file is corrupt, not a database, or unwritable.
    """
    settings.check()
    folder = settings.workflows_dir
    loaded = await asyncio.to_thread(
        load_folder, folder, strict=settings.workflows_strict, warn=warn
    )
    db_path = settings.db_path
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
        retention=settings.retention,
        retention_interval=settings.retention_interval,
        observers=observers,
    )
    async with engine, reloading(engine, folder, enabled=settings.workflows_reload, warn=warn):
        yield engine


def serve_engine(settings: EngineSettings) -> int:
    """Run ``runcast engine``: the embedded engine alone as an AwaitStep REST server.

    Loads the workflows (``settings.workflows_dir``, or the demo set), reports bad
    files on stderr and skips them, binds the port, opens the SQLite file (before
    the port answers, so an unusable file is one clear error) and serves until
    interrupted. On SIGINT uvicorn shuts down cleanly (runs finish their current
    write, the file is closed) and then re-raises the signal, so the caller sees
    ``KeyboardInterrupt``.

    Returns:
        The exit code: 0 after a shutdown without a signal, 1 if startup failed.

    Raises:
        ConfigurationError: the folder, the database folder or the port is unusable.
        DatabaseUnusable: the database file is corrupt, not a database, or unwritable.
    """
    settings.check()
    return run_server(settings.server, lambda sock: _serve_engine(settings, sock))


def _warn(line: str) -> None:
    sys.stderr.write(f"{line}\n")


async def _serve_engine(settings: EngineSettings, sock: socket.socket) -> int:
    async with contextlib.AsyncExitStack() as stack:
        tracing = await _open_tracing(settings, stack)
        engine = await stack.enter_async_context(
            open_engine(settings, warn=_warn, observers=tracing_observers(tracing))
        )
        app = _engine_app(engine, settings, tracing)
        _announce(engine, settings, server_url(settings.server.host, sock))
        return await serve_app(app, sock, settings.server)


def _engine_app(engine: Engine, settings: EngineSettings, tracing: Tracing | None) -> ASGIApp:
    """Both REST APIs over ``engine`` (the Cloudflare one under ``/client/v4``), traced if on."""
    from runcast.engine.cloudflare_api import cloudflare_mount
    from runcast.engine.server import create_engine_app

    app = create_engine_app(
        engine,
        api_keys=settings.api_keys,
        max_body_bytes=max(
            settings.max_body_bytes, settings.max_event_payload_bytes + ENVELOPE_BYTES
        ),
    )
    app.router.routes.insert(
        0,
        cloudflare_mount(
            engine,
            api_tokens=settings.api_keys,
            max_event_payload_bytes=settings.max_event_payload_bytes,
        ),
    )
    if tracing is None:
        return app
    from runcast.tracing import TracingMiddleware

    return TracingMiddleware(app, tracer=tracing.tracer("runcast.engine.server"))


def _announce(engine: Engine, settings: EngineSettings, url: str) -> None:
    from runcast.wire import awaitstep, cloudflare

    sys.stderr.write(
        f"runcast engine: {len(engine.definitions)} workflows, database {settings.db_path}\n"
        f"runcast engine: serving the AwaitStep API at {url}{awaitstep.API_PREFIX}/workflows\n"
        f"runcast engine: serving the Cloudflare Workflows API at "
        f"{url}{cloudflare.API_PREFIX}/accounts/local/workflows\n"
    )


async def _open_tracing(
    settings: EngineSettings, stack: contextlib.AsyncExitStack
) -> Tracing | None:
    """OTLP export while ``settings.otel``; closed (flushed) by ``stack``."""
    if not settings.otel:
        return None
    from runcast.tracing import Tracing

    tracing = Tracing.from_environment(service_name="runcast-engine")
    stack.push_async_callback(tracing.aclose)
    return tracing


def tracing_observers(tracing: Tracing | None) -> list[EngineObserver]:
    """The observer that makes spans of runs and steps, while ``tracing``; none if not."""
    if tracing is None:
        return []
    from runcast.engine.tracing import EngineTracing

    return [EngineTracing(tracing.tracer("runcast.engine"))]
