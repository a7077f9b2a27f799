"""The cluster DDL says what docs/cluster.md promises: engines, Keeper paths, local/Distributed names, keys.

A Replicated cluster with Keeper cannot run here; tests/integration/test_schema_cluster.py puts every
statement through the real ClickHouse parser.
"""

from __future__ import annotations

import re

from maple import schema
from maple.schema import Target

SINGLE = Target("otel", 30)
CLUSTER = Target("otel", 30, "maple")


def test_cluster_ddl_engines_paths_and_sharding_keys() -> None:
    ddl = schema.all_statements(CLUSTER)
    assert all(" ON CLUSTER `maple`" in s for s in ddl)
    # A table a later migration replaces is created twice; the last CREATE is the one in force.
    creates = {m.group(1): s for s in ddl
               if (m := re.match(r"CREATE (?:MATERIALIZED VIEW|TABLE|DATABASE) IF NOT EXISTS `otel`(?:\.(\w+))?", s))}
    # The retention changes go to the shard-local tables, which hold the rows (and the TTL).
    ttl = [s for s in ddl if " MODIFY TTL " in s]
    assert len(ttl) == 8 and all(re.match(r"ALTER TABLE `otel`\.\w+_local ON CLUSTER `maple` MODIFY TTL ", s) for s in ttl)
    for name, table in schema.TABLES.items():
        local = creates[f"{name}_local"]
        engine = "ReplicatedAggregatingMergeTree" if name == "otel_traces_trace_id_ts" else "ReplicatedMergeTree"
        assert f"ENGINE = {engine}('/clickhouse/tables/{{shard}}/{{database}}/{{table}}', '{{replica}}')" in local
        assert "replicated_deduplication_window = 10000" in local and "non_replicated" not in local
        assert creates[name].endswith(f"ENGINE = Distributed('maple', 'otel', '{name}_local', {table.sharding_key})")
        assert f"AS `otel`.{name}_local" in creates[name]
    assert schema.TABLES["otel_traces"].sharding_key == "cityHash64(TraceId)"
    assert schema.TABLES["otel_traces_trace_id_ts"].sharding_key == "cityHash64(TraceId)"
    assert schema.TABLES["otel_metrics_sum"].sharding_key == "cityHash64(ServiceName, MetricName, Attributes)"
    assert schema.TABLES["otel_logs"].sharding_key == \
        "if(TraceId = '', cityHash64(ServiceName, Timestamp), cityHash64(TraceId))"
    view = creates["otel_traces_trace_id_ts_mv"]  # local to local on every shard
    assert "TO `otel`.otel_traces_trace_id_ts_local" in view and "FROM `otel`.otel_traces_local" in view
    versions = creates[schema.VERSIONS_TABLE]  # one replicated table shared by all nodes, no {shard} in the path
    assert "ReplicatedMergeTree('/clickhouse/tables/maple/{database}/maple_schema_versions', '{shard}-{replica}')" \
        in versions
    # One definition per table: the single-node and cluster bodies are the same text.
    single = {m.group(1): s for s in schema.all_statements(SINGLE) if (m := re.match(r"CREATE .*?`otel`\.(\w+)", s))}
    for name in schema.TABLES:
        if name == "otel_traces":  # its last form comes from an ALTER (SampleRate), not a CREATE
            continue
        body = single[name].split(" (", 1)[1].split(") ENGINE")[0]
        assert body in creates[f"{name}_local"]


def test_migration_3_renders_for_a_cluster_and_for_old_servers() -> None:
    ddl = schema.statements(schema.EXPORTER_GENERATION, CLUSTER)
    # The empty-table path moves the Distributed table and its local table aside, drops both, re-creates.
    assert ddl[:4] == [
        "RENAME TABLE `otel`.otel_logs TO `otel`.otel_logs_maple_upgrade ON CLUSTER `maple`",
        "RENAME TABLE `otel`.otel_logs_local TO `otel`.otel_logs_maple_upgrade_local ON CLUSTER `maple`",
        "DROP TABLE IF EXISTS `otel`.otel_logs_maple_upgrade ON CLUSTER `maple` SYNC",
        "DROP TABLE IF EXISTS `otel`.otel_logs_maple_upgrade_local ON CLUSTER `maple` SYNC"]
    logs = next(s for s in ddl if s.startswith("CREATE TABLE IF NOT EXISTS `otel`.otel_logs_local"))
    assert "ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')" in logs
    assert "ORDER BY (toStartOfFiveMinutes(Timestamp), ServiceName, Timestamp)" in logs
    assert "TimestampTime" not in logs and "EventName String" in logs
    assert logs.count("__otel_materialized_") == 8
    assert "INDEX idx_lower_body lower(Body) TYPE text(tokenizer = 'splitByNonAlpha')" in logs
    # SampleRate goes onto the traces table in place, local and Distributed alike.
    assert ddl[-2:] == [
        "ALTER TABLE `otel`.otel_traces_local ON CLUSTER `maple` ADD COLUMN IF NOT EXISTS SampleRate Float64 DEFAULT 1 "
        "CODEC(ZSTD(1))",
        "ALTER TABLE `otel`.otel_traces ON CLUSTER `maple` ADD COLUMN IF NOT EXISTS SampleRate Float64 DEFAULT 1 "
        "CODEC(ZSTD(1))"]
    old = schema.statements(schema.EXPORTER_GENERATION, Target("otel", 30, text_indexes=False))
    logs = next(s for s in old if s.startswith("CREATE TABLE IF NOT EXISTS `otel`.otel_logs"))
    assert "TYPE text" not in logs
    assert "INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1" in logs
    assert "INDEX idx_lower_body lower(Body) TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8" in logs
    # A table with rows keeps its key: only columns are added.
    upgrade = schema.EXPORTER_GENERATION.objects[0]
    assert isinstance(upgrade, schema.Upgrade)
    alter = upgrade.alter(SINGLE)
    assert alter[0].startswith("ALTER TABLE `otel`.otel_logs ADD COLUMN IF NOT EXISTS EventName String CODEC(ZSTD(1)) "
                               "AFTER LogAttributes, ADD COLUMN IF NOT EXISTS `__otel_materialized_k8s.cluster.name`")
