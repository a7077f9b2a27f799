"""Trace queries: search (one row per trace), one trace in parent/child order, services with their RED
figures (from the RED metrics the workers derive from every span), and the service map (parent/child
spans that cross services)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from query import cursor as cursors
from query.context import Context
from query.errors import ApiError
from query.logs import END, START, Filter
from query.models import DependencyEdge, ServiceRed, Span, SpanEvent, SpanLink, TraceResponse, TraceSummary
from query.reader import quote_identifier
from query.search.compiler import compile_query
from query.sources import Source
from query.timerange import NS, Range, format_ns

CALLS_METRIC = "traces.span.metrics.calls"
DURATION_METRIC = "traces.span.metrics.duration"
ERROR_VALUES = ("error", "status_code_error")
SPAN_KINDS = {"server": "SPAN_KIND_SERVER", "client": "SPAN_KIND_CLIENT", "internal": "SPAN_KIND_INTERNAL",
              "producer": "SPAN_KIND_PRODUCER", "consumer": "SPAN_KIND_CONSUMER",
              "unspecified": "SPAN_KIND_UNSPECIFIED"}
DEFAULT_SERVICE_KINDS = ("server", "consumer")
DETAIL_SLACK_NS = 3600 * NS


def _is_error(expr: str) -> str:
    return f"lower(toString({expr})) IN ('error', 'status_code_error')"


def build_filter(ctx: Context, source: Source, q: str, services: list[str], span_names: list[str],
                 min_ms: float | None, max_ms: float | None, statuses: list[str]) -> Filter:
    s = source.spec
    compiled = compile_query(q, ctx.sources.resolver(source))
    parts = [compiled.sql] if compiled.sql != "1" else []
    params: dict[str, Any] = dict(compiled.params)
    if services:
        parts.append(f"{s.service} IN {{services:Array(String)}}")
        params["services"] = services
    if span_names:
        parts.append(f"{s.span_name} IN {{span_names:Array(String)}}")
        params["span_names"] = span_names
    if min_ms is not None:
        parts.append(f"{s.duration_ns} >= {{min_ns:Float64}}")
        params["min_ns"] = min_ms * 1e6
    if max_ms is not None:
        parts.append(f"{s.duration_ns} <= {{max_ns:Float64}}")
        params["max_ns"] = max_ms * 1e6
    if statuses:
        wanted: set[str] = set()
        for status in statuses:
            value = status.strip().lower()
            if value not in ("ok", "error", "unset"):
                raise ApiError(400, "invalid_parameter", f"status: {status!r} is not one of ok, error, unset",
                               field="status")
            wanted.update((value, f"status_code_{value}"))
        parts.append(f"lower(toString({s.status_code})) IN {{statuses:Array(String)}}")
        params["statuses"] = sorted(wanted)
    return Filter(" AND ".join(parts) if parts else "1", params)


def _ns(expr: str) -> str:
    return f"toUnixTimestamp64Nano(toDateTime64({expr}, 9))"


def search(ctx: Context, source: Source, rng: Range, where: Filter, limit: int,
           cursor: str | None) -> tuple[list[TraceSummary], str | None]:
    """Traces with a span matching `where` in the range, newest first by their first matching span."""
    s = source.spec
    params: dict[str, Any] = {**where.params, "start": rng.start_ns, "end": rng.end_ns}
    having = ""
    if cursor:
        position = cursors.decode(cursor, "traces", {"t": int, "id": str}, {"t": cursors.INT64_END})
        having = "HAVING first < {ct:Int64} OR (first = {ct:Int64} AND trace_id < {cid:String})"
        params.update(ct=position["t"], cid=position["id"])
    ids_sql = (f"SELECT toString({s.trace_id}) AS trace_id, min({_ns(s.timestamp)}) AS first FROM {source.table} "
               f"WHERE {source.time_filter(START, END)} AND ({where.sql}) AND {s.trace_id} != '' "
               f"GROUP BY trace_id {having} ORDER BY first DESC, trace_id DESC LIMIT {limit}")
    page = ctx.reader.select(ids_sql, params).rows
    if not page:
        return [], None
    ids = [row[0] for row in page]
    low, high = _bounds(ctx, source, ids, rng.start_ns - DETAIL_SLACK_NS, rng.end_ns + DETAIL_SLACK_NS)
    detail = ctx.reader.select(
        f"SELECT toString({s.trace_id}) AS trace_id, min({_ns(s.timestamp)}) AS start, "
        f"max({_ns(s.timestamp)} + toInt64({s.duration_ns})) AS end, count() AS spans, "
        f"countIf({_is_error(s.status_code)}) AS errors, arraySort(groupUniqArray(toString({s.service}))) AS services, "
        f"argMinIf(toString({s.service}), {s.timestamp}, {s.parent_span_id} = '') AS root_service, "
        f"argMinIf(toString({s.span_name}), {s.timestamp}, {s.parent_span_id} = '') AS root_name "
        f"FROM {source.table} WHERE {source.time_filter(START, END)} AND {s.trace_id} IN {{ids:Array(String)}} "
        f"GROUP BY trace_id", {"ids": ids, "start": low, "end": high}).dicts()
    by_id = {row["trace_id"]: row for row in detail}
    out = []
    for trace_id in ids:
        row = by_id.get(trace_id)
        if row is None:
            continue
        out.append(TraceSummary(trace_id=trace_id, start=format_ns(row["start"]), start_ns=row["start"],
                                duration_ms=max(0, row["end"] - row["start"]) / 1e6, root_service=row["root_service"],
                                root_name=row["root_name"], span_count=row["spans"], error_count=row["errors"],
                                services=row["services"]))
    next_cursor = cursors.encode("traces", t=page[-1][1], id=page[-1][0]) if len(page) == limit else None
    return out, next_cursor


def _bounds(ctx: Context, source: Source, ids: list[str], low: int, high: int) -> tuple[int, int]:
    """The time range that holds every span of `ids`: from the TraceId lookup table when the source has one."""
    table = source.spec.trace_id_ts_table
    if not table:
        return low, high
    row = ctx.reader.select(
        f"SELECT toUnixTimestamp(min(Start)), toUnixTimestamp(max(End)), count() "
        f"FROM {quote_identifier(source.spec.database)}.{quote_identifier(table)} "
        f"WHERE TraceId IN {{ids:Array(String)}}", {"ids": ids}).rows[0]
    if not row[2]:
        return low, high
    return row[0] * NS, (row[1] + 1) * NS - 1


def get(ctx: Context, source: Source, trace_id: str, rng: Range | None) -> TraceResponse:
    """Every span of one trace. With a TraceId lookup table, one query: its time range comes from the
    lookup in a scalar subquery, which ClickHouse evaluates before index analysis, so only the partitions
    and granules of that range are read (and the idx_trace_id bloom filter skips the rest)."""
    s = source.spec
    params: dict[str, Any] = {"id": trace_id}
    if s.trace_id_ts_table:
        lookup = f"{quote_identifier(s.database)}.{quote_identifier(s.trace_id_ts_table)}"
        prefix = (f"WITH (SELECT (toInt64(toUnixTimestamp(min(Start))) * 1000000000, "
                  f"(toInt64(toUnixTimestamp(max(End))) + 1) * 1000000000 - 1) FROM {lookup} "
                  "WHERE TraceId = {id:String}) AS span_range ")
        where = source.time_filter("fromUnixTimestamp64Nano(span_range.1)", "fromUnixTimestamp64Nano(span_range.2)")
    else:
        assert rng is not None
        prefix = ""
        params.update(start=rng.start_ns, end=rng.end_ns)
        where = source.time_filter(START, END)
    events = links = ""
    if s.events:
        e = s.events
        events = (f", arrayMap(x -> toUnixTimestamp64Nano(x), `{e}.Timestamp`) AS ev_t, `{e}.Name` AS ev_n, "
                  f"arrayMap(x -> CAST(x, 'Map(String, String)'), `{e}.Attributes`) AS ev_a")
    if s.links:
        k = s.links
        links = (f", `{k}.TraceId` AS ln_t, `{k}.SpanId` AS ln_s, `{k}.TraceState` AS ln_st, "
                 f"arrayMap(x -> CAST(x, 'Map(String, String)'), `{k}.Attributes`) AS ln_a")
    sql = (f"SELECT {_ns(s.timestamp)} AS t, toString({s.trace_id}) AS trace_id, toString({s.span_id}) AS span_id, "
           f"toString({s.parent_span_id}) AS parent, toString({s.span_name}) AS name, toString({s.span_kind}) AS kind, "
           f"toString({s.service}) AS service, toInt64({s.duration_ns}) AS d, toString({s.status_code}) AS status, "
           f"toString({s.status_message}) AS status_message, CAST({s.attributes}, 'Map(String, String)') AS attrs, "
           f"CAST({s.resource_attributes}, 'Map(String, String)') AS res, toString({s.scope_name}) AS scope, "
           f"toString({s.scope_version}) AS scope_version{events}{links} "
           f"FROM {source.table} WHERE {where} AND {s.trace_id} = {{id:String}} ORDER BY t, span_id")
    rows = ctx.reader.select(prefix + sql, params).dicts()
    if not rows:
        raise ApiError(404, "not_found", f"no trace {trace_id} in source {source.name}", field="trace_id")
    spans = _ordered(rows)
    start = min(r["t"] for r in rows)
    end = max(r["t"] + r["d"] for r in rows)
    return TraceResponse(source=source.name, trace_id=trace_id, start=format_ns(start), start_ns=start,
                         duration_ms=(end - start) / 1e6, services=sorted({r["service"] for r in rows}),
                         span_count=len(rows), error_count=sum(1 for r in rows if r["status"].lower() in ERROR_VALUES),
                         spans=spans)


def _ordered(rows: list[dict[str, Any]]) -> list[Span]:
    """Depth-first from the roots (spans without a parent in the trace), children by start time."""
    ids = {r["span_id"] for r in rows}
    children: dict[str, list[dict[str, Any]]] = defaultdict(list)
    roots = []
    for row in rows:  # rows come sorted by start time, so every child list is too
        if row["parent"] and row["parent"] in ids and row["parent"] != row["span_id"]:
            children[row["parent"]].append(row)
        else:
            roots.append(row)
    out: list[Span] = []
    seen: set[str] = set()
    stack = [(row, 0) for row in reversed(roots)]
    while stack:
        row, depth = stack.pop()
        if row["span_id"] in seen:
            continue  # a cycle or a repeated span id: show each span once
        seen.add(row["span_id"])
        out.append(_span(row, depth))
        stack.extend((child, depth + 1) for child in reversed(children.get(row["span_id"], [])))
    for row in rows:  # spans only reachable through a cycle
        if row["span_id"] not in seen:
            seen.add(row["span_id"])
            out.append(_span(row, 0))
    return out


def _span(row: dict[str, Any], depth: int) -> Span:
    events = [SpanEvent(timestamp=format_ns(t), timestamp_ns=t, name=n, attributes=a)
              for t, n, a in zip(row.get("ev_t", []), row.get("ev_n", []), row.get("ev_a", []))]
    links = [SpanLink(trace_id=t, span_id=sp, trace_state=st, attributes=a)
             for t, sp, st, a in zip(row.get("ln_t", []), row.get("ln_s", []), row.get("ln_st", []),
                                     row.get("ln_a", []))]
    return Span(trace_id=row["trace_id"], span_id=row["span_id"], parent_span_id=row["parent"], name=row["name"],
                kind=row["kind"], service=row["service"], start=format_ns(row["t"]), start_ns=row["t"],
                duration_ms=row["d"] / 1e6, status_code=row["status"], status_message=row["status_message"],
                depth=depth, attributes=row["attrs"], resource_attributes=row["res"], scope_name=row["scope"],
                scope_version=row["scope_version"], events=events, links=links)


# -- RED ------------------------------------------------------------------------------------------------


def histogram_quantile(q: float, bounds: list[float], counts: list[float]) -> float | None:
    """Prometheus' histogram_quantile over one histogram: linear interpolation inside the bucket that holds
    the rank; the lowest bucket starts at 0 (or its bound when negative); the +Inf bucket answers the
    highest finite bound. None without observations."""
    total = sum(counts)
    if total <= 0 or not bounds:
        return None
    if q <= 0:
        return min(0.0, bounds[0])
    rank = min(q, 1.0) * total
    cumulative = 0.0
    for i, count in enumerate(counts):
        if cumulative + count >= rank and count > 0:
            if i >= len(bounds):
                return bounds[-1]
            upper = bounds[i]
            lower = bounds[i - 1] if i > 0 else min(0.0, upper)
            return lower + (upper - lower) * (rank - cumulative) / count
        cumulative += count
    return bounds[-1]


def services(ctx: Context, rng: Range, kinds: list[str]) -> list[ServiceRed]:
    db = f"`{ctx.reader.database}`"
    wanted = [SPAN_KINDS[k] for k in kinds]
    params: dict[str, Any] = {"start": rng.start_ns, "end": rng.end_ns, "kinds": wanted, "calls": CALLS_METRIC,
                              "duration": DURATION_METRIC}
    time_cond = ("TimeUnix >= fromUnixTimestamp64Nano({start:Int64}) AND "
                 "TimeUnix <= fromUnixTimestamp64Nano({end:Int64})")
    kind_cond = "Attributes['span.kind'] IN {kinds:Array(String)}" if wanted else "1"
    calls = ctx.reader.select(
        f"SELECT ServiceName, sumIf(Value, {kind_cond}) AS calls, "
        f"sumIf(Value, {kind_cond} AND Attributes['status.code'] = 'STATUS_CODE_ERROR') AS errors "
        f"FROM {db}.otel_metrics_sum WHERE MetricName = {{calls:String}} AND {time_cond} "
        f"GROUP BY ServiceName ORDER BY ServiceName", params).rows
    latency = ctx.reader.select(
        f"SELECT ServiceName, ExplicitBounds, sumForEach(BucketCounts) AS counts FROM {db}.otel_metrics_histogram "
        f"WHERE MetricName = {{duration:String}} AND {time_cond} AND {kind_cond} "
        f"GROUP BY ServiceName, ExplicitBounds", params).rows
    histograms: dict[str, tuple[list[float], list[float]]] = {}
    for service, bounds, counts in latency:
        if len(counts) != len(bounds) + 1:
            continue
        best = histograms.get(service)
        if best is None or sum(counts) > sum(best[1]):
            histograms[service] = (list(bounds), [float(c) for c in counts])
    seconds = max(rng.seconds, 1e-9)
    out = []
    for service, total, errors in calls:
        bounds, counts = histograms.get(service, ([], []))
        out.append(ServiceRed(service=service, calls=int(total), errors=int(errors),
                              error_rate=(errors / total) if total else 0.0, rate_per_s=total / seconds,
                              p50_ms=histogram_quantile(0.5, bounds, counts),
                              p95_ms=histogram_quantile(0.95, bounds, counts),
                              p99_ms=histogram_quantile(0.99, bounds, counts)))
    return out


def dependencies(ctx: Context, source: Source, rng: Range) -> list[DependencyEdge]:
    """Caller -> callee edges: a span whose parent span belongs to another service is one call, weighted by
    the span's sample weight (the tail sampler keeps 1 in N of some traces: each kept span stands for N)."""
    s = source.spec
    where = source.time_filter(START, END)
    sql = (f"SELECT p.service AS caller, c.service AS callee, toUInt64(round(sum(c.w))) AS calls, "
           f"toUInt64(round(sumIf(c.w, c.error))) AS errors, "
           f"quantiles(0.5, 0.95, 0.99)(c.duration) AS q "
           f"FROM (SELECT {s.trace_id} AS tid, {s.span_id} AS sid, toString({s.service}) AS service "
           f"FROM {source.table} WHERE {where}) AS p "
           f"INNER JOIN (SELECT {s.trace_id} AS tid, {s.parent_span_id} AS pid, toString({s.service}) AS service, "
           f"toFloat64({s.duration_ns}) AS duration, {_is_error(s.status_code)} AS error, "
           f"toFloat64({s.sample_weight}) AS w "
           f"FROM {source.table} WHERE {where} AND {s.parent_span_id} != '') AS c "
           f"ON p.tid = c.tid AND p.sid = c.pid WHERE p.service != c.service "
           f"GROUP BY caller, callee ORDER BY calls DESC")
    rows = ctx.reader.select(sql, {"start": rng.start_ns, "end": rng.end_ns}).rows
    return [DependencyEdge(caller=caller, callee=callee, calls=calls, errors=errors, p50_ms=q[0] / 1e6,
                           p95_ms=q[1] / 1e6, p99_ms=q[2] / 1e6) for caller, callee, calls, errors, q in rows]
