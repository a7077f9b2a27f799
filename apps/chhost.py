"""The embedded ClickHouse host: the one process that owns the chDB data dir, serving ClickHouse's HTTP protocol.

chDB allows one process per data path. Rather than give embedded mode a second client code path, this
host speaks the subset of ClickHouse's HTTP interface that clickhouse-connect and curl use, on loopback:

* ``GET/POST /?query=...`` and query text in the body, ``database``, ``param_*`` bind parameters, and
  any other URL parameter as a query-level setting (as ClickHouse does);
* inserts whose body starts with ``INSERT INTO t (...) FORMAT <fmt>`` followed by the data (what
  clickhouse-connect sends), or a ``query`` parameter with the statement and the data as the body;
* request bodies compressed with gzip, deflate or lz4 (``Content-Encoding``);
* errors as ClickHouse reports them: a non-200 status, ``X-ClickHouse-Exception-Code`` and the message;
* ``/ping`` for health and ``/metrics`` for Prometheus.

So sinks, ``maple query`` and ``maple schema apply`` use the same HTTP client against this host as against
a real server, and any number of them run beside it.
"""

from __future__ import annotations

import asyncio
import email.policy
import json
import logging
import os
import re
import signal
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.parser import BytesParser
from typing import Any

import chdb
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram

from maple.clickhouse import embedded_data_path, embedded_root, host_file
from maple.compression import CorruptPayload, PayloadTooLarge, UnsupportedEncoding, inflate
from maple.metrics import LATENCY_BUCKETS, exposition
from maple.settings import Settings

log = logging.getLogger(__name__)

# URL parameters that shape the transport, not the query; everything else is a setting, as in ClickHouse.
TRANSPORT_PARAMS = frozenset({
    "query", "database", "default_format", "session_id", "session_timeout", "session_check", "compress",
    "decompress", "query_id", "quota_key", "wait_end_of_query", "client_protocol_version", "role",
    "enable_http_compression", "send_progress_in_http_headers", "http_headers_progress_interval_ms",
    "buffer_size", "user", "password", "add_http_cors_header",
})
_INSERT_WITH_DATA = re.compile(r"^\s*INSERT\s+INTO\s+(?P<target>.+?)\s+FORMAT\s+(?P<fmt>[A-Za-z0-9_]+)\s*$",
                               re.IGNORECASE | re.DOTALL)
_TRAILING_FORMAT = re.compile(r"\bFORMAT\s+([A-Za-z0-9_]+)\s*;?\s*$", re.IGNORECASE)
_ERROR_CODE = re.compile(r"Code:\s*(\d+)")
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# ClickHouse's own HTTP status for a few common error codes; the rest are 500.
_STATUS_BY_CODE = {"62": 400, "47": 400, "46": 400, "60": 404, "81": 404, "516": 401, "164": 403}


class RequestError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


@dataclass
class HostMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = Counter("maple_clickhouse_host_requests", "Requests to the embedded ClickHouse host",
                                ["kind", "outcome"], registry=self.registry)
        self.seconds = Histogram("maple_clickhouse_host_request_seconds", "Request latency by kind", ["kind"],
                                 registry=self.registry,
                                 buckets=LATENCY_BUCKETS)
        self.insert_bytes = Counter("maple_clickhouse_host_insert_bytes", "Uncompressed insert payload bytes",
                                    registry=self.registry)


