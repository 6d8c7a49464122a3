"""The engine's Cloudflare API on a real socket: every response has its documented shape."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp

from polling import poll
from runcast.engine import Engine
from runcast.engine.cloudflare_api import cloudflare_mount, create_cloudflare_app
from runcast.engine.definitions import WorkflowDefinition
from runcast.engine.server import create_engine_app
from runcast.settings import MIB
from runcast.wire import cloudflare as wire
from wire_schema import check

Serve = Callable[[ASGIApp], AbstractAsyncContextManager[str]]
Predicate = Callable[[dict[str, Any]], bool]
ACCOUNT = "local"
BASE = f"/client/v4/accounts/{ACCOUNT}/workflows"


@pytest.fixture
async def cf(
    engine: Engine, definitions: dict[str, WorkflowDefinition], serve: Serve
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the Cloudflare API (no tokens) served alone on a real socket."""
    app = create_cloudflare_app(engine, account_id=ACCOUNT, definitions=definitions)
    async with (
        serve(app) as url,
        httpx.AsyncClient(base_url=url + BASE, timeout=10) as client,
    ):
        yield client


def ok(response: httpx.Response, result: Any, *, listing: bool = False) -> Any:
    """Assert a 200 success envelope around ``result``; return the result."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    check(body, wire.Listing[result] if listing else wire.Success[result])
    return body["result"]


def failed(response: httpx.Response, status: int) -> str:
    """Assert a failure envelope with HTTP ``status``; return its first message."""
    assert response.status_code == status, response.text
    body = response.json()
    check(body, wire.Failure)
    assert "Traceback" not in response.text
    message: str = body["errors"][0]["message"]
    assert message
    return message


async def instance_until(
    cf: httpx.AsyncClient, workflow: str, instance_id: str, predicate: Predicate
) -> dict[str, Any]:
    """GET the instance (shape-checked every time) until ``predicate`` holds."""
    path = f"/{workflow}/instances/{instance_id}"
    return await poll(lambda: get_ok(cf, path, wire.Instance), predicate)


async def get_ok(cf: httpx.AsyncClient, path: str, result: Any) -> Any:
    """GET ``path`` and return the result of its 200 success envelope around ``result``."""
    return ok(await cf.get(path), result)


def status_is(*statuses: str) -> Predicate:
    """A predicate: the instance's status is one of ``statuses``."""
    return lambda result: result["status"] in statuses


