"""What ``/readyz`` checks, and its JSON answer: one entry per check, saying why if not ready.

A :class:`ReadinessCheck` answers a :class:`CheckResult`; :class:`Readiness` runs them all
at once, each within a timeout, and the gateway is ready when every *required* one is.
Checks here: the upstream (``ping``), the embedded engine's store (a round trip to its
writer thread) and the request budget (informational: a 429 pause is shown, not failed).
A shared change bus (Redis) adds its own check with :meth:`Readiness.add`.
"""

from __future__ import annotations

import asyncio
from typing import NotRequired, Protocol, TypedDict

from runcast.errors import RuncastError
from runcast.upstream import RequestLimiter, RunAPI

__all__ = [
    "BudgetCheck",
    "CheckResult",
    "EngineStoreCheck",
    "Readiness",
    "ReadinessCheck",
    "ReadyAnswer",
    "UpstreamCheck",
]

CHECK_TIMEOUT = 3.0
"""Seconds a check may take before it counts as failed."""


class CheckResult(TypedDict):
    """One check's entry in the ``/readyz`` answer."""

    ok: bool
    detail: NotRequired[str]
    code: NotRequired[str]
    state: NotRequired[str]
    paused_for_s: NotRequired[float]
    rate_per_second: NotRequired[float | None]


class ReadyAnswer(TypedDict):
    """The ``/readyz`` body."""

    status: str
    upstream: str
    code: NotRequired[str]
    checks: dict[str, CheckResult]


class ReadinessCheck(Protocol):
    """Tells whether one part the gateway depends on can be used now."""

    name: str
    required: bool

    async def check(self) -> CheckResult:
        """The part's state; must not raise for an expected failure."""
        ...


class StoreHealth(Protocol):
    """An engine whose store can be checked."""

    async def check_store(self, *, within: float = ...) -> str | None:
        """Why the store cannot be used (``None`` when healthy)."""
        ...


class UpstreamCheck:
    """The upstream answers (``RunAPI.ping``)."""

    name = "upstream"
    required = True

    def __init__(self, upstream: RunAPI) -> None:
        self._upstream = upstream

    async def check(self) -> CheckResult:
        """``ok`` when the ping succeeded, else the error's code and message."""
        try:
            await self._upstream.ping()
        except RuncastError as exc:
            return {"ok": False, "code": exc.code, "detail": exc.message}
        return {"ok": True, "detail": self._upstream.name}


class EngineStoreCheck:
    """The embedded engine's SQLite store takes writes."""

    name = "engine_store"
    required = True

    def __init__(self, engine: StoreHealth) -> None:
        self._engine = engine

    async def check(self) -> CheckResult:
        """``ok`` after a round trip through the store's writer thread."""
        problem = await self._engine.check_store(within=CHECK_TIMEOUT)
        return {"ok": True} if problem is None else {"ok": False, "detail": problem}


class BudgetCheck:
    """The request limiter of the upstream's own credential: ``available``, ``exhausted``
    or ``paused`` (a 429), as the limiter itself says (in cluster mode, Redis's bucket)."""

    name = "budget"
    required = False

    def __init__(self, budget: RequestLimiter) -> None:
        self._budget = budget

    async def check(self) -> CheckResult:
        """The budget's state; never makes the gateway unready (every replica shares it)."""
        state = await self._budget.state()
        return {
            "ok": state.state != "paused",
            "state": state.state,
            "paused_for_s": round(state.paused_for, 3),
            "rate_per_second": state.rate,
        }


class Readiness:
    """The checks ``/readyz`` runs, in the order added."""

    def __init__(self) -> None:
        self.checks: list[ReadinessCheck] = []

    def add(self, check: ReadinessCheck) -> None:
        """Run ``check`` on every ``/readyz`` from now on."""
        self.checks.append(check)

    async def answer(self, upstream_name: str) -> tuple[ReadyAnswer, bool]:
        """The ``/readyz`` body, and whether every required check passed."""
        results = await asyncio.gather(*(_bounded(check) for check in self.checks))
        checks = {check.name: result for check, result in zip(self.checks, results, strict=True)}
        ready = all(r["ok"] for c, r in zip(self.checks, results, strict=True) if c.required)
        body: ReadyAnswer = {
            "status": "ok" if ready else "unavailable",
            "upstream": upstream_name,
            "checks": checks,
        }
        for check, result in zip(self.checks, results, strict=True):
            if check.required and not result["ok"] and "code" in result:
                body["code"] = result["code"]
                break
        return body, ready


async def _bounded(check: ReadinessCheck) -> CheckResult:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            return await check.check()
    except TimeoutError:
        return {"ok": False, "detail": f"no answer within {CHECK_TIMEOUT:g}s"}
