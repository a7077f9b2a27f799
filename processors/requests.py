"""One OTLP export request as single-item requests: how a worker isolates the one bad item of a request.

An item is what becomes one row: a log record, a span, a data point. Each single-item request carries
copies of the item's resource and scope (and, for a data point, of its metric without the other points),
so it converts to exactly the row the item has in the whole request, and it is itself a valid request of
the same kind: a dead letter a person can read with `maple dlq show` and a redrive can send back.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

# request type -> (resource field, scope field, item field)
_FIELDS: dict[type, tuple[str, str, str]] = {
    ExportLogsServiceRequest: ("resource_logs", "scope_logs", "log_records"),
    ExportTraceServiceRequest: ("resource_spans", "scope_spans", "spans"),
    ExportMetricsServiceRequest: ("resource_metrics", "scope_metrics", "metrics"),
}


def _shell(message: Any, cleared: str) -> Any:
    """A copy of `message` without its repeated field `cleared` (copied once, then cleared)."""
    shell = type(message)()
    shell.CopyFrom(message)
    shell.ClearField(cleared)
    return shell


def single_items(request: Message) -> Iterator[Message]:
    """Every item of `request` as a request of its own, in the order the processors make rows."""
    resource_field, scope_field, item_field = _FIELDS[type(request)]
    for resource in getattr(request, resource_field):
        resource_shell = _shell(resource, scope_field)
        for scope in getattr(resource, scope_field):
            scope_shell = _shell(scope, item_field)
            for item in getattr(scope, item_field):
                if item_field != "metrics":
                    yield _one(request, resource_field, resource_shell, scope_field, scope_shell, item_field, item)
                    continue
                kind = item.WhichOneof("data")
                if kind is None:
                    continue  # a metric without data makes no rows
                metric_shell = type(item)()
                metric_shell.CopyFrom(item)
                getattr(metric_shell, kind).ClearField("data_points")
                for point in getattr(item, kind).data_points:
                    metric = type(item)()
                    metric.CopyFrom(metric_shell)
                    getattr(metric, kind).data_points.add().CopyFrom(point)
                    yield _one(request, resource_field, resource_shell, scope_field, scope_shell, item_field, metric)


def _one(request: Message, resource_field: str, resource_shell: Any, scope_field: str, scope_shell: Any,
         item_field: str, item: Any) -> Message:
    single = type(request)()
    resource = getattr(single, resource_field).add()
    resource.CopyFrom(resource_shell)
    scope = getattr(resource, scope_field).add()
    scope.CopyFrom(scope_shell)
    getattr(scope, item_field).add().CopyFrom(item)
    return single
