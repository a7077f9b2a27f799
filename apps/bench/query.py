"""`maple bench query`: a reproducible data set in ClickHouse, then the query API's latency on it.

Generation happens inside ClickHouse (INSERT ... SELECT over numbers()), which writes millions of rows a
second; sending the same rows through the OTLP pipeline would take an hour on this machine and measure
the pipeline, not the queries. Every value is a function of the row number (cityHash64, MD5), so two runs
hold the same rows; only the timestamps move with the anchor (the minute the data set was generated), so
that "the last 24 hours" always has data. RED metrics are derived from the generated spans exactly as the
workers' RED connector would (one delta point per series and minute).

Then it starts `maple api` on that database and measures p50/p95 of representative calls, one at a time,
and prints ClickHouse's EXPLAIN (indexes = 1) of the SQL the API ran for the calls where an index matters.
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import subprocess
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apps import maple_command
from apps.bench.stats import percentile
from maple import clickhouse, schema
from maple.net import free_port, http_ok
from maple.settings import Settings
from maple.tenants import DEFAULT_TENANT
from query.context import Context
from query.reader import Limits, Reader, Result
from query.sources import Sources
from query.store import open_store
from query.teams import create_key, revoke_key

SERVICES = ("frontend", "checkout", "cart", "payment", "currency", "shipping", "email", "product-catalog",
            "recommendation", "ad", "search", "inventory", "gateway", "auth", "user", "billing",
            "fraud-detection", "notification", "accounting", "quote")
# Each trace is a binary tree of 8 spans (span k's parent is (k-1)//2), in one of three call patterns.
PATTERNS = (("frontend", "checkout", "cart", "payment", "currency", "shipping", "email", "cart"),
            ("frontend", "product-catalog", "recommendation", "ad", "product-catalog", "currency", "search",
             "inventory"),
            ("gateway", "auth", "user", "billing", "payment", "fraud-detection", "notification", "accounting"))
SPANS_PER_TRACE = 8
BUCKETS_MS = (2, 4, 6, 8, 10, 50, 100, 200, 400, 800, 1000, 1400, 2000, 5000, 10000, 15000)
NS = 1_000_000_000


def _array(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


def logs_sql(db: str, rows: int, start_ns: int, span_s: int) -> str:
    step = span_s * NS // rows
    severity = ("multiIf(h % 100 < 70, 'INFO', h % 100 < 85, 'DEBUG', h % 100 < 95, 'WARN', h % 100 < 99, 'ERROR', "
                "'FATAL')")
    number = ("multiIf(h % 100 < 70, 9, h % 100 < 85, 5, h % 100 < 95, 13, h % 100 < 99, 17, 21)")
    body = (
        "if(h3 % 1000000 = 0, concat('deadlock detected in transaction ', toString(h2 % 1000000)), multiIf("
        "h % 100 >= 95, if(h2 % 2 = 0, concat('connection refused to db-', toString(h2 % 8), ':5432 after ', "
        "toString(h3 % 3000), ' ms'), concat('timeout after ', toString(h3 % 30000), ' ms calling ', "
        f"{_array(SERVICES)}[h2 % 20 + 1])), "
        "h % 100 >= 85, if(h2 % 2 = 0, concat('slow request GET /api/v1/items/', toString(h3 % 50000), ' took ', "
        "toString(h2 % 5000), ' ms'), concat('retrying payment ', toString(h3 % 1000000), ' (attempt ', "
        "toString(h2 % 5 + 1), ')')), "
        "h % 100 >= 70, if(h2 % 2 = 0, concat('cache miss for key item:', toString(h3 % 50000)), "
        "concat('loaded ', toString(h2 % 500), ' rows from inventory in ', toString(h3 % 200), ' ms')), "
        "multiIf(h2 % 3 = 0, concat('GET /api/v1/items/', toString(h3 % 50000), ' 200 in ', toString(h2 % 300), "
        "' ms'), h2 % 3 = 1, concat('user ', toString(h3 % 100000), ' logged in from 10.0.', toString(h2 % 256), "
        "'.', toString(h3 % 256)), concat('order ', toString(h3 % 1000000), ' placed, ', toString(h2 % 9 + 1), "
        "' items, total ', toString(h3 % 500), '.', toString(h2 % 100), ' EUR'))))")
    return f"""INSERT INTO `{db}`.otel_logs (Timestamp, TraceId, SpanId, TraceFlags, SeverityText, SeverityNumber,
    ServiceName, Body, ResourceSchemaUrl, ResourceAttributes, ScopeSchemaUrl, ScopeName, ScopeVersion, ScopeAttributes,
    LogAttributes)
