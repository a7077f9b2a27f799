"""Sources: which table a view reads, and the expressions that give it the fields it needs (HyperDX's model).

Maple ships two built-in sources over its own tables, ``logs`` (otel_logs) and ``traces`` (otel_traces),
resolved against the live schema (``system.columns``) so that optional columns are used when they exist
and never assumed: a coarse ``TimestampTime`` key column, materialized attribute columns
(``__hdx_materialized_*``, ``__otel_materialized_*``). An operator adds a source for any other table;
it is checked against ClickHouse (a LIMIT 0 query over every expression) and kept in the metadata store.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from pydantic import ValidationError

from query.errors import ApiError
from query.models import SourceSpec
from query.reader import Reader, quote_identifier
from query.search.fields import Resolver, log_aliases, trace_aliases
from query.store import Conflict, Store

BUILTIN_LOGS = "logs"
BUILTIN_TRACES = "traces"
MATERIALIZED_PREFIXES = ("__hdx_materialized_", "__otel_materialized_")
KEYS_CACHE_S = 60.0
KEYS_LOOKBACK_S = 86400
KEYS_SCAN_ROWS = 1_000_000
EXPRESSION_FIELDS = ("timestamp", "coarse_timestamp", "service", "body", "severity_text", "severity_number",
                     "trace_id", "span_id", "parent_span_id", "span_name", "span_kind", "duration_ns", "status_code",
                     "status_message", "sample_weight", "attributes", "resource_attributes", "scope_name",
                     "scope_version")
FORBIDDEN_IN_EXPRESSIONS = (";", "--", "/*", "#!", "\\G")


@dataclass(frozen=True)
class Source:
    spec: SourceSpec
    builtin: bool
    columns: dict[str, str]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def table(self) -> str:
        return f"{quote_identifier(self.spec.database)}.{quote_identifier(self.spec.table)}"

    def time_filter(self, start: str, end: str) -> str:
        """The range condition over the timestamp, plus the coarse key column when the source has one.

        `start`/`end` are bound DateTime64(9) parameter placeholders."""
        spec = self.spec
        parts = [f"{spec.timestamp} >= {start}", f"{spec.timestamp} <= {end}"]
        if spec.coarse_timestamp:
            coarse, bound = spec.coarse_timestamp, spec.coarse_function
            parts += [f"{coarse} >= {bound}({start})", f"{coarse} <= {bound}({end})"]
        return " AND ".join(parts)


def _materialized(columns: dict[str, str], expressions: dict[str, str], resource_map: str) -> dict[str, str]:
    """attribute key -> materialized column, read from the columns' own MATERIALIZED expressions."""
    found: dict[str, str] = {}
    prefix = f"{resource_map}['"
    for column, expression in expressions.items():
        if not column.startswith(MATERIALIZED_PREFIXES):
            continue
        text = expression.strip()
        if text.startswith(prefix) and text.endswith("']"):
            key = text[len(prefix):-2]
            if "'" not in key and "\\" not in key:
                found[key] = column
    return found


FIVE_MINUTE_KEY = "toStartOfFiveMinutes(Timestamp)"


def _coarse(columns: dict[str, str], sorting_key: str) -> tuple[str | None, str]:
    """The key expression a time range should also be stated on, for the primary key to be used: the older
    layout's TimestampTime, or the exporter's current toStartOfFiveMinutes(Timestamp) (ClickHouse does not
    derive a range on that key from a range on Timestamp: checked with EXPLAIN, 135 granules instead of 7
    for five minutes of ten million rows)."""
    if "TimestampTime" in columns:
        return "TimestampTime", "toDateTime"
    if sorting_key.replace(" ", "").startswith(FIVE_MINUTE_KEY):
        return FIVE_MINUTE_KEY, "toStartOfFiveMinutes"
    return None, "toDateTime"


def builtin_logs(database: str, columns: dict[str, str], expressions: dict[str, str],
                 sorting_key: str = "") -> SourceSpec:
    coarse, function = _coarse(columns, sorting_key)
    return SourceSpec(
        name=BUILTIN_LOGS, kind="logs", database=database, table="otel_logs", timestamp="Timestamp",
        coarse_timestamp=coarse, coarse_function=function, service="ServiceName",
        body="Body", severity_text="SeverityText", severity_number="SeverityNumber", trace_id="TraceId",
        span_id="SpanId", attributes="LogAttributes", resource_attributes="ResourceAttributes", scope_name="ScopeName",
        scope_version="ScopeVersion" if "ScopeVersion" in columns else "''",
        materialized=_materialized(columns, expressions, "ResourceAttributes"))


