"""workflowRuns polling past the first page: old unfinished runs, request counts, the budget."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

from starlette.types import ASGIApp

from live_support import FAST, Request, UpstreamProbe, open_engine, wait_for
from runcast.engine import Engine
from runcast.engine.server import create_engine_app
from runcast.live import LiveHub, RunChange
from runcast.metrics import Metrics
from runcast.models import ANONYMOUS, Run, RunStatus
from runcast.settings import Settings
from runcast.upstream.awaitstep import AwaitStepUpstream

Serve = Callable[[ASGIApp], AbstractAsyncContextManager[str]]

PAGE = 3
"""The list page size of these tests, so that a few runs fill several pages."""
SMALL_PAGES = FAST.replace(live_list_page_size=PAGE)


@dataclass
class Polled:
    """A hub polling the engine's REST API through the AwaitStep adapter."""

    engine: Engine
    probe: UpstreamProbe
    hub: LiveHub

    def requests(self, since: float = 0.0) -> list[Request]:
        """Every request the upstream received after ``since``."""
        return [r for r in self.probe.requests if r.at >= since]


@asynccontextmanager
async def polled(
    tmp_path: Path, serve: Serve, settings: Settings = SMALL_PAGES
) -> AsyncIterator[Polled]:
    """An engine, its REST app behind a probe on a real socket, and a hub polling it."""
    async with open_engine(tmp_path) as engine:
        probe = UpstreamProbe(create_engine_app(engine))
        async with serve(probe) as url:
            upstream = AwaitStepUpstream(url, settings=settings)
            try:
                async with LiveHub(upstream, settings, metrics=Metrics()) as hub:
                    yield Polled(engine, probe, hub)
            finally:
                await upstream.aclose()


async def finished_runs(engine: Engine, count: int) -> list[Run]:
    """``count`` runs of ``waiter`` that have completed."""
    runs = [await engine.trigger("waiter") for _ in range(count)]
    for run in runs:
        await wait_for(lambda run=run: paused(engine, run), what="the wait for go")
        await engine.send_event("waiter", run.instance_id, event_type="go")
    for run in runs:
        await wait_for(lambda run=run: finished(engine, run), what="the run to complete")
    return runs


async def paused_behind(engine: Engine, count: int) -> Run:
    """A ``waiter`` run waiting for its event, with ``count`` completed runs newer than it."""
    old = await engine.trigger("waiter")
    await wait_for(lambda: paused(engine, old), what="the old run to pause")
    await finished_runs(engine, count)
    return old


async def paused(engine: Engine, run: Run) -> bool:
    """Whether ``run`` is waiting for its event."""
    return (await engine.get_run(run.workflow_id, run.instance_id)).status is RunStatus.PAUSED


async def finished(engine: Engine, run: Run) -> bool:
    """Whether ``run`` has completed."""
    return (await engine.get_run(run.workflow_id, run.instance_id)).status is RunStatus.COMPLETE


async def collect(changes: AsyncIterator[RunChange], into: list[RunChange]) -> None:
    """Append every change to ``into`` until the stream ends."""
    async for change in changes:
        into.append(change)


def shape(request: Request) -> str:
    """What a request asked for: ``first`` page, ``next`` page, ``unfinished`` listing, ``run``."""
    if not request.path.endswith("/runs"):
        return "run"
    params = parse_qs(request.query)
    if "status" in params:
        return "unfinished"
    return "next" if "cursor" in params else "first"


async def test_change_to_a_run_older_than_the_first_page_is_delivered(
    tmp_path: Path, serve: Serve
) -> None:
    """An old paused run beyond the first page that gets its event and completes is delivered."""
    async with polled(tmp_path, serve) as p:
        old = await paused_behind(p.engine, PAGE + 2)  # the old run is now on the second page
        everything: list[RunChange] = []
        completed: list[RunChange] = []
        readers = [
            asyncio.create_task(collect(p.hub.watch_workflow("waiter", None, ANONYMOUS), into))
            for into in (everything,)
        ] + [
            asyncio.create_task(
                collect(p.hub.watch_workflow("waiter", {RunStatus.COMPLETE}, ANONYMOUS), completed)
            )
        ]
        await wait_for(lambda: p.hub.subscriber_count == 2, what="both subscribers")
        await p.engine.send_event("waiter", old.instance_id, event_type="go")
        await wait_for(lambda: bool(completed), what="the old run's completion")
        assert [(c.run.instance_id, c.run.status) for c in completed] == [
            (old.instance_id, RunStatus.COMPLETE)
        ]
        assert completed[0].run.output == {"went": True}
        await wait_for(lambda: bool(everything), what="the change for the other subscriber")
        assert everything[-1].run.instance_id == old.instance_id
        assert everything[-1].run.status is RunStatus.COMPLETE
        # Once finished it is not looked for again: back to one request per poll.
        settled = time.monotonic()
        await wait_for(lambda: len(p.requests(settled)) >= 6, what="six more polls")
        assert {shape(r) for r in p.requests(settled)} == {"first"}
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        assert p.hub.active_watches == 0


