"""Maple's ClickHouse schema as ordered, recorded migrations.

`apply` creates the database and a ``maple_schema_versions`` table, then runs every migration whose
version is not recorded yet, in order, recording each one after it succeeded. Re-applying is a no-op.
The same statements serve the embedded engine and a server (they go through clickhouse-connect).

Each table is defined once (`Table`, `View`); `statements` renders it for a `Target`: a single node
(MergeTree tables with the exporter's names) or a cluster (``<name>_local`` Replicated tables on every
node plus a Distributed table with the exporter's name over them, all ON CLUSTER). docs/cluster.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

VERSIONS_TABLE = "maple_schema_versions"


LOCAL_SUFFIX = "_local"

# Every table keeps insert deduplication hashes for its most recent blocks: the sinks' idempotent retries
# rely on it (plain MergeTree has no dedup window by default). Replicated tables keep theirs in Keeper; both
# settings are given explicitly so the window does not depend on the server version's defaults.
DEDUP_WINDOW = 10000
DEDUP_WINDOW_SECONDS = 7 * 24 * 3600
_COMMON_SETTINGS = "index_granularity = 8192, ttl_only_drop_parts = 1"
TABLE_SETTINGS = f"{_COMMON_SETTINGS}, non_replicated_deduplication_window = {DEDUP_WINDOW}"
REPLICATED_TABLE_SETTINGS = (f"{_COMMON_SETTINGS}, replicated_deduplication_window = {DEDUP_WINDOW}, "
                             f"replicated_deduplication_window_seconds = {DEDUP_WINDOW_SECONDS}")
# One replicated log per shard: the {shard} macro keeps the shards apart, {replica} names the node in it.
KEEPER_PATH = "/clickhouse/tables/{shard}/{database}/{table}"
REPLICA_NAME = "{replica}"
# The schema versions are cluster-wide facts, not per-shard data: one replicated table shared by every
# node of every shard (no {shard} in the path), so any node answers which migrations ran.
VERSIONS_KEEPER_PATH = "/clickhouse/tables/maple/{database}/" + VERSIONS_TABLE
VERSIONS_REPLICA_NAME = "{shard}-{replica}"


@dataclass(frozen=True)
class Target:
    """Where DDL goes: one node (`cluster` empty) or every node of a cluster (ON CLUSTER)."""

    database: str
    ttl_days: int = 30
    cluster: str = ""
    # ClickHouse >= 26.2 has `text` (inverted) indexes; older servers get bloom/tokenbf ones. `apply` reads
    # the server's version; rendering without a server (`--dry-run`) assumes a current one.
    text_indexes: bool = True

    @property
    def on_cluster(self) -> str:
        return f" ON CLUSTER `{self.cluster}`" if self.cluster else ""

    def storage_name(self, table: str) -> str:
        """The table that holds the rows on a node: the table itself, or its shard-local table."""
        return table + LOCAL_SUFFIX if self.cluster else table


@dataclass(frozen=True)
class Index:
    """A skip index with a `text` form (ClickHouse >= 26.2) and a bloom-filter form for older servers."""

    name: str
    expression: str
    text: str      # the TYPE clause on servers with text indexes
    fallback: str  # the TYPE ... GRANULARITY clause on older ones

    def render(self, target: Target) -> str:
        return f"INDEX {self.name} {self.expression} TYPE {self.text if target.text_indexes else self.fallback}"


@dataclass(frozen=True)
class Table:
    """One table, defined once; `statements` renders it for a single node or a cluster."""

    name: str
    columns: str                           # the column and index list inside CREATE TABLE (...), with
                                           # {indexes} standing for `indexes` rendered for the target
    engine: str                            # MergeTree-family engine; Replicated<engine> on a cluster
    keys: str                              # PARTITION BY / PRIMARY KEY / ORDER BY clauses
    ttl_from: str                          # DateTime expression the retention counts from
    shard_by: tuple[tuple[str, str], ...]  # (column, type) the sharding key reads: the sink routes by them
    sharding_key: str                      # the Distributed sharding key over those columns
    indexes: tuple[Index, ...] = ()        # indexes whose type depends on the server version

    def body(self, target: Target) -> str:
        if "{indexes}" not in self.columns:
            return self.columns
        return self.columns.replace("{indexes}", ",\n    ".join(i.render(target) for i in self.indexes))

    def ttl(self, days: int) -> str:
        return f"\nTTL {self.ttl_from} + toIntervalDay({days})" if days else ""


@dataclass(frozen=True)
class View:
    """A materialized view from one table into another, created next to the tables it connects."""

    name: str
    source: str
    target: str
    select: str  # SELECT ... FROM {source} ...

    def create(self, target: Target) -> str:
        db = target.database
        source = f"`{db}`.{target.storage_name(self.source)}"
        return (f"CREATE MATERIALIZED VIEW IF NOT EXISTS `{db}`.{self.name}{target.on_cluster}\n"
                f"TO `{db}`.{target.storage_name(self.target)}\nAS {self.select.replace('{source}', source)}")


def create_table(table: Table, target: Target) -> list[str]:
    """The DDL of `table` for `target`: one MergeTree table, or a Replicated local table plus a
    Distributed table with the table's own name over it."""
    db = target.database
    if not target.cluster:
        engine, settings = table.engine, TABLE_SETTINGS
    else:
        engine = f"Replicated{table.engine}('{KEEPER_PATH}', '{REPLICA_NAME}')"
        settings = REPLICATED_TABLE_SETTINGS
    local = target.storage_name(table.name)
    statements = [f"CREATE TABLE IF NOT EXISTS `{db}`.{local}{target.on_cluster} ({table.body(target)}\n"
                  f") ENGINE = {engine}\n{table.keys}{table.ttl(target.ttl_days)}\nSETTINGS {settings}"]
    if target.cluster:
        statements.append(f"CREATE TABLE IF NOT EXISTS `{db}`.{table.name}{target.on_cluster} AS `{db}`.{local}\n"
                          f"ENGINE = Distributed('{target.cluster}', '{db}', '{local}', {table.sharding_key})")
    return statements