def builtin_traces(database: str, columns: dict[str, str], expressions: dict[str, str],
                   lookup: bool) -> SourceSpec:
    return SourceSpec(
        name=BUILTIN_TRACES, kind="traces", database=database, table="otel_traces", timestamp="Timestamp",
        service="ServiceName", trace_id="TraceId", span_id="SpanId", parent_span_id="ParentSpanId",
        span_name="SpanName", span_kind="SpanKind", duration_ns="Duration", status_code="StatusCode",
        status_message="StatusMessage", sample_weight="SampleRate" if "SampleRate" in columns else "1",
        attributes="SpanAttributes", resource_attributes="ResourceAttributes",
        scope_name="ScopeName", scope_version="ScopeVersion", events="Events" if "Events.Name" in columns else None,
        links="Links" if "Links.TraceId" in columns else None,
        trace_id_ts_table="otel_traces_trace_id_ts" if lookup else None,
        materialized=_materialized(columns, expressions, "ResourceAttributes"))


class Sources:
    """The built-in sources and the operator's, by name; field resolvers with a cache of attribute keys."""

    def __init__(self, reader: Reader, store: Store | None) -> None:
        self.reader = reader
        self.store = store
        self._keys: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    # -- lookup ----------------------------------------------------------------------------------------

    def _builtin(self, name: str) -> Source:
        db = self.reader.database
        if name == BUILTIN_LOGS:
            columns = self.reader.columns(db, "otel_logs")
            spec = builtin_logs(db, columns, self.reader.column_expressions(db, "otel_logs"),
                                self.reader.sorting_key(db, "otel_logs"))
        else:
            columns = self.reader.columns(db, "otel_traces")
            try:
                self.reader.columns(db, "otel_traces_trace_id_ts")
                lookup = True
            except ApiError:
                lookup = False
            spec = builtin_traces(db, columns, self.reader.column_expressions(db, "otel_traces"), lookup)
        return Source(spec, True, columns)

    def _stored(self) -> dict[str, SourceSpec]:
        if self.store is None:
            return {}
        specs = {}
        for data in self.store.list_sources():
            try:
                spec = SourceSpec.model_validate(data)
            except ValidationError:
                continue  # written by a newer version; not ours to interpret
            specs[spec.name] = spec
        return specs

    def get(self, name: str | None, kind: str) -> Source:
        """The source `name` (default: the built-in one of `kind`); 400/404 naming `source` otherwise."""
        name = name or (BUILTIN_LOGS if kind == "logs" else BUILTIN_TRACES)
        if name in (BUILTIN_LOGS, BUILTIN_TRACES):
            if name != (BUILTIN_LOGS if kind == "logs" else BUILTIN_TRACES):
                raise ApiError(400, "invalid_parameter", f"source {name!r} holds {name}, not {kind}", field="source")
            try:
                return self._builtin(name)
            except ApiError as exc:
                if exc.status == 404:
                    raise ApiError(503, "unavailable", f"Maple's tables are missing in `{self.reader.database}` "
                                                       "(run `maple schema apply`)") from exc
                raise
        spec = self._stored().get(name)
        if spec is None:
            raise ApiError(404, "not_found", f"no source named {name!r}", field="source")
        if spec.kind != kind:
            raise ApiError(400, "invalid_parameter", f"source {name!r} holds {spec.kind}, not {kind}", field="source")
        return Source(spec, False, self.reader.columns(spec.database, spec.table))

    def all(self) -> list[Source]:
        out = []
        for name, kind in ((BUILTIN_LOGS, "logs"), (BUILTIN_TRACES, "traces")):
            try:
                out.append(self.get(name, kind))
            except ApiError:
                continue
        for spec in self._stored().values():
            out.append(Source(spec, False, {}))
        return out

    # -- changes ---------------------------------------------------------------------------------------

    def add(self, spec: SourceSpec) -> Source:
        if self.store is None:
            raise ApiError(503, "unavailable", "the metadata store is not open")
        if spec.name in (BUILTIN_LOGS, BUILTIN_TRACES):
            raise ApiError(409, "conflict", f"{spec.name!r} is a built-in source", field="name")
        for name in EXPRESSION_FIELDS:
            value = getattr(spec, name)
            if value is not None and any(marker in value for marker in FORBIDDEN_IN_EXPRESSIONS):
                raise ApiError(400, "invalid_parameter", f"{name}: an expression may not contain ';', comments "
                                                         "or client commands", field=name)
        source = Source(spec, False, {})
        columns = self.reader.columns(spec.database, spec.table)  # 404 naming the table when it is missing
        self.check(source)
        if spec.trace_id_ts_table:
            self.reader.columns(spec.database, spec.trace_id_ts_table)
        try:
            self.store.add_source(spec.name, spec.kind, spec.model_dump())
        except Conflict as exc:
            raise ApiError(409, "conflict", str(exc), field="name") from exc
        return Source(spec, False, columns)

    def check(self, source: Source) -> None:
        """Run every expression of the source against its table (LIMIT 0): 400 naming the first bad one."""
        spec = source.spec
        for name in EXPRESSION_FIELDS:
            expression = getattr(spec, name)
            if expression is None:
                continue
            try:
                self.reader.select(f"SELECT {expression} FROM {source.table} LIMIT 0", user_sql=True)
            except ApiError as exc:
                if exc.status >= 500:
                    raise
                raise ApiError(400, "invalid_parameter", f"{name}: {exc.message}", field=name) from exc
        for key, column in spec.materialized.items():
            if column not in self.reader.columns(spec.database, spec.table):
                raise ApiError(400, "invalid_parameter", f"materialized: column {column!r} (for {key!r}) is not in "
                                                         f"{spec.database}.{spec.table}", field="materialized")

    def delete(self, name: str) -> None:
        if name in (BUILTIN_LOGS, BUILTIN_TRACES):
            raise ApiError(409, "conflict", f"{name!r} is a built-in source and cannot be deleted", field="name")
        if self.store is None or not self.store.delete_source(name):
            raise ApiError(404, "not_found", f"no source named {name!r}", field="name")

    # -- fields ----------------------------------------------------------------------------------------

    def attribute_keys(self, source: Source) -> frozenset[str]:
        """Attribute and resource-attribute keys in the source's last day of data (cached for a minute)."""
        cache_key = f"{source.name}/{source.spec.database}.{source.spec.table}"
        with self._lock:
            cached = self._keys.get(cache_key)
        if cached is not None and time.monotonic() - cached[0] < KEYS_CACHE_S:
            return cached[1]
        spec = source.spec
        now_ns = time.time_ns()
        params = {"start": now_ns - KEYS_LOOKBACK_S * 1_000_000_000, "end": now_ns}
        where = source.time_filter("fromUnixTimestamp64Nano({start:Int64})", "fromUnixTimestamp64Nano({end:Int64})")
        result = self.reader.select(
            f"SELECT groupUniqArrayArray(10000)(k) FROM (SELECT arrayConcat(mapKeys({spec.attributes}), "
            f"mapKeys({spec.resource_attributes})) AS k FROM {source.table} WHERE {where} LIMIT {KEYS_SCAN_ROWS})",
            params)
        keys = frozenset(result.scalar() or ())
        with self._lock:
            self._keys[cache_key] = (time.monotonic(), keys)
        return keys

    def resolver(self, source: Source, *, check_keys: bool = True) -> Resolver:
        spec = source.spec
        if spec.kind == "logs":
            aliases = log_aliases(spec.service, spec.severity_text, spec.severity_number, spec.body, spec.trace_id,
                                  spec.span_id)
        else:
            aliases = trace_aliases(spec.service, spec.span_name, spec.span_kind, spec.duration_ns, spec.status_code,
                                    spec.status_message, spec.trace_id, spec.span_id, spec.parent_span_id,
                                    spec.attributes)
        body = spec.body if spec.kind == "logs" and spec.body.strip() not in ("''", '""', "") else ""
        return Resolver(aliases=aliases, columns=source.columns, attributes=spec.attributes,
                        resource_attributes=spec.resource_attributes, materialized=spec.materialized,
                        known_keys=(lambda: self.attribute_keys(source)) if check_keys else None, body=body)
