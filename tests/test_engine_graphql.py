"""The engine's promises as GraphQL shows them: versions, what a run waits for, restart, delete."""

from __future__ import annotations

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
