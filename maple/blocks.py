"""Row batches on the processed topics, in either of their two formats (the contract is in maple/topics.py).

* **JSONColumns** (`{"Column": [v1, v2, ...], ...}`): what the Python processors write. Blocks of one
  table are joined with newlines into one insert.
* **Native** (ClickHouse's columnar binary format): what the compiled core (`maple_native`, built from
  `native/`) writes. It is smaller and costs ClickHouse a fraction of JSON's parsing; blocks of one table
  are concatenated into one insert, which ClickHouse squashes into a single insert block.

A batch says which it is in its `maple.format` header; no header means JSONColumns (every batch written
before the compiled core existed). This module counts, splits, takes and decodes rows of either format,
with `maple_native` when it is installed and in plain Python otherwise (slow, but only sinks bisecting
bad rows, routing to shards on a cluster, and `maple dlq` need it).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any

import orjson

from maple import jsoncolumns
from maple.jsoncolumns import MAX_BATCH_BYTES, RowTooLarge
from maple.native import core
from maple.topics import FORMAT_JSON, FORMAT_NATIVE

__all__ = ["FORMAT_JSON", "FORMAT_NATIVE", "MAX_BATCH_BYTES", "RowTooLarge", "cap", "count_rows", "cut", "decode",
           "join", "pieces", "split", "take", "with_constant"]


def format_of(header: bytes | None) -> str:
    """The format named by a batch's `maple.format` header (JSONColumns without one)."""
    if not header:
        return FORMAT_JSON
    name = bytes(header).decode()
    if name not in (FORMAT_JSON, FORMAT_NATIVE):
        raise ValueError(f"unknown row batch format {name!r} in the maple.format header")
    return name


def join(blocks: Iterable[bytes], fmt: str) -> bytes:
    """One insert body from blocks of one table and format."""
    return (b"\n" if fmt == FORMAT_JSON else b"").join(blocks)


def pieces(data: bytes, fmt: str) -> list[bytes]:
    """The separate blocks of an insert body (the inverse of `join`)."""
    if fmt == FORMAT_JSON:
        return data.split(b"\n")
    if core is not None:
        return list(core.split_stream(data))
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        start = pos
        pos = _read_block(data, pos, out=None)
        out.append(data[start:pos])
    return out


def count_rows(data: bytes, fmt: str = FORMAT_JSON) -> int:
    """Rows in an insert body; 0 for what cannot be read."""
    if fmt == FORMAT_NATIVE:
        try:
            return int(core.block_rows(data)) if core is not None else _native_rows(data)
        except ValueError:
            return 0
    return jsoncolumns.count_rows(data)


def split(block: bytes, fmt: str) -> tuple[bytes, bytes] | None:
    """One block cut in two halves by rows; None if it holds fewer than two rows or cannot be read."""
    if fmt == FORMAT_NATIVE:
        try:
            if core is not None:
                halves = core.split_block(block)
                return (bytes(halves[0]), bytes(halves[1])) if halves is not None else None
            columns, types = _decode_native(block)
        except ValueError:
            return None
        rows = len(next(iter(columns.values()), []))
        if rows < 2:
            return None
        middle = rows // 2
        return (encode_native({k: v[:middle] for k, v in columns.items()}, types),
                encode_native({k: v[middle:] for k, v in columns.items()}, types))
    return jsoncolumns.split_block(block)


def cut(block: bytes, limit: int = MAX_BATCH_BYTES) -> list[tuple[int, bytes]]:
    """One Native block as (rows, block) pieces of at most `limit` bytes, halving by rows as
    jsoncolumns.encode does; RowTooLarge when one row alone is over the limit."""
    if len(block) <= limit:
        return [(count_rows(block, FORMAT_NATIVE), block)]
    halves = split(block, FORMAT_NATIVE)
    if halves is None:
        raise RowTooLarge(f"a row of {len(block)} bytes exceeds the {limit}-byte row batch limit")
    return cut(halves[0], limit) + cut(halves[1], limit)


def cap(data: bytes, limit: int, fmt: str) -> list[bytes]:
    """An insert body cut into pieces of at most `limit` bytes, by blocks, then rows (dead letters). A single
    row over the limit stays whole (it cannot be cut)."""
    if fmt == FORMAT_JSON:
        return jsoncolumns.cap_block(data, limit)
    out: list[bytes] = []
    try:
        pending = pieces(data, fmt) if len(data) > limit else [data]
    except ValueError:
        pending = [data]
    while pending:
        block = pending.pop(0)
        halves = split(block, fmt) if len(block) > limit else None
        if halves is None:
            out.append(block)
        else:
            pending[:0] = list(halves)
    return out


