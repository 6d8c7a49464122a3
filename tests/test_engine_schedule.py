"""Cron schedules on the real engine with a fake clock: ticks, missed ticks, the next tick."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from engine_support import wait_for_status
from gateway_client import gateway
from runcast.engine import Engine, load_workflows
from runcast.engine.schedule import tick_instance_id
from runcast.models import RunStatus
from runcast.settings import Settings
from runcast.upstream.local import LocalUpstream

SCHEDULED = """
id: report
schedule: "*/5 * * * *"
schedule_input: {kind: nightly}
input_schema: {type: object, required: [kind]}
nodes:
  - step: build
    action: {return: {kind: input.kind}}
"""


class FakeClock:
    """A clock that moves only when the test says so; sleepers wake when their time comes."""

    def __init__(self, now: datetime) -> None:
        self._now = now
        self._moved = asyncio.Condition()
        self.sleepers = 0

    def now(self) -> datetime:
        """The time the test set."""
        return self._now

    async def sleep(self, seconds: float) -> None:
        """Wait until the test has moved the clock past ``seconds`` from now."""
        until = self._now + timedelta(seconds=seconds)
        async with self._moved:
            self.sleepers += 1
            try:
                await self._moved.wait_for(lambda: self._now >= until)
            finally:
                self.sleepers -= 1

    async def advance_to(self, moment: datetime) -> None:
        """Move the clock and wake the sleepers whose time has come."""
        async with self._moved:
            self._now = moment
            self._moved.notify_all()


def at(hour: int, minute: int, second: int = 0) -> datetime:
    """A moment on one fixed day, in UTC."""
    return datetime(2026, 3, 14, hour, minute, second, tzinfo=UTC)


@asynccontextmanager
async def scheduled_engine(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Engine]:
    """An engine on the scheduled workflow, with ``clock``, on one database file."""
    folder = tmp_path / "workflows"
    folder.mkdir(exist_ok=True)
    (folder / "report.yaml").write_text(textwrap.dedent(SCHEDULED), encoding="utf-8")
    result = load_workflows(folder)
    assert result.problems == []
    async with Engine(result.definitions, db_path=tmp_path / "runs.db", clock=clock) as engine:
        yield engine


async def instance_ids(engine: Engine) -> list[str]:
    """The workflow's run ids, oldest first."""
    page = await engine.list_runs("report", limit=100)
    return [run.instance_id for run in reversed(page.runs)]


async def wait_for_ids(engine: Engine, expected: list[str]) -> None:
    """Poll until the workflow's runs are exactly ``expected``."""
    found: list[str] = []
    try:
        async with asyncio.timeout(10):
            while True:
                found = await instance_ids(engine)
                if found == expected:
                    return
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"runs {found}, expected {expected}") from None


async def settled(clock: FakeClock) -> None:
    """Wait until the scheduler sleeps on the clock again (it has acted on the last move)."""
    async with asyncio.timeout(10):
        while True:
            if clock.sleepers:
                return
            await asyncio.sleep(0.01)


async def test_each_tick_triggers_one_run_with_the_schedule_input(tmp_path: Path) -> None:
    """At each tick one run starts, named by its tick, with schedule_input as its input."""
    clock = FakeClock(at(10, 2))
    async with scheduled_engine(tmp_path, clock) as engine:
        await settled(clock)
        assert await instance_ids(engine) == []  # a new schedule does not run a past tick
        assert engine.get_workflow("report").next_scheduled_at == at(10, 5)
        await clock.advance_to(at(10, 5))
        await wait_for_ids(engine, [tick_instance_id(at(10, 5))])
        await settled(clock)
        assert engine.get_workflow("report").next_scheduled_at == at(10, 10)
        await clock.advance_to(at(10, 10, 30))
        await wait_for_ids(engine, [tick_instance_id(at(10, 5)), tick_instance_id(at(10, 10))])
        run = await engine.get_run("report", tick_instance_id(at(10, 5)))
        assert run.input == {"kind": "nightly"}
        assert run.instance_id == "schedule-20260314T100500Z"


async def test_missed_ticks_run_once_at_start_up(tmp_path: Path) -> None:
    """Ticks missed while the engine was down run once on start-up, not once per tick."""
    clock = FakeClock(at(10, 4))
    async with scheduled_engine(tmp_path, clock) as engine:
        await settled(clock)
        await clock.advance_to(at(10, 5))
        await wait_for_ids(engine, [tick_instance_id(at(10, 5))])
    later = FakeClock(at(10, 31))  # six ticks passed while it was down
    async with scheduled_engine(tmp_path, later) as engine:
        await wait_for_ids(engine, [tick_instance_id(at(10, 5)), tick_instance_id(at(10, 30))])
        await settled(later)
        assert engine.get_workflow("report").next_scheduled_at == at(10, 35)
        await later.advance_to(at(10, 35))
        await wait_for_ids(
            engine,
            [tick_instance_id(moment) for moment in (at(10, 5), at(10, 30), at(10, 35))],
        )
        for instance_id in await instance_ids(engine):
            run = await wait_for_status(engine, "report", instance_id, RunStatus.COMPLETE)
            assert run.output == {"kind": "nightly"}


async def test_graphql_shows_the_schedule_and_its_next_tick(tmp_path: Path) -> None:
    """Workflow.schedule and Workflow.nextScheduledAt come from the file and the clock."""
    clock = FakeClock(at(23, 58))
    async with (
        scheduled_engine(tmp_path, clock) as engine,
        gateway(LocalUpstream(engine), Settings()) as gql,
    ):
        data = await gql.data('{ workflow(id: "report") { schedule nextScheduledAt } }')
    assert data["workflow"] == {
        "schedule": "*/5 * * * *",
        "nextScheduledAt": "2026-03-15T00:00:00+00:00",
    }
