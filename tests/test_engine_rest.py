"""The engine's REST API (the AwaitStep API) over a real uvicorn socket: every route and error."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import free_port
from polling import poll
from process_support import start_runcast
from runcast.engine import DatabaseUnusable, Engine
from runcast.engine.api_keys import ApiKeys, bearer_token
from runcast.engine.standalone import serve_engine
from runcast.errors import ConfigurationError
from runcast.settings import MIB, Settings
from runcast.wire import awaitstep as aw
from wire_schema import check

EngineServer = Callable[..., AbstractAsyncContextManager[str]]
API = "/api/v1/workflows"
WORKFLOWS_DIR = Path(__file__).parent / "workflows"
Predicate = Callable[[dict[str, Any]], bool]


@pytest.fixture
async def api(engine_server: EngineServer) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the engine's REST API (no API keys) on a real socket."""
    async with engine_server() as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        yield client


async def poll_run(
    api: httpx.AsyncClient, workflow_id: str, instance_id: str, predicate: Predicate
) -> dict[str, Any]:
    """GET the run (shape-checked every time) until ``predicate`` holds; fail after 10 s."""

    async def read() -> dict[str, Any]:
        response = await api.get(f"{API}/{workflow_id}/runs/{instance_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        check(body, aw.Run)
        return body

    return await poll(read, predicate)


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is an AwaitStep error with this status and code; returns the error object."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    check(response.json(), aw.ErrorBody)
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert error["message"]
    assert "Traceback" not in response.text
    return error


async def test_lists_and_gets_workflows(api: httpx.AsyncClient) -> None:
    """GET /workflows lists every definition with its kind, version, input schema and schedule."""
    response = await api.get(API)
    assert response.status_code == 200
    check(response.json(), aw.WorkflowList)
    workflows = {w["id"]: w for w in response.json()["data"]}
    version = workflows["three-steps"].pop("version")
    assert isinstance(version, str)
    assert len(version) == 16
    assert workflows["three-steps"] == {
        "id": "three-steps",
        "name": "Three steps",
        "kind": "workflow",
        "url": None,
        "inputSchema": None,
        "schedule": None,
        "nextScheduledAt": None,
    }
    assert workflows["script"]["kind"] == "script"
    assert workflows["script"]["url"] == "https://example.invalid/hello"
    one = await api.get(f"{API}/approval")
    assert one.json()["name"] == "Approval"


async def test_trigger_then_read_to_completion(api: httpx.AsyncClient) -> None:
    """POST /runs answers 201 with a ULID instance id; GET shows the output and every step."""
    response = await api.post(f"{API}/three-steps/runs", json={"input": {"orderId": "A"}})
    assert response.status_code == 201
    created = response.json()
    check(created, aw.Run)
    instance_id = created["instanceId"]
    assert len(instance_id) == 26  # a ULID
    assert created["status"] in {"queued", "running", "complete"}
    run = await poll_run(api, "three-steps", instance_id, lambda r: r["status"] == "complete")
    assert run["output"] == {"orderId": "A", "steps": [1, 2, 3]}
    assert run["workflowId"] == "three-steps"
    assert run["input"] == {"orderId": "A"}
    assert run["error"] is None
    assert run["createdAt"]
    assert run["startedAt"]
    assert run["endedAt"]
    assert [(s["name"], s["type"], s["status"], s["attempts"]) for s in run["steps"]] == [
        ("first", "step", "complete", 1),
        ("second", "step", "complete", 1),
        ("third", "step", "complete", 1),
    ]
    assert set(run["steps"][0]) >= {"output", "error", "startedAt", "endedAt"}


async def test_trigger_with_instance_id_and_duplicate(api: httpx.AsyncClient) -> None:
    """A caller-given instance id is used; the same id again is 409 ALREADY_EXISTS."""
    first = await api.post(
        f"{API}/three-steps/runs", json={"input": {"orderId": "B"}, "instanceId": "order-b"}
    )
    assert first.status_code == 201
    assert first.json()["instanceId"] == "order-b"
    again = await api.post(f"{API}/three-steps/runs", json={"instanceId": "order-b"})
    assert_error(again, 409, "ALREADY_EXISTS")


async def test_trigger_without_body_uses_null_input(api: httpx.AsyncClient) -> None:
    """An empty POST body triggers a run with null input."""
    response = await api.post(f"{API}/sleepy/runs")
    assert response.status_code == 201
    run = await api.get(f"{API}/sleepy/runs/{response.json()['instanceId']}")
    assert run.json()["input"] is None


async def test_events_deliver_and_finish_the_run(api: httpx.AsyncClient) -> None:
    """POST /events delivers to the waiting run, which completes with the payload in its output."""
    created = await api.post(f"{API}/approval/runs", json={"input": {"orderId": "C"}})
    instance_id = created.json()["instanceId"]
    await poll_run(
        api,
        "approval",
        instance_id,
        lambda r: r["status"] == "paused" and any(s["name"] == "approval" for s in r["steps"]),
    )
    response = await api.post(
        f"{API}/approval/runs/{instance_id}/events",
        json={"eventType": "approve", "payload": {"approved": True, "approvedBy": "ada"}},
    )
    assert response.status_code == 200
    assert response.json()["instanceId"] == instance_id
    run = await poll_run(api, "approval", instance_id, lambda r: r["status"] == "complete")
    assert run["output"] == {"orderId": "C", "approved": True, "by": "ada"}
    late = await api.post(
        f"{API}/approval/runs/{instance_id}/events", json={"eventType": "approve"}
    )
    error = assert_error(late, 409, "RUN_FINISHED")
    assert error["status"] == "complete"


async def test_pause_resume_terminate_restart(api: httpx.AsyncClient) -> None:
    """The control routes pause, resume, terminate and restart a run."""
    created = await api.post(f"{API}/sleepy/runs", json={"input": "x", "instanceId": "nap-1"})
    assert created.status_code == 201
    base = f"{API}/sleepy/runs/nap-1"
    await poll_run(api, "sleepy", "nap-1", lambda r: r["status"] == "paused")
    paused = await api.post(f"{base}/pause")
    assert paused.status_code == 200
    assert paused.json()["status"] == "paused"
    resumed = await api.post(f"{base}/resume")
    assert resumed.status_code == 200
    terminated = await api.delete(base)
    assert terminated.status_code == 200
    run = await poll_run(api, "sleepy", "nap-1", lambda r: r["status"] == "terminated")
    assert run["output"] is None
    assert run["error"] is None
    assert_error(await api.post(f"{base}/pause"), 409, "RUN_FINISHED")
    assert_error(await api.post(f"{base}/resume"), 409, "RUN_FINISHED")
    restarted = await api.post(f"{base}/restart")
    assert restarted.status_code == 200
    run = await poll_run(api, "sleepy", "nap-1", lambda r: r["status"] == "paused")
    assert [s["name"] for s in run["steps"]] == ["start", "nap"]
    await api.delete(base)


async def test_list_runs_filters_and_pages(api: httpx.AsyncClient) -> None:
    """GET /runs pages newest first with nextCursor and filters by repeated or comma statuses."""
    ids = []
    for n in range(5):
        created = await api.post(f"{API}/three-steps/runs", json={"input": {"orderId": str(n)}})
        ids.append(created.json()["instanceId"])
    for instance_id in ids:
        await poll_run(api, "three-steps", instance_id, lambda r: r["status"] == "complete")
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2, "status": "complete"}
        if cursor:
            params["cursor"] = cursor
        page = (await api.get(f"{API}/three-steps/runs", params=params)).json()
        check(page, aw.RunList)
        pages += 1
        assert len(page["data"]) <= 2
        seen += [run["instanceId"] for run in page["data"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    assert pages == 3
    none = await api.get(f"{API}/three-steps/runs", params={"status": "paused,errored"})
    assert none.json() == {"data": [], "nextCursor": None}
    both = await api.get(
        f"{API}/three-steps/runs", params=[("status", "paused"), ("status", "complete")]
    )
    assert len(both.json()["data"]) == 5


@pytest.mark.parametrize(
    "query",
    [
        {"limit": "0"},
        {"limit": "lots"},
        {"limit": "100000"},
        {"status": "sleeping"},
        {"cursor": "garbage"},
    ],
)
async def test_bad_list_parameters_are_400(api: httpx.AsyncClient, query: dict[str, str]) -> None:
    """A bad limit or an unknown status filter is 400 BAD_USER_INPUT."""
    assert_error(await api.get(f"{API}/three-steps/runs", params=query), 400, "BAD_USER_INPUT")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("three-steps/runs", b"{not json"),
        ("three-steps/runs", b"[1, 2]"),
        ("three-steps/runs", b'{"instanceId": 5}'),
        ("approval/runs/any/events", b'{"payload": 1}'),
        ("approval/runs/any/events", b'{"eventType": ""}'),
        ("approval/runs/any/events", b""),
        ("approval/runs/any/events", b'{"eventType": "approve", "payload": NaN}'),
        ("three-steps/runs", b'{"instanceId": "no spaces please"}'),
        ("three-steps/runs", b"\xff\xfe"),
    ],
)
async def test_bad_bodies_are_400(api: httpx.AsyncClient, path: str, body: bytes) -> None:
    """Invalid JSON, a non-object body or wrong field types are 400 BAD_USER_INPUT."""
    response = await api.post(
        f"{API}/{path}", content=body, headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "BAD_USER_INPUT")


