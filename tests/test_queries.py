"""Every contract query against the embedded engine (LocalUpstream), and DataLoader batching."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway_client import RUN_FIELDS, CountingUpstream, GraphQLClient, gateway
from runcast.engine import Engine
from runcast.upstream.local import LocalUpstream


@pytest.fixture
async def counting(engine: Engine) -> CountingUpstream:
    """The real LocalUpstream over the test engine, counting its calls."""
    return CountingUpstream(LocalUpstream(engine))


@pytest.fixture
async def gql(counting: CountingUpstream) -> AsyncIterator[GraphQLClient]:
    """A GraphQL client of a gateway over the counting upstream."""
    async with gateway(counting) as client:
        yield client


async def test_workflows_lists_every_definition_with_kind_and_url(gql: GraphQLClient) -> None:
    """Query.workflows returns every loaded workflow; the script has kind SCRIPT and its URL."""
    data = await gql.data("{ workflows { id name kind url } }")
    by_id = {w["id"]: w for w in data["workflows"]}
    assert {"three-steps", "approval", "sleepy", "script"} <= set(by_id)
    assert by_id["three-steps"] == {
        "id": "three-steps",
        "name": "Three steps",
        "kind": "WORKFLOW",
        "url": None,
    }
    assert by_id["script"]["kind"] == "SCRIPT"
    assert by_id["script"]["url"] == "https://example.invalid/hello"


async def test_workflow_by_id_and_unknown_workflow_is_null(gql: GraphQLClient) -> None:
    """Query.workflow returns the workflow, or null for an unknown id."""
    data = await gql.data(
        '{ a: workflow(id: "approval") { id name } b: workflow(id: "nope") { id } }'
    )
    assert data == {"a": {"id": "approval", "name": "Approval"}, "b": None}


async def test_run_reads_status_output_and_steps(gql: GraphQLClient) -> None:
    """Query.run returns a finished run with its output, timestamps and every step."""
    started = await gql.trigger("three-steps", {"orderId": "A"})
    run = await gql.wait_for_status("three-steps", started["instanceId"], {"COMPLETE"})
    assert run["output"] == {"orderId": "A", "steps": [1, 2, 3]}
    assert run["rawStatus"] == "complete"
    assert run["isTerminal"] is True
    assert run["input"] == {"orderId": "A"}
    assert run["error"] is None
    assert run["createdAt"]
    assert run["endedAt"]
    assert [s["name"] for s in run["steps"]] == ["first", "second", "third"]
    assert all(s["status"] == "complete" and s["attempts"] == 1 for s in run["steps"])


async def test_unknown_run_is_null(gql: GraphQLClient) -> None:
    """Query.run and Workflow.run are null for an unknown run or workflow, without errors."""
    data = await gql.data(
        '{ a: run(workflowId: "three-steps", instanceId: "nope") { instanceId }'
        ' b: run(workflowId: "nope", instanceId: "nope") { instanceId }'
        ' workflow(id: "three-steps") { run(instanceId: "nope") { instanceId } } }'
    )
    assert data == {"a": None, "b": None, "workflow": {"run": None}}


async def test_workflow_run_and_run_workflow_link_both_ways(gql: GraphQLClient) -> None:
    """Workflow.run finds a run of that workflow, and Run.workflow leads back to it."""
    started = await gql.trigger("three-steps", {"orderId": "B"})
    data = await gql.data(
        'query($i: ID!) { workflow(id: "three-steps") { run(instanceId: $i) {'
        " instanceId workflowId workflow { id name } } } }",
        {"i": started["instanceId"]},
    )
    run = data["workflow"]["run"]
    assert run["instanceId"] == started["instanceId"]
    assert run["workflowId"] == "three-steps"
    assert run["workflow"] == {"id": "three-steps", "name": "Three steps"}


async def test_errored_run_reports_the_failing_steps_message(gql: GraphQLClient) -> None:
    """A run whose step fails past its retries is ERRORED with the step's message."""
    started = await gql.trigger("always-fails")
    run = await gql.wait_for_status("always-fails", started["instanceId"], {"ERRORED"})
    assert run["error"] == "always fails"
    assert run["output"] is None
    assert run["steps"][0]["attempts"] == 2


async def test_runs_connection_pages_newest_first_with_cursors(gql: GraphQLClient) -> None:
    """Workflow.runs pages through every run newest first, with Relay cursors and pageInfo."""
    triggered = [
        (await gql.trigger("three-steps", {"orderId": str(n)}))["instanceId"] for n in range(5)
    ]
    query = (
        'query($after: String) { workflow(id: "three-steps") {'
        " runs(first: 2, after: $after) { edges { cursor node { instanceId } }"
        " pageInfo { hasNextPage endCursor } } } }"
    )
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        runs = (await gql.data(query, {"after": after}))["workflow"]["runs"]
        pages += 1
        seen += [edge["node"]["instanceId"] for edge in runs["edges"]]
        assert runs["pageInfo"]["endCursor"] == runs["edges"][-1]["cursor"]
        if not runs["pageInfo"]["hasNextPage"]:
            break
        after = runs["pageInfo"]["endCursor"]
    assert pages == 3
    assert seen == list(reversed(triggered))


