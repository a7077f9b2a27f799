"""Grafana dashboards (deploy/grafana/dashboards/): well formed, and every query works on real pipeline data.

ClickHouse panels: the SQL is expanded as Grafana and the ClickHouse plugin would (tests/grafana.py) and
run against the real engine holding what a real pipeline (ingest, worker, sink processes) made of SDK logs,
metrics and traces. Prometheus panels: every metric name in their PromQL must be one the running ingest,
worker and sink export on /metrics.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
import uuid
from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from maple.net import free_port
from maple.settings import Settings
from processors.red import DEFAULT_BUCKETS_MS
from tests.helpers.environment import REPO
from tests.helpers.grafana import All, ExpansionError, TimeRange, expand
from tests.helpers.ingest import status
from tests.helpers.pipeline import Pipeline, start_pipeline

DASHBOARDS = REPO / "deploy" / "grafana" / "dashboards"
DATASOURCES = {"clickhouse": "grafana-clickhouse-datasource", "prometheus": "prometheus"}


def _boards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def _panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        if panel["type"] == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def _ch_targets(board: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for panel in _panels(board):
        for target in panel["targets"]:
            if target["datasource"]["uid"] == "clickhouse":
                yield panel["title"], target


# -- structure ------------------------------------------------------------------------------------


def test_dashboards_are_well_formed() -> None:
    boards = _boards()
    assert {"maple-service-overview.json", "maple-logs.json", "maple-traces.json", "maple-pipeline.json"} <= set(boards)
    uids = [board["uid"] for board in boards.values()]
    assert len(uids) == len(set(uids)) and all(uids)
    for name, board in boards.items():
        assert board["title"] and isinstance(board["schemaVersion"], int), name
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), f"{name}: panel ids repeat"
        titles = [panel["title"] for panel in _panels(board)]
        assert len(titles) == len(set(titles)), f"{name}: panel titles repeat"
        for panel in _panels(board):
            where = f"{name} / {panel['title']}"
            assert set(panel["gridPos"]) == {"h", "w", "x", "y"} and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
            assert panel["targets"], f"{where}: no targets"
            assert DATASOURCES.get(panel["datasource"]["uid"]) == panel["datasource"]["type"], where
            ref_ids = [target["refId"] for target in panel["targets"]]
            assert len(ref_ids) == len(set(ref_ids)), where
            for target in panel["targets"]:
                source = target["datasource"]
                assert DATASOURCES.get(source["uid"]) == source["type"], f"{where}: datasource {source}"
                if source["uid"] == "clickhouse":
                    assert target["editorType"] == "sql" and target["rawSql"].strip(), where
                    assert target["queryType"] in ("table", "timeseries", "logs", "traces"), where
                    assert target["format"] == {"timeseries": 0, "table": 1, "logs": 2, "traces": 3}[
                        target["queryType"]], where
                else:
                    assert target["expr"].strip(), where
        for variable in board["templating"]["list"]:
            if "datasource" in variable:
                assert DATASOURCES.get(variable["datasource"]["uid"]) == variable["datasource"]["type"]
            assert variable["type"] in ("query", "custom", "textbox"), variable["name"]


def test_the_expander_follows_the_plugin_and_refuses_what_it_does_not_know() -> None:
    start = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    tr = TimeRange(start, start + timedelta(hours=1), interval_s=30)
    variables = {"svc": ["a'b", "c"], "one": "x", "everything": All(["p", "q"])}
    assert expand("$__timeFilter(T) AND $__interval_s", {}, tr) == \
        f"T >= toDateTime({int(start.timestamp())}) AND T <= toDateTime({int(start.timestamp()) + 3600}) AND 30"
    assert expand("$__timeInterval(T)", {}, tr) == "toStartOfInterval(toDateTime(T), INTERVAL 30 second)"
    assert expand("$__dateFilter(D)", {}, tr) == "D >= toDate('2026-01-02') AND D <= toDate('2026-01-02')"
    assert expand("$__fromTime_ms", {}, tr) == f"fromUnixTimestamp64Milli({int(start.timestamp()) * 1000})"
    assert expand("s IN (${svc:singlequote}) OR s = ${svc:sqlstring} OR $one", variables, tr) == \
        "s IN ('a\\'b','c') OR s = 'a''b','c' OR x"
    assert expand("$__conditionalAll(f(s, t) IN (${everything:singlequote}), $everything) AND "
                  "$__conditionalAll(s IN (${svc:singlequote}), $svc)", variables, tr) == \
        "1=1 AND s IN ('a\\'b','c')"
    for bad in ("$__timeGroup(T, 1m)", "$__interval", "$nope", "$svc", "${one:csv}", "$__timeFilter(T"):
        with pytest.raises(ExpansionError):
            expand(bad, variables, tr)


# -- a pipeline with data -------------------------------------------------------------------------


@dataclass
class Sent:
    shop: str
    auth: str
    durations_ms: list[float]  # every shop span
    error_traces: set[str]
    slow_traces: set[str]
    traces: set[str]
    logs: dict[str, int]  # shop records by severity
    pipeline: Pipeline
    metrics_urls: dict[str, str]
    started: datetime


SHOP_TRACES, ERROR_EVERY, SLOW_EVERY, AUTH_SPANS = 40, 4, 8, 10


def _root_ms(n: int) -> float:
    return 1200.0 if n % SLOW_EVERY == 1 else 30.0 + n % 5


def _send_traces(endpoint: str, shop: str, auth: str) -> tuple[list[float], set[str], set[str], set[str]]:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import SpanKind, Status, StatusCode, format_trace_id, set_span_in_context

    durations: list[float] = []
    errors, slow, traces = set(), set(), set()
    for service in (shop, auth):
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint), max_export_batch_size=64))
        tracer = provider.get_tracer("dashboards")
        for n in range(SHOP_TRACES if service == shop else AUTH_SPANS):
            start = time.time_ns()
            if service == auth:
                tracer.start_span("login", kind=SpanKind.SERVER, start_time=start).end(end_time=start + 3_000_000)
                continue
            root = tracer.start_span("checkout", kind=SpanKind.SERVER, start_time=start)
            trace_id = format_trace_id(root.get_span_context().trace_id)
            traces.add(trace_id)
            for child, ms in ((0, 3.0), (1, 7.5)):
                span = tracer.start_span(f"step-{child}", context=set_span_in_context(root), kind=SpanKind.CLIENT,
                                         start_time=start + 1000)
                if child == 1 and n % ERROR_EVERY == 0:
                    span.set_status(Status(StatusCode.ERROR, "card declined"))
                    errors.add(trace_id)
                span.end(end_time=start + 1000 + int(ms * 1e6))
                durations.append(ms)
            root.end(end_time=start + int(_root_ms(n) * 1e6))
            durations.append(_root_ms(n))
            if _root_ms(n) > 1000:
                slow.add(trace_id)
        assert provider.force_flush(30_000)
        provider.shutdown()
    return durations, errors, slow, traces


def _send_logs(endpoint: str, shop: str, auth: str) -> dict[str, int]:
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    plan = {shop: [(SeverityNumber.INFO, "INFO", "order placed", 5), (SeverityNumber.WARN, "WARN", "slow payment", 2),
                   (SeverityNumber.ERROR, "ERROR", "payment failed: Card Declined", 3),
                   (SeverityNumber.DEBUG, "DEBUG", "cart loaded", 1)],
            auth: [(SeverityNumber.INFO, "INFO", "login ok (card declined elsewhere)", 4)]}
    for service, records in plan.items():
        provider = LoggerProvider(resource=Resource.create({"service.name": service}))
        provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(endpoint=endpoint)))
        logger = provider.get_logger("dashboards")
        for number, text, body, count in records:
            for i in range(count):
                logger.emit(body=f"{body} #{i}", severity_number=number, severity_text=text)
        assert provider.force_flush(10_000)
        provider.shutdown()
    return {text: count for _, text, _, count in plan[shop]}


def _send_metrics(endpoint: str, shop: str) -> None:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint), export_interval_millis=3_600_000)
    provider = MeterProvider(resource=Resource.create({"service.name": shop}), metric_readers=[reader])
    meter = provider.get_meter("dashboards")
    meter.create_counter("orders").add(3)
    meter.create_histogram("basket_eur").record(42.0)
    provider.shutdown()


@pytest.fixture(scope="module")
def sent(kafka_bootstrap: str, clickhouse_settings: Settings, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Sent]:
    tag = uuid.uuid4().hex[:8]
    sampling = tmp_path_factory.mktemp("dashboards") / "sampling.yaml"
    sampling.write_text(yaml.safe_dump({"decision_wait": "2s", "late_span_window": "2s",
                                        "policies": [{"name": "all", "type": "always_sample"}]}))
    worker_port, sink_port = free_port(), free_port()
    pipeline = start_pipeline(kafka_bootstrap, clickhouse_settings, tag, {
        "MAPLE_TRACES_SAMPLING_CONFIG": str(sampling), "MAPLE_TRACES_TICK_INTERVAL_S": "0.5",
        "MAPLE_WORKER_METRICS_PORT": str(worker_port), "MAPLE_SINK_METRICS_PORT": str(sink_port)},
        from_end=True)  # the dashboards query whole tables
    ingest = pipeline.ingest
    shop, auth = f"shop-{tag}", f"auth-{tag}"
    started = datetime.now(UTC)
    try:
        durations, errors, slow, traces = _send_traces(f"{ingest.http}/v1/traces", shop, auth)
        logs = _send_logs(f"{ingest.http}/v1/logs", shop, auth)
        _send_metrics(f"{ingest.http}/v1/metrics", shop)
        spans = 3 * SHOP_TRACES
        pipeline.wait_for("SELECT ServiceName, count() FROM otel_traces GROUP BY 1 ORDER BY 1",
                          [(auth, AUTH_SPANS), (shop, spans)], timeout=120)
        pipeline.wait_for("SELECT ServiceName, sum(Value) FROM otel_metrics_sum WHERE "
                          "MetricName = 'traces.span.metrics.calls' GROUP BY 1 ORDER BY 1",
                          [(auth, float(AUTH_SPANS)), (shop, float(spans))])
        pipeline.wait_for("SELECT sum(Count) FROM otel_metrics_histogram WHERE "
                          "MetricName = 'traces.span.metrics.duration'", [(spans + AUTH_SPANS,)])
        pipeline.wait_for("SELECT count() FROM otel_logs", [(sum(logs.values()) + 4,)])
        pipeline.wait_for("SELECT count() FROM otel_traces_trace_id_ts FINAL", [(SHOP_TRACES + AUTH_SPANS,)])
        pipeline.wait_for("SELECT count() FROM otel_metrics_sum WHERE MetricName = 'orders'", [(1,)])
        yield Sent(shop, auth, durations, errors, slow, traces, logs, pipeline,
                   {"ingest": f"{ingest.http}/metrics", "worker": f"http://127.0.0.1:{worker_port}/metrics",
                    "sink": f"http://127.0.0.1:{sink_port}/metrics"}, started)
    finally:
        pipeline.stop()


def _range(sent: Sent) -> TimeRange:
    return TimeRange(sent.started - timedelta(minutes=30), datetime.now(UTC) + timedelta(minutes=5), 60)


def _run(sent: Sent, sql: str, variables: dict[str, Any], tr: TimeRange) -> list[dict[str, Any]]:
    client = sent.pipeline.client()
    try:
        result = client.query(expand(sql, variables, tr))
        return [dict(zip(result.column_names, row)) for row in result.result_rows]
    finally:
        client.close()


def _variable_options(sent: Sent, board: dict[str, Any], tr: TimeRange) -> dict[str, list[str]]:
    """Every query and custom variable's options, from the real engine (query variables may use macros)."""
    options: dict[str, list[str]] = {}
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            options[variable["name"]] = [str(next(iter(row.values()))) for row in _run(sent, variable["query"], {}, tr)]
        elif variable["type"] == "custom":
            options[variable["name"]] = [v.strip() for v in variable["query"].split(",")]
    return options


