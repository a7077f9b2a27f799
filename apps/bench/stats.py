"""Summary statistics shared by the benchmarks, so every report's p50/p95/p99 means the same thing."""

from __future__ import annotations

import math
from collections.abc import Sequence


def quantile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile by linear interpolation between the closest ranks (numpy's default); None when empty.
    Exact over a benchmark's few hundred samples, where a histogram's buckets would blur the goal it checks."""
    if not values:
        return None
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def percentile(values: Sequence[float], q: float) -> float:
    """`quantile` of a sample that cannot be empty (a benchmark that timed nothing has failed before this)."""
    result = quantile(values, q)
    if result is None:
        raise ValueError("no samples to take a percentile of")
    return result
