"""Global object identification: Run.id, Workflow.id, node(id:) and nodes(ids:)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import httpx
from starlette.types import ASGIApp

from gateway_client import CountingUpstream, GraphQLClient, gateway
from node_support import node_script
from runcast.app import create_app
from runcast.engine import Engine
from runcast.settings import Settings
from runcast.upstream.local import LocalUpstream

NODE_QUERY = """
query($id: ID!) {
  node(id: $id) {
    __typename id
    ... on Run { instanceId workflowId status }
    ... on Workflow { name }
  }
}
"""
NODES_QUERY = """
query($ids: [ID!]!) {
  nodes(ids: $ids) { __typename id ... on Run { instanceId } ... on Workflow { name } }
}
"""


async def test_run_id_is_opaque_stable_and_never_a_workflow_id(engine: Engine) -> None:
    """A run's id is the same from a mutation, a query, a list and node(), and not its names."""
    async with gateway(LocalUpstream(engine)) as client:
        triggered = await client.data(
            'mutation { triggerRun(workflowId: "approval", instanceId: "r1",'
            ' input: {orderId: "A"}) { id } }'
        )
        run_id = triggered["triggerRun"]["id"]
        data = await client.data(
            '{ run(workflowId: "approval", instanceId: "r1") { id }'
            ' workflow(id: "approval") { id runs { edges { node { id } } } } }'
        )
        node = await client.data(NODE_QUERY, {"id": run_id})
    assert data["run"]["id"] == run_id
    assert data["workflow"]["runs"]["edges"][0]["node"]["id"] == run_id
    assert data["workflow"]["id"] == "approval"
    assert "approval" not in run_id
    assert "r1" not in run_id
    assert node["node"] == {
        "__typename": "Run",
        "id": run_id,
        "instanceId": "r1",
        "workflowId": "approval",
        "status": node["node"]["status"],
    }


async def test_node_resolves_a_workflow_by_its_own_id(engine: Engine) -> None:
    """node(id:) with a workflow's id returns that Workflow, id unchanged."""
    async with gateway(LocalUpstream(engine)) as client:
        data = await client.data(NODE_QUERY, {"id": "three-steps"})
    assert data["node"] == {"__typename": "Workflow", "id": "three-steps", "name": "Three steps"}


async def test_node_is_null_for_unknown_workflows_and_runs(engine: Engine) -> None:
    """A well-formed id of nothing gives null, for both kinds."""
    async with gateway(LocalUpstream(engine)) as client:
        await client.trigger("three-steps", {"orderId": "A"}, instance_id="known")
        data = await client.data(
            NODES_QUERY, {"ids": ["no-such-workflow", _run_id("three-steps", "nope")]}
        )
    assert data["nodes"] == [None, None]


async def test_malformed_node_ids_are_bad_user_input(engine: Engine) -> None:
    """An id this API never returned is refused with BAD_USER_INPUT, naming the id."""
    async with gateway(LocalUpstream(engine)) as client:
        for bad in ["run:%%%", "run:" + _b64("no-slash"), "has space", ""]:
            error = await client.error(NODE_QUERY, {"id": bad})
            assert error["extensions"]["code"] == "BAD_USER_INPUT", (bad, error)


async def test_nodes_batches_workflows_and_runs_through_the_loaders(engine: Engine) -> None:
    """nodes(ids:) answers in order and costs one list_workflows for several workflows."""
    counting = CountingUpstream(LocalUpstream(engine))
    async with gateway(counting) as client:
        await client.trigger("three-steps", {"orderId": "A"}, instance_id="b1")
        run_id = _run_id("three-steps", "b1")
        counting.calls.clear()
        data = await client.data(
            NODES_QUERY, {"ids": ["approval", run_id, "three-steps", run_id, "nope"]}
        )
    assert [n and n["__typename"] for n in data["nodes"]] == [
        "Workflow",
        "Run",
        "Workflow",
        "Run",
        None,
    ]
    assert data["nodes"][1]["instanceId"] == "b1"
    assert counting.calls == {"list_workflows": 1, "get_run": 1}


async def test_nodes_refuses_more_than_a_hundred_ids(engine: Engine) -> None:
    """nodes(ids:) with 101 ids is BAD_USER_INPUT naming the limit."""
    async with gateway(LocalUpstream(engine)) as client:
        error = await client.error(NODES_QUERY, {"ids": ["approval"] * 101})
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "100" in error["message"]


async def test_apollo_cache_updates_a_listed_run_from_a_subscription(
    engine: Engine, serve: Callable[[ASGIApp], AbstractAsyncContextManager[str]]
) -> None:
    """Apollo's InMemoryCache shows a runStatus change in an earlier list query, no refetch."""
    app = create_app(Settings(poll_min_interval=0.05), upstream=LocalUpstream(engine))
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        client = GraphQLClient(http)
        await client.trigger("approval", {"orderId": "A"}, instance_id="cached")
        await client.wait_for_event_wait("approval", "cached")
        async with node_script(
            "apollo_cache.mjs", f"{url}/graphql", "approval", "cached", package="@apollo/client"
        ) as script:
            assert (await script.read())["status"] == "PAUSED"
            assert (await script.read())["stage"] == "subscribed"
            await client.data(
                'mutation { sendEvent(workflowId: "approval", instanceId: "cached",'
                ' eventType: "approve", payload: {approved: true}) { id } }'
            )
            await script.send({"sent": True})
            updated = await script.read()
            await script.finish()
    assert updated["status"] == "COMPLETE"
    assert updated["subscriptionStatuses"][-1] == "COMPLETE"
    assert updated["requests"] == ["Runs"], "the list was fetched once and never again"


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _run_id(workflow_id: str, instance_id: str) -> str:
    return "run:" + _b64(f"{workflow_id}/{instance_id}")
