"""Serving an ASGI app with uvicorn: what ``runcast serve`` and ``runcast engine`` share.

:func:`run_server` sets up logging, binds the port (before anything slow is opened,
so a port in use is one clear error) and runs a coroutine that opens what the app
needs and calls :func:`serve_app`, which holds connections to :class:`ServerOptions`
(see ``runcast._connection_guard``) until the server is stopped.

This module imports nothing of the gateway, so the engine can use it too.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp

from runcast._connection_guard import ConnectionLimits, guarded_protocol
from runcast._process import freeze_startup_objects
from runcast.errors import ConfigurationError
from runcast.logs import configure_logging, parse_log_format, parse_log_level

GRACEFUL_SHUTDOWN_SECONDS = 10
"""SIGTERM stops the server within this even with WebSockets or long requests open."""


@dataclass(frozen=True)
class ServerOptions:
    """Where a server listens, how it holds connections and how it logs.

    ``Settings.server_options()`` builds one from the settings (and their defaults).

    Args:
        host: the address to listen on.
        port: the port (0: any free one).
        http_parser: uvicorn's HTTP/1.1 protocol, ``h11`` or ``httptools``.
        max_header_bytes: a larger request head is answered 431.
        header_timeout: seconds a connection may take to send a request head.
        idle_timeout: seconds a kept-alive connection may stay quiet between requests.
        max_connections: a connection beyond this many open ones is answered 503.
        access_log: one log line per request.
        log_format: ``text`` or ``json``.
        log_level: the lowest level logged.
        ws_implementation: uvicorn's WebSocket protocol.
        ws_max_size: the largest WebSocket message accepted, in bytes.
        ws_per_message_deflate: offer permessage-deflate to WebSocket clients.
    """

    host: str
    port: int
    http_parser: str
    max_header_bytes: int
    header_timeout: float
    idle_timeout: float
    max_connections: int
    access_log: bool
    log_format: str
    log_level: str
    ws_implementation: str
    ws_max_size: int
    ws_per_message_deflate: bool


def connection_options(options: ServerOptions) -> dict[str, Any]:
    """``uvicorn.Config`` arguments holding connections to ``options``' limits.

    The HTTP protocol refuses oversized heads (431), closes connections slow to send
    one, and refuses connections over the cap (503); see ``runcast._connection_guard``.
    """
    limits = ConnectionLimits(
        max_header_bytes=options.max_header_bytes,
        header_timeout=options.header_timeout,
        max_connections=options.max_connections,
    )
    return {
        "http": guarded_protocol(options.http_parser, limits),
        "ws": options.ws_implementation,
        "h11_max_incomplete_event_size": options.max_header_bytes,
        "timeout_keep_alive": options.idle_timeout,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
    }


def bind_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``, ready for uvicorn to listen on.

    Raises:
        ConfigurationError: the address cannot be resolved or the port is in use.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        reason = "the port is in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise ConfigurationError(f"cannot listen on {host}:{port}: {reason}") from exc
    sock.set_inheritable(True)
    return sock


def server_url(host: str, sock: socket.socket) -> str:
    """``http://host:port`` with ``host`` as configured (IPv6 in brackets) and the bound port."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{sock.getsockname()[1]}"


def run_server(
    options: ServerOptions, serve: Callable[[socket.socket], Coroutine[Any, Any, int]]
) -> int:
    """Set up logging, bind ``options``' port and run ``serve(socket)`` until it returns.

    Returns:
        What ``serve`` returns (the exit code). Ctrl-C stops the server cleanly, then
        raises ``KeyboardInterrupt``.

    Raises:
        ConfigurationError: the address cannot be resolved or the port is in use.
    """
    configure_logging(
        format=parse_log_format(options.log_format),
        level=parse_log_level(options.log_level),
        access_log=options.access_log,
    )
    sock = bind_socket(options.host, options.port)
    try:
        return asyncio.run(serve(sock))
    finally:
        sock.close()


async def serve_app(app: ASGIApp, sock: socket.socket, options: ServerOptions) -> int:
    """Serve ``app`` on ``sock`` with uvicorn, its lifespan on, until the server stops.

    Returns:
        0 after the server stopped, 1 if the app failed to start.
    """
    import uvicorn

    config = uvicorn.Config(
        app,
        lifespan="on",
        log_config=None,  # configure_logging set up uvicorn's loggers
        access_log=options.access_log,
        ws_ping_interval=20.0,
        ws_max_size=options.ws_max_size,
        # Off by default: zlib state per connection is most of a subscriber's memory.
        ws_per_message_deflate=options.ws_per_message_deflate,
        **connection_options(options),
    )
    server = uvicorn.Server(config)
    freeze_startup_objects()
    await server.serve(sockets=[sock])
    return 0 if server.started else 1
