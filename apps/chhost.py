"""The embedded ClickHouse host: the one process that owns the chDB data dir, serving ClickHouse's HTTP protocol.

chDB allows one process per data path. Rather than give embedded mode a second client code path, this
host speaks ClickHouse's HTTP interface, as the clients people use exercise it (clickhouse-connect,
clickhouse-go v2 inside Grafana's data source and the Collector's exporter, the Node client inside
HyperDX, curl), on loopback by default:

* ``GET/POST /`` with the query in ``query`` or the body, ``database``, ``default_format``,
  ``param_*`` bind parameters, ``query_id``, and any other URL parameter (or ``X-ClickHouse-Setting-*``
  header, none here) as a query-level setting, as ClickHouse does;
* inserts whose body is ``INSERT INTO t (...) FORMAT <fmt>`` followed by the data, or a ``query``
  parameter with the statement and the data as the body;
* ``Content-Encoding`` gzip, deflate, zstd and lz4 request bodies, and responses in the encoding the
  client accepts when it sends ``enable_http_compression=1``;
* ClickHouse's own compressed-block framing: ``decompress=1`` request bodies and ``compress=1``
  responses (LZ4 or ZSTD, CityHash128 checksums; apps/chwire.py);
* Native output in the layout of the client's ``client_protocol_version`` (chDB writes revision 0);
* ``session_id`` sessions (``session_timeout``, ``session_check``) with their own settings, database and
  temporary tables; a session serves one query at a time, as in ClickHouse;
* users: one configured user (``clickhouse.embedded_user``, ``clickhouse.embedded_password``) by HTTP
  basic auth, ``X-ClickHouse-User``/``X-ClickHouse-Key`` headers or ``user``/``password`` parameters;
* responses with ClickHouse's headers (``X-ClickHouse-Query-Id``, ``-Format``, ``-Timezone``,
  ``-Summary``, ``-Server-Display-Name``, ``-Exception-Code`` and ``-Exception-Tag``); errors before the
  first byte as a non-200 status with ClickHouse's text, errors after it as ClickHouse's framed
  ``__exception__`` block at the end of the body;
* ``/ping`` and ``/replicas_status`` for health, ``/metrics`` for Prometheus.

So sinks, ``maple query`` and ``maple schema apply`` use the same HTTP client against this host as against
a real server, and so do Grafana, HyperDX and the Collector.
"""

from __future__ import annotations

import asyncio
import base64
import email.policy
import hmac
import json
import logging
import os
import re
import signal
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.parser import BytesParser
from typing import Any

import chdb
import lz4.frame
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from apps import chwire
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
    "buffer_size", "user", "password", "add_http_cors_header", "http_zlib_compression_level",
    "network_compression_method", "network_zstd_compression_level", "http_response_buffer_size",
})
_INSERT_WITH_DATA = re.compile(r"^\s*INSERT\s+INTO\s+(?P<target>.+?)\s+FORMAT\s+(?P<fmt>[A-Za-z0-9_]+)\s*$",
                               re.IGNORECASE | re.DOTALL)
_TRAILING_FORMAT = re.compile(r"\bFORMAT\s+([A-Za-z0-9_]+)\s*;?\s*$", re.IGNORECASE)
_ERROR_CODE = re.compile(r"Code:\s*(\d+)")
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SESSION_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
# SELECTs stream (chDB streams nothing else); the rest run to completion (SHOW, DESCRIBE, DDL, SET).
_ROWS = re.compile(r"^\s*(\(\s*)*(SELECT|WITH)\b", re.IGNORECASE)
# chDB writes each streamed chunk as a whole document (JSON's meta, CSVWithNames' header again), so only
# formats without a header or footer stream; the others are produced whole.
_STREAMABLE = frozenset({
    "native", "tabseparated", "tsv", "tabseparatedraw", "tsvraw", "csv", "jsoneachrow", "jsonlines", "ndjson",
    "jsoncompacteachrow", "jsonstringseachrow", "jsoncompactstringseachrow", "rowbinary", "lineasstring",
})
_SESSION_STATE = re.compile(r"^\s*(SET|USE)\b", re.IGNORECASE)
_USE = re.compile(r"^\s*USE\s+`?([A-Za-z0-9_]+)`?\s*;?\s*$", re.IGNORECASE)

