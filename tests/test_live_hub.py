"""The live hub on its own: pushes from the embedded engine, and polls of a real AwaitStep API."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, aclosing, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from starlette.types import ASGIApp

from live_support import FAST, Fault, UpstreamProbe, open_engine, wait_for
from runcast.engine import Engine
from runcast.engine.server import create_engine_app
from runcast.errors import RunNotFound, WorkflowNotFound
from runcast.live import LiveHub, RunChange
from runcast.live._subscriber import Subscriber
from runcast.metrics import Metrics
from runcast.models import ANONYMOUS, Credentials, Run, RunStatus
from runcast.settings import Settings
from runcast.upstream.awaitstep import AwaitStepUpstream
from runcast.upstream.local import LocalUpstream

Serve = Callable[[ASGIApp], AbstractAsyncContextManager[str]]


@dataclass
class Polled:
    """A hub polling the engine's REST API through the AwaitStep adapter."""

    engine: Engine
    probe: UpstreamProbe
    hub: LiveHub
    metrics: Metrics


@asynccontextmanager
async def polled(tmp_path: Path, serve: Serve, settings: Settings = FAST) -> AsyncIterator[Polled]:
    """An engine, its REST app behind a probe on a real socket, and a hub polling it."""
    async with open_engine(tmp_path) as engine:
        probe = UpstreamProbe(create_engine_app(engine))
        async with serve(probe) as url:
            upstream = AwaitStepUpstream(url, settings=settings)
            metrics = Metrics()
            try:
                async with LiveHub(upstream, settings, metrics=metrics) as hub:
                    yield Polled(engine, probe, hub, metrics)
            finally:
                await upstream.aclose()


async def waiting_for_approval(engine: Engine, run: Run) -> bool:
    """Whether ``run`` has reached its wait for the approval event."""
    current = await engine.get_run(run.workflow_id, run.instance_id)
    return current.status is RunStatus.PAUSED and any(
        step.name == "approval" for step in current.steps or ()
    )


async def collect(changes: AsyncIterator[RunChange], into: list[RunChange]) -> None:
    """Append every change to ``into`` until the stream ends."""
    async for change in changes:
        into.append(change)


def watch(
    hub: LiveHub, workflow_id: str, instance_id: str
) -> tuple[asyncio.Task[None], list[RunChange]]:
    """Collect one run's changes from ``hub`` (anonymously) until the stream ends."""
    received: list[RunChange] = []
    changes = hub.watch_run(workflow_id, instance_id, ANONYMOUS)
    return asyncio.create_task(collect(changes, received)), received


def statuses(changes: list[RunChange]) -> list[RunStatus]:
    """The statuses of ``changes``."""
    return [change.run.status for change in changes]


def assert_linked(changes: list[RunChange]) -> None:
    """Each change's previous status is the status of the change before it."""
    assert changes[0].previous_status is None
    for before, after in itertools.pairwise(changes):
        assert after.previous_status == before.run.status


async def test_push_delivers_every_transition_in_order_without_polls(tmp_path: Path) -> None:
    """On the embedded engine a subscriber sees every transition in order and nothing is polled."""
    async with open_engine(tmp_path) as engine:
        upstream = LocalUpstream(engine)
        metrics = Metrics()
        async with LiveHub(upstream, FAST, metrics=metrics) as hub:
            assert hub.pushes
            seen_by_engine: list[Run] = []
            run = await engine.trigger("approval", input={"orderId": "o-1"})
            unlisten = engine.add_run_listener(
                lambda r: seen_by_engine.append(r) if r.instance_id == run.instance_id else None
            )
            reader, received = watch(hub, "approval", run.instance_id)
            await wait_for(lambda: bool(received), what="the first state")
            await wait_for(
                lambda: (
                    received[-1].run.status is RunStatus.PAUSED
                    and any(s.name == "approval" for s in received[-1].run.steps or ())
                ),
                what="the wait for approval",
            )
            await engine.send_event(
                "approval", run.instance_id, event_type="user-approval", payload={"approved": True}
            )
            await asyncio.wait_for(reader, 10)
            unlisten()
        assert received[-1].run.status is RunStatus.COMPLETE
        assert received[-1].run.output == {"orderId": "o-1", "approved": True}
        assert_linked(received)
        # After the first message, every change the engine announced reached the subscriber.
        announced = [r.observable() for r in seen_by_engine]
        announced = [s for i, s in enumerate(announced) if i == 0 or announced[i - 1] != s]
        got = [c.run.observable() for c in received]
        assert got == announced[-len(got) :] or got[1:] == announced
        polls = metrics.render().decode()
        assert 'kind="list"' not in polls
        assert hub.active_watches == 0
        assert hub.subscriber_count == 0


