"""ClickHouse's HTTP wire formats that the embedded engine (chDB) does not produce itself.

* **Compressed blocks** (``compress=1`` responses, ``decompress=1`` request bodies): a stream of
  blocks, each a 16-byte CityHash128 (v1.0.2, ClickHouse's) of the rest of the block, a method byte
  (0x02 none, 0x82 LZ4, 0x90 ZSTD), the block's compressed size including that 9-byte header and its
  decompressed size (both UInt32 little-endian), then the payload. The checksum is computed by the
  maintained ``clickhouse-cityhash`` package.
* **Native output for a client protocol version**: ClickHouse writes its Native format at the
  revision the client names in ``client_protocol_version`` (clickhouse-go sends 54460): a block-info
  header before each block (revision > 0) and a serialization-kind byte after each column's type
  (revision >= 54454). chDB only writes revision 0, so `NativeRelayout` walks the blocks and inserts
  those fields. Input is unaffected: ClickHouse reads Native input at revision 0 whatever the client
  says, and so does chDB.
* **Exceptions after the response began**: ClickHouse ends the body with a framed block,
  ``\\r\\n__exception__\\r\\n<tag>\\r\\n<message>\\n<length> <tag>\\r\\n__exception__\\r\\n``, where the
  tag is announced in the ``X-ClickHouse-Exception-Tag`` header.
"""

from __future__ import annotations

import secrets
import string
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import lz4.block
from clickhouse_cityhash.cityhash import CityHash128

try:  # Python 3.14 ships zstd; older ones use the backport clickhouse-connect depends on.
    from compression import zstd  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - depends on the Python version
    from backports import zstd  # type: ignore[import-not-found,no-redef,unused-ignore]

METHOD_NONE, METHOD_LZ4, METHOD_ZSTD = 0x02, 0x82, 0x90
METHODS = {"none": METHOD_NONE, "lz4": METHOD_LZ4, "zstd": METHOD_ZSTD}
HEADER = 9
CHECKSUM = 16
# ClickHouse's own bounds: a block over 1 GiB compressed is corrupt, and it writes blocks of up to 1 MiB.
MAX_BLOCK = 1 << 30
BLOCK_SIZE = 1 << 20

# Protocol revisions that change the Native layout (ClickHouse's ProtocolDefines.h).
REVISION_LOW_CARDINALITY = 54405
REVISION_CUSTOM_SERIALIZATION = 54454
REVISION_OUT_OF_ORDER_BUCKETS = 54480


class WireError(ValueError):
    """Bytes that do not follow the format they claim; the message says where."""


# -- compressed blocks -------------------------------------------------------------------------------


def _checksum(body: bytes | memoryview) -> bytes:
    value = CityHash128(bytes(body))
    # The package returns the pair as one integer, first half in the high bits; ClickHouse writes the
    # first half first, each little-endian.
    return struct.pack("<QQ", value >> 64, value & 0xFFFFFFFFFFFFFFFF)


def compress_block(data: bytes, method: int = METHOD_LZ4, level: int = 3) -> bytes:
    """One compressed block holding `data` (at most MAX_BLOCK bytes)."""
    if method == METHOD_LZ4:
        payload = lz4.block.compress(data, store_size=False)
    elif method == METHOD_ZSTD:
        payload = zstd.compress(data, level)
    elif method == METHOD_NONE:
        payload = data
    else:
        raise WireError(f"unknown compression method byte {method:#x}")
    body = struct.pack("<BII", method, HEADER + len(payload), len(data)) + payload
    return _checksum(body) + body


def compress_blocks(data: bytes, method: int = METHOD_LZ4, level: int = 3) -> Iterator[bytes]:
    """`data` as compressed blocks of at most BLOCK_SIZE uncompressed bytes each."""
    view = memoryview(data)
    for start in range(0, len(view), BLOCK_SIZE):
        yield compress_block(bytes(view[start:start + BLOCK_SIZE]), method, level)


def decompress_blocks(data: bytes, limit: int) -> bytes:
    """Undo `compress_blocks`, verifying every checksum; WireError on corruption, ValueError past `limit`."""
    out: list[bytes] = []
    total, pos, view = 0, 0, memoryview(data)
    while pos < len(view):
        if len(view) - pos < CHECKSUM + HEADER:
            raise WireError(f"compressed data truncated at byte {pos}: a block header needs 25 bytes")
        method, size, raw_size = struct.unpack_from("<BII", view, pos + CHECKSUM)
        if size < HEADER or size > MAX_BLOCK or raw_size > MAX_BLOCK:
            raise WireError(f"compressed block at byte {pos} has an impossible size ({size}, {raw_size})")
        end = pos + CHECKSUM + size
        if end > len(view):
            have = len(view) - pos - CHECKSUM
            raise WireError(f"compressed block at byte {pos} is truncated ({have} of {size} bytes)")
        body = view[pos + CHECKSUM:end]
        if _checksum(body) != bytes(view[pos:pos + CHECKSUM]):
            raise WireError(f"checksum mismatch in the compressed block at byte {pos}")
        total += raw_size
        if total > limit:
            raise ValueError(f"decompressed body exceeds {limit} bytes")
        payload = bytes(body[HEADER:])
        if method == METHOD_LZ4:
            block = lz4.block.decompress(payload, uncompressed_size=raw_size)
        elif method == METHOD_ZSTD:
            block = zstd.decompress(payload)
        elif method == METHOD_NONE:
            block = payload
        else:
            raise WireError(f"unknown compression method byte {method:#x} in the block at byte {pos}")
        if len(block) != raw_size:
            raise WireError(f"compressed block at byte {pos} decompressed to {len(block)} bytes, not {raw_size}")
        out.append(block)
        pos = end
    return b"".join(out)


