"""Process-wide logging: one line per event, one format for every Maple process and the libraries in it.

Every line reads `HH:MM:SS LEVEL   [stage] logger: message`, so `maple up`, whose children share its
stderr, reads as one log. The libraries inside a stage log through the same handler: Faust and mode (the
worker starts Faust's Worker with `override_logging=False`, so Faust keeps this setup instead of installing
its own format), aiokafka, and librdkafka (confluent-kafka clients given `kafka_client_logger(kind)`, whose
lines arrive as `maple.kafka.<kind>`, rate-limited).

Their INFO lines narrate their own machinery (every Faust service's "Starting..." and "Stopping...", each
group join, librdkafka's notices), so below Maple's debug level only their warnings and errors come through;
at debug, their INFO lines too.
"""

from __future__ import annotations

import logging
import sys
import threading
import time

_FORMAT = "%(asctime)s %(levelname)-7s [%(stage)s] %(name)s: %(message)s"
# A record that matches this: `maple up` and its tests rely on every line having this shape.
LINE_PATTERN = r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) +\[[\w.-]+\] [\w.-]+: "

# "maple.kafka" holds only librdkafka's client loggers (maple/kafka.py logs nothing of its own).
LIBRARIES = ("faust", "mode", "aiokafka", "kafka", "maple.kafka", "urllib3", "chdb")


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
    libraries = logging.INFO if root.level <= logging.DEBUG else max(logging.WARNING, root.level)
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(libraries)


class RateLimit(logging.Filter):
    """Let at most `burst` records through per `window_s`; when a window ends after drops, the next record
    that passes says how many were dropped. librdkafka logs each failed connect, about 20 lines per second
    per client while a broker is away: one line every few seconds says the same."""

    def __init__(self, burst: int = 5, window_s: float = 10.0) -> None:
        super().__init__()
        self.burst, self.window_s = burst, window_s
        self._start = 0.0
        self._passed = self._dropped = 0
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        with self._lock:
            if now - self._start >= self.window_s:
                dropped, self._dropped = self._dropped, 0
                self._start, self._passed = now, 0
                if dropped:
                    record.msg = f"{record.msg} ({dropped} similar lines suppressed in the last {self.window_s:.0f}s)"
            if self._passed >= self.burst:
                self._dropped += 1
                return False
            self._passed += 1
            return True


def kafka_client_logger(kind: str) -> logging.Logger:
    """The logger librdkafka's lines of a client kind go to (confluent-kafka's `logger` setting): Maple's
    format and level, rate-limited."""
    logger = logging.getLogger(f"maple.kafka.{kind}")
    if not any(isinstance(f, RateLimit) for f in logger.filters):
        logger.addFilter(RateLimit())
    return logger
