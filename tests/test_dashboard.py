"""The dashboard's routes: view URLs, static files, CSP, guards, off switch, GraphiQL notice."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import httpx
import pytest
from starlette.types import ASGIApp

from runcast.app import create_app
from runcast.dashboard import STATIC_DIR
from runcast.settings import Settings

Serve = Callable[[ASGIApp], AbstractAsyncContextManager[str]]

VIEWS = ("/", "/ui/workflows/approval", "/ui/workflows/approval/runs/order-1")


async def client_for(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client of a gateway built from ``settings`` (lifespan not needed)."""
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        yield http


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a gateway with the dashboard on (the default)."""
    async for http in client_for(Settings(db_path=tmp_path / "runs.db")):
        yield http


def static_files() -> list[Path]:
    """Every file the dashboard ships."""
    return sorted(path for path in STATIC_DIR.rglob("*") if path.is_file())


@pytest.mark.parametrize("path", VIEWS)
async def test_each_view_url_serves_the_page_with_a_strict_csp(
    client: httpx.AsyncClient, path: str
) -> None:
    """Every view has its own URL, answered with the page and a CSP without inline scripts."""
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["x-content-type-options"] == "nosniff"
    assert '<script type="module" src="/ui/static/app.js"></script>' in response.text


async def test_the_page_has_no_inline_script_and_every_asset_is_served(
    client: httpx.AsyncClient,
) -> None:
    """No inline script or style in the page; every shipped file is served with its type."""
    page = (await client.get("/")).text
    assert re.findall(r"<script(?![^>]*\ssrc=)[^>]*>", page) == []
    assert " style=" not in page
    assert "<style" not in page
    for path in static_files():
        url = "/ui/static/" + path.relative_to(STATIC_DIR).as_posix()
        response = await client.get(url)
        assert response.status_code == 200, url
        assert "content-security-policy" in response.headers
        if path.suffix == ".js":
            assert response.headers["content-type"].startswith("text/javascript"), url


def test_the_page_loads_nothing_from_another_origin() -> None:
    """No file of the dashboard refers to another site (no CDN): it works offline."""
    for path in static_files():
        text = re.sub(r'xmlns="[^"]*"', "", path.read_text())  # a namespace name, not a load
        assert re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text) == [], path


def test_every_module_import_resolves() -> None:
    """Each relative ES module import names a shipped file (there is no build step)."""
    for path in static_files():
        if path.suffix != ".js":
            continue
        for target in re.findall(r'^import .* from "(\.[^"]+)";$', path.read_text(), re.M):
            assert (path.parent / target).resolve().is_file(), (path, target)


async def test_host_guard_applies_to_the_dashboard(client: httpx.AsyncClient) -> None:
    """A rebound host name gets 400 for the page and its files, as for /graphql."""
    for path in ("/", "/ui/static/app.js"):
        response = await client.get(path, headers={"host": "evil.example"})
        assert response.status_code == 400
        assert response.json()["errors"][0]["extensions"]["code"] == "HOST_NOT_ALLOWED"


async def test_runcast_dashboard_false_turns_it_off(serve: Serve, tmp_path: Path) -> None:
    """RUNCAST_DASHBOARD=false: no page, no files; GraphiQL's notice does not link to it."""
    settings = Settings.from_env({"RUNCAST_DASHBOARD": "false"})
    assert settings.dashboard is False
    app = create_app(settings.replace(db_path=tmp_path / "runs.db"))
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        for path in (*VIEWS, "/ui/static/app.js"):
            assert (await http.get(path)).status_code == 404, path
        graphiql = await http.get("/graphql", headers={"accept": "text/html"})
        assert "var dashboard = null;" in graphiql.text


async def test_graphiql_carries_a_notice_for_when_its_assets_fail(
    serve: Serve, tmp_path: Path
) -> None:
    """GraphiQL's page checks that its CDN scripts loaded, and links to the dashboard if not."""
    app = create_app(Settings(db_path=tmp_path / "runs.db"))
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        page = (await http.get("/graphql", headers={"accept": "text/html"})).text
    notice = page.index("GraphiQL could not load")
    assert page.index("graphiql.min.js") < notice < page.index("</body>")
    assert 'var dashboard = "/";' in page
