"""Changes from list items: carried runs cost no GET each, first messages come in bulk."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp

from live_support import FAST, GraphQLSocket, UpstreamProbe, open_engine, wait_for
from runcast.app import create_app
from runcast.engine import Engine
from runcast.engine.server import create_engine_app
from runcast.live import LiveHub, RunChange
from runcast.live._context import QUIET_FLOOR, Intervals, quiet_interval
from runcast.metrics import Metrics
from runcast.models import ANONYMOUS, Run, RunStatus
from runcast.upstream.awaitstep import AwaitStepUpstream

Serve = Callable[[ASGIApp], AbstractAsyncContextManager[str]]

SUMMARY_FIELDS = frozenset({"instanceId", "status", "output", "error"})
WATCH_SUMMARY = """
subscription Watch($workflowId: ID!, $instanceId: ID!) {
  runStatus(workflowId: $workflowId, instanceId: $instanceId) {
    status previousStatus run { ...summary }
  }
}
fragment summary on Run { instanceId status output error endedAt }
"""
WATCH_STEPS = """
subscription Watch($workflowId: ID!, $instanceId: ID!) {
  runStatus(workflowId: $workflowId, instanceId: $instanceId) {
    status run { instanceId status steps { name status } }
  }
}
"""


@dataclass
class Stack:
    """An engine, its REST app behind a probe on a real socket, and the adapter in front."""

    engine: Engine
    probe: UpstreamProbe
    upstream: AwaitStepUpstream

    def detail_gets(self, runs: list[Run], since: float = 0.0) -> int:
        """GETs of any of ``runs`` one by one, after ``since``."""
        return sum(len(self.probe.gets(run.instance_id, since=since)) for run in runs)


@asynccontextmanager
async def stack(tmp_path: Path, serve: Serve) -> AsyncIterator[Stack]:
    """The engine's REST API on a socket, probed, and an AwaitStep adapter for it."""
    async with open_engine(tmp_path) as engine:
        probe = UpstreamProbe(create_engine_app(engine))
        async with serve(probe) as url:
            upstream = AwaitStepUpstream(url, settings=FAST)
            try:
                yield Stack(engine, probe, upstream)
            finally:
                await upstream.aclose()


async def paused_runs(engine: Engine, count: int) -> list[Run]:
    """``count`` runs of ``waiter``, each waiting for its event."""
    runs = [await engine.trigger("waiter") for _ in range(count)]
    for run in runs:
        await wait_for(
            lambda run=run: _status_is(engine, run, RunStatus.PAUSED), what="the wait for go"
        )
    return runs


async def _status_is(engine: Engine, run: Run, status: RunStatus) -> bool:
    return (await engine.get_run(run.workflow_id, run.instance_id)).status is status


async def collect(changes: AsyncIterator[RunChange], into: list[RunChange]) -> None:
    """Append every change to ``into`` until the stream ends."""
    async for change in changes:
        into.append(change)


async def test_list_items_carry_status_output_error_and_timestamps(
    tmp_path: Path, serve: Serve
) -> None:
    """The engine's list items, read by the AwaitStep adapter, hold output, error and times."""
    async with stack(tmp_path, serve) as s:
        (run,) = await paused_runs(s.engine, 1)
        await s.engine.send_event("waiter", run.instance_id, event_type="go")
        await wait_for(lambda: _status_is(s.engine, run, RunStatus.COMPLETE))
        page = await s.upstream.list_runs("waiter", credentials=ANONYMOUS)
        (item,) = page.runs
        detail = await s.upstream.get_run("waiter", run.instance_id, credentials=ANONYMOUS)
        assert item.observable() == detail.observable()
        assert item.output == {"went": True}
        assert item.error is None
        assert (item.created_at, item.started_at, item.ended_at) == (
            detail.created_at,
            detail.started_at,
            detail.ended_at,
        )
        assert item.ended_at is not None
        assert (item.workflow_version, item.wait) == (detail.workflow_version, detail.wait)
        (waiting,) = await paused_runs(s.engine, 1)
        listed = await s.upstream.list_runs("waiter", limit=1, credentials=ANONYMOUS)
        assert listed.runs[0].instance_id == waiting.instance_id
        assert listed.runs[0].wait is not None
        assert listed.runs[0].wait.event_type == "go"


