"""Cluster mode: several replicas share one live layer and one request budget through Redis.

A :class:`RedisLink` is each replica's connection (health, heartbeats, timed commands);
a :class:`LeaseKeeper` decides which replica polls each watch; a :class:`RedisChangeBus`
carries the holder's changes to every replica, each once and in order; a
:class:`ClusterBudget` is the request limiter of one credential for the whole cluster
(:func:`cluster_limits` gives each credential's). Redis holds keyed
credential fingerprints (:func:`cluster_fingerprint`), run states and changes, never a
token.
"""

from __future__ import annotations

from runcast.live.cluster._budget import ClusterBudget, cluster_limits
from runcast.live.cluster._bus import STALE, ClusterChange, RedisChangeBus
from runcast.live.cluster._config import EMBEDDED_REFUSAL, check_cluster_settings
from runcast.live.cluster._keys import (
    ClusterKeys,
    WatchName,
    cluster_fingerprint,
    keyed_fingerprint,
)
from runcast.live.cluster._lease import LeaseKeeper
from runcast.live.cluster._link import ClusterUnavailable, RedisLink
from runcast.live.cluster._live import ClusterChangeBus, ClusterCheck, ClusterLive
from runcast.live.cluster._metrics import ClusterMetrics

__all__ = [
    "EMBEDDED_REFUSAL",
    "STALE",
    "ClusterBudget",
    "ClusterChange",
    "ClusterChangeBus",
    "ClusterCheck",
    "ClusterKeys",
    "ClusterLive",
    "ClusterMetrics",
    "ClusterUnavailable",
    "LeaseKeeper",
    "RedisChangeBus",
    "RedisLink",
    "WatchName",
    "check_cluster_settings",
    "cluster_fingerprint",
    "cluster_limits",
    "keyed_fingerprint",
]
