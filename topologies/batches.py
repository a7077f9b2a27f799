"""Turn one raw OTLP record into row-batch records for the processed topics (the topologies' glue).

The output partition is the source partition (modulo the output topic's partitions), so every batch
derived from one source partition lands, in order, in one output partition: the sink relies on that to
drop batches a restarted worker emits a second time (see docs/exactly-once.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from maple.producer import Record
from maple.topics import (HEADER_RECEIVED_NS, HEADER_ROWS, HEADER_SOURCE, HEADER_TABLE, HEADER_TENANT, LOGS,
                          METRICS, SourcePosition)
from processors import logs, metrics


@dataclass(frozen=True)
class RawRecord:
    value: bytes
    topic: str
    partition: int
    offset: int
    headers: dict[str, bytes]
    timestamp_ms: int

    @property
    def received_ns(self) -> int:
        raw = self.headers.get(HEADER_RECEIVED_NS)
        return int(raw) if raw else self.timestamp_ms * 1_000_000


def _batch(raw: RawRecord, topic: str, partitions: int, table: str, columns: dict[str, list], part: int) -> Record:
    rows = len(next(iter(columns.values())))
    headers = [(HEADER_TABLE, table.encode()), (HEADER_ROWS, str(rows).encode()),
               (HEADER_SOURCE, SourcePosition(raw.topic, raw.partition, raw.offset, part).header()),
               (HEADER_RECEIVED_NS, str(raw.received_ns).encode()),
               (HEADER_TENANT, raw.headers.get(HEADER_TENANT, b"default"))]
    return Record(topic, orjson.dumps(columns), headers, partition=raw.partition % partitions)


def log_batches(raw: RawRecord, partitions: int, options: logs.LogOptions) -> list[Record]:
    columns = logs.to_columns(ExportLogsServiceRequest.FromString(raw.value), raw.received_ns, options)
    if not columns["Timestamp"]:
        return []
    return [_batch(raw, LOGS.name, partitions, logs.TABLE, columns, 0)]


def metric_batches(raw: RawRecord, partitions: int) -> list[Record]:
    tables = metrics.to_tables(ExportMetricsServiceRequest.FromString(raw.value))
    return [_batch(raw, METRICS.name, partitions, table, tables[table], part)
            for part, table in enumerate(sorted(tables))]