async def test_lists_workflows_without_scripts(cf: httpx.AsyncClient) -> None:
    """The workflow list is page-based, holds every workflow and leaves scripts out."""
    result = ok(await cf.get(""), list[wire.Workflow], listing=True)
    names = {w["name"] for w in result}
    assert "three-steps" in names
    assert "approval" in names
    assert "script" not in names
    info = (await cf.get("")).json()["result_info"]
    assert info["page"] == 1
    assert info["total_count"] == len(names)

    first = await cf.get("", params={"page": 1, "per_page": 2})
    page = ok(first, list[wire.Workflow], listing=True)
    assert len(page) == 2
    assert first.json()["result_info"]["total_pages"] == -(-len(names) // 2)
    found = ok(await cf.get("", params={"search": "three"}), list[wire.Workflow], listing=True)
    assert [w["name"] for w in found] == ["three-steps"]
    failed(await cf.get("", params={"per_page": 101}), 400)


async def test_gets_one_workflow_with_instance_counts(cf: httpx.AsyncClient) -> None:
    """Get-workflow returns one workflow with per-status counts; unknown names and scripts 404."""
    created = ok(
        await cf.post("/three-steps/instances", json={"params": {"orderId": "A"}}), wire.Created
    )
    await instance_until(cf, "three-steps", created["id"], status_is("complete"))
    workflow = ok(await cf.get("/three-steps"), wire.Workflow)
    assert workflow["name"] == "three-steps"
    assert workflow["instances"] == {"complete": 1}
    assert workflow["triggered_on"] is not None
    assert "result_info" not in (await cf.get("/three-steps")).json()
    assert failed(await cf.get("/nope"), 404) == "workflows.api.error.workflow.not_found"
    failed(await cf.get("/script"), 404)


async def test_creates_and_reads_a_complete_instance(cf: httpx.AsyncClient) -> None:
    """An instance created with an id and object params completes with its steps and output."""
    created = ok(
        await cf.post(
            "/three-steps/instances", json={"instance_id": "order-42", "params": {"orderId": "A"}}
        ),
        wire.Created,
    )
    assert created["id"] == "order-42"
    assert created["trigger_source"] == "api"
    result = await instance_until(cf, "three-steps", "order-42", status_is("complete"))
    assert result["success"] is True
    assert result["error"] is None
    assert json.loads(result["output"]) == {"orderId": "A", "steps": [1, 2, 3]}
    assert result["params"] == {"orderId": "A"}
    assert result["trigger"] == {"source": "api"}
    assert result["versionId"] == created["version_id"]
    assert result["step_count"] == 3
    steps = result["steps"]
    assert [s["name"] for s in steps] == ["first", "second", "third"]
    assert all(s["type"] == "step" and s["success"] is True for s in steps)
    assert json.loads(steps[0]["output"]) == {"orderId": "A", "step": 1}
    assert steps[0]["attempts"][0]["success"] is True
    assert result["start"] is not None
    assert result["end"] is not None


async def test_params_as_json_string_and_generated_ids(cf: httpx.AsyncClient) -> None:
    """Params given as a JSON string are decoded; without an id the server names the instance."""
    created = ok(
        await cf.post("/three-steps/instances", json={"params": json.dumps({"orderId": "S"})}),
        wire.Created,
    )
    assert created["id"]
    result = await instance_until(cf, "three-steps", created["id"], status_is("complete"))
    assert result["params"] == {"orderId": "S"}
    assert json.loads(result["output"])["orderId"] == "S"
    bare = ok(await cf.post("/sleepy/instances"), wire.Created)
    assert bare["status"] in ("queued", "running")


async def test_create_refuses_bad_ids_duplicates_and_unknown_workflows(
    cf: httpx.AsyncClient,
) -> None:
    """Create answers 400 for a bad id or body, 409 for a duplicate, 404 for an unknown workflow."""
    failed(await cf.post("/three-steps/instances", json={"instance_id": "-bad"}), 400)
    failed(await cf.post("/three-steps/instances", json={"instance_id": "x" * 101}), 400)
    failed(await cf.post("/three-steps/instances", json={"instance_id": "cf_" + "a" * 64}), 400)
    failed(await cf.post("/three-steps/instances", content=b"{nope"), 400)
    failed(await cf.post("/three-steps/instances", json=[1]), 400)
    ok(await cf.post("/sleepy/instances", json={"instance_id": "dup"}), wire.Created)
    message = failed(await cf.post("/sleepy/instances", json={"instance_id": "dup"}), 409)
    assert message == "workflows.api.error.instance.already_exists"
    failed(await cf.post("/nope/instances", json={}), 404)
    failed(await cf.post("/script/instances", json={}), 404)


async def test_batch_creates_up_to_one_hundred(cf: httpx.AsyncClient) -> None:
    """Batch create takes a bare array of up to 100 creations and answers one result per item."""
    created = ok(
        await cf.post(
            "/three-steps/instances/batch",
            json=[{"instance_id": "b1", "params": {"orderId": 1}}, {"params": {"orderId": 2}}],
        ),
        list[wire.Created],
    )
    assert len(created) == 2
    assert created[0]["id"] == "b1"
    assert (
        "result_info"
        not in (await cf.post("/three-steps/instances/batch", json=[{"params": {}}])).json()
    )
    failed(await cf.post("/three-steps/instances/batch", json=[{}] * 101), 400)
    failed(await cf.post("/three-steps/instances/batch", json={"params": {}}), 400)
    failed(await cf.post("/three-steps/instances/batch", json=[]), 400)
    failed(await cf.post("/three-steps/instances/batch", json=[{"instance_id": "b1"}]), 409)


async def test_lists_instances_by_cursor(cf: httpx.AsyncClient) -> None:
    """Listing pages by cursor, newest first, and leaves the cursor out on the last page."""
    for n in range(5):
        ok(await cf.post("/sleepy/instances", json={"instance_id": f"i{n}"}), wire.Created)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"per_page": 2}
        if cursor:
            params["cursor"] = cursor
        response = await cf.get("/sleepy/instances", params=params)
        items = ok(response, list[wire.ListItem], listing=True)
        info = response.json()["result_info"]
        assert info["total_count"] == 5
        assert info["count"] == len(items)
        assert info["per_page"] == 2
        seen += [item["id"] for item in items]
        pages += 1
        cursor = info.get("cursor")
        if cursor is None:
            break
        assert isinstance(cursor, str)
        assert re.fullmatch(r"[A-Za-z0-9_\-=.]+", cursor)
    assert pages == 3
    assert seen == ["i4", "i3", "i2", "i1", "i0"]
    ascending = ok(
        await cf.get("/sleepy/instances", params={"direction": "asc", "per_page": 100}),
        list[wire.ListItem],
        listing=True,
    )
    assert [item["id"] for item in ascending] == ["i0", "i1", "i2", "i3", "i4"]


