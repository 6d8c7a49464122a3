"""The Starlette app: lifespan-owned upstream, /healthz, /readyz, /metrics and /graphql."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import httpx
import pytest
from starlette.types import ASGIApp

from conftest import free_port
from runcast._settings_checks import check_settings
from runcast.app import create_app
from runcast.errors import ConfigurationError
from runcast.settings import Settings

Serve = Callable[[ASGIApp], AbstractAsyncContextManager[str]]


def embedded(workflows_dir: Path, tmp_path: Path, **changes: object) -> Settings:
    """Settings for the embedded engine over the test workflows, database in tmp_path."""
    return Settings(workflows_dir=workflows_dir, db_path=tmp_path / "gateway.db").replace(**changes)


async def test_embedded_gateway_serves_graphql_health_and_metrics(
    serve: Serve, workflows_dir: Path, tmp_path: Path
) -> None:
    """With the default embedded upstream the lifespan opens the engine and every route answers."""
    app = create_app(embedded(workflows_dir, tmp_path))
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        ready = await http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {
            "status": "ok",
            "upstream": "embedded",
            "checks": {
                "upstream": {"ok": True, "detail": "embedded"},
                "engine_store": {"ok": True},
            },
        }
        answer = await http.post(
            "/graphql",
            json={"query": 'mutation { triggerRun(workflowId: "three-steps") { workflowId } }'},
        )
        assert answer.json() == {"data": {"triggerRun": {"workflowId": "three-steps"}}}
        metrics = await http.get("/metrics")
        assert metrics.status_code == 200
        assert "runcast_" in metrics.text
    assert (tmp_path / "gateway.db").exists()


async def test_runs_survive_a_restart_of_the_gateway(
    serve: Serve, workflows_dir: Path, tmp_path: Path
) -> None:
    """The lifespan closes the engine cleanly; a new app on the same database finds the run."""
    settings = embedded(workflows_dir, tmp_path)
    query = 'mutation { triggerRun(workflowId: "sleepy", instanceId: "keep-me") { instanceId } }'
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as http:
        assert "errors" not in (await http.post("/graphql", json={"query": query})).json()
    read = '{ run(workflowId: "sleepy", instanceId: "keep-me") { instanceId input } }'
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as http:
        answer = (await http.post("/graphql", json={"query": read})).json()
    assert answer == {"data": {"run": {"instanceId": "keep-me", "input": None}}}


async def test_readyz_is_503_when_the_upstream_is_unreachable(serve: Serve) -> None:
    """/readyz is 503 (and /metrics counts the failed attempt) while /healthz stays 200."""
    settings = Settings(upstream=f"http://127.0.0.1:{free_port()}", upstream_get_retries=0)
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/healthz")).status_code == 200
        ready = await http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["code"] == "UPSTREAM_UNAVAILABLE"
        metrics = (await http.get("/metrics")).text
    assert 'runcast_upstream_requests_total{outcome="connection_error",upstream="awaitstep"}' in (
        metrics
    )


@pytest.mark.parametrize(
    ("upstream", "needle"),
    [
        ("ftp://example.com", "unknown upstream 'ftp://example.com'"),
        ("nonsense", "unknown upstream"),
        ("cloudflare://", "names no account"),
        ("http://", "has no host"),
    ],
)
def test_bad_upstream_settings_are_configuration_errors(upstream: str, needle: str) -> None:
    """An unknown upstream scheme or an incomplete URL is a ConfigurationError."""
    with pytest.raises(ConfigurationError, match=needle):
        check_settings(Settings(upstream=upstream))


def test_unreadable_workflows_folder_is_a_configuration_error(tmp_path: Path) -> None:
    """A workflows folder that does not exist is a ConfigurationError naming it."""
    missing = tmp_path / "missing"
    with pytest.raises(ConfigurationError, match="missing"):
        check_settings(Settings(workflows_dir=missing))


def test_good_upstream_settings_pass(workflows_dir: Path) -> None:
    """The embedded engine, an AwaitStep URL and a Cloudflare account are accepted."""
    for upstream in ("embedded", "https://awaitstep.example/api/v1", "cloudflare://abc123"):
        check_settings(Settings(upstream=upstream, workflows_dir=workflows_dir))
