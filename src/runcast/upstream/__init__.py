"""Upstream run APIs behind one port: the embedded engine, AwaitStep and Cloudflare."""

from __future__ import annotations

from runcast.upstream._http import prepaid_request
from runcast.upstream._limiter import (
    CLIENT_MAX_WAIT,
    CredentialLimits,
    LocalLimits,
    RequestBudget,
    local_limits,
)
from runcast.upstream._port import (
    LimitedUpstream,
    LimiterState,
    Quota,
    RequestLimiter,
    RequestLimits,
    RunAPI,
    RunChangeSource,
    RunListener,
)

__all__ = [
    "CLIENT_MAX_WAIT",
    "CredentialLimits",
    "LimitedUpstream",
    "LimiterState",
    "LocalLimits",
    "Quota",
    "RequestBudget",
    "RequestLimiter",
    "RequestLimits",
    "RunAPI",
    "RunChangeSource",
    "RunListener",
    "local_limits",
    "prepaid_request",
]
