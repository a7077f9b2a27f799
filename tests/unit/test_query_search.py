"""Golden tests of the search compiler: each construct of the language -> the SQL and bound parameters.

The resolver is the built-in logs source's (otel_logs' columns, a materialized k8s.pod.name column) and,
for trace fields, the built-in traces source's. No ClickHouse: the compiler is pure.
"""

from __future__ import annotations

from typing import Any

import pytest

from query.errors import ApiError
from query.search.compiler import compile_query, tokens
from query.search.fields import Resolver, log_aliases, trace_aliases

LOG_COLUMNS = {"Timestamp": "DateTime64(9)", "ServiceName": "LowCardinality(String)", "Body": "String",
               "SeverityText": "LowCardinality(String)", "SeverityNumber": "UInt8",
               "LogAttributes": "Map(LowCardinality(String), String)",
               "ResourceAttributes": "Map(LowCardinality(String), String)"}
LOGS = Resolver(log_aliases("ServiceName", "SeverityText", "SeverityNumber", "Body", "TraceId", "SpanId"),
                LOG_COLUMNS, "LogAttributes", "ResourceAttributes",
                {"k8s.pod.name": "__hdx_materialized_k8s.pod.name"},
                known_keys={"http.route", "user.id", "status", "http.status_code", "deployment.environment"},
                body="Body")
TRACES = Resolver(trace_aliases("ServiceName", "SpanName", "SpanKind", "Duration", "StatusCode", "StatusMessage",
                                "TraceId", "SpanId", "ParentSpanId", "SpanAttributes"),
                  {"Duration": "UInt64", "SpanName": "LowCardinality(String)"}, "SpanAttributes", "ResourceAttributes",
                  known_keys=None, body="")

EITHER = "(LogAttributes[{q0:String}] = {q1:String} OR ResourceAttributes[{q0:String}] = {q1:String})"

