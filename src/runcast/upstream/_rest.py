"""What the two REST adapters (``awaitstep``, ``cloudflare``) share above the HTTP boundary."""

from __future__ import annotations

from runcast.models import Credentials, Run
from runcast.upstream._http import UpstreamHttpClient
from runcast.upstream._idempotent import Control


class RestAdapter:
    """The controls and the pool's lifetime of an adapter over a REST API, written once.

    A subclass sends one control (terminate, pause or resume) in
    :meth:`_send_control`, which returns the run as the upstream then shows it.
    """

    http: UpstreamHttpClient

    async def _send_control(
        self, control: Control, workflow_id: str, instance_id: str, credentials: Credentials
    ) -> Run:
        raise NotImplementedError

    async def terminate(
        self, workflow_id: str, instance_id: str, *, credentials: Credentials
    ) -> Run:
        """Stop a run for good."""
        return await self._send_control("terminate", workflow_id, instance_id, credentials)

    async def pause(self, workflow_id: str, instance_id: str, *, credentials: Credentials) -> Run:
        """Pause a run at its next node boundary."""
        return await self._send_control("pause", workflow_id, instance_id, credentials)

    async def resume(self, workflow_id: str, instance_id: str, *, credentials: Credentials) -> Run:
        """Resume a paused run."""
        return await self._send_control("resume", workflow_id, instance_id, credentials)

    async def aclose(self) -> None:
        """Close the connection pool; later calls raise ``UpstreamUnavailable``."""
        await self.http.aclose()