# ClickHouse's mapping from an exception to an HTTP status (exceptionCodeToHTTPStatus), by error name.
_STATUS_BY_NAME: dict[str, int] = {
    "REQUIRED_PASSWORD": 401,
    **dict.fromkeys(("UNKNOWN_USER", "WRONG_PASSWORD", "AUTHENTICATION_FAILED", "SET_NON_GRANTED_ROLE",
                     "ACCESS_DENIED"), 403),
    **dict.fromkeys((
        "BAD_ARGUMENTS", "CANNOT_COMPILE_REGEXP", "CANNOT_PARSE_TEXT", "CANNOT_PARSE_ESCAPE_SEQUENCE",
        "CANNOT_PARSE_QUOTED_STRING", "CANNOT_PARSE_DATE", "CANNOT_PARSE_DATETIME", "CANNOT_PARSE_NUMBER",
        "CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING", "CANNOT_PARSE_IPV4", "CANNOT_PARSE_IPV6",
        "CANNOT_PARSE_INPUT_ASSERTION_FAILED", "CANNOT_PARSE_UUID", "DUPLICATE_COLUMN", "ILLEGAL_COLUMN",
        "UNKNOWN_ELEMENT_IN_AST", "UNKNOWN_TYPE_OF_AST_NODE", "THERE_IS_NO_COLUMN", "TOO_DEEP_AST", "TOO_BIG_AST",
        "UNEXPECTED_AST_STRUCTURE", "SYNTAX_ERROR", "INCORRECT_DATA", "TYPE_MISMATCH",
        "VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE"), 400),
    **dict.fromkeys((
        "UNKNOWN_TABLE", "UNKNOWN_FUNCTION", "UNKNOWN_IDENTIFIER", "UNKNOWN_TYPE", "UNKNOWN_STORAGE",
        "UNKNOWN_DATABASE", "UNKNOWN_SETTING", "UNKNOWN_DIRECTION_OF_SORTING", "UNKNOWN_AGGREGATE_FUNCTION",
        "UNKNOWN_FORMAT", "UNKNOWN_DATABASE_ENGINE", "UNKNOWN_TYPE_OF_QUERY", "UNKNOWN_ROLE"), 404),
    "QUERY_IS_TOO_LARGE": 413, "NOT_IMPLEMENTED": 501, "SOCKET_TIMEOUT": 503, "CANNOT_OPEN_FILE": 503,
    "HTTP_LENGTH_REQUIRED": 411, "TIMEOUT_EXCEEDED": 408, "CANNOT_SCHEDULE_TASK": 503, "UNSUPPORTED_MEDIA_TYPE": 415,
}
# Codes the host raises itself (ClickHouse's numbers).
UNKNOWN_EXCEPTION = 1002
NOT_IMPLEMENTED, SYNTAX_ERROR, BAD_ARGUMENTS = 48, 62, 36
CANNOT_DECOMPRESS, CHECKSUM_DOESNT_MATCH, TOO_LARGE = 271, 40, 241
SESSION_NOT_FOUND, SESSION_IS_LOCKED, AUTHENTICATION_FAILED, REQUIRED_PASSWORD = 372, 373, 516, 194
UNSUPPORTED_METHOD, UNKNOWN_SETTING, UNSUPPORTED_MEDIA = 1, 115, 415

# Response Content-Encodings the host can produce, in the order it prefers them when the client accepts several.
_HTTP_ENCODINGS = ("zstd", "lz4", "gzip", "deflate")
# Bytes of a result held back before the response starts, so that short results get an exact summary
# and an error in them a proper status (ClickHouse's http_response_buffer_size does the same).
RESPONSE_BUFFER = 1 << 20
MAX_SESSIONS = 256


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
        self.sessions = Gauge("maple_clickhouse_host_sessions", "Open HTTP sessions", registry=self.registry)


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
    protocol_version: int = 0

    @classmethod
    def parse(cls, query: dict[str, str], body: bytes) -> Request:
        settings = {k: v for k, v in query.items() if k not in TRANSPORT_PARAMS and not k.startswith("param_")}
        for name in settings:
            if not _SETTING_NAME.match(name):
                raise RequestError(400, UNKNOWN_SETTING, f"Code: 115. DB::Exception: invalid setting name {name!r}. "
                                                         "(UNKNOWN_SETTING)")
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
            raise RequestError(400, SYNTAX_ERROR, "Code: 62. DB::Exception: Empty query. (SYNTAX_ERROR)")
        try:
            version = int(query.get("client_protocol_version") or 0)
        except ValueError:
            raise RequestError(400, BAD_ARGUMENTS, "Code: 36. DB::Exception: client_protocol_version must be an "
                                                   "integer. (BAD_ARGUMENTS)") from None
        return cls(sql=sql, data=data, database=query.get("database") or None, settings=settings, params=params,
                   default_format=query.get("default_format") or "TabSeparated", protocol_version=version)

    @property
    def output_format(self) -> str:
        match = _TRAILING_FORMAT.search(self.sql)
        return match.group(1) if match else self.default_format