def _results(sent: Sent, board: dict[str, Any], variables: dict[str, Any], tr: TimeRange
             ) -> dict[str, list[dict[str, Any]]]:
    """Run every ClickHouse query of `board`; the rows by panel title. Any failure names the panel."""
    out: dict[str, list[dict[str, Any]]] = {}
    for title, target in _ch_targets(board):
        try:
            out[title] = _run(sent, target["rawSql"], variables, tr)
        except Exception as exc:
            raise AssertionError(f"{title}: {exc}\n{expand(target['rawSql'], variables, tr)}") from exc
    return out


def _histogram_quantile(durations: list[float], q: float) -> float:
    """Prometheus' histogram_quantile over the RED buckets, computed from the durations that were sent."""
    bounds = list(DEFAULT_BUCKETS_MS)
    counts = [0] * (len(bounds) + 1)
    for ms in durations:
        counts[bisect_left(bounds, ms)] += 1
    rank, seen = q * len(durations), 0
    for i, count in enumerate(counts):
        if seen + count >= rank:
            lower = bounds[i - 1] if i else 0.0
            upper = bounds[i] if i < len(bounds) else bounds[-1]
            return lower + (upper - lower) * (rank - seen) / count
        seen += count
    raise AssertionError("unreachable")


def _board(name: str) -> dict[str, Any]:
    return _boards()[name]


