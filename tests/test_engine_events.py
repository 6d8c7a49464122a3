"""Events of the embedded engine: delivery, FIFO per type, limits, durability."""

from __future__ import annotations

import contextlib
import sqlite3
import tracemalloc
from datetime import timedelta
from pathlib import Path

import pytest

from engine_support import open_engine, return_step, wait_for_run, wait_for_status, workflow
from runcast.engine import Engine
from runcast.engine.definitions import SleepNode, WaitForEventNode
from runcast.errors import BadUserInput, PayloadTooLarge, RunFinished, RunNotFound
from runcast.models import RunStatus

TWO_WAITS = workflow(
    "two-waits",
    SleepNode("settle", timedelta(milliseconds=1)),
    WaitForEventNode("first", "x"),
    WaitForEventNode("other", "y"),
    WaitForEventNode("second", "x"),
    return_step("end", {"first": "first.payload", "second": "second.payload", "y": "other"}),
)


async def test_event_reaches_the_wait_and_the_output_uses_it(engine: Engine) -> None:
    """An event ends the wait; the wait's result is {eventType, payload} and later steps use it."""
    await engine.trigger("approval", input={"orderId": 9}, instance_id="a")
    waiting = await wait_for_run(
        engine, "approval", "a", lambda r: r.steps is not None and len(r.steps) == 3
    )
    assert waiting.status is RunStatus.PAUSED
    assert waiting.wake_at is None
    assert waiting.steps is not None
    assert (waiting.steps[2].name, waiting.steps[2].type) == ("approval", "wait_for_event")
    answer = await engine.send_event(
        "approval", "a", event_type="approve", payload={"approved": True, "approvedBy": "ada"}
    )
    assert answer.instance_id == "a"
    done = await wait_for_status(engine, "approval", "a", RunStatus.COMPLETE)
    assert done.output == {"orderId": 9, "approved": True, "by": "ada"}
    assert done.steps is not None
    assert done.steps[2].output == {
        "eventType": "approve",
        "payload": {"approved": True, "approvedBy": "ada"},
    }


async def test_early_events_are_kept_first_in_first_out_per_type(tmp_path: Path) -> None:
    """Events sent before the run reaches its waits are kept and delivered FIFO per type."""
    async with open_engine(tmp_path / "e.db", TWO_WAITS) as engine:
        await engine.trigger("two-waits", instance_id="w")
        await engine.send_event("two-waits", "w", event_type="x", payload=1)
        await engine.send_event("two-waits", "w", event_type="y", payload="why")
        await engine.send_event("two-waits", "w", event_type="x", payload=2)
        done = await wait_for_status(engine, "two-waits", "w", RunStatus.COMPLETE)
    assert done.output == {
        "first": 1,
        "second": 2,
        "y": {"eventType": "y", "payload": "why"},
    }


async def test_events_survive_an_engine_restart(tmp_path: Path) -> None:
    """An accepted early event is durable: a new engine on the file still delivers it."""
    flow = workflow(
        "later",
        WaitForEventNode("start", "start"),
        WaitForEventNode("go", "go"),
        return_step("end", "go.payload"),
    )
    async with open_engine(tmp_path / "e.db", flow) as engine:
        await engine.trigger("later", instance_id="l")
        await engine.send_event("later", "l", event_type="go", payload={"n": 1})
    async with open_engine(tmp_path / "e.db", flow) as engine:
        assert (await engine.get_run("later", "l")).status is RunStatus.PAUSED
        await engine.send_event("later", "l", event_type="start")
        done = await wait_for_status(engine, "later", "l", RunStatus.COMPLETE)
    assert done.output == {"n": 1}


async def test_wait_times_out_and_errors(engine: Engine) -> None:
    """A wait whose timeout passes without its event errors the run, naming the event."""
    run = await engine.trigger("wait-timeout")
    paused = await wait_for_status(engine, "wait-timeout", run.instance_id, RunStatus.PAUSED)
    assert paused.wake_at is not None
    done = await wait_for_status(engine, "wait-timeout", run.instance_id, RunStatus.ERRORED)
    assert done.error == "timed out waiting for event 'confirm' after 300ms"
    assert done.steps is not None
    assert done.steps[0].status == "errored"


async def test_event_in_time_beats_the_timeout(engine: Engine) -> None:
    """An event that arrives before the wait's timeout completes the run."""
    run = await engine.trigger("wait-timeout")
    await engine.send_event("wait-timeout", run.instance_id, event_type="confirm", payload="ok")
    done = await wait_for_status(engine, "wait-timeout", run.instance_id, RunStatus.COMPLETE)
    assert done.output == "ok"


async def test_events_to_finished_runs_are_refused(engine: Engine) -> None:
    """An event to a finished run raises RunFinished; to an unknown run RunNotFound."""
    await engine.trigger("three-steps", input={"orderId": 1}, instance_id="f")
    await wait_for_status(engine, "three-steps", "f", RunStatus.COMPLETE)
    with pytest.raises(RunFinished):
        await engine.send_event("three-steps", "f", event_type="x")
    with pytest.raises(RunNotFound):
        await engine.send_event("three-steps", "missing", event_type="x")
    await engine.trigger("sleepy", input=1, instance_id="t")
    await engine.terminate("sleepy", "t")
    with pytest.raises(RunFinished):
        await engine.send_event("sleepy", "t", event_type="x")


