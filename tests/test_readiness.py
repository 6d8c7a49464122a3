"""/readyz: one entry per check, 503 with the reason when a required one fails."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import httpx
from starlette.types import ASGIApp

from runcast.app import create_app
from runcast.engine import Engine, load_workflows
from runcast.readiness import BudgetCheck
from runcast.settings import Settings
from runcast.upstream import RequestBudget
from runcast.upstream.local import LocalUpstream

Serve = Callable[[ASGIApp], AbstractAsyncContextManager[str]]
EngineServer = Callable[..., AbstractAsyncContextManager[str]]


async def test_an_http_upstream_shows_its_budget(engine_server: EngineServer, serve: Serve) -> None:
    """Over an AwaitStep upstream the answer has the upstream and the request budget."""
    async with engine_server() as engine_url:
        settings = Settings(upstream=f"{engine_url}/api/v1", request_budget_per_second=5.0)
        async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as http:
            ready = await http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ok",
        "upstream": "awaitstep",
        "checks": {
            "upstream": {"ok": True, "detail": "awaitstep"},
            "budget": {
                "ok": True,
                "state": "available",
                "paused_for_s": 0.0,
                "rate_per_second": 5.0,
            },
        },
    }


async def test_a_closed_engine_store_makes_the_gateway_unready(
    serve: Serve, workflows_dir: Path, tmp_path: Path
) -> None:
    """Once the engine under the gateway is closed, /readyz is 503 and says why."""
    engine = Engine(load_workflows(workflows_dir).definitions, db_path=tmp_path / "e.db")
    async with engine:
        app = create_app(Settings(), upstream=LocalUpstream(engine))
        async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
            assert (await http.get("/readyz")).status_code == 200
            await engine.aclose()
            ready = await http.get("/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["engine_store"] == {"ok": False, "detail": "the engine is closed"}


async def test_the_budget_check_tells_available_exhausted_and_paused() -> None:
    """The budget entry follows the bucket: tokens left, none left, a 429 pause."""
    budget = RequestBudget(0.001, burst=1.0)
    check = BudgetCheck(budget)
    assert (await check.check())["state"] == "available"
    assert budget.take_now() == 0  # the one token is taken
    assert (await check.check())["state"] == "exhausted"
    budget.pause(30)
    paused = await check.check()
    assert (paused["state"], paused["ok"]) == ("paused", False)
    assert 29 < paused.get("paused_for_s", 0) <= 30