def with_constant(block: bytes, fmt: str, rows: int, column: str, value: str) -> bytes:
    """One block with one more String column holding `value` in every row, made on the bytes. JSONColumns
    gets one more key of `rows` values (the object does not say its row count); Native (one block: `varuint
    columns, varuint rows`, then each column's name, type and data) one more column at the end, its column
    count raised by one."""
    if fmt == FORMAT_JSON:
        body = block.rstrip()
        if not body.startswith(b"{") or not body.endswith(b"}"):
            raise ValueError("not a JSONColumns object")
        separator = b"" if body[1:-1].strip() == b"" else b","
        return (body[:-1] + separator + orjson.dumps(column) + b":[" + b",".join([orjson.dumps(value)] * rows)
                + b"]}")
    if fmt == FORMAT_NATIVE:
        columns, after = _varint(block, 0)
        rows, _ = _varint(block, after)  # the block's own count: it is what ClickHouse will read
        out = bytearray()
        _put_varint(out, columns + 1)
        out += block[after:]
        for text in (column.encode(), b"String"):
            _put_varint(out, len(text))
            out += text
        one = bytearray()
        _put_varint(one, len(value.encode()))
        out += (bytes(one) + value.encode()) * rows  # one copy per row, made in C: the sink's hot path
        return bytes(out)
    raise ValueError(f"unknown row batch format {fmt!r}")


def take(block: bytes, fmt: str, rows: list[int]) -> bytes:
    """A new block of the given rows (in that order) of one block."""
    if fmt == FORMAT_NATIVE:
        if core is not None:
            return bytes(core.take_rows(block, rows))
        columns, types = _decode_native(block)
        return encode_native({k: [v[i] for i in rows] for k, v in columns.items()}, types)
    columns = orjson.loads(block)
    return orjson.dumps({k: [v[i] for i in rows] if isinstance(v, list) else v for k, v in columns.items()})


def decode(data: bytes, fmt: str) -> dict[str, list[Any]]:
    """Columns of an insert body. Native DateTime64 values are integer ticks (nanoseconds for (9))."""
    if fmt == FORMAT_JSON:
        out: dict[str, list[Any]] = {}
        for line in data.split(b"\n"):
            for name, values in orjson.loads(line).items():
                out.setdefault(name, []).extend(values)
        return out
    if core is not None:
        return dict(core.decode_block(data))
    out = {}
    pos = 0
    while pos < len(data):
        block: dict[str, list[Any]] = {}
        pos = _read_block(data, pos, out=block)
        for name, values in block.items():
            out.setdefault(name, []).extend(values)
    return out


def types(block: bytes) -> list[tuple[str, str]]:
    """The (name, type) of each column of a Native block."""
    if core is not None:
        return [(str(n), str(t)) for n, t in core.block_columns(block)]
    return _decode_native(block)[1]


# -- Native in plain Python (the fallback, and a second implementation the tests hold the core against) --

_FIXED = {"UInt8": "<B", "UInt16": "<H", "UInt32": "<I", "UInt64": "<Q", "Int8": "<b", "Int16": "<h",
          "Int32": "<i", "Int64": "<q", "Float32": "<f", "Float64": "<d", "Bool": "<?", "DateTime": "<I"}


def _fixed(type_: str) -> str | None:
    return "<q" if type_.startswith("DateTime64(") else _FIXED.get(type_)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("not a Native block: a truncated length")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("not a Native block: a length over 64 bits")


def _inner(type_: str, prefix: str) -> str:
    return type_[len(prefix):-1]


def _map_parts(type_: str) -> tuple[str, str]:
    inner = _inner(type_, "Map(")
    depth = 0
    for i, c in enumerate(inner):
        depth += c == "("
        depth -= c == ")"
        if c == "," and depth == 0:
            return inner[:i].strip(), inner[i + 1:].strip()
    raise ValueError(f"not a Native block: type {type_}")


