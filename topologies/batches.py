"""Turn one raw OTLP record into row-batch records for the processed topics (the topologies' glue).

Row batches go to the output partition matching the source partition (modulo the output topic's
partitions), so every batch derived from one source partition lands, in order, in one output partition:
the sink relies on that to drop batches a restarted worker emits a second time (docs/exactly-once.md).
Spans are the exception: they go to the partition of their trace id, so one sampler sees a whole trace;
the sampler drops copies the same way, per span partition (docs/traces.md).

One bad item never takes its request down. A request is converted whole; if that fails (an item's
conversion raises, e.g. a timestamp past 2106, or an item's row is too big to travel through Kafka), it is
converted again item by item (processors/requests.py): every item that converts is kept, in order, as
the whole request would have had it, and each one that does not is refused, as a one-item OTLP request
with the reason, for the worker to dead-letter. Deterministic: the same record always takes the same path.

With the compiled core (`core`, maple/native.py) a request is first converted by it into Native blocks. A
request it cannot convert whole (an item the processors would refuse: a time past 2106, an id of the wrong
length, a body nested too deep, a row too big; or a damaged request) it leaves to the Python path above,
which decides item by item (or dead-letters the record).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from maple.jsoncolumns import MAX_BATCH_BYTES, MAX_ROW_BYTES, Columns, RowTooLarge, dumps, encode
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
from processors.requests import single_items


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


@dataclass(frozen=True)
class RefusedItem:
    """One item the worker could not turn into a row: a one-item OTLP request of the record's kind, and why."""

    value: bytes
    reason: str


@dataclass(frozen=True)
class Output:
    """What one raw record becomes: row-batch records in order, and the items refused (normally none)."""

    records: list[Record]
    refused: list[RefusedItem] = field(default_factory=list)


Tables = dict[str, Columns]
Outputs = list[tuple[str, int, str, Columns]]  # (topic, partition, table, columns)


def _process(raw: RawRecord, request: Any, convert: Callable[[Any], Tables],
             outputs: Callable[[Tables], Outputs]) -> Output:
    """The record's batches: whole if every item converts, else item by item (see the module doc)."""
    try:
        return Output(_batches(raw, outputs(convert(request))))
    except Exception:
        tables, refused = _item_by_item(request, convert)
        return Output(_batches(raw, outputs(tables)), refused)


def _item_by_item(request: Any, convert: Callable[[Any], Tables]) -> tuple[Tables, list[RefusedItem]]:
    tables: Tables = {}
    refused: list[RefusedItem] = []
    for item in single_items(request):
        try:
            converted = convert(item)
            for table, columns in converted.items():
                if _nonempty(columns):
                    size = len(dumps(columns))
                    if size > MAX_ROW_BYTES:
                        raise RowTooLarge(f"its {table} row of {size} bytes exceeds the {MAX_ROW_BYTES}-byte limit "
                                          "of a row in Kafka")
        except Exception as exc:
            refused.append(RefusedItem(item.SerializeToString(), f"{type(exc).__name__}: {exc}"))
            continue
        for table, columns in converted.items():
            into = tables.setdefault(table, {name: [] for name in columns})
            for name, values in columns.items():
                into[name].extend(values)
    return tables, refused


def _batches(raw: RawRecord, outputs: list[tuple[str, int, str, dict[str, list]]], first_part: int = 0
             ) -> list[Record]:
    """Row batches for `outputs` ((topic, partition, table, columns)) in order; `part` numbers them, across
    all outputs of the record, so every consumer can tell copies from new batches.

    Each batch keeps the raw record's timestamp (the ingest's receipt): the tail sampler's clock runs on
    it, so a worker catching up on a backlog does not make traces look older than they are."""
    out: list[Record] = []
    for topic, partition, table, columns in outputs:
        for rows, block in encode(columns):
            headers: Headers = [(HEADER_TABLE, table.encode()), (HEADER_ROWS, str(rows).encode()),
                       (HEADER_SOURCE, SourcePosition(raw.topic, raw.partition, raw.offset,
                                                      first_part + len(out)).header()),
                       (HEADER_RECEIVED_NS, str(raw.received_ns).encode()),
                       (HEADER_TENANT, raw.headers.get(HEADER_TENANT, b"default"))]
            out.append(Record(topic, block, headers, partition=partition, timestamp_ms=raw.timestamp_ms or None))
    return out


# The compiled core's outputs: (topic, partition, table, [(rows, Native block)]).
NativeOutputs = list[tuple[str, int, str, list[tuple[int, bytes]]]]


