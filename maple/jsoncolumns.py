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

Columns = dict[str, list[Any]]


class RowTooLarge(ValueError):
    """One row alone is over the size limit of a block."""


def _rows(columns: Columns) -> int:
    return min((len(v) for v in columns.values() if isinstance(v, list)), default=0)


def _halves(columns: Columns) -> tuple[Columns, Columns]:
    middle = _rows(columns) // 2
    return {k: v[:middle] for k, v in columns.items()}, {k: v[middle:] for k, v in columns.items()}


def encode(columns: Columns, limit: int = MAX_BATCH_BYTES) -> list[tuple[int, bytes]]:
    """The columns as blocks of at most `limit` bytes (split by rows): (rows, block) pairs, in row order."""
    block = orjson.dumps(columns)
    rows = len(next(iter(columns.values())))
    if len(block) <= limit:
        return [(rows, block)]
    if rows < 2:
        raise RowTooLarge(f"a row of {len(block)} bytes exceeds the {limit}-byte row batch limit")
    left, right = _halves(columns)
    return encode(left, limit) + encode(right, limit)


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
