"""The poll gate: which watches this process polls, when several processes share the work."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from runcast.live._bus import Topic


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
