"""The bearer tokens an engine API accepts, checked without revealing which one matched."""

from __future__ import annotations

import hmac
from collections.abc import Iterable


class ApiKeys:
    """The API keys a server (or the in-process adapter) accepts; none means no authentication.

    The keys never appear in ``repr``; :meth:`accepts` compares a token against
    every key in constant time, so the time taken does not reveal which one matched.

    Args:
        keys: the accepted bearer tokens.
    """

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self._keys = tuple(key.encode() for key in keys)

    def __bool__(self) -> bool:
        return bool(self._keys)

    def __repr__(self) -> str:
        return f"ApiKeys(<{len(self._keys)} keys>)"

    def accepts(self, token: str) -> bool:
        """Whether ``token`` is one of the keys."""
        presented = token.encode()
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(presented, key)
        return matched


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value, or ``None``."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
