"""One contract for every upstream adapter: the same lifecycle, the same errors.

Each test runs once per adapter of the ``upstream_factory`` fixture (tests/conftest.py):
``local`` (the engine in process) and ``awaitstep`` (the engine's REST API on a real
uvicorn socket), over a fresh engine with the workflows of tests/workflows.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import UpstreamFactory
from polling import at_node, in_status, wait_for_run
from runcast.engine import Engine, load_workflows
from runcast.errors import (
    AlreadyExists,
    BadUserInput,
    NotFound,
    NotTriggerable,
    PayloadTooLarge,
    RunFinished,
    RunNotFound,
    Unauthenticated,
    UpstreamUnavailable,
    WorkflowNotFound,
)
from runcast.models import ANONYMOUS, Credentials, RunStatus, WorkflowKind
from runcast.settings import MIB


async def test_lists_and_gets_workflows(upstream_factory: UpstreamFactory) -> None:
    """Workflows list with their kind and URL; one is fetched by id; unknown ids are NotFound."""
    async with upstream_factory() as upstream:
        workflows = {w.id: w for w in await upstream.list_workflows(credentials=ANONYMOUS)}
        assert {"three-steps", "approval", "sleepy"} <= set(workflows)
        assert workflows["three-steps"].kind is WorkflowKind.WORKFLOW
        if upstream_factory.has("scripts"):
            assert workflows["script"].kind is WorkflowKind.SCRIPT
            assert workflows["script"].url == "https://example.invalid/hello"
        one = await upstream.get_workflow("approval", credentials=ANONYMOUS)
        assert one.id == "approval"
        if upstream_factory.has("display_names"):
            assert one.name == "Approval"
        with pytest.raises(WorkflowNotFound):
            await upstream.get_workflow("nope", credentials=ANONYMOUS)


async def test_a_run_completes_with_output_and_steps(upstream_factory: UpstreamFactory) -> None:
    """A triggered run gets a ULID, completes, and reports its output and every step."""
    async with upstream_factory() as upstream:
        created = await upstream.trigger(
            "three-steps", input={"orderId": "A"}, credentials=ANONYMOUS
        )
        assert len(created.instance_id) == 26
        assert created.workflow_id == "three-steps"
        assert created.input == {"orderId": "A"}
        assert created.status in {RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.COMPLETE}
        run = await wait_for_run(
            upstream, "three-steps", created.instance_id, in_status(RunStatus.COMPLETE)
        )
        assert run.output == {"orderId": "A", "steps": [1, 2, 3]}
        assert run.error is None
        assert run.raw_status == "complete"
        assert run.is_terminal
        assert run.created_at is not None
        assert run.ended_at is not None
        assert run.steps is not None
        assert [(s.name, s.status, s.attempts) for s in run.steps] == [
            ("first", "complete", 1),
            ("second", "complete", 1),
            ("third", "complete", 1),
        ]


async def test_caller_given_instance_id_and_duplicates(upstream_factory: UpstreamFactory) -> None:
    """A caller-given instance id names the run; triggering it again is AlreadyExists."""
    async with upstream_factory() as upstream:
        run = await upstream.trigger(
            "three-steps", input={"orderId": "B"}, instance_id="order-b", credentials=ANONYMOUS
        )
        assert run.instance_id == "order-b"
        with pytest.raises(AlreadyExists):
            await upstream.trigger("three-steps", instance_id="order-b", credentials=ANONYMOUS)
        with pytest.raises(BadUserInput):
            await upstream.trigger("three-steps", instance_id="not/valid", credentials=ANONYMOUS)


async def test_unknown_workflow_and_run(upstream_factory: UpstreamFactory) -> None:
    """Unknown workflows raise WorkflowNotFound, unknown runs RunNotFound, for every call."""
    async with upstream_factory() as upstream:
        with pytest.raises(WorkflowNotFound):
            await upstream.trigger("nope", credentials=ANONYMOUS)
        with pytest.raises(WorkflowNotFound):
            await upstream.list_runs("nope", credentials=ANONYMOUS)
        with pytest.raises(NotFound):
            await upstream.get_run("nope", "x", credentials=ANONYMOUS)
        with pytest.raises(RunNotFound):
            await upstream.get_run("three-steps", "missing", credentials=ANONYMOUS)
        with pytest.raises(RunNotFound):
            await upstream.send_event(
                "approval", "missing", event_type="approve", credentials=ANONYMOUS
            )
        for control in (upstream.terminate, upstream.pause, upstream.resume, upstream.restart):
            with pytest.raises(RunNotFound):
                await control("three-steps", "missing", credentials=ANONYMOUS)


async def test_triggering_a_script_is_not_triggerable(upstream_factory: UpstreamFactory) -> None:
    """A script cannot be triggered, and the error names the URL to call instead."""
    if not upstream_factory.has("scripts"):
        pytest.skip(f"the {upstream_factory.adapter} upstream has no scripts")
    async with upstream_factory() as upstream:
        with pytest.raises(NotTriggerable) as caught:
            await upstream.trigger("script", input={}, credentials=ANONYMOUS)
        assert caught.value.url == "https://example.invalid/hello"
        assert "https://example.invalid/hello" in caught.value.message


async def test_event_completes_a_waiting_run(upstream_factory: UpstreamFactory) -> None:
    """A run paused at its wait completes when the event arrives, its payload in the output."""
    async with upstream_factory() as upstream:
        created = await upstream.trigger("approval", input={"orderId": "C"}, credentials=ANONYMOUS)
        instance_id = created.instance_id
        await wait_for_run(upstream, "approval", instance_id, at_node("approval", RunStatus.PAUSED))
        sent = await upstream.send_event(
            "approval",
            instance_id,
            event_type="approve",
            payload={"approved": True, "approvedBy": "ada"},
            credentials=ANONYMOUS,
        )
        assert sent.instance_id == instance_id
        run = await wait_for_run(upstream, "approval", instance_id, in_status(RunStatus.COMPLETE))
        assert run.output == {"orderId": "C", "approved": True, "by": "ada"}


async def test_event_sent_early_is_kept(upstream_factory: UpstreamFactory) -> None:
    """An event sent before the run reaches its wait is kept and delivered there."""
    async with upstream_factory() as upstream:
        created = await upstream.trigger("approval", input={"orderId": "E"}, credentials=ANONYMOUS)
        await upstream.send_event(
            "approval",
            created.instance_id,
            event_type="approve",
            payload={"approved": False, "approvedBy": "bob"},
            credentials=ANONYMOUS,
        )
        run = await wait_for_run(
            upstream, "approval", created.instance_id, in_status(RunStatus.COMPLETE)
        )
        assert run.output == {"orderId": "E", "approved": False, "by": "bob"}


async def test_finished_runs_refuse_events_pause_and_resume(
    upstream_factory: UpstreamFactory,
) -> None:
    """Events, pause and resume sent to a finished run raise RunFinished."""
    async with upstream_factory() as upstream:
        created = await upstream.trigger(
            "three-steps", input={"orderId": "F"}, credentials=ANONYMOUS
        )
        await wait_for_run(
            upstream, "three-steps", created.instance_id, in_status(RunStatus.COMPLETE)
        )
        with pytest.raises(RunFinished) as caught:
            await upstream.send_event(
                "three-steps", created.instance_id, event_type="approve", credentials=ANONYMOUS
            )
        assert caught.value.status == "complete"
        with pytest.raises(RunFinished):
            await upstream.pause("three-steps", created.instance_id, credentials=ANONYMOUS)
        with pytest.raises(RunFinished):
            await upstream.resume("three-steps", created.instance_id, credentials=ANONYMOUS)


async def test_retries_then_success_and_exhaustion(upstream_factory: UpstreamFactory) -> None:
    """A flaky step completes on its third attempt; a failing one ends errored with its message."""
    async with upstream_factory() as upstream:
        flaky = await upstream.trigger("flaky", credentials=ANONYMOUS)
        failing = await upstream.trigger("always-fails", credentials=ANONYMOUS)
        done = await wait_for_run(
            upstream, "flaky", flaky.instance_id, in_status(RunStatus.COMPLETE)
        )
        assert done.steps is not None
        assert done.steps[0].attempts == 3
        errored = await wait_for_run(
            upstream, "always-fails", failing.instance_id, in_status(RunStatus.ERRORED)
        )
        assert errored.error is not None
        assert "always fails" in errored.error
        assert errored.output is None
        assert errored.steps is not None
        assert errored.steps[0].attempts == 2


async def test_wait_timeout_errors_the_run(upstream_factory: UpstreamFactory) -> None:
    """A wait whose timeout passes without the event ends the run errored."""
    async with upstream_factory() as upstream:
        created = await upstream.trigger("wait-timeout", credentials=ANONYMOUS)
        run = await wait_for_run(
            upstream, "wait-timeout", created.instance_id, in_status(RunStatus.ERRORED)
        )
        assert run.error


async def test_pause_resume_terminate_restart(upstream_factory: UpstreamFactory) -> None:
    """A sleeping run pauses and resumes, is terminated with null output and error, restarts."""
    async with upstream_factory() as upstream:
        await upstream.trigger("sleepy", input="x", instance_id="nap", credentials=ANONYMOUS)
        sleeping = await wait_for_run(upstream, "sleepy", "nap", at_node("nap", RunStatus.PAUSED))
        paused = await upstream.pause("sleepy", "nap", credentials=ANONYMOUS)
        assert paused.status is RunStatus.PAUSED
        resumed = await upstream.resume("sleepy", "nap", credentials=ANONYMOUS)
        assert resumed.status in {RunStatus.PAUSED, RunStatus.RUNNING}
        assert resumed.wake_at == sleeping.wake_at
        terminated = await upstream.terminate("sleepy", "nap", credentials=ANONYMOUS)
        assert terminated.status is RunStatus.TERMINATED
        assert terminated.output is None
        assert terminated.error is None
        with pytest.raises(RunFinished):
            await upstream.resume("sleepy", "nap", credentials=ANONYMOUS)
        restarted = await upstream.restart("sleepy", "nap", credentials=ANONYMOUS)
        assert restarted.instance_id == "nap"
        assert not restarted.is_terminal
        again = await wait_for_run(upstream, "sleepy", "nap", at_node("nap", RunStatus.PAUSED))
        assert again.steps is not None
        assert [s.name for s in again.steps] == ["start", "nap"]
        await upstream.terminate("sleepy", "nap", credentials=ANONYMOUS)


async def test_terminate_mid_step(upstream_factory: UpstreamFactory) -> None:
    """A run inside a long step is terminated at once."""
    async with upstream_factory() as upstream:
        created = await upstream.trigger("slow-step", credentials=ANONYMOUS)
        await wait_for_run(
            upstream, "slow-step", created.instance_id, at_node("slow", RunStatus.RUNNING)
        )
        terminated = await upstream.terminate(
            "slow-step", created.instance_id, credentials=ANONYMOUS
        )
        assert terminated.status is RunStatus.TERMINATED


async def test_restart_a_completed_run(upstream_factory: UpstreamFactory) -> None:
    """A completed run restarts from the beginning under the same id and completes again."""
    async with upstream_factory() as upstream:
        created = await upstream.trigger(
            "three-steps", input={"orderId": "G"}, credentials=ANONYMOUS
        )
        first = await wait_for_run(
            upstream, "three-steps", created.instance_id, in_status(RunStatus.COMPLETE)
        )
        await upstream.restart("three-steps", created.instance_id, credentials=ANONYMOUS)
        second = await wait_for_run(
            upstream,
            "three-steps",
            created.instance_id,
            lambda run: run.status is RunStatus.COMPLETE and run.ended_at != first.ended_at,
        )
        assert second.output == first.output


async def test_list_runs_filters_and_pages(upstream_factory: UpstreamFactory) -> None:
    """Runs list newest first, filtered by status, and cursor paging visits each run once."""
    async with upstream_factory() as upstream:
        ids = []
        for n in range(5):
            run = await upstream.trigger(
                "three-steps", input={"orderId": str(n)}, credentials=ANONYMOUS
            )
            ids.append(run.instance_id)
        for instance_id in ids:
            await wait_for_run(upstream, "three-steps", instance_id, in_status(RunStatus.COMPLETE))
        sleeping = await upstream.trigger("sleepy", credentials=ANONYMOUS)
        await wait_for_run(upstream, "sleepy", sleeping.instance_id, in_status(RunStatus.PAUSED))

        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            page = await upstream.list_runs(
                "three-steps",
                statuses=[RunStatus.COMPLETE],
                cursor=cursor,
                limit=2,
                credentials=ANONYMOUS,
            )
            pages += 1
            assert len(page.runs) <= 2
            seen += [run.instance_id for run in page.runs]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == list(reversed(ids))
        assert pages == 3

        empty = await upstream.list_runs(
            "three-steps", statuses=[RunStatus.PAUSED], credentials=ANONYMOUS
        )
        assert empty.runs == ()
        assert empty.next_cursor is None
        paused = await upstream.list_runs(
            "sleepy", statuses=[RunStatus.PAUSED, RunStatus.ERRORED], credentials=ANONYMOUS
        )
        assert [run.instance_id for run in paused.runs] == [sleeping.instance_id]
        everything = await upstream.list_runs("three-steps", credentials=ANONYMOUS)
        assert len(everything.runs) == 5
        assert everything.runs[0].output == {"orderId": "4", "steps": [1, 2, 3]}
        with pytest.raises(BadUserInput):
            await upstream.list_runs("three-steps", limit=0, credentials=ANONYMOUS)
        with pytest.raises(BadUserInput):
            await upstream.list_runs("three-steps", cursor="garbage", credentials=ANONYMOUS)
        await upstream.terminate("sleepy", sleeping.instance_id, credentials=ANONYMOUS)


async def test_payload_over_the_limit(upstream_factory: UpstreamFactory) -> None:
    """An event payload over 1 MiB raises PayloadTooLarge naming the limit; the run goes on."""
    async with upstream_factory() as upstream:
        created = await upstream.trigger("approval", input={"orderId": "H"}, credentials=ANONYMOUS)
        with pytest.raises(PayloadTooLarge) as caught:
            await upstream.send_event(
                "approval",
                created.instance_id,
                event_type="approve",
                payload={"blob": "x" * (MIB + 1)},
                credentials=ANONYMOUS,
            )
        assert caught.value.limit == MIB
        run = await upstream.get_run("approval", created.instance_id, credentials=ANONYMOUS)
        assert not run.is_terminal
        await upstream.terminate("approval", created.instance_id, credentials=ANONYMOUS)


async def test_empty_event_type_is_bad_input(upstream_factory: UpstreamFactory) -> None:
    """An empty event type raises BadUserInput."""
    async with upstream_factory() as upstream:
        created = await upstream.trigger("sleepy", credentials=ANONYMOUS)
        with pytest.raises(BadUserInput):
            await upstream.send_event(
                "sleepy", created.instance_id, event_type="", credentials=ANONYMOUS
            )
        await upstream.terminate("sleepy", created.instance_id, credentials=ANONYMOUS)


async def test_api_keys_are_enforced(upstream_factory: UpstreamFactory) -> None:
    """With API keys configured, missing or wrong credentials raise Unauthenticated."""
    async with upstream_factory(api_keys=("k1",)) as upstream:
        with pytest.raises(Unauthenticated):
            await upstream.list_workflows(credentials=ANONYMOUS)
        with pytest.raises(Unauthenticated):
            await upstream.trigger("three-steps", credentials=Credentials("wrong"))
        with pytest.raises(Unauthenticated):
            await upstream.get_run("three-steps", "x", credentials=Credentials("wrong"))
        good = Credentials("k1")
        run = await upstream.trigger("three-steps", input={"orderId": "K"}, credentials=good)
        await wait_for_run(
            upstream,
            "three-steps",
            run.instance_id,
            in_status(RunStatus.COMPLETE),
            credentials=good,
        )
        await upstream.ping()


async def test_closed_adapter_refuses_calls(upstream_factory: UpstreamFactory) -> None:
    """After aclose an adapter refuses calls with UpstreamUnavailable."""
    async with upstream_factory() as upstream:
        await upstream.ping()
        await upstream.aclose()
        with pytest.raises(UpstreamUnavailable):
            await upstream.list_workflows(credentials=ANONYMOUS)


RETRY_LATER = """
id: retry-later
nodes:
  - step: once
    action:
      fail: {message: "first attempt fails", times: 1}
    retries: {limit: 1, delay: 1h}