@dataclass
class Summary:
    read_rows: int = 0
    read_bytes: int = 0
    written_rows: int = 0
    written_bytes: int = 0
    result_rows: int = 0
    result_bytes: int = 0
    elapsed_ns: int = 0

    def header(self) -> str:
        fields = {"read_rows": self.read_rows, "read_bytes": self.read_bytes, "written_rows": self.written_rows,
                  "written_bytes": self.written_bytes, "total_rows_to_read": self.read_rows,
                  "result_rows": self.result_rows, "result_bytes": self.result_bytes, "elapsed_ns": self.elapsed_ns}
        return json.dumps({k: str(v) for k, v in fields.items()}, separators=(",", ":"))


@dataclass
class Session:
    """A ``session_id`` session: its own chDB connection (settings, current database, temporary tables)."""

    conn: Any
    timeout: float
    expires: float
    database: str = "default"
    lock: threading.Lock = field(default_factory=threading.Lock)


class Engine:
    """The chDB engine behind the host: one connection per worker thread, one per session, one data path."""

    def __init__(self, path: str, threads: int) -> None:
        self.path = path
        self._local = threading.local()
        self._connections: list[Any] = []
        self._lock = threading.Lock()
        self.sessions: dict[str, Session] = {}
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="chdb")
        first = chdb.connect(path)  # opens (and locks) the data path now, failing early
        self._connections.append(first)
        info = first.query("SELECT timezone(), version(), revision()", "TabSeparatedRaw").bytes().decode().split("\t")
        self.timezone, self.version, self.revision = info[0] or "UTC", info[1], int(info[2])
        rows = first.query("SELECT number, errorCodeToName(number) FROM numbers(2000) "
                           "WHERE errorCodeToName(number) != ''", "TabSeparatedRaw").bytes().decode().splitlines()
        self.code_names = {int(code): name for code, name in (row.split("\t") for row in rows)}

    def status(self, code: int) -> int:
        return _STATUS_BY_NAME.get(self.code_names.get(code, ""), 500)

    def error(self, exc: Exception) -> RequestError:
        """A chDB error as ClickHouse reports it: its code, the status for that code, its text."""
        message = str(exc)
        for prefix in ("Streaming query failed: ", "Query failed: "):
            message = message.removeprefix(prefix)
        match = _ERROR_CODE.search(message)
        code = int(match.group(1)) if match else UNKNOWN_EXCEPTION
        if match:
            message = message[match.start():]
        else:
            message = f"Code: {code}. DB::Exception: {message}. (UNKNOWN_EXCEPTION)"
        if "(version " not in message:
            message = f"{message.rstrip()} (version {self.version})"
        return RequestError(self.status(code), code, message)

    def _connection(self, readonly: str = "0") -> Any:
        """This thread's pooled connection for a `readonly` level (0, 1 or 2).

        ClickHouse refuses to change `readonly` once a connection is read-only, so a request's readonly
        setting could never be undone on a shared connection (it would leave the thread read-only for the
        sinks' inserts that come next). Each thread keeps one connection per level instead, made read-only
        once when it is opened."""
        if readonly not in ("0", "1", "2"):
            raise RequestError(400, BAD_ARGUMENTS, f"Code: 36. DB::Exception: readonly must be 0, 1 or 2, not "
                                                   f"{readonly!r}. (BAD_ARGUMENTS)")
        conns: dict[str, Any] | None = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
            self._local.databases = {}
        conn = conns.get(readonly)
        if conn is None:
            conn = chdb.connect(self.path)
            with self._lock:
                self._connections.append(conn)
            if readonly != "0":
                conn.query(f"SET readonly = {int(readonly)}")
            conns[readonly] = conn
        return conn

    # -- sessions -------------------------------------------------------------------------------------

    def session(self, session_id: str, timeout: float, check: bool) -> Session:
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            session = self.sessions.get(session_id)
            if session is None:
                if check:
                    raise RequestError(self.status(SESSION_NOT_FOUND), SESSION_NOT_FOUND,
                                       f"Code: 372. DB::Exception: Session {session_id} not found. (SESSION_NOT_FOUND)")
                if len(self.sessions) >= MAX_SESSIONS:
                    raise RequestError(self.status(202), 202, f"Code: 202. DB::Exception: Too many sessions (at most "
                                                 f"{MAX_SESSIONS}) are open. (TOO_MANY_SIMULTANEOUS_QUERIES)")
                conn = chdb.connect(self.path)
                self._connections.append(conn)
                session = self.sessions[session_id] = Session(conn, timeout, now + timeout)
            session.timeout = timeout
            session.expires = now + timeout
            return session

    def _expire(self, now: float) -> None:
        for name in [n for n, s in self.sessions.items() if s.expires < now and not s.lock.locked()]:
            session = self.sessions.pop(name)
            self._connections.remove(session.conn)
            try:
                session.conn.close()
            except Exception:
                log.debug("closing an expired session's connection failed", exc_info=True)

    def expire_sessions(self) -> int:
        with self._lock:
            self._expire(time.monotonic())
            return len(self.sessions)

    # -- running --------------------------------------------------------------------------------------

    def run(self, request: Request, session: Session | None, emit: Callable[[bytes], None]) -> Summary:
        """Run one request on a pool thread, passing the output to `emit` as it is produced.

        Raises RequestError (before or after output began)."""
        if session is None:
            return self._run(self._connection(request.settings.get("readonly", "0").strip() or "0"), request, None,
                             emit)
        if not session.lock.acquire(blocking=False):
            raise RequestError(self.status(SESSION_IS_LOCKED), SESSION_IS_LOCKED,
                               "Code: 373. DB::Exception: Session is locked by a concurrent client. "
                               "(SESSION_IS_LOCKED)")
        try:
            return self._run(session.conn, request, session, emit)
        finally:
            session.expires = time.monotonic() + session.timeout
            session.lock.release()

    def _run(self, conn: Any, request: Request, session: Session | None, emit: Callable[[bytes], None]) -> Summary:
        started = time.perf_counter_ns()
        try:
            if session is None and _SESSION_STATE.match(request.sql):
                # Without a session, SET and USE change nothing beyond their own query (as in ClickHouse):
                # run them on a throwaway connection so that the pooled one keeps its state.
                scratch = chdb.connect(self.path)
                try:
                    scratch.query(request.sql)
                finally:
                    scratch.close()
                return Summary(elapsed_ns=time.perf_counter_ns() - started)
            self._use(conn, request, session)
            if request.data is not None:
                return self._insert(conn, request, started)
            with self._settings(conn, request, session):
                return self._select(conn, request, session, emit, started)
        except (RequestError, chwire.WireError):
            raise
        except Exception as exc:  # chDB raises RuntimeError/ChdbError carrying ClickHouse's "Code: N" text
            raise self.error(exc) from exc

    def _use(self, conn: Any, request: Request, session: Session | None) -> None:
        database = request.database or (session.database if session is not None else "default")
        if session is not None:
            conn.query(f"USE `{database.replace('`', '')}`")
            return
        databases: dict[int, str] = self._local.databases  # per pooled connection of this thread
        if databases.get(id(conn)) != database:
            conn.query(f"USE `{database.replace('`', '')}`")
            databases[id(conn)] = database

    @contextmanager
    def _settings(self, conn: Any, request: Request, session: Session | None) -> Iterator[None]:
        """Apply the request's settings for one query; they are undone after it, as in ClickHouse."""
        restore: dict[str, str] = {}
        if session is not None and request.settings:
            # A session's own SET values survive the query: restore them rather than the defaults.
            names = ", ".join(_quote(n) for n in request.settings)
            rows = conn.query(f"SELECT name, value FROM system.settings WHERE changed AND name IN ({names})",
                              "TabSeparatedRaw").bytes().decode().splitlines()
            restore = dict(row.split("\t", 1) for row in rows)
        applied = []
        try:
            for name, value in request.settings.items():
                if name == "readonly" and session is None:
                    continue  # the pooled connection is at that level already (see _connection)
                conn.query(f"SET {name} = {_quote(value)}")
                applied.append(name)
            yield
        finally:
            for name in applied:
                previous = restore.get(name)
                conn.query(f"SET {name} = " + ("DEFAULT" if previous is None else _quote(previous)))

    def _select(self, conn: Any, request: Request, session: Session | None, emit: Callable[[bytes], None],
                started: int) -> Summary:
        fmt = request.output_format
        relayout = chwire.NativeRelayout(request.protocol_version) if fmt == "Native" else None
        summary = Summary()
        if _ROWS.match(request.sql) and fmt.lower() in _STREAMABLE:
            stream = conn.send_query(request.sql, fmt, params=request.params or None)
            try:
                for chunk in stream:
                    data = chunk.bytes() or b""
                    summary.read_rows += chunk.rows_read()
                    summary.read_bytes += chunk.bytes_read()
                    if relayout is not None:
                        data = relayout.feed(data)
                    if data:
                        summary.result_bytes += len(data)
                        emit(data)
            finally:
                stream.close()
            summary.result_rows = summary.read_rows
        else:
            result = conn.query(request.sql, fmt, params=request.params or None)
            data = result.bytes() or b""
            summary.read_rows, summary.read_bytes = result.rows_read(), result.bytes_read()
            summary.written_rows, summary.written_bytes = result.rows_written(), result.bytes_written()
            if relayout is not None:
                data = relayout.feed(data)
            if data:
                summary.result_bytes = len(data)
                emit(data)
            use = _USE.match(request.sql)
            if session is not None and use:
                session.database = use.group(1)
        if relayout is not None:
            relayout.finish()
        summary.elapsed_ns = time.perf_counter_ns() - started
        return summary

    def _insert(self, conn: Any, request: Request, started: int) -> Summary:
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
        return Summary(written_rows=result.rows_read(), written_bytes=len(request.data or b""),
                       elapsed_ns=time.perf_counter_ns() - started)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        with self._lock:
            for conn in self._connections:
                try:
                    conn.close()
                except Exception:  # closing a connection that a failed query left behind
                    log.debug("closing a chDB connection failed", exc_info=True)
            self._connections.clear()
            self.sessions.clear()