SELECT fromUnixTimestamp64Nano(toInt64({start_ns}) + toInt64(number) * {step} + toInt64(h % {step})),
    if(h % 10 < 3, lower(hex(MD5(concat('t', toString(intDiv(number, 7)))))), '') AS trace,
    if(trace != '', substring(lower(hex(MD5(concat('s', toString(number))))), 1, 16), ''),
    toUInt8(trace != ''), {severity}, {number}, svc, {body}, '',
    map('service.name', svc, 'k8s.pod.name', concat(svc, '-', toString(h2 % 5)), 'k8s.namespace.name', 'prod',
        'host.name', concat('node-', toString(h2 % 12))),
    '', 'bench.logger', '1.0.0', map(),
    map('http.method', ['GET', 'POST', 'PUT', 'DELETE'][h3 % 4 + 1],
        'http.status_code', if(h % 100 >= 95, '500', '200'), 'user.id', toString(h3 % 100000))
FROM (SELECT number, cityHash64(number) AS h, cityHash64(number, 2) AS h2, cityHash64(number, 3) AS h3,
             {_array(SERVICES)}[cityHash64(number, 4) % 20 + 1] AS svc FROM numbers({rows}))"""


def traces_sql(db: str, spans: int, start_ns: int, span_s: int) -> str:
    traces = spans // SPANS_PER_TRACE
    step = span_s * NS // traces
    patterns = "[" + ", ".join(_array(p) for p in PATTERNS) + "]"
    span_id = "substring(lower(hex(MD5(concat('s', toString({n}))))), 1, 16)"
    return f"""INSERT INTO `{db}`.otel_traces (Timestamp, TraceId, SpanId, ParentSpanId, TraceState, SpanName,
    SpanKind, ServiceName, ResourceAttributes, ScopeName, ScopeVersion, SpanAttributes, Duration, StatusCode,
    StatusMessage, `Events.Timestamp`, `Events.Name`, `Events.Attributes`, `Links.TraceId`, `Links.SpanId`,
    `Links.TraceState`, `Links.Attributes`)
SELECT ts, lower(hex(MD5(concat('t', toString(t))))), {span_id.format(n='number')},
    if(k = 0, '', {span_id.format(n='t * 8 + intDiv(k - 1, 2)')}), '',
    concat(if(k = 0, 'GET /', 'rpc '), svc), 'Server', svc, map('service.name', svc, 'k8s.pod.name',
    concat(svc, '-', toString(th % 5))), 'bench.tracer', '1.0.0',
    map('http.method', 'GET', 'http.response.status_code', if(error, '500', '200')),
    toUInt64((5 + h % 200) * 1000000 / (1 + k)), if(error, 'Error', 'Unset'), if(error, 'upstream failed', ''),
    if(error, [ts], []), if(error, ['exception'], []), if(error, [map('exception.type', 'IOError')], []),
    [], [], [], []
