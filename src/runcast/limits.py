"""Each limit the gateway and the engine enforce, written once.

Plain data and small checks, importable from every layer (the engine too). The
configurable limits live in :class:`runcast.settings.Settings` with these as
their defaults; the fixed ones are used as they are.
"""

from __future__ import annotations

import json
import re

from runcast.models import JSON

MIB = 1024 * 1024

MAX_JSON_NESTING = 64
"""The deepest a JSON request body or WebSocket message may nest (objects and arrays)."""

MAX_ID_LENGTH = 100
"""The longest workflow or instance id (AwaitStep and Cloudflare both allow 100)."""

ID_PATTERN = re.compile(rf"[A-Za-z0-9_][A-Za-z0-9_-]{{0,{MAX_ID_LENGTH - 1}}}")
"""A workflow or instance id: letters, digits, ``-`` and ``_``, not starting with ``-``."""

MAX_EVENT_TYPE_LENGTH = 100
"""The longest event type (Cloudflare's limit; the engine and the gateway use the same)."""

MAX_PAGE_SIZE = 100
"""The most runs one page of a listing may hold."""

DEFAULT_MAX_EVENT_PAYLOAD_BYTES = MIB
"""An event payload's largest compact JSON encoding (AwaitStep's 1 MiB)."""

MAX_UPSTREAM_MESSAGE_CHARS = 500
"""The longest error message of an upstream that runcast passes on (the rest is cut)."""


def compact_json(value: JSON) -> str:
    """``value`` encoded the one way every layer stores and measures it: no spaces, UTF-8 kept.

    Raises:
        TypeError, ValueError: ``value`` is not JSON (``NaN`` and infinities are not).
    """
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def json_size(value: JSON) -> int:
    """The size in bytes of ``value``'s compact JSON encoding (see :func:`compact_json`)."""
    return len(compact_json(value).encode())


def json_nesting_exceeds(value: object, limit: int = MAX_JSON_NESTING) -> bool:
    """Whether ``value`` (decoded JSON) nests objects and arrays deeper than ``limit``.

    Iterative, so a value nested past the interpreter's recursion limit is measured too.
    """
    pending: list[tuple[object, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children: list[object] | tuple[object, ...] = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth >= limit:
            return True
        pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False