async def test_lists_instances_by_status_and_validates_parameters(cf: httpx.AsyncClient) -> None:
    """The status filter keeps one status; bad per_page, status, direction or cursor answer 400."""
    created = ok(
        await cf.post("/three-steps/instances", json={"params": {"orderId": 1}}), wire.Created
    )
    await instance_until(cf, "three-steps", created["id"], status_is("complete"))
    ok(await cf.post("/sleepy/instances", json={"instance_id": "s1"}), wire.Created)
    complete = ok(
        await cf.get("/three-steps/instances", params={"status": "complete"}),
        list[wire.ListItem],
        listing=True,
    )
    assert [item["id"] for item in complete] == [created["id"]]
    assert complete[0]["ended_on"] is not None
    for status in ("errored", "rollingBack", "waitingForPause"):
        none = ok(
            await cf.get("/three-steps/instances", params={"status": status}),
            list[wire.ListItem],
            listing=True,
        )
        assert none == []
    failed(await cf.get("/three-steps/instances", params={"per_page": 0}), 400)
    failed(await cf.get("/three-steps/instances", params={"per_page": 101}), 400)
    failed(await cf.get("/three-steps/instances", params={"status": "unknown"}), 400)
    failed(await cf.get("/three-steps/instances", params={"direction": "up"}), 400)
    failed(await cf.get("/three-steps/instances", params={"cursor": "!!"}), 400)
    failed(await cf.get("/three-steps/instances", params={"date_start": "yesterday"}), 400)
    failed(await cf.get("/nope/instances"), 404)


async def test_simple_and_order_of_get_instance(cf: httpx.AsyncClient) -> None:
    """simple=true leaves out the steps but keeps step_count; order=desc reverses them."""
    created = ok(
        await cf.post("/three-steps/instances", json={"params": {"orderId": 7}}), wire.Created
    )
    await instance_until(cf, "three-steps", created["id"], status_is("complete"))
    path = f"/three-steps/instances/{created['id']}"
    simple = ok(await cf.get(path, params={"simple": "true"}), wire.Instance)
    assert "steps" not in simple
    assert simple["step_count"] == 3
    descending = ok(await cf.get(path, params={"order": "desc"}), wire.Instance)
    assert [s["name"] for s in descending["steps"]] == ["third", "second", "first"]
    failed(await cf.get(path, params={"simple": "yes"}), 400)
    assert failed(await cf.get("/three-steps/instances/nope"), 404) == (
        "workflows.api.error.instance.not_found"
    )


async def test_retried_step_has_attempts_and_config(cf: httpx.AsyncClient) -> None:
    """A step that failed twice then passed shows three attempts and its retry config."""
    created = ok(await cf.post("/flaky/instances"), wire.Created)
    result = await instance_until(cf, "flaky", created["id"], status_is("complete"))
    step = result["steps"][0]
    assert [a["success"] for a in step["attempts"]] == [False, False, True]
    assert step["attempts"][0]["error"]["message"]
    assert step["config"]["retries"] == {"limit": 3, "delay": 100, "backoff": "constant"}
    assert result["output"] == ""