async def test_push_workflow_runs_sees_new_runs_with_filter(tmp_path: Path) -> None:
    """On the embedded engine workflowRuns sees runs created after subscribing, filtered."""
    async with open_engine(tmp_path) as engine:
        upstream = LocalUpstream(engine)
        async with LiveHub(upstream, FAST, metrics=Metrics()) as hub:
            everything: list[RunChange] = []
            finished: list[RunChange] = []
            readers = [
                asyncio.create_task(
                    collect(hub.watch_workflow("waiter", None, ANONYMOUS), everything)
                ),
                asyncio.create_task(
                    collect(hub.watch_workflow("waiter", {RunStatus.COMPLETE}, ANONYMOUS), finished)
                ),
            ]
            await wait_for(lambda: hub.subscriber_count == 2, what="both subscribers")
            run = await engine.trigger("waiter")
            await wait_for(lambda: any(c.run.instance_id == run.instance_id for c in everything))
            await engine.send_event("waiter", run.instance_id, event_type="go")
            await wait_for(lambda: bool(finished), what="the completed run")
            assert statuses(everything)[-1] is RunStatus.COMPLETE
            assert everything[0].previous_status is None
            assert [c.run.status for c in finished] == [RunStatus.COMPLETE]
            assert {c.run.instance_id for c in everything} == {run.instance_id}
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
        assert hub.subscriber_count == 0
        assert hub.active_watches == 0


async def test_push_unknown_run_and_workflow_are_not_found(tmp_path: Path) -> None:
    """On the embedded engine an unknown run or workflow ends the subscription with NOT_FOUND."""
    async with (
        open_engine(tmp_path) as engine,
        LiveHub(LocalUpstream(engine), FAST, metrics=Metrics()) as hub,
    ):
        with pytest.raises(RunNotFound):
            async with aclosing(hub.watch_run("approval", "nope", ANONYMOUS)) as changes:
                await anext(changes)
        with pytest.raises(WorkflowNotFound):
            async with aclosing(hub.watch_workflow("nope", None, ANONYMOUS)) as changes:
                await anext(changes)
        assert hub.active_watches == 0
        assert hub.subscriber_count == 0


async def test_poll_unknown_run_is_not_found(tmp_path: Path, serve: Serve) -> None:
    """Polling an unknown run ends its subscriber with RunNotFound and keeps no watch."""
    async with polled(tmp_path, serve) as p:
        with pytest.raises(RunNotFound):
            async with aclosing(p.hub.watch_run("approval", "nope", ANONYMOUS)) as changes:
                await anext(changes)
        assert p.hub.active_watches == 0
        assert p.hub.subscriber_count == 0


async def test_poll_shares_one_watch_and_ends_on_terminal(tmp_path: Path, serve: Serve) -> None:
    """Subscribers of one run share one watch, get the same states, and polling stops at the end."""
    async with polled(tmp_path, serve) as p:
        run = await p.engine.trigger("waiter")
        received: list[list[RunChange]] = [[] for _ in range(20)]
        readers = [
            asyncio.create_task(collect(p.hub.watch_run("waiter", run.instance_id, ANONYMOUS), r))
            for r in received
        ]
        await wait_for(lambda: all(received), what="every first state")
        assert p.hub.active_watches == 1
        await p.engine.send_event("waiter", run.instance_id, event_type="go")
        await asyncio.wait_for(asyncio.gather(*readers), 10)
        for changes in received:
            assert changes[0].previous_status is None
            assert changes[-1].run.status is RunStatus.COMPLETE
            assert changes[-1].run.output == {"went": True}
        assert p.hub.active_watches == 0
        ended = time.monotonic()
        count = len(p.probe.gets(run.instance_id))
        await asyncio.sleep(FAST.poll_max_interval * 2)  # a window for a poll that must not come
        assert len(p.probe.gets(run.instance_id, since=ended)) == 0, count


async def test_unchanged_run_backs_off(tmp_path: Path, serve: Serve) -> None:
    """A run that does not change is polled less and less often, down to the maximum interval."""
    settings = FAST.replace(poll_min_interval=0.02, poll_max_interval=0.32)
    async with polled(tmp_path, serve, settings) as p:
        run = await p.engine.trigger("waiter")
        reader, _ = watch(p.hub, "waiter", run.instance_id)
        await wait_for(lambda: len(p.probe.gets(run.instance_id)) >= 8, what="eight polls")
        times = [r.at for r in p.probe.gets(run.instance_id)]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert gaps[-1] > gaps[1] * 3
        assert max(gaps) < 0.32 * 2
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        assert p.hub.active_watches == 0


