"""The tail sampler's typed configuration: decoded once at start-up (decode.py), then used by every
partition sampler, which builds its own policy instances from it (policies may keep state)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from processors.sampling.policy import PolicyConfig


@dataclass(frozen=True)
class SamplingConfig:
    policies: tuple[PolicyConfig, ...]
    decision_wait_ms: int = 10_000
    num_traces: int = 100_000
    sampled_cache_size: int = 100_000
    non_sampled_cache_size: int = 100_000
    late_span_window_ms: int = 30_000
    # The Collector's decision_wait_after_root_received: once a trace's root span (no parent) has arrived,
    # decide it this long after the root's arrival instead of decision_wait after its first span, if sooner.
    decision_wait_after_root_ms: int | None = None


# The seed configuration (seed 004): errors, slow traces and a 10% probabilistic share, in the Collector's
# YAML shape (what `traces.sampling_config` files hold).
DEFAULT_CONFIG: dict[str, Any] = {
    "decision_wait": "10s",
    "num_traces": 100000,
    "policies": [
        {"name": "errors", "type": "status_code", "status_code": {"status_codes": ["ERROR"]}},
        {"name": "slow-traces", "type": "latency", "latency": {"threshold_ms": 1000}},
        {"name": "probabilistic", "type": "probabilistic", "probabilistic": {"sampling_percentage": 10}},
    ],
}