async def test_triggering_a_script_names_its_url(api: httpx.AsyncClient) -> None:
    """POST /runs on a script is 400 NOT_TRIGGERABLE, and the message names the URL."""
    error = assert_error(await api.post(f"{API}/script/runs", json={}), 400, "NOT_TRIGGERABLE")
    assert "https://example.invalid/hello" in error["message"]
    assert error["url"] == "https://example.invalid/hello"


async def test_unknown_things_are_404(api: httpx.AsyncClient) -> None:
    """Unknown workflows, runs and routes are 404 with an error body; a wrong method is 405."""
    assert_error(await api.get(f"{API}/nope"), 404, "WORKFLOW_NOT_FOUND")
    assert_error(await api.post(f"{API}/nope/runs", json={}), 404, "WORKFLOW_NOT_FOUND")
    assert_error(await api.get(f"{API}/nope/runs"), 404, "WORKFLOW_NOT_FOUND")
    assert_error(await api.get(f"{API}/three-steps/runs/missing"), 404, "RUN_NOT_FOUND")
    assert_error(await api.delete(f"{API}/three-steps/runs/missing"), 404, "RUN_NOT_FOUND")
    for action in ("pause", "resume", "restart"):
        response = await api.post(f"{API}/three-steps/runs/missing/{action}")
        assert_error(response, 404, "RUN_NOT_FOUND")
    events = await api.post(f"{API}/approval/runs/missing/events", json={"eventType": "approve"})
    assert_error(events, 404, "RUN_NOT_FOUND")
    assert_error(await api.get("/api/v2/whatever"), 404, "NOT_FOUND")
    assert_error(await api.put(f"{API}/three-steps"), 405, "METHOD_NOT_ALLOWED")


