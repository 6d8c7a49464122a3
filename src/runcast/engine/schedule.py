"""Cron schedules: a workflow with ``schedule:`` gets one run per tick (in UTC).

A scheduled run's instance id names its tick (``schedule-20260101T120500Z``), so
a tick never runs twice, and the newest one in the database tells, at start-up,
whether ticks were missed while the engine was down: then the latest missed
tick runs once (not once per missed tick). A schedule seen for the first time
starts with its next tick.

Time comes from a :class:`Clock`, so tests drive schedules with a fake one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Protocol

from croniter import croniter

from runcast.engine.definitions import WorkflowDefinition
from runcast.errors import AlreadyExists, RuncastError
from runcast.models import JSON, Run, RunPage

__all__ = [
    "INSTANCE_PREFIX",
    "Clock",
    "Scheduler",
    "SystemClock",
    "next_tick",
    "tick_instance_id",
]

log = logging.getLogger("runcast.engine")

INSTANCE_PREFIX = "schedule-"
_STAMP = "%Y%m%dT%H%M%SZ"
_SCAN_LIMIT = 1000
"""How many of a workflow's newest runs are searched for its newest scheduled run."""


class Clock(Protocol):
    """Tells the time and waits: the real one, or a test's fake."""

    def now(self) -> datetime:
        """The current time, aware, in UTC."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return after ``seconds`` have passed on this clock."""
        ...


class SystemClock:
    """The real time (``datetime.now(UTC)``) and ``asyncio.sleep``."""

    def now(self) -> datetime:
        """The current time, aware, in UTC."""
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        """``asyncio.sleep(seconds)``."""
        await asyncio.sleep(seconds)


class ScheduleTarget(Protocol):
    """What the scheduler needs of the engine: trigger runs and list a workflow's runs."""

    async def trigger(
        self, workflow_id: str, *, input: JSON = None, instance_id: str | None = None
    ) -> Run: ...

    async def list_runs(self, workflow_id: str, *, limit: int = 50) -> RunPage: ...


def tick_instance_id(tick: datetime) -> str:
    """The instance id of the run of ``tick``."""
    return INSTANCE_PREFIX + tick.astimezone(UTC).strftime(_STAMP)


def _tick_of(instance_id: str) -> datetime | None:
    if not instance_id.startswith(INSTANCE_PREFIX):
        return None
    try:
        return datetime.strptime(instance_id[len(INSTANCE_PREFIX) :], _STAMP).replace(tzinfo=UTC)
    except ValueError:
        return None


def next_tick(expression: str, after: datetime) -> datetime:
    """The first tick of cron ``expression`` strictly after ``after``."""
    result: datetime = croniter(expression, after).get_next(datetime)
    return result


def _previous_tick(expression: str, now: datetime) -> datetime:
    """The latest tick at or before ``now``."""
    if croniter.match(expression, now.replace(microsecond=0)) and now.microsecond == 0:
        return now
    result: datetime = croniter(expression, now).get_prev(datetime)
    return result


class Scheduler:
    """Triggers the scheduled workflows of ``definitions`` at their ticks, in one owned task.

    Args:
        target: the engine to trigger runs on.
        definitions: the engine's current definitions (read again after each change).
        clock: the time source.
    """

    def __init__(
        self,
        target: ScheduleTarget,
        definitions: Callable[[], Mapping[str, WorkflowDefinition]],
        *,
        clock: Clock,
    ) -> None:
        self._target = target
        self._definitions = definitions
        self.clock = clock
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start (or, after a change of definitions, restart) the scheduling task."""
        if self._task is not None:
            self._task.cancel()
        self._task = asyncio.create_task(self._run(), name="runcast-schedules")

    async def close(self) -> None:
        """Stop scheduling and wait for the task to end."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def next_run_at(self, definition: WorkflowDefinition) -> datetime | None:
        """When ``definition``'s schedule triggers next (``None`` without one)."""
        if definition.schedule is None:
            return None
        return next_tick(definition.schedule, self.clock.now())

    async def _run(self) -> None:
        scheduled = {
            key: definition
            for key, definition in self._definitions().items()
            if definition.schedule is not None
        }
        if not scheduled:
            return
        now = self.clock.now()
        for definition in scheduled.values():
            await self._catch_up(definition, now)
        due = {key: next_tick(str(d.schedule), now) for key, d in scheduled.items()}
        while True:
            key = min(due, key=lambda k: due[k])
            delay = (due[key] - self.clock.now()).total_seconds()
            if delay > 0:
                await self.clock.sleep(delay)
                continue
            await self._fire(scheduled[key], due[key])
            due[key] = next_tick(str(scheduled[key].schedule), due[key])

    async def _catch_up(self, definition: WorkflowDefinition, now: datetime) -> None:
        """Run the latest tick once if ticks were missed since the newest scheduled run."""
        assert definition.schedule is not None
        newest = await self._newest_tick(definition.id)
        if newest is None:
            return  # never scheduled before: start with the next tick
        latest = _previous_tick(definition.schedule, now)
        if latest > newest:
            log.info(
                "schedule of %r: ticks were missed since %s; running %s once",
                definition.id,
                newest.isoformat(),
                latest.isoformat(),
            )
            await self._fire(definition, latest)

    async def _newest_tick(self, workflow_id: str) -> datetime | None:
        try:
            page = await self._target.list_runs(workflow_id, limit=_SCAN_LIMIT)
        except RuncastError as exc:
            log.warning("schedule of %r: cannot list its runs: %s", workflow_id, exc.message)
            return None
        ticks = [tick for run in page.runs if (tick := _tick_of(run.instance_id)) is not None]
        return max(ticks, default=None)

    async def _fire(self, definition: WorkflowDefinition, tick: datetime) -> None:
        instance_id = tick_instance_id(tick)
        try:
            await self._target.trigger(
                definition.id, input=definition.schedule_input, instance_id=instance_id
            )
        except AlreadyExists:
            return  # this tick has run (the scheduler restarted after a reload)
        except RuncastError as exc:
            log.warning(
                "schedule of %r: run %s refused: %s", definition.id, instance_id, exc.message
            )
