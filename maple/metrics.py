"""Prometheus helpers: every Maple process exports its own registry on an HTTP /metrics route."""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)

# Latency buckets (seconds) for request and write paths: sub-millisecond to tens of seconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The registry in Prometheus text format, and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


def serve(registry: CollectorRegistry, port: int, what: str) -> int | None:
    """Serve `registry` on 0.0.0.0:`port`/metrics from a thread. A taken port is logged, not fatal: several
    local processes of one kind share a machine, and metrics must never stop the data path."""
    if not port:
        return None
    try:
        start_http_server(port, registry=registry)
    except OSError as exc:
        log.warning("%s metrics not served: port %d is unavailable (%s)", what, port, exc.strerror)
        return None
    log.info("%s metrics on :%d/metrics", what, port)
    return port
