"""Pooled outgoing HTTP clients: the one way runcast builds an ``httpx.AsyncClient``.

The upstream adapters (``runcast.upstream``) and the engine's ``http`` steps each keep
one pooled client for their whole lifetime, opened by their owner and closed with it.
Because one client serves every caller (every GraphQL caller, every run), it keeps no
cookies: a cookie set in answer to one caller must never go out with another's request.
Redirects are not followed; a 3xx is the caller's to read. This module imports nothing
of the gateway or the engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx

__all__ = ["POOL_LIMITS", "pooled_client"]

POOL_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)
"""The connection pool of one client."""


def pooled_client(
    *,
    timeout: httpx.Timeout | None,
    transport: httpx.AsyncBaseTransport | None = None,
    base_url: str = "",
    headers: Mapping[str, str] | None = None,
) -> httpx.AsyncClient:
    """A pooled client that stores no cookies and follows no redirects.

    Args:
        timeout: the timeouts of every request (``None``: none, the caller bounds the call).
        transport: what sends the requests; ``None`` is httpx's own pool (which also honours
            the ``HTTP(S)_PROXY`` variables), sized by :data:`POOL_LIMITS`.
        base_url: prefix of every request's URL.
        headers: headers sent with every request.
    """
    return httpx.AsyncClient(
        base_url=base_url,
        transport=transport,
        timeout=timeout,
        headers=headers,
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=())),
        limits=POOL_LIMITS,
        follow_redirects=False,
    )