# -- mid-stream exceptions ---------------------------------------------------------------------------


def exception_tag() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(16))


def exception_block(message: str, tag: str) -> bytes:
    text = message.rstrip("\n").encode()
    return (b"\r\n__exception__\r\n" + tag.encode() + b"\r\n" + text + b"\n"
            + f"{len(text)} {tag}".encode() + b"\r\n__exception__\r\n")


# -- Native blocks at a protocol revision ------------------------------------------------------------


class NeedMore(Exception):
    """The buffer ends inside a block: feed more bytes."""


@dataclass(frozen=True)
class ColumnType:
    name: str                     # the outer type's name (Array, Map, UInt64, ...)
    args: tuple[ColumnType, ...]  # nested types (for Array, Map, Tuple, Nullable, LowCardinality, ...)
    params: tuple[str, ...]       # the raw argument text (FixedString's N, Decimal's P, ...)


_FIXED = {
    "UInt8": 1, "Int8": 1, "Bool": 1, "Enum8": 1,
    "UInt16": 2, "Int16": 2, "Date": 2, "Enum16": 2, "BFloat16": 2,
    "UInt32": 4, "Int32": 4, "Float32": 4, "Date32": 4, "DateTime": 4, "IPv4": 4, "Decimal32": 4, "Time": 4,
    "UInt64": 8, "Int64": 8, "Float64": 8, "DateTime64": 8, "Decimal64": 8, "Time64": 8,
    "UInt128": 16, "Int128": 16, "UUID": 16, "IPv6": 16, "Decimal128": 16,
    "UInt256": 32, "Int256": 32, "Decimal256": 32,
}
_ALIASES = {"Point": "Tuple(Float64, Float64)", "Ring": "Array(Tuple(Float64, Float64))",
            "LineString": "Array(Tuple(Float64, Float64))",
            "Polygon": "Array(Array(Tuple(Float64, Float64)))",
            "MultiLineString": "Array(Array(Tuple(Float64, Float64)))",
            "MultiPolygon": "Array(Array(Array(Tuple(Float64, Float64))))"}


def _split_args(text: str) -> list[str]:
    """Top-level comma-separated arguments, respecting parentheses and quotes."""
    parts, depth, quote, start = [], 0, "", 0
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'`\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
        i += 1
    parts.append(text[start:].strip())
    return [p for p in parts if p]


def parse_type(text: str) -> ColumnType:
    text = text.strip()
    if text in _ALIASES:
        text = _ALIASES[text]
    paren = text.find("(")
    if paren < 0:
        return ColumnType(text, (), ())
    name, inner = text[:paren].strip(), text[paren + 1:text.rindex(")")]
    params = tuple(_split_args(inner))
    if name in ("Array", "Nullable", "LowCardinality", "Map"):
        return ColumnType(name, tuple(parse_type(p) for p in params), params)
    if name == "Tuple":
        elements = []
        for p in params:
            # a named element "name Type": the type starts after the first space outside parentheses
            head = p.split("(", 1)[0]
            if " " in head.strip() and head.split()[0] not in _FIXED:
                p = p.split(None, 1)[1] if not p.startswith("`") else p[p.index("`", 1) + 1:].strip()
            elements.append(parse_type(p))
        return ColumnType(name, tuple(elements), params)
    if name == "SimpleAggregateFunction":
        return parse_type(params[-1])
    return ColumnType(name, (), params)


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes | memoryview, pos: int = 0) -> None:
        self.data, self.pos = data, pos

    def take(self, n: int) -> int:
        start = self.pos
        self.pos += n
        if self.pos > len(self.data):
            raise NeedMore
        return start

    def varuint(self) -> int:
        result, shift, data = 0, 0, self.data
        while True:
            if self.pos >= len(data):
                raise NeedMore
            byte = data[self.pos]
            self.pos += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result
            shift += 7
            if shift > 63:
                raise WireError("malformed varint in Native data")

    def uint64(self) -> int:
        start = self.take(8)
        return int.from_bytes(self.data[start:start + 8], "little")

    def string(self) -> bytes:
        n = self.varuint()
        start = self.take(n)
        return bytes(self.data[start:start + n])