"""


async def test_pause_mid_step_waits_for_the_step(upstream_factory: UpstreamFactory) -> None:
    """Pausing inside a running step shows waitingForPause; resume makes it running again."""
    async with upstream_factory() as upstream:
        created = await upstream.trigger("slow-step", credentials=ANONYMOUS)
        instance_id = created.instance_id
        await wait_for_run(upstream, "slow-step", instance_id, at_node("slow", RunStatus.RUNNING))
        pausing = await upstream.pause("slow-step", instance_id, credentials=ANONYMOUS)
        assert pausing.status is RunStatus.WAITING_FOR_PAUSE
        assert pausing.raw_status == "waitingForPause"
        resumed = await upstream.resume("slow-step", instance_id, credentials=ANONYMOUS)
        assert resumed.status is RunStatus.RUNNING
        await upstream.terminate("slow-step", instance_id, credentials=ANONYMOUS)


async def test_waiting_between_retries(upstream_factory: UpstreamFactory, tmp_path: Path) -> None:
    """A step that failed and has a retry left shows waiting until its retry delay ends."""
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "retry-later.yaml").write_text(RETRY_LATER)
    definitions = load_workflows(tmp_path / "flows").definitions
    async with (
        Engine(definitions, db_path=tmp_path / "retry.db") as engine,
        upstream_factory(engine=engine) as upstream,
    ):
        created = await upstream.trigger("retry-later", credentials=ANONYMOUS)
        run = await wait_for_run(
            upstream, "retry-later", created.instance_id, in_status(RunStatus.WAITING)
        )
        assert run.steps is not None
        assert run.steps[0].attempts == 1
        assert run.steps[0].error == "first attempt fails"
        await upstream.terminate("retry-later", created.instance_id, credentials=ANONYMOUS)


async def test_runs_over_the_concurrency_cap_stay_queued(
    upstream_factory: UpstreamFactory, workflows_dir: Path, tmp_path: Path
) -> None:
    """Over the running cap a run stays queued, and starts when a slot frees (FIFO)."""
    definitions = load_workflows(workflows_dir).definitions
    async with (
        Engine(definitions, db_path=tmp_path / "capped.db", max_running=1) as engine,
        upstream_factory(engine=engine) as upstream,
    ):
        first = await upstream.trigger("slow-step", credentials=ANONYMOUS)
        second = await upstream.trigger("slow-step", credentials=ANONYMOUS)
        third = await upstream.trigger("three-steps", input={"orderId": "Q"}, credentials=ANONYMOUS)
        await wait_for_run(upstream, "slow-step", first.instance_id, in_status(RunStatus.RUNNING))
        assert second.status is RunStatus.QUEUED
        queued = await upstream.list_runs(
            "slow-step", statuses=[RunStatus.QUEUED], credentials=ANONYMOUS
        )
        assert [run.instance_id for run in queued.runs] == [second.instance_id]
        await upstream.terminate("slow-step", first.instance_id, credentials=ANONYMOUS)
        await wait_for_run(upstream, "slow-step", second.instance_id, in_status(RunStatus.RUNNING))
        third_now = await upstream.get_run("three-steps", third.instance_id, credentials=ANONYMOUS)
        assert third_now.status is RunStatus.QUEUED
        await upstream.terminate("slow-step", second.instance_id, credentials=ANONYMOUS)
        await wait_for_run(
            upstream, "three-steps", third.instance_id, in_status(RunStatus.COMPLETE)
        )