def test_service_overview_red_matches_the_spans_sent(sent: Sent) -> None:
    board, tr = _board("maple-service-overview.json"), _range(sent)
    options = _variable_options(sent, board, tr)
    assert options["service"] == sorted([sent.shop, sent.auth])
    spans, errors = len(sent.durations_ms), len(sent.error_traces)
    assert spans == 3 * SHOP_TRACES and errors == SHOP_TRACES // ERROR_EVERY

    shop = _results(sent, board, {"service": [sent.shop]}, tr)
    assert shop["Requests"] == [{"requests": float(spans)}]
    assert shop["Error ratio"][0]["error_ratio"] == pytest.approx(errors / spans)
    [quantiles] = shop["Latency quantiles"]
    for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        assert quantiles[name] == pytest.approx(_histogram_quantile(sent.durations_ms, q), abs=1e-3), name
    assert quantiles["p50"] < 50 < 1000 < quantiles["p99"]  # most spans are fast; the slow roots show at p99
    rate = shop["Request rate by service"]
    assert {row["ServiceName"] for row in rate} == {sent.shop}
    assert sum(row["rate"] for row in rate) * tr.interval_s == pytest.approx(spans)
    ratios = shop["Error rate by service"]
    assert ratios and all(0 <= row["error_ratio"] <= 1 for row in ratios) and max(r["error_ratio"] for r in ratios) > 0
    series = shop["Latency p50 / p95 / p99"]
    assert series and all(0 < r["p50"] <= r["p95"] <= r["p99"] <= DEFAULT_BUCKETS_MS[-1] for r in series)
    operations = {(r["service"], r["operation"], r["kind"]): (r["requests"], r["errors"]) for r in shop["Operations"]}
    assert operations == {(sent.shop, "checkout", "SPAN_KIND_SERVER"): (SHOP_TRACES, 0),
                          (sent.shop, "step-0", "SPAN_KIND_CLIENT"): (SHOP_TRACES, 0),
                          (sent.shop, "step-1", "SPAN_KIND_CLIENT"): (SHOP_TRACES, errors)}
    means = {r["operation"]: (r["spans"], r["mean_ms"], r["max_ms"]) for r in shop["Mean duration by operation"]}
    roots = [_root_ms(n) for n in range(SHOP_TRACES)]
    assert means["checkout"] == (SHOP_TRACES, pytest.approx(sum(roots) / SHOP_TRACES, abs=1e-3), 1200.0)
    assert means["step-1"] == (SHOP_TRACES, pytest.approx(7.5, abs=1e-3), 7.5)

    everyone = _results(sent, board, {"service": All(options["service"])}, tr)
    assert everyone["Requests"] == [{"requests": float(spans + AUTH_SPANS)}]
    assert {row["ServiceName"] for row in everyone["Request rate by service"]} == {sent.shop, sent.auth}
    # Outside the data's time range everything is empty, not an error.
    past = TimeRange(tr.start - timedelta(days=3), tr.start - timedelta(days=2), 3600)
    old = _results(sent, board, {"service": [sent.shop]}, past)
    assert old["Request rate by service"] == [] and old["Latency quantiles"] == []


