"""The engine's promises as GraphQL shows them: versions, what a run waits for, restart, delete."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gateway_client import GraphQLClient, gateway
from runcast.engine import Engine
from runcast.upstream.local import LocalUpstream


@pytest.fixture
async def gql(engine: Engine) -> AsyncIterator[GraphQLClient]:
    """A GraphQL client of a gateway over the test engine."""
    async with gateway(LocalUpstream(engine)) as client:
        yield client


async def test_runs_and_workflows_show_their_version(gql: GraphQLClient) -> None:
    """Workflow.version is the current definition's; a new run's workflowVersion is the same."""
    started = await gql.trigger("three-steps", {"orderId": "V"})
    data = await gql.data(
        'query ($id: ID!) { workflow(id: "three-steps") { version }'
        ' run(workflowId: "three-steps", instanceId: $id) { workflowVersion } }',
        {"id": started["instanceId"]},
    )
    version = data["workflow"]["version"]
    assert isinstance(version, str)
    assert len(version) == 16
    assert data["run"]["workflowVersion"] == version


async def test_run_wait_tells_an_event_wait_from_a_requested_pause(gql: GraphQLClient) -> None:
    """Run.wait is EVENT (with its type) at a wait, REQUESTED_PAUSE once paused, null after."""
    query = (
        'query ($id: ID!) { run(workflowId: "approval", instanceId: $id)'
        " { status wait { reason eventType until } } }"
    )
    await gql.trigger("approval", {"orderId": 3}, instance_id="g")
    for _ in range(500):
        run = (await gql.data(query, {"id": "g"}))["run"]
        if run["wait"] and run["wait"]["reason"] == "EVENT":
            break
        await asyncio.sleep(0.01)
    assert run == {
        "status": "PAUSED",
        "wait": {"reason": "EVENT", "eventType": "approve", "until": None},
    }
    await gql.data('mutation { pauseRun(workflowId: "approval", instanceId: "g") { status } }')
    paused = (await gql.data(query, {"id": "g"}))["run"]
    assert paused["wait"] == {"reason": "REQUESTED_PAUSE", "eventType": None, "until": None}
    await gql.data('mutation { terminateRun(workflowId: "approval", instanceId: "g") { status } }')
    assert (await gql.data(query, {"id": "g"}))["run"]["wait"] is None


async def test_delete_run_deletes_finished_runs_and_refuses_others(gql: GraphQLClient) -> None:
    """deleteRun is true for a finished run (then it is null) and BAD_USER_INPUT for a live one."""
    done = await gql.trigger("three-steps", {"orderId": "D"}, instance_id="del")
    await gql.wait_for_status("three-steps", done["instanceId"], {"COMPLETE"})
    await gql.trigger("approval", {"orderId": 4}, instance_id="live")
    deleted = await gql.data('mutation { deleteRun(workflowId: "three-steps", instanceId: "del") }')
    assert deleted == {"deleteRun": True}
    gone = await gql.data('{ run(workflowId: "three-steps", instanceId: "del") { status } }')
    assert gone == {"run": None}
    refused = await gql.http.post(
        "/graphql",
        json={"query": 'mutation { deleteRun(workflowId: "approval", instanceId: "live") }'},
    )
    error = refused.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "only a finished run can be deleted" in error["message"]