@dataclass(frozen=True)
class Upgrade:
    """Bring an existing table to a new definition (`table`, same name).

    A table without rows (a fresh install, or a signal never sent) is replaced by the new definition,
    sort key and all. A table with rows keeps its sort key and partitioning and gains the columns it
    lacks (`add_columns`, definitions as in CREATE TABLE) and `add_indexes` (named indexes it lacks):
    re-sorting rows means copying them, which Maple leaves to the operator (docs/schema.md has the
    measured cost and the procedure)."""

    table: Table
    add_columns: tuple[str, ...]
    add_indexes: tuple[Index, ...] = ()
    rebuild: bool = True  # False: always the in-place path (the sort key did not change; views read the table)

    @property
    def aside(self) -> str:
        return f"{self.table.name}_maple_upgrade"

    def alter(self, target: Target) -> list[str]:
        """The in-place path: add what is missing, on the storage table and (cluster) its Distributed table."""
        db = target.database
        columns = ", ".join(f"ADD COLUMN IF NOT EXISTS {c}" for c in self.add_columns)
        local = target.storage_name(self.table.name)
        out = [f"ALTER TABLE `{db}`.{local}{target.on_cluster} {columns}"]
        if self.add_indexes:
            indexes = ", ".join(f"ADD {i.render(target).replace('INDEX ', 'INDEX IF NOT EXISTS ', 1)}"
                                for i in self.add_indexes)
            out.append(f"ALTER TABLE `{db}`.{local}{target.on_cluster} {indexes}")
        if target.cluster:
            out.append(f"ALTER TABLE `{db}`.{self.table.name}{target.on_cluster} {columns}")
        return out

    def renames(self, target: Target, back: bool = False) -> list[str]:
        names = [self.table.name] + ([target.storage_name(self.table.name)] if target.cluster else [])
        db, out = target.database, []
        for name in names:
            aside = name.replace(self.table.name, self.aside, 1)
            old, new = (aside, name) if back else (name, aside)
            out.append(f"RENAME TABLE `{db}`.{old} TO `{db}`.{new}{target.on_cluster}")
        return out

    def replace(self, target: Target) -> list[str]:
        """The empty-table path after the rename aside: drop the old table, create the new one."""
        db = target.database
        names = [self.aside] + ([target.storage_name(self.aside)] if target.cluster else [])
        drops = [f"DROP TABLE IF EXISTS `{db}`.{name}{target.on_cluster} SYNC" for name in names]
        return drops + create_table(self.table, target)