def test_logs_explorer_volume_table_and_filters(sent: Sent) -> None:
    board, tr = _board("maple-logs.json"), _range(sent)
    options = _variable_options(sent, board, tr)
    assert options["service"] == sorted([sent.shop, sent.auth])
    assert "ERROR" in options["severity"]
    shop = _results(sent, board, {"service": [sent.shop], "severity": All(options["severity"]), "search": ""}, tr)
    volume: dict[str, int] = {}
    for row in shop["Log volume by severity"]:
        volume[row["severity"]] = volume.get(row["severity"], 0) + row["records"]
    assert volume == sent.logs
    assert shop["Records by service"] == [{"service": sent.shop, "records": sum(sent.logs.values()),
                                           "errors": sent.logs["ERROR"]}]
    assert len(shop["Logs"]) == sum(sent.logs.values())
    stamps = [row["timestamp"] for row in shop["Logs"]]
    assert stamps == sorted(stamps, reverse=True)

    # Severity and a case-insensitive search narrow it down; a quote in the search text is just text.
    errors = _results(sent, board, {"service": All(options["service"]), "severity": ["ERROR"],
                                    "search": "card declined"}, tr)
    assert {(r["service"], r["level"]) for r in errors["Logs"]} == {(sent.shop, "ERROR")}
    assert len(errors["Logs"]) == sent.logs["ERROR"]
    anywhere = _results(sent, board, {"service": All(options["service"]), "severity": All(options["severity"]),
                                      "search": "CARD DECLINED"}, tr)
    assert {r["service"] for r in anywhere["Logs"]} == {sent.shop, sent.auth}
    quoted = _results(sent, board, {"service": All(options["service"]), "severity": All(options["severity"]),
                                    "search": "it's"}, tr)
    assert quoted["Logs"] == []