async def test_any_edge_cursor_resumes_right_after_that_edge(gql: GraphQLClient) -> None:
    """The cursor of an edge in the middle of a page resumes the listing right after it."""
    for n in range(4):
        await gql.trigger("three-steps", {"orderId": str(n)})
    query = (
        'query($after: String, $first: Int) { workflow(id: "three-steps") {'
        " runs(first: $first, after: $after) { edges { cursor node { instanceId } } } } }"
    )
    everything = (await gql.data(query, {"first": 4}))["workflow"]["runs"]["edges"]
    rest = (await gql.data(query, {"first": 4, "after": everything[0]["cursor"]}))["workflow"]
    assert [e["node"]["instanceId"] for e in rest["runs"]["edges"]] == [
        e["node"]["instanceId"] for e in everything[1:]
    ]


async def test_runs_filter_by_status(gql: GraphQLClient) -> None:
    """Workflow.runs(status: ...) returns only runs in those statuses."""
    done = await gql.trigger("three-steps", {"orderId": "done"})
    await gql.wait_for_status("three-steps", done["instanceId"], {"COMPLETE"})
    waiting = await gql.trigger("approval", {"orderId": 1})
    await gql.wait_for_status("approval", waiting["instanceId"], {"PAUSED"})
    data = await gql.data(
        '{ a: workflow(id: "approval") { runs(status: [PAUSED]) { ...ids } }'
        ' b: workflow(id: "approval") { runs(status: [COMPLETE]) { ...ids } } }'
        " fragment ids on RunConnection { edges { node { instanceId } } }"
    )
    assert [e["node"]["instanceId"] for e in data["a"]["runs"]["edges"]] == [waiting["instanceId"]]
    assert data["b"]["runs"]["edges"] == []


async def test_script_has_no_runs(gql: GraphQLClient) -> None:
    """A script's runs connection is empty and its run lookup is null."""
    data = await gql.data(
        '{ workflow(id: "script") { runs { edges { cursor } pageInfo { hasNextPage endCursor } }'
        ' run(instanceId: "x") { instanceId } } }'
    )
    assert data["workflow"] == {
        "runs": {"edges": [], "pageInfo": {"hasNextPage": False, "endCursor": None}},
        "run": None,
    }


async def test_fifty_runs_of_one_workflow_cost_one_list_call(
    gql: GraphQLClient, counting: CountingUpstream
) -> None:
    """Fifty runs with their Run.workflow cost one list_runs and one workflow lookup, no GETs."""
    for n in range(50):
        await gql.trigger("three-steps", {"orderId": str(n)})
    counting.calls.clear()
    data = await gql.data(
        '{ workflow(id: "three-steps") { runs(first: 50) { edges { node {'
        " instanceId workflow { id name kind } } } } } }"
    )
    edges = data["workflow"]["runs"]["edges"]
    assert len(edges) == 50
    assert all(e["node"]["workflow"]["id"] == "three-steps" for e in edges)
    assert counting.calls == {"get_workflow": 1, "list_runs": 1}


async def test_run_workflow_lookups_are_batched_across_workflows(
    gql: GraphQLClient, counting: CountingUpstream
) -> None:
    """Run.workflow for runs of several workflows costs one list_workflows call in total."""
    first = await gql.trigger("three-steps", {"orderId": "x"})
    second = await gql.trigger("approval", {"orderId": 2})
    counting.calls.clear()
    data = await gql.data(
        "query($a: ID!, $b: ID!) {"
        ' a: run(workflowId: "three-steps", instanceId: $a) { workflow { name } }'
        ' b: run(workflowId: "approval", instanceId: $b) { workflow { name } } }',
        {"a": first["instanceId"], "b": second["instanceId"]},
    )
    assert data == {
        "a": {"workflow": {"name": "Three steps"}},
        "b": {"workflow": {"name": "Approval"}},
    }
    assert counting.calls == {"get_run": 2, "list_workflows": 1}


async def test_workflows_listing_primes_the_workflow_loader(
    gql: GraphQLClient, counting: CountingUpstream
) -> None:
    """After Query.workflows, Run.workflow under it costs no further workflow lookups."""
    await gql.trigger("three-steps", {"orderId": "p"})
    counting.calls.clear()
    await gql.data("{ workflows { runs(first: 5) { edges { node { workflow { id } } } } } }")
    assert counting.calls["list_workflows"] == 1
    assert counting.calls["get_workflow"] == 0
    assert counting.calls["get_run"] == 0


async def test_run_fields_query_matches_the_trigger_answer(gql: GraphQLClient) -> None:
    """triggerRun answers with the same run fields Query.run later returns."""
    started = await gql.trigger("sleepy", {"n": 1})
    data = await gql.data(
        f'query($i: ID!) {{ run(workflowId: "sleepy", instanceId: $i) {{ {RUN_FIELDS} }} }}',
        {"i": started["instanceId"]},
    )
    assert data["run"]["instanceId"] == started["instanceId"]
    assert data["run"]["input"] == {"n": 1}