def _read_values(data: bytes, pos: int, type_: str, n: int) -> tuple[list[Any], int]:
    fixed = _fixed(type_)
    if fixed is not None:
        size = struct.calcsize(fixed)
        if pos + size * n > len(data):
            raise ValueError("not a Native block: a column runs past the end")
        values = [v[0] for v in struct.iter_unpack(fixed, data[pos:pos + size * n])] if n else []
        return values, pos + size * n
    if type_ == "String":
        out: list[Any] = []
        for _ in range(n):
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ValueError("not a Native block: a string runs past the end")
            raw = data[pos:pos + length]
            try:
                out.append(raw.decode())
            except UnicodeDecodeError:
                out.append(raw)
            pos += length
        return out, pos
    if type_.startswith(("Array(", "Map(")):
        if pos + 8 * n > len(data):
            raise ValueError("not a Native block: array offsets run past the end")
        ends = [v[0] for v in struct.iter_unpack("<Q", data[pos:pos + 8 * n])] if n else []
        pos += 8 * n
        total = ends[-1] if ends else 0
        starts = [0, *ends[:-1]]
        if type_.startswith("Array("):
            items, pos = _read_values(data, pos, _inner(type_, "Array("), total)
            return [items[a:b] for a, b in zip(starts, ends)], pos
        key_type, value_type = _map_parts(type_)
        keys, pos = _read_values(data, pos, key_type, total)
        values, pos = _read_values(data, pos, value_type, total)
        return [dict(zip(keys[a:b], values[a:b])) for a, b in zip(starts, ends)], pos
    raise ValueError(f"not a Native block Maple can read: type {type_}")


def _read_block(data: bytes, pos: int, out: dict[str, list[Any]] | None,
                types: list[tuple[str, str]] | None = None) -> int:
    ncols, pos = _varint(data, pos)
    rows, pos = _varint(data, pos)
    for _ in range(ncols):
        length, pos = _varint(data, pos)
        name = data[pos:pos + length].decode()
        pos += length
        length, pos = _varint(data, pos)
        type_ = data[pos:pos + length].decode()
        pos += length
        values, pos = _read_values(data, pos, type_, rows)
        if out is not None:
            out[name] = values
        if types is not None:
            types.append((name, type_))
    return pos


def _decode_native(block: bytes) -> tuple[dict[str, list[Any]], list[tuple[str, str]]]:
    columns: dict[str, list[Any]] = {}
    found: list[tuple[str, str]] = []
    end = _read_block(block, 0, columns, found)
    if end != len(block):
        raise ValueError("not a single Native block")
    return columns, found


def _native_rows(data: bytes) -> int:
    total, pos = 0, 0
    while pos < len(data):
        block: dict[str, list[Any]] = {}
        pos = _read_block(data, pos, block)
        total += len(next(iter(block.values()), []))
    return total


def _put_varint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _write_values(out: bytearray, type_: str, values: list[Any]) -> None:
    fixed = _fixed(type_)
    if fixed is not None:
        out += b"".join(struct.pack(fixed, v) for v in values)
    elif type_ == "String":
        for v in values:
            raw = v.encode() if isinstance(v, str) else bytes(v)
            _put_varint(out, len(raw))
            out += raw
    elif type_.startswith("Array("):
        total, flat = 0, []
        for v in values:
            total += len(v)
            out += struct.pack("<Q", total)
            flat.extend(v)
        _write_values(out, _inner(type_, "Array("), flat)
    elif type_.startswith("Map("):
        key_type, value_type = _map_parts(type_)
        total, keys, items = 0, [], []
        for v in values:
            total += len(v)
            out += struct.pack("<Q", total)
            keys.extend(v.keys())
            items.extend(v.values())
        _write_values(out, key_type, keys)
        _write_values(out, value_type, items)
    else:
        raise ValueError(f"cannot write Native type {type_}")


def encode_native(columns: dict[str, list[Any]], types: list[tuple[str, str]]) -> bytes:
    """One Native block of `columns` with the given (name, type) list (DateTime64 values as ticks)."""
    out = bytearray()
    rows = len(columns[types[0][0]]) if types else 0
    _put_varint(out, len(types))
    _put_varint(out, rows)
    for name, type_ in types:
        raw = name.encode()
        _put_varint(out, len(raw))
        out += raw
        raw = type_.encode()
        _put_varint(out, len(raw))
        out += raw
        _write_values(out, type_, columns[name])
    return bytes(out)