# -- users -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Users:
    """The host's one user; with no password set, any request is that user (loopback only)."""

    user: str
    password: str

    def check(self, http: web.Request) -> None:
        user, password = self.user, ""
        given_user: str | None = None
        auth = http.headers.get("Authorization", "")
        if auth[:6].lower() == "basic ":
            try:
                given_user, _, password = base64.b64decode(auth[6:].strip()).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise RequestError(403, AUTHENTICATION_FAILED, "Code: 516. DB::Exception: malformed basic "
                                   "authentication header. (AUTHENTICATION_FAILED)") from None
        elif "X-ClickHouse-User" in http.headers or "X-ClickHouse-Key" in http.headers:
            given_user = http.headers.get("X-ClickHouse-User", "default")
            password = http.headers.get("X-ClickHouse-Key", "")
        elif "user" in http.query or "password" in http.query:
            given_user = http.query.get("user", "default")
            password = http.query.get("password", "")
        if given_user is not None and given_user != user and not (given_user == "default" and not self.password
                                                                   and user == "default"):
            raise RequestError(403, AUTHENTICATION_FAILED, f"Code: 516. DB::Exception: {given_user}: Authentication "
                                                           "failed: password is incorrect, or there is no user with "
                                                           "such name. (AUTHENTICATION_FAILED)")
        if self.password and not hmac.compare_digest(password.encode(), self.password.encode()):
            name = given_user or "default"
            if not password:
                raise RequestError(401, REQUIRED_PASSWORD, f"Code: 194. DB::Exception: {name}: Authentication "
                                                           "failed: password is required. (REQUIRED_PASSWORD)")
            raise RequestError(403, AUTHENTICATION_FAILED, f"Code: 516. DB::Exception: {name}: Authentication failed: "
                                                           "password is incorrect, or there is no user with such "
                                                           "name. (AUTHENTICATION_FAILED)")


