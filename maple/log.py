"""Process-wide logging: one line per event, one format for every Maple process and the libraries in it.

Every line reads `HH:MM:SS LEVEL   [stage] logger: message`, so `maple up`, whose children share its
stderr, reads as one log. The libraries inside a stage log through the same handler: Faust and mode (the
worker starts Faust's Worker with `override_logging=False`, so Faust keeps this setup instead of installing
its own format), aiokafka, and librdkafka (confluent-kafka clients given `kafka_logger()`).

Their INFO lines narrate their own machinery (every Faust service's "Starting..." and "Stopping...", each
group join), so below Maple's debug level only their warnings and errors come through; at debug, their
INFO lines too.
"""

from __future__ import annotations

import logging
import sys
import time

_FORMAT = "%(asctime)s %(levelname)-7s [%(stage)s] %(name)s: %(message)s"
# A record that matches this: `maple up` and its tests rely on every line having this shape.
LINE_PATTERN = r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) +\[[\w.-]+\] [\w.-]+: "

LIBRARIES = ("faust", "mode", "aiokafka", "kafka", "librdkafka", "urllib3", "chdb")
LIBRDKAFKA = "librdkafka"


class _StageFilter(logging.Filter):
    def __init__(self, stage: str) -> None:
        super().__init__()
        self.stage = stage

    def filter(self, record: logging.LogRecord) -> bool:
        record.stage = self.stage
        return True


class _RateLimit(logging.Filter):
    """At most `burst` records per `period_s` and logger; a line says how many were dropped meanwhile.

    librdkafka repeats itself while a broker is away (a connection refused per broker and retry)."""

    def __init__(self, burst: int = 10, period_s: float = 10.0) -> None:
        super().__init__()
        self.burst, self.period_s = burst, period_s
        self.window_start, self.count, self.dropped = 0.0, 0, 0

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        if now - self.window_start >= self.period_s:
            if self.dropped:
                record.msg = f"{record.msg} (and {self.dropped} more librdkafka messages in the last " \
                             f"{self.period_s:.0f}s)"
            self.window_start, self.count, self.dropped = now, 0, 0
        self.count += 1
        if self.count > self.burst:
            self.dropped += 1
            return False
        return True


def kafka_logger() -> logging.Logger:
    """The logger to give confluent-kafka clients (`"logger": kafka_logger()`): librdkafka's lines then
    arrive in Maple's format and level, rate-limited, instead of raw `%6|...|rdkafka#producer-1|` on stderr.

    The smallest version, for `maple up`'s one-format output; the reliability work gives every client
    factory its own."""
    logger = logging.getLogger(LIBRDKAFKA)
    if not any(isinstance(f, _RateLimit) for f in logger.filters):
        logger.addFilter(_RateLimit())
    return logger


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
