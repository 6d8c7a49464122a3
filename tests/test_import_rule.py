"""design.md's import rule, checked on the source: imports point down the layers, never up.

Every ``import`` counts, at module level, inside functions and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parent.parent / "src"

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("cli", ("runcast.cli", "runcast.__main__")),
    ("app", ("runcast.app", "runcast._serve", "runcast._settings_checks")),
    (
        "transports",
        (
            "runcast._graphql_app",
            "runcast._ws_protocols",
            "runcast._sse",
            "runcast._accept",
            "runcast._graphiql",
            "runcast._wire_guards",
            "runcast._host_guard",
            "runcast._persisted_redis",
            "runcast.dashboard",
        ),
    ),
    ("schema", ("runcast.schema",)),
    ("resolvers", ("runcast.resolvers",)),
    ("live", ("runcast.live",)),
    ("readiness", ("runcast.readiness",)),
    ("upstream", ("runcast.upstream",)),
    (
        "gateway plumbing",
        ("runcast", "runcast.settings", "runcast.documents", "runcast.trusted_documents"),
    ),
    ("metrics", ("runcast.metrics",)),
    ("engine", ("runcast.engine",)),
    (
        "plain",
        (
            "runcast.models",
            "runcast.errors",
            "runcast.limits",
            "runcast.wire",
            "runcast.logs",
            "runcast.tracing",
            "runcast._process",
            "runcast._connection_guard",
            "runcast._server",
            "runcast._http_pool",
        ),
    ),
]
"""Top to bottom: a module may import its own layer and the layers below it.

``runcast`` is the package's import surface (it re-exports models, errors and ``Settings``);
``from runcast import models`` imports ``runcast.models``. ``engine`` sits right above the
plain modules, so it imports nothing of the gateway.
"""

FRAMEWORKS_BANNED = {
    "runcast.engine": ("strawberry", "graphql"),
    "runcast.models": ("strawberry", "graphql", "starlette"),
    "runcast.errors": ("strawberry", "graphql", "starlette"),
    "runcast.limits": ("strawberry", "graphql", "starlette"),
    "runcast.wire": ("strawberry", "graphql", "starlette", "httpx", "pydantic"),
}
"""Third-party packages a part must not import (design.md: the engine imports no Strawberry)."""


def module_name(root: Path, path: Path) -> str:
    """``runcast.engine.server`` for ``src/runcast/engine/server.py``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(root: Path, path: Path) -> Iterator[tuple[int, str]]:
    """Every module ``path`` imports (absolute names), with its line."""
    module = module_name(root, path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                is_module = (root / candidate.replace(".", "/")).with_suffix(".py").exists() or (
                    root / candidate.replace(".", "/") / "__init__.py"
                ).exists()
                yield node.lineno, candidate if is_module else base


def layer_of(module: str) -> int | None:
    """The index of ``module``'s layer in :data:`LAYERS` (its longest matching prefix).

    ``runcast`` itself matches only the package's ``__init__``.
    """
    best: tuple[int, int] | None = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            inside = module.startswith(prefix + ".") and prefix != "runcast"
            if (module == prefix or inside) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    return None if best is None else best[1]


def violations(root: Path) -> list[str]:
    """Each import that points up the layers or into a banned framework, as one line."""
    found = []
    for path in sorted(root.rglob("*.py")):
        module = module_name(root, path)
        own = layer_of(module)
        if own is None:
            found.append(f"{module}: in no layer (add it to LAYERS)")
            continue
        banned = [v for k, v in FRAMEWORKS_BANNED.items() if module.startswith(k)]
        for line, target in imported(root, path):
            top = target.split(".")[0]
            if any(top in names for names in banned):
                found.append(f"{module}:{line} imports {target}")
            if top != "runcast":
                continue
            theirs = layer_of(target)
            if theirs is not None and theirs < own:
                found.append(
                    f"{module}:{line} ({LAYERS[own][0]}) imports {target} ({LAYERS[theirs][0]})"
                )
    return found


def test_imports_point_down_the_layers() -> None:
    """No module of src/ imports a layer above its own (so engine/ imports no gateway module)."""
    assert violations(SOURCE) == []


@pytest.mark.parametrize(
    ("path", "source", "needle"),
    [
        ("runcast/engine/server.py", "from runcast.settings import Settings\n", "settings"),
        ("runcast/engine/x.py", "def f():\n    import runcast.app\n", "runcast.app"),
        ("runcast/upstream/a.py", "from runcast.live import LiveHub\n", "runcast.live"),
        ("runcast/engine/y.py", "import strawberry\n", "strawberry"),
        ("runcast/models.py", "from .schema import types\n", "runcast.schema.types"),
        ("runcast/newthing.py", "x = 1\n", "in no layer"),
    ],
)
def test_the_rule_catches_an_upward_import(
    tmp_path: Path, path: str, source: str, needle: str
) -> None:
    """Upward imports (lazy ones too), banned frameworks and unplaced modules are all caught."""
    for package in ("runcast", "runcast/engine", "runcast/upstream", "runcast/schema"):
        (tmp_path / package).mkdir(parents=True, exist_ok=True)
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "runcast/schema/types.py").write_text("")
    (tmp_path / path).write_text(source)
    found = violations(tmp_path)
    assert len(found) == 1, found
    assert needle in found[0]
