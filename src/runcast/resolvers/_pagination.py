"""Relay cursors over the upstream's page cursors.

An edge cursor names a position as (upstream page cursor, items to skip on that
page), encoded as opaque URL-safe base64, so ``after`` can point at any edge,
not only at page boundaries.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from runcast.errors import BadUserInput
from runcast.models import Run


@dataclass(frozen=True, slots=True)
class Position:
    """Where a listing resumes: the upstream page cursor and how many runs to skip on it."""

    page_cursor: str | None
    skip: int = 0


@dataclass(frozen=True, slots=True)
class RunSlice:
    """One page of runs for a Relay connection, with a cursor per run."""

    edges: tuple[tuple[str, Run], ...]
    has_next_page: bool

    @property
    def end_cursor(self) -> str | None:
        """The cursor of the last edge, or ``None`` when there are no edges."""
        return self.edges[-1][0] if self.edges else None


def encode_cursor(position: Position) -> str:
    """The opaque cursor string for ``position``."""
    raw = json.dumps([position.page_cursor, position.skip], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> Position:
    """The position an ``after`` argument names; ``None`` is the start.

    Raises:
        BadUserInput: the cursor was not made by this gateway.
    """
    if cursor is None:
        return Position(None, 0)
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        page_cursor, skip = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError, binascii.Error) as exc:
        raise BadUserInput(f"after {cursor!r} is not a cursor this API returned") from exc
    if not (page_cursor is None or isinstance(page_cursor, str)) or not (
        isinstance(skip, int) and 0 <= skip <= 1000
    ):
        raise BadUserInput(f"after {cursor!r} is not a cursor this API returned")
    return Position(page_cursor, skip)


def slice_page(
    runs: tuple[Run, ...], next_cursor: str | None, *, start: Position, first: int
) -> RunSlice:
    """Cut the runs fetched from ``start`` (skip included) into a slice of at most ``first``."""
    kept = runs[start.skip : start.skip + first]
    edges: list[tuple[str, Run]] = []
    for index, run in enumerate(kept):
        consumed = start.skip + index + 1
        if consumed == len(runs) and next_cursor is not None:
            position = Position(next_cursor, 0)
        else:
            position = Position(start.page_cursor, consumed)
        edges.append((encode_cursor(position), run))
    has_next = next_cursor is not None or len(runs) > start.skip + len(kept)
    return RunSlice(tuple(edges), has_next)
