"""How many requests per second the gateway allows itself per upstream credential.

The limiter that keeps to it is ``runcast.upstream.RequestBudget`` (one per credential,
``LocalLimits``), or cluster mode's ``ClusterBudget`` shared through Redis.
"""

from __future__ import annotations

from runcast.settings import Settings

DEFAULT_BUDGETS: dict[str, float | None] = {
    # Cloudflare allows 1,200 requests per 5 minutes per token (4/s); keep headroom for
    # the queries and mutations that share the token.
    "cloudflare": 3.5,
    # AwaitStep allows about 200 requests per minute per IP.
    "awaitstep": 3.0,
    # The embedded engine pushes its changes and costs nothing to ask.
    "embedded": None,
}
UNKNOWN_UPSTREAM_BUDGET = 3.0
"""Requests per second for an upstream runcast has no figure for: as careful as AwaitStep."""


def budget_for(upstream_name: str, settings: Settings) -> float | None:
    """Requests per second the live layer may send to ``upstream_name`` (``None``: no limit).

    ``settings.request_budget_per_second`` overrides the default; zero or less means no limit.
    """
    if settings.request_budget_per_second is not None:
        rate = settings.request_budget_per_second
        return rate if rate > 0 else None
    return DEFAULT_BUDGETS.get(upstream_name, UNKNOWN_UPSTREAM_BUDGET)
