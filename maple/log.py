"""Process-wide logging: one line per event, prefixed with the stage so `maple up` output reads well."""

from __future__ import annotations

import logging
import sys

_FORMAT = "%(asctime)s %(levelname)-7s [%(stage)s] %(name)s: %(message)s"


class _StageFilter(logging.Filter):
    def __init__(self, stage: str) -> None:
        super().__init__()
        self.stage = stage

    def filter(self, record: logging.LogRecord) -> bool:
        record.stage = self.stage
        return True


def setup_logging(stage: str, level: str = "info") -> None:
    """Send log records to stderr with the stage name; idempotent so re-entry from the CLI is harmless."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_maple", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._maple = True  # type: ignore[attr-defined]
    handler.addFilter(_StageFilter(stage))
    handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Client libraries are chatty at INFO; their warnings still come through.
    for noisy in ("kafka", "aiokafka", "urllib3", "chdb"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