async def test_errored_instance_has_error_object(cf: httpx.AsyncClient) -> None:
    """An instance whose step fails past its retries is errored with error {name, message}."""
    created = ok(await cf.post("/always-fails/instances"), wire.Created)
    result = await instance_until(cf, "always-fails", created["id"], status_is("errored"))
    assert result["success"] is False
    assert result["error"] == {"name": "Error", "message": "always fails"}
    assert result["output"] == ""
    attempts = result["steps"][0]["attempts"]
    assert len(attempts) == 2
    assert attempts[-1]["error"]["message"] == "always fails"


async def test_events_resume_a_waiting_instance(cf: httpx.AsyncClient) -> None:
    """An event posted as the raw body reaches waitForEvent; events to a finished run answer 409."""
    ok(
        await cf.post("/approval/instances", json={"instance_id": "a1", "params": {"orderId": 9}}),
        wire.Created,
    )
    waiting = await instance_until(
        cf,
        "approval",
        "a1",
        lambda r: any(s["type"] == "waitForEvent" for s in r.get("steps", [])),
    )
    wait = next(s for s in waiting["steps"] if s["type"] == "waitForEvent")
    assert wait["event_type"] == "approve"
    assert wait["finished"] is False
    sleep = next(s for s in waiting["steps"] if s["type"] == "sleep")
    assert sleep["finished"] is True
    sent = ok(
        await cf.post(
            "/approval/instances/a1/events/approve", json={"approved": True, "approvedBy": "ada"}
        ),
        wire.EventResult,
    )
    assert sent["instanceId"] == "a1"
    done = await instance_until(cf, "approval", "a1", status_is("complete"))
    assert json.loads(done["output"]) == {"orderId": 9, "approved": True, "by": "ada"}
    wait = next(s for s in done["steps"] if s["type"] == "waitForEvent")
    assert wait["finished"] is True
    assert json.loads(wait["output"])["payload"] == {"approved": True, "approvedBy": "ada"}
    failed(await cf.post("/approval/instances/a1/events/approve", json={}), 409)
    failed(await cf.post("/approval/instances/nope/events/approve", json={}), 404)


async def test_event_body_limits(cf: httpx.AsyncClient) -> None:
    """An event body over 1 MiB answers 413 and one that is not JSON answers 400."""
    ok(await cf.post("/approval/instances", json={"instance_id": "big"}), wire.Created)
    huge = b'"' + b"x" * MIB + b'"'
    failed(await cf.post("/approval/instances/big/events/approve", content=huge), 413)
    failed(await cf.post("/approval/instances/big/events/approve", content=b"{nope"), 400)
    failed(await cf.post(f"/approval/instances/big/events/{'e' * 101}", json={}), 400)


async def test_status_changes_pause_resume_terminate_restart(cf: httpx.AsyncClient) -> None:
    """PATCH status pauses, resumes, terminates and restarts; resume of a terminated run is 409."""
    ok(await cf.post("/sleepy/instances", json={"instance_id": "z", "params": 1}), wire.Created)
    await instance_until(
        cf, "sleepy", "z", lambda r: any(s["type"] == "sleep" for s in r.get("steps", []))
    )
    path = "/sleepy/instances/z/status"
    paused = ok(await cf.patch(path, json={"status": "pause"}), wire.StatusResult)
    assert paused["status"] in ("paused", "waitingForPause")
    ok(await cf.patch(path, json={"status": "resume"}), wire.StatusResult)
    terminated = ok(await cf.patch(path, json={"status": "terminate"}), wire.StatusResult)
    assert terminated["status"] == "terminated"
    result = await instance_until(cf, "sleepy", "z", status_is("terminated"))
    assert result["steps"][-1] == {"type": "termination", "trigger": {"source": "api"}}
    assert result["success"] is False
    assert result["error"] is None
    assert failed(await cf.patch(path, json={"status": "resume"}), 409)
    failed(await cf.patch(path, json={"status": "pause"}), 409)
    failed(await cf.post("/sleepy/instances/z/events/go", json={}), 409)
    restarted = ok(await cf.patch(path, json={"status": "restart"}), wire.StatusResult)
    assert restarted["status"] in ("queued", "running", "paused")
    failed(await cf.patch(path, json={"status": "explode"}), 400)
    failed(await cf.patch(path, json={"status": "restart", "from": {"name": "zz"}}), 400)
    again = ok(
        await cf.patch(path, json={"status": "restart", "from": {"name": "nap"}}),
        wire.StatusResult,
    )
    assert again["status"] in ("queued", "running", "paused")
    failed(await cf.patch("/sleepy/instances/nope/status", json={"status": "pause"}), 404)


