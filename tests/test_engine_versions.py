"""Workflow versions: a run keeps the definition it was triggered on across edits and removal.

A real engine process is killed while a run sleeps; the file is edited (a step
inserted, the rest renamed) or removed; a new engine on the same database
finishes the run on its own version. ``engine_probe`` counts step executions.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from crash_support import Crash
from engine_support import wait_for_status
from runcast.engine import Engine, load_workflows
from runcast.errors import BadUserInput
from runcast.models import RunStatus

ORIGINAL = """
id: edited
nodes:
  - step: a
    action: {python: "engine_probe:step_a"}
  - sleep: nap
    duration: 1500ms
  - step: c
    action: {python: "engine_probe:step_c"}
"""

EDITED = """
id: edited
nodes:
  - step: inserted
    action: {return: "`new`"}
  - step: a2
    action: {python: "engine_probe:step_a"}
  - sleep: nap2
    duration: 100ms
  - step: c2
    action: {python: "engine_probe:step_c"}
"""


def edited_folder(tmp_path: Path, *, nap: str) -> tuple[Path, Path]:
    """A workflows folder holding ``ORIGINAL`` with a ``nap`` sleep, and an empty step log."""
    folder = tmp_path / "workflows"
    folder.mkdir()
    (folder / "edited.yaml").write_text(ORIGINAL.replace("1500ms", nap))
    log = tmp_path / "steps.log"
    log.touch()
    return folder, log


def _start_sleeping_run(crash: Crash, instance_id: str) -> None:
    (crash.folder / "edited.yaml").write_text(ORIGINAL)
    crash.start([["trigger", "edited", instance_id, crash.input(instance_id)]])
    crash.wait_until(lambda: crash.step_row(instance_id, "nap") is not None)
    crash.kill()


def test_an_edit_during_a_sleep_leaves_the_run_on_its_version(
    crash: Crash, caplog: pytest.LogCaptureFixture
) -> None:
    """Edited mid-sleep: the run ends on its old nodes, new runs use the new ones, one log line."""
    _start_sleeping_run(crash, "e1")
    (crash.folder / "edited.yaml").write_text(EDITED)
    versions: dict[str, str | None] = {}

    async def check(engine: Engine) -> None:
        done = await wait_for_status(engine, "edited", "e1", RunStatus.COMPLETE)
        assert done.output == "c"
        assert [step.name for step in done.steps or ()] == ["a", "nap", "c"]
        new = await engine.trigger("edited", instance_id="e2", input=crash.input("e2"))
        fresh = await wait_for_status(engine, "edited", "e2", RunStatus.COMPLETE)
        assert [step.name for step in fresh.steps or ()] == ["inserted", "a2", "nap2", "c2"]
        versions.update(old=done.workflow_version, new=new.workflow_version)
        assert engine.get_workflow("edited").version == new.workflow_version

    with caplog.at_level(logging.INFO, logger="runcast.engine"):
        crash.reopen(check)
    assert versions["old"]
    assert versions["new"]
    assert versions["old"] != versions["new"]
    changed = [r.getMessage() for r in caplog.records if "changed: version" in r.getMessage()]
    assert changed == [
        f"workflow 'edited' changed: version {versions['old']} -> {versions['new']};"
        f" 1 unfinished runs stay on {versions['old']}"
    ]
    assert crash.lines() == ["e1 a", "e1 c", "e2 a", "e2 c"]


def test_a_removed_file_leaves_its_runs_running_and_readable(crash: Crash) -> None:
    """Removed mid-sleep: the run still completes on its version, and get_run still finds it."""
    _start_sleeping_run(crash, "r1")
    (crash.folder / "edited.yaml").unlink()
    assert "edited" not in load_workflows(crash.folder).definitions

    async def check(engine: Engine) -> None:
        done = await wait_for_status(engine, "edited", "r1", RunStatus.COMPLETE)
        assert done.output == "c"
        assert done.workflow_version is not None
        page = await engine.list_runs("edited")
        assert [run.instance_id for run in page.runs] == ["r1"]

    crash.reopen(check)
    assert crash.lines() == ["r1 a", "r1 c"]


async def test_restart_runs_on_the_runs_own_version(tmp_path: Path) -> None:
    """A finished run restarted after an edit runs its own version's nodes again."""
    folder, log = edited_folder(tmp_path, nap="10ms")
    db = tmp_path / "v.db"
    source = {"id": "v", "log": str(log)}
    async with Engine(load_workflows(folder).definitions, db_path=db) as engine:
        await engine.trigger("edited", instance_id="v", input=source)
        first = await wait_for_status(engine, "edited", "v", RunStatus.COMPLETE)
    (folder / "edited.yaml").write_text(EDITED)
    async with Engine(load_workflows(folder).definitions, db_path=db) as engine:
        await engine.restart("edited", "v")
        again = await wait_for_status(engine, "edited", "v", RunStatus.COMPLETE)
    assert again.workflow_version == first.workflow_version
    assert [step.name for step in again.steps or ()] == ["a", "nap", "c"]
    assert log.read_text().splitlines() == ["v a", "v c", "v a", "v c"]


