"""Turn one raw OTLP record into row-batch records for the processed topics (the topologies' glue).

Row batches go to the output partition matching the source partition (modulo the output topic's
partitions), so every batch derived from one source partition lands, in order, in one output partition:
the sink relies on that to drop batches a restarted worker emits a second time (docs/exactly-once.md).
Spans are the exception: they go to the partition of their trace id, so one sampler sees a whole trace;
the sampler drops copies the same way, per span partition (docs/traces.md).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from maple.jsoncolumns import MAX_BATCH_BYTES, encode
from maple.producer import Headers, Record
from maple.topics import (
    FORMAT_NATIVE,
    HEADER_FORMAT,
    HEADER_RECEIVED_NS,
    HEADER_ROWS,
    HEADER_SOURCE,
    HEADER_TABLE,
    HEADER_TENANT,
    LOGS,
    METRICS,
    SPANS,
    SourcePosition,
)
from processors import logs, metrics, red, severity, traces


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


# An output of one raw record: (topic, partition, table, rows) where rows are columns (the Python
# processors', encoded here as JSONColumns) or Native blocks already encoded by the compiled core.
Output = tuple[str, int, str, dict[str, list] | list[tuple[int, bytes]]]


def _batches(raw: RawRecord, outputs: Sequence[Output], first_part: int = 0) -> list[Record]:
    """Row batches for `outputs` in order; `part` numbers them, across all outputs of the record, so every
    consumer can tell copies from new batches.

    Each batch keeps the raw record's timestamp (the ingest's receipt): the tail sampler's clock runs on
    it, so a worker catching up on a backlog does not make traces look older than they are."""
    out: list[Record] = []
    for topic, partition, table, data in outputs:
        native = not isinstance(data, dict)
        for rows, block in encode(data) if isinstance(data, dict) else data:
            headers: Headers = [(HEADER_TABLE, table.encode()), (HEADER_ROWS, str(rows).encode()),
                       (HEADER_SOURCE, SourcePosition(raw.topic, raw.partition, raw.offset,
                                                      first_part + len(out)).header()),
                       (HEADER_RECEIVED_NS, str(raw.received_ns).encode()),
                       (HEADER_TENANT, raw.headers.get(HEADER_TENANT, b"default"))]
            if native:
                headers.append((HEADER_FORMAT, FORMAT_NATIVE.encode()))
            out.append(Record(topic, block, headers, partition=partition, timestamp_ms=raw.timestamp_ms or None))
    return out


def log_batches(raw: RawRecord, partitions: int, options: logs.LogOptions, core: Any = None) -> list[Record]:
    """`core`: the compiled core (maple.native.core) to use instead of the Python processors, or None."""
    if core is not None:
        try:
            blocks = core.logs_blocks(raw.value, raw.received_ns, options.json_max_depth,
                                      options.json_max_body_bytes, MAX_BATCH_BYTES, severity.from_text,
                                      options.prefer_body_level)
            return _batches(raw, [(LOGS.name, raw.partition % partitions, logs.TABLE, blocks)]) if blocks else []
        except core.NeedsPython:
            pass  # a time past 2262: the Python path (below) writes it as ClickHouse's refusable text
    columns = logs.to_columns(ExportLogsServiceRequest.FromString(raw.value), raw.received_ns, options)
    if not columns["Timestamp"]:
        return []
    return _batches(raw, [(LOGS.name, raw.partition % partitions, logs.TABLE, columns)])


def metric_batches(raw: RawRecord, partitions: int, core: Any = None) -> list[Record]:
    if core is not None:
        try:
            return _batches(raw, [(METRICS.name, raw.partition % partitions, table, blocks)
                                  for table, blocks in core.metric_blocks(raw.value, MAX_BATCH_BYTES)])
        except core.NeedsPython:
            pass  # a time past 2262: see log_batches
    tables = metrics.to_tables(ExportMetricsServiceRequest.FromString(raw.value))
    return _batches(raw, [(METRICS.name, raw.partition % partitions, table, tables[table]) for table in sorted(tables)])


def span_partition(trace_id: str, partitions: int) -> int:
    """Where every span of a trace goes: a stable hash of its id (the same in every process)."""
    return zlib.crc32(trace_id.encode()) % partitions


def trace_batches(raw: RawRecord, span_partitions: int, metric_partitions: int,
                  red_options: red.RedOptions | None = None, core: Any = None) -> list[Record]:
    """Spans re-keyed by TraceId, one batch per span partition, plus the request's RED delta points.

    RED counts every span here, before sampling; its points go to the metrics topic like any metrics."""
    red_options = red_options or red.RedOptions()
    if core is not None:
        try:
            spans, tables = core.trace_blocks(raw.value, span_partitions, raw.received_ns,
                                              list(red_options.buckets_ms),
                                              [(d.name, d.default) for d in red_options.dimensions], MAX_BATCH_BYTES)
            native: list[Output] = [(SPANS.name, partition, traces.TABLE, blocks) for partition, blocks in spans]
            native += [(METRICS.name, raw.partition % metric_partitions, table, blocks) for table, blocks in tables]
            return _batches(raw, native)
        except core.NeedsPython:
            pass  # a time past 2262: see log_batches
    columns = traces.to_columns(ExportTraceServiceRequest.FromString(raw.value))
    trace_ids = columns["TraceId"]
    if not trace_ids:
        return []
    rows_by_partition: dict[int, list[int]] = {}
    for row, trace_id in enumerate(trace_ids):
        rows_by_partition.setdefault(span_partition(trace_id, span_partitions), []).append(row)
    names = (*traces.COLUMNS, traces.START_NS)
    outputs = [(SPANS.name, partition, traces.TABLE,
                columns if len(rows) == len(trace_ids) else traces.take(columns, rows, names))
               for partition, rows in sorted(rows_by_partition.items())]
    tables = red.to_tables(columns, raw.received_ns, red_options)
    outputs += [(METRICS.name, raw.partition % metric_partitions, table, tables[table]) for table in sorted(tables)]
    return _batches(raw, outputs)