async def test_changes_of_carried_runs_are_delivered_from_the_list(
    tmp_path: Path, serve: Serve
) -> None:
    """Watched runs of one workflow get first states and changes from list reads, no GET each."""
    async with stack(tmp_path, serve) as s:
        runs = await paused_runs(s.engine, 12)
        async with LiveHub(s.upstream, FAST, metrics=Metrics()) as hub:
            received: dict[str, list[RunChange]] = {r.instance_id: [] for r in runs}
            readers = [
                asyncio.create_task(
                    collect(
                        hub.watch_run("waiter", r.instance_id, ANONYMOUS, fields=SUMMARY_FIELDS),
                        received[r.instance_id],
                    )
                )
                for r in runs
            ]
            await wait_for(lambda: all(received.values()), what="every first state")
            # Only the subscriber that came before the list poll existed costs GETs: its
            # first, and its next own poll if the list read outlasts one interval.
            assert s.detail_gets(runs) <= 2
            settled = s.probe.requests[-1].at
            for run in runs:
                await s.engine.send_event("waiter", run.instance_id, event_type="go")
            await asyncio.wait_for(asyncio.gather(*readers), 10)
            for changes in received.values():
                assert changes[-1].run.status is RunStatus.COMPLETE
                assert changes[-1].run.output == {"went": True}
                assert changes[-1].previous_status is not None
            assert s.detail_gets(runs, since=settled) == 0
            assert hub.active_watches == 0


async def test_bulk_first_messages_share_list_reads(tmp_path: Path, serve: Serve) -> None:
    """Sixty subscribers arriving together on sixty runs cost a few list reads, not sixty GETs."""
    async with stack(tmp_path, serve) as s:
        runs = await paused_runs(s.engine, 60)
        async with LiveHub(
            s.upstream, FAST.replace(live_list_page_size=25), metrics=Metrics()
        ) as hub:
            start = s.probe.requests[-1].at if s.probe.requests else 0.0
            streams = [
                hub.watch_run("waiter", r.instance_id, ANONYMOUS, fields=SUMMARY_FIELDS)
                for r in runs
            ]
            firsts = await asyncio.wait_for(asyncio.gather(*(anext(c) for c in streams)), 10)
            assert [f.run.instance_id for f in firsts] == [r.instance_id for r in runs]
            assert all(f.run.status is RunStatus.PAUSED for f in firsts)
            assert s.detail_gets(runs, since=start) <= 2  # the first subscriber's, as above
            first_reads = [r for r in s.probe.gets(since=start) if r.path.endswith("/runs")]
            assert len(first_reads) <= 3 * 2, first_reads  # three pages of 25, twice at most
            for changes in streams:
                await changes.aclose()


async def test_gateway_delivers_selected_fields_from_list_items(
    tmp_path: Path, serve: Serve
) -> None:
    """Through the gateway, output and steps (the engine lists them) arrive with no GET."""
    settings = FAST
    async with AsyncExitStack() as exits, stack(tmp_path, serve) as s:
        url = await exits.enter_async_context(serve(create_app(settings, upstream=s.upstream)))
        runs = await paused_runs(s.engine, 3)
        sockets = [await exits.enter_async_context(GraphQLSocket.connect(url)) for _ in runs]
        stepped = await exits.enter_async_context(GraphQLSocket.connect(url))
        for ws, run in zip(sockets, runs, strict=True):
            await ws.subscribe("1", WATCH_SUMMARY, _variables(run))
        await stepped.subscribe("1", WATCH_STEPS, _variables(runs[0]))
        firsts = [await ws.receive() for ws in [*sockets, stepped]]
        assert all(m["type"] == "next" for m in firsts), firsts
        settled = s.probe.requests[-1].at
        readers = [asyncio.create_task(ws.updates("1", "runStatus")) for ws in [*sockets, stepped]]
        for run in runs:
            await s.engine.send_event("waiter", run.instance_id, event_type="go")
        *summaries, steps = await asyncio.wait_for(asyncio.gather(*readers), 10)
        for updates in summaries:
            assert updates[-1]["status"] == "COMPLETE"
            assert updates[-1]["run"]["output"] == {"went": True}
        assert steps[-1]["run"]["steps"][-1] == {"name": "done", "status": "complete"}
        assert s.detail_gets(runs, since=settled) == 0


