"""The engine package's import surface."""

from __future__ import annotations

import runcast.engine


def test_engine_exports_are_sorted_and_real() -> None:
    """runcast.engine.__all__ is sorted and names only objects the package really has."""
    names = runcast.engine.__all__
    assert names == sorted(names)
    for name in names:
        assert getattr(runcast.engine, name) is not None
    assert {"Engine", "load_workflows", "parse_duration"} <= set(names)
