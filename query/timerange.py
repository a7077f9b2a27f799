"""Time ranges of requests: parse `from`/`to`, apply the default and the maximum, bind as nanoseconds.

Accepted forms: RFC 3339 (``2025-01-02T03:04:05.5Z``, an offset or ``Z`` required), Unix time as an integer
(seconds, milliseconds or nanoseconds, told apart by magnitude) and ``now``/``now-15m``/``now-2h``/``now-7d``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from query.errors import bad_request
from query.models import TimeRange

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
NS = 1_000_000_000


def _relative(text: str, now_ns: int, name: str) -> int:
    rest = text[3:].strip()
    if not rest:
        return now_ns
    sign = rest[0]
    amount, unit = rest[1:-1].strip(), rest[-1:]
    if sign not in "+-" or unit not in _UNITS or not (amount.isascii() and amount.isdigit()) or len(amount) > 9:
        raise bad_request(f"{name}: {text!r} is not a time; expected now, now-<n><s|m|h|d|w>, RFC 3339 or Unix time",
                          name)
    delta = int(amount) * _UNITS[unit] * NS
    return now_ns - delta if sign == "-" else now_ns + delta


def parse_time(text: str, name: str, now_ns: int | None = None) -> int:
    """Unix nanoseconds of `text`; ApiError naming the parameter when it is not a time."""
    value = text.strip()
    now_ns = time.time_ns() if now_ns is None else now_ns
    if not value:
        raise bad_request(f"{name}: empty time", name)
    if value.lower().startswith("now"):
        return _relative(value.lower(), now_ns, name)
    digits = value.lstrip("-")
    if digits.isascii() and digits.isdigit() and len(value) <= 20:
        number = int(value)
        if abs(number) < 10**11:        # seconds (until the year 5138)
            return number * NS
        if abs(number) < 10**14:        # milliseconds
            return number * 1_000_000
        if abs(number) < 10**17:        # microseconds
            return number * 1000
        return number
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise bad_request(f"{name}: {text!r} is not a time; expected RFC 3339 (2025-01-02T03:04:05Z), "
                          "Unix time or now-<n><s|m|h|d|w>", name) from None
    if parsed.tzinfo is None:
        raise bad_request(f"{name}: {text!r} has no time zone; add Z or an offset such as +02:00", name)
    # fromisoformat keeps microseconds; nanoseconds beyond them are cut, which no range needs.
    return int(parsed.timestamp()) * NS + parsed.microsecond * 1000


def format_ns(ns: int) -> str:
    """RFC 3339 in UTC with nanoseconds."""
    seconds, frac = divmod(ns, NS)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}Z"


@dataclass(frozen=True)
class Range:
    start_ns: int
    end_ns: int

    @property
    def seconds(self) -> float:
        return (self.end_ns - self.start_ns) / NS

    def model(self) -> TimeRange:
        return TimeRange(start=format_ns(self.start_ns), end=format_ns(self.end_ns), start_ns=self.start_ns,
                         end_ns=self.end_ns)


# ClickHouse's DateTime64(9) covers 1900..2262; keep ranges inside what it can represent.
MIN_NS = 0
MAX_NS = 9_223_372_036 * NS


def resolve(start: str | None, end: str | None, default_s: int, max_s: int, now_ns: int | None = None) -> Range:
    """The request's range: `to` defaults to now, `from` to `default_s` before `to`; at most `max_s` long."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    end_ns = parse_time(end, "to", now_ns) if end is not None else now_ns
    start_ns = parse_time(start, "from", now_ns) if start is not None else end_ns - default_s * NS
    for name, value in (("from", start_ns), ("to", end_ns)):
        if not MIN_NS <= value <= MAX_NS:
            raise bad_request(f"{name}: out of the range ClickHouse can store (1970 to 2262)", name)
    if start_ns > end_ns:
        raise bad_request(f"from ({format_ns(start_ns)}) is after to ({format_ns(end_ns)})", "from")
    if end_ns - start_ns > max_s * NS:
        raise bad_request(f"the range from {format_ns(start_ns)} to {format_ns(end_ns)} is longer than the "
                          f"maximum of {max_s} s (api.max_range_s)", "from")
    return Range(start_ns, end_ns)
