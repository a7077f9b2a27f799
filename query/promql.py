"""The PromQL subset Maple answers, parsed with the `promql-parser` package into a small plan.

Accepted (anything else is a 400 naming the construct):

* selectors: ``name{label="v", label!="v", label=~"re", label!~"re"}``; OpenTelemetry names with dots are
  written quoted (``{"traces.span.metrics.calls", "service.name"="api"}``) or with underscores
  (``traces_span_metrics_calls{service_name="api"}``); histograms as ``name_bucket``, ``name_count``, ``name_sum``;
* ``rate``, ``irate``, ``increase`` over a range selector ``[5m]``;
* ``sum``, ``avg``, ``min``, ``max``, ``count`` with ``by (...)`` or ``without (...)``, over a selector or one of
  the functions above;
* ``histogram_quantile(φ, rate(name_bucket[5m]))`` and ``histogram_quantile(φ, sum by (le, ...) (rate(...)))``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

import promql_parser

from query.errors import ApiError

RangeFunction = Literal["rate", "irate", "increase"]
Aggregation = Literal["sum", "avg", "min", "max", "count"]
RANGE_FUNCTIONS = ("rate", "irate", "increase")
AGGREGATIONS = ("sum", "avg", "min", "max", "count")
MAX_QUERY_LENGTH = 4000


@dataclass(frozen=True)
class Matcher:
    label: str
    op: Literal["=", "!=", "=~", "!~"]
    value: str


@dataclass(frozen=True)
class Selector:
    metric: str
    matchers: tuple[Matcher, ...] = ()
    range_s: float | None = None      # set for a range selector: name[5m]


@dataclass(frozen=True)
class Plan:
    """What to compute: a selector, optionally a range function over it, optionally one aggregation, and
    optionally a histogram quantile over the result."""

    selector: Selector
    function: RangeFunction | None = None
    aggregation: Aggregation | None = None
    by: tuple[str, ...] | None = None        # grouping labels (by)
    without: tuple[str, ...] | None = None   # labels dropped (without)
    quantile: float | None = None
    text: str = field(default="", compare=False)


def _fail(message: str, code: str = "invalid_query") -> ApiError:
    return ApiError(400, code, message, field="query")


def _unsupported(what: str) -> ApiError:
    return _fail(f"{what} is not in Maple's PromQL subset (selectors, rate/irate/increase, sum/avg/min/max/count "
                 "by/without, histogram_quantile; docs/query.md)", "not_supported")


_OPS = {"Equal": "=", "NotEqual": "!=", "Re": "=~", "NotRe": "!~"}


def _selector(node: object, range_s: float | None) -> Selector:
    if not isinstance(node, promql_parser.VectorSelector):
        raise _unsupported(f"{type(node).__name__} here")
    if node.offset is not None:
        raise _unsupported("offset")
    if node.at is not None:
        raise _unsupported("the @ modifier")
    if node.matchers.or_matchers:
        raise _unsupported("'or' inside a selector")
    name = node.name
    matchers = []
    for matcher in node.matchers.matchers:
        op = _OPS.get(str(matcher.op).rsplit(".", 1)[-1])
        if op is None:
            raise _unsupported(f"the matcher {matcher.op}")
        if matcher.name == "__name__":
            if op != "=":
                raise _unsupported("matching __name__ with anything but =")
            if name and name != matcher.value:
                raise _fail(f"two metric names: {name} and {matcher.value}")
            name = matcher.value
            continue
        matchers.append(Matcher(matcher.name, op, matcher.value))  # type: ignore[arg-type]
    if not name:
        raise _fail("a selector must name a metric (name{...} or {\"dotted.name\", ...})")
    return Selector(name, tuple(matchers), range_s)


def _range_seconds(value: object) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    raise _fail(f"cannot read the range {value!r}")


def _inner(node: object) -> tuple[Selector, RangeFunction | None]:
    """A selector, or rate/irate/increase over a range selector."""
    if isinstance(node, promql_parser.ParenExpr):
        return _inner(node.expr)
    if isinstance(node, promql_parser.Call):
        name = node.func.name
        if name not in RANGE_FUNCTIONS:
            raise _unsupported(f"the function {name}()")
        (arg,) = node.args
        if not isinstance(arg, promql_parser.MatrixSelector):
            raise _fail(f"{name}() takes a range selector such as name[5m]")
        seconds = _range_seconds(arg.range)
        if seconds <= 0:
            raise _fail(f"{name}(): the range must be positive")
        return _selector(arg.vector_selector, seconds), name  # type: ignore[return-value]
    if isinstance(node, promql_parser.MatrixSelector):
        raise _fail("a range selector (name[5m]) needs a function: rate, irate or increase")
    if isinstance(node, promql_parser.VectorSelector):
        return _selector(node, None), None
    raise _unsupported(type(node).__name__)


def _aggregate(node: promql_parser.AggregateExpr) -> tuple[Aggregation, tuple[str, ...] | None,
                                                             tuple[str, ...] | None, object]:
    op = str(node.op)
    if op not in AGGREGATIONS:
        raise _unsupported(f"the aggregation {op}")
    if node.param is not None:
        raise _unsupported(f"{op} with a parameter")
    by = without = None
    if node.modifier is not None:
        labels = tuple(node.modifier.labels)
        if str(node.modifier.type).endswith("By"):
            by = labels
        else:
            without = labels
    return op, by, without, node.expr  # type: ignore[return-value]


def parse(text: str) -> Plan:
    """The plan of a PromQL query in the subset; 400 naming what is wrong or unsupported."""
    if len(text) > MAX_QUERY_LENGTH:
        raise _fail(f"the query is longer than {MAX_QUERY_LENGTH} characters")
    if not text.strip():
        raise _fail("query: empty")
    try:
        node = promql_parser.parse(text)
    except ValueError as exc:
        raise ApiError(400, "syntax_error", f"query: {exc}", field="query") from None
    while isinstance(node, promql_parser.ParenExpr):
        node = node.expr
    quantile = None
    if isinstance(node, promql_parser.Call) and node.func.name == "histogram_quantile":
        phi, node = node.args
        if not isinstance(phi, promql_parser.NumberLiteral):
            raise _fail("histogram_quantile() takes a number as its first argument")
        quantile = float(phi.val)
        if not 0 <= quantile <= 1:
            raise _fail(f"histogram_quantile(): {quantile} is not between 0 and 1")
        while isinstance(node, promql_parser.ParenExpr):
            node = node.expr
    aggregation: Aggregation | None = None
    by: tuple[str, ...] | None = None
    without: tuple[str, ...] | None = None
    inner: object = node
    if isinstance(node, promql_parser.AggregateExpr):
        aggregation, by, without, inner = _aggregate(node)
    elif isinstance(node, (promql_parser.BinaryExpr, promql_parser.UnaryExpr)):
        raise _unsupported("arithmetic and comparison operators")
    elif isinstance(node, promql_parser.SubqueryExpr):
        raise _unsupported("subqueries")
    elif isinstance(node, (promql_parser.NumberLiteral, promql_parser.StringLiteral)):
        raise _unsupported("a literal on its own")
    selector, function = _inner(inner)
    if quantile is not None:
        if function not in ("rate", "increase"):
            raise _fail("histogram_quantile() needs rate() or increase() of a histogram's _bucket series")
        if aggregation is not None and aggregation != "sum":
            raise _fail("histogram_quantile() over an aggregation needs sum by (le, ...)")
        if aggregation is not None and by is None and without is None:
            raise _fail("histogram_quantile() needs the le label: sum by (le, ...)")
        if by is not None and "le" not in by:
            raise _fail("histogram_quantile() needs the le label: sum by (le, ...)")
        if without is not None and "le" in without:
            raise _fail("histogram_quantile() needs the le label: do not aggregate it away")
    return Plan(selector, function, aggregation, by, without, quantile, text)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _label(name: str) -> str:
    return name if name.replace("_", "a").isalnum() and not name[0].isdigit() else _quote(name)


def build(metric: str, filters: list[tuple[str, str, str]], function: str | None, range_s: int,
          aggregation: str | None, by: list[str], quantile: float | None) -> str:
    """PromQL text for the structured form of /metrics/query (then parsed like any query)."""
    if quantile is not None and not metric.endswith("_bucket"):
        metric += "_bucket"
    matchers = [_quote(metric)] + [f"{_label(label)}{op}{_quote(value)}" for label, op, value in filters]
    expr = "{" + ", ".join(matchers) + "}"
    if quantile is not None:
        function = function or "rate"
    if function:
        expr = f"{function}({expr}[{range_s}s])"
    if quantile is not None:
        labels = ["le"] + [label for label in by if label != "le"]
        expr = f"sum by ({', '.join(_label(label) for label in labels)}) ({expr})"
        return f"histogram_quantile({quantile!r}, {expr})"
    if aggregation:
        grouping = f" by ({', '.join(_label(label) for label in by)})" if by else ""
        expr = f"{aggregation}{grouping} ({expr})"
    return expr
