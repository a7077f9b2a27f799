"""The API's request and response shapes (pydantic): what the OpenAPI document and the web UI see.

Times are RFC 3339 strings with nanoseconds where the data has them (``2025-01-02T03:04:05.123456789Z``)
plus, where a client computes with them, integer Unix nanoseconds (``*_ns``); durations are in
milliseconds (floats). Field names are snake_case.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# The ids of the metadata store's rows: SQLite's INTEGER (and the other stores' BIGINT) is a signed 64-bit
# number, so a larger id in a request cannot even be looked up (the driver raises OverflowError: a 500).
# Every id a request carries, in its path or its body, is bounded here: 400 naming the field, and the
# OpenAPI document says the bounds.
MAX_ID = 2**62
RowId = Annotated[int, Field(ge=1, le=MAX_ID)]


# -- errors -------------------------------------------------------------------------------------------


class ErrorDetail(Model):
    code: str = Field(description="machine-readable kind: invalid_parameter, syntax_error, unknown_field, "
                                  "not_supported, not_found, conflict, limit_exceeded, unavailable, internal")
    message: str = Field(description="what is wrong, naming the parameter or field")
    field: str | None = Field(None, description="the request parameter or body field at fault")
    position: int | None = Field(None, description="0-based character offset in the query string of a syntax error")
    expected: list[str] | None = Field(None, description="what the parser would have accepted at `position`")


class ErrorResponse(Model):
    error: ErrorDetail


# -- common -------------------------------------------------------------------------------------------


class TimeRange(Model):
    start: str = Field(description="RFC 3339, inclusive")
    end: str = Field(description="RFC 3339, inclusive")
    start_ns: int
    end_ns: int


# -- logs ---------------------------------------------------------------------------------------------


class LogRecord(Model):
    timestamp: str
    timestamp_ns: int
    service: str
    severity_text: str
    severity_number: int
    body: str
    trace_id: str
    span_id: str
    attributes: dict[str, str]
    resource_attributes: dict[str, str]
    scope_name: str = ""


class LogSearchResponse(Model):
    source: str
    range: TimeRange
    rows: list[LogRecord]
    next_cursor: str | None = Field(None, description="pass as `cursor` for the next (older) page; null at the end")


class HistogramBucket(Model):
    time: str
    time_ns: int
    group: str | None = Field(None, description="the value of `group_by`; null without it")
    count: int


class LogAggregateResponse(Model):
    source: str
    range: TimeRange
    interval_s: int
    group_by: str | None
    buckets: list[HistogramBucket]
    total: int


class TopValue(Model):
    value: str
    count: int


class TopValuesResponse(Model):
    source: str
    range: TimeRange
    field: str
    values: list[TopValue]
    total: int = Field(description="rows matching the query in the range (with or without the field)")


class FieldInfo(Model):
    name: str
    kind: Literal["alias", "column", "attribute", "resource_attribute", "materialized"]
    type: str = "String"
    expression: str = Field(description="the ClickHouse expression a search on this field reads")


class FieldsResponse(Model):
    source: str
    fields: list[FieldInfo]


# -- traces -------------------------------------------------------------------------------------------


class TraceSummary(Model):
    trace_id: str
    start: str
    start_ns: int
    duration_ms: float
    root_service: str = Field(description="service of the root span; empty when the root span is missing")
    root_name: str = Field(description="name of the root span; empty when the root span is missing")
    span_count: int
    error_count: int
    services: list[str]


class TraceSearchResponse(Model):
    source: str
    range: TimeRange
    traces: list[TraceSummary]
    next_cursor: str | None = None


class SpanEvent(Model):
    timestamp: str
    timestamp_ns: int
    name: str
    attributes: dict[str, str]


class SpanLink(Model):
    trace_id: str
    span_id: str
    trace_state: str
    attributes: dict[str, str]


class Span(Model):
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: str
    service: str
    start: str
    start_ns: int
    duration_ms: float
    status_code: str
    status_message: str
    depth: int = Field(description="0 for roots (and spans whose parent is missing), parent's depth + 1 otherwise")
    attributes: dict[str, str]
    resource_attributes: dict[str, str]
    scope_name: str
    scope_version: str
    events: list[SpanEvent]
    links: list[SpanLink]


class TraceResponse(Model):
    source: str
    trace_id: str
    start: str
    start_ns: int
    duration_ms: float
    services: list[str]
    span_count: int
    error_count: int
    spans: list[Span] = Field(description="depth-first: each span followed by its children, siblings by start time")


class ServiceRed(Model):
    service: str
    calls: int = Field(description="spans counted in the range (RED calls)")
    errors: int
    error_rate: float = Field(description="errors / calls, 0..1")
    rate_per_s: float = Field(description="calls per second over the range")
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


class ServicesResponse(Model):
    range: TimeRange
    span_kinds: list[str]
    services: list[ServiceRed]


class DependencyEdge(Model):
    caller: str
    callee: str
    calls: int
    errors: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


class DependenciesResponse(Model):
    source: str
    range: TimeRange
    services: list[str]
    edges: list[DependencyEdge]


# -- metrics ------------------------------------------------------------------------------------------


class MetricInfo(Model):
    name: str
    type: Literal["gauge", "sum", "histogram", "exponential_histogram", "summary"]
    unit: str
    description: str
    series: int


class MetricNamesResponse(Model):
    range: TimeRange
    metrics: list[MetricInfo]


class LabelsResponse(Model):
    metric: str
    range: TimeRange
    labels: list[str]


class SeriesResponse(Model):
    metric: str
    range: TimeRange
    series: list[dict[str, str]]
    truncated: bool


class MetricSeries(Model):
    labels: dict[str, str]
    points: list[tuple[int, float | None]] = Field(description="[unix milliseconds, value]; null where undefined")


class MetricQueryResponse(Model):
    query: str = Field(description="the query as PromQL (given, or built from the structured parameters)")
    range: TimeRange
    step_s: int
    series: list[MetricSeries]


# -- sql ----------------------------------------------------------------------------------------------


class SqlRequest(Model):
    sql: str = Field(description="one SELECT, WITH, SHOW or DESCRIBE statement", max_length=100_000)


class SqlColumn(Model):
    name: str
    type: str


class SqlResponse(Model):
    columns: list[SqlColumn]
    rows: list[list[Any]]
    truncated: bool = Field(description="true when the statement returned more rows than api.sql_max_rows")
    rows_read: int
    elapsed_ms: float


# -- sources ------------------------------------------------------------------------------------------


EMPTY_MAP = "CAST(map(), 'Map(String, String)')"


class SourceSpec(Model):
    """A source: a ClickHouse table and the expressions that give the fields Maple's views need.

    Expressions are ClickHouse SQL over the table's columns, written by an operator and checked against
    the table when the source is created (a query with LIMIT 0)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,62}$", description="lower-case id used as `source=`")
    kind: Literal["logs", "traces"]
    database: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
    table: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.]{0,127}$")
    timestamp: str = Field(max_length=500, description="DateTime64 of the record (logs) or span start (traces)")
    coarse_timestamp: str | None = Field(None, max_length=500,
                                         description="an expression of the timestamp in the primary key, filtered "
                                                     "besides `timestamp` so that the index is used (TimestampTime, "
                                                     "toStartOfFiveMinutes(Timestamp))")
    coarse_function: str = Field("toDateTime", pattern=r"^[A-Za-z][A-Za-z0-9_]{0,63}$",
                                 description="the function that maps a time bound onto `coarse_timestamp`'s values "
                                             "(toDateTime for TimestampTime, toStartOfFiveMinutes for that key)")
    service: str = Field("''", max_length=500)
    body: str = Field("''", max_length=500, description="logs: the message text searched by free text")
    severity_text: str = Field("''", max_length=500)
    severity_number: str = Field("0", max_length=500)
    trace_id: str = Field("''", max_length=500)
    span_id: str = Field("''", max_length=500)
    parent_span_id: str = Field("''", max_length=500)
    span_name: str = Field("''", max_length=500)
    span_kind: str = Field("''", max_length=500)
    duration_ns: str = Field("0", max_length=500, description="traces: span duration in nanoseconds")
    status_code: str = Field("''", max_length=500)
    status_message: str = Field("''", max_length=500)
    sample_weight: str = Field("1", max_length=500, description="traces: how many spans a stored span stands for "
                                                                "(1 / the probability it was sampled with)")
    attributes: str = Field(EMPTY_MAP, max_length=500, description="Map(String, String) of record/span attributes")
    resource_attributes: str = Field(EMPTY_MAP, max_length=500,
                                     description="Map(String, String) of resource attributes")
    scope_name: str = Field("''", max_length=500)
    scope_version: str = Field("''", max_length=500)
    events: str | None = Field(None, max_length=500, description="traces: the Events Nested column's name")
    links: str | None = Field(None, max_length=500, description="traces: the Links Nested column's name")
    trace_id_ts_table: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_.]{0,127}$",
                                          description="traces: TraceId -> Start/End lookup table in `database`")
    materialized: dict[str, str] = Field(default_factory=dict,
                                         description="attribute key -> column holding it (materialized columns)")