def test_trace_explorer_lists_and_the_trace_id_lookup(sent: Sent) -> None:
    board, tr = _board("maple-traces.json"), _range(sent)
    options = _variable_options(sent, board, tr)
    assert options["service"] == sorted([sent.shop, sent.auth])
    unknown = "0" * 32
    shop = _results(sent, board, {"service": [sent.shop], "trace_id": unknown}, tr)
    recent = shop["Recent traces"]
    assert {r["trace_id"] for r in recent} == sent.traces
    assert all(r["spans"] == 3 and r["service"] == sent.shop and r["root_span"] == "checkout" for r in recent)
    assert [r["started"] for r in recent] == sorted((r["started"] for r in recent), reverse=True)
    slowest = shop["Slowest traces"]
    assert {r["trace_id"] for r in slowest[:len(sent.slow_traces)]} == sent.slow_traces
    assert slowest[0]["duration_ms"] == pytest.approx(1200.0)
    assert {r["trace_id"] for r in shop["Traces with errors"]} == sent.error_traces
    assert shop["Trace lookup: spans"] == [] and shop["Trace lookup: waterfall"] == []

    everyone = _results(sent, board, {"service": All(options["service"]), "trace_id": unknown}, tr)
    assert len(everyone["Recent traces"]) == SHOP_TRACES + AUTH_SPANS

    # The lookup finds the trace through otel_traces_trace_id_ts even when the time picker is elsewhere.
    trace = sorted(sent.error_traces & sent.slow_traces or sent.error_traces)[0]
    elsewhere = TimeRange(tr.start - timedelta(days=10), tr.start - timedelta(days=9), 3600)
    found = _results(sent, board, {"service": [sent.shop], "trace_id": trace}, elsewhere)
    assert found["Recent traces"] == []
    spans = found["Trace lookup: spans"]
    assert sorted(r["span"] for r in spans) == ["checkout", "step-0", "step-1"]
    assert [r["status"] for r in spans if r["span"] == "step-1"] == ["Error"]
    waterfall = found["Trace lookup: waterfall"]
    root = next(r for r in waterfall if r["parentSpanID"] == "")
    assert {r["traceID"] for r in waterfall} == {trace} and len(waterfall) == 3
    assert {r["parentSpanID"] for r in waterfall if r is not root} == {root["spanID"]}
    assert {r["statusCode"] for r in waterfall} == {0, 2}