@dataclass(frozen=True)
class TtlChange:
    """A new retention expression for a table that exists (ALTER TABLE ... MODIFY TTL), with the target's
    ttl_days. Nothing for ttl_days 0 (no retention, no TTL to change). Parts already written keep the TTL
    they were written with (materialize_ttl_after_modify = 0: no mutation rewrites a large table); new
    parts and merged parts get the new one."""

    table: str
    expression: str  # a DateTime expression with {seconds} for the retention in seconds

    def statements(self, target: Target) -> list[str]:
        if not target.ttl_days:
            return []
        ttl = self.expression.format(seconds=target.ttl_days * 86400)
        return [f"ALTER TABLE `{target.database}`.{target.storage_name(self.table)}{target.on_cluster} "
                f"MODIFY TTL {ttl} SETTINGS materialize_ttl_after_modify = 0"]


def saturating_ttl(dt64_column: str) -> str:
    """`dt64_column` (a DateTime64) plus the retention, computed in 64-bit seconds and capped at DateTime's
    last second (2106-02-07 06:28:15 UTC): `toDateTime(column) + toIntervalDay(n)` wraps around to 1970
    for rows past that, which makes their part expire at once."""
    return (f"toDateTime(least(greatest(intDiv(toUnixTimestamp64Milli({dt64_column}), 1000), 0) + {{seconds}}, "
            "4294967295))")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    objects: tuple[Table | View | Upgrade | TtlChange, ...]


def statements(migration: Migration, target: Target) -> list[str]:
    """Every statement of `migration` for `target`, in order (tables before the views that join them).

    An `Upgrade` renders as on a fresh install (its table is empty): renamed aside, dropped, re-created.
    `apply` takes the in-place path instead when the table holds rows."""
    out: list[str] = []
    for item in migration.objects:
        if isinstance(item, Table):
            out.extend(create_table(item, target))
        elif isinstance(item, Upgrade):
            out.extend(item.renames(target) + item.replace(target) if item.rebuild else item.alter(target))
        elif isinstance(item, TtlChange):
            out.extend(item.statements(target))
        else:
            out.append(item.create(target))
    return out


# -- the tables --------------------------------------------------------------------------------------

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
# A series (service, metric, attributes) stays on one shard, so per-series functions need no other shard.
_METRIC_SHARD_BY = (("ServiceName", "LowCardinality(String)"), ("MetricName", "String"),
                    ("Attributes", "Map(LowCardinality(String), String)"))


def _metric_table(name: str, columns: str, exemplars: bool = True) -> Table:
    return Table(name, f"{_METRIC_COMMON}{columns}{_EXEMPLARS if exemplars else ''}{_METRIC_INDEXES}", "MergeTree",
                 "PARTITION BY toDate(TimeUnix)\n"
                 "ORDER BY (ServiceName, MetricName, Attributes, toUnixTimestamp64Nano(TimeUnix))",
                 "toDateTime(TimeUnix)", _METRIC_SHARD_BY, "cityHash64(ServiceName, MetricName, Attributes)")


LOGS_TABLE = Table("otel_logs", f"""
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
    INDEX idx_body_ngrambf Body TYPE ngrambf_v1(4, 32768, 3, 0) GRANULARITY 1""", "MergeTree",
    "PARTITION BY toDate(TimestampTime)\nPRIMARY KEY (ServiceName, TimestampTime)\n"
    "ORDER BY (ServiceName, TimestampTime, Timestamp)", "TimestampTime",
    (("TraceId", "String"), ("ServiceName", "LowCardinality(String)"), ("Timestamp", "DateTime64(9)")),
    # A trace's logs go where its spans go (joins by TraceId stay on one shard); logs outside any trace
    # spread evenly by time. Deterministic, unlike rand(): a retried batch must split the same way.
    "if(TraceId = '', cityHash64(ServiceName, Timestamp), cityHash64(TraceId))")

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

