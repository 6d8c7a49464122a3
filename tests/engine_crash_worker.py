"""A process to kill: start an Engine on a file, trigger runs and send events, then wait.

Used by test_engine_crash.py, which SIGKILLs it mid-step, mid-sleep and mid-wait::

    python engine_crash_worker.py DB WORKFLOWS_DIR MAX_RUNNING COMMANDS_JSON

COMMANDS_JSON is a list of ``["trigger", workflow, instance_id, input]`` and
``["event", workflow, instance_id, event_type, payload]``, run in order. The worker
prints ``ready`` once every command returned, then waits to be killed.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from runcast.engine import Engine, load_workflows


async def main(db: str, folder: str, max_running: int, commands: list[list[object]]) -> None:
    """Run the commands on a fresh engine, say ``ready`` and wait forever."""
    definitions = load_workflows(Path(folder)).definitions
    async with Engine(definitions, db_path=db, max_running=max_running) as engine:
        for command in commands:
            if command[0] == "trigger":
                _, workflow_id, instance_id, value = command
                await engine.trigger(str(workflow_id), instance_id=str(instance_id), input=value)
            else:
                _, workflow_id, instance_id, event_type, payload = command
                await engine.send_event(
                    str(workflow_id), str(instance_id), event_type=str(event_type), payload=payload
                )
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])))
