"""Run.wait, Run.workflowVersion and restart from a step through every adapter."""

from __future__ import annotations

import pytest

from conftest import UpstreamFactory
from polling import at_node, wait_for_run
from runcast.errors import BadUserInput
from runcast.models import ANONYMOUS, RunStatus, RunWaitReason


async def test_a_suspended_run_says_what_it_waits_for(upstream_factory: UpstreamFactory) -> None:
    """A sleeping run waits for SLEEP, an event wait for EVENT, a paused one for REQUESTED_PAUSE."""
    async with upstream_factory() as upstream:
        started = await upstream.trigger(
            "approval", input={"orderId": 1}, instance_id="w", credentials=ANONYMOUS
        )
        assert started.workflow_version
        sleeping = await wait_for_run(
            upstream, "approval", "w", at_node("settle", RunStatus.PAUSED)
        )
        if sleeping.steps is not None and sleeping.steps[-1].name == "settle":
            assert sleeping.wait is not None
            assert sleeping.wait.reason is RunWaitReason.SLEEP
            assert sleeping.wait.until is not None
        waiting = await wait_for_run(
            upstream, "approval", "w", at_node("approval", RunStatus.PAUSED)
        )
        assert waiting.wait is not None
        assert waiting.wait.reason is RunWaitReason.EVENT
        assert waiting.wait.event_type == "approve"
        assert waiting.workflow_version == started.workflow_version
        await upstream.pause("approval", "w", credentials=ANONYMOUS)
        paused = await upstream.get_run("approval", "w", credentials=ANONYMOUS)
        assert paused.wait is not None
        # Cloudflare's shape cannot tell a pause at an event wait from the wait itself.
        expected = RunWaitReason.EVENT if upstream_factory.adapter == "cloudflare" else None
        assert paused.wait.reason is (expected or RunWaitReason.REQUESTED_PAUSE)
        await upstream.resume("approval", "w", credentials=ANONYMOUS)
        await upstream.send_event(
            "approval", "w", event_type="approve", payload={"approved": True}, credentials=ANONYMOUS
        )
        done = await wait_for_run(upstream, "approval", "w", lambda run: run.is_terminal)
        assert done.wait is None


async def test_restart_from_a_step_keeps_the_earlier_results(
    upstream_factory: UpstreamFactory,
) -> None:
    """restart(from_step) re-runs from that step on; an unknown step names the existing ones."""
    async with upstream_factory() as upstream:
        await upstream.trigger(
            "three-steps", input={"orderId": "R"}, instance_id="r", credentials=ANONYMOUS
        )
        first = await wait_for_run(upstream, "three-steps", "r", lambda run: run.is_terminal)
        with pytest.raises(BadUserInput, match="first, second, third"):
            await upstream.restart("three-steps", "r", credentials=ANONYMOUS, from_step="nope")
        await upstream.restart("three-steps", "r", credentials=ANONYMOUS, from_step="third")
        again = await wait_for_run(
            upstream,
            "three-steps",
            "r",
            lambda run: run.is_terminal and run.ended_at != first.ended_at,
        )
        assert again.output == {"orderId": "R", "steps": [1, 2, 3]}
        assert first.steps is not None
        assert again.steps is not None
        assert again.steps[0].started_at == first.steps[0].started_at
        assert again.steps[2].started_at != first.steps[2].started_at