async def test_bad_events_are_refused(tmp_path: Path) -> None:
    """Empty event types and payloads over the limit (named in the message) are bad input."""
    async with open_engine(tmp_path / "e.db", TWO_WAITS, max_event_payload_bytes=100) as engine:
        await engine.trigger("two-waits", instance_id="b")
        with pytest.raises(BadUserInput):
            await engine.send_event("two-waits", "b", event_type="")
        with pytest.raises(PayloadTooLarge) as caught:
            await engine.send_event("two-waits", "b", event_type="x", payload="z" * 99)
        assert caught.value.limit == 100
        assert "100 bytes" in caught.value.message
        with pytest.raises(BadUserInput):
            await engine.send_event("two-waits", "b", event_type="x", payload={1, 2})
        # exactly at the limit is accepted: "z"*98 encodes to 100 bytes
        await engine.send_event("two-waits", "b", event_type="x", payload="z" * 98)
        with pytest.raises(PayloadTooLarge):
            await engine.trigger("two-waits", input="z" * 200)


async def test_default_payload_limit_is_one_mebibyte(engine: Engine) -> None:
    """With the defaults, a payload over 1 MiB is refused and the message says 1 MiB."""
    await engine.trigger("approval", input={"orderId": 1}, instance_id="big")
    with pytest.raises(PayloadTooLarge) as caught:
        await engine.send_event("approval", "big", event_type="approve", payload="x" * (1 << 20))
    assert "1 MiB" in caught.value.message


async def test_restart_discards_pending_events(tmp_path: Path) -> None:
    """Events kept for a run are discarded when it restarts from the beginning."""
    flow = workflow(
        "gated",
        WaitForEventNode("start", "start"),
        WaitForEventNode("x", "x", timedelta(milliseconds=200)),
        return_step("end", "x.payload"),
    )
    async with open_engine(tmp_path / "e.db", flow) as engine:
        await engine.trigger("gated", instance_id="g")
        await engine.send_event("gated", "g", event_type="x", payload="early")
        await engine.restart("gated", "g")
        await engine.send_event("gated", "g", event_type="start")
        done = await wait_for_status(engine, "gated", "g", RunStatus.ERRORED, RunStatus.COMPLETE)
    assert done.status is RunStatus.ERRORED
    assert done.error == "timed out waiting for event 'x' after 200ms"


async def test_event_to_a_paused_run_is_kept_until_resume(engine: Engine) -> None:
    """An event sent while the run is paused by request is delivered after resume."""
    await engine.trigger("wait-timeout", instance_id="p")
    await wait_for_status(engine, "wait-timeout", "p", RunStatus.PAUSED)
    await engine.pause("wait-timeout", "p")
    await engine.send_event("wait-timeout", "p", event_type="confirm", payload="yes")
    assert (await engine.get_run("wait-timeout", "p")).status is RunStatus.PAUSED
    await engine.resume("wait-timeout", "p")
    done = await wait_for_status(engine, "wait-timeout", "p", RunStatus.COMPLETE, RunStatus.ERRORED)
    assert (done.status, done.output) == (RunStatus.COMPLETE, "yes")


async def test_undelivered_event_payloads_are_not_held_in_memory(tmp_path: Path) -> None:
    """Payloads of events waiting for delivery stay in the file, not in the engine's memory."""
    flow = workflow(
        "hoard",
        WaitForEventNode("start", "start"),
        WaitForEventNode("big", "big"),
        return_step("end", "length(big.payload)"),
    )
    payload = "x" * (512 * 1024)
    count = 16
    async with open_engine(tmp_path / "e.db", flow) as engine:
        await engine.trigger("hoard", instance_id="h")
        await engine.send_event("hoard", "h", event_type="big", payload=payload)  # warm up
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for _ in range(count):
                await engine.send_event("hoard", "h", event_type="big", payload=payload)
            grown = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert grown < 3 * len(payload), f"{grown} bytes kept for {count} pending events"
        await engine.send_event("hoard", "h", event_type="start")
        done = await wait_for_status(engine, "hoard", "h", RunStatus.COMPLETE)
    assert done.output == len(payload)


@pytest.mark.parametrize("end", [RunStatus.COMPLETE, RunStatus.ERRORED, RunStatus.TERMINATED])
async def test_events_no_wait_took_are_dropped_when_the_run_ends(
    tmp_path: Path, end: RunStatus
) -> None:
    """A finished run keeps no undelivered events in the file, however it ended."""
    timeout = timedelta(milliseconds=200 if end is RunStatus.ERRORED else 30_000)
    flow = workflow(
        "ends",
        WaitForEventNode("first", "first", timeout),
        WaitForEventNode("go", "go", timedelta(seconds=30)),
        return_step("z", "`1`"),
    )
    db = tmp_path / "e.db"
    async with open_engine(db, flow) as engine:
        await engine.trigger("ends", instance_id="e")
        for _ in range(3):  # one is taken by the second wait when the run gets there
            await engine.send_event("ends", "e", event_type="go", payload="x" * 1000)
        if end is RunStatus.COMPLETE:
            await engine.send_event("ends", "e", event_type="first")
        elif end is RunStatus.TERMINATED:
            await engine.terminate("ends", "e")
        await wait_for_status(engine, "ends", "e", end)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone() == (0,)
