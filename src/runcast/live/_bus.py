"""The change bus: pollers and pushes write observed run states to topics; subscribers read."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, runtime_checkable

from runcast.models import Run

Topic = tuple[str, ...]
"""What a watch publishes under: ``("run", fingerprint, workflow, instance)`` or
``("workflow", fingerprint, workflow)``. Keys only, never credentials."""


@runtime_checkable
class ChangeSink(Protocol):
    """Takes the states of one topic without ever blocking the writer (a subscriber's buffer)."""

    def offer(self, run: Run, observed_at: datetime) -> None:
        """Queue ``run`` as observed at ``observed_at`` (repeats are the sink's to drop)."""
        ...

    def close(self, error: BaseException | None = None) -> None:
        """No more states will come; end after what is queued, then raise ``error`` if given."""
        ...


@runtime_checkable
class ChangeBus(Protocol):
    """Carries observed run states from writers (pollers, pushes) to the readers of a topic.

    Promises: :meth:`publish` and :meth:`end` never block and never raise for a topic
    without readers; a reader gets a topic's states in the order they were published,
    from the moment it subscribed; :meth:`end` closes every reader of the topic (with
    ``error`` for each), after which the topic has no readers. An implementation that
    spans processes (Redis) delivers to the readers in every process, and encodes
    ``error`` as one of ``runcast.errors`` (its class and arguments), never a token.
    """

    def subscribe(self, topic: Topic, sink: ChangeSink) -> None:
        """Deliver what is published to ``topic`` from now on to ``sink``."""
        ...

    def unsubscribe(self, topic: Topic, sink: ChangeSink) -> None:
        """Stop delivering to ``sink`` (does not close it)."""
        ...

    def publish(self, topic: Topic, run: Run, observed_at: datetime) -> None:
        """Give ``run`` to every reader of ``topic``."""
        ...

    def end(self, topic: Topic, error: BaseException | None = None) -> None:
        """Close every reader of ``topic`` (with ``error``) and forget them."""
        ...


class LocalChangeBus:
    """The in-process :class:`ChangeBus`: a set of sinks per topic, called in publish order."""

    def __init__(self) -> None:
        self._sinks: dict[Topic, set[ChangeSink]] = {}

    def subscribe(self, topic: Topic, sink: ChangeSink) -> None:
        """Deliver what is published to ``topic`` from now on to ``sink``."""
        self._sinks.setdefault(topic, set()).add(sink)

    def unsubscribe(self, topic: Topic, sink: ChangeSink) -> None:
        """Stop delivering to ``sink`` (does not close it)."""
        sinks = self._sinks.get(topic)
        if sinks is not None:
            sinks.discard(sink)
            if not sinks:
                del self._sinks[topic]

    def publish(self, topic: Topic, run: Run, observed_at: datetime) -> None:
        """Give ``run`` to every reader of ``topic``."""
        for sink in self._sinks.get(topic, ()):
            sink.offer(run, observed_at)

    def end(self, topic: Topic, error: BaseException | None = None) -> None:
        """Close every reader of ``topic`` (with ``error``) and forget them."""
        for sink in self._sinks.pop(topic, ()):
            sink.close(error)

    def readers(self, topic: Topic) -> int:
        """How many sinks read ``topic`` in this process."""
        return len(self._sinks.get(topic, ()))
