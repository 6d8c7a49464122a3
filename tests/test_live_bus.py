"""The in-process change bus: readers per topic, publish order, and ending a topic."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from runcast.errors import RunNotFound
from runcast.live import ChangeBus, LocalChangeBus, Topic
from runcast.live._subscriber import Subscriber
from runcast.metrics import Metrics
from runcast.models import Run, RunStatus

TOPIC: Topic = ("run", "anonymous", "w", "r1")
OTHER: Topic = ("run", "anonymous", "w", "r2")


def _run(status: RunStatus, instance_id: str = "r1") -> Run:
    return Run("w", instance_id, status, status.value)


async def test_readers_get_their_topics_states_in_publish_order() -> None:
    """Each reader gets the states of its topic only, in the order they were published."""
    bus = LocalChangeBus()
    assert isinstance(bus, ChangeBus)
    mine = Subscriber(capacity=8, metrics=Metrics())
    theirs = Subscriber(capacity=8, metrics=Metrics())
    bus.subscribe(TOPIC, mine)
    bus.subscribe(OTHER, theirs)
    now = datetime.now(UTC)
    for status in (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.COMPLETE):
        bus.publish(TOPIC, _run(status), now)
    bus.publish(OTHER, _run(RunStatus.RUNNING, "r2"), now)
    mine.close()
    got = []
    while (change := await mine.next()) is not None:
        got.append(change.run.status)
    assert got == [RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.COMPLETE]
    assert bus.readers(OTHER) == 1


async def test_end_closes_every_reader_with_the_error() -> None:
    """Ending a topic closes its readers with the error and forgets them; others stay."""
    bus = LocalChangeBus()
    readers = [Subscriber(capacity=1, metrics=Metrics()) for _ in range(2)]
    left = Subscriber(capacity=1, metrics=Metrics())
    for reader in [*readers, left]:
        bus.subscribe(TOPIC, reader)
    bus.unsubscribe(TOPIC, left)
    bus.end(TOPIC, RunNotFound("w", "r1"))
    for reader in readers:
        with pytest.raises(RunNotFound):
            await reader.next()
    assert not left.closed
    assert bus.readers(TOPIC) == 0
    bus.publish(TOPIC, _run(RunStatus.RUNNING), datetime.now(UTC))  # no readers: nothing happens