def _quote(value: str) -> str:
    if re.fullmatch(r"-?\d+(\.\d+)?", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass
class Request:
    """One HTTP request reduced to what the engine needs."""

    sql: str
    data: bytes | None
    database: str | None
    settings: dict[str, str]
    params: dict[str, str]
    default_format: str

    @classmethod
    def parse(cls, query: dict[str, str], body: bytes) -> Request:
        settings = {k: v for k, v in query.items() if k not in TRANSPORT_PARAMS and not k.startswith("param_")}
        for name in settings:
            if not _SETTING_NAME.match(name):
                raise RequestError(400, 115, f"invalid setting name {name!r}")
        params = {k[len("param_"):]: v for k, v in query.items() if k.startswith("param_")}
        sql, data = query.get("query", ""), None
        if sql:
            if body:
                if _INSERT_WITH_DATA.match(sql):
                    data = body
                else:
                    sql = sql + "\n" + body.decode("utf-8", errors="strict")
        elif body:
            # clickhouse-connect's inserts: "INSERT INTO t (cols) FORMAT Native\n" then binary data.
            newline = body.find(b"\n")
            head = body[:newline if newline >= 0 else len(body)]
            if _INSERT_WITH_DATA.match(head.decode("utf-8", errors="replace")):
                sql, data = head.decode("utf-8"), body[newline + 1:] if newline >= 0 else b""
            else:
                sql = body.decode("utf-8", errors="strict")
        if not sql.strip():
            raise RequestError(400, 62, "empty query")
        return cls(sql=sql, data=data, database=query.get("database") or None, settings=settings, params=params,
                   default_format=query.get("default_format") or "TabSeparated")


class Engine:
    """The chDB engine behind the host: one connection per worker thread, all on one data path."""

    def __init__(self, path: str, threads: int) -> None:
        self.path = path
        self._local = threading.local()
        self._connections: list[Any] = []
        self._lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="chdb")
        first = chdb.connect(path)  # opens (and locks) the data path now, failing early
        self._connections.append(first)
        self.timezone = first.query("SELECT timezone()", "TabSeparatedRaw").bytes().decode().strip() or "UTC"

    def _connection(self, readonly: str) -> tuple[Any, dict[str, Any]]:
        """This thread's connection for `readonly` (0, 1 or 2) and its state (the database it USEs).

        ClickHouse refuses to change `readonly` once a session is read-only, so a request's `SET readonly = N`
        could never be undone on a shared connection (it would leave the sinks' thread read-only). Each
        thread therefore keeps one connection per level, made read-only once when it is opened."""
        conns: dict[str, tuple[Any, dict[str, Any]]] | None = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        found = conns.get(readonly)
        if found is None:
            conn = chdb.connect(self.path)
            with self._lock:
                self._connections.append(conn)
            if readonly != "0":
                conn.query(f"SET readonly = {int(readonly)}")
            found = conns[readonly] = (conn, {"database": None})
        return found

    def execute(self, request: Request) -> tuple[bytes, str, dict[str, Any]]:
        """Run one request; returns the body, its format and the summary. Raises RequestError."""
        readonly = request.settings.get("readonly", "0").strip() or "0"
        try:
            if readonly not in ("0", "1", "2"):
                raise RequestError(400, 69, f"Code: 69. DB::Exception: readonly must be 0, 1 or 2, not {readonly!r}")
            conn, state = self._connection(readonly)
            database = request.database or "default"
            if state["database"] != database:
                conn.query(f"USE `{database}`")
                state["database"] = database
            if request.data is not None:
                return self._insert(conn, request)
            match = _TRAILING_FORMAT.search(request.sql)
            fmt = match.group(1) if match else request.default_format
            applied = []
            try:
                for name, value in request.settings.items():
                    if name == "readonly":
                        continue  # the connection's own level (see _connection)
                    conn.query(f"SET {name} = {_quote(value)}")
                    applied.append(name)
                result = conn.query(request.sql, fmt, params=request.params)
            finally:
                for name in applied:
                    conn.query(f"SET {name} = DEFAULT")
            summary = {"read_rows": str(result.rows_read()), "read_bytes": str(result.bytes_read()),
                       "elapsed_ns": str(int(result.elapsed() * 1e9))}
            return result.bytes() or b"", fmt, summary
        except RequestError:
            raise
        except Exception as exc:  # chDB raises RuntimeError/ChdbError carrying ClickHouse's "Code: N" text
            message = str(exc)
            match = _ERROR_CODE.search(message)
            code = match.group(1) if match else "1001"
            if not match:
                message = f"Code: 1001. DB::Exception: {message}"
            raise RequestError(_STATUS_BY_CODE.get(code, 500), int(code), message) from exc

    def _insert(self, conn: Any, request: Request) -> tuple[bytes, str, dict[str, Any]]:
        match = _INSERT_WITH_DATA.match(request.sql)
        assert match is not None
        clause = ""
        if request.settings:
            clause = " SETTINGS " + ", ".join(f"{k} = {_quote(v)}" for k, v in request.settings.items())
        with tempfile.NamedTemporaryFile(prefix="maple-insert-", suffix=".bin") as tmp:
            tmp.write(request.data or b"")
            tmp.flush()
            sql = (f"INSERT INTO {match.group('target')} FROM INFILE '{tmp.name}'{clause} "
                   f"FORMAT {match.group('fmt')}")
            result = conn.query(sql)
        # An INFILE insert reads exactly the rows it writes.
        summary = {"written_rows": str(result.rows_read()), "written_bytes": str(result.bytes_read()),
                   "elapsed_ns": str(int(result.elapsed() * 1e9))}
        return b"", "TabSeparated", summary

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        with self._lock:
            for conn in self._connections:
                try:
                    conn.close()
                except Exception:  # closing a connection that a failed query left behind
                    log.debug("closing a chDB connection failed", exc_info=True)
            self._connections.clear()


def form_fields(body: bytes, content_type: str) -> dict[str, str]:
    """The fields of a multipart/form-data body (name -> text)."""
    message = BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    if not message.is_multipart():
        raise RequestError(400, 27, "Code: 27. DB::Exception: malformed multipart/form-data body")
    out = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            payload = part.get_payload(decode=True)
            out[name] = payload.decode("utf-8") if isinstance(payload, bytes) else ""
    return out


