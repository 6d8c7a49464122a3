"""http steps against a real local HTTP server: templates, secrets, results, retry_on, timeout."""

from __future__ import annotations

import asyncio
import logging
import textwrap
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from engine_support import run_until, wait_for_status
from runcast.engine import Engine, load_workflows
from runcast.models import JSON, Run, RunStatus

Serve = Callable[[ASGIApp], AbstractAsyncContextManager[str]]
TOKEN = "tok-3f9a1c-SECRET-value"


def service(hits: Counter[str]) -> Starlette:
    """A small outside service: echoes requests, answers chosen statuses, streams slowly."""

    async def echo(request: Request) -> Response:
        hits["echo"] += 1
        hits[f"received {request.headers.get('authorization')}"] += 1
        return JSONResponse(
            {
                "path": request.path_params["order"],
                "query": dict(request.query_params),
                "auth": request.headers.get("authorization"),
                "trace": request.headers.get("x-trace"),
                "body": await request.json(),
            },
            headers={"x-echo-auth": request.headers.get("authorization", "")},
        )

    async def status(request: Request) -> Response:
        code = int(request.path_params["code"])
        hits[f"status-{code}"] += 1
        return JSONResponse({"error": "as asked"}, status_code=code)

    async def slow(request: Request) -> Response:
        async def drip() -> AsyncIterator[bytes]:
            for _ in range(50):
                yield b"."
                await asyncio.sleep(0.1)

        return StreamingResponse(drip(), media_type="text/plain")

    return Starlette(
        routes=[
            Route("/orders/{order}", echo, methods=["POST"]),
            Route("/status/{code:int}", status),
            Route("/slow", slow),
        ]
    )


def load(tmp_path: Path, text: str) -> Engine:
    """An engine on the one workflow written as YAML ``text`` (which must load cleanly)."""
    folder = tmp_path / "workflows"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "flow.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    result = load_workflows(folder)
    assert result.problems == []
    return Engine(result.definitions, db_path=tmp_path / "runs.db")


async def run_once(
    tmp_path: Path, text: str, status: RunStatus, *, input: JSON = None, within: float = 10.0
) -> Run:
    """Run the one workflow written as YAML ``text`` once; return the run once in ``status``."""
    async with load(tmp_path, text) as engine:
        (workflow_id,) = engine.definitions
        return await run_until(engine, workflow_id, status, input=input, within=within)


async def test_expressions_fill_url_headers_query_and_json(serve: Serve, tmp_path: Path) -> None:
    """url, header and query templates and json expressions read the input and earlier steps."""
    hits: Counter[str] = Counter()
    async with serve(service(hits)) as url:
        run = await run_once(
            tmp_path,
            f"""
            id: order
            nodes:
              - step: fetch-price
                action:
                  return: {{amount: input.amount, currency: "`EUR`"}}
              - step: submit
                action:
                  http:
                    method: POST
                    url: "{url}/orders/${{input.orderId}}"
                    headers: {{X-Trace: "run-${{input.orderId}}"}}
                    query: {{currency: '${{"fetch-price".currency}}', rush: true}}
                    json: {{orderId: input.orderId, total: '"fetch-price".amount', note: "`hi`"}}
            """,
            RunStatus.COMPLETE,
            input={"orderId": 42, "amount": 9.5},
        )
    assert run.output == {
        "path": "42",
        "query": {"currency": "EUR", "rush": "true"},
        "auth": None,
        "trace": "run-42",
        "body": {"orderId": 42, "total": 9.5, "note": "hi"},
    }


async def test_result_full_gives_status_headers_and_body(serve: Serve, tmp_path: Path) -> None:
    """`result: full` makes the step's result {status, headers, body}."""
    async with serve(service(Counter())) as url:
        run = await run_once(
            tmp_path,
            f"""
            id: full
            nodes:
              - step: call
                action:
                  http: {{method: POST, url: "{url}/orders/7", json: "`{{}}`", result: full}}
            """,
            RunStatus.COMPLETE,
        )
    assert run.output["status"] == 200
    assert run.output["headers"]["content-type"] == "application/json"
    assert run.output["body"]["path"] == "7"


