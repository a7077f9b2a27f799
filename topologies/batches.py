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


# A row batch stays far below the processed topics' 16 MiB record limit, compressed or not.
MAX_BATCH_BYTES = 4 * 1024 * 1024


class RowTooLarge(ValueError):
    """One row alone is over MAX_BATCH_BYTES; the raw record is dead-lettered instead."""


def encode(columns: dict[str, list], limit: int = MAX_BATCH_BYTES) -> list[tuple[int, bytes]]:
    """The columns as JSONColumns blocks of at most `limit` bytes (split by rows): (rows, block) pairs."""
    block = orjson.dumps(columns)
    rows = len(next(iter(columns.values())))
    if len(block) <= limit:
        return [(rows, block)]
    if rows < 2:
        raise RowTooLarge(f"a row of {len(block)} bytes exceeds the {limit}-byte row batch limit")
    middle = rows // 2
    return (encode({k: v[:middle] for k, v in columns.items()}, limit)
            + encode({k: v[middle:] for k, v in columns.items()}, limit))


def _batches(raw: RawRecord, topic: str, partitions: int, tables: list[tuple[str, dict[str, list]]]) -> list[Record]:
    """Row batches for `tables` in order; `part` numbers them so the sink can tell copies from new batches."""
    out = []
    for table, columns in tables:
        for rows, block in encode(columns):
            headers = [(HEADER_TABLE, table.encode()), (HEADER_ROWS, str(rows).encode()),
                       (HEADER_SOURCE, SourcePosition(raw.topic, raw.partition, raw.offset, len(out)).header()),
                       (HEADER_RECEIVED_NS, str(raw.received_ns).encode()),
                       (HEADER_TENANT, raw.headers.get(HEADER_TENANT, b"default"))]
            out.append(Record(topic, block, headers, partition=raw.partition % partitions))
    return out


def log_batches(raw: RawRecord, partitions: int, options: logs.LogOptions) -> list[Record]:
    columns = logs.to_columns(ExportLogsServiceRequest.FromString(raw.value), raw.received_ns, options)
    if not columns["Timestamp"]:
        return []
    return _batches(raw, LOGS.name, partitions, [(logs.TABLE, columns)])


def metric_batches(raw: RawRecord, partitions: int) -> list[Record]:
    tables = metrics.to_tables(ExportMetricsServiceRequest.FromString(raw.value))
    return _batches(raw, METRICS.name, partitions, [(table, tables[table]) for table in sorted(tables)])
