"""Upstream run APIs behind one port: the embedded engine, AwaitStep and Cloudflare."""

from __future__ import annotations

from runcast.upstream._port import RunAPI, RunChangeSource, RunListener

__all__ = ["RunAPI", "RunChangeSource", "RunListener"]
