"""The browser dashboard: plain HTML, CSS and ES modules served at ``/`` and below ``/ui/``.

The page speaks only the gateway's public GraphQL API (HTTP POST and the
``graphql-transport-ws`` WebSocket at ``/graphql``), like any single-page app
would, so it works for every upstream and shares the live poller. Every view
has its own URL; each serves the same shell page, whose modules pick the view
from the path. Nothing is loaded from another origin, and the
Content-Security-Policy allows no inline script.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STATIC_DIR = Path(__file__).parent / "static"
"""The page's files, shipped inside the package."""

STATIC_PREFIX = "/ui/static"
"""Where the page's files are served."""

VIEW_PATHS = (
    "/",
    "/ui",
    "/ui/",
    "/ui/workflows",
    "/ui/workflows/{workflow_id}",
    "/ui/workflows/{workflow_id}/runs/{instance_id}",
)
"""The URLs of the views; each answers with the shell page (``/`` shows the workflows)."""

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
"""Only the gateway's own files; ``connect-src 'self'`` covers its WebSocket too (CSP 3)."""

SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}
"""Headers on every dashboard response (``no-cache``: revalidate, so upgrades show at once)."""


class _SecuredFiles:
    """Serves the static folder with :data:`SECURITY_HEADERS` on every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.decode("latin-1").lower() not in SECURITY_HEADERS
                ]
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_secured)


def dashboard_routes() -> list[BaseRoute]:
    """The routes of the dashboard: the view URLs and the static files below ``/ui/static``."""
    shell = (STATIC_DIR / "index.html").read_bytes()

    async def view(request: Request) -> Response:
        return Response(shell, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)

    routes: list[BaseRoute] = [Route(path, view, methods=["GET"]) for path in VIEW_PATHS]
    files = StaticFiles(directory=STATIC_DIR)
    routes.append(Mount(STATIC_PREFIX, app=_SecuredFiles(files)))
    return routes


__all__ = [
    "CONTENT_SECURITY_POLICY",
    "STATIC_DIR",
    "VIEW_PATHS",
    "dashboard_routes",
]
