"""Severity inference for log records that carry no SeverityNumber (when it runs: processors/logs.py).

First a level field of a parsed JSON body (`level`, `severity`, `log.level`, ...), then keywords in the
body (fatal, error, warn(ing), info, debug, trace; whole words, any case; the most severe wins). The
result uses the OpenTelemetry severity ranges: TRACE 1-4, DEBUG 5-8, INFO 9-12, WARN 13-16, ERROR 17-20,
FATAL 21-24, each at the base of its range.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# (text, number) at the base of each OTel range, least to most severe.
TRACE, DEBUG, INFO = ("TRACE", 1), ("DEBUG", 5), ("INFO", 9)
WARN, ERROR, FATAL = ("WARN", 13), ("ERROR", 17), ("FATAL", 21)
_RANGES = (TRACE, DEBUG, INFO, WARN, ERROR, FATAL)

_WORDS = {
    "trace": TRACE, "debug": DEBUG, "info": INFO, "information": INFO, "notice": INFO, "warn": WARN,
    "warning": WARN, "error": ERROR, "err": ERROR, "fatal": FATAL, "critical": FATAL, "crit": FATAL,
    "panic": FATAL, "emergency": FATAL, "emerg": FATAL, "alert": FATAL,
}
# Keywords searched in free text: the six level names (and "warning"), whole words only. One group per word:
# which group matched names the word, since case-insensitive matching also takes "İNFO" or "ınfo", whose
# lower() is no keyword.
_ORDER = ("trace", "debug", "info", "warn", "warning", "error", "fatal")  # least to most severe
_KEYWORDS = re.compile(r"\b(?:" + "|".join(f"(?P<{w}>{w})" for w in ("fatal", "error", "warning", "warn", "info",
                                                                        "debug", "trace")) + r")\b", re.IGNORECASE)
_RANK = {word: rank for rank, word in enumerate(_ORDER)}
LEVEL_FIELDS = ("level", "severity", "log.level", "loglevel", "lvl", "severity_text", "severityText",
                "levelname")
# Numeric levels of pino/bunyan-style loggers.
_NUMERIC = {10: TRACE, 20: DEBUG, 30: INFO, 40: WARN, 50: ERROR, 60: FATAL}


def from_number(number: int) -> str:
    """The short name of an OTel severity number (1-24); '' outside the ranges."""
    if 1 <= number <= 24:
        return _RANGES[(number - 1) // 4][0]
    return ""


def from_level(value: object) -> tuple[str, int] | None:
    """A level field's value (a name like 'warning' or a pino number) as (text, number)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        if value in _NUMERIC:
            return _NUMERIC[value]
        return (from_number(value), value) if 1 <= value <= 24 else None
    if isinstance(value, str):
        return _WORDS.get(value.strip().lower())
    return None


def from_fields(fields: Mapping[str, object]) -> tuple[str, int] | None:
    for name in LEVEL_FIELDS:
        if name in fields:
            found = from_level(fields[name])
            if found:
                return found
    return None


def from_text(text: str) -> tuple[str, int] | None:
    """The most severe level keyword in `text`, if any."""
    best = -1
    for match in _KEYWORDS.finditer(text):
        best = max(best, _RANK[str(match.lastgroup)])
    if best < 0:
        return None
    word = ("trace", "debug", "info", "warn", "warn", "error", "fatal")[best]
    return _WORDS[word]
