"""Every layer applies the same limits: event type length, instance-id pattern, payload size."""

from __future__ import annotations

import pytest

from conftest import UpstreamFactory
from runcast.errors import BadUserInput, PayloadTooLarge, RuncastError
from runcast.limits import MAX_EVENT_TYPE_LENGTH, MAX_ID_LENGTH, compact_json, json_size
from runcast.models import ANONYMOUS
from runcast.resolvers._validation import check_event_type, check_id, check_payload_size
from runcast.settings import MIB

IDS = [
    ("a", True),
    ("A_b-9", True),
    ("_x", True),
    ("x" * MAX_ID_LENGTH, True),
    ("x" * (MAX_ID_LENGTH + 1), False),
    ("-x", False),
    ("a b", False),
    ("a/b", False),
    ("é", False),
    ("abc!", False),
]


def gateway_accepts_id(value: str) -> bool:
    """Whether the GraphQL layer's argument check accepts ``value`` as an instance id."""
    try:
        check_id(value, argument="instanceId")
    except BadUserInput:
        return False
    return True


def payload_of_size(size: int) -> dict[str, str]:
    """A JSON object whose compact encoding is exactly ``size`` bytes."""
    payload = {"p": ""}
    payload["p"] = "x" * (size - json_size(payload))
    assert json_size(payload) == size
    return payload


@pytest.mark.parametrize(("instance_id", "valid"), IDS)
async def test_every_adapter_and_the_gateway_agree_on_instance_ids(
    upstream_factory: UpstreamFactory, instance_id: str, valid: bool
) -> None:
    """An instance id the gateway accepts, every upstream accepts, and the same for refusals."""
    assert gateway_accepts_id(instance_id) is valid
    async with upstream_factory() as upstream:
        try:
            await upstream.trigger("sleepy", instance_id=instance_id, credentials=ANONYMOUS)
        except BadUserInput:
            accepted = False
        else:
            accepted = True
            await upstream.terminate("sleepy", instance_id, credentials=ANONYMOUS)
    assert accepted is valid


async def test_every_layer_allows_the_same_event_type_length(
    upstream_factory: UpstreamFactory,
) -> None:
    """An event type of the maximum length passes every length check; one more is refused."""
    longest, too_long = "e" * MAX_EVENT_TYPE_LENGTH, "e" * (MAX_EVENT_TYPE_LENGTH + 1)
    assert check_event_type(longest) == longest
    with pytest.raises(BadUserInput):
        check_event_type(too_long)
    async with upstream_factory() as upstream:
        run = await upstream.trigger("sleepy", credentials=ANONYMOUS)
        # The run waits for no event, so the longest type is refused too, but not for length.
        for event_type, refused_for_length in ((longest, False), (too_long, True)):
            with pytest.raises(RuncastError) as refused:
                await upstream.send_event(
                    "sleepy", run.instance_id, event_type=event_type, credentials=ANONYMOUS
                )
            assert refused.value.code == "BAD_USER_INPUT"
            assert ("characters" in refused.value.message) is refused_for_length
        await upstream.terminate("sleepy", run.instance_id, credentials=ANONYMOUS)


async def test_every_layer_measures_a_payload_as_compact_json(
    upstream_factory: UpstreamFactory,
) -> None:
    """A payload of exactly 1 MiB compact JSON passes every layer; one byte more is refused."""
    exact, over = payload_of_size(MIB), payload_of_size(MIB + 1)
    check_payload_size(exact, limit=MIB)
    with pytest.raises(PayloadTooLarge):
        check_payload_size(over, limit=MIB)
    assert len(compact_json(exact).encode()) == MIB
    async with upstream_factory() as upstream:
        run = await upstream.trigger("approval", credentials=ANONYMOUS)
        with pytest.raises(PayloadTooLarge):
            await upstream.send_event(
                "approval",
                run.instance_id,
                event_type="approve",
                payload=over,
                credentials=ANONYMOUS,
            )
        await upstream.send_event(
            "approval", run.instance_id, event_type="approve", payload=exact, credentials=ANONYMOUS
        )


def test_a_payload_nested_past_the_recursion_limit_is_bad_input() -> None:
    """A payload too deep to encode is BAD_USER_INPUT, not an internal error."""
    deep: list[object] = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(BadUserInput, match="nests too deeply"):
        check_payload_size(deep, limit=MIB)
