"""The ingest's Prometheus metrics (served on the OTLP/HTTP port at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from maple.metrics import LATENCY_BUCKETS


class IngestMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("maple_ingest_requests", "Export requests by signal, protocol and outcome "
                                "(ok, rejected: the client's fault, unavailable: retry later)",
                                ["signal", "protocol", "outcome"], registry=r)
        self.bytes = Counter("maple_ingest_bytes", "Request bytes received, after decompression",
                             ["signal", "protocol"], registry=r)
        self.items = Counter("maple_ingest_items", "Spans, log records or data points, accepted or rejected",
                             ["signal", "outcome"], registry=r)
        self.records = Counter("maple_ingest_kafka_records", "Kafka records produced (a split request makes several)",
                               ["signal"], registry=r)
        self.inflight = Gauge("maple_ingest_inflight_bytes", "Bytes received and not yet acknowledged by Kafka",
                              registry=r)
        self.produce_seconds = Histogram("maple_ingest_produce_seconds", "Time from produce to Kafka's acknowledgement",
                                         ["signal"], buckets=LATENCY_BUCKETS, registry=r)
        self.rejections = Counter("maple_ingest_rejections", "Refused requests by reason", ["reason"], registry=r)
        self.kafka_ready = Gauge("maple_ingest_kafka_ready", "1 while Kafka is reachable", registry=r)