FROM (SELECT number, intDiv(number, 8) AS t, number % 8 AS k, cityHash64(intDiv(number, 8)) AS th,
             cityHash64(number) AS h, {patterns}[th % 3 + 1][k + 1] AS svc, h % 100 < 2 AS error,
             fromUnixTimestamp64Nano(toInt64({start_ns}) + toInt64(t) * {step} + toInt64(k) * 100000) AS ts
      FROM numbers({traces * SPANS_PER_TRACE}))"""


def red_sql(db: str) -> list[str]:
    """RED points from the spans, as the workers' connector writes them (delta, per series and minute)."""
    series = ("map('service.name', ServiceName, 'span.name', SpanName, 'span.kind', concat('SPAN_KIND_', "
              "upper(SpanKind)), 'status.code', concat('STATUS_CODE_', upper(StatusCode)))")
    common = ("map('service.name', ServiceName), '', 'maple.red', '', map(), 0, '', ServiceName, {name}, '', {unit}, "
              f"{series}, toDateTime64(m, 9), toDateTime64(m + 60, 9)")
    bounds = "[" + ", ".join(f"{b}." for b in BUCKETS_MS) + "]"
    calls = (f"INSERT INTO `{db}`.otel_metrics_sum (ResourceAttributes, ResourceSchemaUrl, ScopeName, ScopeVersion, "
             "ScopeAttributes, ScopeDroppedAttrCount, ScopeSchemaUrl, ServiceName, MetricName, MetricDescription, "
             "MetricUnit, Attributes, StartTimeUnix, TimeUnix, Value, Flags, AggregationTemporality, IsMonotonic) "
             f"SELECT {common.format(name=repr('traces.span.metrics.calls'), unit=repr('1'))}, count(), 0, 1, true "
             f"FROM `{db}`.otel_traces GROUP BY toStartOfMinute(Timestamp) AS m, ServiceName, SpanName, SpanKind, "
             "StatusCode")
    duration = (f"INSERT INTO `{db}`.otel_metrics_histogram (ResourceAttributes, ResourceSchemaUrl, ScopeName, "
                "ScopeVersion, ScopeAttributes, ScopeDroppedAttrCount, ScopeSchemaUrl, ServiceName, MetricName, "
                "MetricDescription, MetricUnit, Attributes, StartTimeUnix, TimeUnix, Count, Sum, BucketCounts, "
                "ExplicitBounds, Flags, Min, Max, AggregationTemporality) "
                f"SELECT {common.format(name=repr('traces.span.metrics.duration'), unit=repr('ms'))}, count(), "
                f"sum(d), sumForEach(arrayMap(i -> toUInt64(i = b), range({len(BUCKETS_MS) + 1}))), {bounds}, 0, "
                f"min(d), max(d), 1 FROM (SELECT *, Duration / 1e6 AS d, "
                f"if(arrayFirstIndex(x -> d <= x, {bounds}) = 0, {len(BUCKETS_MS)}, "
                f"arrayFirstIndex(x -> d <= x, {bounds}) - 1) AS b FROM `{db}`.otel_traces) "
                "GROUP BY toStartOfMinute(Timestamp) AS m, ServiceName, SpanName, SpanKind, StatusCode")
    return [calls, duration]


@dataclass
class DataSet:
    database: str
    logs: int
    spans: int
    anchor_ns: int
    generated_s: dict[str, float]


