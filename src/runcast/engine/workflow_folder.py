"""The folder of workflow files a server runs: loaded at start, checked, and reloaded on change.

``load_folder`` reports each problem as one line (``file: node 'name': what is
wrong``), warns about a folder without workflow files, and with ``strict``
refuses to go on. ``reloading`` reloads the folder into a running engine
whenever a file is added, changed or removed (and on SIGHUP): new runs use the new definitions,
runs in flight keep the definition they started on, and a file that turns bad
keeps its last good definition until it is fixed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Protocol

from runcast.engine.definitions import WorkflowDefinition
from runcast.engine.loader import LoadResult, load_workflows
from runcast.errors import RuncastError

__all__ = [
    "DefinitionSink",
    "WorkflowFolderError",
    "check_folder",
    "load_folder",
    "plan_reload",
    "reload_folder",
    "reloading",
    "watch_folder",
]

log = logging.getLogger("runcast.engine")

Warn = Callable[[str], None]


class WorkflowFolderError(RuncastError):
    """``--strict``: the workflow folder has problems, so the server does not start."""


class DefinitionSink(Protocol):
    """Takes a new set of definitions for new runs (``Engine.replace_definitions``)."""

    @property
    def definitions(self) -> Mapping[str, WorkflowDefinition]: ...

    def replace_definitions(self, definitions: Mapping[str, WorkflowDefinition]) -> None: ...


def check_folder(folder: Path | None) -> tuple[LoadResult, list[str]]:
    """Load ``folder`` (``None``: the demo set) and list every problem as one line."""
    result = load_workflows(folder)
    lines = [str(problem) for problem in result.problems]
    if folder is not None and folder.is_dir() and result.files == 0:
        lines.append(f"{folder}: no workflow files (*.yaml, *.yml, *.json) in this folder")
    return result, lines


def load_folder(folder: Path | None, *, strict: bool, warn: Warn) -> LoadResult:
    """Load the folder a server starts with, telling ``warn`` each problem (one line each).

    Raises:
        WorkflowFolderError: ``strict`` and at least one problem (or no workflow files).
    """
    result, lines = check_folder(folder)
    for line in lines:
        warn(line)
    if strict and lines:
        raise WorkflowFolderError(
            f"{len(lines)} problem(s) in the workflow files (see above); --strict refuses to start"
        )
    return result


def plan_reload(
    current: Mapping[str, WorkflowDefinition], folder: Path
) -> tuple[dict[str, WorkflowDefinition], list[str], list[str]]:
    """Load ``folder`` again: the new definitions, what changed (``added a``), problem lines.

    A file that turned bad keeps its last good definition until it is fixed, and a
    folder that is gone keeps them all.
    """
    if not folder.is_dir():
        return dict(current), [], [f"{folder}: is not a folder; the loaded workflows stay"]
    result, lines = check_folder(folder)
    new = dict(result.definitions)
    broken = {problem.file for problem in result.problems}
    for workflow_id, definition in current.items():
        if definition.source in broken and workflow_id not in new:
            new[workflow_id] = definition
    changes = [f"added {key}" for key in sorted(new.keys() - current.keys())]
    changes += [
        f"changed {key}" for key in sorted(new.keys() & current.keys()) if new[key] != current[key]
    ]
    changes += [f"removed {key}" for key in sorted(current.keys() - new.keys())]
    return new, changes, lines


async def reload_folder(engine: DefinitionSink, folder: Path, *, warn: Warn) -> list[str]:
    """Load ``folder`` (off the loop) into ``engine``; returns what changed."""
    try:
        new, changes, lines = await asyncio.to_thread(plan_reload, dict(engine.definitions), folder)
    except OSError as exc:
        warn(f"{folder}: cannot be read: {exc.strerror}")
        return []
    for line in lines:
        warn(line)
    if changes:
        engine.replace_definitions(new)
        log.info("workflows reloaded from %s: %s", folder, ", ".join(changes))
    return changes


@contextlib.asynccontextmanager
async def reloading(
    engine: DefinitionSink, folder: Path | None, *, enabled: bool, warn: Warn
) -> AsyncIterator[None]:
    """Reload ``folder`` while the block runs: on SIGHUP, and on every change if ``enabled``.

    Nothing happens for the demo set (``folder`` is ``None``).
    """
    if folder is None:
        yield
        return
    requested = asyncio.Event()
    tasks = [asyncio.create_task(_reload_on_request(engine, folder, warn, requested))]
    if enabled:
        tasks.append(asyncio.create_task(watch_folder(engine, folder, warn=warn)))
    hangup = _on_hangup(requested.set)
    try:
        yield
    finally:
        hangup()
        for task in tasks:
            task.cancel()
        # Not suppress(CancelledError): a cancellation of this task itself must go on.
        await asyncio.gather(*tasks, return_exceptions=True)


async def _reload_on_request(
    engine: DefinitionSink, folder: Path, warn: Warn, requested: asyncio.Event
) -> None:
    while True:
        await requested.wait()
        requested.clear()
        await reload_folder(engine, folder, warn=warn)


def _on_hangup(callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` on SIGHUP (main thread, POSIX only); returns the undo."""
    hangup = getattr(signal, "SIGHUP", None)
    if hangup is None or threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(hangup, callback)

    def undo() -> None:
        loop.remove_signal_handler(hangup)

    return undo


async def watch_folder(
    engine: DefinitionSink, folder: Path, *, warn: Warn, debounce_ms: int = 200
) -> None:
    """Reload ``folder`` into ``engine`` after every change to its files, until cancelled."""
    from watchfiles import awatch

    try:
        async for _ in awatch(folder, debounce=debounce_ms, recursive=False):
            await reload_folder(engine, folder, warn=warn)
    except (OSError, RuntimeError) as exc:  # the folder went away, or the watcher broke
        warn(f"{folder}: stopped watching for changes ({exc}); SIGHUP still reloads")
