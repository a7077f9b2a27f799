"""Topic names and the Kafka message contract between Maple's stages, kept in one place.

Every Kafka message carries a *batch*, never a single span or log line:

* raw topics (ingest -> workers): the value is one OTLP export request as protobuf bytes, exactly as
  the OTLP spec defines ``Export{Traces,Logs,Metrics}ServiceRequest``; JSON requests are converted to
  protobuf at the ingest. The headers below say who sent it, how, and when.
* processed topics (workers -> sinks): the value is a batch of rows for one ClickHouse table.
* the dead-letter topic: a batch ClickHouse rejected for good, with the error and source offsets.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    name: str
    producer: str
    consumer: str
    doc: str


RAW_TRACES = Topic("otlp.traces.raw", "ingest", "traces worker", "ExportTraceServiceRequest protobuf")
RAW_LOGS = Topic("otlp.logs.raw", "ingest", "logs worker", "ExportLogsServiceRequest protobuf")
RAW_METRICS = Topic("otlp.metrics.raw", "ingest", "metrics worker", "ExportMetricsServiceRequest protobuf")
LOGS = Topic("otel.logs", "logs worker", "sink", "row batches for otel_logs")
METRICS = Topic("otel.metrics", "metrics worker, RED connector", "sink", "row batches for otel_metrics_*")
SPANS = Topic("otel.spans", "traces worker (and sampler ticks)", "sampler",
              "otel_traces row batches, partitioned by TraceId")
SPANS_SAMPLED = Topic("otel.spans.sampled", "sampler", "sink", "row batches for otel_traces")
DEAD_LETTER = Topic("maple.dlq", "sink", "operators (maple dlq)", "batches ClickHouse rejected for good")

ALL_TOPICS: tuple[Topic, ...] = (RAW_TRACES, RAW_LOGS, RAW_METRICS, LOGS, METRICS, SPANS, SPANS_SAMPLED,
                                 DEAD_LETTER)

# What each stage's consumer group reads (worker.group, sink.group). The sampler runs in the worker's
# group, so otel.spans is the worker's too. `maple lag` shows a group on these topics only.
STAGE_TOPICS: dict[str, tuple[Topic, ...]] = {
    "worker": (RAW_LOGS, RAW_METRICS, RAW_TRACES, SPANS),
    "sink": (LOGS, METRICS, SPANS_SAMPLED),
}

# Record headers on raw topics.
HEADER_TENANT = "maple.tenant"          # tenant name from the API key, DEFAULT_TENANT without keys
DEFAULT_TENANT = "default"              # the tenant of data sent without a key (and of rows older than tenants)
HEADER_ENCODING = "maple.encoding"      # the client's original encoding: "protobuf" or "json"
HEADER_RECEIVED_NS = "maple.received"   # ingest receive time, Unix nanoseconds as decimal ASCII

# Record headers on processed topics (row batches). The value is one block of rows for one table, in a format
# ClickHouse parses itself, so a sink concatenates blocks without decoding them (maple/blocks.py):
# ClickHouse's Native format (the compiled core's) or a JSONColumns object {"Column": [v1, v2, ...], ...}
# (the Python processors'). The maple.format header says which; a batch without it is JSONColumns.
HEADER_TABLE = "maple.table"            # target table name, e.g. otel_logs
HEADER_FORMAT = "maple.format"          # "Native" or "JSONColumns" (absent: JSONColumns)
HEADER_ROWS = "maple.rows"              # row count, decimal ASCII
HEADER_SOURCE = "maple.source"          # "<topic>/<partition>/<offset>/<part>" of the record it came from
# HEADER_TENANT and HEADER_RECEIVED_NS are carried over from the raw record (the sampler's output batches
# hold one tenant each and carry it too); the sink writes HEADER_TENANT into every row's Tenant column.
HEADER_TICK = "maple.tick"              # on otel.spans: no rows, only moves the sampler's stream clock
HEADER_READ = "maple.read"              # on a tick: the next offset its sampler was to read (its progress);
                                        # the tick's HEADER_GROUP names the sampler's (worker) group
TICK_TOPICS = frozenset({SPANS.name})   # topics that carry ticks: a tick waiting there is no lag
HEADER_DECIDED_NS = "maple.decided"     # on otel.spans.sampled: when the sampler decided, Unix nanoseconds
FORMAT_JSON, FORMAT_NATIVE = "JSONColumns", "Native"  # the values of HEADER_FORMAT, as ClickHouse names them

# Dead letters keep their payload as it was (raw OTLP bytes, or row blocks with their maple.format); headers say why.
HEADER_STAGE = "maple.stage"            # "worker" or "sink"
HEADER_ERROR = "maple.error"            # the error text
HEADER_ERROR_CODE = "maple.error_code"  # ClickHouse error code, when there is one
HEADER_TOKEN = "maple.token"            # the insert deduplication token the rows were tried with
HEADER_SOURCE_RANGE = "maple.source_range"  # "<topic>/<partition>/<first>-<last>" of the sink batch
HEADER_GROUP = "maple.group"            # the worker group of a dead letter (`maple dlq redrive`) or of a tick
HEADER_REDRIVEN = "maple.redriven"      # on a record `maple dlq redrive` produced: "maple.dlq/<partition>/<offset>"
# A worker's dead letter keeps the raw record's HEADER_TENANT (a span batch's letter its HEADER_FORMAT too), and a
# redrive puts them back on the record it produces again.


@dataclass(frozen=True, order=True)
class SourcePosition:
    """Where a row batch came from. A source record may yield several batches (one per table): `part`."""

    topic: str
    partition: int
    offset: int
    part: int = 0

    @property
    def key(self) -> str:
        """Identifies the source partition (the unit whose offsets only grow)."""
        return f"{self.topic}/{self.partition}"

    def header(self) -> bytes:
        return f"{self.topic}/{self.partition}/{self.offset}/{self.part}".encode()

    @classmethod
    def parse(cls, header: bytes) -> SourcePosition:
        topic, partition, offset, part = header.decode().rsplit("/", 3)
        return cls(topic, int(partition), int(offset), int(part))
