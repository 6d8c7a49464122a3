"""Workflow file features on the real engine: conditions, non-retryable failures, names,
input schemas and declared event types (through the engine and through GraphQL)."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from engine_support import wait_for_status
from gateway_client import GraphQLClient, gateway
from runcast.engine import Engine, load_workflows
from runcast.engine.server import create_engine_app
from runcast.errors import BadUserInput
from runcast.models import ANONYMOUS, RunStatus
from runcast.settings import Settings
from runcast.upstream.awaitstep import AwaitStepUpstream
from runcast.upstream.local import LocalUpstream

FLOWS = {
    "conditional.yaml": """
        id: conditional
        nodes:
          - step: check
            action: {return: {big: "input.amount > `100`"}}
          - step: review
            when: check.big
            action: {return: "`reviewed`"}
          - sleep: pause
            when: "!(check.big)"
            duration: 10ms
          - step: done
            action: {return: {review: review, amount: input.amount}}
        """,
    "final.yaml": """
        id: final
        nodes:
          - step: validate
            action: {fail: {message: "order 7 does not exist", retry: false}}
            retries: {limit: 5, delay: 10ms}
        """,
    "raises.yaml": """
        id: raises
        nodes:
          - step: charge
            action: {python: "workflow_actions:refuse_charge"}
            retries: {limit: 5, delay: 10ms}
        """,
    "names.yaml": """
        id: names
        nodes:
          - step: fetch-price
            action: {return: {amount: "`12`"}}
          - step: 2nd
            action: {return: '"fetch-price".amount'}
          - step: total
            action: {return: {price: '"fetch-price".amount', again: '"2nd"'}}
        """,
    "typed.yaml": """
        id: typed
        input_schema:
          type: object
          required: [orderId]
          properties:
            orderId: {type: integer}
            items: {type: array, items: {type: object, required: [sku]}}
        nodes:
          - wait_for_event: approval
            event_type: user-approval
          - wait_for_event: shipped
            event_type: shipment
          - step: done
            action: {return: input.orderId}
        """,
}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder holding the workflows above."""
    folder = tmp_path / "workflows"
    folder.mkdir()
    for name, text in FLOWS.items():
        (folder / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return folder


@pytest.fixture
async def engine(folder: Path, tmp_path: Path) -> AsyncIterator[Engine]:
    """A started engine on those workflows."""
    result = load_workflows(folder)
    assert result.problems == []
    async with Engine(result.definitions, db_path=tmp_path / "runs.db") as engine:
        yield engine


async def test_when_false_skips_the_node_with_status_skipped(engine: Engine) -> None:
    """A node whose `when` is false is skipped: status `skipped`, result null, no attempts."""
    await engine.trigger("conditional", instance_id="small", input={"amount": 5})
    await engine.trigger("conditional", instance_id="big", input={"amount": 500})
    small = await wait_for_status(engine, "conditional", "small", RunStatus.COMPLETE)
    big = await wait_for_status(engine, "conditional", "big", RunStatus.COMPLETE)
    assert [(step.name, step.status) for step in small.steps] == [
        ("check", "complete"),
        ("review", "skipped"),
        ("pause", "complete"),
        ("done", "complete"),
    ]
    assert small.steps[1].attempts == 0
    assert small.steps[1].output is None
    assert small.output == {"review": None, "amount": 5}
    assert [step.status for step in big.steps] == ["complete", "complete", "skipped", "complete"]
    assert big.output == {"review": "reviewed", "amount": 500}


async def test_fail_with_retry_false_errors_at_once(engine: Engine) -> None:
    """`fail: {retry: false}` ends the run after one attempt whatever the retry limit."""
    await engine.trigger("final", instance_id="f")
    run = await wait_for_status(engine, "final", "f", RunStatus.ERRORED)
    assert run.error == "order 7 does not exist"
    assert run.steps[0].attempts == 1


async def test_python_non_retryable_error_errors_at_once(engine: Engine) -> None:
    """A python step raising NonRetryableError ends the run after one attempt."""
    await engine.trigger("raises", instance_id="r", input={"amount": -3})
    run = await wait_for_status(engine, "raises", "r", RunStatus.ERRORED)
    assert run.error == (
        "workflow_actions:refuse_charge raised NonRetryableError: amount -3 is not positive"
    )
    assert run.steps[0].attempts == 1


async def test_names_with_dashes_and_digits_are_read_quoted(engine: Engine) -> None:
    """Every name the loader accepts can be read in an expression by quoting it."""
    await engine.trigger("names", instance_id="n")
    run = await wait_for_status(engine, "names", "n", RunStatus.COMPLETE)
    assert run.output == {"price": 12, "again": 12}


async def test_input_schema_is_checked_at_trigger(engine: Engine) -> None:
    """An input that does not match input_schema is refused naming the JSON path."""
    with pytest.raises(BadUserInput, match=r"\$\.orderId: 'x' is not of type 'integer'"):
        await engine.trigger("typed", input={"orderId": "x"})
    with pytest.raises(BadUserInput, match=r"\$: 'not an object' is not of type 'object'"):
        await engine.trigger("typed", input="not an object")
    with pytest.raises(BadUserInput, match=r"\$\.items\[1\]: 'sku' is a required property"):
        await engine.trigger("typed", input={"orderId": 1, "items": [{"sku": "a"}, {}]})
    run = await engine.trigger("typed", input={"orderId": 1})
    assert run.status in (RunStatus.RUNNING, RunStatus.PAUSED, RunStatus.QUEUED)


async def test_an_undeclared_event_type_is_refused(engine: Engine) -> None:
    """An event type no wait of the workflow waits for is refused, naming those it accepts."""
    await engine.trigger("typed", instance_id="t", input={"orderId": 3})
    with pytest.raises(BadUserInput, match="accepts: 'user-approval', 'shipment'"):
        await engine.send_event("typed", "t", event_type="user-aproval", payload={})
    await engine.send_event("typed", "t", event_type="shipment")  # early: kept until its wait
    await engine.send_event("typed", "t", event_type="user-approval")
    run = await wait_for_status(engine, "typed", "t", RunStatus.COMPLETE)
    assert run.output == 3


async def test_graphql_shows_input_schema_and_refuses_bad_input(engine: Engine) -> None:
    """Workflow.inputSchema is the declared schema; bad input and event types are BAD_USER_INPUT."""
    async with gateway(LocalUpstream(engine), Settings()) as gql:
        client: GraphQLClient = gql
        data = await client.data('{ workflow(id: "typed") { inputSchema } }')
        assert data["workflow"]["inputSchema"]["required"] == ["orderId"]
        data = await client.data('{ workflow(id: "final") { inputSchema } }')
        assert data["workflow"]["inputSchema"] is None
        error = await client.error(
            'mutation { triggerRun(workflowId: "typed", input: {orderId: "x"}) { status } }'
        )
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert "$.orderId" in error["message"]
        await client.trigger("typed", {"orderId": 1}, instance_id="g")
        error = await client.error(
            'mutation { sendEvent(workflowId: "typed", instanceId: "g", eventType: "oops")'
            " { status } }"
        )
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert "'user-approval', 'shipment'" in error["message"]


async def test_the_awaitstep_adapter_reads_input_schema_and_schedule(
    engine: Engine, serve: Any
) -> None:
    """Through the engine's REST API, a workflow keeps its input schema (and schedule fields)."""
    async with serve(create_engine_app(engine)) as url:
        adapter = AwaitStepUpstream(url, settings=Settings())
        try:
            remote = await adapter.get_workflow("typed", credentials=ANONYMOUS)
        finally:
            await adapter.aclose()
    local = engine.get_workflow("typed")
    assert remote.input_schema == local.input_schema
    assert remote.input_schema is not None
    assert (remote.schedule, remote.next_scheduled_at) == (None, None)
