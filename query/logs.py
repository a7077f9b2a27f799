"""Log queries: search (newest first, windowed, cursor-paged), histograms, top values, the fields catalog
and the live tail's polls. Each builds SQL from the source's expressions and binds every request value.

Why windows: the logs table is ordered by service and time, so "the newest N rows matching a term over a
day" cannot read in time order; reading the whole day to keep 100 rows is what makes searches slow. A
search therefore asks the newest 5 minutes first; a frequent term fills the page there. If that window
had matches but not enough, the next window is sized from their rate (at least x4); if it had none, the
matches are sparse and the rest of the range is one query in which the token index skips the granules
without the term.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from query import cursor as cursors
from query.context import Context
from query.errors import ApiError, bad_request
from query.models import FieldInfo, HistogramBucket, LogRecord, TopValue
from query.search.compiler import Compiled, compile_query
from query.search.fields import Kind, UnknownField
from query.sources import Source
from query.timerange import NS, Range, format_ns

FIRST_WINDOW_S = 5 * 60
WINDOW_GROWTH = 4
TOP_GROUPS = 10
MAX_BUCKETS = 1000
NICE_INTERVALS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
                    7 * 86400)
START, END = "fromUnixTimestamp64Nano({start:Int64})", "fromUnixTimestamp64Nano({end:Int64})"


@dataclass
class Filter:
    """A WHERE clause over a source (without the time range) and its bound parameters."""

    sql: str
    params: dict[str, Any] = field(default_factory=dict)


def build_filter(ctx: Context, source: Source, q: str, services: list[str], severities: list[str]) -> Filter:
    spec = source.spec
    compiled: Compiled = compile_query(q, ctx.sources.resolver(source))
    parts = [compiled.sql] if compiled.sql != "1" else []
    params = dict(compiled.params)
    if services:
        parts.append(f"{spec.service} IN {{services:Array(String)}}")
        params["services"] = services
    if severities:
        parts.append(f"lower({spec.severity_text}) IN {{severities:Array(String)}}")
        params["severities"] = [s.lower() for s in severities]
    return Filter(" AND ".join(parts) if parts else "1", params)


def _columns(source: Source) -> str:
    s = source.spec
    return (f"toUnixTimestamp64Nano(toDateTime64({s.timestamp}, 9)) AS t, toString({s.service}) AS service, "
            f"toString({s.severity_text}) AS severity_text, toInt32({s.severity_number}) AS severity_number, "
            f"toString({s.body}) AS body, toString({s.trace_id}) AS trace_id, toString({s.span_id}) AS span_id, "
            f"CAST({s.attributes}, 'Map(String, String)') AS attributes, "
            f"CAST({s.resource_attributes}, 'Map(String, String)') AS resource_attributes, "
            f"toString({s.scope_name}) AS scope_name, {_tiebreak(source)} AS h")


def _tiebreak(source: Source) -> str:
    """Orders rows of the same nanosecond, so that a cursor between them is exact."""
    s = source.spec
    return f"cityHash64({s.body}, {s.span_id}, {s.service})"


def _record(row: dict[str, Any]) -> LogRecord:
    return LogRecord(timestamp=format_ns(row["t"]), timestamp_ns=row["t"], service=row["service"],
                     severity_text=row["severity_text"], severity_number=row["severity_number"], body=row["body"],
                     trace_id=row["trace_id"], span_id=row["span_id"], attributes=row["attributes"],
                     resource_attributes=row["resource_attributes"], scope_name=row["scope_name"])


def search(ctx: Context, source: Source, rng: Range, where: Filter, limit: int,
           cursor: str | None) -> tuple[list[LogRecord], str | None]:
    """A page of rows, newest first, older than `cursor`; the cursor of the next page (None at the end)."""
    end_ns, before = rng.end_ns, None
    if cursor:
        position = cursors.decode(cursor, "logs", {"t": int, "h": int}, {"t": cursors.INT64_END})
        before = (position["t"], position["h"])
        end_ns = min(end_ns, position["t"])
    s = source.spec
    rows: list[dict[str, Any]] = []
    window = FIRST_WINDOW_S * NS
    window_end = end_ns
    while len(rows) < limit and window_end >= rng.start_ns:
        window_start = max(rng.start_ns, window_end - window + 1)
        params = {**where.params, "start": window_start, "end": window_end}
        condition = where.sql
        if before is not None:
            condition += (f" AND (toUnixTimestamp64Nano(toDateTime64({s.timestamp}, 9)) < {{ct:Int64}} OR "
                          f"(toUnixTimestamp64Nano(toDateTime64({s.timestamp}, 9)) = {{ct:Int64}} AND "
                          f"{_tiebreak(source)} < {{ch:UInt64}}))")
            params.update(ct=before[0], ch=before[1])
        sql = (f"SELECT {_columns(source)} FROM {source.table} WHERE {source.time_filter(START, END)} "
               f"AND ({condition}) ORDER BY t DESC, h DESC LIMIT {limit - len(rows)}")
        found = ctx.reader.select(sql, params).dicts()
        rows.extend(found)
        window = _next_window(window, window_end - window_start + 1, len(found), limit - len(rows),
                              window_start - rng.start_ns)
        window_end = window_start - 1
    next_cursor = None
    if len(rows) == limit and rows:
        last = rows[-1]
        next_cursor = cursors.encode("logs", t=last["t"], h=last["h"])
    return [_record(r) for r in rows], next_cursor


def _next_window(window: int, searched: int, found: int, needed: int, remaining: int) -> int:
    """The next (older) window: nothing found means the matches are sparse, so the token index can skip
    most of the rest and one query takes it all; otherwise a window sized from the rate seen to fill the
    page (at least four times the last), so a frequent term never reads more than it needs."""
    if found == 0:
        return max(remaining, window)
    expected = int(needed * searched / found * 1.5)
    return max(window * WINDOW_GROWTH, expected)


def field_expression(ctx: Context, source: Source, name: str, params: dict[str, Any]) -> str:
    """A string expression for `name` (group-by and top values), its key bound into `params`."""
    try:
        ref = ctx.sources.resolver(source).resolve(name)
    except UnknownField as exc:
        raise ApiError(400, "unknown_field", exc.reason, field="field") from None
    if ref.kind is Kind.ATTRIBUTE:
        params["fkey"] = ref.key
        if len(ref.maps) == 1:
            return f"{ref.maps[0]}[{{fkey:String}}]"
        first, second = ref.maps
        return f"if(mapContains({first}, {{fkey:String}}), {first}[{{fkey:String}}], {second}[{{fkey:String}}])"
    return f"toString({ref.expr})"


def interval_for(rng: Range, requested_s: int | None) -> int:
    """The bucket width: as requested (at most MAX_BUCKETS buckets), else a round width giving ~60 buckets."""
    span = max(rng.seconds, 1.0)
    if requested_s is not None:
        if requested_s < 1:
            raise bad_request("interval: must be at least 1 second", "interval")
        if span / requested_s > MAX_BUCKETS:
            raise bad_request(f"interval: {requested_s} s gives more than {MAX_BUCKETS} buckets over the range; "
                              f"use at least {int(span // MAX_BUCKETS) + 1} s", "interval")
        return requested_s
    for width in NICE_INTERVALS_S:
        if span / width <= 60:
            return width
    return NICE_INTERVALS_S[-1]


def histogram(ctx: Context, source: Source, rng: Range, where: Filter, interval_s: int,
              group_by: str | None) -> tuple[list[HistogramBucket], int]:
    s = source.spec
    params: dict[str, Any] = {**where.params, "start": rng.start_ns, "end": rng.end_ns, "interval": interval_s}
    base = f"FROM {source.table} WHERE {source.time_filter(START, END)} AND ({where.sql})"
    bucket = f"toUnixTimestamp(toStartOfInterval({s.timestamp}, toIntervalSecond({{interval:UInt32}})))"
    if group_by:
        group = field_expression(ctx, source, group_by, params)
        sql = (f"SELECT {bucket} AS b, {group} AS g, count() AS c {base} AND {group} IN "
               f"(SELECT {group} {base} GROUP BY {group} ORDER BY count() DESC LIMIT {TOP_GROUPS}) "
               f"GROUP BY b, g ORDER BY b, c DESC")
    else:
        sql = f"SELECT {bucket} AS b, NULL AS g, count() AS c {base} GROUP BY b ORDER BY b"
    rows = ctx.reader.select(sql, params).rows
    buckets = [HistogramBucket(time=format_ns(b * NS), time_ns=b * NS, group=g, count=c) for b, g, c in rows]
    return buckets, sum(b.count for b in buckets)


def top_values(ctx: Context, source: Source, rng: Range, where: Filter, name: str,
               limit: int) -> tuple[list[TopValue], int]:
    params: dict[str, Any] = {**where.params, "start": rng.start_ns, "end": rng.end_ns}
    value = field_expression(ctx, source, name, params)
    base = f"FROM {source.table} WHERE {source.time_filter(START, END)} AND ({where.sql})"
    sql = (f"SELECT v, c, (SELECT count() {base}) AS t FROM (SELECT {value} AS v, count() AS c {base} GROUP BY v) "
           f"WHERE v != '' ORDER BY c DESC, v LIMIT {limit}")
    rows = ctx.reader.select(sql, params).rows
    total = rows[0][2] if rows else int(ctx.reader.select(f"SELECT count() {base}", params).scalar() or 0)
    return [TopValue(value=v, count=c) for v, c, _ in rows], total


def fields(ctx: Context, source: Source) -> list[FieldInfo]:
    """What a search can name on this source: aliases, columns, materialized keys and attribute keys."""
    resolver = ctx.sources.resolver(source, check_keys=False)
    out: list[FieldInfo] = []
    for alias, ref in sorted(resolver.aliases.items()):
        out.append(FieldInfo(name=alias, kind="alias", type="String" if ref.kind is not Kind.NUMBER else "Number",
                             expression=ref.expr))
    for column, type_name in source.columns.items():
        out.append(FieldInfo(name=column, kind="column", type=type_name, expression=column))
    for key, column in sorted(source.spec.materialized.items()):
        out.append(FieldInfo(name=key, kind="materialized", expression=column))
    keys = ctx.sources.attribute_keys(source)
    for key in sorted(keys - set(source.spec.materialized)):
        out.append(FieldInfo(name=key, kind="attribute", expression=f"{source.spec.attributes}['{key}'] or "
                                                                     f"{source.spec.resource_attributes}['{key}']"))
    return out


def tail_poll(ctx: Context, source: Source, where: Filter, since_ns: int, until_ns: int,
              limit: int) -> list[LogRecord]:
    """Rows with since < timestamp <= until, oldest first (at most `limit`, the newest of them)."""
    params = {**where.params, "start": since_ns + 1, "end": until_ns}
    sql = (f"SELECT * FROM (SELECT {_columns(source)} FROM {source.table} WHERE {source.time_filter(START, END)} "
           f"AND ({where.sql}) ORDER BY t DESC, h DESC LIMIT {limit}) ORDER BY t, h")
    return [_record(r) for r in ctx.reader.select(sql, params).dicts()]
