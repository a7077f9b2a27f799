"""A progress line on stderr for long operations: messages and rows done, rate, ETA.

Redrawn in place on a terminal; on anything else (a log file, a test) a plain line every few seconds,
so long operations still show they are alive without flooding the output."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _human(n: float) -> str:
    for unit in ("", "k", "M", "G"):
        if abs(n) < 1000:
            return f"{n:.0f}{unit}" if unit == "" else f"{n:.1f}{unit}"
        n /= 1000
    return f"{n:.1f}T"


class Progress:
    def __init__(self, what: str, total: int | None, stream: TextIO | None = None,
                 every_s: float | None = None) -> None:
        self.what = what
        self.total = total
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every_s = every_s if every_s is not None else (0.2 if self.tty else 5.0)
        self.started = time.monotonic()
        self._last = 0.0
        self._drawn: tuple[int, int] | None = None
        self.messages = 0
        self.rows = 0

    def update(self, messages: int, rows: int = 0, force: bool = False) -> None:
        """Set the absolute counts done so far and redraw if it is time."""
        self.messages, self.rows = messages, rows
        now = time.monotonic()
        if force or now - self._last >= self.every_s:
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        self._drawn = (self.messages, self.rows)
        elapsed = max(now - self.started, 1e-6)
        rate = self.messages / elapsed
        parts = [f"{self.what}:"]
        if self.total:
            share = min(1.0, self.messages / self.total)
            bar = "#" * int(share * 20)
            parts.append(f"[{bar:<20}] {share * 100:5.1f}% {self.messages:,}/{self.total:,} messages")
        else:
            parts.append(f"{self.messages:,} messages")
        parts.append(f"{self.rows:,} rows")
        parts.append(f"{_human(rate)} msg/s {_human(self.rows / elapsed)} rows/s")
        if self.total and rate > 0 and self.messages < self.total:
            parts.append(f"ETA {(self.total - self.messages) / rate:.0f}s")
        line = "  ".join(parts)
        if self.tty:
            self.stream.write("\r" + line + "\033[K")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self._drawn != (self.messages, self.rows):
            self._draw(time.monotonic())
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