async def test_step_output(cf: httpx.AsyncClient) -> None:
    """GET .../step returns a step's untruncated output; a missing step is 404, bad queries 400."""
    created = ok(
        await cf.post("/three-steps/instances", json={"params": {"orderId": "Q"}}), wire.Created
    )
    await instance_until(cf, "three-steps", created["id"], status_is("complete"))
    path = f"/three-steps/instances/{created['id']}/step"
    step = ok(await cf.get(path, params={"name": "first", "type": "step"}), wire.StepResult)
    assert step == {"status": "complete", "error": None, "output": {"orderId": "Q", "step": 1}}
    failed(await cf.get(path, params={"name": "zzz", "type": "step"}), 404)
    failed(await cf.get(path, params={"type": "step"}), 400)
    failed(await cf.get(path, params={"name": "first", "type": "sleep"}), 400)


async def test_failed_attempt_of_a_step(cf: httpx.AsyncClient) -> None:
    """GET .../step with an earlier attempt number reports that attempt as errored."""
    created = ok(await cf.post("/flaky/instances"), wire.Created)
    await instance_until(cf, "flaky", created["id"], status_is("complete"))
    path = f"/flaky/instances/{created['id']}/step"
    first = ok(
        await cf.get(path, params={"name": "charge", "type": "step", "attempt": 1}),
        wire.StepResult,
    )
    assert first["status"] == "errored"
    assert first["error"]["message"]
    failed(await cf.get(path, params={"name": "charge", "type": "step", "attempt": 9}), 400)


async def test_unknown_routes_and_methods_use_the_envelope(cf: httpx.AsyncClient) -> None:
    """Unknown routes answer 404 and wrong methods 405, both in the failure envelope."""
    failed(await cf.get("/three-steps/elsewhere"), 404)
    failed(await cf.delete("/three-steps"), 405)


async def test_bearer_tokens_and_account(engine: Engine, serve: Serve) -> None:
    """With tokens configured a missing or wrong token is 401; another account is 403."""
    app = create_cloudflare_app(engine, account_id="acct", api_tokens=("s3cret",))
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        path = "/client/v4/accounts/acct/workflows"
        failed(await client.get(path), 401)
        failed(await client.get(path, headers={"Authorization": "Bearer nope"}), 401)
        good = {"Authorization": "Bearer s3cret"}
        ok(await client.get(path, headers=good), list[wire.Workflow], listing=True)
        failed(await client.get("/client/v4/accounts/other/workflows", headers=good), 403)
        assert "s3cret" not in (await client.get(path)).text


async def test_served_next_to_the_awaitstep_api(engine: Engine, serve: Serve) -> None:
    """Mounted into the engine's REST app, both APIs answer over the same runs."""
    app = create_engine_app(engine)
    app.router.routes.insert(0, cloudflare_mount(engine))
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        created = ok(
            await client.post(f"{BASE}/three-steps/instances", json={"instance_id": "both"}),
            wire.Created,
        )
        assert created["id"] == "both"
        response = await client.get("/api/v1/workflows/three-steps/runs/both")
        assert response.status_code == 200
        assert response.json()["instanceId"] == "both"
        failed(await client.get("/client/v4/nowhere"), 404)