def generate(settings: Settings, database: str, logs: int, spans: int, hours: float, reuse: bool,
             say: Callable[[str], None]) -> DataSet:
    client = clickhouse.connect(settings, in_process=False)
    try:
        client.query_limit = 0
        if reuse:
            exists = client.query("SELECT count() FROM system.tables WHERE database = {d:String} AND "
                                  "name = 'otel_logs'", parameters={"d": database}).result_rows[0][0]
            if exists:
                got_logs = client.query(f"SELECT count(), toUnixTimestamp64Nano(max(Timestamp)) "
                                        f"FROM `{database}`.otel_logs").result_rows[0]
                got_spans = client.query(f"SELECT count() FROM `{database}`.otel_traces").result_rows[0][0]
                if got_logs[0] == logs and got_spans == spans // SPANS_PER_TRACE * SPANS_PER_TRACE:
                    anchor = client.query(f"SELECT toUnixTimestamp64Nano(max(Timestamp)) FROM "
                                          f"`{database}`.otel_traces").result_rows[0][0]
                    say(f"reusing {database}: {got_logs[0]:,} logs, {got_spans:,} spans")
                    return DataSet(database, logs, got_spans, max(anchor, got_logs[1]), {})
        client.command(f"DROP DATABASE IF EXISTS `{database}`")
        schema.apply(client, schema.Target(database, 0), say=lambda _: None)
        anchor = time.time_ns() // (60 * NS) * (60 * NS)
        span_s = int(hours * 3600)
        start = anchor - span_s * NS
        timings = {}
        for name, sql in (("logs", logs_sql(database, logs, start, span_s)),
                          ("spans", traces_sql(database, spans, start, span_s))):
            began = time.perf_counter()
            say(f"generating {name} in ClickHouse ...")
            client.command(sql, settings={"max_insert_threads": 2, "max_execution_time": 0})
            timings[name] = time.perf_counter() - began
            say(f"  {name}: {timings[name]:.1f} s")
        began = time.perf_counter()
        for sql in red_sql(database):
            client.command(sql)
        timings["red"] = time.perf_counter() - began
        got = client.query(f"SELECT (SELECT count() FROM `{database}`.otel_logs), "
                           f"(SELECT count() FROM `{database}`.otel_traces)").result_rows[0]
        return DataSet(database, got[0], got[1], anchor, timings)
    finally:
        client.close()


# -- measuring ------------------------------------------------------------------------------------------


class CapturingReader(Reader):
    """A Reader that remembers what it ran, so the bench can EXPLAIN the API's own SQL."""

    def __init__(self, settings: Settings, database: str) -> None:
        super().__init__(settings, database)
        self.ran: list[tuple[str, dict[str, Any]]] = []

    def select(self, sql: str, parameters: Any = None, *, limits: Limits | None = None,
               user_sql: bool = False) -> Result:
        self.ran.append((sql, dict(parameters or {})))
        return super().select(sql, parameters, limits=limits, user_sql=user_sql)


def _get(conn: http.client.HTTPConnection, path: str, headers: dict[str, str]) -> tuple[float, float, int, bytes]:
    """Latency (ms), ClickHouse's share of it (ms, from Server-Timing), status, body."""
    began = time.perf_counter()
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    body = response.read()
    elapsed = (time.perf_counter() - began) * 1000
    timing = response.getheader("server-timing") or ""
    clickhouse_ms = 0.0
    for part in timing.split(";"):
        if part.startswith("dur="):
            clickhouse_ms = float(part[4:])
    return elapsed, clickhouse_ms, response.status, body


