"""Metric queries: names, labels and series of the otel_metrics_* tables, and the PromQL subset's plans
evaluated in ClickHouse over a step grid.

Semantics (docs/query.md says the same):

* labels of a series: its ``Attributes`` plus ``service.name`` (the ServiceName column); a label name in a
  query matches a key as written or with dots and other characters replaced by ``_``;
* an instant selector at step t takes each series' newest sample in (t - 5m, t];
* ``increase(m[r])`` at t sums the increases of the samples in (t - r, t]: a delta point's value, or for
  cumulative series the difference to the previous sample (a drop is a counter reset: the new value);
  ``rate`` divides that by r; ``irate`` is the last sample's increase divided by its interval. No
  extrapolation to the window's edges (Prometheus extrapolates), so a rate is exact for the samples seen;
* ``histogram_quantile`` interpolates linearly inside the bucket holding the rank, as Prometheus does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from query.context import Context
from query.errors import ApiError
from query.models import MetricInfo, MetricSeries
from query.promql import Plan
from query.timerange import NS, Range
from query.traces import histogram_quantile

TABLES = {"gauge": "otel_metrics_gauge", "sum": "otel_metrics_sum", "histogram": "otel_metrics_histogram",
          "exponential_histogram": "otel_metrics_exponential_histogram", "summary": "otel_metrics_summary"}
SUFFIXES = ("_bucket", "_count", "_sum")
LOOKBACK_S = 300
MAX_POINTS = 11_000
MAX_SERIES_LIST = 1000
NORMALIZE = "replaceRegexpAll({x}, '[^a-zA-Z0-9_:]', '_')"
DELTA = 1


def _db(ctx: Context) -> str:
    return f"`{ctx.reader.database}`"


def _time(start: str = "start", end: str = "end") -> str:
    return (f"TimeUnix >= fromUnixTimestamp64Nano({{{start}:Int64}}) AND "
            f"TimeUnix <= fromUnixTimestamp64Nano({{{end}:Int64}})")


def names(ctx: Context, rng: Range, prefix: str | None) -> list[MetricInfo]:
    params: dict[str, Any] = {"start": rng.start_ns, "end": rng.end_ns}
    match = ""
    if prefix:
        params["prefix"] = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        match = " AND MetricName ILIKE {prefix:String}"
    parts = [f"SELECT '{kind}' AS type, MetricName AS name, any(MetricUnit) AS unit, any(MetricDescription) AS descr, "
             f"uniq(ServiceName, Attributes) AS series FROM {_db(ctx)}.{table} WHERE {_time()}{match} "
             f"GROUP BY MetricName" for kind, table in TABLES.items()]
    rows = ctx.reader.select(" UNION ALL ".join(parts) + " ORDER BY name, type", params).rows
    return [MetricInfo(name=n, type=t, unit=u, description=d, series=s) for t, n, u, d, s in rows]


@dataclass(frozen=True)
class Metric:
    kind: str      # a key of TABLES
    name: str      # MetricName as stored
    part: str      # value | bucket | count | sum

    @property
    def table(self) -> str:
        return TABLES[self.kind]


def resolve(ctx: Context, name: str, rng: Range, field: str = "query") -> Metric:
    """The stored metric a query name means: exact, or with dots written as underscores; name_bucket,
    name_count and name_sum of histograms and summaries. 404 naming it when there is none in the range."""
    candidates = [(name, "value")] + [(name[: -len(s)], s[1:]) for s in SUFFIXES if name.endswith(s) and
                                      len(name) > len(s)]
    params: dict[str, Any] = {"start": rng.start_ns - LOOKBACK_S * NS, "end": rng.end_ns,
                              "names": sorted({c for c, _ in candidates})}
    parts = [f"SELECT '{kind}' AS kind, MetricName AS name FROM {_db(ctx)}.{table} WHERE {_time()} AND "
             f"(MetricName IN {{names:Array(String)}} OR "
             f"{NORMALIZE.format(x='MetricName')} IN {{names:Array(String)}}) "
             f"GROUP BY MetricName" for kind, table in TABLES.items()]
    found = ctx.reader.select(" UNION ALL ".join(parts), params).rows
    normalized = {n: n.translate({ord(c): "_" for c in ".-/ "}) for _, n in found}
    for candidate, part in candidates:
        for kind, stored in found:
            if candidate not in (stored, normalized[stored]):
                continue
            if kind in ("gauge", "sum") and part == "value":
                return Metric(kind, stored, part)
            if kind == "histogram" and part in ("bucket", "count", "sum"):
                return Metric(kind, stored, part)
            if kind == "summary" and part in ("count", "sum"):
                return Metric(kind, stored, part)
            if kind in ("histogram", "summary") and part == "value":
                raise ApiError(400, "invalid_query", f"{name} is a {kind}: query {name}_count or {name}_sum"
                               + (f", or {name}_bucket with histogram_quantile" if kind == "histogram" else ""),
                               field=field)
            if kind == "exponential_histogram":
                raise ApiError(400, "not_supported", f"{name} is an exponential histogram, which the PromQL subset "
                                                     "does not read", field=field)
    raise ApiError(404, "not_found", f"no metric named {name} in the range", field=field)


def _label_expr(label: str, service: str, attrs: str, params: dict[str, Any]) -> str:
    if label in ("service.name", "service_name"):
        return service
    key = f"l{len(params)}"
    params[key] = label
    bound = f"{{{key}:String}}"
    return (f"if(mapContains({attrs}, {bound}), {attrs}[{bound}], {attrs}[arrayFirst(k -> "
            f"{NORMALIZE.format(x='k')} = {bound}, mapKeys({attrs}))])")


def _matchers(plan: Plan, params: dict[str, Any]) -> str:
    parts = []
    for matcher in plan.selector.matchers:
        expr = _label_expr(matcher.label, "ServiceName", "Attributes", params)
        key = f"m{len(params)}"
        if matcher.op in ("=", "!="):
            params[key] = matcher.value
            parts.append(f"{expr} {matcher.op} {{{key}:String}}")
        else:
            params[key] = f"^(?:{matcher.value})$"
            parts.append(f"{'NOT ' if matcher.op == '!~' else ''}match({expr}, {{{key}:String}})")
    return "".join(f" AND {p}" for p in parts)


def default_step(rng: Range) -> int:
    return max(15, math.ceil(rng.seconds / 240))


def evaluate(ctx: Context, plan: Plan, rng: Range, step_s: int) -> list[MetricSeries]:
    """The plan's series over the steps start, start+step, ... <= end (values at each step)."""
    if step_s < 1:
        raise ApiError(400, "invalid_parameter", "step: must be at least 1 second", field="step")
    steps = int((rng.end_ns - rng.start_ns) // (step_s * NS))
    if steps + 1 > MAX_POINTS:
        raise ApiError(400, "invalid_parameter", f"step: {step_s} s gives {steps + 1} points per series; at most "
                                                 f"{MAX_POINTS} (use a step of at least "
                                                 f"{math.ceil(rng.seconds / (MAX_POINTS - 1))} s)", field="step")
    metric = resolve(ctx, plan.selector.metric, rng)
    if plan.quantile is not None and metric.part != "bucket":
        raise ApiError(400, "invalid_query", "histogram_quantile() needs a histogram's _bucket series", field="query")
    if metric.part == "bucket" and plan.function is None:
        raise ApiError(400, "invalid_query", "a _bucket series needs rate() or increase()", field="query")
    if metric.part == "bucket" and plan.function == "irate":
        raise ApiError(400, "not_supported", "irate() of histogram buckets is not supported; use rate()",
                       field="query")
    if metric.part == "bucket" and plan.aggregation not in (None, "sum"):
        raise ApiError(400, "not_supported", "histogram buckets aggregate with sum only", field="query")
    window_s = plan.selector.range_s or LOOKBACK_S
    window_ns = int(window_s * NS)
    step_ns = step_s * NS
    params: dict[str, Any] = {"metric": metric.name, "start": rng.start_ns - window_ns + 1, "end": rng.end_ns,
                              "s0": rng.start_ns, "step": step_ns, "n": steps, "w": window_ns,
                              "ws": float(window_s)}
    array = metric.part == "bucket"
    value = {"value": "Value", "count": "toFloat64(Count)", "sum": "Sum", "bucket": "BucketCounts"}[metric.part]
    temporality = "AggregationTemporality" if metric.kind in ("sum", "histogram") else "2"
    bounds = ", ExplicitBounds AS bounds" if array else ""
    samples = (f"SELECT ServiceName AS svc, Attributes AS attrs, toUnixTimestamp64Nano(TimeUnix) AS ts, "
               f"toUnixTimestamp64Nano(StartTimeUnix) AS sts, {value} AS v, {temporality} AS temp{bounds} "
               f"FROM {_db(ctx)}.{metric.table} WHERE MetricName = {{metric:String}} AND {_time()}"
               f"{_matchers(plan, params)}")
    keep_bounds = ", bounds" if array else ""
    if plan.function is not None:
        zero = "CAST([], 'Array(UInt64)')" if array else "0"
        if array:
            increase = ("if(temp = 1, v, if(pts = 0 OR length(pv) != length(v), arrayMap(x -> toUInt64(0), v), "
                        "arrayMap((c, p) -> toUInt64(if(c >= p, c - p, c)), v, pv)))")
        else:
            increase = "if(temp = 1, v, if(pts = 0, 0, if(v >= pv, v - pv, v)))"
        rows = (f"SELECT svc, attrs, ts{keep_bounds}, {increase} AS dv, "
                f"if(temp = 1 AND sts > 0 AND sts < ts, ts - sts, if(pts = 0, 0, ts - pts)) AS dt FROM "
                f"(SELECT *, lagInFrame(v, 1, {zero}) OVER w AS pv, lagInFrame(ts, 1, 0) OVER w AS pts "
                f"FROM ({samples}) WINDOW w AS (PARTITION BY svc, attrs ORDER BY ts "
                f"ROWS BETWEEN 1 PRECEDING AND CURRENT ROW))")
        if plan.function == "irate":
            per_step = "argMax(if(dt > 0, dv / (dt / 1e9), nan), ts)"
        elif array:
            per_step = ("sumForEach(dv)" if plan.function == "increase"
                        else "arrayMap(x -> x / {ws:Float64}, sumForEach(dv))")
        else:
            per_step = "sum(dv)" if plan.function == "increase" else "sum(dv) / {ws:Float64}"
    else:
        rows, per_step = samples, "argMax(v, ts)"
    first_step = "if(ts <= {s0:Int64}, 0, intDiv(ts - {s0:Int64} + {step:Int64} - 1, {step:Int64}))"
    last_step = "least({n:Int64}, intDiv(ts + {w:Int64} - 1 - {s0:Int64}, {step:Int64}))"
    series = (f"SELECT svc, attrs{keep_bounds}, k, {per_step} AS val FROM (SELECT *, arrayJoin(range("
              f"toUInt64({first_step}), toUInt64(greatest(0, {last_step} + 1)))) AS k FROM ({rows})) "
              f"GROUP BY svc, attrs{keep_bounds}, k")
    if plan.aggregation is None:
        name = ", '__name__', {metric:String}" if plan.function is None else ""
        labels = f"mapUpdate(CAST(attrs, 'Map(String, String)'), map('service.name', svc{name}))"
        sql = f"SELECT k, {labels} AS labels{keep_bounds}, val FROM ({series})"
    else:
        if plan.by is None and plan.without is None:
            labels = "CAST(map(), 'Map(String, String)')"
        elif plan.by is not None:
            entries = [f"{_quote_label(label, params)}, {_label_expr(label, 'svc', 'attrs', params)}"
                       for label in plan.by if label != "le"]
            labels = f"map({', '.join(entries)})" if entries else "CAST(map(), 'Map(String, String)')"
        else:
            dropped = list(plan.without or ())
            params["dropped"] = dropped
            keep_service = not ({"service.name", "service_name"} & set(dropped))
            kept = (f"mapFilter((key, x) -> NOT has({{dropped:Array(String)}}, key) AND NOT "
                    f"has({{dropped:Array(String)}}, {NORMALIZE.format(x='key')}), CAST(attrs, 'Map(String, String)'))")
            labels = f"mapUpdate({kept}, map('service.name', svc))" if keep_service else kept
        aggregate = {"sum": "sumForEach(val)" if array else "sum(val)", "avg": "avg(val)", "min": "min(val)",
                     "max": "max(val)", "count": "toFloat64(count())"}[plan.aggregation]
        sql = (f"SELECT k, {labels} AS labels{keep_bounds}, {aggregate} AS val FROM ({series}) "
               f"GROUP BY k, labels{keep_bounds}")
    result = ctx.reader.select(sql + " ORDER BY k", params).rows
    return _series(result, rng, step_ns, plan, array)


def _quote_label(label: str, params: dict[str, Any]) -> str:
    key = f"n{len(params)}"
    params[key] = label
    return f"{{{key}:String}}"


def _number(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) or math.isinf(value) else float(value)


def _series(rows: list[tuple[Any, ...]], rng: Range, step_ns: int, plan: Plan, array: bool) -> list[MetricSeries]:
    grouped: dict[tuple[tuple[str, str], ...], list[tuple[int, float | None]]] = {}

    def add(labels: dict[str, str], k: int, value: float | None) -> None:
        key = tuple(sorted(labels.items()))
        grouped.setdefault(key, []).append(((rng.start_ns + k * step_ns) // 1_000_000, value))

    for row in rows:
        if array:
            k, labels, bounds, counts = row
            if len(counts) != len(bounds) + 1:
                continue
            if plan.quantile is not None:
                add(labels, k, _number(histogram_quantile(plan.quantile, list(bounds), [float(c) for c in counts])
                                       if sum(counts) > 0 else math.nan))
            else:
                running = 0.0
                for i, count in enumerate(counts):
                    running += float(count)
                    le = repr(float(bounds[i])) if i < len(bounds) else "+Inf"
                    add({**labels, "le": le}, k, running)
        else:
            k, labels, value = row
            add(labels, k, _number(value))
    return [MetricSeries(labels=dict(key), points=points) for key, points in sorted(grouped.items())]


def labels(ctx: Context, name: str, rng: Range) -> tuple[str, list[str]]:
    metric = resolve(ctx, name, rng, field="metric")
    params = {"metric": metric.name, "start": rng.start_ns, "end": rng.end_ns}
    keys = ctx.reader.select(f"SELECT arraySort(groupUniqArrayArray(mapKeys(Attributes))) "
                             f"FROM {_db(ctx)}.{metric.table} WHERE MetricName = {{metric:String}} AND {_time()}",
                             params).scalar() or []
    return metric.name, sorted({"service.name", *keys})


def series(ctx: Context, name: str, rng: Range, limit: int) -> tuple[str, list[dict[str, str]], bool]:
    metric = resolve(ctx, name, rng, field="metric")
    params = {"metric": metric.name, "start": rng.start_ns, "end": rng.end_ns}
    rows = ctx.reader.select(
        f"SELECT DISTINCT mapUpdate(CAST(Attributes, 'Map(String, String)'), map('service.name', ServiceName)) AS l "
        f"FROM {_db(ctx)}.{metric.table} WHERE MetricName = {{metric:String}} AND {_time()} LIMIT {limit + 1}",
        params).rows
    found = [dict(row[0]) for row in rows]
    return metric.name, sorted(found[:limit], key=lambda d: sorted(d.items())), len(found) > limit