async def test_paused_run_is_polled_near_its_wake_time(tmp_path: Path, serve: Serve) -> None:
    """A sleeping run with a known wake time is polled just after it, not a whole interval later."""
    settings = FAST.replace(poll_min_interval=0.1, poll_max_interval=10.0)
    async with polled(tmp_path, serve, settings) as p:
        run = await p.engine.trigger("napper")
        reader, received = watch(p.hub, "napper", run.instance_id)
        await asyncio.wait_for(reader, 10)
        paused = [c for c in received if c.run.status is RunStatus.PAUSED]
        assert paused
        assert paused[-1].run.wake_at is not None
        woke = received[received.index(paused[-1]) + 1]
        late = (woke.observed_at - paused[-1].run.wake_at).total_seconds()
        assert late < 0.6


async def test_budget_bounds_rate_and_polls_every_watch(tmp_path: Path, serve: Serve) -> None:
    """With more watches than the budget allows, the rate stays in budget and none starves."""
    budget = 20.0
    settings = FAST.replace(
        poll_min_interval=0.02, poll_max_interval=0.02, request_budget_per_second=budget
    )
    async with polled(tmp_path, serve, settings) as p:
        runs = [await p.engine.trigger("waiter") for _ in range(20)]
        received: dict[str, list[RunChange]] = {r.instance_id: [] for r in runs}
        # One tenant each, so that no list poll can carry several of them.
        readers = [
            asyncio.create_task(
                collect(
                    p.hub.watch_run("waiter", r.instance_id, Credentials(f"tenant-{i}")),
                    received[r.instance_id],
                )
            )
            for i, r in enumerate(runs)
        ]
        await wait_for(lambda: all(received.values()), what="every first state")
        start = time.monotonic()
        window = 3.0
        await wait_for(lambda: time.monotonic() - start > window, within=window + 1)
        in_window = [r for r in p.probe.gets(since=start) if r.at <= start + window]
        assert len(in_window) <= budget * window + budget + 1
        assert len(in_window) >= budget * window * 0.7
        per_run = [
            sum(1 for r in in_window if r.path.endswith(f"/runs/{run.instance_id}")) for run in runs
        ]
        assert min(per_run) >= 2, per_run
        assert max(per_run) - min(per_run) <= 2, per_run
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        assert p.hub.active_watches == 0


async def test_slow_consumer_skips_to_newest_without_delaying_others(
    tmp_path: Path, serve: Serve
) -> None:
    """A subscriber that stops reading never delays another, and later skips to the newest state."""
    async with polled(tmp_path, serve) as p:
        run = await p.engine.trigger("approval", input={"orderId": "o-2"})
        slow = p.hub.watch_run("approval", run.instance_id, ANONYMOUS)
        first_slow = await anext(slow)
        fast: list[RunChange] = []
        reader = asyncio.create_task(
            collect(p.hub.watch_run("approval", run.instance_id, ANONYMOUS), fast)
        )
        await wait_for(lambda: waiting_for_approval(p.engine, run), what="the wait for approval")
        await wait_for(lambda: bool(fast) and fast[-1].run.status is RunStatus.PAUSED)
        await p.engine.send_event(
            "approval", run.instance_id, event_type="user-approval", payload={"approved": True}
        )
        await asyncio.wait_for(reader, 10)
        assert fast[-1].run.status is RunStatus.COMPLETE
        rest = [change async for change in slow]
        assert rest[-1].run.status is RunStatus.COMPLETE
        assert len(rest) == 1
        assert rest[0].previous_status == first_slow.run.status
        assert p.hub.active_watches == 0
        assert p.hub.subscriber_count == 0


