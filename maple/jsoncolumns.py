"""The row-batch format of the processed topics: JSONColumns blocks, `{"Column": [v1, v2, ...], ...}`.

ClickHouse parses them itself (FORMAT JSONColumns), so a sink concatenates blocks (newline-separated) and
never decodes rows. Every cut of a batch by rows happens here: the worker's size limit per Kafka record,
the sink's bisection of rows ClickHouse refuses, the size cap of dead letters.
"""

from __future__ import annotations

from typing import Any

import orjson

# A row batch stays far below the processed topics' 16 MiB record limit, compressed or not.
MAX_BATCH_BYTES = 4 * 1024 * 1024
# One row alone may be bigger than a batch, up to the processed topics' record limit less room for headers
# and framing; a larger row cannot travel through Kafka at all.
MAX_ROW_BYTES = 15 * 1024 * 1024

Columns = dict[str, list[Any]]


class RowTooLarge(ValueError):
    """One row alone is over the size limit of a block."""


def _rows(columns: Columns) -> int:
    return min((len(v) for v in columns.values() if isinstance(v, list)), default=0)


def _halves(columns: Columns) -> tuple[Columns, Columns]:
    middle = _rows(columns) // 2
    return {k: v[:middle] for k, v in columns.items()}, {k: v[middle:] for k, v in columns.items()}


def _non_finite(value: float) -> str:
    return "nan" if value != value else ("inf" if value > 0 else "-inf")


def _floats_safe(values: list[Any]) -> list[Any] | None:
    """`values` with every NaN/±Inf float (also one level down, in arrays) as its text; None if none has one."""
    changed = None
    for i, value in enumerate(values):
        if type(value) is float:
            if value - value != 0:  # NaN or ±Inf (finite x - x is 0)
                changed = changed if changed is not None else list(values)
                changed[i] = _non_finite(value)
        elif type(value) in (list, tuple) and value and type(value[0]) is float:
            inner = _floats_safe(list(value))
            if inner is not None:
                changed = changed if changed is not None else list(values)
                changed[i] = inner
    return changed


def dumps(columns: Columns) -> bytes:
    """One JSONColumns block. NaN, +Inf and -Inf go as "nan", "inf", "-inf", which ClickHouse parses into
    Float64 exactly (orjson alone would write null, stored as 0). Columns never hold None, so a block
    without a null token needs no second look; only float columns (and float arrays) are walked."""
    block = orjson.dumps(columns)
    if b"null" not in block:
        return block
    fixed = {}
    for name, values in columns.items():
        if _holds_floats(values):
            safe = _floats_safe(values)
            if safe is not None:
                fixed[name] = safe
    return orjson.dumps({**columns, **fixed}) if fixed else block


def _holds_floats(values: list[Any]) -> bool:
    """Whether a column holds floats or float arrays (columns are homogeneous: the first telling value says)."""
    for value in values:
        if type(value) is float:
            return True
        if type(value) in (list, tuple):
            if value:
                return type(value[0]) is float
            continue  # an empty array says nothing
        return False
    return False


def encode(columns: Columns, limit: int = MAX_BATCH_BYTES, row_limit: int = MAX_ROW_BYTES) -> list[tuple[int, bytes]]:
    """The columns as blocks of at most `limit` bytes (split by rows): (rows, block) pairs, in row order.
    A single row over `limit` goes alone, up to `row_limit`; RowTooLarge above that."""
    block = dumps(columns)
    rows = len(next(iter(columns.values())))
    if len(block) <= limit or (rows == 1 and len(block) <= row_limit):
        return [(rows, block)]
    if rows < 2:
        raise RowTooLarge(f"a row of {len(block)} bytes exceeds the {row_limit}-byte limit of a row in Kafka")
    left, right = _halves(columns)
    return encode(left, limit, row_limit) + encode(right, limit, row_limit)


def count_rows(data: bytes) -> int:
    """Rows in newline-separated blocks (JSON text never holds a raw newline); unreadable lines count 0."""
    total = 0
    for line in data.split(b"\n"):
        try:
            columns = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(columns, dict) and columns:
            total += _rows(columns)
    return total


def split_block(block: bytes) -> tuple[bytes, bytes] | None:
    """One block cut into two halves by rows; None if it holds one row or is not JSONColumns."""
    try:
        columns = orjson.loads(block)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(columns, dict) or not columns or _rows(columns) < 2:
        return None
    left, right = _halves(columns)
    return orjson.dumps(left), orjson.dumps(right)


def cap_block(data: bytes, limit: int) -> list[bytes]:
    """Newline-separated blocks cut into pieces of at most `limit` bytes, by blocks, then rows. A single row
    over the limit stays whole (it cannot be cut)."""
    pieces: list[bytes] = []
    pending = data.split(b"\n") if len(data) > limit else [data]
    while pending:
        block = pending.pop(0)
        if len(block) <= limit:
            pieces.append(block)
            continue
        halves = split_block(block)
        if halves is None:
            pieces.append(block)
        else:
            pending[:0] = list(halves)
    return pieces
