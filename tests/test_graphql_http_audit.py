"""The graphql-http reference audit (GraphQL over HTTP spec) passes against the gateway."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
from starlette.types import ASGIApp

from runcast.app import create_app
from runcast.engine import Engine
from runcast.settings import Settings
from runcast.upstream.local import LocalUpstream

ROOT = Path(__file__).resolve().parent.parent
AUDIT_SCRIPT = ROOT / ".ci" / "graphql_http_audit.mjs"
AUDIT_PACKAGE = ROOT / ".ci" / "node" / "node_modules" / "graphql-http"


async def test_graphql_http_audit_reports_no_errors_and_no_warnings(
    engine: Engine, serve: Callable[[ASGIApp], AbstractAsyncContextManager[str]]
) -> None:
    """auditServer from the graphql-http npm package finds no error and no warning."""
    # CI installs both (.ci/run), so there a missing piece is a failure, not a skip.
    unavailable = pytest.fail if os.environ.get("CI") else pytest.skip
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed: the graphql-http audit needs Node.js")
    if not AUDIT_PACKAGE.is_dir():
        unavailable("graphql-http is not installed: run `npm ci --prefix .ci/node`")
    assert node is not None
    app = create_app(Settings(), upstream=LocalUpstream(engine))
    async with serve(app) as url:
        process = await asyncio.create_subprocess_exec(
            node,
            str(AUDIT_SCRIPT),
            f"{url}/graphql",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(), 120)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    report = output.decode()
    assert process.returncode == 0, report
    assert " 0 warnings, 0 errors" in report, report
