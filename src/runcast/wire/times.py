"""Reading the timestamps of the wire formats: ISO-8601 and HTTP dates, once each."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import overload


def parse_iso_time(value: object) -> datetime | None:
    """An ISO-8601 string (``Z`` or an offset; naive means UTC) as an aware datetime.

    Returns ``None`` for anything else: not a string, empty, or not a date-time.
    """
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def parse_http_date(value: str) -> datetime | None:
    """An HTTP date (RFC 9110, e.g. in ``Retry-After``) as an aware datetime, or ``None``."""
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


@overload
def iso_z(value: datetime) -> str: ...
@overload
def iso_z(value: None) -> None: ...
@overload
def iso_z(value: datetime | None) -> str | None: ...
def iso_z(value: datetime | None) -> str | None:
    """``value`` in UTC as ISO-8601 with a ``Z`` (naive means UTC), or ``None``."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