_BY_TRACE = (("TraceId", "String"),)

TRACES_TABLE = Table("otel_traces", f"""
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
    INDEX idx_lower_span_name lower(SpanName) TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8""", "MergeTree",
    "PARTITION BY toDate(Timestamp)\nPRIMARY KEY (ServiceName, SpanName, toDateTime(Timestamp))\n"
    "ORDER BY (ServiceName, SpanName, toDateTime(Timestamp), Timestamp)", "toDateTime(Timestamp)",
    _BY_TRACE, "cityHash64(TraceId)")  # a trace stays on one shard

# Finds a trace's time range from its id, so a trace lookup reads only the partitions it lies in. On a
# cluster the view fills each shard's lookup table from that shard's spans, so it is sharded like them.
TRACE_ID_TS_TABLE = Table("otel_traces_trace_id_ts", """
    TraceId String CODEC(ZSTD(1)),
    Start SimpleAggregateFunction(min, DateTime) CODEC(ZSTD(1)),
    End SimpleAggregateFunction(max, DateTime) CODEC(ZSTD(1))""", "AggregatingMergeTree",
    "PARTITION BY toStartOfWeek(Start)\nORDER BY (TraceId)", "toDateTime(Start)", _BY_TRACE, "cityHash64(TraceId)")

# An insert the source table drops as a duplicate (same deduplication token) does not reach the view.
TRACE_ID_TS_VIEW = View("otel_traces_trace_id_ts_mv", "otel_traces", "otel_traces_trace_id_ts", """\
SELECT TraceId, min(toDateTime(Timestamp)) AS Start, max(toDateTime(Timestamp)) AS End
FROM {source}
WHERE TraceId != ''
GROUP BY TraceId""")

TRACES = Migration(2, "otel_traces and the trace-id lookup table with its materialized view "
                      "(Collector ClickHouse exporter layout)", (TRACES_TABLE, TRACE_ID_TS_TABLE, TRACE_ID_TS_VIEW))

# -- migration 3: the exporter's 2025-2026 generation ---------------------------------------------------

_OTEL_MATERIALIZED = ("k8s.cluster.name", "k8s.container.name", "k8s.deployment.name", "k8s.namespace.name",
                      "k8s.node.name", "k8s.pod.name", "k8s.pod.uid", "deployment.environment.name")
_OTEL_MATERIALIZED_COLUMNS = tuple(
    f"`__otel_materialized_{key}` LowCardinality(String) MATERIALIZED ResourceAttributes['{key}'] CODEC(ZSTD(1))"
    for key in _OTEL_MATERIALIZED)
_EVENT_NAME = "EventName String CODEC(ZSTD(1))"


def _map_index(name: str, column: str, expression: str) -> Index:
    return Index(name, f"{expression}({column})", "text(tokenizer = 'array')", "bloom_filter(0.01) GRANULARITY 1")


LOGS_TABLE_V3 = Table("otel_logs", f"""
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
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
    {_EVENT_NAME},
    {(chr(44) + chr(10) + "    ").join(_OTEL_MATERIALIZED_COLUMNS)},
    {{indexes}}""", "MergeTree",
    # The exporter's key: five-minute buckets first, so a time range reads few granules whatever the
    # services; partitions by day as before.
    "PARTITION BY toDate(Timestamp)\nORDER BY (toStartOfFiveMinutes(Timestamp), ServiceName, Timestamp)",
    "toDateTime(Timestamp)",
    (("TraceId", "String"), ("ServiceName", "LowCardinality(String)"), ("Timestamp", "DateTime64(9)")),
    "if(TraceId = '', cityHash64(ServiceName, Timestamp), cityHash64(TraceId))",
    indexes=(
        Index("idx_trace_id", "TraceId", "text(tokenizer = 'array')", "bloom_filter(0.001) GRANULARITY 1"),
        _map_index("idx_res_attr_key", "ResourceAttributes", "mapKeys"),
        _map_index("idx_res_attr_value", "ResourceAttributes", "mapValues"),
        _map_index("idx_scope_attr_key", "ScopeAttributes", "mapKeys"),
        _map_index("idx_scope_attr_value", "ScopeAttributes", "mapValues"),
        _map_index("idx_log_attr_key", "LogAttributes", "mapKeys"),
        _map_index("idx_log_attr_value", "LogAttributes", "mapValues"),
        Index("idx_lower_body", "lower(Body)", "text(tokenizer = 'splitByNonAlpha')",
              "tokenbf_v1(32768, 3, 0) GRANULARITY 8"),
    ))

