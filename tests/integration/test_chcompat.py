"""ClickHouse's HTTP protocol as the clients people use speak it, against the test session's ClickHouse.

The session's ClickHouse is Maple's embedded host, or a real server when MAPLE_CLICKHOUSE_URL names one:
every test here that is not about the embedded host itself runs the same against both. The clients are
real: clickhouse-go v2 (Grafana's data source, the Collector's exporter, Jaeger), @clickhouse/client
(HyperDX), clickhouse-connect, and the OpenTelemetry Collector's ClickHouse exporter with
create_schema, all built or installed by apps/peers.py (cached under ~/.cache/maple/peers).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from base64 import b64encode
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest

from apps import chwire, peers
from maple import clickhouse, schema
from maple.net import free_port
from maple.settings import Settings
from tests.helpers.environment import REPO, clean_environ
from tests.helpers.peers import Endpoint, endpoint, maple_column_types, run_json

# Builds from the module proxy take minutes on a cold machine; cached runs take seconds.
pytestmark = pytest.mark.timeout(2400)


@pytest.fixture(scope="module")
def server(clickhouse_settings: Settings) -> Endpoint:
    return endpoint(clickhouse_settings)


@pytest.fixture(scope="module")
def maple_types(clickhouse_settings: Settings) -> Iterator[set[str]]:
    """The column types of Maple's tables, from a database with Maple's schema applied."""
    client = clickhouse.connect(clickhouse_settings, in_process=False)
    database = f"maple_types_{uuid.uuid4().hex[:8]}"
    schema.apply(client, database, say=lambda _m: None)
    try:
        yield maple_column_types(client, database)
    finally:
        client.command(f"DROP DATABASE IF EXISTS `{database}`")
        client.close()


def _http(server: Endpoint, params: dict[str, str], body: bytes | None = None,
          headers: dict[str, str] | None = None, auth: bool = True) -> tuple[int, dict[str, str], bytes]:
    """One raw request; returns status, headers and the undecoded body."""
    request = urllib.request.Request(f"{server.url}/?{urllib.parse.urlencode(params)}", data=body,
                                     headers=dict(headers or {}))
    if auth:
        token = b64encode(f"{server.user}:{server.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


# -- clickhouse-go v2 --------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", ["lz4", "zstd", "gzip", "none"])
def test_clickhouse_go_creates_inserts_and_reads_every_maple_column_type(compress: str, server: Endpoint, ch: Any,
                                                                         maple_types: set[str]) -> None:
    program = peers.ensure("chgo")
    rows = 30_000
    report = run_json([str(program), "-addr", f"{server.host}:{server.port}", "-database", ch.database,
                       "-user", server.user, "-password", server.password, "-compress", compress,
                       "-table", f"chgo_{compress}", "-rows", str(rows), "-batches", "3"])
    assert report["inserted"] == report["read"] == rows
    assert report["param_count"] == len(range(1, rows, 35))  # pod-1 and service-1: i % 35 == 1
    assert report["error_code"] == 395  # throwIf's FUNCTION_THROW_IF_VALUE_IS_NON_ZERO, as a typed exception
    assert maple_types <= set(report["types"]), maple_types - set(report["types"])
    assert report["revision"] > 54_454  # the server hello, read back in Native with serialization kinds


# -- @clickhouse/client (Node) -----------------------------------------------------------------------


def test_node_client_creates_inserts_and_reads_every_maple_column_type(server: Endpoint, ch: Any,
                                                                       maple_types: set[str]) -> None:
    program = peers.ensure("chnode")
    rows = 20_000
    report = run_json(["node", str(program), "--url", server.url, "--user", server.user, "--password",
                       server.password, "--database", ch.database, "--table", "chnode", "--rows", str(rows)],
                      cwd=program.parent)
    assert report["inserted"] == report["read"] == rows
    assert report["param_count"] == len(range(1, rows, 35))
    assert report["session_value"] == 7 and report["outside_session_code"] == "60"
    assert report["error_code"] == "60"
    assert maple_types <= set(report["types"]), maple_types - set(report["types"])


# -- clickhouse-connect with compression -------------------------------------------------------------


@pytest.mark.parametrize("compress", ["lz4", "zstd", "gzip"])
def test_clickhouse_connect_with_compression_round_trips_maples_types(compress: str, server: Endpoint,
                                                                      ch: Any) -> None:
    client = clickhouse_connect.get_client(host=server.host, port=server.port, username=server.user,
                                           password=server.password, database=ch.database, compress=compress)
    try:
        client.command("CREATE TABLE cc (t DateTime64(9), s LowCardinality(String), "
                       "m Map(LowCardinality(String), String), a Array(UInt64), n Array(Map(LowCardinality(String), "
                       "String)), b Bool, f Float64) ENGINE = MergeTree ORDER BY t")
        start = datetime(2026, 11, 28, tzinfo=UTC)
        rows = [[start.replace(microsecond=i % 1_000_000), f"svc-{i % 5}", {"k": str(i)}, [i, 2], [{"j": str(i)}],
                 i % 2 == 0, i / 7] for i in range(50_000)]
        client.insert("cc", rows, column_names=["t", "s", "m", "a", "n", "b", "f"])
        got = client.query("SELECT t, s, m, a, n, b, f FROM cc ORDER BY t, f").result_rows
        assert len(got) == len(rows)
        assert sorted((r[1], r[2]["k"], tuple(r[3])) for r in got) == \
            sorted((r[1], r[2]["k"], tuple(r[3])) for r in rows)
        assert client.query("SELECT sum(a[1]), countIf(b) FROM cc").result_rows == [(sum(range(50_000)), 25_000)]
    finally:
        client.close()


# -- the protocol, byte by byte ----------------------------------------------------------------------


def test_compressed_blocks_both_ways_with_checksums(server: Endpoint, ch: Any) -> None:
    status, headers, body = _http(server, {"query": "SELECT number, toString(number) FROM numbers(100000) "
                                                    "FORMAT TabSeparated", "compress": "1",
                                           "database": ch.database})
    assert status == 200
    text = chwire.decompress_blocks(body, 1 << 30)  # verifies every CityHash128 checksum
    assert text.splitlines()[99_999] == b"99999\t99999"
    assert len(body) < len(text)
    # A damaged block is refused, not decoded into garbage.
    damaged = bytearray(body)
    damaged[40] ^= 0xFF
    with pytest.raises(chwire.WireError, match="checksum"):
        chwire.decompress_blocks(bytes(damaged), 1 << 30)
    # decompress=1: an insert body in ZSTD blocks, as clickhouse-go sends it.
    _http(server, {"query": "CREATE TABLE blocks (n UInt64, s String) ENGINE = MergeTree ORDER BY n",
                   "database": ch.database})
    data = b"".join(f"{i}\tvalue {i}\n".encode() for i in range(10_000))
    framed = b"".join(chwire.compress_blocks(data, chwire.METHOD_ZSTD))
    status, _, body = _http(server, {"query": "INSERT INTO blocks FORMAT TabSeparated", "decompress": "1",
                                     "database": ch.database}, framed)
    assert status == 200, body
    assert ch.query("SELECT count(), sum(n) FROM blocks").result_rows == [(10_000, sum(range(10_000)))]
    status, headers, body = _http(server, {"query": "INSERT INTO blocks FORMAT TabSeparated", "decompress": "1",
                                           "database": ch.database}, framed[:-3])
    assert status >= 400 and headers.get("X-ClickHouse-Exception-Code")


@pytest.mark.parametrize("encoding", ["gzip", "zstd", "lz4", "deflate"])
def test_http_content_encoding_both_ways(encoding: str, server: Endpoint) -> None:
    query = b"SELECT sum(number) FROM numbers(1000) FORMAT TabSeparated"
    if encoding == "gzip":
        body = gzip.compress(query)
    elif encoding == "deflate":
        import zlib
        body = zlib.compress(query)
    elif encoding == "zstd":
        body = chwire.zstd.compress(query)
    else:
        import lz4.frame
        body = lz4.frame.compress(query)
    status, headers, raw = _http(server, {"enable_http_compression": "1"}, body,
                                 {"Content-Encoding": encoding, "Accept-Encoding": encoding})
    assert status == 200 and headers.get("Content-Encoding") == encoding
    from maple.compression import inflate
    decoded = inflate(raw, encoding, 1 << 20) if encoding != "deflate" else __import__("zlib").decompress(raw)
    assert decoded == b"499500\n"


def test_response_headers_say_what_clickhouse_says(server: Endpoint) -> None:
    query_id = f"maple-{uuid.uuid4().hex}"
    status, headers, body = _http(server, {"query": "SELECT number FROM numbers(10) FORMAT JSONEachRow",
                                           "query_id": query_id})
    assert status == 200 and body.count(b"\n") == 10
    assert headers["X-ClickHouse-Query-Id"] == query_id
    assert headers["X-ClickHouse-Format"] == "JSONEachRow"
    assert headers["X-ClickHouse-Timezone"]
    assert int(json.loads(headers["X-ClickHouse-Summary"])["read_rows"]) == 10
    status, headers, body = _http(server, {"query": "SELECT * FROM maple_no_such_table"})
    assert status == 404 and headers["X-ClickHouse-Exception-Code"] == "60"
    assert body.startswith(b"Code: 60. DB::Exception:") and b"(UNKNOWN_TABLE)" in body
    status, headers, body = _http(server, {"query": "SELEKT 1"})
    assert status == 400 and headers["X-ClickHouse-Exception-Code"] == "62"
    # An unknown setting is ClickHouse's error too, by the setting's name.
    status, headers, body = _http(server, {"query": "SELECT 1", "maple_no_such_setting": "1"})
    assert status == 404 and headers["X-ClickHouse-Exception-Code"] == "115" and b"maple_no_such_setting" in body


def test_an_error_after_the_response_began_ends_the_body_with_clickhouses_exception_block(server: Endpoint) -> None:
    status, headers, body = _http(server, {
        "query": "SELECT number, throwIf(number = 2500000, 'maple mid-stream check') FROM numbers(3000000) "
                 "SETTINGS max_block_size = 65536 FORMAT TabSeparated"})
    if not server.embedded and status != 200:
        # A server may buffer the whole result and report the error as a status instead; both are ClickHouse's.
        assert headers["X-ClickHouse-Exception-Code"] == "395"
        return
    assert status == 200
    tag = headers["X-ClickHouse-Exception-Tag"]
    match = re.search(rb"\r\n__exception__\r\n(.{16})\r\n(Code: 395\..*?)\n(\d+) (.{16})\r\n__exception__\r\n$", body,
                      re.DOTALL)
    assert match is not None, body[-600:]
    assert match.group(1).decode() == match.group(4).decode() == tag
    assert b"maple mid-stream check" in match.group(2) and int(match.group(3)) == len(match.group(2))
    assert body.startswith(b"0\t0\n1\t0\n")  # the rows before the error came first


def test_sessions_keep_their_state_and_nothing_leaks_out_of_them(server: Endpoint) -> None:
    session = f"maple-{uuid.uuid4().hex}"
    assert _http(server, {"query": "SET max_threads = 3", "session_id": session})[0] == 200
    assert _http(server, {"query": "CREATE TEMPORARY TABLE tmp (x UInt8)", "session_id": session})[0] == 200
    assert _http(server, {"query": "INSERT INTO tmp VALUES (5)", "session_id": session})[0] == 200
    status, _, body = _http(server, {"query": "SELECT getSetting('max_threads'), (SELECT x FROM tmp)",
                                     "session_id": session})
    assert (status, body) == (200, b"3\t5\n")
    # A query-level setting inside the session applies to that query only; the session's SET survives it.
    assert _http(server, {"query": "SELECT getSetting('max_threads')", "session_id": session,
                          "max_threads": "2"})[2] == b"2\n"
    assert _http(server, {"query": "SELECT getSetting('max_threads')", "session_id": session})[2] == b"3\n"
    # Outside the session neither the setting nor the table exists, and a SET without a session changes nothing.
    assert _http(server, {"query": "SELECT getSetting('max_threads') = 3"})[2] == b"0\n"
    assert _http(server, {"query": "SET max_threads = 1"})[0] == 200
    for _ in range(6):  # every pooled connection
        assert _http(server, {"query": "SELECT getSetting('max_threads') = 1"})[2] == b"0\n"
    status, headers, _ = _http(server, {"query": "SELECT x FROM tmp"})
    assert headers.get("X-ClickHouse-Exception-Code") == "60"
    status, headers, _ = _http(server, {"query": "SELECT 1", "session_id": f"maple-{uuid.uuid4().hex}",
                                        "session_check": "1"})
    assert headers.get("X-ClickHouse-Exception-Code") == "372"


def test_health_endpoints(server: Endpoint) -> None:
    for path in ("/ping", "/replicas_status"):
        with urllib.request.urlopen(server.url + path, timeout=10) as response:
            assert response.status == 200 and response.read() == b"Ok.\n"


# -- users: the embedded host's own ------------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded_host(tmp_path_factory: pytest.TempPathFactory, clickhouse_settings: Settings) -> Iterator[Endpoint]:
    """A second embedded host (its own process and data dir) with a user and a password."""
    if clickhouse_settings.clickhouse.url:
        pytest.skip("users of the embedded host: MAPLE_CLICKHOUSE_URL points at a server, which has its own")
    port = free_port()
    env = clean_environ(MAPLE_DATA_DIR=str(tmp_path_factory.mktemp("guarded")), MAPLE_CLICKHOUSE_EMBEDDED_PORT=str(port),
                        MAPLE_CLICKHOUSE_EMBEDDED_USER="grafana", MAPLE_CLICKHOUSE_EMBEDDED_PASSWORD="s3cret pw")
    log = tmp_path_factory.mktemp("guarded-log") / "host.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "apps", "clickhouse", "serve"], cwd=REPO, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.2)
        yield Endpoint("127.0.0.1", port, "grafana", "s3cret pw", embedded=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_the_host_takes_basic_and_header_authentication_with_the_configured_user(guarded_host: Endpoint) -> None:
    query = {"query": "SELECT currentUser() != '' FORMAT TabSeparated"}
    assert _http(guarded_host, query)[:3:2] == (200, b"1\n")
    assert _http(guarded_host, query, headers={"X-ClickHouse-User": "grafana", "X-ClickHouse-Key": "s3cret pw"},
                 auth=False)[:3:2] == (200, b"1\n")
    status, headers, body = _http(guarded_host, query, auth=False)
    assert status == 401 and headers["X-ClickHouse-Exception-Code"] == "194" and "WWW-Authenticate" in headers
    wrong = Endpoint(guarded_host.host, guarded_host.port, "grafana", "nope", True)
    status, headers, body = _http(wrong, query)
    assert status == 403 and headers["X-ClickHouse-Exception-Code"] == "516" and b"s3cret" not in body
    other = Endpoint(guarded_host.host, guarded_host.port, "default", "s3cret pw", True)
    assert _http(other, query)[0] == 403
    # The real clients authenticate the way they always do.
    report = run_json([str(peers.ensure("chgo")), "-addr", f"127.0.0.1:{guarded_host.port}", "-user", "grafana",
                       "-password", "s3cret pw", "-rows", "1000", "-batches", "2"])
    assert report["read"] == 1000
    program = peers.ensure("chnode")
    report = run_json(["node", str(program), "--url", guarded_host.url, "--user", "grafana", "--password",
                       "s3cret pw", "--rows", "1000"], cwd=program.parent)
    assert report["read"] == 1000


def test_the_host_refuses_to_serve_beyond_loopback_without_a_password(tmp_path: Path) -> None:
    env = clean_environ(MAPLE_DATA_DIR=str(tmp_path), MAPLE_CLICKHOUSE_EMBEDDED_HOST="0.0.0.0",
                        MAPLE_CLICKHOUSE_EMBEDDED_PORT=str(free_port()))
    result = subprocess.run([sys.executable, "-m", "apps", "clickhouse", "serve"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "clickhouse.embedded_password (MAPLE_CLICKHOUSE_EMBEDDED_PASSWORD)" in result.stderr
    assert "clickhouse.embedded_host" in result.stderr


# -- the Collector's ClickHouse exporter -------------------------------------------------------------


def _collector_config(server: Endpoint, database: str, grpc_port: int) -> str:
    return f"""
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc_port}
exporters:
  clickhouse:
    endpoint: {server.url}
    username: {json.dumps(server.user)}
    password: {json.dumps(server.password)}
    database: {database}
    create_schema: true
    timeout: 30s
    sending_queue:
      enabled: false
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [clickhouse]
    logs:
      receivers: [otlp]
      exporters: [clickhouse]
    metrics:
      receivers: [otlp]
      exporters: [clickhouse]