GOLDEN: list[tuple[str, Resolver, str, dict[str, Any]]] = [
    # empty and match-all
    ("", LOGS, "1", {}),
    ("   ", LOGS, "1", {}),
    ("*", LOGS, "1", {}),
    # free text: one token uses the lower(Body) token index
    ("timeout", LOGS, "hasToken(lower(Body), {q0:String})", {"q0": "timeout"}),
    ("TimeOut", LOGS, "hasToken(lower(Body), {q0:String})", {"q0": "timeout"}),
    # not a single token: every token through the index, plus the exact case-insensitive substring
    ("user_id", LOGS, "(hasToken(lower(Body), {q0:String}) AND hasToken(lower(Body), {q1:String}) AND "
                      "positionCaseInsensitiveUTF8(Body, {q2:String}) > 0)", {"q0": "user", "q1": "id", "q2": "user_id"}),
    ('"connection refused"', LOGS, "(hasToken(lower(Body), {q0:String}) AND hasToken(lower(Body), {q1:String}) AND "
                                   "positionCaseInsensitiveUTF8(Body, {q2:String}) > 0)",
     {"q0": "connection", "q1": "refused", "q2": "connection refused"}),
    ('"--"', LOGS, "positionCaseInsensitiveUTF8(Body, {q0:String}) > 0", {"q0": "--"}),
    # non-ASCII letters are token characters and are not lowered (ClickHouse's lower() is ASCII-only)
    ("Ärger", LOGS, "hasToken(lower(Body), {q0:String})", {"q0": "Ärger"}),
    # free-text wildcards: anywhere in the body
    ("conn*", LOGS, "Body ILIKE {q0:String}", {"q0": "%conn%"}),
    ("*fail?d", LOGS, "Body ILIKE {q0:String}", {"q0": "%fail_d%"}),
    ("100\\%", LOGS, "(hasToken(lower(Body), {q0:String}) AND positionCaseInsensitiveUTF8(Body, {q1:String}) > 0)",
     {"q0": "100", "q1": "100%"}),
    ("/time(out)?/", LOGS, "match(Body, {q0:String})", {"q0": "time(out)?"}),
    # fields: aliases, case-insensitive severity
    ("level:error", LOGS, "lower(SeverityText) = {q0:String}", {"q0": "error"}),
    ("severity:WARN", LOGS, "lower(SeverityText) = {q0:String}", {"q0": "warn"}),
    ("level:err*", LOGS, "SeverityText ILIKE {q0:String}", {"q0": "err%"}),
    ("service:api-gateway", LOGS, "ServiceName = {q0:String}", {"q0": "api-gateway"}),
    ('service:"api gateway"', LOGS, "ServiceName = {q0:String}", {"q0": "api gateway"}),
    ("service:pay*", LOGS, "ServiceName LIKE {q0:String}", {"q0": "pay%"}),
    ("service:a_b*", LOGS, "ServiceName LIKE {q0:String}", {"q0": "a\\_b%"}),
    ("trace_id:ABCdef", LOGS, "lower(TraceId) = {q0:String}", {"q0": "abcdef"}),
    # columns by their own names
    ("SeverityNumber:>=17", LOGS, "`SeverityNumber` >= {q0:Float64}", {"q0": 17.0}),
    ("SeverityNumber:[9 TO 16]", LOGS, "(`SeverityNumber` >= {q0:Float64} AND `SeverityNumber` <= {q1:Float64})",
     {"q0": 9.0, "q1": 16.0}),
    ("ServiceName:cart", LOGS, "`ServiceName` = {q0:String}", {"q0": "cart"}),
    ("LogAttributes.user.id:42", LOGS, "`LogAttributes`[{q0:String}] = {q1:String}", {"q0": "user.id", "q1": "42"}),
    # attributes: either map; explicit prefixes pick one
    ("http.route:/api", LOGS, None, {}),  # luqum reads /api as a regex start: a syntax error, see below
    ('http.route:"/api/v1"', LOGS, EITHER, {"q0": "http.route", "q1": "/api/v1"}),
    ("user.id:42", LOGS, EITHER, {"q0": "user.id", "q1": "42"}),
    ("attributes.anything:x", LOGS, "LogAttributes[{q0:String}] = {q1:String}", {"q0": "anything", "q1": "x"}),
    ("resource.host.name:n1", LOGS, "ResourceAttributes[{q0:String}] = {q1:String}", {"q0": "host.name", "q1": "n1"}),
    ("user.id:4*", LOGS, "(LogAttributes[{q0:String}] LIKE {q1:String} OR ResourceAttributes[{q0:String}] LIKE "
                         "{q1:String})", {"q0": "user.id", "q1": "4%"}),
    ("user.id:/4[0-9]/", LOGS, "(match(LogAttributes[{q1:String}], {q0:String}) OR "
                               "match(ResourceAttributes[{q1:String}], {q0:String}))", {"q0": "4[0-9]", "q1": "user.id"}),
    # a materialized column stands in for its attribute
    ("k8s.pod.name:payment-*", LOGS, "`__hdx_materialized_k8s.pod.name` LIKE {q0:String}", {"q0": "payment-%"}),
    # ranges on attributes compare numbers when given numbers, strings otherwise
    ("http.status_code:>=500", LOGS, "((toFloat64OrNull(LogAttributes[{q0:String}]) >= {q1:Float64}) OR "
                                     "(toFloat64OrNull(ResourceAttributes[{q0:String}]) >= {q1:Float64}))",
     {"q0": "http.status_code", "q1": 500.0}),
    ("user.id:[a TO m}", LOGS, "((LogAttributes[{q0:String}] >= {q1:String} AND LogAttributes[{q0:String}] < "
                               "{q2:String}) OR (ResourceAttributes[{q0:String}] >= {q1:String} AND "
                               "ResourceAttributes[{q0:String}] < {q2:String}))", {"q0": "user.id", "q1": "a", "q2": "m"}),
    ("user.id:[* TO *]", LOGS, "(mapContains(LogAttributes, {q0:String}) OR mapContains(ResourceAttributes, "
                               "{q0:String}))", {"q0": "user.id"}),
    # existence
    ("_exists_:user.id", LOGS, "(mapContains(LogAttributes, {q0:String}) OR mapContains(ResourceAttributes, "
                               "{q0:String}))", {"q0": "user.id"}),
    ("user.id:*", LOGS, "(mapContains(LogAttributes, {q0:String}) OR mapContains(ResourceAttributes, "
                        "{q0:String}))", {"q0": "user.id"}),
    ("_exists_:trace_id", LOGS, "TraceId != ''", {}),
    ("_exists_:k8s.pod.name", LOGS, "`__hdx_materialized_k8s.pod.name` != ''", {}),
    # boolean structure: implicit AND, OR, NOT, -, +, groups, field groups
    ("a b", LOGS, "(hasToken(lower(Body), {q0:String}) AND hasToken(lower(Body), {q1:String}))", {"q0": "a", "q1": "b"}),
    ("a AND b", LOGS, "(hasToken(lower(Body), {q0:String}) AND hasToken(lower(Body), {q1:String}))",
     {"q0": "a", "q1": "b"}),
    ("a OR b", LOGS, "(hasToken(lower(Body), {q0:String}) OR hasToken(lower(Body), {q1:String}))",
     {"q0": "a", "q1": "b"}),
    ("NOT a", LOGS, "NOT (hasToken(lower(Body), {q0:String}))", {"q0": "a"}),
    ("-a", LOGS, "NOT (hasToken(lower(Body), {q0:String}))", {"q0": "a"}),
    ("+a", LOGS, "hasToken(lower(Body), {q0:String})", {"q0": "a"}),
    ("-level:debug", LOGS, "NOT (lower(SeverityText) = {q0:String})", {"q0": "debug"}),
    ("a OR b AND c", LOGS, "(hasToken(lower(Body), {q0:String}) OR (hasToken(lower(Body), {q1:String}) AND "
                           "hasToken(lower(Body), {q2:String})))", {"q0": "a", "q1": "b", "q2": "c"}),
    ("(a OR b) c", LOGS, "((hasToken(lower(Body), {q0:String}) OR hasToken(lower(Body), {q1:String})) AND "
                         "hasToken(lower(Body), {q2:String}))", {"q0": "a", "q1": "b", "q2": "c"}),
    ("level:(error OR fatal)", LOGS, "(lower(SeverityText) = {q0:String} OR lower(SeverityText) = {q1:String})",
     {"q0": "error", "q1": "fatal"}),
    ('level:error service:api-gateway "connection refused"', LOGS,
     "(lower(SeverityText) = {q0:String} AND ServiceName = {q1:String} AND (hasToken(lower(Body), {q2:String}) AND "
     "hasToken(lower(Body), {q3:String}) AND positionCaseInsensitiveUTF8(Body, {q4:String}) > 0))",
     {"q0": "error", "q1": "api-gateway", "q2": "connection", "q3": "refused", "q4": "connection refused"}),
    # the seed's trace example: status as a number is the HTTP status, duration is in milliseconds
    ("status:500 duration:>1000", TRACES,
     "((SpanAttributes[{q1:String}] = {q0:String} OR SpanAttributes[{q2:String}] = {q0:String}) AND "
     "Duration > {q3:Float64})",
     {"q0": "500", "q1": "http.response.status_code", "q2": "http.status_code", "q3": 1e9}),
    ("status:error", TRACES, "lower(StatusCode) = {q0:String}", {"q0": "error"}),
    ("duration:[10 TO 20]", TRACES, "(Duration >= {q0:Float64} AND Duration <= {q1:Float64})",
     {"q0": 1e7, "q1": 2e7}),
    ("name:checkout kind:server", TRACES, "(SpanName = {q0:String} AND lower(SpanKind) = {q1:String})",
     {"q0": "checkout", "q1": "server"}),
    ("Duration:>5", TRACES, "`Duration` > {q0:Float64}", {"q0": 5.0}),  # the column (ns), not the alias (ms)
    ("DURATION:>5", TRACES, "Duration > {q0:Float64}", {"q0": 5e6}),
    # values that look like SQL are values
    ("service:\"x' OR 1=1 --\"", LOGS, "ServiceName = {q0:String}", {"q0": "x' OR 1=1 --"}),
    ("a\\:b", LOGS, "(hasToken(lower(Body), {q0:String}) AND hasToken(lower(Body), {q1:String}) AND "
                    "positionCaseInsensitiveUTF8(Body, {q2:String}) > 0)", {"q0": "a", "q1": "b", "q2": "a:b"}),
]


