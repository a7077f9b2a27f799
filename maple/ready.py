"""Readiness files: how a stage tells whoever started it (`maple up`, an exec probe) that it is ready.

A stage given `--ready-file PATH` creates PATH once it does its job (the worker: its agents consume; the
sink: it holds its partitions), and removes it when it stops. The file holds the pid, so a stale file of
a dead process is recognisable.
"""

from __future__ import annotations

import os
from pathlib import Path


def clear(path: Path) -> None:
    """Remove a readiness file (before a (re)start, and at exit)."""
    path.unlink(missing_ok=True)


def mark_ready(path: Path) -> None:
    """Create the readiness file atomically with this process's pid."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(f"{os.getpid()}\n")
    partial.replace(path)


def is_ready(path: Path, pid: int) -> bool:
    """True once the process `pid` marked `path` ready."""
    try:
        return path.read_text().strip() == str(pid)
    except OSError:
        return False
