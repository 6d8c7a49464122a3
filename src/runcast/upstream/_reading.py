"""Tolerant reading of upstream values, shared by both REST adapters' shape readers."""

from __future__ import annotations


def optional_text(value: object) -> str | None:
    """``value`` if it is a non-empty string, else ``None``."""
    return value if isinstance(value, str) and value else None


def status_text(value: object) -> str:
    """A status as the upstream spelled it: a string as is, null as ``""``, else its text."""
    return value if isinstance(value, str) else ("" if value is None else str(value))
