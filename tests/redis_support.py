"""A real redis-server for tests: started on a free port in a temporary folder, stopped after."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

READY_TIMEOUT = 15.0


class RedisServer:
    """One redis-server process that tests can kill (-9) and start again on the same port.

    Args:
        port: the loopback port to listen on.
        folder: the server's working folder (nothing is persisted there).
    """

    def __init__(self, port: int, folder: Path) -> None:
        self.port = port
        self.folder = folder
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        """The ``redis://`` URL of the server."""
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        """Start the server and return once it answers PING."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (.ci/run installs it with apt-get)")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = await asyncio.create_subprocess_exec(
            *(binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)),
            *("--save", "", "--appendonly", "no", "--protected-mode", "no"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        async with asyncio.timeout(READY_TIMEOUT):
            while not await self._answers():
                if self.process.returncode is not None:
                    raise RuntimeError(f"redis-server exited with {self.process.returncode}")
                await asyncio.sleep(0.02)

    async def kill(self) -> None:
        """Kill the server at once (SIGKILL) and wait for it to be gone."""
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            async with asyncio.timeout(READY_TIMEOUT):
                await self.process.wait()
        self.process = None

    async def _answers(self) -> bool:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        try:
            writer.write(b"PING\r\n")
            await writer.drain()
            return (await reader.readline()).startswith(b"+PONG")
        except OSError:
            return False
        finally:
            writer.close()