async def test_secrets_are_sent_but_never_stored_shown_or_logged(
    serve: Serve, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A secret reaches the service, but not the database, a step output, an error or a log line."""
    monkeypatch.setenv("PAYMENTS_TOKEN", TOKEN)
    caplog.set_level(logging.DEBUG)
    hits: Counter[str] = Counter()
    async with serve(service(hits)) as url:
        run = await run_once(
            tmp_path,
            f"""
            id: pay
            secrets: {{API_TOKEN: env.PAYMENTS_TOKEN}}
            nodes:
              - step: charge
                action:
                  http:
                    method: POST
                    url: "{url}/orders/1?key=${{secrets.API_TOKEN}}"
                    headers: {{Authorization: "Bearer ${{secrets.API_TOKEN}}"}}
                    json: {{token: secrets.API_TOKEN}}
                    result: full
              - step: refused
                action:
                  http: {{url: "{url}/status/401?key=${{secrets.API_TOKEN}}"}}
            """,
            RunStatus.ERRORED,
        )
    assert hits["echo"] == 1
    assert hits["status-401"] == 1
    assert hits[f"received Bearer {TOKEN}"] == 1
    charge = run.steps[0]
    assert charge.output["body"]["auth"] == "Bearer ***"  # the service did get the token ...
    assert charge.output["body"]["query"] == {"key": "***"}
    assert charge.output["headers"]["x-echo-auth"] == "Bearer ***"
    assert "401" in str(run.error)
    shown = repr(run)  # ... but no output, error or step holds it
    assert TOKEN not in shown
    stored = await asyncio.to_thread(lambda: [p.read_bytes() for p in tmp_path.glob("runs.db*")])
    assert len(stored) >= 1
    assert all(TOKEN.encode() not in data for data in stored)
    assert all(TOKEN not in record.getMessage() for record in caplog.records)


RETRIED = """
id: calls
nodes:
  - step: call
    action:
      http: {url: "URL/status/${input.code}"RETRY_ON}
    retries: {limit: 2, delay: 10ms}
"""


async def test_retry_on_decides_which_failures_are_retried(serve: Serve, tmp_path: Path) -> None:
    """By default 5xx and 429 are retried and other 4xx end the run at once; retry_on changes it."""
    hits: Counter[str] = Counter()
    async with serve(service(hits)) as url:
        engine = load(tmp_path / "default", RETRIED.replace("URL", url).replace("RETRY_ON", ""))
        async with engine:
            for code in (404, 503, 429):
                await engine.trigger("calls", instance_id=f"c{code}", input={"code": code})
                run = await wait_for_status(engine, "calls", f"c{code}", RunStatus.ERRORED)
                assert run.steps[0].attempts == (1 if code == 404 else 3)
        only_404 = RETRIED.replace("URL", url).replace("RETRY_ON", ", retry_on: [404]")
        async with load(tmp_path / "only-404", only_404) as engine:
            for code in (404, 500):
                await engine.trigger("calls", instance_id=f"d{code}", input={"code": code})
                run = await wait_for_status(engine, "calls", f"d{code}", RunStatus.ERRORED)
                assert run.steps[0].attempts == (3 if code == 404 else 1)
    assert hits == Counter({"status-404": 4, "status-503": 3, "status-429": 3, "status-500": 1})


async def test_the_step_timeout_covers_the_whole_request(serve: Serve, tmp_path: Path) -> None:
    """A response that trickles in slower than the step's timeout fails at the timeout."""
    async with serve(service(Counter())) as url:
        run = await run_once(
            tmp_path,
            f"""
            id: slow
            nodes:
              - step: call
                action: {{http: {{url: "{url}/slow"}}}}
                timeout: 500ms
            """,
            RunStatus.ERRORED,
            within=4,
        )
    assert run.error == "step 'call' timed out after 500ms"


def cookie_service() -> Starlette:
    """A service that sets a cookie on every answer and says which connection and cookie it saw."""

    async def visit(request: Request) -> Response:
        assert request.client is not None
        seen = {"port": request.client.port, "cookie": request.headers.get("cookie")}
        response = JSONResponse(seen)
        response.set_cookie("session", f"for-{request.path_params['run']}", path="/")
        return response

    return Starlette(routes=[Route("/visit/{run}", visit)])


async def test_http_steps_share_one_pool_and_no_cookies(serve: Serve, tmp_path: Path) -> None:
    """The engine's http steps reuse its pooled connections; a cookie set for one reaches none."""
    async with serve(cookie_service()) as url:
        engine = load(
            tmp_path,
            f"""
            id: visit
            nodes:
              - step: first
                action: {{http: {{method: GET, url: "{url}/visit/${{input.run}}"}}}}
              - step: second
                action: {{http: {{method: GET, url: "{url}/visit/${{input.run}}"}}}}
            """,
        )
        visits = []
        async with engine:
            for run in ("a", "b"):
                await engine.trigger("visit", instance_id=run, input={"run": run})
                await wait_for_status(engine, "visit", run, RunStatus.COMPLETE)
                steps = (await engine.get_run("visit", run)).steps or []
                visits += [step.output for step in steps]
    assert [visit["cookie"] for visit in visits] == [None] * 4
    assert len({visit["port"] for visit in visits}) == 1