# -- the HTTP side -----------------------------------------------------------------------------------


class _Encoder:
    """The response body's encodings: ClickHouse's compressed blocks (compress=1), then Content-Encoding."""

    def __init__(self, blocks: int | None, http: str | None, level: int) -> None:
        self.blocks, self.http = blocks, http
        self._compressor: Any = None
        if http == "gzip":
            self._compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
        elif http == "deflate":
            self._compressor = zlib.compressobj(level, zlib.DEFLATED, 15)
        elif http == "zstd":
            self._compressor = chwire.zstd.ZstdCompressor(level)
        elif http == "lz4":
            self._compressor = lz4.frame.LZ4FrameCompressor()
            self._lz4_begun = False

    def encode(self, data: bytes) -> bytes:
        if self.blocks is not None and data:
            data = b"".join(chwire.compress_blocks(data, self.blocks))
        return self._http(data)

    def _http(self, data: bytes) -> bytes:
        if self._compressor is None or not data:
            return data
        if self.http == "lz4":
            head = b"" if self._lz4_begun else self._compressor.begin()
            self._lz4_begun = True
            return head + self._compressor.compress(data)
        if self.http == "zstd":
            return bytes(self._compressor.compress(data, chwire.zstd.ZstdCompressor.FLUSH_BLOCK))
        return bytes(self._compressor.compress(data))

    def raw(self, data: bytes) -> bytes:
        """Bytes outside the compressed blocks (the exception block), still under Content-Encoding."""
        return self._http(data)

    def finish(self) -> bytes:
        if self._compressor is None:
            return b""
        if self.http == "lz4":
            head = b"" if self._lz4_begun else self._compressor.begin()
            return head + self._compressor.flush()
        return bytes(self._compressor.flush())