async def test_payloads_over_the_limit_are_413(api: httpx.AsyncClient) -> None:
    """A payload over 1 MiB is 413 naming the limit; a body over the cap names both limits."""
    created = await api.post(f"{API}/approval/runs", json={"input": {"orderId": "D"}})
    instance_id = created.json()["instanceId"]
    big = {"eventType": "approve", "payload": "x" * (MIB + 10)}
    error = assert_error(
        await api.post(f"{API}/approval/runs/{instance_id}/events", json=big),
        413,
        "PAYLOAD_TOO_LARGE",
    )
    assert error["limit"] == MIB
    huge = b'{"input": "' + b"y" * (3 * MIB) + b'"}'
    response = await api.post(
        f"{API}/three-steps/runs", content=huge, headers={"content-type": "application/json"}
    )
    message = assert_error(response, 413, "PAYLOAD_TOO_LARGE")["message"]
    assert "(2 MiB)" in message
    assert "at most 1048576 bytes (1 MiB)" in message

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(3):
            yield b"z" * MIB

    streamed = await api.post(f"{API}/three-steps/runs", content=chunks())
    assert "(1 MiB)" in assert_error(streamed, 413, "PAYLOAD_TOO_LARGE")["message"]
    await api.delete(f"{API}/approval/runs/{instance_id}")


