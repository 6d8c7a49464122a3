"""Run the real JavaScript GraphQL clients (.ci/node/*.mjs) from tests.

Each script talks to a gateway URL and writes one JSON object per line to stdout;
``NodeScript`` reads them and can answer on stdin, so that a test can act between
two steps of a client (send an event once the client has subscribed, say).
CI installs Node and the packages (.ci/run), so there a missing piece fails the test.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

NODE_DIR = Path(__file__).resolve().parent.parent / ".ci" / "node"
STEP_TIMEOUT = 60.0


def node_or_fail(package: str) -> str:
    """The ``node`` executable, once ``package`` is installed under .ci/node.

    Skips locally when either is missing; fails in CI (``CI`` set), where both must be.
    """
    unavailable = pytest.fail if os.environ.get("CI") else pytest.skip
    node = shutil.which("node")
    if node is None:
        unavailable(f"node is not installed: the {package} client test needs Node.js")
    if not (NODE_DIR / "node_modules" / package).is_dir():
        unavailable(f"{package} is not installed: run `npm ci --prefix .ci/node`")
    assert node is not None
    return node


class NodeScript:
    """A running client script: read its JSON lines, write lines to its stdin."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []

    async def read(self) -> dict[str, Any]:
        """The next JSON object the script printed (fails if it exits first)."""
        assert self.process.stdout is not None
        while True:
            raw = await asyncio.wait_for(self.process.stdout.readline(), STEP_TIMEOUT)
            if not raw:
                await self.process.wait()
                raise AssertionError(
                    f"the script exited ({self.process.returncode}) early:\n"
                    + "\n".join(self.lines)
                    + "\n"
                    + await self._stderr()
                )
            line = raw.decode().rstrip("\n")
            self.lines.append(line)
            if line.startswith("{"):
                message: dict[str, Any] = json.loads(line)
                return message

    async def send(self, message: dict[str, Any]) -> None:
        """Write ``message`` as one JSON line to the script's stdin."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message).encode() + b"\n")
        await self.process.stdin.drain()

    async def finish(self) -> None:
        """Read the rest of the script's output and wait for it to exit, which must be with 0."""
        assert self.process.stdout is not None
        assert self.process.stdin is not None
        self.process.stdin.close()
        rest = await asyncio.wait_for(self.process.stdout.read(), STEP_TIMEOUT)
        self.lines.extend(rest.decode().splitlines())
        await asyncio.wait_for(self.process.wait(), STEP_TIMEOUT)
        assert self.process.returncode == 0, "\n".join(self.lines) + "\n" + await self._stderr()

    async def _stderr(self) -> str:
        assert self.process.stderr is not None
        try:
            return (await asyncio.wait_for(self.process.stderr.read(), 5)).decode()
        except TimeoutError:
            return ""


@asynccontextmanager
async def node_script(script: str, *args: str, package: str) -> AsyncIterator[NodeScript]:
    """Start ``node .ci/node/SCRIPT ARGS...`` (which needs ``package``); kill it on exit."""
    node = node_or_fail(package)
    process = await asyncio.create_subprocess_exec(
        node,
        str(NODE_DIR / script),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield NodeScript(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def run_script(script: str, *args: str, package: str) -> list[dict[str, Any]]:
    """Run a script that needs no input to the end; its JSON lines, in order."""
    async with node_script(script, *args, package=package) as running:
        await running.finish()
        return [json.loads(line) for line in running.lines if line.startswith("{")]
