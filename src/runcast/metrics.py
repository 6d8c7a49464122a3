"""Prometheus metrics of one gateway, in a registry of its own (no global state).

Every ``create_app`` builds one :class:`Metrics`; ``/metrics`` serves :meth:`Metrics.render`.
Two apps in one process (tests) never see each other's numbers.
"""

from __future__ import annotations

import re
import threading
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from runcast.engine.metrics import EngineMetrics

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The media type of :meth:`Metrics.render` (Prometheus text format 0.0.4)."""

_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_OPERATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
_LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


ANONYMOUS_OPERATION = "_anonymous"
"""The ``operation`` label of operations without a name."""
OTHER_OPERATION = "_other"
"""The ``operation`` label of names past :data:`MAX_OPERATION_NAMES` (or not GraphQL names)."""
MAX_OPERATION_NAMES = 100
"""Distinct operation names that get their own label; later ones share ``_other``."""
OTHER_CODE = "OTHER"
"""The ``code`` label of an error code that is not an upper-case word."""

_Metric = TypeVar("_Metric", Counter, Histogram)


class LabelledChildren(Generic[_Metric]):
    """The children of one labelled metric by their label values, each made once.

    ``labels()`` checks and converts its values and takes a lock on every call (about
    5 us for an operation's two series); a dictionary lookup does not. The values are
    bounded where they are made, so this holds no more entries than the metric itself.

    Args:
        metric: the labelled metric; values are given in the order of its label names.
    """

    def __init__(self, metric: _Metric) -> None:
        self._metric: _Metric = metric
        self._children: dict[tuple[str, ...], _Metric] = {}

    def __call__(self, *values: str) -> _Metric:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]{0,63}")
_CODE = re.compile(r"[A-Z][A-Z0-9_]{0,39}")


class OperationNames:
    """Bounds the ``operation`` label: the first ``limit`` names seen, then ``_other``.

    Args:
        limit: how many distinct names keep their own label.
        known: names that always keep theirs (e.g. those of trusted documents).
    """

    def __init__(self, limit: int = MAX_OPERATION_NAMES, known: tuple[str, ...] = ()) -> None:
        self._limit = limit
        self._names: set[str] = set(known)
        self._known = frozenset(known)
        self._lock = threading.Lock()

    def label(self, name: str | None) -> str:
        """The label for operation ``name``."""
        if not name:
            return ANONYMOUS_OPERATION
        if name in self._names:
            return name
        if not _NAME.fullmatch(name):
            return OTHER_OPERATION
        with self._lock:
            if len(self._names) - len(self._known) >= self._limit:
                return OTHER_OPERATION
            self._names.add(name)
        return name


def code_label(code: object) -> str:
    """The ``code`` label of an error's ``extensions.code`` (``ok`` for no error)."""
    if code is None:
        return "ok"
    return code if isinstance(code, str) and _CODE.fullmatch(code) else OTHER_CODE


class Metrics:
    """The gateway's counters, gauges and histograms.

    Attributes:
        upstream_requests: HTTP attempts (or in-process calls) to the upstream, by
            ``upstream`` and ``outcome`` (``ok``, ``client_error``, ``not_found``,
            ``rate_limited``, ``server_error``, ``timeout``, ``connection_error``, ...).
        live_polls: upstream calls made by the live layer (polls and first states), by
            ``upstream``, ``kind`` (``run`` or ``list``) and ``outcome``.
        active_watches: watches the live layer keeps (one per credential and run or workflow).
        subscribers: subscriptions currently fed by the live layer.
        poll_lag: how late a poll started after the time it was due (budget pressure).
        delivery_latency: time from observing a change to handing it to a subscriber.
        dropped_changes: intermediate changes a slow subscriber skipped.
        graphql_operations: GraphQL operations by ``type``, bounded ``operation`` name and
            outcome ``code`` (``ok`` or the first error's ``extensions.code``).
        graphql_duration: time of queries and mutations, by ``type`` and ``operation``.
        engine: the embedded engine's series, once :meth:`engine_metrics` made them.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.operation_names = OperationNames()
        self.engine: EngineMetrics | None = None
        self.graphql_operations = Counter(
            "runcast_graphql_operations",
            "GraphQL operations, by type, operation name and outcome code.",
            ["type", "operation", "code"],
            registry=self.registry,
        )
        self.graphql_duration = Histogram(
            "runcast_graphql_operation_duration_seconds",
            "Time to answer a query or mutation, by type and operation name.",
            ["type", "operation"],
            buckets=_OPERATION_BUCKETS,
            registry=self.registry,
        )
        self.upstream_requests = Counter(
            "runcast_upstream_requests",
            "Requests to the upstream run API, by upstream and outcome.",
            ["upstream", "outcome"],
            registry=self.registry,
        )
        self._operations = LabelledChildren(self.graphql_operations)
        self._durations = LabelledChildren(self.graphql_duration)
        self._upstream_requests = LabelledChildren(self.upstream_requests)
        self.live_polls = Counter(
            "runcast_live_polls",
            "Upstream calls of the live layer (polls, first states), by upstream, kind, outcome.",
            ["upstream", "kind", "outcome"],
            registry=self.registry,
        )
        self.active_watches = Gauge(
            "runcast_live_active_watches",
            "Watches kept by the live layer (one per credential and run, or workflow).",
            registry=self.registry,
        )
        self.subscribers = Gauge(
            "runcast_live_subscribers",
            "Subscriptions currently fed by the live layer.",
            registry=self.registry,
        )
        self.poll_lag = Histogram(
            "runcast_live_poll_lag_seconds",
            "How late a poll started after it was due.",
            buckets=_LAG_BUCKETS,
            registry=self.registry,
        )
        self.delivery_latency = Histogram(
            "runcast_live_delivery_latency_seconds",
            "Time from observing a run change to handing it to a subscriber.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.dropped_changes = Counter(
            "runcast_live_dropped_changes",
            "Intermediate run changes skipped because a subscriber was too slow.",
            registry=self.registry,
        )

    def observe_operation(
        self, type: str, name: str | None, code: object, seconds: float | None
    ) -> None:
        """Count one GraphQL operation (and its duration, unless ``None``: subscriptions)."""
        operation = self.operation_names.label(name)
        self._operations(type, operation, code_label(code)).inc()
        if seconds is not None:
            self._durations(type, operation).observe(seconds)

    def engine_metrics(self) -> EngineMetrics:
        """The embedded engine's series in this registry (made on first call)."""
        if self.engine is None:
            self.engine = EngineMetrics(self.registry)
        return self.engine

    def observe_upstream_request(self, upstream: str, outcome: str) -> None:
        """Count one upstream request; fits ``UpstreamHttpClient(on_request=...)``."""
        self._upstream_requests(upstream, outcome).inc()

    def render(self) -> bytes:
        """Every metric in the Prometheus text format (see :data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)
