"""Process-wide logging: one line per event, prefixed with the stage so `maple up` output reads well."""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections.abc import Callable

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
    for noisy in ("kafka", "aiokafka", "urllib3", "chdb", LIBRDKAFKA_LOGGER):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # aiokafka (under Faust) logs every failed reconnect, ten a second while a broker is down.
    handler.addFilter(RateLimit(prefixes=("aiokafka", "kafka")))


# librdkafka's own log lines (every confluent-kafka client Maple makes: maple/kafka.py `client_logging`).
LIBRDKAFKA_LOGGER = "maple.librdkafka"
RATE_LIMIT_INTERVAL_S = 10.0
_DIGITS = re.compile(r"\d+")


class RateLimit(logging.Filter):
    """At most one record per `interval_s` for each kind of message; the next one let through says how many
    were held back. A "kind" is the logger and the message with its numbers blanked out, so "Connect to
    127.0.0.1:9093 failed ... after 0ms" and the same line for 9094 a moment later are one kind.

    `prefixes` limits the filter to loggers whose names start with one of them (for a handler-level filter);
    without it every record the filter sees is limited. Thread-safe: librdkafka's lines arrive from poll
    threads."""

    def __init__(self, interval_s: float = RATE_LIMIT_INTERVAL_S, prefixes: tuple[str, ...] = (),
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.prefixes = prefixes
        self._clock = clock
        self._lock = threading.Lock()
        self._kinds: dict[tuple[str, str], tuple[float, int]] = {}  # kind -> (last let through, held back since)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.prefixes and not record.name.startswith(self.prefixes):
            return True
        kind = (record.name, _DIGITS.sub("#", record.getMessage()))
        now = self._clock()
        with self._lock:
            last, held = self._kinds.get(kind, (None, 0))
            if last is not None and now - last < self.interval_s:
                self._kinds[kind] = (last, held + 1)
                return False
            self._kinds[kind] = (now, 0)
            if len(self._kinds) > 1000:  # kinds seen long ago: forget them
                self._kinds = {k: v for k, v in self._kinds.items() if now - v[0] < self.interval_s}
        if held and last is not None:
            record.msg = f"{record.getMessage()} ({held} more like this in the last {now - last:.0f}s)"
            record.args = ()
        return True


_librdkafka: logging.Logger | None = None


def librdkafka_logger() -> logging.Logger:
    """The logger every confluent-kafka client hands librdkafka's lines to, rate-limited per kind of line.

    librdkafka queues them for the client's poll/consume/flush calls (confluent-kafka's `logger` setting),
    so a client that is never polled must be polled now and then (`poll(0)`) or its lines pile up."""
    global _librdkafka
    if _librdkafka is None:
        logger = logging.getLogger(LIBRDKAFKA_LOGGER)
        logger.addFilter(RateLimit())
        _librdkafka = logger
    return _librdkafka
