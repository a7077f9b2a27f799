"""Dependencies point one way: apps -> ops -> stages -> processors -> the library (docs/architecture.md).

Read from the source with `ast`, so an import hidden inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers.environment import REPO

# package -> the first-party packages it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "maple": set(),                                   # the library: settings, topics, clients, schema
    "processors": {"maple"},                          # pure transforms
    "ingest": {"maple"},                              # stage: receive
    "topologies": {"maple", "processors"},            # stage: transform (Faust wiring of the processors)
    "sinks": {"maple"},                               # stage: write
    "query": {"maple"},                               # stage: read
    "ops": {"maple", "sinks"},                        # operations on the stages' Kafka and ClickHouse state
    "apps": {"maple", "processors", "ingest", "topologies", "sinks", "query", "ops"},
}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_every_first_party_import_follows_the_layers() -> None:
    wrong: list[str] = []
    for package, allowed in ALLOWED.items():
        for path in sorted((REPO / package).rglob("*.py")):
            for name in sorted(_imports(path) & set(ALLOWED)):
                if name != package and name not in allowed:
                    wrong.append(f"{path.relative_to(REPO)} imports {name}")
    assert not wrong, "imports against docs/architecture.md's layers:\n" + "\n".join(wrong)


def test_the_layers_cover_every_package_the_project_ships() -> None:
    import tomllib

    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    assert {p.rstrip("*") for p in include} <= set(ALLOWED)