async def test_many_finished_runs_cost_one_list_call_per_poll(tmp_path: Path, serve: Serve) -> None:
    """With pages of finished runs behind the first, each poll in steady state is one list call."""
    async with polled(tmp_path, serve) as p:
        await finished_runs(p.engine, PAGE * 5)
        start = time.monotonic()
        received: list[RunChange] = []
        reader = asyncio.create_task(
            collect(p.hub.watch_workflow("waiter", None, ANONYMOUS), received)
        )
        await wait_for(lambda: p.hub.subscriber_count == 1, what="the baseline")
        baseline = [shape(r) for r in p.requests(start)]
        # The newest page, then one listing of unfinished runs (none) to find old ones.
        assert baseline[:2] == ["first", "unfinished"], baseline
        settled = time.monotonic()
        await wait_for(lambda: len(p.requests(settled)) >= 10, what="ten polls")
        polls = p.requests(settled)
        assert {shape(r) for r in polls} == {"first"}
        gaps = [b.at - a.at for a, b in itertools.pairwise(polls)]
        assert min(gaps) > SMALL_PAGES.poll_min_interval * 0.5  # one call per poll, not a walk
        # A new run is still seen at the head of the list, with no extra request.
        fresh = await p.engine.trigger("waiter")
        await wait_for(lambda: any(c.run.instance_id == fresh.instance_id for c in received))
        assert {shape(r) for r in p.requests(settled)} == {"first"}
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


async def test_burst_of_new_runs_longer_than_a_page_is_delivered(
    tmp_path: Path, serve: Serve
) -> None:
    """More runs created between two polls than a page holds are all delivered (pages followed)."""
    settings = SMALL_PAGES.replace(poll_min_interval=0.6, poll_max_interval=0.6)
    async with polled(tmp_path, serve, settings) as p:
        await finished_runs(p.engine, PAGE)
        received: list[RunChange] = []
        reader = asyncio.create_task(
            collect(p.hub.watch_workflow("waiter", None, ANONYMOUS), received)
        )
        await wait_for(lambda: p.hub.subscriber_count == 1, what="the baseline")
        burst = [await p.engine.trigger("waiter") for _ in range(PAGE * 2 + 1)]
        wanted = {run.instance_id for run in burst}
        await wait_for(
            lambda: wanted <= {c.run.instance_id for c in received}, what="every new run"
        )
        assert "next" in {shape(r) for r in p.probe.requests}
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


async def test_old_unfinished_run_costs_one_more_listing_per_poll(
    tmp_path: Path, serve: Serve
) -> None:
    """An unfinished run behind the first page adds one listing of unfinished runs, not a walk."""
    async with polled(tmp_path, serve) as p:
        await paused_behind(p.engine, PAGE * 4)  # four pages of finished runs in front of it
        reader = asyncio.create_task(collect(p.hub.watch_workflow("waiter", None, ANONYMOUS), []))
        await wait_for(lambda: p.hub.subscriber_count == 1, what="the baseline")
        settled = time.monotonic()
        await wait_for(lambda: len(p.requests(settled)) >= 12, what="six polls")
        shapes = [shape(r) for r in p.requests(settled)]
        assert set(shapes) == {"first", "unfinished"}, shapes
        assert abs(shapes.count("first") - shapes.count("unfinished")) <= 1, shapes
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


async def test_every_page_counts_against_the_budget(tmp_path: Path, serve: Serve) -> None:
    """When each poll needs two requests, the request rate still stays within the budget."""
    budget = 10.0
    settings = SMALL_PAGES.replace(
        poll_min_interval=0.01, poll_max_interval=0.01, request_budget_per_second=budget
    )
    async with polled(tmp_path, serve, settings) as p:
        await paused_behind(p.engine, PAGE + 1)
        reader = asyncio.create_task(collect(p.hub.watch_workflow("waiter", None, ANONYMOUS), []))
        await wait_for(lambda: p.hub.subscriber_count == 1, what="the baseline")
        start = time.monotonic()
        window = 3.0
        await wait_for(lambda: time.monotonic() - start > window, within=window + 1)
        in_window = [r for r in p.requests(start) if r.at <= start + window]
        shapes = {shape(r) for r in in_window}
        assert shapes == {"first", "unfinished"}, shapes
        # Budgeting only each poll's first request would let about twice this through.
        assert len(in_window) <= budget * window + budget + 1, len(in_window)
        assert len(in_window) >= budget * window * 0.7, len(in_window)
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


async def test_unfinished_status_filter_is_sent_upstream(tmp_path: Path, serve: Serve) -> None:
    """A filter of unfinished statuses is one filtered list call per poll, then widens cleanly."""
    async with polled(tmp_path, serve) as p:
        old = await paused_behind(p.engine, PAGE * 3)
        paused_changes: list[RunChange] = []
        readers = [
            asyncio.create_task(
                collect(
                    p.hub.watch_workflow("waiter", {RunStatus.PAUSED}, ANONYMOUS), paused_changes
                )
            )
        ]
        await wait_for(lambda: p.hub.subscriber_count == 1, what="the baseline")
        settled = time.monotonic()
        await wait_for(lambda: len(p.requests(settled)) >= 6, what="six polls")
        assert {parse_qs(r.query).get("status") == ["paused"] for r in p.requests(settled)} == {
            True
        }
        fresh = await p.engine.trigger("waiter")
        await wait_for(lambda: bool(paused_changes), what="the new paused run")
        assert [(c.run.instance_id, c.run.status) for c in paused_changes] == [
            (fresh.instance_id, RunStatus.PAUSED)
        ]
        # A subscriber to every run joins: no finished run is reported to it as news.
        everything: list[RunChange] = []
        readers.append(
            asyncio.create_task(
                collect(p.hub.watch_workflow("waiter", None, ANONYMOUS), everything)
            )
        )
        await wait_for(lambda: p.hub.subscriber_count == 2, what="the second subscriber")
        widened = time.monotonic()
        await wait_for(lambda: len(p.requests(widened)) >= 6, what="six polls")
        assert everything == []
        assert "first" in {shape(r) for r in p.requests(widened)}
        await p.engine.send_event("waiter", old.instance_id, event_type="go")
        await wait_for(lambda: bool(everything), what="the old run's completion")
        assert everything[-1].run.instance_id == old.instance_id
        assert everything[-1].run.status is RunStatus.COMPLETE
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
