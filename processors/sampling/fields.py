"""Typed reads of one block of the Collector's tail_sampling YAML, with the key path in every error.

The policy modules decode their own block through this; nothing here knows any policy.
"""

from __future__ import annotations

import difflib
import math
import re
from typing import Any

from processors.sampling.policy import ConfigError, config_error

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, None: 1000}
_REQUIRED: Any = object()


class Fields:
    """A YAML mapping at `path` whose keys were checked against the ones its owner accepts."""

    def __init__(self, block: Any, path: str, allowed: frozenset[str] | set[str]) -> None:
        if block is None:
            block = {}
        if not isinstance(block, dict):
            raise config_error(path, f"expected a mapping, got {type(block).__name__}")
        for key in block:
            if key not in allowed:
                hint = difflib.get_close_matches(str(key), sorted(allowed), n=1)
                raise config_error(f"{path}.{key}", "unknown key" + (
                    f" (did you mean {hint[0]!r}?)" if hint else f"; accepted: {', '.join(sorted(allowed))}"))
        self.block: dict[str, Any] = block
        self.path = path

    def fail(self, key: str, message: str) -> ConfigError:
        return config_error(f"{self.path}.{key}" if key else self.path, message)

    def has(self, key: str) -> bool:
        return key in self.block

    def number(self, key: str, default: Any = _REQUIRED, minimum: float | None = None) -> Any:
        if key not in self.block:
            if default is _REQUIRED:
                raise self.fail(key, "required")
            return default
        value = self.block[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(key, f"expected a finite number, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.fail(key, f"must be at least {minimum}, got {value}")
        return value

    def text(self, key: str, default: Any = _REQUIRED) -> Any:
        if key not in self.block:
            if default is _REQUIRED:
                raise self.fail(key, "required")
            return default
        value = self.block[key]
        if not isinstance(value, str) or (default is _REQUIRED and not value):
            raise self.fail(key, f"expected a non-empty string, got {value!r}")
        return value

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.block.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {value!r}")
        return value

    def items(self, key: str) -> list[Any]:
        """A required, non-empty list."""
        value = self.block.get(key)
        if not isinstance(value, list) or not value:
            raise self.fail(key, "expected a non-empty list")
        return value

    def duration_ms(self, key: str, default: str) -> int:
        """A duration such as 10s or 500ms (a bare number is seconds, as in the Collector's YAML)."""
        value = self.block.get(key, default)
        if isinstance(value, bool):
            raise self.fail(key, "expected a duration such as 10s or 500ms")
        if isinstance(value, (int, float)):
            if not math.isfinite(value) or value < 0:
                raise self.fail(key, f"expected a duration of 0 or more, such as 10s or 500ms, got {value!r}")
            return int(value * 1000)
        match = _DURATION.match(str(value))
        if not match:
            raise self.fail(key, f"expected a duration such as 10s or 500ms, got {value!r}")
        return int(float(match.group(1)) * _UNITS_MS[match.group(2)])

    def block_of(self, key: str, allowed: frozenset[str] | set[str]) -> Fields:
        """A nested mapping (absent: empty)."""
        return Fields(self.block.get(key), f"{self.path}.{key}", allowed)


def per_partition(total: float, share: float, path: str) -> float:
    """A spans-per-second budget split over the span partitions; each must get at least one span/s, or that
    partition could never sample a trace under it."""
    if total * share < 1:
        raise config_error(path, f"{total:g} spans/s over {round(1 / share)} span partitions leaves less than 1 "
                                 f"per partition; use at least {math.ceil(1 / share)}")
    return total * share
