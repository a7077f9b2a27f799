"""The schema for one node and for a cluster, from one definition per table.

Every generated statement goes through the real ClickHouse parser (`formatQuery` in the embedded engine).
A Replicated cluster with Keeper cannot run here, so its DDL is checked for what docs/cluster.md promises:
engines, Keeper paths, local/Distributed naming and sharding keys, and merge-tree settings that exist.
"""

from __future__ import annotations

import re
import time

import pytest

from maple import schema
from maple.schema import Target

SINGLE = Target("otel", 30)
CLUSTER = Target("otel", 30, "maple")


def _literal(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@pytest.mark.parametrize("target", [SINGLE, CLUSTER, Target("otel", 0, "maple")], ids=["single", "cluster", "no-ttl"])
def test_every_statement_passes_the_clickhouse_parser(ch, target: Target) -> None:
    statements = schema.all_statements(target)
    for statement in statements:
        formatted = ch.query(f"SELECT formatQuery({_literal(statement)})").result_rows[0][0]
        assert formatted.split()[0] in ("CREATE", "ALTER"), statement
    # The check is real: a broken statement is refused by the same parser.
    with pytest.raises(Exception, match="SYNTAX_ERROR|Syntax error"):
        ch.query(f"SELECT formatQuery({_literal(statements[2].replace('ORDER BY', 'ORDER'))})")


def test_settings_named_in_the_ddl_exist_in_this_clickhouse(ch) -> None:
    known = {row[0] for row in ch.query("SELECT name FROM system.merge_tree_settings").result_rows}
    for text in (schema.TABLE_SETTINGS, schema.REPLICATED_TABLE_SETTINGS):
        for name in re.findall(r"(\w+) =", text):
            assert name in known, name


def test_single_node_ddl_applies_and_sharding_columns_match_the_tables(ch) -> None:
    said: list[str] = []
    ran = schema.apply(ch, Target(ch.database, 30), say=said.append)
    assert [m.version for m in ran] == [m.version for m in schema.MIGRATIONS] and len(said) == len(ran) >= 3
    assert schema.apply(ch, ch.database, 30, say=said.append) == []  # the old call form still works
    for name, table in schema.TABLES.items():
        types = dict(ch.query(f"SELECT name, type FROM system.columns WHERE database = currentDatabase() "
                              f"AND table = '{name}'").result_rows)
        for column, type_ in table.shard_by:
            assert types[column] == type_, (name, column)
        # The sharding key evaluates on the table's own columns.
        ch.query(f"SELECT {table.sharding_key} FROM {name} LIMIT 0")


def test_a_row_stamped_past_2106_is_not_dropped_as_expired(ch) -> None:
    """toDateTime() of a time past 2106-02-07 wraps around to 1970-1990; with the exporter's TTL the row's part
    expired at once and the row vanished on insert. Maple's workers refuse such times; the tables must not
    lose the rows another writer puts in."""
    schema.apply(ch, Target(ch.database, 30), say=lambda _line: None)
    for table, column in (("otel_logs", "Timestamp"), ("otel_traces", "Timestamp"), ("otel_metrics_gauge", "TimeUnix")):
        ch.command(f"INSERT INTO {table} ({column}, ServiceName) FORMAT JSONColumns "
                   f'{{"{column}": ["9223372036.854775807", "{int(time.time())}.000000000"], '
                   f'"ServiceName": ["far", "now"]}}')
        ch.command(f"OPTIMIZE TABLE {table} FINAL")
        rows = ch.query(f"SELECT ServiceName FROM {table} ORDER BY ServiceName").result_rows
        assert rows == [("far",), ("now",)], table