class SourceInfo(Model):
    spec: SourceSpec
    builtin: bool


class SourcesResponse(Model):
    sources: list[SourceInfo]


# -- health -------------------------------------------------------------------------------------------


class ComponentHealth(Model):
    ok: bool
    detail: str = Field(description="what was reached (address, version) or why not")


class GroupLag(Model):
    group: str
    messages: int
    seconds: float | None = Field(description="age of the oldest unprocessed record; null when unknown")
    partitions: int
    error: str | None = None


class DeadLetters(Model):
    count: int | None = Field(description="records retained in the dead-letter topic; null when Kafka is unreachable")
    topic: str


class IngestRate(Model):
    requests_per_s: float | None = Field(description="OTLP export requests per second the ingest wrote to the raw "
                                                     "topics between the last two measurements; null after the "
                                                     "first measurement or while Kafka is unreachable")
    by_signal: dict[str, float] = Field(description="the same per signal: traces, logs, metrics")
    window_s: float | None = Field(description="seconds between the two measurements the rate is based on")


class HealthResponse(Model):
    status: Literal["ok", "degraded", "down", "starting"]
    checked_at: str | None
    age_s: float | None = Field(description="seconds since the measurement this answer is based on")
    kafka: ComponentHealth
    clickhouse: ComponentHealth
    lag: list[GroupLag]
    dead_letters: DeadLetters
    ingest: IngestRate | None = Field(None, description="what is arriving: records written to the raw topics "
                                                        "(one record = one OTLP export request)")