"""


def _compatible(exporter: str, maple: str) -> bool:
    """Same type, or the same once LowCardinality and SimpleAggregateFunction are set aside: both read and
    insert as their inner type (Maple's trace-id lookup aggregates Start/End with min/max; docs/schema.md)."""
    def plain(text: str) -> str:
        text = re.sub(r"SimpleAggregateFunction\(\w+, (.*)\)$", r"\1", text)
        return re.sub(r"LowCardinality\((.*?)\)", r"\1", text)
    return exporter == maple or plain(exporter) == plain(maple)


def test_collector_exporter_writes_otlp_through_the_host_and_its_tables_match_maples(
        server: Endpoint, clickhouse_settings: Settings, tmp_path: Path) -> None:
    otelcol, telemetrygen = peers.ensure("otelcol"), peers.ensure("telemetrygen")
    exporter_db, maple_db = f"exporter_{uuid.uuid4().hex[:8]}", f"maple_{uuid.uuid4().hex[:8]}"
    grpc_port = free_port()
    config = tmp_path / "collector.yaml"
    config.write_text(_collector_config(server, exporter_db, grpc_port))
    log = tmp_path / "collector.log"
    client = clickhouse.connect(clickhouse_settings, in_process=False)
    with log.open("wb") as out:
        collector = subprocess.Popen([str(otelcol), f"--config={config}"], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:  # the exporter creates its database and tables before the receiver listens
            try:
                with socket.create_connection(("127.0.0.1", grpc_port), timeout=1):
                    break
            except OSError:
                assert collector.poll() is None and time.monotonic() < deadline, log.read_text()[-4000:]
                time.sleep(0.3)
        common = ["--otlp-endpoint", f"127.0.0.1:{grpc_port}", "--otlp-insecure", "--rate", "200",
                  "--service", "maple-chcompat"]
        for signal_args in (["traces", "--traces", "50"], ["logs", "--logs", "50"],
                            ["metrics", "--metrics", "50"]):
            subprocess.run([str(telemetrygen), *signal_args, *common], check=True, capture_output=True, timeout=120)
        expected = {"otel_traces": 100, "otel_logs": 50, "otel_metrics_gauge": 50}  # a trace is 2 spans
        counts: dict[str, int] = {}
        while time.monotonic() < deadline + 120:
            counts = {table: int(client.query(f"SELECT count() FROM `{exporter_db}`.{table} "
                                              "WHERE ServiceName = 'maple-chcompat'").result_rows[0][0])
                      for table in expected}
            if counts == expected:
                break
            assert collector.poll() is None, log.read_text()[-4000:]
            time.sleep(0.5)
        assert counts == expected, log.read_text()[-4000:]
        assert "error" not in log.read_text().lower(), log.read_text()[-4000:]
    finally:
        collector.send_signal(signal.SIGTERM)
        collector.wait(60)
    try:
        schema.apply(client, maple_db, say=lambda _m: None)
        tables = [row[0] for row in client.query(
            "SELECT name FROM system.tables WHERE database = {db:String} AND engine NOT LIKE '%View'",
            parameters={"db": exporter_db}).result_rows]
        assert {"otel_logs", "otel_traces", "otel_metrics_gauge", "otel_metrics_sum", "otel_metrics_histogram",
                "otel_metrics_exponential_histogram", "otel_metrics_summary"} <= set(tables)
        mismatches = []
        for table in tables:
            def columns(database: str, table: str = table) -> dict[str, str]:
                return dict(client.query("SELECT name, type FROM system.columns WHERE database = {db:String} "
                                         "AND table = {t:String}", parameters={"db": database, "t": table}
                                         ).result_rows)
            ours = columns(maple_db)
            assert ours, f"Maple has no table {table}"
            for name, type_ in columns(exporter_db).items():
                if name not in ours or not _compatible(type_, ours[name]):
                    mismatches.append(f"{table}.{name}: exporter {type_}, Maple {ours.get(name, 'missing')}")
        assert not mismatches, "\n".join(mismatches)
        # The exporter chose text indexes on this server exactly when Maple does.
        text = schema.server_has_text_indexes(client)
        kinds = {row[0] for row in client.query(
            "SELECT DISTINCT type FROM system.data_skipping_indices WHERE database = {db:String} "
            "AND table = 'otel_logs'", parameters={"db": exporter_db}).result_rows}
        ours_kinds = {row[0] for row in client.query(
            "SELECT DISTINCT type FROM system.data_skipping_indices WHERE database = {db:String} "
            "AND table = 'otel_logs'", parameters={"db": maple_db}).result_rows}
        assert ("text" in kinds) == text == ("text" in ours_kinds)
    finally:
        for database in (exporter_db, maple_db):
            client.command(f"DROP DATABASE IF EXISTS `{database}`")
        client.close()


def test_peer_builds_are_cached_by_their_inputs() -> None:
    """A second ensure() is a hash and a stat; the stamp records what was built from what."""
    program = peers.ensure("chgo")
    started = time.monotonic()
    assert peers.ensure("chgo") == program
    assert time.monotonic() - started < 5
    stamp = json.loads((program.parent / "build.json").read_text())
    assert stamp["inputs"] == peers.PEERS["chgo"].inputs_hash() and stamp["version"] == "v2"


def test_peer_builder_says_what_is_missing_without_go(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path), "MAPLE_CACHE_DIR": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-m", "apps.peers", "build", "telemetrygen"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "`go` is not on PATH" in result.stderr and "go.dev/dl" in result.stderr
