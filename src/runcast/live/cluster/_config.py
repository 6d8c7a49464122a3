"""What cluster mode needs from the settings, checked before anything starts."""

from __future__ import annotations

from runcast.errors import BadUserInput
from runcast.settings import Settings

EMBEDDED_REFUSAL = (
    "--redis needs an upstream that every replica can reach, and the embedded engine "
    "belongs to one process: run `runcast engine` and start each replica with "
    "`runcast serve --upstream http://ENGINE_HOST:PORT --redis URL`"
)
"""The one line ``runcast serve --redis`` answers when the upstream is the embedded engine."""
MISSING_SECRET = (
    "--redis needs RUNCAST_CLUSTER_SECRET (the same on every replica): credentials are "
    "stored in Redis only as fingerprints keyed with it"
)


def check_cluster_settings(settings: Settings) -> None:
    """Refuse settings with which cluster mode cannot work (nothing to check without Redis).

    Raises:
        BadUserInput: ``redis_url`` is set with the embedded upstream or without a
            cluster secret.
    """
    if settings.redis_url is None:
        return
    if settings.upstream == "embedded":
        raise BadUserInput(EMBEDDED_REFUSAL)
    if not settings.cluster_secret:
        raise BadUserInput(MISSING_SECRET)
