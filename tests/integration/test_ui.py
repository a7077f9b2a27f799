"""The web UI end to end, in a real headless Chromium (Debian's package, driven by Playwright).

Maple runs as real processes (ingest, worker, sink, `maple api` serving the built UI) on the session's Kafka
and ClickHouse; the test sends a known shop through the ingest with the OpenTelemetry SDK and then uses the
pages as a person would: searches logs by text and by field, follows a log to its trace, checks the
waterfall's nesting, reads the RED figures on the service overview, runs SQL. Screenshots of every page
(and of its empty and error states) go to .maple/screenshots (MAPLE_SCREENSHOTS), listed at the end of the
run; performance figures are measured with the Performance API and reported, never asserted.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from playwright.sync_api import Browser, Page, expect, sync_playwright

from maple.net import free_port
from maple.settings import Settings
from tests.helpers import browser as browser_helpers
from tests.helpers.ingest import IngestProcess, status
from tests.helpers.pipeline import Pipeline, apply_schema, pipeline_env, start_groups_at_end
from tests.helpers.shop import SERVICES, SPAN_TREE, Shop, depth_of, send_shop
from tests.helpers.stages import Stage

ROOT = Path(__file__).resolve().parents[2]
BULK_LOGS = 10_000


@dataclass
class Maple:
    url: str
    shop: Shop
    pipeline: Pipeline
    api: Stage

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return json.loads(response.read())


def _build_ui() -> None:
    result = subprocess.run([str(ROOT / "ui" / "build.sh")], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"building the UI failed:\n{result.stdout}\n{result.stderr}"


@pytest.fixture(scope="module")
def maple(kafka_bootstrap: str, clickhouse_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Maple]:
    _build_ui()
    tmp = tmp_path_factory.mktemp("ui")
    sampling = tmp / "sampling.yaml"
    sampling.write_text(yaml.safe_dump({"tail_sampling": {"decision_wait": "2s", "policies": [
        {"name": "everything", "type": "always_sample"}]}}))
    env, database = pipeline_env(kafka_bootstrap, clickhouse_settings, uuid.uuid4().hex[:8])
    env.update({"MAPLE_TRACES_SAMPLING_CONFIG": str(sampling), "MAPLE_TRACES_TICK_INTERVAL_S": "0.5",
                "MAPLE_DATA_DIR": env.get("MAPLE_DATA_DIR", str(tmp / "data"))})
    apply_schema(env)
    start_groups_at_end(kafka_bootstrap, env)  # the pages count whole tables
    ingest = IngestProcess(kafka_bootstrap, env).start()
    worker, sink = Stage(["worker"], env).start(), Stage(["sink"], env).start()
    port = free_port()
    api = Stage(["api"], {**env, "MAPLE_API_PORT": str(port), "MAPLE_API_HEALTH_INTERVAL_S": "2"}).start()
    pipeline = Pipeline(kafka_bootstrap, env, database, ingest, worker, sink, clickhouse_settings)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while status(f"{url}/api/openapi.json") != 200:
            assert api.alive, "maple api exited:\n" + api.output()
            assert time.monotonic() < deadline, "maple api never answered:\n" + api.output()
            time.sleep(0.3)
        shop = send_shop(ingest.http, bulk_logs=BULK_LOGS)
        pipeline.wait_for("SELECT count() FROM otel_logs", [(shop.logs,)], timeout=180)
        pipeline.wait_for("SELECT count() FROM otel_traces", [(len(shop.trace_ids) * len(SPAN_TREE),)], timeout=180)
        spans = len(shop.trace_ids) * len(SPAN_TREE)
        pipeline.wait_for("SELECT sum(Value) FROM otel_metrics_sum WHERE MetricName = 'traces.span.metrics.calls'",
                          [(float(spans + 0),)], timeout=120)
        yield Maple(url, shop, pipeline, api)
    finally:
        for stage in (api, ingest, worker, sink):
            stage.stop()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    executable = browser_helpers.ensure_chromium()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, headless=True, args=browser_helpers.CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(chromium: Browser, maple: Maple) -> Iterator[Page]:
    context = chromium.new_context(viewport={"width": 1440, "height": 900}, base_url=maple.url)
    pg = context.new_page()
    problems: list[str] = []
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    pg.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    try:
        yield pg
    finally:
        context.close()
    # An uncaught exception in the page is a bug even when the assertions passed. (Failed requests that a
    # test provoked on purpose log console errors too; those tests clear the list.)
    assert not [p for p in problems if p.startswith("page error")], problems


def shot(page: Page, name: str) -> Path:
    path = browser_helpers.screenshot_dir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    browser_helpers.REPORT.append(f"screenshot {path}")
    return path


def search(page: Page, query: str) -> None:
    box = page.get_by_test_id("search-input")
    box.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(query)
    page.keyboard.press("Enter")


def log_bodies(page: Page) -> list[str]:
    return page.get_by_test_id("log-row").locator("[role=gridcell]:last-child").all_inner_texts()


# -- logs ---------------------------------------------------------------------------------------------------


def test_search_logs_by_text_and_by_field(page: Page, maple: Maple) -> None:
    failed = len(maple.shop.failed)
    page.goto("/logs?from=now-15m")
    expect(page.get_by_test_id("log-row").first).to_be_visible(timeout=30_000)
    expect(page.get_by_test_id("histogram").locator("canvas").first).to_be_visible()
    expect(page.get_by_test_id("log-total")).to_contain_text(f"{maple.shop.logs:,} records")

    search(page, "-service:loadgen")
    expect(page.get_by_test_id("log-total")).to_contain_text(f"{maple.shop.logs - maple.shop.bulk_logs:,} records")
    shot(page, "logs")

    search(page, '"card declined"')
    expect(page).to_have_url(re.compile(r"q=%22card\+declined%22"))
    expect(page.get_by_test_id("log-row")).to_have_count(failed)
    assert all("card declined" in b for b in log_bodies(page))
    expect(page.get_by_test_id("log-total")).to_contain_text(f"{failed:,} records")  # the histogram agrees

    search(page, "service:checkout level:info")
    expect(page.get_by_test_id("log-row")).to_have_count(len(maple.shop.trace_ids))
    assert all(b.startswith("order placed") for b in log_bodies(page))

    # click-to-filter: open a record, filter on one of its attributes
    page.get_by_test_id("log-row").first.click()
    detail = page.get_by_test_id("log-detail")
    expect(detail).to_be_visible()
    order = detail.get_by_test_id("log-attributes").locator("dd").filter(has_text="ord-").first.inner_text().split()[0]
    detail.get_by_test_id("log-attributes").get_by_label("Filter by order.id").click()
    expect(page).to_have_url(re.compile(r"attributes.order.id"))
    expect(page.get_by_test_id("log-row")).to_have_count(1)
    assert order in log_bodies(page)[0]
    page.get_by_test_id("log-row").first.click()
    expect(page.get_by_test_id("log-detail")).to_contain_text(order)
    shot(page, "logs-detail")


def test_search_syntax_error_is_shown_where_it_is(page: Page, maple: Maple) -> None:
    page.goto("/logs?from=now-1h")
    search(page, "service:checkout AND (level:error")
    error = page.get_by_test_id("search-error")
    expect(error).to_be_visible()
    expect(page.locator(".cm-lintRange-error")).to_have_count(1)
    shot(page, "logs-syntax-error")


def test_empty_search_says_so(page: Page, maple: Maple) -> None:
    page.goto("/logs?from=now-1h&q=" + urllib.parse.quote('"no such words anywhere"'))
    expect(page.get_by_test_id("empty-state")).to_contain_text("No records match")
    shot(page, "logs-empty")


def test_live_tail_shows_new_records(page: Page, maple: Maple) -> None:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    page.goto("/logs?q=service:tailer&live=1")
    expect(page.get_by_test_id("empty-state")).to_contain_text("Waiting")
    provider = LoggerProvider(resource=Resource.create({"service.name": "tailer"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(
        endpoint=f"{maple.pipeline.ingest.http}/v1/logs")))
    logger = provider.get_logger("tail")
    for i in range(3):
        logger.emit(body=f"tail record {i}", severity_text="WARN")
    provider.shutdown()
    expect(page.get_by_test_id("log-row")).to_have_count(3, timeout=60_000)
    shot(page, "logs-live")


# -- traces --------------------------------------------------------------------------------------------------


def test_log_leads_to_its_trace_and_the_waterfall_nests_every_span(page: Page, maple: Maple) -> None:
    trace_id = maple.shop.failed[0]
    order = maple.shop.order_ids[trace_id]
    page.goto(f"/logs?from=now-1h&q={urllib.parse.quote(chr(34) + 'card declined for ' + order + chr(34))}")
    expect(page.get_by_test_id("log-row")).to_have_count(1)
    page.get_by_test_id("log-row").click()
    page.get_by_test_id("open-trace").click()
    expect(page).to_have_url(re.compile(f"/traces/{trace_id}"))

    rows = page.get_by_test_id("span-row")
    expect(rows).to_have_count(len(SPAN_TREE))
    expect(page.get_by_test_id("trace-span-count")).to_contain_text(str(len(SPAN_TREE)))
    got = rows.evaluate_all("els => els.map(e => [e.dataset.spanId, e.dataset.parentId, Number(e.dataset.depth), e.innerText])")
    by_name: dict[str, tuple[str, str, int]] = {}
    for span_id, parent_id, depth, text in got:
        name = next(n for n, _, _, _ in SPAN_TREE if n in text)
        by_name[name] = (span_id, parent_id, depth)
    assert set(by_name) == {n for n, _, _, _ in SPAN_TREE}
    for name, _service, parent, _kind in SPAN_TREE:
        span_id, parent_id, depth = by_name[name]
        assert depth == depth_of(name), (name, got)
        assert parent_id == (by_name[parent][0] if parent else ""), (name, got)
    # depth-first order: every span comes after its parent
    order_of = {sid: i for i, (sid, _, _, _) in enumerate(got)}
    for span_id, parent_id, _, _ in got:
        if parent_id:
            assert order_of[parent_id] < order_of[span_id]

    # the failed span: marked, and its detail shows status, attributes and the exception event
    charge = rows.filter(has_text="charge card")
    expect(charge.get_by_label("error")).to_be_visible()
    expect(page).to_have_url(re.compile(f"span={by_name['charge card'][0]}"))  # the log's span is preselected
    detail = page.get_by_test_id("span-detail")
    expect(detail).to_contain_text("card declined")
    expect(detail.get_by_test_id("span-events")).to_contain_text("exception")
    expect(detail.get_by_test_id("span-attributes")).to_contain_text(order)
    shot(page, "trace")

    page.get_by_test_id("trace-logs").click()
    expect(page).to_have_url(re.compile("/logs"))
    expect(page.get_by_test_id("log-row")).to_have_count(4)  # every log written inside that trace


def test_trace_search_by_service_status_operation_duration_and_attribute(page: Page, maple: Maple) -> None:
    checkouts = len(maple.shop.trace_ids)
    page.goto("/traces?from=now-1h&service=payments&status=error")
    expect(page.get_by_test_id("trace-row")).to_have_count(len(maple.shop.failed))
    shot(page, "traces")
    # `charge card` spans take 48 ms: a duration filter is about the spans that match the operation
    page.goto("/traces?from=now-1h&operation=charge+card&minMs=40")
    expect(page.get_by_test_id("trace-row")).to_have_count(checkouts)
    page.goto("/traces?from=now-1h&operation=charge+card&minMs=60")
    expect(page.get_by_test_id("empty-state")).to_be_visible()
    # an attribute, typed into the attribute search and run with Enter
    trace_id = maple.shop.trace_ids[5]
    page.goto("/traces?from=now-1h")
    box = page.get_by_label("Span attributes")
    box.click()
    page.keyboard.type(f"attributes.order.id:{maple.shop.order_ids[trace_id]}")
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("trace-row")).to_have_count(1)
    page.get_by_test_id("trace-row").locator("a").first.click()
    expect(page).to_have_url(re.compile(f"/traces/{trace_id}"))


def test_unknown_trace_has_a_designed_state(page: Page, maple: Maple) -> None:
    page.goto("/traces/0123456789abcdef0123456789abcdef")
    expect(page.get_by_text("Trace not found")).to_be_visible()
    shot(page, "trace-not-found")


# -- services ---------------------------------------------------------------------------------------------


def test_service_overview_shows_the_red_figures_sent(page: Page, maple: Maple) -> None:
    page.goto("/services?from=now-1h")
    rows = page.get_by_test_id("service-row")
    expect(rows).to_have_count(len(SERVICES), timeout=30_000)
    for service in SERVICES:
        row = page.locator(f"[data-testid=service-row][data-service={service}]")
        expect(row.get_by_test_id("service-calls")).to_have_text(f"{maple.shop.requests_per_service[service]:,}")
        expect(row.get_by_test_id("service-errors")).to_contain_text(f"{maple.shop.errors_per_service[service]:,}")
    expect(page.get_by_test_id("map-node")).to_have_count(len(SERVICES))
    expect(page.get_by_test_id("map-edge")).to_have_count(2)  # frontend -> checkout -> payments
    shot(page, "services")

    page.locator("[data-testid=service-row][data-service=payments] a").click()
    expect(page).to_have_url(re.compile("/services/payments"))
    expect(page.get_by_test_id("service-stats")).to_contain_text(f"{maple.shop.requests_per_service['payments']:,} calls")
    # the time series add up to what was sent: rate x step over the range, errors likewise
    expect(page.get_by_test_id("chart-total-rate")).to_have_text(
        f"{maple.shop.requests_per_service['payments']:,} requests in range")
    expect(page.get_by_test_id("chart-total-errors")).to_have_text(
        f"{maple.shop.errors_per_service['payments']:,} errors in range")
    expect(page.get_by_test_id("recent-errors").locator("a").first).to_be_visible()
    expect(page.locator("canvas").first).to_be_visible()
    shot(page, "service")


# -- SQL, pipeline --------------------------------------------------------------------------------------------


def test_sql_query_table_and_chart(page: Page, maple: Maple) -> None:
    page.goto("/sql")
    expect(page.get_by_test_id("empty-state")).to_be_visible()
    editor = page.get_by_test_id("sql-input")
    editor.click()
    page.keyboard.type("SELECT ServiceName, count() AS spans FROM otel_traces GROUP BY ServiceName ORDER BY ServiceName")
    page.keyboard.press("Control+Enter")
    table = page.get_by_test_id("sql-results")
    expect(table.locator("tbody tr")).to_have_count(len(SERVICES))
    got = {r.split("\t")[0]: int(r.split("\t")[1]) for r in table.locator("tbody tr").all_inner_texts()}
    assert got == maple.shop.spans_per_service
    page.get_by_test_id("sql-chart-on").click()
    expect(page.get_by_test_id("sql-chart")).to_be_visible()
    shot(page, "sql")

    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("DROP TABLE otel_logs")
    page.keyboard.press("Control+Enter")
    expect(page.get_by_test_id("error-state")).to_be_visible()
    shot(page, "sql-error")
    assert maple.get("/api/v1/logs/search?from=now-1h&limit=1")["rows"], "the table must still be there"


def test_pipeline_page(page: Page, maple: Maple) -> None:
    """Reachability, lag per stage, dead letters, and the ingest rate while requests arrive."""
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    page.goto("/pipeline")
    stats = page.get_by_test_id("pipeline-stats")
    expect(stats).to_contain_text("reachable", timeout=30_000)
    expect(page.get_by_test_id("lag-table")).to_contain_text("Worker")
    expect(page.get_by_test_id("lag-table")).to_contain_text("Sink")

    # One export request every 0.2 s for a while: the health monitor (every 2 s here) sees the raw topics grow.
    provider = LoggerProvider(resource=Resource.create({"service.name": "trickle"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(
        endpoint=f"{maple.pipeline.ingest.http}/v1/logs")))
    logger = provider.get_logger("trickle")
    stop = threading.Event()

    def trickle() -> None:
        while not stop.is_set():
            logger.emit(body="trickle", severity_text="INFO")
            time.sleep(0.2)

    sender = threading.Thread(target=trickle, daemon=True)
    sender.start()
    try:
        expect(page.get_by_test_id("ingest-rate")).to_have_text(re.compile(r"^(?!0\.00/s)\d+(\.\d+)?/s$"),
                                                                timeout=30_000)
        shot(page, "pipeline")
    finally:
        stop.set()
        sender.join(10)
        provider.shutdown()


def test_the_log_explorer_works_from_the_keyboard(page: Page, maple: Maple) -> None:
    page.goto("/logs?from=now-1h")
    expect(page.get_by_test_id("log-row").first).to_be_visible(timeout=30_000)
    page.locator("body").click(position={"x": 5, "y": 600})   # focus somewhere neutral
    page.keyboard.press("/")                                   # "/" focuses the search
    page.keyboard.press("Control+A")
    page.keyboard.type("service:payments level:error")
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("log-row")).to_have_count(len(maple.shop.failed))
    page.get_by_test_id("log-table").focus()
    page.keyboard.press("ArrowDown")                           # selects the first record and opens it
    detail = page.get_by_test_id("log-detail")
    first = sorted(maple.shop.order_ids[t] for t in maple.shop.failed)[-1]   # newest first
    expect(detail).to_contain_text(f"card declined for {first}")
    page.keyboard.press("ArrowDown")                           # the panel follows the selection
    expect(detail).not_to_contain_text(f"card declined for {first}")
    expect(page.locator("[data-testid=log-row][aria-selected=true]")).to_have_count(1)
    page.keyboard.press("Escape")                              # closes the panel
    expect(page.get_by_test_id("log-detail")).to_have_count(0)


def test_narrow_window_is_readable(chromium: Browser, maple: Maple) -> None:
    context = chromium.new_context(viewport={"width": 420, "height": 860}, base_url=maple.url)
    pg = context.new_page()
    try:
        pg.goto("/logs?from=now-1h&q=service:payments")
        expect(pg.get_by_test_id("log-row").first).to_be_visible(timeout=30_000)
        width = pg.evaluate("document.documentElement.scrollWidth")
        assert width <= 420, f"the page scrolls sideways at 420 px: {width}"
        shot(pg, "logs-narrow")
    finally:
        context.close()


# -- performance (reported, not asserted) ---------------------------------------------------------------------


def test_performance_of_the_log_explorer(page: Page, maple: Maple) -> None:
    """10,000 rows in the virtualised table: frame times while scrolling; first page vs. API latency."""
    page.goto("/logs?from=now-1h&q=service:loadgen")
    expect(page.get_by_test_id("log-row").first).to_be_visible(timeout=30_000)
    first = page.evaluate("""() => {
        const mark = performance.getEntriesByName('maple:logs-rendered').pop();
        const api = performance.getEntriesByType('resource').filter(r => r.name.includes('/api/v1/logs/search')).pop();
        return {rendered: mark.startTime, apiStart: api.startTime, apiEnd: api.responseEnd};
    }""")
    api_ms = first["apiEnd"] - first["apiStart"]
    ui_ms = first["rendered"] - first["apiEnd"]

    # Load every page: scroll to the end until the table holds all the records.
    table = page.get_by_test_id("log-table")
    deadline = time.monotonic() + 180
    while True:
        count = table.get_attribute("aria-rowcount")
        if count is not None and int(count) >= BULK_LOGS:
            break
        assert time.monotonic() < deadline, f"only {count} rows loaded"
        table.evaluate("el => el.scrollTop = el.scrollHeight")
        page.wait_for_timeout(100)
    frames = page.evaluate("""async () => {
        const el = document.querySelector('[data-testid=log-table]');
        el.scrollTop = 0;
        await new Promise(r => requestAnimationFrame(r));
        const long = [];
        const obs = new PerformanceObserver(list => list.getEntries().forEach(e => long.push(e.duration)));
        try { obs.observe({type: 'longtask', buffered: false}); } catch (e) {}
        const deltas = [];
        let last = performance.now();
        const step = el.scrollHeight / 600;
        for (let i = 0; i < 600; i++) {
            el.scrollTop += step;
            await new Promise(r => requestAnimationFrame(r));
            const now = performance.now();
            deltas.push(now - last);
            last = now;
        }
        obs.disconnect();
        deltas.sort((a, b) => a - b);
        const q = p => deltas[Math.min(deltas.length - 1, Math.floor(p * deltas.length))];
        return {frames: deltas.length, p50: q(0.5), p95: q(0.95), max: deltas[deltas.length - 1],
                over50: deltas.filter(d => d > 50).length, longTasks: long.length,
                domRows: document.querySelectorAll('[data-testid=log-row]').length};
    }""")
    report = {"rows": BULK_LOGS, "first_page_api_ms": round(api_ms, 1), "first_page_render_after_api_ms": round(ui_ms, 1),
              "scroll_frames": frames["frames"], "frame_p50_ms": round(frames["p50"], 1),
              "frame_p95_ms": round(frames["p95"], 1), "frame_max_ms": round(frames["max"], 1),
              "frames_over_50ms": frames["over50"], "long_tasks": frames["longTasks"], "rows_in_dom": frames["domRows"],
              # the machine's load while measuring: frame times on a shared 2-core machine depend on it
              "load_average_1m": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}
    (browser_helpers.screenshot_dir() / "performance.json").write_text(json.dumps(report, indent=2))
    browser_helpers.REPORT.append("log explorer performance: " + json.dumps(report))
    shot(page, "logs-10k")
    assert frames["domRows"] < 200, "the table must be virtualised"  # behaviour, not timing