def _native(raw: RawRecord, core: Any, convert: Callable[[], NativeOutputs]) -> Output | None:
    """The record's batches from the compiled core, or None when it leaves the record to the Python path: any
    record the core cannot convert whole (an item the processors refuse, a row too big, a damaged request)
    goes there, so every failure is decided, item by item, by the processors alone."""
    try:
        outputs = convert()
    except (core.NeedsPython, core.RowTooLarge, core.DecodeError):
        return None
    out: list[Record] = []
    for topic, partition, table, blocks in outputs:
        for rows, block in blocks:
            headers: Headers = [(HEADER_TABLE, table.encode()), (HEADER_ROWS, str(rows).encode()),
                                (HEADER_SOURCE,
                                 SourcePosition(raw.topic, raw.partition, raw.offset, len(out)).header()),
                                (HEADER_RECEIVED_NS, str(raw.received_ns).encode()),
                                (HEADER_TENANT, raw.headers.get(HEADER_TENANT, b"default")),
                                (HEADER_FORMAT, FORMAT_NATIVE.encode())]
            out.append(Record(topic, block, headers, partition=partition, timestamp_ms=raw.timestamp_ms or None))
    return Output(out)


def _nonempty(columns: Columns | None) -> bool:
    """Whether `columns` holds any row."""
    return bool(columns) and bool(next(iter(columns.values()), None))  # type: ignore[union-attr]


def log_batches(raw: RawRecord, partitions: int, options: logs.LogOptions, core: Any = None) -> Output:
    """`core`: the compiled core (maple.native.core) to try before the Python processors, or None."""
    if core is not None:
        native = _native(raw, core, lambda: [
            (LOGS.name, raw.partition % partitions, logs.TABLE, blocks) for blocks in [core.logs_blocks(
                raw.value, raw.received_ns, options.json_max_depth, options.json_max_body_bytes, MAX_BATCH_BYTES,
                severity.from_text, options.prefer_body_level)] if blocks])
        if native is not None:
            return native

    def outputs(tables: Tables) -> Outputs:
        columns = tables.get(logs.TABLE)
        return [(LOGS.name, raw.partition % partitions, logs.TABLE, columns)] if columns and _nonempty(columns) else []

    return _process(raw, ExportLogsServiceRequest.FromString(raw.value),
                    lambda request: {logs.TABLE: logs.to_columns(request, raw.received_ns, options)}, outputs)


def metric_batches(raw: RawRecord, partitions: int, core: Any = None) -> Output:
    if core is not None:
        native = _native(raw, core, lambda: [(METRICS.name, raw.partition % partitions, table, blocks)
                                             for table, blocks in core.metric_blocks(raw.value, MAX_BATCH_BYTES)])
        if native is not None:
            return native

    def outputs(tables: Tables) -> Outputs:
        return [(METRICS.name, raw.partition % partitions, table, tables[table]) for table in sorted(tables)
                if _nonempty(tables[table])]

    return _process(raw, ExportMetricsServiceRequest.FromString(raw.value), metrics.to_tables, outputs)


def span_partition(trace_id: str, partitions: int) -> int:
    """Where every span of a trace goes: a stable hash of its id (the same in every process)."""
    return zlib.crc32(trace_id.encode()) % partitions


def trace_batches(raw: RawRecord, span_partitions: int, metric_partitions: int,
                  red_options: red.RedOptions | None = None, core: Any = None) -> Output:
    """Spans re-keyed by TraceId, one batch per span partition, plus the request's RED delta points.

    RED counts every span here (every span that became a row), before sampling; its points go to the
    metrics topic like any metrics."""
    options = red_options or red.RedOptions()
    if core is not None:
        def convert() -> NativeOutputs:
            spans, tables = core.trace_blocks(raw.value, span_partitions, raw.received_ns, list(options.buckets_ms),
                                              [(d.name, d.default) for d in options.dimensions], MAX_BATCH_BYTES)
            out: NativeOutputs = [(SPANS.name, partition, traces.TABLE, blocks) for partition, blocks in spans]
            return out + [(METRICS.name, raw.partition % metric_partitions, table, blocks) for table, blocks in tables]

        native = _native(raw, core, convert)
        if native is not None:
            return native

    def outputs(tables: Tables) -> Outputs:
        columns: dict[str, list[Any]] | None = tables.get(traces.TABLE)
        if not columns or not columns["TraceId"]:
            return []
        trace_ids = columns["TraceId"]
        rows_by_partition: dict[int, list[int]] = {}
        for row, trace_id in enumerate(trace_ids):
            rows_by_partition.setdefault(span_partition(trace_id, span_partitions), []).append(row)
        names = (*traces.COLUMNS, traces.START_NS)
        out: Outputs = [(SPANS.name, partition, traces.TABLE,
                         columns if len(rows) == len(trace_ids) else traces.take(columns, rows, names))
                        for partition, rows in sorted(rows_by_partition.items())]
        red_tables = red.to_tables(columns, raw.received_ns, options)
        return out + [(METRICS.name, raw.partition % metric_partitions, table, red_tables[table])
                      for table in sorted(red_tables)]

    return _process(raw, ExportTraceServiceRequest.FromString(raw.value),
                    lambda request: {traces.TABLE: traces.to_columns(request)}, outputs)
