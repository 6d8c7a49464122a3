"""Prometheus metrics of one gateway, in a registry of its own (no global state).

Every ``create_app`` builds one :class:`Metrics`; ``/metrics`` serves :meth:`Metrics.render`.
Two apps in one process (tests) never see each other's numbers.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The media type of :meth:`Metrics.render` (Prometheus text format 0.0.4)."""

_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


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
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.upstream_requests = Counter(
            "runcast_upstream_requests",
            "Requests to the upstream run API, by upstream and outcome.",
            ["upstream", "outcome"],
            registry=self.registry,
        )
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

    def observe_upstream_request(self, upstream: str, outcome: str) -> None:
        """Count one upstream request; fits ``UpstreamHttpClient(on_request=...)``."""
        self.upstream_requests.labels(upstream=upstream, outcome=outcome).inc()

    def render(self) -> bytes:
        """Every metric in the Prometheus text format (see :data:`CONTENT_TYPE`)."""
        return generate_latest(self.registry)