def _decimal_size(t: ColumnType) -> int:
    precision = int(t.params[0])
    return 4 if precision <= 9 else 8 if precision <= 18 else 16 if precision <= 38 else 32


def _skip_prefix(t: ColumnType, r: _Reader) -> None:
    """The per-column state prefix that a bulk serialization writes before any data."""
    if t.name == "LowCardinality":
        r.take(8)  # keys serialization version
    for arg in t.args:
        if t.name != "LowCardinality":
            _skip_prefix(arg, r)
    if t.name in ("Variant", "Dynamic", "JSON", "Object", "AggregateFunction"):
        raise WireError(f"the embedded host cannot re-lay {t.name} columns for client_protocol_version; "
                        "query without client_protocol_version or in another format")


def _skip_data(t: ColumnType, rows: int, r: _Reader) -> None:
    name = t.name
    size = _FIXED.get(name)
    if size is not None:
        r.take(size * rows)
    elif name == "String":
        for _ in range(rows):
            r.take(r.varuint())
    elif name == "FixedString":
        r.take(int(t.params[0]) * rows)
    elif name == "Decimal":
        r.take(_decimal_size(t) * rows)
    elif name in ("Array", "Map"):
        if rows == 0:
            return
        start = r.take(8 * rows)
        total = int.from_bytes(r.data[start + 8 * (rows - 1):start + 8 * rows], "little")
        if name == "Array":
            _skip_data(t.args[0], total, r)
        else:
            _skip_data(t.args[0], total, r)
            _skip_data(t.args[1], total, r)
    elif name == "Tuple":
        for arg in t.args:
            _skip_data(arg, rows, r)
    elif name == "Nullable":
        r.take(rows)
        _skip_data(t.args[0], rows, r)
    elif name == "LowCardinality":
        if rows == 0:
            return
        flags = r.uint64()
        keys = t.args[0].args[0] if t.args[0].name == "Nullable" else t.args[0]
        if flags & (1 << 8) and flags & (1 << 10):  # a global dictionary that needs updating
            _skip_data(keys, r.uint64(), r)
        if flags & (1 << 9):  # additional keys
            _skip_data(keys, r.uint64(), r)
        count = r.uint64()
        r.take((1, 2, 4, 8)[flags & 0xFF] * count)
    elif name in ("Nothing",):
        r.take(rows)
    elif name.startswith("Interval"):
        r.take(8 * rows)
    else:
        raise WireError(f"the embedded host cannot re-lay {name} columns for client_protocol_version; "
                        "query without client_protocol_version or in another format")


class NativeRelayout:
    """Turns revision-0 Native blocks (chDB's) into the layout of the client's protocol revision.

    `feed` takes the engine's output as it streams and returns whole re-laid blocks; bytes of a block
    not yet complete wait for the next call. `finish` fails if a block was left incomplete."""

    def __init__(self, revision: int) -> None:
        if 0 < revision < REVISION_LOW_CARDINALITY:
            raise WireError(f"client_protocol_version {revision} is older than the embedded host supports "
                            f"({REVISION_LOW_CARDINALITY} and newer)")
        self.revision = revision
        self.pending = b""
        self.types: dict[bytes, ColumnType] = {}

    def _block_info(self) -> bytes:
        info = b"\x01\x00\x02" + struct.pack("<i", -1)
        if self.revision >= REVISION_OUT_OF_ORDER_BUCKETS:
            info += b"\x03\x00"
        return info + b"\x00"

    def _type(self, text: bytes) -> ColumnType:
        parsed = self.types.get(text)
        if parsed is None:
            parsed = self.types[text] = parse_type(text.decode())
        return parsed

    def _block(self, r: _Reader, out: list[bytes | memoryview]) -> None:
        data = r.data
        start = r.pos
        columns, rows = r.varuint(), r.varuint()
        parts: list[bytes | memoryview] = [self._block_info(), data[start:r.pos]]
        for _ in range(columns):
            head = r.pos
            r.string()  # name
            type_text = r.string()
            parts.append(data[head:r.pos])
            if self.revision >= REVISION_CUSTOM_SERIALIZATION:
                parts.append(b"\x00")  # no custom (sparse) serialization: chDB's output is dense
            body = r.pos
            if rows:
                column = self._type(type_text)
                _skip_prefix(column, r)
                _skip_data(column, rows, r)
            parts.append(data[body:r.pos])
        out.extend(parts)

    def feed(self, chunk: bytes) -> bytes:
        if self.revision == 0:
            return chunk
        data = self.pending + chunk if self.pending else chunk
        view = memoryview(data)
        r = _Reader(view)
        out: list[bytes | memoryview] = []
        done = 0
        while r.pos < len(view):
            mark = len(out)
            try:
                self._block(r, out)
            except NeedMore:
                del out[mark:]
                break
            done = r.pos
        self.pending = bytes(view[done:])
        return b"".join(out)

    def finish(self) -> None:
        if self.pending:
            raise WireError(f"the engine's Native output ended inside a block ({len(self.pending)} bytes left)")