def _content_type(fmt: str) -> str:
    if fmt.startswith("TabSeparated") or fmt.startswith("TSV"):
        return "text/tab-separated-values; charset=UTF-8"
    if fmt.startswith("JSON"):
        return "application/json; charset=UTF-8"
    if fmt.startswith("CSV"):
        return "text/csv; charset=UTF-8; header=absent"
    if fmt in ("Native", "RowBinary", "RowBinaryWithNames", "RowBinaryWithNamesAndTypes", "Parquet", "Arrow",
               "ArrowStream", "ORC", "Avro", "Protobuf", "MsgPack"):
        return "application/octet-stream"
    return "text/plain; charset=UTF-8"


def _accepted_encoding(http: web.Request) -> str | None:
    if http.query.get("enable_http_compression", "0") in ("0", "", "false"):
        return None
    offered = [p.split(";")[0].strip().lower() for p in http.headers.get("Accept-Encoding", "").split(",")]
    for name in _HTTP_ENCODINGS:
        if name in offered:
            return name
    return None


def _block_method(query: Any) -> int | None:
    if query.get("compress", "0") in ("0", "", "false"):
        return None
    method = query.get("network_compression_method", "lz4").lower()
    if method not in chwire.METHODS:
        raise RequestError(400, BAD_ARGUMENTS, f"Code: 36. DB::Exception: Unknown network_compression_method "
                                               f"{method!r}; use lz4, zstd or none. (BAD_ARGUMENTS)")
    return chwire.METHODS[method]


def form_fields(body: bytes, content_type: str) -> dict[str, str]:
    """The fields of a multipart/form-data body (name -> text)."""
    message = BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    if not message.is_multipart():
        raise RequestError(400, BAD_ARGUMENTS, "Code: 36. DB::Exception: malformed multipart/form-data body. "
                                               "(BAD_ARGUMENTS)")
    out = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            payload = part.get_payload(decode=True)
            out[name] = payload.decode("utf-8") if isinstance(payload, bytes) else ""
    return out