def _cpu_ms(pid: int | None) -> float:
    """User + system CPU time of a process so far (ms), from /proc; 0 when it cannot be read."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def _explain(reader: Reader, sql: str, params: dict[str, Any]) -> str:
    rows = reader.select(f"EXPLAIN indexes = 1 {sql}", params).rows
    return "\n".join(str(r[0]) for r in rows)


def start_host(settings: Settings, say: Callable[[str], None]) -> subprocess.Popen[bytes] | None:
    """In embedded mode with no host serving the data dir, start one and wait until it answers; the caller
    stops what it gets back. None when a host (or a server) is already there."""
    if not settings.embedded_clickhouse or clickhouse.running_host(settings) is not None:
        return None
    say("starting the embedded ClickHouse host")
    host = subprocess.Popen(maple_command("clickhouse", "serve"), env=dict(os.environ))
    deadline = time.monotonic() + 60
    while clickhouse.running_host(settings) is None:
        if host.poll() is not None or time.monotonic() > deadline:
            host.kill()
            raise RuntimeError("the embedded ClickHouse host did not start")
        time.sleep(0.2)
    return host


def run(settings: Settings, *, database: str, logs: int, spans: int, hours: float, iterations: int, reuse: bool,
        say: Callable[[str], None]) -> dict[str, Any]:
    own_host = start_host(settings, say)
    api = None
    store = open_store(settings)  # the API reads as the default team (the generated rows' tenant), with a query key
    key, secret = create_key(store, DEFAULT_TENANT, "query", "maple bench query", "bench", role="viewer")
    try:
        data = generate(settings, database, logs, spans, hours, reuse, say)
        port = free_port()
        env = {**os.environ, "MAPLE_CLICKHOUSE_DATABASE": database, "MAPLE_API_PORT": str(port),
               "MAPLE_DATA_DIR": str(settings.data_path)}
        api = subprocess.Popen(maple_command("api"), env=env, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not http_ok(f"http://127.0.0.1:{port}/readyz"):
            if api.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("maple api did not become ready")
            time.sleep(0.2)
        host = clickhouse.running_host(settings)
        report = _measure(settings, data, port, iterations, say, api.pid, int(host["pid"]) if host else None,
                          {"authorization": f"Bearer {secret}"})
        report["data"] = {"database": data.database, "logs": data.logs, "spans": data.spans,
                          "hours": hours, "generation_s": {k: round(v, 1) for k, v in data.generated_s.items()}}
        return report
    finally:
        if api is not None:
            api.terminate()
            api.wait(30)
        if own_host is not None:
            own_host.terminate()
            own_host.wait(60)
        revoke_key(store, key["id"], "bench")
        store.close()


def _measure(settings: Settings, data: DataSet, port: int, iterations: int, say: Callable[[str], None],
             api_pid: int | None, host_pid: int | None, headers: dict[str, str]) -> dict[str, Any]:
    """Latency per call, ClickHouse's share of it (Server-Timing), and the CPU time the call cost the API
    and the embedded ClickHouse host (from /proc): CPU time does not grow when other work shares the
    machine, latency does."""
    reader = Reader(settings, data.database).scoped(DEFAULT_TENANT)
    anchor = data.anchor_ns
    day = f"from={anchor - 86400 * NS}&to={anchor}"
    hour = f"from={anchor - 3600 * NS}&to={anchor}"
    trace_ids = [row[0] for row in reader.select(
        f"SELECT TraceId FROM `{data.database}`.otel_traces_trace_id_ts ORDER BY cityHash64(TraceId) LIMIT "
        f"{iterations + 3}").rows]
    quote = urllib.parse.quote
    cases: list[tuple[str, Callable[[int], str]]] = [
        ("log search, frequent term, 24 h", lambda i: f"/api/v1/logs/search?q={quote('refused')}&{day}&limit=100"),
        ("log search, needle (~10 rows a day), 24 h",
         lambda i: f"/api/v1/logs/search?q={quote('deadlock')}&{day}&limit=100"),
        ("log search, field + term, 24 h",
         lambda i: f"/api/v1/logs/search?q={quote('level:error timeout service:checkout')}&{day}&limit=100"),
        ("trace by id", lambda i: f"/api/v1/traces/{trace_ids[i % len(trace_ids)]}"),
        ("service list (RED), 24 h", lambda i: f"/api/v1/traces/services?{day}"),
        ("service map, 1 h", lambda i: f"/api/v1/traces/dependencies?{hour}"),
        ("histogram quantile (p95 by service), 1 h",
         lambda i: "/api/v1/metrics/query?query=" + quote(
             'histogram_quantile(0.95, sum by (le, "service.name") '
             '(rate({"traces.span.metrics.duration_bucket"}[5m])))') + f"&{hour}&step=60"),
    ]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    results = []
    for name, path in cases:
        for i in range(3):  # warm-up: caches of the schema, the attribute keys, ClickHouse's marks
            _, _, status, body = _get(conn, path(i), headers)
            if status != 200:
                raise RuntimeError(f"{name}: {status} {body[:300]!r}")
        times, in_clickhouse = [], []
        cpu_before = (_cpu_ms(api_pid), _cpu_ms(host_pid))
        for i in range(iterations):
            ms, ch_ms, status, body = _get(conn, path(i + 3), headers)
            if status != 200:
                raise RuntimeError(f"{name}: {status} {body[:300]!r}")
            times.append(ms)
            in_clickhouse.append(ch_ms)
        api_cpu = (_cpu_ms(api_pid) - cpu_before[0]) / iterations
        host_cpu = (_cpu_ms(host_pid) - cpu_before[1]) / iterations
        summary = json.loads(body)
        size = next((len(summary[k]) for k in ("rows", "spans", "services", "edges", "series") if k in summary), 0)
        results.append({"call": name, "p50_ms": round(statistics.median(times), 1),
                        "p95_ms": round(percentile(times, 0.95), 1), "max_ms": round(max(times), 1),
                        "clickhouse_p50_ms": round(statistics.median(in_clickhouse), 1),
                        "clickhouse_p95_ms": round(percentile(in_clickhouse, 0.95), 1), "items": size,
                        "api_cpu_ms": round(api_cpu, 1), "clickhouse_cpu_ms": round(host_cpu, 1)})
        say(f"  {name:<44} p50 {results[-1]['p50_ms']:>8.1f} ms  p95 {results[-1]['p95_ms']:>8.1f} ms")
    conn.close()
    # The machine's own noise, same run: a trivial query through the same reader and ClickHouse host.
    baseline = []
    for _ in range(iterations):
        began = time.perf_counter()
        reader.select("SELECT 1")
        baseline.append((time.perf_counter() - began) * 1000)
    reader.close()
    results.append({"call": "baseline: SELECT 1 (reader -> ClickHouse host)",
                    "p50_ms": round(statistics.median(baseline), 1),
                    "p95_ms": round(percentile(baseline, 0.95), 1), "max_ms": round(max(baseline), 1),
                    "clickhouse_p50_ms": round(statistics.median(baseline), 1),
                    "clickhouse_p95_ms": round(percentile(baseline, 0.95), 1), "items": 1, "api_cpu_ms": 0.0,
                    "clickhouse_cpu_ms": 0.0})
    return {"iterations": iterations, "results": results, "explain": _explains(settings, data, trace_ids[0]),
            "load_average": os.getloadavg()}


def _explains(settings: Settings, data: DataSet, trace_id: str) -> dict[str, str]:
    """EXPLAIN indexes = 1 of the SQL the API runs for the calls where an index matters."""
    from query import logs, traces

    reader = CapturingReader(settings, data.database).scoped(DEFAULT_TENANT)
    ctx = Context(settings, reader, Sources(reader, None), None)
    anchor = data.anchor_ns
    from query.timerange import Range

    day = Range(anchor - 86400 * NS, anchor)
    out: dict[str, str] = {}
    source = ctx.sources.get("logs", "logs")
    where = logs.build_filter(ctx, source, "deadlock", [], [])
    reader.ran.clear()
    logs.search(ctx, source, day, where, 100, None)
    sql, params = reader.ran[-1]  # the widest window: the token index has to do the work
    out["log search (needle, widest window)"] = _explain(reader, sql, params)
    traces_source = ctx.sources.get("traces", "traces")
    reader.ran.clear()
    traces.get(ctx, traces_source, trace_id, None)
    out["trace by id (its time range from the lookup table in a scalar subquery)"] = _explain(reader, *reader.ran[-1])
    reader.ran.clear()
    traces.dependencies(ctx, traces_source, Range(anchor - 3600 * NS, anchor))
    out["service map, 1 h"] = _explain(reader, *reader.ran[-1])
    reader.close()
    return out