async def test_api_keys_are_required_when_configured(engine_server: EngineServer) -> None:
    """With API keys set, a missing or wrong bearer token is 401; a right one passes."""
    async with (
        engine_server(api_keys=("k1", "k2")) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        missing = await client.get(API)
        assert_error(missing, 401, "UNAUTHENTICATED")
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = await client.get(API, headers={"Authorization": "Bearer k3"})
        assert_error(wrong, 401, "UNAUTHENTICATED")
        basic = await client.post(f"{API}/three-steps/runs", headers={"Authorization": "Basic k1"})
        assert_error(basic, 401, "UNAUTHENTICATED")
        right = await client.get(API, headers={"Authorization": "Bearer k2"})
        assert right.status_code == 200


def test_serve_engine_refuses_a_port_in_use(tmp_path: Path) -> None:
    """serve_engine raises a one-line configuration error when the port is taken."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = Settings(workflows_dir=WORKFLOWS_DIR, db_path=tmp_path / "e.db", port=port)
        with pytest.raises(ConfigurationError, match="in use"):
            serve_engine(settings.engine_settings(default_db=tmp_path / "e.db"))


def test_serve_engine_refuses_a_missing_folder(tmp_path: Path) -> None:
    """serve_engine raises a configuration error for a workflows folder that does not exist."""
    settings = Settings(workflows_dir=tmp_path / "missing", db_path=tmp_path / "e.db")
    with pytest.raises(ConfigurationError, match="not a readable folder"):
        serve_engine(settings.engine_settings(default_db=tmp_path / "e.db"))


def test_serve_engine_refuses_an_unusable_database(tmp_path: Path) -> None:
    """serve_engine raises a one-line DatabaseUnusable when the database path is a folder."""
    settings = Settings(workflows_dir=WORKFLOWS_DIR, db_path=tmp_path, port=free_port())
    with pytest.raises(DatabaseUnusable, match="cannot open the database") as raised:
        serve_engine(settings.engine_settings(default_db=tmp_path / "e.db"))
    assert "\n" not in raised.value.message


@pytest.mark.parametrize("command", ["engine", "serve"])
async def test_runcast_exits_2_on_a_corrupt_database(tmp_path: Path, command: str) -> None:
    """`runcast engine` and `runcast serve` on a non-database file print one line, exit 2."""
    db = tmp_path / "runs.db"
    db.write_bytes(b"this is not an SQLite database, it is a text file" * 100)
    process = start_runcast(command, "--port", str(free_port()), "--db", str(db), cwd=tmp_path)
    _, stderr = await asyncio.to_thread(process.communicate, timeout=20)
    assert process.returncode == 2, stderr
    assert stderr.strip().splitlines() == [
        f"runcast: cannot open the database {str(db)!r}: file is not a database"
    ]


async def test_runcast_engine_serves_and_reports_bad_files(tmp_path: Path) -> None:
    """`runcast engine` serves the folder's good workflows, names bad files, stops on SIGINT."""
    folder = tmp_path / "flows"
    folder.mkdir()
    (folder / "good.yaml").write_text(
        "id: good\nnodes:\n  - step: one\n    action:\n      return: input\n"
    )
    (folder / "bad.yaml").write_text("id: bad\nnodes:\n  - teleport: x\n")
    port = free_port()
    db = tmp_path / "deep" / "dir" / "engine.db"
    process = start_runcast(
        "engine",
        "--workflows",
        str(folder),
        "--db",
        str(db),
        "--port",
        str(port),
        "--api-key",
        "secret",
        cwd=tmp_path,
    )
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": "Bearer secret"},
        ) as client:
            async with asyncio.timeout(20):
                while True:
                    assert process.poll() is None, process.communicate()
                    try:
                        response = await client.get(API)
                        break
                    except httpx.ConnectError:
                        await asyncio.sleep(0.05)
            assert [w["id"] for w in response.json()["data"]] == ["good"]
            created = await client.post(f"{API}/good/runs", json={"input": 7})
            assert created.status_code == 201
        assert db.exists()
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = await asyncio.to_thread(process.communicate, timeout=20)
    assert process.returncode == 130  # uvicorn shuts down cleanly, then re-raises SIGINT
    assert "Finished server process" in stderr
    assert "bad.yaml" in stderr
    assert "secret" not in stderr


async def test_runcast_engine_exits_2_on_a_port_in_use(tmp_path: Path) -> None:
    """`runcast engine` on a taken port prints one line and exits with code 2."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = start_runcast(
            "engine", "--port", str(port), "--db", str(tmp_path / "x.db"), cwd=tmp_path
        )
        _, stderr = await asyncio.to_thread(process.communicate, timeout=20)
    assert process.returncode == 2
    assert stderr.strip().splitlines() == [
        f"runcast: cannot listen on 127.0.0.1:{port}: the port is in use"
    ]


async def test_unexpected_errors_do_not_leak(engine: Engine, serve: Any) -> None:
    """An engine failure outside the error tree is a 500 with no detail in the body."""
    from runcast.engine.server import create_engine_app

    app = create_engine_app(engine)
    await engine.aclose()  # a closed engine raises RuntimeError, outside the error tree
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.post(f"{API}/three-steps/runs", json={})
    assert response.status_code == 500
    assert response.json() == {
        "error": {"code": "INTERNAL_SERVER_ERROR", "message": "internal error"}
    }


def test_api_keys_accept_only_their_keys_and_never_show_them() -> None:
    """ApiKeys accepts exactly its keys, hides them in repr, and reads only Bearer headers."""
    keys = ApiKeys(["key-one", "key-two"])
    assert keys.accepts("key-two")
    assert not keys.accepts("key-three")
    assert not keys.accepts("")
    assert "key-one" not in repr(keys)
    assert not ApiKeys()
    assert bearer_token("Bearer  key-one ") == "key-one"
    assert bearer_token("bearer key-one") == "key-one"
    assert bearer_token("Basic a2V5") is None
    assert bearer_token("Bearer ") is None
    assert bearer_token(None) is None
