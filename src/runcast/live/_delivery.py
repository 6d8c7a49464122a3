"""The delivery side: a bounded slot per subscription, read from the bus; pushes onto the bus."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection

from runcast.live._change import RunChange
from runcast.live._context import LiveContext, now
from runcast.live._selection import RunFields
from runcast.live._subscriber import Subscriber
from runcast.models import Run, RunStatus

PUSH_BUFFER = 256
"""Changes buffered per subscriber when the upstream pushes them (order is kept)."""
WORKFLOW_BUFFER = 256
"""Changes buffered per ``workflowRuns`` subscriber when polling (one per run at most)."""


class Delivery:
    """Makes each subscription's slot and relays it to the subscriber; relays pushes to the bus.

    A polled ``runStatus`` subscriber gets a latest-value slot (a slow reader skips
    to the newest state); pushed changes and ``workflowRuns`` get a bounded buffer.

    Args:
        ctx: the live layer's parts (metrics, registry, bus).
        pushes: whether the upstream pushes its changes (nothing is polled).
    """

    def __init__(self, ctx: LiveContext, *, pushes: bool) -> None:
        self._ctx = ctx
        self._pushes = pushes

    def run_slot(self, fields: RunFields) -> Subscriber:
        """A slot for one ``runStatus`` subscription that selected ``fields`` of the run."""
        return Subscriber(
            capacity=PUSH_BUFFER if self._pushes else 1, metrics=self._ctx.metrics, fields=fields
        )

    def workflow_slot(self, statuses: Collection[RunStatus] | None) -> Subscriber:
        """A slot for one ``workflowRuns`` subscription, optionally only ``statuses``."""
        return Subscriber(
            capacity=PUSH_BUFFER if self._pushes else WORKFLOW_BUFFER,
            metrics=self._ctx.metrics,
            statuses=statuses,
        )

    async def relay(
        self, subscriber: Subscriber, *, until_terminal: bool
    ) -> AsyncIterator[RunChange]:
        """Each change of ``subscriber``'s slot until it closes (or after a terminal state)."""
        while True:
            change = await subscriber.next()
            if change is None:
                return
            latency = (now() - change.observed_at).total_seconds()
            self._ctx.metrics.delivery_latency.observe(max(0.0, latency))
            yield change
            if until_terminal and change.run.is_terminal:
                return

    def on_pushed(self, run: Run) -> None:
        """Publish a pushed state to every watch of the run and of its workflow."""
        ctx = self._ctx
        observed_at = now()
        for watch in ctx.registry.of_subject((run.workflow_id, run.instance_id)):
            ctx.bus.publish(watch.topic, run, observed_at)
            if run.is_terminal:
                ctx.end(watch, None)
        for watch in ctx.registry.of_subject((run.workflow_id,)):
            ctx.bus.publish(watch.topic, run, observed_at)