class ReadyResponse(Model):
    ready: bool
    detail: str


# -- teams and access (docs/teams.md) ----------------------------------------------------------------------

Role = Literal["viewer", "editor", "admin"]


class LoginRequest(Model):
    email: str = Field(max_length=254)
    password: str = Field(max_length=1024)
    team: str | None = Field(None, max_length=64, description="the team to work in (default: your first)")


class TeamInfo(Model):
    slug: str = Field(description="the team's tenant name: the Tenant column of its rows")
    name: str = ""
    role: Role | None = None


class MeResponse(Model):
    email: str | None = Field(description="the user; null for an API key")
    superuser: bool
    team: str = Field(description="the team every query is restricted to")
    role: Role
    teams: list[TeamInfo] = Field(description="the teams you may switch to")
    key: str | None = Field(None, description="the API key's prefix, when called with one")


class TeamSwitch(Model):
    team: str = Field(max_length=64)


class TeamCreate(Model):
    slug: str = Field(max_length=64, description="letters, digits, _ . -; the Tenant value of the team's rows")
    name: str = Field("", max_length=200)


class TeamsResponse(Model):
    teams: list[TeamInfo]


class UserInfo(Model):
    id: int
    email: str
    name: str
    role: Role
    superuser: bool
    disabled: bool


class UsersResponse(Model):
    users: list[UserInfo]


class UserCreate(Model):
    email: str = Field(max_length=254)
    password: str = Field(max_length=1024, description="at least 12 characters (ignored for an existing user, "
                                                       "who is added to the team)")
    role: Role = "viewer"
    name: str = Field("", max_length=200)


class RoleChange(Model):
    role: Role


class PasswordChange(Model):
    current_password: str = Field(max_length=1024)
    new_password: str = Field(max_length=1024)


class KeyInfo(Model):
    id: int
    team: str
    kind: Literal["ingest", "query"]
    role: Role | None = Field(description="what a query key may do; null for an ingest key")
    name: str
    prefix: str = Field(description="the key's first characters, to tell it apart")
    created_at: float = Field(description="Unix seconds")
    created_by: str
    last_used_at: float | None
    revoked_at: float | None


class KeysResponse(Model):
    keys: list[KeyInfo]


class KeyCreate(Model):
    kind: Literal["ingest", "query"]
    name: str = Field("", max_length=200)
    role: Role | None = Field(None, description="query keys: viewer (default), editor or admin")


class KeyCreated(Model):
    key: KeyInfo
    secret: str = Field(description="the key itself: shown this once, stored only as a hash")


class AuditRecord(Model):
    at: float
    actor: str
    action: str
    target: str
    outcome: Literal["ok", "denied"]
    detail: dict[str, Any]
    source: str


class AuditResponse(Model):
    records: list[AuditRecord]
