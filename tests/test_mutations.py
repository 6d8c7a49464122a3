"""Every contract mutation and every error code, provoked for real against the embedded engine."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway_client import RUN_FIELDS, GraphQLClient, gateway
from runcast.engine import Engine
from runcast.settings import Settings
from runcast.upstream.local import LocalUpstream

STEER = "mutation($w: ID!, $i: ID!) { NAME(workflowId: $w, instanceId: $i) { " + RUN_FIELDS + " } }"
SEND_EVENT = (
    "mutation($w: ID!, $i: ID!, $t: String!, $p: JSON) {"
    " sendEvent(workflowId: $w, instanceId: $i, eventType: $t, payload: $p) { "
    + RUN_FIELDS
    + " } }"
)
PAYLOAD_LIMIT = 1024


@pytest.fixture
async def gql(engine: Engine) -> AsyncIterator[GraphQLClient]:
    """A GraphQL client of a gateway over the test engine, with a 1 KiB event payload limit."""
    settings = Settings(max_event_payload_bytes=PAYLOAD_LIMIT)
    async with gateway(LocalUpstream(engine), settings) as client:
        yield client


async def steer(gql: GraphQLClient, name: str, workflow_id: str, instance_id: str) -> dict:
    """Call one of the run-steering mutations and return the whole answer."""
    return await gql.execute(STEER.replace("NAME", name), {"w": workflow_id, "i": instance_id})


async def test_trigger_run_starts_a_run_that_completes(gql: GraphQLClient) -> None:
    """triggerRun returns the new run, which then completes with the last step's output."""
    run = await gql.trigger("three-steps", {"orderId": "T"})
    assert run["workflowId"] == "three-steps"
    assert run["instanceId"]
    assert run["status"] in {"QUEUED", "RUNNING", "COMPLETE"}
    done = await gql.wait_for_status("three-steps", run["instanceId"], {"COMPLETE"})
    assert done["output"] == {"orderId": "T", "steps": [1, 2, 3]}


async def test_trigger_run_with_instance_id_and_duplicate(gql: GraphQLClient) -> None:
    """triggerRun honours a given instanceId; a second run with that id gets ALREADY_EXISTS."""
    run = await gql.trigger("sleepy", {"x": 1}, instance_id="order-42")
    assert run["instanceId"] == "order-42"
    error = await gql.error(
        'mutation { triggerRun(workflowId: "sleepy", instanceId: "order-42") { instanceId } }'
    )
    assert error["extensions"]["code"] == "ALREADY_EXISTS"
    assert "order-42" in error["message"]


async def test_send_event_completes_a_waiting_run(gql: GraphQLClient) -> None:
    """sendEvent delivers the approval and the run completes with the event's payload."""
    run = await gql.trigger("approval", {"orderId": 7})
    await gql.wait_for_status("approval", run["instanceId"], {"PAUSED"})
    answer = await gql.execute(
        SEND_EVENT,
        {
            "w": "approval",
            "i": run["instanceId"],
            "t": "approve",
            "p": {"approved": True, "approvedBy": "ada"},
        },
    )
    assert "errors" not in answer, answer
    assert answer["data"]["sendEvent"]["instanceId"] == run["instanceId"]
    done = await gql.wait_for_status("approval", run["instanceId"], {"COMPLETE"})
    assert done["output"] == {"orderId": 7, "approved": True, "by": "ada"}


async def test_terminate_run(gql: GraphQLClient) -> None:
    """terminateRun stops a sleeping run for good: TERMINATED, no output, no error."""
    run = await gql.trigger("sleepy", {"n": 1})
    await gql.wait_for_status("sleepy", run["instanceId"], {"PAUSED"})
    answer = await steer(gql, "terminateRun", "sleepy", run["instanceId"])
    assert "errors" not in answer, answer
    done = await gql.wait_for_status("sleepy", run["instanceId"], {"TERMINATED"})
    assert done["output"] is None
    assert done["error"] is None
    assert done["isTerminal"] is True


async def test_pause_and_resume_run(gql: GraphQLClient) -> None:
    """pauseRun pauses a sleeping run and resumeRun lets it go on sleeping (not finished)."""
    run = await gql.trigger("sleepy", {"n": 2})
    await gql.wait_for_status("sleepy", run["instanceId"], {"PAUSED"})
    paused = await steer(gql, "pauseRun", "sleepy", run["instanceId"])
    assert "errors" not in paused, paused
    assert paused["data"]["pauseRun"]["status"] == "PAUSED"
    resumed = await steer(gql, "resumeRun", "sleepy", run["instanceId"])
    assert "errors" not in resumed, resumed
    assert resumed["data"]["resumeRun"]["isTerminal"] is False


async def test_restart_run_runs_again_under_the_same_id(gql: GraphQLClient) -> None:
    """restartRun runs a finished run again from the start under the same instanceId."""
    run = await gql.trigger("three-steps", {"orderId": "R"})
    await gql.wait_for_status("three-steps", run["instanceId"], {"COMPLETE"})
    answer = await steer(gql, "restartRun", "three-steps", run["instanceId"])
    assert "errors" not in answer, answer
    assert answer["data"]["restartRun"]["instanceId"] == run["instanceId"]
    done = await gql.wait_for_status("three-steps", run["instanceId"], {"COMPLETE"})
    assert done["output"] == {"orderId": "R", "steps": [1, 2, 3]}