async def test_runs_of_one_workflow_share_its_list_poll(tmp_path: Path, serve: Serve) -> None:
    """Several watched runs of one workflow ride one list poll; only a changed run is fetched."""
    async with polled(tmp_path, serve) as p:
        runs = [await p.engine.trigger("waiter") for _ in range(5)]
        received: dict[str, list[RunChange]] = {r.instance_id: [] for r in runs}
        readers = [
            asyncio.create_task(
                collect(
                    p.hub.watch_run("waiter", r.instance_id, ANONYMOUS), received[r.instance_id]
                )
            )
            for r in runs
        ]
        await wait_for(lambda: all(received.values()), what="every first state")

        def list_polls(since: float) -> int:
            return sum(1 for r in p.probe.gets(since=since) if r.path.endswith("/waiter/runs"))

        ready = time.monotonic()
        await wait_for(lambda: list_polls(ready) >= 2, what="the runs to ride the list poll")
        settled = time.monotonic()
        await wait_for(lambda: list_polls(settled) >= 4, what="four list polls")
        window = p.probe.gets(since=settled)
        details = [r for r in window if not r.path.endswith("/runs")]
        assert len(details) <= 1, details  # at most one own poll was already on its way
        assert p.hub.active_watches == 6  # five runs and the list that carries them
        changed = runs[2]
        await p.engine.send_event("waiter", changed.instance_id, event_type="go")
        await asyncio.wait_for(readers[2], 10)
        assert received[changed.instance_id][-1].run.output == {"went": True}
        assert p.probe.gets(changed.instance_id, since=settled)
        for other in runs[:2] + runs[3:]:
            assert statuses(received[other.instance_id]) == [RunStatus.PAUSED]
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        assert p.hub.active_watches == 0
        assert p.hub.subscriber_count == 0


def _state(status: RunStatus, output: object = None) -> Run:
    return Run("w", "r1", status, status.value, output=output)


def test_full_buffer_collapses_to_newest_state() -> None:
    """A subscriber that falls a whole buffer behind skips to the newest state, terminal kept."""
    metrics = Metrics()
    subscriber = Subscriber(capacity=2, metrics=metrics)
    now = datetime.now(UTC)
    for index, status in enumerate(
        [RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.PAUSED, RunStatus.RUNNING]
    ):
        subscriber.offer(_state(status, output=index), now)
    subscriber.offer(_state(RunStatus.COMPLETE, output="done"), now)
    subscriber.close()
    queued = list(subscriber._items)
    assert [c.run.status for c in queued] == [RunStatus.COMPLETE]
    assert queued[0].previous_status is None  # nothing was delivered before it
    assert b"runcast_live_dropped_changes_total 4.0" in metrics.render()


async def test_closing_the_hub_ends_its_subscriptions(tmp_path: Path, serve: Serve) -> None:
    """When the hub closes, its subscribers' streams end and its poller tasks are gone."""
    async with polled(tmp_path, serve) as p:
        run = await p.engine.trigger("waiter")
        reader, received = watch(p.hub, "waiter", run.instance_id)
        await wait_for(lambda: bool(received), what="the first state")
        await p.hub.aclose()
        await asyncio.wait_for(reader, 5)
        assert p.hub.subscriber_count == 0
        assert p.hub.active_watches == 0
        with pytest.raises(RuntimeError):
            await anext(p.hub.watch_run("waiter", run.instance_id, ANONYMOUS))


async def test_rate_limit_holds_every_watch(tmp_path: Path, serve: Serve) -> None:
    """A 429 with Retry-After stops the polls of every watch until it has passed."""
    async with polled(tmp_path, serve) as p:
        runs = [await p.engine.trigger("waiter") for _ in range(3)]
        received: list[list[RunChange]] = [[] for _ in runs]
        readers = [
            asyncio.create_task(
                collect(p.hub.watch_run("waiter", r.instance_id, Credentials(f"t{i}")), into)
            )
            for i, (r, into) in enumerate(zip(runs, received, strict=True))
        ]
        await wait_for(lambda: all(received), what="every first state")
        p.probe.faults.append(Fault("429", retry_after=0.6))
        await wait_for(lambda: not p.probe.faults, what="the 429 to be served")
        limited = p.probe.served[0][0]
        await wait_for(lambda: len(p.probe.gets(since=limited + 0.6)) >= 3, what="polls again")
        # Polls already on their way may land just after the 429; then nothing until it expires.
        held = [r for r in p.probe.gets(since=limited + 0.05) if r.at < limited + 0.55]
        assert held == []
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)


async def test_run_that_disappears_ends_with_not_found(tmp_path: Path, serve: Serve) -> None:
    """A watched run that the upstream no longer knows ends its subscribers with RunNotFound."""
    async with polled(tmp_path, serve) as p:
        run = await p.engine.trigger("waiter")
        changes = p.hub.watch_run("waiter", run.instance_id, ANONYMOUS)
        first = await anext(changes)
        assert first.run.status is RunStatus.PAUSED
        p.probe.gone.add(run.instance_id)
        with pytest.raises(RunNotFound):
            await anext(changes)
        assert p.hub.active_watches == 0
        assert p.hub.subscriber_count == 0
