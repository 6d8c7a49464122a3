"""The wire formats of the external APIs runcast speaks, each described once.

Plain data only (stdlib, :mod:`runcast.models` and :mod:`runcast.limits`), so the
engine's servers and the gateway's adapters both import it: :mod:`.awaitstep` is
the AwaitStep REST API, :mod:`.cloudflare` the Cloudflare Workflows REST API, and
:mod:`.times` the one reading of the timestamps both send.
"""
