"""The ``/metrics`` series of cluster mode, registered in the gateway's own registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_REDIS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class ClusterMetrics:
    """Counters and gauges of one replica's part in the cluster.

    Attributes:
        redis_up: 1 while Redis answers, 0 while this replica polls by itself.
        replicas: replicas seen by their heartbeats (the last count while Redis is gone).
        redis_errors: Redis commands that failed, by ``op``.
        redis_latency: time of each Redis command, by ``op``.
        leases_held: watches this replica polls for the cluster right now.
        takeovers: leases this replica took over from an earlier holder.
        changes_published: changes this replica published (as a lease holder).
        changes_stale: publications refused because a newer holder exists.
        changes_received: changes this replica received from the bus, by ``source``
            (``live`` from pub/sub, ``catch_up`` read back from a watch's stream).
        budget_tokens: requests the cluster budget has left right now, by ``budget``.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(f"runcast_cluster_{name}", doc, labels, registry=registry)

        def gauge(name: str, doc: str, *labels: str) -> Gauge:
            return Gauge(f"runcast_cluster_{name}", doc, labels, registry=registry)

        self.redis_up = gauge("redis_up", "1 while Redis answers, 0 otherwise.")
        self.replicas = gauge("replicas", "Replicas seen by their heartbeats.")
        self.redis_errors = counter("redis_errors", "Failed Redis commands, by op.", "op")
        self.redis_latency = Histogram(
            "runcast_cluster_redis_latency_seconds",
            "Time of Redis commands, by op.",
            ["op"],
            buckets=_REDIS_BUCKETS,
            registry=registry,
        )
        self.leases_held = gauge("leases_held", "Watches this replica polls for the cluster.")
        self.takeovers = counter("takeovers", "Leases taken over from an earlier holder.")
        self.changes_published = counter(
            "changes_published", "Changes published as a lease holder."
        )
        self.changes_stale = counter(
            "changes_stale", "Publications refused: a newer holder exists."
        )
        self.changes_received = counter(
            "changes_received", "Changes received from the bus, by source.", "source"
        )
        self.budget_tokens = gauge(
            "budget_tokens", "Requests the cluster budget has left, by budget.", "budget"
        )
