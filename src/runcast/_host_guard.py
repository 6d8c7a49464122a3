"""The ``Host`` guard against DNS rebinding: which ``Host`` headers the gateway answers.

Starlette's ``TrustedHostMiddleware`` matches the same name patterns (a name,
``*.domain``, ``*``) but cannot carry the other rules: it has no "any IP address"
rule, no paths answered whatever the ``Host`` (the health probes), answers a
plain-text 400 without a code, and has no fallback for WebSocket servers without
the denial-response extension; the ``Host`` parser it uses is private to Starlette.
"""

from __future__ import annotations

import ipaddress

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from runcast.errors import ConfigurationError
from runcast.settings import Settings

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
        await _refuse(scope, receive, send, host)


async def _refuse(scope: Scope, receive: Receive, send: Send, host: str | None) -> None:
    """Answer 400 ``HOST_NOT_ALLOWED`` (JSON) on HTTP and, where possible, on a WebSocket."""
    shown = (host or "")[:100]
    message = f"Host {shown!r} is not allowed: add it to RUNCAST_ALLOWED_HOSTS to serve it"
    response = JSONResponse(
        {"errors": [{"message": message, "extensions": {"code": "HOST_NOT_ALLOWED"}}]},
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


__all__ = ["AllowedHostsMiddleware", "HostPolicy", "allowed_hosts_notice"]