async def test_trigger_script_is_not_triggerable_with_its_url(gql: GraphQLClient) -> None:
    """Triggering a script fails with NOT_TRIGGERABLE and a message naming its URL."""
    error = await gql.error('mutation { triggerRun(workflowId: "script") { instanceId } }')
    assert error["extensions"]["code"] == "NOT_TRIGGERABLE"
    assert "https://example.invalid/hello" in error["message"]
    assert error["path"] == ["triggerRun"]


@pytest.mark.parametrize("name", ["terminateRun", "pauseRun", "resumeRun", "restartRun"])
async def test_steering_an_unknown_run_is_not_found(gql: GraphQLClient, name: str) -> None:
    """Steering a run that does not exist fails with NOT_FOUND."""
    answer = await steer(gql, name, "sleepy", "no-such-run")
    assert answer["data"] is None
    assert answer["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_unknown_workflow_is_not_found(gql: GraphQLClient) -> None:
    """Triggering or sending an event to an unknown workflow fails with NOT_FOUND."""
    error = await gql.error('mutation { triggerRun(workflowId: "no-such") { instanceId } }')
    assert error["extensions"]["code"] == "NOT_FOUND"
    answer = await gql.execute(SEND_EVENT, {"w": "no-such", "i": "x", "t": "approve"})
    assert answer["errors"][0]["extensions"]["code"] == "NOT_FOUND"


@pytest.mark.parametrize("name", ["sendEvent", "pauseRun", "resumeRun"])
async def test_finished_run_refuses_with_run_finished(gql: GraphQLClient, name: str) -> None:
    """An event, pause or resume sent to a completed run fails with RUN_FINISHED."""
    run = await gql.trigger("three-steps", {"orderId": "F"})
    await gql.wait_for_status("three-steps", run["instanceId"], {"COMPLETE"})
    if name == "sendEvent":
        answer = await gql.execute(
            SEND_EVENT, {"w": "three-steps", "i": run["instanceId"], "t": "approve"}
        )
    else:
        answer = await steer(gql, name, "three-steps", run["instanceId"])
    error = answer["errors"][0]
    assert error["extensions"]["code"] == "RUN_FINISHED"
    assert error["extensions"]["status"] == "complete"


async def test_payload_over_the_limit_is_bad_user_input_naming_the_limit(
    gql: GraphQLClient,
) -> None:
    """An event payload larger than max_event_payload_bytes is refused, naming the limit."""
    run = await gql.trigger("approval", {"orderId": 1})
    answer = await gql.execute(
        SEND_EVENT,
        {"w": "approval", "i": run["instanceId"], "t": "approve", "p": {"x": "a" * PAYLOAD_LIMIT}},
    )
    error = answer["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert f"{PAYLOAD_LIMIT} bytes" in error["message"]


@pytest.mark.parametrize(
    ("event_type", "needle"),
    [("", "must not be empty"), ("   ", "must not be empty"), ("e" * 101, "limit is 100")],
)
async def test_bad_event_types_are_bad_user_input(
    gql: GraphQLClient, event_type: str, needle: str
) -> None:
    """An empty, blank or over-long (over 100 characters) event type is BAD_USER_INPUT."""
    run = await gql.trigger("approval", {"orderId": 1})
    answer = await gql.execute(
        SEND_EVENT, {"w": "approval", "i": run["instanceId"], "t": event_type}
    )
    error = answer["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert needle in error["message"]


@pytest.mark.parametrize(
    ("workflow_id", "instance_id", "needle"),
    [
        ("has space", "x", "workflowId 'has space' is malformed"),
        ("three-steps", "a/b", "instanceId 'a/b' is malformed"),
        ("three-steps", "i" * 101, "limit is 100"),
        ("", "x", "workflowId must not be empty"),
    ],
)
async def test_malformed_ids_are_bad_user_input(
    gql: GraphQLClient, workflow_id: str, instance_id: str, needle: str
) -> None:
    """Malformed, empty or over-long ids are refused with BAD_USER_INPUT before the upstream."""
    answer = await steer(gql, "terminateRun", workflow_id, instance_id)
    error = answer["errors"][0]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert needle in error["message"]


async def test_bad_pagination_arguments_are_bad_user_input(gql: GraphQLClient) -> None:
    """A page size over 100 or a cursor this API never returned is BAD_USER_INPUT."""
    answer = await gql.execute(
        '{ a: workflow(id: "sleepy") { runs(first: 101) { edges { cursor } } } }'
    )
    assert answer["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "100" in answer["errors"][0]["message"]
    answer = await gql.execute(
        '{ a: workflow(id: "sleepy") { runs(after: "not-a-cursor") { edges { cursor } } } }'
    )
    assert answer["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
