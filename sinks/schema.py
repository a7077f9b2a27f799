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
    statements: tuple[str, ...]  # may use {db}


# The exporter-compatible tables arrive with the logs/metrics and traces issues, as migrations 1, 2, ...
MIGRATIONS: tuple[Migration, ...] = ()


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


def apply(client: Client, database: str, migrations: tuple[Migration, ...] = MIGRATIONS,
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
            client.command(statement.format(db=database))
        client.insert(f"`{database}`.{VERSIONS_TABLE}", [[migration.version], [migration.name]],
                      column_names=["version", "name"], column_oriented=True)
        ran.append(migration)
    return ran
