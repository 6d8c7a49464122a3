"""Automatic persisted queries (Apollo's protocol) over POST, GET and WebSockets."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
from starlette.types import ASGIApp
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from gateway_client import gateway
from node_support import run_script
from runcast.app import create_app
from runcast.documents import MemoryPersistedQueryStore, query_hash
from runcast.engine import Engine
from runcast.settings import Settings
from runcast.upstream.local import LocalUpstream

QUERY = "{ workflows { id } }"
HASH = hashlib.sha256(QUERY.encode()).hexdigest()


def persisted(sha256_hash: str = HASH) -> dict[str, Any]:
    """The ``extensions`` of a persisted-query request for ``sha256_hash``."""
    return {"persistedQuery": {"version": 1, "sha256Hash": sha256_hash}}


async def post(http: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    """POST ``body`` to /graphql as application/json; the decoded answer (must be 200)."""
    response = await http.post("/graphql", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def get(http: httpx.AsyncClient, extensions: dict[str, Any], **params: str) -> httpx.Response:
    """A GET of /graphql with ``extensions`` (JSON) and ``params`` in the query string."""
    return await http.get(
        "/graphql",
        params={"extensions": json.dumps(extensions), **params},
        headers={"accept": "*/*"},
    )


@asynccontextmanager
async def gateway_http(
    engine: Engine, settings: Settings | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on a gateway app over ``engine``, its lifespan running."""
    async with gateway(LocalUpstream(engine), settings) as client:
        yield client.http


async def test_an_unknown_hash_gets_persisted_query_not_found(engine: Engine) -> None:
    """A hash-only POST or GET the gateway never saw gets PERSISTED_QUERY_NOT_FOUND."""
    async with gateway_http(engine) as http:
        posted = await post(http, {"extensions": persisted()})
        got = await get(http, persisted())
    for answer in (posted, got.json()):
        assert answer["errors"] == [
            {
                "message": "PersistedQueryNotFound",
                "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"},
            }
        ]
    assert got.status_code == 200


async def test_a_registered_query_runs_by_hash_alone_over_get_and_post(engine: Engine) -> None:
    """A query sent once with its hash then runs from the hash alone, by POST and by GET."""
    async with gateway_http(engine) as http:
        first = await post(http, {"query": QUERY, "extensions": persisted()})
        by_post = await post(http, {"extensions": persisted()})
        by_get = await get(http, persisted())
    assert first == by_post == by_get.json()
    assert "errors" not in first
    assert {"id": "approval"} in first["data"]["workflows"]