# The tail sampler's weight of each kept span (1 / the probability it was kept with): counts over sampled
# traces re-weight with sum(SampleRate), as ClickStack's sampleWeightExpression does. Rows written before
# the sampler recorded weights, and spans kept unconditionally, weigh 1.
_SAMPLE_RATE = "SampleRate Float64 DEFAULT 1 CODEC(ZSTD(1))"

TRACES_TABLE_V3 = dataclasses.replace(TRACES_TABLE, columns=TRACES_TABLE.columns.replace(
    "\n    INDEX idx_trace_id", f"\n    {_SAMPLE_RATE},\n    INDEX idx_trace_id", 1))

EXPORTER_GENERATION = Migration(3, "the exporter's current generation: otel_logs with EventName, "
                                   "__otel_materialized_* columns, the five-minute sort key and text indexes "
                                   "(ClickHouse >= 26.2); SampleRate on otel_traces", (
    Upgrade(LOGS_TABLE_V3, (_EVENT_NAME + " AFTER LogAttributes", *_OTEL_MATERIALIZED_COLUMNS)),
    # The traces key is the exporter's already, and a materialized view reads the table: altered in place.
    Upgrade(TRACES_TABLE_V3, (_SAMPLE_RATE,), rebuild=False),
))

# -- migration 4: retention that never wraps around ------------------------------------------------------

# Rows stamped past 2106-02-07 (DateTime's end) were dropped as expired the moment their part was written,
# leaving no trace (issue 12): the exporter's `toDateTime(ts) + toIntervalDay(n)` wraps around to 1970. The
# workers refuse such times now (processors/values.py); this keeps rows any other writer puts in from
# vanishing the same way. Self-contained: it only changes TTL expressions, whatever migration 3 did.
TTL_WITHOUT_WRAPAROUND = Migration(4, "retention that never wraps around past 2106", (
    TtlChange("otel_logs", saturating_ttl("Timestamp")),
    *(TtlChange(name, saturating_ttl("TimeUnix")) for name in (
        "otel_metrics_gauge", "otel_metrics_sum", "otel_metrics_histogram", "otel_metrics_exponential_histogram",
        "otel_metrics_summary")),
    TtlChange("otel_traces", saturating_ttl("Timestamp")),
    TtlChange("otel_traces_trace_id_ts", "toDateTime(least(toUInt64(toUnixTimestamp(Start)) + {seconds}, 4294967295))"),
))

MIGRATIONS: tuple[Migration, ...] = (LOGS_AND_METRICS, TRACES, EXPORTER_GENERATION, TTL_WITHOUT_WRAPAROUND)
# The newest definition of each table (a later migration's Upgrade supersedes the table it replaces).
TABLES: dict[str, Table] = {}
for _migration in MIGRATIONS:
    for _item in _migration.objects:
        if isinstance(_item, (Table, Upgrade)):
            _table = _item.table if isinstance(_item, Upgrade) else _item
            TABLES[_table.name] = _table


# -- applying ----------------------------------------------------------------------------------------


def applied_versions(client: Client, database: str) -> set[int]:
    rows = client.query(f"SELECT version FROM `{database}`.{VERSIONS_TABLE}").result_rows
    return {int(row[0]) for row in rows}


def plan(target: Target | str) -> list[str]:
    """The bootstrap statements every apply starts with: the database and the versions table."""
    target = Target(target) if isinstance(target, str) else target
    db = target.database
    if target.cluster:
        engine = f"ReplicatedMergeTree('{VERSIONS_KEEPER_PATH}', '{VERSIONS_REPLICA_NAME}')"
    else:
        engine = "MergeTree"
    return [
        f"CREATE DATABASE IF NOT EXISTS `{db}`{target.on_cluster}",
        f"CREATE TABLE IF NOT EXISTS `{db}`.{VERSIONS_TABLE}{target.on_cluster} (version UInt32, name String, "
        f"applied_at DateTime64(3) DEFAULT now64(3)) ENGINE = {engine} ORDER BY version",
    ]


