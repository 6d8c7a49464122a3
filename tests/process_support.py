"""Child processes of the tests: ``python -m runcast ...`` started and stopped like a user would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


def start_runcast(
    *args: str,
    cwd: Path | None = None,
    stdout: int = subprocess.PIPE,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[str]:
    """``python -m runcast ARGS`` in a child process, unbuffered, on no preset RUNCAST_PORT."""
    environ = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    environ.pop("RUNCAST_PORT", None)
    return subprocess.Popen(
        [sys.executable, "-m", "runcast", *args],
        cwd=cwd,
        env=environ,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
    )


def interrupt(process: subprocess.Popen[str]) -> None:
    """Stop ``process`` with SIGINT, as Ctrl-C does; kill it if it is not gone in 15 s."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
