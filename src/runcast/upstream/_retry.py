"""When a request to an upstream is sent again, and how long runcast waits first.

The one retry policy of every HTTP adapter, decided in :meth:`RetryPolicy.should_retry`:

- a request whose outcome is unknown (a timeout, a dropped connection, a 502/503/504)
  is sent again only when sending it twice is safe: ``GET``/``HEAD``/``OPTIONS``, or
  a call the adapter made idempotent (a trigger with the caller's instance id, a control);
- a request that surely never left (no connection could be opened) is always safe to send
  again, even a mutation;
- an answer that arrived but cannot be read, and every other status, is never retried;
- at most ``retries`` times, each after a jittered exponential backoff (:meth:`delay`).

Why no retry library (``stamina``, ``tenacity``): they retry on exceptions, while half of
these reasons are answers (a 503) that must be observed and then either retried or mapped;
the loop must also take a budget token and count every attempt, which leaves a library
only the sleep. ``stamina`` would add process-wide instrumentation (a Prometheus counter in
the default registry, a warning log line per retry) and a 45 s overall timeout to undo.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal, TypeAlias

import httpx

RequestOutcome: TypeAlias = Literal[
    "ok", "client_error", "rate_limited", "server_error", "timeout", "connection_error"
]
"""How one HTTP attempt ended: a 2xx/3xx, another 4xx, a 429, a 5xx, a timeout, no connection."""

RETRYABLE_STATUS = frozenset({502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_BACKOFF_SECONDS = 5.0

_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
"""Failures before any byte of the request left: no connection could be had."""


@dataclass(frozen=True, slots=True)
class Attempt:
    """How one HTTP attempt ended: the answer, or the httpx error instead of one."""

    response: httpx.Response | None = None
    error: httpx.HTTPError | None = None

    @property
    def outcome(self) -> RequestOutcome:
        """The outcome reported to observers (metrics)."""
        if isinstance(self.error, httpx.TimeoutException):
            return "timeout"
        if self.error is not None:
            return "connection_error"
        assert self.response is not None
        status = self.response.status_code
        if status >= 500:
            return "server_error"
        if status == 429:
            return "rate_limited"
        return "client_error" if status >= 400 else "ok"

    @property
    def never_sent(self) -> bool:
        """Whether the request surely never left, so sending it again is always safe."""
        return isinstance(self.error, _NEVER_SENT)


def safe_to_repeat(method: str, idempotent: bool | None) -> bool:
    """Whether a request whose outcome is unknown may be sent again (``idempotent`` overrides)."""
    return method in IDEMPOTENT_METHODS if idempotent is None else idempotent


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many times, and after how long, a failed attempt is sent again.

    Args:
        retries: the most retries after the first attempt.
        base_delay: ceiling of the first backoff in seconds; later ceilings double (capped at
            ``max_delay``) and each wait is drawn between half the ceiling and the ceiling.
        max_delay: the largest ceiling.
    """

    retries: int
    base_delay: float = 0.1
    max_delay: float = MAX_BACKOFF_SECONDS

    def should_retry(self, attempt: Attempt, *, number: int, repeatable: bool) -> bool:
        """Whether to send again after attempt ``number`` (1 for the first) ended as ``attempt``.

        Args:
            attempt: how it ended.
            number: how many attempts were made so far.
            repeatable: whether a request whose outcome is unknown may be sent again
                (see :func:`safe_to_repeat`).
        """
        if number > self.retries:
            return False
        if attempt.error is not None:
            if not isinstance(attempt.error, httpx.TransportError):
                return False  # it answered, unreadably: sending again would not help
            return repeatable or attempt.never_sent
        assert attempt.response is not None
        return repeatable and attempt.response.status_code in RETRYABLE_STATUS

    def delay(self, number: int) -> float:
        """Seconds to wait before retry ``number`` (1 for the first retry)."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (number - 1))
        return random.uniform(ceiling / 2, ceiling)