def build_app(engine: Engine, metrics: HostMetrics, max_body: int) -> web.Application:
    async def ping(_: web.Request) -> web.Response:
        return web.Response(text="Ok.\n")

    async def prometheus(_: web.Request) -> web.Response:
        body, content_type = exposition(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def query(http: web.Request) -> web.Response:
        started = time.perf_counter()
        kind = "query"
        try:
            raw = await http.read()
            try:
                body = inflate(raw, http.headers.get("Content-Encoding"), max_body)
            except PayloadTooLarge as exc:
                raise RequestError(413, 241, str(exc)) from exc
            except UnsupportedEncoding as exc:
                raise RequestError(415, 48, str(exc)) from exc
            except CorruptPayload as exc:
                raise RequestError(400, 354, str(exc)) from exc
            fields = dict(http.query)
            if http.content_type == "multipart/form-data":
                # clickhouse-connect sends the query and large bound parameters as form fields (ClickHouse
                # reads them like URL parameters)
                fields.update(form_fields(body, http.headers.get("Content-Type", "")))
                body = b""
            request = Request.parse(fields, body)
            if request.data is not None:
                kind = "insert"
                metrics.insert_bytes.inc(len(request.data))
            loop = asyncio.get_running_loop()
            payload, fmt, summary = await loop.run_in_executor(engine.pool, engine.execute, request)
        except RequestError as exc:
            metrics.requests.labels(kind, "error").inc()
            text = str(exc)
            return web.Response(status=exc.status, text=text if text.endswith("\n") else text + "\n",
                                headers={"X-ClickHouse-Exception-Code": str(exc.code)})
        except UnicodeDecodeError:
            metrics.requests.labels(kind, "error").inc()
            return web.Response(status=400, text="Code: 36. DB::Exception: query text is not valid UTF-8\n",
                                headers={"X-ClickHouse-Exception-Code": "36"})
        except web.HTTPRequestEntityTooLarge:
            metrics.requests.labels(kind, "error").inc()
            return web.Response(status=413, text=f"Code: 241. DB::Exception: request body exceeds {max_body} bytes\n",
                                headers={"X-ClickHouse-Exception-Code": "241"})
        metrics.requests.labels(kind, "ok").inc()
        metrics.seconds.labels(kind).observe(time.perf_counter() - started)
        headers = {"X-ClickHouse-Summary": json.dumps(summary), "X-ClickHouse-Format": fmt,
                   "X-ClickHouse-Timezone": engine.timezone,
                   "X-ClickHouse-Server-Display-Name": "maple-embedded"}
        content_type = "text/tab-separated-values; charset=UTF-8" if fmt.startswith("TabSeparated") \
            else "application/octet-stream"
        return web.Response(body=payload, headers={**headers, "Content-Type": content_type})

    app = web.Application(client_max_size=max_body)
    app.router.add_get("/ping", ping)
    app.router.add_get("/metrics", prometheus)
    app.router.add_route("GET", "/", query)
    app.router.add_route("POST", "/", query)
    return app


def serve(settings: Settings, *, threads: int = 4, max_body: int = 1 << 30,
          ready: threading.Event | None = None, stop: threading.Event | None = None) -> None:
    """Own the embedded engine and serve it until SIGTERM/SIGINT (or `stop` is set, for tests)."""
    path = embedded_data_path(settings)
    path.mkdir(parents=True, exist_ok=True)
    engine = Engine(str(path), threads)
    metrics = HostMetrics()
    host, port = settings.clickhouse.embedded_host, settings.clickhouse.embedded_port
    advert = host_file(settings)

    async def main() -> None:
        # Decompression is ours (decode_body), bounded by max_body; aiohttp would inflate gzip unbounded.
        runner = web.AppRunner(build_app(engine, metrics, max_body), access_log=None, auto_decompress=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            raise RuntimeError(f"cannot listen on {host}:{port} ({exc.strerror}); is another host running? "
                               "Choose another port with MAPLE_CLICKHOUSE_EMBEDDED_PORT") from exc
        url = f"http://{host}:{port}"
        embedded_root(settings).mkdir(parents=True, exist_ok=True)
        tmp = advert.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "host": host, "port": port, "url": url,
                                   "version": chdb.__version__}))
        tmp.replace(advert)
        log.info("embedded ClickHouse (chDB %s) serving %s, data %s", chdb.__version__, url, path)
        if ready is not None:
            ready.set()
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, done.set)
        try:
            while not done.is_set() and not (stop is not None and stop.is_set()):
                try:
                    await asyncio.wait_for(done.wait(), timeout=0.2)
                except TimeoutError:
                    pass
        finally:
            advert.unlink(missing_ok=True)
            await runner.cleanup()

    try:
        asyncio.run(main())
    finally:
        engine.close()
        log.info("embedded ClickHouse stopped")