def test_the_same_definition_is_the_same_version(tmp_path: Path) -> None:
    """Loading an unchanged file twice gives one version; the file's path is not part of it."""
    from runcast.engine._versions import VersionBook

    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "edited.yaml").write_text(ORIGINAL)
    one = VersionBook(load_workflows(tmp_path / "one").definitions).current("edited")
    two = VersionBook(load_workflows(tmp_path / "two").definitions).current("edited")
    assert one == two


async def test_restart_from_a_step_runs_only_that_step_and_later_ones(tmp_path: Path) -> None:
    """restart(from_step="c") runs c again and not a; an unknown step is refused by name."""
    folder, log = edited_folder(tmp_path, nap="10ms")
    db = tmp_path / "f.db"
    async with Engine(load_workflows(folder).definitions, db_path=db) as engine:
        await engine.trigger("edited", instance_id="f", input={"id": "f", "log": str(log)})
        await wait_for_status(engine, "edited", "f", RunStatus.COMPLETE)
        with pytest.raises(BadUserInput, match="has no step 'zz'; its steps are: a, nap, c"):
            await engine.restart("edited", "f", from_step="zz")
        await engine.restart("edited", "f", from_step="c")
        done = await wait_for_status(engine, "edited", "f", RunStatus.COMPLETE)
        await engine.restart("edited", "f", from_step="nap")
        await wait_for_status(engine, "edited", "f", RunStatus.COMPLETE)
    assert done.output == "c"
    assert log.read_text().splitlines() == ["f a", "f c", "f c", "f c"]


async def test_a_reload_keeps_sleeping_runs_on_their_version(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """replace_definitions (a reload) logs the change; a sleeping run ends on its old nodes."""
    folder, log = edited_folder(tmp_path, nap="300ms")
    async with Engine(load_workflows(folder).definitions, db_path=tmp_path / "r.db") as engine:
        old = await engine.trigger("edited", instance_id="o", input={"id": "o", "log": str(log)})
        (folder / "edited.yaml").write_text(EDITED)
        with caplog.at_level(logging.INFO, logger="runcast.engine"):
            engine.replace_definitions(load_workflows(folder).definitions)
            done = await wait_for_status(engine, "edited", "o", RunStatus.COMPLETE)
        new_version = engine.get_workflow("edited").version
    assert [step.name for step in done.steps or ()] == ["a", "nap", "c"]
    assert done.workflow_version == old.workflow_version != new_version
    assert any(
        f"version {old.workflow_version} -> {new_version}; 1 unfinished runs" in r.getMessage()
        for r in caplog.records
    )


def test_every_shipped_and_test_definition_reads_back_as_it_was_stored(
    workflows_dir: Path,
) -> None:
    """A stored version's JSON reads back equal to the definition (the file path aside)."""
    from dataclasses import replace

    from runcast.engine import demo_workflows_dir
    from runcast.engine._versions import definition_from_json, definition_to_json

    loaded = {
        **load_workflows(demo_workflows_dir()).definitions,
        **load_workflows(workflows_dir).definitions,
    }
    assert len(loaded) > 10
    for definition in loaded.values():
        again = definition_from_json(definition_to_json(definition))
        assert again == replace(definition, source=None), definition.id