@pytest.mark.parametrize(("text", "resolver", "sql", "params"), [g for g in GOLDEN if g[2] is not None],
                         ids=[g[0] or "empty" for g in GOLDEN if g[2] is not None])
def test_golden(text: str, resolver: Resolver, sql: str, params: dict[str, Any]) -> None:
    compiled = compile_query(text, resolver)
    assert (compiled.sql, compiled.params) == (sql, params)


def test_no_value_reaches_the_sql_text() -> None:
    for text, resolver, _, _ in GOLDEN:
        try:
            compiled = compile_query(text, resolver)
        except ApiError:
            continue
        for value in compiled.params.values():
            if isinstance(value, str) and len(value) > 2 and value not in ("Body",):
                assert value not in compiled.sql, (text, value)


@pytest.mark.parametrize(("text", "position", "expected"), [
    ("level:(error", 12, "')'"),
    ("a AND AND b", 6, "a term"),
    ("a ) b", 2, "the end of the query"),
    ("x:[1 TO", 7, "a term"),
    ('"abc', 0, "a closing '\"'"),
    (":a", 0, "a term"),
    ("http.route:/api", 11, None),
])
def test_syntax_errors_say_where_and_what_was_expected(text: str, position: int, expected: str | None) -> None:
    with pytest.raises(ApiError) as info:
        compile_query(text, LOGS)
    error = info.value
    assert (error.status, error.code, error.field, error.position) == (400, "syntax_error", "q", position)
    if expected is not None:
        assert expected in (error.expected or []), error.expected
        assert f"{expected}" in error.message


