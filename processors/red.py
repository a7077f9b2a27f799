"""RED metrics over spans (the connector between traces and metrics): calls and a duration histogram.

Every span counts, before sampling, once per series: ServiceName, span name, span kind and status code,
plus the configured extra dimensions. The output follows the Collector's spanmetrics connector (metric
names, attribute keys and values, millisecond buckets) as rows of otel_metrics_sum and
otel_metrics_histogram, with delta temporality.

One span batch (one OTLP request) yields one delta point per series: the point covers exactly the spans of
that request, so re-processing the request after a restart reproduces the same rows, which the sink then
drops as copies (docs/exactly-once.md). The cost is one row per series per request instead of one per
series per flush interval; queries sum the points either way.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from typing import Any

from processors.metrics import COLUMNS, HISTOGRAM, SUM
from processors.values import datetime64

CALLS = "traces.span.metrics.calls"
DURATION = "traces.span.metrics.duration"
DEFAULT_BUCKETS_MS = (2.0, 4.0, 6.0, 8.0, 10.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1000.0, 1400.0, 2000.0, 5000.0,
                      10000.0, 15000.0)
DELTA = 1  # AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
SCOPE_NAME = "maple.red"
# The connector's attribute values use the protobuf enum names.
KIND_NAMES = {"Unspecified": "SPAN_KIND_UNSPECIFIED", "Internal": "SPAN_KIND_INTERNAL", "Server": "SPAN_KIND_SERVER",
              "Client": "SPAN_KIND_CLIENT", "Producer": "SPAN_KIND_PRODUCER", "Consumer": "SPAN_KIND_CONSUMER"}
STATUS_NAMES = {"Unset": "STATUS_CODE_UNSET", "Ok": "STATUS_CODE_OK", "Error": "STATUS_CODE_ERROR"}


@dataclass(frozen=True)
class Dimension:
    """An extra series dimension: a span attribute (else resource attribute), with an optional default."""

    name: str
    default: str | None = None

    @classmethod
    def parse(cls, text: str) -> Dimension:
        """`key` or `key=default`."""
        name, sep, default = text.partition("=")
        if not name.strip():
            raise ValueError(f"RED dimension {text!r} has no attribute name")
        return cls(name.strip(), default if sep else None)


@dataclass(frozen=True)
class RedOptions:
    dimensions: tuple[Dimension, ...] = ()
    buckets_ms: tuple[float, ...] = DEFAULT_BUCKETS_MS


class _Series:
    __slots__ = ("calls", "counts", "high_ms", "low_ms", "start_ns", "total_ms")

    def __init__(self, buckets: int) -> None:
        self.calls = 0
        self.counts = [0] * (buckets + 1)
        self.total_ms = 0.0
        self.low_ms = float("inf")
        self.high_ms = float("-inf")
        self.start_ns: int | None = None


def to_tables(spans: dict[str, list[Any]], received_ns: int, options: RedOptions = RedOptions()
              ) -> dict[str, dict[str, list[Any]]]:
    """Delta points for the spans in `spans` (otel_traces columns plus StartNs): {table: columns}."""
    services, names, kinds, statuses = spans["ServiceName"], spans["SpanName"], spans["SpanKind"], spans["StatusCode"]
    durations, starts = spans["Duration"], spans["StartNs"]
    dimensions = options.dimensions
    span_attrs, resource_attrs = spans["SpanAttributes"], spans["ResourceAttributes"]
    bounds = options.buckets_ms
    series: dict[tuple, _Series] = {}
    for i in range(len(services)):
        if dimensions:
            extra: tuple = tuple(_dimension_value(d, span_attrs[i], resource_attrs[i]) for d in dimensions)
            key: tuple = (services[i], names[i], kinds[i], statuses[i], extra)
        else:
            key = (services[i], names[i], kinds[i], statuses[i], ())
        entry = series.get(key)
        if entry is None:
            entry = series[key] = _Series(len(bounds))
        ms = durations[i] / 1e6
        entry.calls += 1
        entry.counts[bisect_left(bounds, ms)] += 1  # a value equal to a bound falls in that bound's bucket
        entry.total_ms += ms
        if ms < entry.low_ms:
            entry.low_ms = ms
        if ms > entry.high_ms:
            entry.high_ms = ms
        start = starts[i]
        if entry.start_ns is None or start < entry.start_ns:
            entry.start_ns = start
    if not series:
        return {}
    sums: dict[str, list[Any]] = {name: [] for name in COLUMNS[SUM]}
    histograms: dict[str, list[Any]] = {name: [] for name in COLUMNS[HISTOGRAM]}
    now = datetime64(received_ns)
    for (service, name, kind, status, extra), entry in series.items():
        attrs = {"service.name": service, "span.name": name, "span.kind": KIND_NAMES.get(kind, kind),
                 "status.code": STATUS_NAMES.get(status, status)}
        for dimension, value in zip(dimensions, extra):
            if value is not None:
                attrs[dimension.name] = value
        start = datetime64(min(entry.start_ns or received_ns, received_ns))
        common: tuple[Any, ...] = ({"service.name": service}, "", SCOPE_NAME, "", {}, 0, "", service)
        _common_row(sums, common, CALLS, "", "", attrs, start, now)
        sums["Value"].append(float(entry.calls))
        sums["AggregationTemporality"].append(DELTA)
        sums["IsMonotonic"].append(True)
        _common_row(histograms, common, DURATION, "", "ms", attrs, start, now)
        histograms["Count"].append(entry.calls)
        histograms["Sum"].append(entry.total_ms)
        histograms["BucketCounts"].append(entry.counts)
        histograms["ExplicitBounds"].append(list(bounds))
        histograms["Min"].append(entry.low_ms)
        histograms["Max"].append(entry.high_ms)
        histograms["AggregationTemporality"].append(DELTA)
    return {SUM: sums, HISTOGRAM: histograms}


def _dimension_value(dimension: Dimension, span: dict[str, str], resource: dict[str, str]) -> str | None:
    value = span.get(dimension.name)
    if value is None:
        value = resource.get(dimension.name)
    return value if value is not None else dimension.default


def _common_row(cols: dict[str, list[Any]], common: tuple, metric: str, description: str, unit: str,
                attrs: dict[str, str], start: str, time: str) -> None:
    resource, resource_url, scope_name, scope_version, scope_attrs, dropped, scope_url, service = common
    for name, value in (("ResourceAttributes", resource), ("ResourceSchemaUrl", resource_url),
                        ("ScopeName", scope_name), ("ScopeVersion", scope_version), ("ScopeAttributes", scope_attrs),
                        ("ScopeDroppedAttrCount", dropped), ("ScopeSchemaUrl", scope_url), ("ServiceName", service),
                        ("MetricName", metric), ("MetricDescription", description), ("MetricUnit", unit),
                        ("Attributes", attrs), ("StartTimeUnix", start), ("TimeUnix", time), ("Flags", 0)):
        cols[name].append(value)
    for name in ("Exemplars.FilteredAttributes", "Exemplars.TimeUnix", "Exemplars.Value", "Exemplars.SpanId",
                 "Exemplars.TraceId"):
        cols[name].append([])
