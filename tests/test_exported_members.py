"""The package's import surface: every public name is exported and documented."""

from __future__ import annotations

import runcast
import runcast.engine
import runcast.upstream
import runcast.wire


def test_all_exports_exist_and_are_sorted() -> None:
    """Every name in ``__all__`` exists, and ``__all__`` is sorted."""
    for module in (runcast, runcast.engine, runcast.upstream, runcast.wire):
        exported = list(module.__all__)
        assert exported == sorted(exported), module.__name__
        for name in exported:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_public_names_are_exported() -> None:
    """Every public class or function defined by the top-level package is in ``__all__``."""
    public = {
        name
        for name, value in vars(runcast).items()
        if not name.startswith("_")
        and getattr(value, "__module__", "").startswith("runcast")
        and isinstance(value, type)
    }
    assert public <= set(runcast.__all__)
