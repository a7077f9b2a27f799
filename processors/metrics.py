"""Metrics: one OTLP export request in, one row per data point out, in its type's table.

Tables and columns follow the Collector's ClickHouse exporter: otel_metrics_gauge, _sum, _histogram,
_exponential_histogram and _summary. Exemplars go to the Exemplars.* nested columns.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from processors.values import SPAN_ID_BYTES, TRACE_ID_BYTES, attributes, datetime64, hex_id

GAUGE, SUM, HISTOGRAM, EXP_HISTOGRAM, SUMMARY = ("otel_metrics_gauge", "otel_metrics_sum", "otel_metrics_histogram",
                                                 "otel_metrics_exponential_histogram", "otel_metrics_summary")
TABLE_BY_KIND = {"gauge": GAUGE, "sum": SUM, "histogram": HISTOGRAM, "exponential_histogram": EXP_HISTOGRAM,
                 "summary": SUMMARY}
COMMON = ("ResourceAttributes", "ResourceSchemaUrl", "ScopeName", "ScopeVersion", "ScopeAttributes",
          "ScopeDroppedAttrCount", "ScopeSchemaUrl", "ServiceName", "MetricName", "MetricDescription", "MetricUnit",
          "Attributes", "StartTimeUnix", "TimeUnix", "Flags")
EXEMPLARS = ("Exemplars.FilteredAttributes", "Exemplars.TimeUnix", "Exemplars.Value", "Exemplars.SpanId",
             "Exemplars.TraceId")
COLUMNS: dict[str, tuple[str, ...]] = {
    GAUGE: COMMON + ("Value",) + EXEMPLARS,
    SUM: COMMON + ("Value", "AggregationTemporality", "IsMonotonic") + EXEMPLARS,
    HISTOGRAM: COMMON + ("Count", "Sum", "BucketCounts", "ExplicitBounds", "Min", "Max",
                         "AggregationTemporality") + EXEMPLARS,
    EXP_HISTOGRAM: COMMON + ("Count", "Sum", "Scale", "ZeroCount", "PositiveOffset", "PositiveBucketCounts",
                             "NegativeOffset", "NegativeBucketCounts", "Min", "Max",
                             "AggregationTemporality") + EXEMPLARS,
    SUMMARY: COMMON + ("Count", "Sum", "ValueAtQuantiles.Quantile", "ValueAtQuantiles.Value"),
}


def _number(point: Any) -> float:
    return float(point.as_int) if point.WhichOneof("value") == "as_int" else point.as_double


def _exemplars(cols: dict[str, list[Any]], point: Any) -> None:
    exemplars = point.exemplars
    cols["Exemplars.FilteredAttributes"].append([attributes(e.filtered_attributes) for e in exemplars])
    cols["Exemplars.TimeUnix"].append([datetime64(e.time_unix_nano, "exemplars.time_unix_nano") for e in exemplars])
    cols["Exemplars.Value"].append([_number(e) for e in exemplars])
    cols["Exemplars.SpanId"].append([hex_id(e.span_id, SPAN_ID_BYTES, "exemplars.span_id") for e in exemplars])
    cols["Exemplars.TraceId"].append([hex_id(e.trace_id, TRACE_ID_BYTES, "exemplars.trace_id") for e in exemplars])


def to_tables(request: ExportMetricsServiceRequest) -> dict[str, dict[str, list[Any]]]:
    """Columns per table, for the tables this request has data points for."""
    tables: dict[str, dict[str, list[Any]]] = {}
    for resource_metrics in request.resource_metrics:
        resource = attributes(resource_metrics.resource.attributes)
        service_name = resource.get("service.name", "")
        for scope_metrics in resource_metrics.scope_metrics:
            scope = scope_metrics.scope
            scope_attributes = attributes(scope.attributes)
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                if kind is None:
                    continue
                data = getattr(metric, kind)
                if not data.data_points:
                    continue
                table = TABLE_BY_KIND[kind]
                cols = tables.get(table)
                if cols is None:
                    cols = tables[table] = {name: [] for name in COLUMNS[table]}
                common = (resource, resource_metrics.schema_url, scope.name, scope.version, scope_attributes,
                          scope.dropped_attributes_count, scope_metrics.schema_url, service_name, metric.name,
                          metric.description, metric.unit)
                for point in data.data_points:
                    for name, value in zip(COMMON, common):
                        cols[name].append(value)
                    cols["Attributes"].append(attributes(point.attributes))
                    cols["StartTimeUnix"].append(datetime64(point.start_time_unix_nano, "start_time_unix_nano"))
                    cols["TimeUnix"].append(datetime64(point.time_unix_nano, "time_unix_nano"))
                    cols["Flags"].append(point.flags)
                    if kind == "gauge":
                        cols["Value"].append(_number(point))
                    elif kind == "sum":
                        cols["Value"].append(_number(point))
                        cols["AggregationTemporality"].append(data.aggregation_temporality)
                        cols["IsMonotonic"].append(data.is_monotonic)
                    elif kind == "histogram":
                        cols["Count"].append(point.count)
                        cols["Sum"].append(point.sum)
                        cols["BucketCounts"].append(list(point.bucket_counts))
                        cols["ExplicitBounds"].append(list(point.explicit_bounds))
                        cols["Min"].append(point.min)
                        cols["Max"].append(point.max)
                        cols["AggregationTemporality"].append(data.aggregation_temporality)
                    elif kind == "exponential_histogram":
                        cols["Count"].append(point.count)
                        cols["Sum"].append(point.sum)
                        cols["Scale"].append(point.scale)
                        cols["ZeroCount"].append(point.zero_count)
                        cols["PositiveOffset"].append(point.positive.offset)
                        cols["PositiveBucketCounts"].append(list(point.positive.bucket_counts))
                        cols["NegativeOffset"].append(point.negative.offset)
                        cols["NegativeBucketCounts"].append(list(point.negative.bucket_counts))
                        cols["Min"].append(point.min)
                        cols["Max"].append(point.max)
                        cols["AggregationTemporality"].append(data.aggregation_temporality)
                    else:  # summary
                        cols["Count"].append(point.count)
                        cols["Sum"].append(point.sum)
                        cols["ValueAtQuantiles.Quantile"].append([q.quantile for q in point.quantile_values])
                        cols["ValueAtQuantiles.Value"].append([q.value for q in point.quantile_values])
                    if kind != "summary":
                        _exemplars(cols, point)
    return tables
