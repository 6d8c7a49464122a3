"""The wire formats of the external APIs runcast speaks, each described once.

Plain data only (stdlib, :mod:`runcast.models` and :mod:`runcast.limits`), so the
engine's servers and the gateway's adapters both import it: :mod:`.awaitstep` is
the AwaitStep REST API, :mod:`.cloudflare` the Cloudflare Workflows REST API, and
:mod:`.times` the one reading of the timestamps both send; :func:`path_segment`
puts a name into a path of either.
"""

from __future__ import annotations

from urllib.parse import quote


def path_segment(value: str) -> str:
    """``value`` escaped as one URL path segment (a workflow, instance or event name)."""
    return quote(value, safe="")


__all__ = ["path_segment"]
