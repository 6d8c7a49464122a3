"""``runcast serve``: the gateway on uvicorn until interrupted (with the serving helper)."""

from __future__ import annotations

import socket
import sys
from contextlib import AsyncExitStack

from runcast._host_guard import allowed_hosts_notice
from runcast._server import run_server, serve_app, server_url
from runcast._settings_checks import check_settings, check_trusted_documents
from runcast.app import create_app
from runcast.metrics import Metrics
from runcast.settings import Settings, default_db_path
from runcast.upstream.factory import open_upstream


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
    check_trusted_documents(settings)
    return run_server(settings.server_options(), lambda sock: _serve(settings, sock))


async def _serve(settings: Settings, sock: socket.socket) -> int:
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
        app = create_app(settings, upstream=upstream, metrics=metrics, tracing=tracing)
        _announce(settings, server_url(settings.host, sock))
        return await serve_app(app, sock, settings.server_options())


def _announce(settings: Settings, url: str) -> None:
    if settings.upstream == "embedded":
        db = settings.db_path or default_db_path()
        sys.stderr.write(f"runcast: embedded engine, database {db}\n")
    notice = allowed_hosts_notice(settings)
    if notice:
        sys.stderr.write(f"runcast: {notice}\n")
    sys.stdout.write(f"runcast: GraphiQL at {url}/graphql\n")
    if settings.dashboard:
        sys.stdout.write(f"runcast: dashboard at {url}/\n")
    sys.stdout.flush()
