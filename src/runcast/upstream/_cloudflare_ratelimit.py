"""Cloudflare's rate limit as runcast keeps to it (part of the ``cloudflare`` adapter).

Cloudflare allows 1,200 requests per 5 minutes per token and locks a token out
for five minutes after a 429. The limiter of each token (``RequestBudget``, one
per credential) keeps :func:`cloudflare_quota` and is held for as long as
Cloudflare says: ``retry-after`` on a 429, else :func:`parse_ratelimit` of its
rate-limit headers, else :data:`LOCKOUT_SECONDS`; a success whose headers say
nothing remains holds it too.
"""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from runcast.upstream._port import Quota
from runcast.wire.times import parse_http_date

RATE_LIMIT_REQUESTS = 1200
RATE_LIMIT_WINDOW_SECONDS = 300.0
RATE_LIMIT_HEADROOM = 0.9
LOCKOUT_SECONDS = 300.0


def cloudflare_quota(
    *,
    limit: int = RATE_LIMIT_REQUESTS,
    window: float = RATE_LIMIT_WINDOW_SECONDS,
    headroom: float = RATE_LIMIT_HEADROOM,
) -> Quota:
    """The share of Cloudflare's limit (``limit`` per ``window`` s) runcast allows a token."""
    return Quota(max(1, int(limit * headroom)), window)


def parse_ratelimit(headers: httpx.Headers, *, now: datetime | None = None) -> float | None:
    """Seconds until requests are allowed again according to the rate-limit headers.

    Reads ``Ratelimit`` (``"default";r=0;t=30``: nothing remaining for 30 s) and
    the older ``x-ratelimit-remaining: 0`` with ``x-ratelimit-reset`` (an RFC 1123
    date or seconds). Returns ``None`` while requests remain (or without headers).
    """
    wait: float | None = None
    for item in headers.get_list("ratelimit", split_commas=True):
        params = dict(
            (key.strip().lower(), value.strip())
            for key, _, value in (part.partition("=") for part in item.split(";")[1:])
        )
        try:
            remaining = float(params.get("r", "1"))
            reset = float(params.get("t", "0"))
        except ValueError:
            continue
        if remaining <= 0:
            wait = max(wait or 0.0, reset)
    remaining_header = headers.get("x-ratelimit-remaining")
    if remaining_header is not None and remaining_header.strip() in ("0", "0.0"):
        reset_header = (headers.get("x-ratelimit-reset") or "").strip()
        seconds: float | None
        try:
            seconds = float(reset_header)
        except ValueError:
            when = parse_http_date(reset_header)
            current = now or datetime.now(UTC)
            seconds = (when - current).total_seconds() if when is not None else None
        wait = max(wait or 0.0, seconds if seconds is not None else LOCKOUT_SECONDS, 0.0)
    return wait
