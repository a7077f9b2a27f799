"""The applications: the `maple` command line, `maple up`'s supervisor, the local Kafka, the embedded
ClickHouse host and the benchmarks.

The top layer of the house (docs/architecture.md): apps import stages and the library; nothing imports apps.
"""

from __future__ import annotations

import sys


def maple_command(*args: str) -> list[str]:
    """The argv that runs `maple <args>` with this interpreter (how `maple up` and the benches start children)."""
    return [sys.executable, "-m", "apps", *args]
