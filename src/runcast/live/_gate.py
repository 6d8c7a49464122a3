"""The poll gate: which watches this process polls, when several processes share the work."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from runcast.live._bus import Topic
from runcast.live._change import Observable
from runcast.models import Run


class PollGate(Protocol):
    """Says whether this process should poll a watch now.

    In cluster mode only the holder of a topic's lease polls for it (or every process,
    while Redis is gone); the others receive its changes over the change bus. A watch
    the gate refuses is not polled again until the gate's owner asks the hub to
    (``LiveHub.poll_now`` when a lease is taken, ``LiveHub.poll_all`` when it opens).
    """

    def may_poll(self, topics: Iterable[Topic]) -> bool:
        """Whether a watch whose polls serve ``topics`` should poll here now."""
        ...

    async def prior_states(self, topic: Topic) -> Mapping[str, Observable] | None:
        """What the processes that polled a workflow ``topic`` before knew of each run.

        A process that starts polling a workflow's runs compares its first list with this
        (instead of only learning what is there), so the changes made since the last
        poll elsewhere are delivered. ``None`` when nothing is known.
        """
        ...

    def keep_baseline(self, topic: Topic, runs: Iterable[Run]) -> None:
        """Keep what a first poll of a workflow ``topic`` saw (for :meth:`prior_states`)."""
        ...
