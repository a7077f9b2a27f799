"""The one way the query service reaches ClickHouse.

Every query of every endpoint goes through `Reader.select`, which

* sends user values only as bound parameters (``{name:Type}`` placeholders, clickhouse-connect's
  server-side binding): the SQL text the API composes never contains a request value;
* runs with ``readonly=2`` (no writes, no DDL; settings may still be given per query, which the limits
  below need) and ClickHouse's own limits: ``max_execution_time``, ``max_result_rows``/``bytes``,
  ``max_memory_usage`` (``api.*`` settings), so a slow or huge query is stopped by ClickHouse itself;
* turns ClickHouse errors into `ApiError`s: limits -> 422, ClickHouse unreachable -> 503, errors of a
  user's own SQL (the SQL endpoint) -> 400, anything else -> 500 (a bug in the SQL the API built).

Nothing else in ``query/`` imports clickhouse-connect or ``maple.clickhouse`` (a unit test checks it), so
the per-team restriction (issue 16) has one place to go: `Reader.select` (for instance ClickHouse's
``additional_table_filters`` setting keyed by table, or a predicate the builders must take from here).
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError, DatabaseError, OperationalError

from maple import clickhouse
from maple.settings import Settings
from query.errors import ApiError

log = logging.getLogger(__name__)

# ClickHouse error codes that mean "the query hit a limit": the caller should narrow it.
LIMIT_CODES = {158: "too many rows", 159: "timeout exceeded", 160: "too slow", 241: "memory limit exceeded",
               307: "too many bytes", 396: "too many rows or bytes in the result", 394: "query was cancelled"}
# Errors of the statement itself (syntax, names, types): a user's SQL is at fault, not the API.
STATEMENT_CODES = {1, 6, 27, 36, 41, 42, 43, 44, 46, 47, 48, 49, 50, 53, 60, 62, 69, 70, 73, 81, 107, 117, 130,
                   132, 153, 167, 168, 179, 182, 184, 190, 215, 386, 403, 436, 497, 499, 530, 593, 695}
READONLY_CODE = 164
ACCESS_CODE = 497
SCHEMA_CACHE_S = 30.0
# The ClickHouse round trips of the current request (milliseconds), for its Server-Timing header. The app
# sets a fresh list per request; threads the request runs in share that list through the copied context.
QUERY_TIMES: contextvars.ContextVar[list[float] | None] = contextvars.ContextVar("maple_query_times", default=None)


@dataclass(frozen=True)
class Limits:
    """ClickHouse settings that bound one query."""

    max_execution_time_s: int
    max_result_rows: int
    max_result_bytes: int
    max_memory_bytes: int
    max_rows_to_read: int = 0       # 0: no limit
    result_overflow_break: bool = False  # True: cut the result at max_result_rows instead of failing

    def settings(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "readonly": 2,
            "max_execution_time": self.max_execution_time_s,
            "timeout_overflow_mode": "throw",
            "max_result_rows": self.max_result_rows,
            "max_result_bytes": self.max_result_bytes,
            "result_overflow_mode": "break" if self.result_overflow_break else "throw",
            "max_memory_usage": self.max_memory_bytes,
        }
        if self.max_rows_to_read:
            out["max_rows_to_read"] = self.max_rows_to_read
            out["read_overflow_mode"] = "throw"
        return out


@dataclass
class Result:
    columns: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]
    rows_read: int = 0
    elapsed_ms: float = 0.0

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row)) for row in self.rows]

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None


@dataclass
class _Schema:
    columns: dict[str, str]
    expressions: dict[str, str]
    sorting_key: str = ""
    at: float = field(default_factory=time.monotonic)


def error_code(exc: BaseException) -> int | None:
    """ClickHouse's numeric error code in a clickhouse-connect exception (its text carries "Code: N.")."""
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    text = str(exc)
    at = text.find("Code: ")
    if at < 0:
        return None
    digits = ""
    for char in text[at + 6:]:
        if not char.isdigit():
            break
        digits += char
    return int(digits) if digits else None


def _clean_message(exc: BaseException) -> str:
    """The ClickHouse message without the client's wrapping and the bound parameters it may echo."""
    text = str(exc)
    start = text.find("DB::Exception:")
    if start >= 0:
        text = text[start + len("DB::Exception:"):]
    for marker in (" (version ", "\nStack trace", ". (", "\n"):
        cut = text.find(marker)
        if cut > 0:
            text = text[:cut]
    return text.strip()[:1000]


