"""Maple's ClickHouse schema as ordered, recorded migrations.

`apply` creates the database and a ``maple_schema_versions`` table, then runs every migration whose
version is not recorded yet, in order, recording each one after it succeeded. Re-applying is a no-op.
The same statements serve the embedded engine and a server (they go through clickhouse-connect).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

VERSIONS_TABLE = "maple_schema_versions"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]  # placeholders {db}, {ttl_*}, {table_settings}: see render()


# Every table keeps insert deduplication hashes for its most recent blocks: the sinks' idempotent retries
# rely on it (plain MergeTree has no dedup window by default).
DEDUP_WINDOW = 10000
TABLE_SETTINGS = f"index_granularity = 8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = {DEDUP_WINDOW}"

_MAP = "Map(LowCardinality(String), String) CODEC(ZSTD(1))"
_METRIC_COMMON = f"""
    ResourceAttributes {_MAP},
    ResourceSchemaUrl String CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    ScopeAttributes {_MAP},
    ScopeDroppedAttrCount UInt32 CODEC(ZSTD(1)),
    ScopeSchemaUrl String CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    MetricName String CODEC(ZSTD(1)),
    MetricDescription String CODEC(ZSTD(1)),
    MetricUnit String CODEC(ZSTD(1)),
    Attributes {_MAP},
    StartTimeUnix DateTime64(9) CODEC(Delta, ZSTD(1)),
    TimeUnix DateTime64(9) CODEC(Delta, ZSTD(1)),"""
_EXEMPLARS = """
    Exemplars Nested (
        FilteredAttributes Map(LowCardinality(String), String),
        TimeUnix DateTime64(9),
        Value Float64,
        SpanId String,
        TraceId String
    ) CODEC(ZSTD(1)),"""
_METRIC_INDEXES = """
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_key mapKeys(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_value mapValues(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attr_key mapKeys(Attributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_attr_value mapValues(Attributes) TYPE bloom_filter(0.01) GRANULARITY 1"""
_METRIC_TAIL = """
) ENGINE = MergeTree
PARTITION BY toDate(TimeUnix)
ORDER BY (ServiceName, MetricName, Attributes, toUnixTimestamp64Nano(TimeUnix))
{ttl_clause}
SETTINGS {table_settings}"""


def _metric_table(name: str, columns: str, exemplars: bool = True) -> str:
    return (f"CREATE TABLE IF NOT EXISTS `{{db}}`.{name} ({_METRIC_COMMON}{columns}"
            f"{_EXEMPLARS if exemplars else ''}{_METRIC_INDEXES}{_METRIC_TAIL}").replace(
                "{ttl_clause}", "{ttl_metrics}")


LOGS_TABLE = f"""CREATE TABLE IF NOT EXISTS `{{db}}`.otel_logs (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TimestampTime DateTime DEFAULT toDateTime(Timestamp),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    TraceFlags UInt8,
    SeverityText LowCardinality(String) CODEC(ZSTD(1)),
    SeverityNumber UInt8,
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    Body String CODEC(ZSTD(1)),
    ResourceSchemaUrl LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes {_MAP},
    ScopeSchemaUrl LowCardinality(String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion LowCardinality(String) CODEC(ZSTD(1)),
    ScopeAttributes {_MAP},
    LogAttributes {_MAP},
    `__hdx_materialized_k8s.cluster.name` LowCardinality(String) MATERIALIZED ResourceAttributes['k8s.cluster.name'] CODEC(ZSTD(1)),
    `__hdx_materialized_k8s.namespace.name` LowCardinality(String) MATERIALIZED ResourceAttributes['k8s.namespace.name'] CODEC(ZSTD(1)),
    `__hdx_materialized_k8s.pod.name` LowCardinality(String) MATERIALIZED ResourceAttributes['k8s.pod.name'] CODEC(ZSTD(1)),
    `__hdx_materialized_k8s.container.name` LowCardinality(String) MATERIALIZED ResourceAttributes['k8s.container.name'] CODEC(ZSTD(1)),
    `__hdx_materialized_deployment.environment.name` LowCardinality(String) MATERIALIZED ResourceAttributes['deployment.environment'] CODEC(ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_key mapKeys(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_scope_attr_value mapValues(ScopeAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_log_attr_key mapKeys(LogAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_log_attr_value mapValues(LogAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_body Body TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8,
    INDEX idx_lower_body lower(Body) TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8,
    INDEX idx_body_ngrambf Body TYPE ngrambf_v1(4, 32768, 3, 0) GRANULARITY 1
) ENGINE = MergeTree
PARTITION BY toDate(TimestampTime)
PRIMARY KEY (ServiceName, TimestampTime)
ORDER BY (ServiceName, TimestampTime, Timestamp)
{{ttl_logs}}
SETTINGS {{table_settings}}"""

LOGS_AND_METRICS = Migration(1, "otel_logs and otel_metrics_* (Collector ClickHouse exporter layout)", (
    LOGS_TABLE,
    _metric_table("otel_metrics_gauge", """
    Value Float64 CODEC(ZSTD(1)),
    Flags UInt32 CODEC(ZSTD(1)),"""),
    _metric_table("otel_metrics_sum", """
    Value Float64 CODEC(ZSTD(1)),
    Flags UInt32 CODEC(ZSTD(1)),
    AggregationTemporality Int32 CODEC(ZSTD(1)),
    IsMonotonic Boolean CODEC(Delta, ZSTD(1)),"""),
    _metric_table("otel_metrics_histogram", """
    Count UInt64 CODEC(Delta, ZSTD(1)),
    Sum Float64 CODEC(ZSTD(1)),
    BucketCounts Array(UInt64) CODEC(ZSTD(1)),
    ExplicitBounds Array(Float64) CODEC(ZSTD(1)),
    Flags UInt32 CODEC(ZSTD(1)),
    Min Float64 CODEC(ZSTD(1)),
    Max Float64 CODEC(ZSTD(1)),
    AggregationTemporality Int32 CODEC(ZSTD(1)),"""),
    _metric_table("otel_metrics_exponential_histogram", """
    Count UInt64 CODEC(Delta, ZSTD(1)),
    Sum Float64 CODEC(ZSTD(1)),
    Scale Int32 CODEC(ZSTD(1)),
    ZeroCount UInt64 CODEC(ZSTD(1)),
    PositiveOffset Int32 CODEC(ZSTD(1)),
    PositiveBucketCounts Array(UInt64) CODEC(ZSTD(1)),
    NegativeOffset Int32 CODEC(ZSTD(1)),
    NegativeBucketCounts Array(UInt64) CODEC(ZSTD(1)),
    Flags UInt32 CODEC(ZSTD(1)),
    Min Float64 CODEC(ZSTD(1)),
    Max Float64 CODEC(ZSTD(1)),
    AggregationTemporality Int32 CODEC(ZSTD(1)),"""),
    _metric_table("otel_metrics_summary", """
    Count UInt64 CODEC(Delta, ZSTD(1)),
    Sum Float64 CODEC(ZSTD(1)),
    ValueAtQuantiles Nested (
        Quantile Float64,
        Value Float64
    ) CODEC(ZSTD(1)),
    Flags UInt32 CODEC(ZSTD(1)),""", exemplars=False),
))

TRACES_TABLE = f"""CREATE TABLE IF NOT EXISTS `{{db}}`.otel_traces (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes {_MAP},
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes {_MAP},
    Duration UInt64 CODEC(T64, ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Events Nested (
        Timestamp DateTime64(9),
        Name LowCardinality(String),
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    Links Nested (
        TraceId String,
        SpanId String,
        TraceState String,
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_value mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1,
    INDEX idx_lower_span_name lower(SpanName) TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8
) ENGINE = MergeTree
PARTITION BY toDate(Timestamp)
PRIMARY KEY (ServiceName, SpanName, toDateTime(Timestamp))
ORDER BY (ServiceName, SpanName, toDateTime(Timestamp), Timestamp)
{{ttl_traces}}
SETTINGS {{table_settings}}"""

# Finds a trace's time range from its id, so a trace lookup reads only the partitions it lies in.
TRACE_ID_TS_TABLE = """CREATE TABLE IF NOT EXISTS `{db}`.otel_traces_trace_id_ts (
    TraceId String CODEC(ZSTD(1)),
    Start SimpleAggregateFunction(min, DateTime) CODEC(ZSTD(1)),
    End SimpleAggregateFunction(max, DateTime) CODEC(ZSTD(1))
) ENGINE = AggregatingMergeTree
PARTITION BY toStartOfWeek(Start)
ORDER BY (TraceId)
{ttl_trace_id_ts}
SETTINGS {table_settings}"""

# An insert the source table drops as a duplicate (same deduplication token) does not reach the view.
TRACE_ID_TS_VIEW = """CREATE MATERIALIZED VIEW IF NOT EXISTS `{db}`.otel_traces_trace_id_ts_mv
TO `{db}`.otel_traces_trace_id_ts
AS SELECT TraceId, min(toDateTime(Timestamp)) AS Start, max(toDateTime(Timestamp)) AS End
FROM `{db}`.otel_traces
WHERE TraceId != ''
GROUP BY TraceId"""

TRACES = Migration(2, "otel_traces and the trace-id lookup table with its materialized view "
                      "(Collector ClickHouse exporter layout)", (TRACES_TABLE, TRACE_ID_TS_TABLE, TRACE_ID_TS_VIEW))

MIGRATIONS: tuple[Migration, ...] = (LOGS_AND_METRICS, TRACES)


def render(statement: str, database: str, ttl_days: int) -> str:
    """Fill a migration statement's placeholders: database, TTL clauses (none for 0 days), table settings."""
    ttl_logs = f"TTL TimestampTime + toIntervalDay({ttl_days})" if ttl_days else ""
    ttl_metrics = f"TTL toDateTime(TimeUnix) + toIntervalDay({ttl_days})" if ttl_days else ""
    ttl_traces = f"TTL toDateTime(Timestamp) + toIntervalDay({ttl_days})" if ttl_days else ""
    ttl_trace_id_ts = f"TTL toDateTime(Start) + toIntervalDay({ttl_days})" if ttl_days else ""
    return (statement.replace("{db}", database).replace("{ttl_logs}", ttl_logs)
            .replace("{ttl_metrics}", ttl_metrics).replace("{ttl_traces}", ttl_traces)
            .replace("{ttl_trace_id_ts}", ttl_trace_id_ts).replace("{table_settings}", TABLE_SETTINGS))


def applied_versions(client: Client, database: str) -> set[int]:
    rows = client.query(f"SELECT version FROM `{database}`.{VERSIONS_TABLE}").result_rows
    return {int(row[0]) for row in rows}


def plan(database: str) -> list[str]:
    """The bootstrap statements every apply starts with."""
    return [
        f"CREATE DATABASE IF NOT EXISTS `{database}`",
        f"CREATE TABLE IF NOT EXISTS `{database}`.{VERSIONS_TABLE} (version UInt32, name String, "
        "applied_at DateTime64(3) DEFAULT now64(3)) ENGINE = MergeTree ORDER BY version",
    ]


def apply(client: Client, database: str, ttl_days: int = 30, migrations: tuple[Migration, ...] = MIGRATIONS,
          say: Callable[[str], None] = print) -> list[Migration]:
    """Bring `database` up to the newest migration; returns the migrations that ran."""
    for statement in plan(database):
        client.command(statement)
    done = applied_versions(client, database)
    ran = []
    for migration in sorted(migrations, key=lambda m: m.version):
        if migration.version in done:
            continue
        say(f"applying schema migration {migration.version}: {migration.name}")
        for statement in migration.statements:
            client.command(render(statement, database, ttl_days))
        client.insert(f"`{database}`.{VERSIONS_TABLE}", [[migration.version], [migration.name]],
                      column_names=["version", "name"], column_oriented=True)
        ran.append(migration)
    return ran