@pytest.mark.parametrize(("text", "code", "words"), [
    ("nosuch:x", "unknown_field", "unknown field 'nosuch'"),
    ("Timestamp:x", "unknown_field", "has type DateTime64(9)"),
    ("SeverityNumber:high", "invalid_query", "is numeric"),
    ("duration:slow", "invalid_query", "is numeric"),
    ("x~2", "not_supported", "fuzzy"),
    ('"a b"~2', "not_supported", "proximity"),
    ("a^2", "not_supported", "boost"),
    ("a:b:c", "invalid_query", "cannot hold another field"),
    ("level:(service:x)", "invalid_query", "name one field"),
    (">5", "invalid_query", "a range needs a field"),
    ("x" * 4001, "syntax_error", "at most 4000"),
])
def test_bad_queries_answer_400_naming_the_problem(text: str, code: str, words: str) -> None:
    resolver = TRACES if text.startswith("duration") else LOGS
    with pytest.raises(ApiError) as info:
        compile_query(text, resolver)
    assert info.value.status == 400 and info.value.code == code and info.value.field == "q"
    assert words in info.value.message


def test_free_text_needs_a_body() -> None:
    with pytest.raises(ApiError, match="no body"):
        compile_query("timeout", TRACES)


def test_tokens_split_like_clickhouse() -> None:
    assert tokens("GET /api/v1/items?id=4 Ärger_x") == ["GET", "api", "v1", "items", "id", "4", "Ärger", "x"]


def test_unknown_keys_are_checked_only_when_a_name_gets_that_far() -> None:
    asked = []

    def keys() -> set[str]:
        asked.append(1)
        return {"user.id"}

    resolver = Resolver(LOGS.aliases, LOG_COLUMNS, "LogAttributes", "ResourceAttributes", known_keys=keys,
                        body="Body")
    compile_query("level:error SeverityNumber:9 attributes.x:1", resolver)
    assert asked == []
    compile_query("user.id:1", resolver)
    assert asked == [1]