def build_app(engine: Engine, metrics: HostMetrics, max_body: int, users: Users) -> web.Application:
    async def ping(_: web.Request) -> web.Response:
        return web.Response(text="Ok.\n")

    async def replicas_status(http: web.Request) -> web.Response:
        # The embedded engine has no replicated tables, so no replica can lag behind.
        return web.Response(text="Ok.\n")

    async def prometheus(_: web.Request) -> web.Response:
        metrics.sessions.set(engine.expire_sessions())
        body, content_type = exposition(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": content_type})

    def error_response(exc: RequestError, encoder: _Encoder | None, headers: dict[str, str]) -> web.Response:
        text = str(exc)
        body = (text if text.endswith("\n") else text + "\n").encode()
        out = {**headers, "X-ClickHouse-Exception-Code": str(exc.code), "Content-Type": "text/plain; charset=UTF-8"}
        if exc.status == 401:
            out["WWW-Authenticate"] = 'Basic realm="ClickHouse server HTTP API"'

        if encoder is not None:
            body = encoder.encode(body) + encoder.finish()
            if encoder.http:
                out["Content-Encoding"] = encoder.http
        return web.Response(status=exc.status, body=body, headers=out)

    async def query(http: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        kind = "query"
        query_id = http.query.get("query_id") or str(uuid.uuid4())
        base = {"X-ClickHouse-Server-Display-Name": "maple-embedded", "X-ClickHouse-Query-Id": query_id,
                "X-ClickHouse-Timezone": engine.timezone, "Keep-Alive": "timeout=10"}
        encoder: _Encoder | None = None
        try:
            users.check(http)
            if http.method == "GET" and not http.query.get("query"):
                return web.Response(text="Ok.\n", headers=base)
            level = int(http.query.get("http_zlib_compression_level") or 3)
            encoder = _Encoder(_block_method(http.query), _accepted_encoding(http), level)
            raw = await http.read()
            try:
                body = inflate(raw, http.headers.get("Content-Encoding"), max_body)
                if http.query.get("decompress", "0") not in ("0", "", "false") and body:
                    body = chwire.decompress_blocks(body, max_body)
            except PayloadTooLarge as exc:
                raise RequestError(413, TOO_LARGE, f"Code: 241. DB::Exception: {exc}. (MEMORY_LIMIT_EXCEEDED)") from exc
            except UnsupportedEncoding as exc:
                raise RequestError(415, UNSUPPORTED_MEDIA, f"Code: 415. DB::Exception: {exc}. "
                                                           "(UNSUPPORTED_MEDIA_TYPE)") from exc
            except (CorruptPayload, chwire.WireError) as exc:
                code = CHECKSUM_DOESNT_MATCH if "checksum" in str(exc) else CANNOT_DECOMPRESS
                raise RequestError(400, code, f"Code: {code}. DB::Exception: {exc}. (CANNOT_DECOMPRESS)") from exc
            except ValueError as exc:  # decompressed blocks past the limit
                raise RequestError(413, TOO_LARGE, f"Code: 241. DB::Exception: {exc}. (MEMORY_LIMIT_EXCEEDED)") from exc
            fields = dict(http.query)
            if http.content_type == "multipart/form-data":
                # clickhouse-connect sends the query and large bound parameters as form fields, which
                # ClickHouse reads like URL parameters
                fields.update(form_fields(body, http.headers.get("Content-Type", "")))
                body = b""
            request = Request.parse(fields, body)
            if request.data is not None:
                kind = "insert"
                metrics.insert_bytes.inc(len(request.data))
            session = None
            session_id = http.query.get("session_id")
            if session_id:
                if not _SESSION_ID.match(session_id):
                    raise RequestError(400, BAD_ARGUMENTS, "Code: 36. DB::Exception: invalid session_id. "
                                                           "(BAD_ARGUMENTS)")
                try:
                    timeout = float(http.query.get("session_timeout") or 60)
                except ValueError:
                    raise RequestError(400, BAD_ARGUMENTS, "Code: 36. DB::Exception: session_timeout must be a "
                                                           "number of seconds. (BAD_ARGUMENTS)") from None
                session = engine.session(session_id, min(max(timeout, 1.0), 3600.0),
                                         http.query.get("session_check", "0") not in ("0", ""))
            response = await _respond(http, engine, request, session, encoder, base)
        except RequestError as exc:
            metrics.requests.labels(kind, "error").inc()
            return error_response(exc, encoder, base)
        except UnicodeDecodeError:
            metrics.requests.labels(kind, "error").inc()
            return error_response(RequestError(400, 36, "Code: 36. DB::Exception: query text is not valid UTF-8. "
                                                        "(BAD_ARGUMENTS)"), encoder, base)
        except web.HTTPRequestEntityTooLarge:
            metrics.requests.labels(kind, "error").inc()
            too_large = RequestError(413, TOO_LARGE, f"Code: 241. DB::Exception: request body exceeds {max_body} "
                                                     "bytes. (MEMORY_LIMIT_EXCEEDED)")
            return error_response(too_large, None, base)
        metrics.requests.labels(kind, "ok" if response.status == 200 else "error").inc()
        metrics.seconds.labels(kind).observe(time.perf_counter() - started)
        return response

    app = web.Application(client_max_size=max_body)
    app.router.add_get("/ping", ping)
    app.router.add_get("/replicas_status", replicas_status)
    app.router.add_get("/metrics", prometheus)
    app.router.add_route("GET", "/", query)
    app.router.add_route("POST", "/", query)
    return app


_DONE = object()


async def _respond(http: web.Request, engine: Engine, request: Request, session: Session | None, encoder: _Encoder,
                   base: dict[str, str]) -> web.StreamResponse:
    """Run the request and send its output: whole when it is short, else streamed as it is produced.

    An error before the response started is a non-200 response; after, ClickHouse's exception block."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=8)
    cancelled = threading.Event()

    def emit(data: bytes) -> None:
        if cancelled.is_set():
            raise RequestError(499, 394, "Code: 394. DB::Exception: the client went away. (QUERY_WAS_CANCELLED)")
        asyncio.run_coroutine_threadsafe(queue.put(data), loop).result()

    def work() -> None:
        try:
            outcome: Any = engine.run(request, session, emit)
        except BaseException as exc:
            outcome = exc
        asyncio.run_coroutine_threadsafe(queue.put((_DONE, outcome)), loop).result()

    future = loop.run_in_executor(engine.pool, work)
    # wait_end_of_query=1: the whole result first, so that any error is a status (as in ClickHouse).
    wait_end = http.query.get("wait_end_of_query", "0") not in ("0", "", "false")
    fmt = request.output_format
    headers = {**base, "X-ClickHouse-Format": fmt, "Content-Type": _content_type(fmt)}
    if encoder.http:
        headers["Content-Encoding"] = encoder.http
    held: list[bytes] = []
    size = 0
    response: web.StreamResponse | None = None
    try:
        while True:
            item = await queue.get()
            if isinstance(item, tuple) and item and item[0] is _DONE:
                outcome = item[1]
                break
            if response is None:
                held.append(item)
                size += len(item)
                if size < RESPONSE_BUFFER or wait_end:
                    continue
                tag = chwire.exception_tag()
                response = web.StreamResponse(headers={**headers, "X-ClickHouse-Exception-Tag": tag,
                                                       "X-ClickHouse-Summary": Summary().header()})
                response.enable_chunked_encoding()
                await response.prepare(http)
                await response.write(encoder.encode(b"".join(held)))
                held.clear()
            else:
                await response.write(encoder.encode(item))
    except BaseException:
        cancelled.set()
        while not future.done():  # let the worker finish (its emit now fails) so the queue is not left blocked
            try:
                queue.get_nowait()
            except asyncio.QueueEmpty:
                await asyncio.sleep(0.01)
        raise
    await future
    if response is None:
        if isinstance(outcome, BaseException):
            raise outcome if isinstance(outcome, RequestError) else _as_request_error(engine, outcome)
        headers["X-ClickHouse-Summary"] = outcome.header()
        body = encoder.encode(b"".join(held)) + encoder.finish()
        return web.Response(body=body, headers=headers)
    if isinstance(outcome, BaseException):
        error = outcome if isinstance(outcome, RequestError) else _as_request_error(engine, outcome)
        log.info("query %s failed after its response began: %s", base["X-ClickHouse-Query-Id"], error)
        await response.write(encoder.raw(chwire.exception_block(str(error), response.headers[
            "X-ClickHouse-Exception-Tag"])))
    await response.write(encoder.finish())
    await response.write_eof()
    return response


def _as_request_error(engine: Engine, exc: BaseException) -> RequestError:
    if isinstance(exc, chwire.WireError):
        return RequestError(501, NOT_IMPLEMENTED, f"Code: 48. DB::Exception: {exc}. (NOT_IMPLEMENTED)")
    if isinstance(exc, Exception):
        return engine.error(exc)
    raise exc


def serve(settings: Settings, *, threads: int = 4, max_body: int = 1 << 30,
          ready: threading.Event | None = None, stop: threading.Event | None = None) -> None:
    """Own the embedded engine and serve it until SIGTERM/SIGINT (or `stop` is set, for tests).

    Settings validation has already refused a non-loopback address without a password."""
    path = embedded_data_path(settings)
    path.mkdir(parents=True, exist_ok=True)
    engine = Engine(str(path), threads)
    metrics = HostMetrics()
    host, port = settings.clickhouse.embedded_host, settings.clickhouse.embedded_port
    users = Users(settings.clickhouse.embedded_user, settings.clickhouse.embedded_password)
    advert = host_file(settings)

    async def main() -> None:
        # Decompression is ours (bounded by max_body); aiohttp would inflate gzip unbounded.
        runner = web.AppRunner(build_app(engine, metrics, max_body, users), access_log=None, auto_decompress=False)
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
        log.info("embedded ClickHouse (chDB %s, engine %s) serving %s, data %s", chdb.__version__, engine.version,
                 url, path)
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

