"""A small, known shop sent through the ingest with the OpenTelemetry SDK, for the UI tests to find again.

Each checkout is one trace of six spans over three services (nesting below), with logs written inside the
spans (so they carry the trace and span ids). Every fourth checkout fails in `payments`. The numbers the UI
must show (spans per service, errors, log counts) follow from the constants, not from reading the data back.

    frontend  GET /checkout               SERVER  (root)
    frontend    HTTP POST checkout        CLIENT
    checkout      POST /api/orders        SERVER
    checkout        SELECT orders         CLIENT
    checkout        HTTP POST payments    CLIENT
    payments          charge card         SERVER  (Error every 4th checkout, with an exception event)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

CHECKOUTS = 24
FAIL_EVERY = 4
SPAN_TREE = [  # (name, service, parent name, kind)
    ("GET /checkout", "frontend", None, "server"),
    ("HTTP POST checkout", "frontend", "GET /checkout", "client"),
    ("POST /api/orders", "checkout", "HTTP POST checkout", "server"),
    ("SELECT orders", "checkout", "POST /api/orders", "client"),
    ("HTTP POST payments", "checkout", "POST /api/orders", "client"),
    ("charge card", "payments", "HTTP POST payments", "server"),
]
SERVICES = ("frontend", "checkout", "payments")


def depth_of(name: str) -> int:
    parent = {n: p for n, _, p, _ in SPAN_TREE}[name]
    return 0 if parent is None else depth_of(parent) + 1


@dataclass
class Shop:
    """What was sent: trace ids, which failed, and the expected counts the pages must show."""

    trace_ids: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    order_ids: dict[str, str] = field(default_factory=dict)   # trace id -> order id
    bulk_logs: int = 0

    @property
    def spans_per_service(self) -> dict[str, int]:
        per_trace = {s: sum(1 for _, svc, _, _ in SPAN_TREE if svc == s) for s in SERVICES}
        return {s: n * len(self.trace_ids) for s, n in per_trace.items()}

    @property
    def requests_per_service(self) -> dict[str, int]:
        """RED calls as the services endpoint counts them by default: server (and consumer) spans."""
        per_trace = {s: sum(1 for _, svc, _, kind in SPAN_TREE if svc == s and kind == "server") for s in SERVICES}
        return {s: n * len(self.trace_ids) for s, n in per_trace.items()}

    @property
    def errors_per_service(self) -> dict[str, int]:
        """Errors among those requests: only `charge card` (a payments server span) fails."""
        return {"frontend": 0, "checkout": 0, "payments": len(self.failed)}

    @property
    def logs(self) -> int:
        # per checkout: frontend 1, checkout 2 ("order placed" + "calling payments"), payments 1
        return 4 * len(self.trace_ids) + self.bulk_logs


def send_shop(http_endpoint: str, bulk_logs: int = 0) -> Shop:
    """Send the checkouts (traces + logs) and `bulk_logs` extra INFO records from `loadgen`; flush before returning."""
    from opentelemetry import trace
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import SpanKind, Status, StatusCode, format_trace_id

    tracers, loggers = {}, {}
    providers: list[TracerProvider | LoggerProvider] = []
    for service in (*SERVICES, "loadgen"):
        resource = Resource.create({"service.name": service, "deployment.environment.name": "test",
                                    "k8s.pod.name": f"{service}-7d9f"})
        tp = TracerProvider(resource=resource)
        tp.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{http_endpoint}/v1/traces"),
                                                 max_queue_size=10_000, max_export_batch_size=512))
        lp = LoggerProvider(resource=resource)
        # The SDK drops records past max_queue_size (2048 by default); the bulk logs need more.
        lp.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{http_endpoint}/v1/logs"),
                                                            max_queue_size=max(4096, bulk_logs + 1024),
                                                            max_export_batch_size=1000))
        tracers[service] = tp.get_tracer(f"shop.{service}", "1.0.0")
        loggers[service] = lp.get_logger(f"shop.{service}", "1.0.0")
        providers += [tp, lp]

    shop = Shop(bulk_logs=bulk_logs)
    ms = 1_000_000
    base = time.time_ns() - 120_000 * ms   # two minutes ago: inside any "last N minutes" range the tests use
    for n in range(CHECKOUTS):
        t0 = base + n * 2_000 * ms
        fail = n % FAIL_EVERY == FAIL_EVERY - 1
        order = f"ord-{1000 + n}"
        fe, co, pa = tracers["frontend"], tracers["checkout"], tracers["payments"]
        root = fe.start_span("GET /checkout", kind=SpanKind.SERVER, start_time=t0,
                             attributes={"http.request.method": "GET", "http.route": "/checkout", "order.id": order})
        ctx = trace.set_span_in_context(root)
        loggers["frontend"].emit(body=f"checkout started for {order}", severity_number=SeverityNumber.INFO,
                                 severity_text="INFO", context=ctx, attributes={"order.id": order}, timestamp=t0 + ms)
        call = fe.start_span("HTTP POST checkout", kind=SpanKind.CLIENT, context=ctx, start_time=t0 + 2 * ms)
        cctx = trace.set_span_in_context(call)
        orders = co.start_span("POST /api/orders", kind=SpanKind.SERVER, context=cctx, start_time=t0 + 4 * ms,
                               attributes={"http.route": "/api/orders", "order.id": order})
        octx = trace.set_span_in_context(orders)
        loggers["checkout"].emit(body=f"order placed {order}", severity_number=SeverityNumber.INFO, severity_text="INFO",
                                 context=octx, attributes={"order.id": order, "cart.items": str(1 + n % 3)},
                                 timestamp=t0 + 5 * ms)
        db = co.start_span("SELECT orders", kind=SpanKind.CLIENT, context=octx, start_time=t0 + 6 * ms,
                           attributes={"db.system": "clickhouse", "db.statement": "SELECT * FROM orders WHERE id = ?"})
        db.end(end_time=t0 + 18 * ms)
        pay_call = co.start_span("HTTP POST payments", kind=SpanKind.CLIENT, context=octx, start_time=t0 + 20 * ms)
        pctx = trace.set_span_in_context(pay_call)
        loggers["checkout"].emit(body=f"calling payments for {order}", severity_number=SeverityNumber.DEBUG,
                                 severity_text="DEBUG", context=pctx, timestamp=t0 + 20 * ms)
        charge = pa.start_span("charge card", kind=SpanKind.SERVER, context=pctx, start_time=t0 + 22 * ms,
                               attributes={"payment.amount": str(10 + n), "order.id": order})
        chctx = trace.set_span_in_context(charge)
        if fail:
            charge.add_event("exception", {"exception.type": "CardDeclined", "exception.message": "card declined"},
                             timestamp=t0 + 60 * ms)
            charge.set_status(Status(StatusCode.ERROR, "card declined"))
            loggers["payments"].emit(body=f"card declined for {order}", severity_number=SeverityNumber.ERROR,
                                     severity_text="ERROR", context=chctx, timestamp=t0 + 60 * ms,
                                     attributes={"order.id": order, "error.type": "CardDeclined"})
        else:
            loggers["payments"].emit(body=f"payment captured for {order}", severity_number=SeverityNumber.INFO,
                                     severity_text="INFO", context=chctx, timestamp=t0 + 60 * ms,
                                     attributes={"order.id": order})
        charge.end(end_time=t0 + 70 * ms)
        pay_call.end(end_time=t0 + 72 * ms)
        orders.end(end_time=t0 + 75 * ms)
        call.end(end_time=t0 + 77 * ms)
        root.end(end_time=t0 + 80 * ms)
        trace_id = format_trace_id(root.get_span_context().trace_id)
        shop.trace_ids.append(trace_id)
        shop.order_ids[trace_id] = order
        if fail:
            shop.failed.append(trace_id)

    bulk = loggers["loadgen"]
    for i in range(bulk_logs):
        bulk.emit(body=f"synthetic load record {i:05d}", severity_number=SeverityNumber.INFO, severity_text="INFO",
                  timestamp=base + i * 10 * ms, attributes={"seq": str(i)})

    for p in providers:
        assert p.force_flush(60_000)
        p.shutdown()
    return shop
