"""What moving otel_logs to the exporter's sort key costs, measured on the real engine (docs/schema.md).

Builds an otel_logs table of the previous generation (migrations 1 and 2) with `rows` generated log rows
spread over one day in a private embedded engine (a temporary data dir, in this process), then measures:

* the in-place path migration 3 takes for a table with rows (ALTER ... ADD COLUMN): seconds;
* the copy path (a new table with the new key, INSERT ... SELECT of every row): seconds, CPU seconds of
  this process (the engine runs in it), peak memory, and both tables' size on disk;
* what each key reads for two common queries: 15 minutes of all services, and one service for an hour.
"""

from __future__ import annotations

import dataclasses
import resource
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

import chdb
import clickhouse_connect

from maple import schema

DAY_NS = 86_400 * 10**9
SERVICES = 20


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _fill(client: Any, rows: int, chunk: int, say: Callable[[str], None]) -> None:
    step = DAY_NS // rows
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        client.command(f"""
            INSERT INTO otel_logs (Timestamp, TraceId, SpanId, TraceFlags, SeverityText, SeverityNumber, ServiceName,
                                   Body, ResourceAttributes, ScopeName, LogAttributes)
            SELECT fromUnixTimestamp64Nano(toInt64(1764288000000000000 + (number + {start}) * {step})),
                   if(number % 3 = 0, '', hex(cityHash64(number + {start}, 1)) || hex(cityHash64(number + {start}, 2))),
                   if(number % 3 = 0, '', hex(cityHash64(number + {start}, 3))), 1,
                   ['INFO', 'WARN', 'ERROR', 'DEBUG'][(number % 4) + 1], [9, 13, 17, 5][(number % 4) + 1],
                   'service-' || toString(cityHash64(number + {start}) % {SERVICES}),
                   'request ' || toString(number + {start}) || ' handled in ' || toString(number % 997) ||
                       ' ms for user ' || toString(number % 5000) || ' path /api/v1/items/' || toString(number % 300),
                   map('service.name', 'service-' || toString(cityHash64(number + {start}) % {SERVICES}),
                       'k8s.pod.name', 'pod-' || toString(number % 50), 'deployment.environment.name', 'prod'),
                   'bench.logger', map('http.route', '/api/v1/items', 'user.id', toString(number % 5000))
            FROM numbers({n})""")
        say(f"  filled {start + n:,} of {rows:,} rows")


def _size(client: Any, table: str) -> dict[str, int]:
    row = client.query("SELECT sum(bytes_on_disk), sum(secondary_indices_compressed_bytes), count() FROM system.parts "
                       "WHERE active AND database = currentDatabase() AND table = {t:String}",
                       parameters={"t": table}).result_rows[0]
    return {"bytes": int(row[0]), "index_bytes": int(row[1]), "parts": int(row[2])}


def _read(conn: Any, sql: str) -> tuple[int, float]:
    """Rows the key and indexes leave to read (EXPLAIN ESTIMATE) and the best of three wall times."""
    estimate = conn.query(f"EXPLAIN ESTIMATE {sql}", "TabSeparated").bytes().decode().split("\t")
    rows = int(estimate[3])  # database, table, parts, rows, marks
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        conn.query(sql, "TabSeparated")
        best = min(best, time.perf_counter() - started)
    return rows, best


def run(rows: int = 10_000_000, chunk: int = 1_000_000, say: Callable[[str], None] = print) -> dict[str, Any]:
    path = tempfile.mkdtemp(prefix="maple-bench-rekey-")
    client = clickhouse_connect.get_client(interface="chdb", path=path)
    try:
        old = tuple(m for m in schema.MIGRATIONS if m.version < 3)
        target = schema.Target("bench", ttl_days=0)
        schema.apply(client, target, migrations=old, say=lambda _m: None)
        client.database = "bench"
        say(f"filling otel_logs (previous generation) with {rows:,} rows")
        started = time.perf_counter()
        _fill(client, rows, chunk, say)
        fill_s = time.perf_counter() - started

        upgrade = next(item for m in schema.MIGRATIONS for item in m.objects
                       if isinstance(item, schema.Upgrade) and item.table.name == "otel_logs")
        text = schema.server_has_text_indexes(client)
        target = dataclasses.replace(target, text_indexes=text)

        copy = dataclasses.replace(upgrade.table, name="otel_logs_rekeyed")
        for statement in schema.create_table(copy, target):
            client.command(statement)
        new_columns = {row[0] for row in client.query(
            "SELECT name FROM system.columns WHERE database = 'bench' AND table = 'otel_logs_rekeyed' "
            "AND default_kind NOT IN ('MATERIALIZED', 'ALIAS')").result_rows}
        old_columns = [row[0] for row in client.query(
            "SELECT name FROM system.columns WHERE database = 'bench' AND table = 'otel_logs' "
            "AND default_kind NOT IN ('MATERIALIZED', 'ALIAS') ORDER BY position").result_rows]
        common = ", ".join(f"`{c}`" for c in old_columns if c in new_columns)
        say("copying every row into a table with the new key (INSERT ... SELECT)")
        cpu0, started = _cpu(), time.perf_counter()
        client.command(f"INSERT INTO otel_logs_rekeyed ({common}) SELECT {common} FROM otel_logs",
                       settings={"max_insert_threads": 2})
        copy_s, copy_cpu = time.perf_counter() - started, _cpu() - cpu0

        say("the in-place path: ALTER TABLE ... ADD COLUMN")
        started = time.perf_counter()
        for statement in upgrade.alter(target):
            client.command(statement)
        alter_s = time.perf_counter() - started

        sizes = {"old": _size(client, "otel_logs"), "new": _size(client, "otel_logs_rekeyed")}
        at = "fromUnixTimestamp64Nano(toInt64(1764288000000000000 + 12 * 3600 * 1000000000))"
        # The exporter's key leads with toStartOfFiveMinutes(Timestamp); on this engine a filter on Timestamp
        # alone does not prune through it, so each query is also measured with the five-minute bound added.
        bound = (" AND toStartOfFiveMinutes(Timestamp) BETWEEN toStartOfFiveMinutes(" + at + ") AND " + at
                 + " + INTERVAL {span}")
        queries = {}
        for name, where, span in (("15 minutes, all services", "", "15 MINUTE"),
                                  ("1 hour, one service", "ServiceName = 'service-3' AND ", "1 HOUR")):
            base = ("SELECT count() FROM {t} WHERE " + where + "Timestamp >= " + at + " AND Timestamp < " + at
                    + " + INTERVAL " + span)
            queries[name] = base
            queries[name + ", with the five-minute bound"] = base + bound.replace("{span}", span)
        reads = {}
        conn = chdb.connect(path)
        conn.query("USE bench")
        for name, sql in queries.items():
            old_rows, old_s = _read(conn, sql.format(t="otel_logs"))
            new_rows, new_s = _read(conn, sql.format(t="otel_logs_rekeyed"))
            reads[name] = {"old_key_rows_read": old_rows, "new_key_rows_read": new_rows,
                           "old_key_s": round(old_s, 4), "new_key_s": round(new_s, 4)}
        return {
            "rows": rows, "fill_s": round(fill_s, 1), "text_indexes": text,
            "alter_in_place_s": round(alter_s, 3),
            "copy_s": round(copy_s, 1), "copy_cpu_s": round(copy_cpu, 1),
            "copy_rows_per_s": round(rows / copy_s) if copy_s else None,
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "old_table": sizes["old"], "new_table": sizes["new"], "reads": reads,
        }
    finally:
        client.close()
        shutil.rmtree(path, ignore_errors=True)