async def test_a_wrong_hash_is_bad_user_input_and_not_stored(engine: Engine) -> None:
    """A query whose hash is not its SHA-256 is refused with BAD_USER_INPUT and not kept."""
    wrong = query_hash("{ __typename }")
    async with gateway_http(engine) as http:
        refused = await post(http, {"query": QUERY, "extensions": persisted(wrong)})
        later = await post(http, {"extensions": persisted(wrong)})
    assert refused["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "SHA-256" in refused["errors"][0]["message"]
    assert later["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"


async def test_malformed_persisted_query_extensions_are_bad_user_input(engine: Engine) -> None:
    """A persistedQuery of another version or without a hash is BAD_USER_INPUT."""
    async with gateway_http(engine) as http:
        for extension in [
            {"persistedQuery": {"version": 2, "sha256Hash": HASH}},
            {"persistedQuery": {"version": 1}},
            {"persistedQuery": "yes"},
        ]:
            answer = await post(http, {"query": QUERY, "extensions": extension})
            assert answer["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", extension


async def test_the_store_is_a_bounded_lru(engine: Engine) -> None:
    """With room for two queries, a third evicts the least recently used one."""
    queries = [f"{{ workflow(id: {json.dumps(w)}) {{ id }} }}" for w in ("a", "b", "c")]
    async with gateway_http(engine, Settings(persisted_queries_cache_size=2)) as http:
        for query in queries[:2]:
            await post(http, {"query": query, "extensions": persisted(query_hash(query))})
        await post(http, {"extensions": persisted(query_hash(queries[0]))})  # a is now recent
        await post(http, {"query": queries[2], "extensions": persisted(query_hash(queries[2]))})
        answers = [await post(http, {"extensions": persisted(query_hash(q))}) for q in queries]
    codes = [(a.get("errors") or [{}])[0].get("extensions", {}).get("code") for a in answers]
    assert codes == [None, "PERSISTED_QUERY_NOT_FOUND", None]


async def test_memory_store_is_bounded_by_characters_too() -> None:
    """The in-process store keeps at most max_chars characters, and never an oversized query."""
    store = MemoryPersistedQueryStore(max_entries=10, max_chars=10)
    await store.put("a", "12345")
    await store.put("b", "123456")
    await store.put("c", "x" * 11)
    assert await store.get("a") is None
    assert await store.get("b") == "123456"
    assert await store.get("c") is None
    assert len(store) == 1


async def test_a_cache_size_of_zero_turns_persisted_queries_off(engine: Engine) -> None:
    """With no store, hash-only requests get PERSISTED_QUERY_NOT_SUPPORTED; full ones still run."""
    async with gateway_http(engine, Settings(persisted_queries_cache_size=0)) as http:
        hash_only = await post(http, {"extensions": persisted()})
        full = await post(http, {"query": QUERY, "extensions": persisted()})
    assert hash_only["errors"][0] == {
        "message": "PersistedQueryNotSupported",
        "extensions": {"code": "PERSISTED_QUERY_NOT_SUPPORTED"},
    }
    assert "errors" not in full


async def test_a_hash_only_get_is_an_operation_not_graphiql(engine: Engine) -> None:
    """A browser-like GET with only extensions runs the operation instead of serving GraphiQL."""
    async with gateway_http(engine) as http:
        await post(http, {"query": QUERY, "extensions": persisted()})
        response = await http.get(
            "/graphql",
            params={"extensions": json.dumps(persisted())},
            headers={"accept": "text/html,*/*"},
        )
    assert response.headers["content-type"].startswith("application/json")
    assert "workflows" in response.json()["data"]


async def test_persisted_queries_over_both_websocket_protocols(
    engine: Engine, serve: Callable[[ASGIApp], AbstractAsyncContextManager[str]]
) -> None:
    """Hash-only operations run over both WebSocket protocols; an unknown hash is refused."""
    app = create_app(Settings(), upstream=LocalUpstream(engine))
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        await post(http, {"query": QUERY, "extensions": persisted()})
        ws_url = url.replace("http://", "ws://") + "/graphql"
        modern = await _over_ws(ws_url, "graphql-transport-ws", "subscribe", persisted())
        legacy = await _over_ws(ws_url, "graphql-ws", "start", persisted())
        unknown = await _over_ws(ws_url, "graphql-transport-ws", "subscribe", persisted("0" * 64))
    assert modern["type"] == "next"
    assert legacy["type"] == "data"
    assert modern["payload"] == legacy["payload"]
    assert {"id": "approval"} in modern["payload"]["data"]["workflows"]
    assert unknown["type"] == "error"
    assert unknown["payload"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"


async def _over_ws(
    url: str, protocol: str, start: str, extensions: dict[str, Any]
) -> dict[str, Any]:
    """The first answer to a hash-only operation sent over ``protocol``."""
    async with connect(url, subprotocols=[Subprotocol(protocol)]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "connection_ack"
        payload = {"extensions": extensions}
        await ws.send(json.dumps({"type": start, "id": "1", "payload": payload}))
        while True:
            message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if message["type"] != "ka":
                return message


async def test_apollo_persisted_queries_link_over_post_and_get(
    engine: Engine, serve: Callable[[ASGIApp], AbstractAsyncContextManager[str]]
) -> None:
    """Apollo's real persisted-queries link falls back once, then sends hashes only."""
    app = create_app(Settings(), upstream=LocalUpstream(engine))
    async with serve(app) as url:
        reports = await run_script("apollo_apq.mjs", f"{url}/graphql", package="@apollo/client")
    by_mode = {r["mode"]: r for r in reports}
    for mode, method in [("post", "POST"), ("get", "GET")]:
        report = by_mode[mode]
        assert {"__typename": "Workflow", "id": "approval"} in report["first"]["workflows"]
        assert report["second"] == report["first"], report
        assert [(r["method"], r["hasQuery"]) for r in report["requests"]] == [
            (method, False),
            ("POST", True),
            (method, False),
        ], report
