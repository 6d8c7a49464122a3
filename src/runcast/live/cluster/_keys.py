"""Names in Redis: keyed credential fingerprints and the keys of one watch, each built once."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import quote, unquote

from runcast.models import Credentials


def keyed_fingerprint(fingerprint: str, secret: str) -> str:
    """``Credentials.fingerprint`` keyed with the cluster secret (HMAC-SHA256), for Redis.

    The same on every replica for the same credentials; without the secret, nobody who
    reads Redis can test a guessed token against it (a plain hash of a short token could
    be). ``anonymous`` stays as it is.
    """
    if fingerprint == "anonymous":
        return fingerprint
    return hmac.new(secret.encode(), fingerprint.encode(), hashlib.sha256).hexdigest()[:32]


def cluster_fingerprint(credentials: Credentials, secret: str) -> str:
    """The name of ``credentials`` in Redis: :func:`keyed_fingerprint` of their fingerprint."""
    return keyed_fingerprint(credentials.fingerprint, secret)


@dataclass(frozen=True, slots=True)
class WatchName:
    """One watch as the cluster names it: a run's or a workflow's, per fingerprint.

    Args:
        fingerprint: :func:`cluster_fingerprint` of the watch's credentials.
        workflow_id: the workflow.
        instance_id: the run, or ``None`` for a watch of the workflow's runs.
    """

    fingerprint: str
    workflow_id: str
    instance_id: str | None = None

    @property
    def slug(self) -> str:
        """The watch in one string that no other watch shares (ids are percent-encoded)."""
        parts = [self.fingerprint, quote(self.workflow_id, safe="")]
        if self.instance_id is not None:
            parts.append(quote(self.instance_id, safe=""))
            return "run:" + ":".join(parts)
        return "workflow:" + ":".join(parts)

    @classmethod
    def from_slug(cls, slug: str) -> WatchName:
        """The watch named by :attr:`slug` (raises ``ValueError`` for anything else)."""
        kind, _, rest = slug.partition(":")
        parts = rest.split(":")
        if kind == "run" and len(parts) == 3:
            return cls(parts[0], unquote(parts[1]), unquote(parts[2]))
        if kind == "workflow" and len(parts) == 2:
            return cls(parts[0], unquote(parts[1]))
        raise ValueError(f"not a watch name: {slug!r}")


@dataclass(frozen=True, slots=True)
class ClusterKeys:
    """Every Redis key and channel the cluster uses, under one prefix."""

    prefix: str = "runcast"

    def lease(self, watch: WatchName) -> str:
        """Who polls ``watch`` now: ``REPLICA:FENCE``, expiring unless renewed."""
        return f"{self.prefix}:lease:{watch.slug}"

    def fence(self, watch: WatchName) -> str:
        """The fencing number of ``watch``: one more for each new holder."""
        return f"{self.prefix}:fence:{watch.slug}"

    def state(self, watch: WatchName) -> str:
        """The last published state of ``watch`` (a hash: seq, fence, change)."""
        return f"{self.prefix}:state:{watch.slug}"

    def changes(self, watch: WatchName) -> str:
        """The recent changes of ``watch``, a stream whose entry ids are ``SEQ-0``."""
        return f"{self.prefix}:changes:{watch.slug}"

    @property
    def epoch(self) -> str:
        """The name of this life of the Redis data (set by the first publication)."""
        return f"{self.prefix}:epoch"

    @property
    def channel(self) -> str:
        """The pub/sub channel every published change goes out on."""
        return f"{self.prefix}:bus"

    def budget(self, name: str) -> str:
        """The request budget ``name`` (a hash: GCRA theoretical arrival time, hold)."""
        return f"{self.prefix}:budget:{quote(name, safe='')}"

    @property
    def replicas(self) -> str:
        """The replicas by last heartbeat (a sorted set scored in milliseconds)."""
        return f"{self.prefix}:replicas"
