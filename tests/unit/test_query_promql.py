"""The PromQL subset: what parses into which plan, what is refused and why, and the structured form."""

from __future__ import annotations

import pytest

from query.errors import ApiError
from query.promql import Matcher, Plan, Selector, build, parse

CALLS = "traces.span.metrics.calls"

GOLDEN: list[tuple[str, Plan]] = [
    ("up", Plan(Selector("up"))),
    ('up{job="api", env!="dev", pod=~"web-.*", zone!~"eu.*"}',
     Plan(Selector("up", (Matcher("job", "=", "api"), Matcher("env", "!=", "dev"), Matcher("pod", "=~", "web-.*"),
                          Matcher("zone", "!~", "eu.*"))))),
    ('{"traces.span.metrics.calls", "service.name"="cart"}',
     Plan(Selector(CALLS, (Matcher("service.name", "=", "cart"),)))),
    ('{__name__="traces.span.metrics.calls"}', Plan(Selector(CALLS))),
    ("rate(http_requests_total[5m])", Plan(Selector("http_requests_total", (), 300.0), "rate")),
    ("irate(http_requests_total[30s])", Plan(Selector("http_requests_total", (), 30.0), "irate")),
    ("increase(http_requests_total[1h])", Plan(Selector("http_requests_total", (), 3600.0), "increase")),
    ("sum(rate(x[1m]))", Plan(Selector("x", (), 60.0), "rate", "sum")),
    ("sum by (service_name, route) (rate(x[1m]))", Plan(Selector("x", (), 60.0), "rate", "sum", ("service_name", "route"))),
    ("sum(rate(x[1m])) by (a)", Plan(Selector("x", (), 60.0), "rate", "sum", ("a",))),
    ("avg without (pod) (x)", Plan(Selector("x"), None, "avg", None, ("pod",))),
    ("max by (a) (x)", Plan(Selector("x"), None, "max", ("a",))),
    ("min(x)", Plan(Selector("x"), None, "min")),
    ("count by (a) (x)", Plan(Selector("x"), None, "count", ("a",))),
    ('sum by ("service.name") (x)', Plan(Selector("x"), None, "sum", ("service.name",))),
    ("histogram_quantile(0.95, rate(d_bucket[5m]))", Plan(Selector("d_bucket", (), 300.0), "rate", quantile=0.95)),
    ("histogram_quantile(0.5, sum by (le, svc) (rate(d_bucket[5m])))",
     Plan(Selector("d_bucket", (), 300.0), "rate", "sum", ("le", "svc"), quantile=0.5)),
    ("histogram_quantile(0.9, sum without (pod) (increase(d_bucket[10m])))",
     Plan(Selector("d_bucket", (), 600.0), "increase", "sum", None, ("pod",), 0.9)),
    ("(sum(x))", Plan(Selector("x"), None, "sum")),
]


@pytest.mark.parametrize(("text", "plan"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden(text: str, plan: Plan) -> None:
    assert parse(text) == plan


@pytest.mark.parametrize(("text", "code", "words"), [
    ("x + 1", "not_supported", "arithmetic"),
    ("-x", "not_supported", "arithmetic"),
    ("x > 5", "not_supported", "arithmetic"),
    ("topk(3, x)", "not_supported", "topk"),
    ("quantile(0.9, x)", "not_supported", "quantile"),
    ("avg_over_time(x[5m])", "not_supported", "avg_over_time"),
    ("rate(x[5m] offset 1m)", "not_supported", "offset"),
    ("x @ 100", "not_supported", "@"),
    ("rate(x[5m])[30m:1m]", "not_supported", "subqueries"),
    ("sum(sum(x))", "not_supported", "AggregateExpr"),
    ("x[5m]", "invalid_query", "needs a function"),
    ("rate(x)", "syntax_error", "expected type matrix"),
    ("histogram_quantile(1.5, rate(d_bucket[5m]))", "invalid_query", "between 0 and 1"),
    ("histogram_quantile(0.5, sum(rate(d_bucket[5m])))", "invalid_query", "le label"),
    ("histogram_quantile(0.5, sum by (svc) (rate(d_bucket[5m])))", "invalid_query", "le label"),
    ("histogram_quantile(0.5, max by (le) (rate(d_bucket[5m])))", "invalid_query", "sum by (le"),
    ("histogram_quantile(0.5, d_bucket)", "invalid_query", "needs rate()"),
    ("sum(", "syntax_error", "unclosed left parenthesis"),
    ('x{a="b"', "syntax_error", "braces"),
    ("", "invalid_query", "empty"),
    ("1", "not_supported", "literal"),
    ('{a="b"}', "invalid_query", "must name a metric"),
])
def test_refused_with_the_reason(text: str, code: str, words: str) -> None:
    with pytest.raises(ApiError) as info:
        parse(text)
    assert (info.value.status, info.value.code, info.value.field) == (400, code, "query")
    assert words in info.value.message


def test_the_structured_form_is_plain_promql() -> None:
    text = build(CALLS, [("service.name", "=", 'a"b\\c'), ("span.kind", "!=", "x")], "rate", 300, "sum",
                 ["service.name"], None)
    assert text == ('sum by ("service.name") (rate({"traces.span.metrics.calls", "service.name"="a\\"b\\\\c", '
                    '"span.kind"!="x"}[300s]))')
    plan = parse(text)
    assert plan.selector.matchers[0] == Matcher("service.name", "=", 'a"b\\c')
    quantile = build("traces.span.metrics.duration", [], None, 60, None, ["service.name"], 0.99)
    assert quantile == ('histogram_quantile(0.99, sum by (le, "service.name") '
                        '(rate({"traces.span.metrics.duration_bucket"}[60s])))')
    assert parse(quantile).quantile == 0.99
    assert build("up", [], None, 60, None, [], None) == '{"up"}'