class Reader:
    """ClickHouse for the query service: one long-lived client, bound parameters, read-only, bounded."""

    def __init__(self, settings: Settings, database: str | None = None) -> None:
        self.settings = settings
        self.database = database or settings.clickhouse.database
        api = settings.api
        self.limits = Limits(api.max_execution_time_s, api.max_result_rows, api.max_result_bytes,
                             api.max_memory_bytes)
        self._client: Client | None = None
        self._lock = threading.Lock()
        self._schemas: dict[tuple[str, str], _Schema] = {}

    # -- the client ------------------------------------------------------------------------------------

    def _connect(self) -> Client:
        with self._lock:
            if self._client is None:
                try:
                    self._client = clickhouse.connect(self.settings, database=self.database, in_process=False)
                except clickhouse.ClickHouseUnavailable as exc:
                    raise ApiError(503, "unavailable", f"ClickHouse is not reachable: {exc}") from exc
                except (OperationalError, DatabaseError) as exc:
                    raise ApiError(503, "unavailable", f"ClickHouse is not reachable: {_clean_message(exc)}") from exc
            return self._client

    def _drop(self, client: Client) -> None:
        with self._lock:
            if self._client is client:
                self._client = None
        try:
            client.close()
        except Exception:
            log.debug("closing a ClickHouse client failed", exc_info=True)

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- queries ---------------------------------------------------------------------------------------

    def select(self, sql: str, parameters: Mapping[str, Any] | None = None, *, limits: Limits | None = None,
               user_sql: bool = False) -> Result:
        """Run one read query with bound `parameters` under `limits` (default: the api.* limits).

        `user_sql` marks a statement a user wrote (the SQL endpoint): its errors are the user's (400)."""
        client = self._connect()
        started = time.perf_counter()
        try:
            result = client.query(sql, parameters=dict(parameters or {}),
                                  settings=(limits or self.limits).settings())
        except OperationalError as exc:
            self._drop(client)
            raise ApiError(503, "unavailable", f"ClickHouse is not reachable: {_clean_message(exc)}") from exc
        except ClickHouseError as exc:
            raise self._translate(exc, sql, user_sql) from exc
        elapsed = (time.perf_counter() - started) * 1000
        times = QUERY_TIMES.get()
        if times is not None:
            times.append(elapsed)
        summary = getattr(result, "summary", None) or {}
        try:
            rows_read = int(summary.get("read_rows", 0))
        except (TypeError, ValueError):
            rows_read = 0
        return Result(list(result.column_names), [t.name for t in result.column_types],
                      [tuple(row) for row in result.result_rows],
                      rows_read, elapsed)

    def _translate(self, exc: ClickHouseError, sql: str, user_sql: bool) -> ApiError:
        code = error_code(exc)
        message = _clean_message(exc)
        if code in LIMIT_CODES:
            return ApiError(422, "limit_exceeded", f"the query was stopped by ClickHouse ({LIMIT_CODES[code]}): "
                                                   f"{message}; narrow the time range or the query")
        if code in (READONLY_CODE, ACCESS_CODE):
            return ApiError(403, "forbidden", f"not allowed on the query service's read-only connection: {message}")
        if user_sql:
            return ApiError(400, "invalid_sql", message, field="sql")
        if code is None and "timed out" in str(exc).lower():
            return ApiError(503, "unavailable", f"ClickHouse did not answer in time: {message}")
        log.error("query failed (code %s): %s\n%s", code, message, sql)
        return ApiError(500, "internal", f"ClickHouse rejected a query the API built (code {code}): {message}")

    def ping(self) -> str:
        """ClickHouse's version; ApiError(503) when it does not answer."""
        return str(self.select("SELECT version()").scalar())

    # -- schema ----------------------------------------------------------------------------------------

    def columns(self, database: str, table: str) -> dict[str, str]:
        """Column name -> type of `database.table` (DESC TABLE, cached for a few seconds)."""
        return self._schema(database, table).columns

    def column_expressions(self, database: str, table: str) -> dict[str, str]:
        """Column name -> its DEFAULT/MATERIALIZED/ALIAS expression, for the columns that have one."""
        return self._schema(database, table).expressions

    def _schema(self, database: str, table: str) -> _Schema:
        key = (database, table)
        cached = self._schemas.get(key)
        if cached is not None and time.monotonic() - cached.at < SCHEMA_CACHE_S:
            return cached
        result = self.select("SELECT name, type, default_expression FROM system.columns "
                             "WHERE database = {db:String} AND table = {table:String} ORDER BY position",
                             {"db": database, "table": table})
        if not result.rows:
            raise ApiError(404, "not_found", f"table {database}.{table} does not exist")
        sorting = self.select("SELECT sorting_key FROM system.tables WHERE database = {db:String} "
                              "AND name = {table:String}", {"db": database, "table": table}).scalar() or ""
        schema = _Schema({r[0]: r[1] for r in result.rows}, {r[0]: r[2] for r in result.rows if r[2]}, str(sorting))
        self._schemas[key] = schema
        return schema

    def sorting_key(self, database: str, table: str) -> str:
        """The table's ORDER BY expression list as ClickHouse reports it (system.tables.sorting_key)."""
        return self._schema(database, table).sorting_key

    def forget_schema(self) -> None:
        self._schemas.clear()


def quote_identifier(name: str) -> str:
    """A column or table name as a ClickHouse identifier (backquoted, escaped). Names come from the schema
    or an operator's source, never from a request."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def in_list(prefix: str, values: Sequence[Any], params: dict[str, Any], type_name: str = "String") -> str:
    """`{prefix0:T}, {prefix1:T}, ...` bound into `params`: for IN lists of request values."""
    names = []
    for i, value in enumerate(values):
        params[f"{prefix}{i}"] = value
        names.append(f"{{{prefix}{i}:{type_name}}}")
    return ", ".join(names) if names else "NULL"
