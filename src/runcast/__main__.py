"""``python -m runcast``: the same as the ``runcast`` command."""

from __future__ import annotations

from runcast.cli import main

raise SystemExit(main())
