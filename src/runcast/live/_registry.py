"""The watch registry: every watch, its subscribers and the indexes over them, in one place."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from runcast.live._bus import ChangeBus, Topic
from runcast.live._subscriber import Subscriber
from runcast.metrics import Metrics

if TYPE_CHECKING:
    from runcast.live._watch import RunWatch, Watch

WorkflowKey = tuple[str, str]
"""(credentials fingerprint, workflow id)."""

W = TypeVar("W", bound="Watch")


class WatchRegistry:
    """Watches by topic, by subject (what they watch, across credentials), riders by workflow.

    Watches enter through :meth:`obtain` and leave through :meth:`remove`; subscribers
    enter through :meth:`join` and leave through :meth:`leave`. Those four are the only
    ways in or out, so the indexes and the gauges cannot drift apart.

    Args:
        bus: where subscribers are connected to their watch's topic.
        metrics: the watch and subscriber gauges.
    """

    def __init__(self, bus: ChangeBus, metrics: Metrics) -> None:
        self._bus = bus
        self._metrics = metrics
        self._watches: dict[Topic, Watch] = {}
        self._by_subject: dict[tuple[str, ...], set[Watch]] = {}
        self._riders: dict[WorkflowKey, set[RunWatch]] = {}
        self.unshared: set[WorkflowKey] = set()
        """Workflows (per credentials) whose list poll was refused: their runs poll alone."""
        self.subscriber_count = 0

    def __len__(self) -> int:
        return len(self._watches)

    def watches(self) -> list[Watch]:
        """Every watch, in no particular order."""
        return list(self._watches.values())

    def find(self, topic: Topic) -> Watch | None:
        """The watch publishing under ``topic``, if any."""
        return self._watches.get(topic)

    def obtain(self, topic: Topic, create: Callable[[], W]) -> tuple[W, bool]:
        """The watch of ``topic``, made by ``create`` if there is none; and whether it is new."""
        found = self._watches.get(topic)
        if found is not None:
            return found, False  # type: ignore[return-value]  # one topic, one watch type
        watch = create()
        self._watches[topic] = watch
        self._by_subject.setdefault(watch.subject, set()).add(watch)
        self._gauge()
        return watch, True

    def remove(self, watch: Watch) -> bool:
        """Take ``watch`` out (it is ``ended`` from now on); ``False`` if it already was."""
        if watch.ended:
            return False
        watch.ended = True
        if self._watches.get(watch.topic) is watch:
            del self._watches[watch.topic]
        _discard(self._by_subject, watch.subject, watch)
        self._gauge()
        return True

    def join(self, watch: Watch, subscriber: Subscriber) -> None:
        """Connect ``subscriber`` to ``watch`` (and to its topic on the bus)."""
        watch.subscribers.add(subscriber)
        self._bus.subscribe(watch.topic, subscriber)

    def leave(self, watch: Watch, subscriber: Subscriber, *, counted: bool) -> None:
        """Disconnect and close ``subscriber``; ``counted``: it was in :attr:`subscriber_count`."""
        watch.subscribers.discard(subscriber)
        self._bus.unsubscribe(watch.topic, subscriber)
        subscriber.close()
        if counted:
            self.count_subscriber(-1)

    def count_subscriber(self, delta: int) -> None:
        """Add ``delta`` to the subscriptions being fed."""
        self.subscriber_count += delta
        self._metrics.subscribers.set(self.subscriber_count)

    def of_subject(self, subject: tuple[str, ...]) -> tuple[Watch, ...]:
        """The watches of ``subject``, ``(workflow, instance)`` or ``(workflow,)``, by anyone."""
        return tuple(self._by_subject.get(subject, ()))

    def riders(self, group: WorkflowKey) -> set[RunWatch]:
        """The run watches of ``group`` that its workflow's list poll may carry."""
        return self._riders.get(group, set())

    def add_rider(self, group: WorkflowKey, rider: RunWatch) -> int:
        """Add ``rider`` to ``group``; returns how many riders the group has."""
        riders = self._riders.setdefault(group, set())
        riders.add(rider)
        return len(riders)

    def drop_rider(self, group: WorkflowKey, rider: RunWatch) -> bool:
        """Take ``rider`` out of ``group``; returns whether the group still has riders."""
        _discard(self._riders, group, rider)
        return group in self._riders

    def _gauge(self) -> None:
        self._metrics.active_watches.set(len(self._watches))


K = TypeVar("K")
V = TypeVar("V")


def _discard(index: dict[K, set[V]], key: K, value: V) -> None:
    members = index.get(key)
    if members is not None:
        members.discard(value)
        if not members:
            del index[key]