async def test_selection_the_list_lacks_is_read_from_the_run(tmp_path: Path, serve: Serve) -> None:
    """A subscriber whose selection is unknown gets each change from a GET of the run."""
    async with stack(tmp_path, serve) as s:
        runs = await paused_runs(s.engine, 3)
        async with LiveHub(s.upstream, FAST, metrics=Metrics()) as hub:
            received: list[RunChange] = []
            readers = [
                asyncio.create_task(
                    collect(hub.watch_run("waiter", runs[0].instance_id, ANONYMOUS), received)
                ),
                *(
                    asyncio.create_task(
                        collect(
                            hub.watch_run(
                                "waiter", r.instance_id, ANONYMOUS, fields=SUMMARY_FIELDS
                            ),
                            [],
                        )
                    )
                    for r in runs[1:]
                ),
            ]
            await wait_for(lambda: hub.subscriber_count == 3 and bool(received))
            await wait_for(lambda: hub.active_watches == 4, what="the list poll")
            settled = s.probe.requests[-1].at
            for run in runs:
                await s.engine.send_event("waiter", run.instance_id, event_type="go")
            await asyncio.wait_for(asyncio.gather(*readers), 10)
            assert received[-1].run.status is RunStatus.COMPLETE
            assert s.detail_gets(runs[:1], since=settled) >= 1
            assert s.detail_gets(runs[1:], since=settled) == 0


def _variables(run: Run) -> dict[str, Any]:
    return {"workflowId": run.workflow_id, "instanceId": run.instance_id}


def test_quiet_interval_follows_budget_and_watch_count() -> None:
    """A quiet watch waits longer only as watches outnumber the budget, up to the ceiling."""
    intervals = Intervals(minimum=1.0, maximum=30.0)
    assert quiet_interval(3.0, 1, intervals) == QUIET_FLOOR
    assert quiet_interval(3.0, 30, intervals) == 20.0  # 30 watches on half of 3 requests/s
    assert quiet_interval(3.0, 500, intervals) == 30.0
    assert quiet_interval(None, 10_000, intervals) == QUIET_FLOOR
    assert quiet_interval(3.0, 1, Intervals(minimum=0.05, maximum=0.2)) == 0.2


async def test_list_poll_reads_the_pages_its_runs_span_and_no_more(
    tmp_path: Path, serve: Serve
) -> None:
    """Watched runs spanning three pages cost three list reads a poll, never the history."""
    async with stack(tmp_path, serve) as s:
        history = await paused_runs(s.engine, 6)
        for run in history:
            await s.engine.send_event("waiter", run.instance_id, event_type="go")
        for run in history:
            await wait_for(lambda run=run: _status_is(s.engine, run, RunStatus.COMPLETE))
        runs = await paused_runs(s.engine, 7)  # newest first: pages of 3, 3 and 1 (+2 old)
        settings = FAST.replace(live_list_page_size=3)
        async with LiveHub(s.upstream, settings, metrics=Metrics()) as hub:
            received: list[list[RunChange]] = [[] for _ in runs]
            readers = [
                asyncio.create_task(
                    collect(
                        hub.watch_run("waiter", r.instance_id, ANONYMOUS, fields=SUMMARY_FIELDS),
                        into,
                    )
                )
                for r, into in zip(runs, received, strict=True)
            ]
            await wait_for(lambda: all(received), what="every first state")
            subscribed = s.probe.requests[-1].at

            def poll_starts(since: float) -> list[float]:
                return [r.at for r in s.probe.gets(since=since) if r.query == "limit=3"]

            await wait_for(lambda: len(poll_starts(subscribed)) >= 2, what="a poll after the first")
            settled = poll_starts(subscribed)[1]
            await wait_for(lambda: len(s.probe.gets(since=settled)) >= 12, what="four polls")
            pages = [r.query for r in s.probe.gets(since=settled)]
            firsts = [q for q in pages if "cursor" not in q]
            assert all("status" not in q for q in pages), pages
            assert len(pages) <= 3 * len(firsts) + 3, pages  # three pages a poll, at most
            assert len(pages) >= 3 * (len(firsts) - 1), pages
            assert s.detail_gets(runs, since=settled) == 0
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
