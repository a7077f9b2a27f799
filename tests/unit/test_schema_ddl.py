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
    creates = {re.match(r"CREATE (?:MATERIALIZED VIEW|TABLE|DATABASE) IF NOT EXISTS `otel`(?:\.(\w+))?", s).group(1): s
               for s in ddl if s.startswith("CREATE")}
    alters = [s for s in ddl if not s.startswith("CREATE")]
    # The retention changes go to the shard-local tables, which hold the rows (and the TTL).
    assert alters and all(re.match(r"ALTER TABLE `otel`\.\w+_local ON CLUSTER `maple` MODIFY TTL ", s) for s in alters)
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
    single = {m.group(1): s for s in schema.all_statements(SINGLE)
              if s.startswith("CREATE") and (m := re.search(r"`otel`\.(\w+)", s))}
    for name in schema.TABLES:
        body = single[name].split(" (", 1)[1].split(") ENGINE")[0]
        assert body in creates[f"{name}_local"]
