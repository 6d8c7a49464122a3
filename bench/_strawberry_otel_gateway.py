"""``runcast`` with Strawberry's ``OpenTelemetryExtension`` in place of runcast's own spans.

Only for ``bench/http.py --observability``: it compares the two ways of tracing GraphQL.
Strawberry's extension makes a span for every resolved field, with the global tracer
provider, so this launcher installs runcast's provider globally and swaps the extension.
Usage is that of ``python -m runcast.cli`` (``serve --upstream ... --port ...``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

# As in bench/http.py: this file's folder must not shadow the standard library's ``http``.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

from opentelemetry import trace
from strawberry.extensions.tracing import OpenTelemetryExtension

import runcast.app
from runcast.cli import main


def _strawberry_tracing(tracing: Any) -> Any:
    trace.set_tracer_provider(tracing.provider)
    return OpenTelemetryExtension


runcast.app._operation_tracing = _strawberry_tracing  # type: ignore[attr-defined]

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
