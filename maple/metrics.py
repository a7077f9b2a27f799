"""Prometheus helpers: every Maple process exports its own registry on an HTTP /metrics route."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# Latency buckets (seconds) for request and write paths: sub-millisecond to tens of seconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The registry in Prometheus text format, and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST
