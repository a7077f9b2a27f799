"""Expand a Grafana ClickHouse panel's SQL the way Grafana and the grafana-clickhouse-datasource plugin do,
so tests can run dashboard queries against the real engine.

Supported, in the order Grafana applies them:

1. `$__conditionalAll(condition, $var)` (the plugin's frontend): `1=1` when `var` is set to All, else
   `condition`. The condition may contain commas and parentheses.
2. Template variables (Grafana's template service): `$name`, `${name}`, `${name:singlequote}` (each value in
   single quotes, `'` escaped as `\\'`, joined with commas) and `${name:sqlstring}` (each value in single
   quotes, `'` doubled, joined with commas). A multi-valued variable must name a format. Names starting
   with `__` are left to step 3.
3. The plugin's backend macros, with `from`/`to` as the dashboard's time range and `interval_s` as the
   panel interval (at least 1 s):
   `$__timeFilter(col)` -> `col >= toDateTime(<from s>) AND col <= toDateTime(<to s>)`,
   `$__timeFilter_ms(col)` -> the same with `fromUnixTimestamp64Milli(<ms>)`,
   `$__dateFilter(col)` -> `col >= toDate('<from date>') AND col <= toDate('<to date>')`,
   `$__dateTimeFilter(dcol, tcol)` / `$__dt(dcol, tcol)` -> both of the above, parenthesised,
   `$__fromTime` / `$__toTime` -> `toDateTime(<s>)`, `$__fromTime_ms` / `$__toTime_ms` ->
   `fromUnixTimestamp64Milli(<ms>)`, `$__timeInterval(col)` -> `toStartOfInterval(toDateTime(col),
   INTERVAL <interval_s> second)`, `$__timeInterval_ms(col)` -> `toStartOfInterval(toDateTime64(col, 3),
   INTERVAL <interval ms> millisecond)`, `$__interval_s` -> `<interval_s>`.

Anything else that looks like a macro (`$__name`) or an undefined variable raises `ExpansionError`: a
dashboard must not depend on something these tests cannot check.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime


class ExpansionError(ValueError):
    pass


class All(list):
    """A variable set to All: Grafana passes every option's value (the list)."""


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime
    interval_s: float = 60.0

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("time range bounds must be timezone-aware")


Values = Mapping[str, "str | list[str]"]

_VAR = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")
_MACRO = re.compile(r"\$__(\w+)")


def expand(sql: str, variables: Values, time_range: TimeRange) -> str:
    sql = _conditional_all(sql, variables)
    sql = _variables(sql, variables)
    return _macros(sql, time_range)


def _args(sql: str, open_at: int) -> tuple[list[str], int]:
    """The comma-separated arguments of the call whose `(` is at `open_at`, and the index after its `)`."""
    depth, quote, start, args = 0, "", open_at + 1, []
    for i in range(open_at, len(sql)):
        ch = sql[i]
        if quote:
            if ch == quote and sql[i - 1] != "\\":
                quote = ""
        elif ch in "'\"`":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                args.append(sql[start:i].strip())
                return args, i + 1
        elif ch == "," and depth == 1:
            args.append(sql[start:i].strip())
            start = i + 1
    raise ExpansionError(f"unbalanced parentheses after {sql[max(0, open_at - 20):open_at + 1]!r}")


def _conditional_all(sql: str, variables: Values) -> str:
    name = "$__conditionalAll"
    while (at := sql.find(name)) >= 0:
        open_at = at + len(name)
        if open_at >= len(sql) or sql[open_at] != "(":
            raise ExpansionError("$__conditionalAll needs (condition, $variable)")
        args, end = _args(sql, open_at)
        if len(args) != 2:
            raise ExpansionError(f"$__conditionalAll takes 2 arguments, got {len(args)}: {args}")
        match = re.fullmatch(r"\$\{?(\w+)\}?", args[1])
        if not match or match.group(1) not in variables:
            raise ExpansionError(f"$__conditionalAll: {args[1]!r} is not a defined variable")
        chosen = "1=1" if isinstance(variables[match.group(1)], All) else args[0]
        sql = sql[:at] + chosen + sql[end:]
    return sql


def _format(name: str, value: str | list[str], fmt: str | None) -> str:
    values = [value] if isinstance(value, str) else list(value)
    if fmt is None:
        if len(values) != 1:
            raise ExpansionError(f"${name} has {len(values)} values: name a format such as ${{{name}:singlequote}}")
        return values[0]
    if fmt == "singlequote":
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
    if fmt == "sqlstring":
        return ",".join("'" + v.replace("'", "''") + "'" for v in values)
    raise ExpansionError(f"${{{name}:{fmt}}}: format {fmt!r} is not supported by this expander")


def _variables(sql: str, variables: Values) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        if name.startswith("__"):
            return match.group(0)  # a macro: step 3
        if name not in variables:
            raise ExpansionError(f"${name} is not a defined variable")
        return _format(name, variables[name], match.group(2))

    return _VAR.sub(replace, sql)


def _dt(moment: datetime) -> str:
    return f"toDateTime({int(moment.timestamp())})"


def _dt_ms(moment: datetime) -> str:
    return f"fromUnixTimestamp64Milli({int(moment.timestamp() * 1000)})"


def _date(moment: datetime) -> str:
    return f"toDate('{moment.astimezone(UTC):%Y-%m-%d}')"


def _macros(sql: str, tr: TimeRange) -> str:
    seconds = max(int(tr.interval_s), 1)
    millis = max(int(tr.interval_s * 1000), 1)
    no_args = {"fromTime": _dt(tr.start), "toTime": _dt(tr.end), "fromTime_ms": _dt_ms(tr.start),
               "toTime_ms": _dt_ms(tr.end), "interval_s": str(seconds)}
    one_arg = {
        "timeFilter": lambda c: f"{c} >= {_dt(tr.start)} AND {c} <= {_dt(tr.end)}",
        "timeFilter_ms": lambda c: f"{c} >= {_dt_ms(tr.start)} AND {c} <= {_dt_ms(tr.end)}",
        "dateFilter": lambda c: f"{c} >= {_date(tr.start)} AND {c} <= {_date(tr.end)}",
        "timeInterval": lambda c: f"toStartOfInterval(toDateTime({c}), INTERVAL {seconds} second)",
        "timeInterval_ms": lambda c: f"toStartOfInterval(toDateTime64({c}, 3), INTERVAL {millis} millisecond)",
    }

    def date_time(d: str, t: str) -> str:
        return (f"({d} >= {_date(tr.start)} AND {d} <= {_date(tr.end)}) AND "
                f"({t} >= {_dt(tr.start)} AND {t} <= {_dt(tr.end)})")

    out, pos = [], 0
    while (match := _MACRO.search(sql, pos)) is not None:
        name, end = match.group(1), match.end()
        out.append(sql[pos:match.start()])
        if name in no_args:
            out.append(no_args[name])
        elif name in one_arg or name in ("dateTimeFilter", "dt"):
            if end >= len(sql) or sql[end] != "(":
                raise ExpansionError(f"$__{name} needs arguments")
            args, end = _args(sql, end)
            wanted = 2 if name in ("dateTimeFilter", "dt") else 1
            if len(args) != wanted or not all(args):
                raise ExpansionError(f"$__{name} takes {wanted} argument(s), got {args}")
            out.append(date_time(*args) if wanted == 2 else one_arg[name](args[0]))
        else:
            raise ExpansionError(f"unknown macro $__{name}")
        pos = end
    out.append(sql[pos:])
    return "".join(out)