def all_statements(target: Target, migrations: tuple[Migration, ...] = MIGRATIONS) -> list[str]:
    """Everything a fresh apply runs, in order (what `--dry-run` prints)."""
    return plan(target) + [s for m in sorted(migrations, key=lambda m: m.version) for s in statements(m, target)]


def server_has_text_indexes(client: Client) -> bool:
    """ClickHouse >= 26.2 has `text` indexes (as the exporter checks)."""
    version = str(client.query("SELECT version()").result_rows[0][0])
    major, minor = (int(part) for part in version.split(".")[:2])
    return (major, minor) >= (26, 2)


def _count(client: Client, database: str, table: str) -> int | None:
    """Rows in a table, or None when it does not exist."""
    if not client.query(f"EXISTS TABLE `{database}`.{table}").result_rows[0][0]:
        return None
    return int(client.query(f"SELECT count() FROM `{database}`.{table}").result_rows[0][0])


def upgrade(client: Client, item: Upgrade, target: Target, say: Callable[[str], None]) -> str:
    """Run one `Upgrade`; returns how ("replaced" or "altered in place").

    An empty table is renamed aside first and only dropped if it is still empty, so rows that a sink
    inserted meanwhile are never dropped: then the in-place path runs instead. Inserts that arrive while
    the table is aside fail with UNKNOWN_TABLE, which Maple's sinks retry."""
    name = item.table.name
    rows = _count(client, target.database, name) if item.rebuild else 1
    if rows is None:
        statements_ = create_table(item.table, target)
    elif rows == 0:
        for statement in item.renames(target):
            client.command(statement)
        if _count(client, target.database, item.aside):
            for statement in item.renames(target, back=True):
                client.command(statement)
            statements_ = item.alter(target)
        else:
            statements_ = item.replace(target)
    else:
        statements_ = item.alter(target)
    for statement in statements_:
        client.command(statement)
    how = "altered in place" if statements_ and statements_[0].startswith("ALTER") else "replaced"
    if how == "altered in place" and item.rebuild:
        say(f"  {name} holds rows: it keeps its sort key and gains the new columns (docs/schema.md)")
    return how


def apply(client: Client, database: str | Target, ttl_days: int = 30, migrations: tuple[Migration, ...] = MIGRATIONS,
          say: Callable[[str], None] = print) -> list[Migration]:
    """Bring the database up to the newest migration; returns the migrations that ran.

    `database` may be a `Target` to apply ON CLUSTER (then `ttl_days` is the target's). A migration is
    recorded only after every statement succeeded; ON CLUSTER statements return once every node ran them
    (or fail after distributed_ddl_task_timeout), so a recorded version holds on every node. Index types
    follow the server's version (text indexes from 26.2)."""
    target = database if isinstance(database, Target) else Target(database, ttl_days)
    for statement in plan(target):
        client.command(statement)
    done = applied_versions(client, target.database)
    ran: list[Migration] = []
    for migration in sorted(migrations, key=lambda m: m.version):
        if migration.version in done:
            continue
        if not ran:
            target = dataclasses.replace(target, text_indexes=server_has_text_indexes(client))
        say(f"applying schema migration {migration.version}: {migration.name}"
            + (f" on cluster {target.cluster}" if target.cluster else ""))
        for item in migration.objects:
            if isinstance(item, Upgrade):
                upgrade(client, item, target, say)
                continue
            if isinstance(item, TtlChange):
                for statement in item.statements(target):
                    client.command(statement)
                continue
            for statement in create_table(item, target) if isinstance(item, Table) else [item.create(target)]:
                client.command(statement)
        client.insert(f"`{target.database}`.{VERSIONS_TABLE}", [[migration.version], [migration.name]],
                      column_names=["version", "name"], column_oriented=True)
        ran.append(migration)
    return ran