# -- Prometheus -----------------------------------------------------------------------------------

_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or",
                 "unless", "inf", "nan"}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, keywords or label names."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"(?<![A-Za-z0-9_:.])[A-Za-z_:][A-Za-z0-9_:]*", text):
        word, after = match.group(0), text[match.end():].lstrip()[:1]
        if after == "(" or word.lower() in _PROMQL_WORDS or word.startswith("$"):
            continue
        if match.start() and text[match.start() - 1] == "$":
            continue  # a Grafana variable such as $__rate_interval
        names.add(word)
    return names


def exported_families(exposition: str) -> dict[str, set[str]]:
    """Metric families in a Prometheus text exposition and the sample names each offers, from the TYPE lines
    (labelled series appear there before their first sample)."""
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
                "summary": ("", "_sum", "_count", "_created"), "gauge": ("",), "untyped": ("",)}
    families: dict[str, set[str]] = {}
    for line in exposition.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[:2] == ["#", "TYPE"]:
            base = parts[2].removesuffix("_total") if parts[3] == "counter" else parts[2]
            families[base] = {base + suffix for suffix in suffixes.get(parts[3], ("",))}
    # prometheus_client also types a labelled family's creation timestamps as a gauge of their own.
    return {name: samples for name, samples in families.items()
            if not (name.endswith("_created") and name.removesuffix("_created") in families)}


def test_promql_parser() -> None:
    assert promql_metric_names('histogram_quantile(0.99, sum by (le, topic) (rate(a_bucket{x="y"}[$__rate_interval])))'
                               ' / on(topic) group_left b_total + max(c) unless d offset 5m') == {
        "a_bucket", "b_total", "c", "d"}


def test_every_prometheus_metric_on_the_pipeline_dashboard_is_exported(sent: Sent) -> None:
    exported: dict[str, dict[str, set[str]]] = {}
    for stage, url in sent.metrics_urls.items():
        deadline = time.monotonic() + 60
        while status(url) != 200:
            assert time.monotonic() < deadline, f"{stage} serves no {url}"
            time.sleep(0.5)
        with urllib.request.urlopen(url, timeout=10) as response:
            exported[stage] = exported_families(response.read().decode())
    every = {name for families in exported.values() for names in families.values() for name in names}
    assert "maple_sampler_traces" in exported["worker"] and "maple_consumer_lag" in exported["sink"]
    used: dict[str, str] = {}
    for name, board in _boards().items():
        for panel in _panels(board):
            for target in panel["targets"]:
                if target["datasource"]["uid"] == "prometheus":
                    for metric in promql_metric_names(target["expr"]):
                        used[metric] = f"{name} / {panel['title']}"
    assert len(used) >= 25
    missing = {metric: where for metric, where in used.items() if metric not in every}
    assert not missing, f"metrics no Maple stage exports: {missing}"
    # And the other way round: every metric family a stage exports has a panel, so a new metric gets one.
    unwatched = {family for families in exported.values() for family, names in families.items()
                 if not names & set(used)}
    assert not unwatched, f"exported but on no panel: {sorted(unwatched)}"
