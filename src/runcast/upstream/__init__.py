"""Upstream run APIs behind one port: the embedded engine, AwaitStep and Cloudflare."""

from __future__ import annotations

from runcast.upstream._http import prepaid_request
from runcast.upstream._port import (
    LimitedUpstream,
    RequestLimiter,
    RunAPI,
    RunChangeSource,
    RunListener,
)

__all__ = [
    "LimitedUpstream",
    "RequestLimiter",
    "RunAPI",
    "RunChangeSource",
    "RunListener",
    "prepaid_request",
]
