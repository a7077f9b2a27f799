"""ClickHouse's wire formats the embedded host produces: compressed blocks, Native at a protocol revision,
the mid-stream exception block. The real clients check them end to end (tests/integration/test_chcompat.py);
these pin the byte layout."""

from __future__ import annotations

import struct

import pytest

from apps import chwire


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(text: bytes) -> bytes:
    return _varint(len(text)) + text


def _column(name: str, type_: str, data: bytes) -> tuple[bytes, bytes]:
    return _string(name.encode()) + _string(type_.encode()), data


def _block(rows: int, columns: list[tuple[bytes, bytes]]) -> bytes:
    return _varint(len(columns)) + _varint(rows) + b"".join(head + data for head, data in columns)


# Three rows of columns whose bytes a revision-0 writer (chDB) produces.
U64 = _column("n", "UInt64", struct.pack("<3Q", 1, 2, 3))
STR = _column("s", "String", b"".join(_string(s) for s in (b"a", b"", b"ccc")))
LC = _column("lc", "LowCardinality(String)",
             struct.pack("<Q", 1) + struct.pack("<Q", (1 << 9) | 0) + struct.pack("<Q", 2) + _string(b"")
             + _string(b"x") + struct.pack("<Q", 3) + bytes([1, 0, 1]))
ARR = _column("a", "Array(UInt64)", struct.pack("<3Q", 1, 1, 3) + struct.pack("<3Q", 7, 8, 9))
MAP = _column("m", "Map(LowCardinality(String), String)",
              struct.pack("<Q", 1) + struct.pack("<3Q", 1, 1, 2) + struct.pack("<Q", (1 << 9) | 0)
              + struct.pack("<Q", 1) + _string(b"k") + struct.pack("<Q", 2) + bytes([0, 0])
              + _string(b"v1") + _string(b"v2"))
NULLABLE = _column("o", "Nullable(Int32)", bytes([0, 1, 0]) + struct.pack("<3i", 5, 0, -5))
TUPLE = _column("t", "Tuple(a String, b DateTime64(9, 'UTC'))",
                b"".join(_string(s) for s in (b"x", b"y", b"z")) + struct.pack("<3q", 1, 2, 3))
COLUMNS = [U64, STR, LC, ARR, MAP, NULLABLE, TUPLE]


def test_native_at_a_protocol_revision_gets_block_info_and_serialization_kinds() -> None:
    block = _block(3, COLUMNS)
    relaid = chwire.NativeRelayout(54460).feed(block)
    info = b"\x01\x00\x02" + struct.pack("<i", -1) + b"\x00"
    expected = info + _varint(len(COLUMNS)) + _varint(3) + b"".join(head + b"\x00" + data for head, data in COLUMNS)
    assert relaid == expected
    assert chwire.NativeRelayout(0).feed(block) == block  # revision 0: what chDB wrote
    newer = chwire.NativeRelayout(54480).feed(block)      # out-of-order buckets: an empty field 3
    assert newer.startswith(b"\x01\x00\x02" + struct.pack("<i", -1) + b"\x03\x00\x00")
    with pytest.raises(chwire.WireError, match="older than"):
        chwire.NativeRelayout(54000)


def test_native_blocks_split_anywhere_come_out_whole_and_the_same() -> None:
    stream = _block(3, COLUMNS) + _block(0, [U64[:1] + (b"",)]) + _block(3, [U64, STR])
    whole = chwire.NativeRelayout(54460).feed(stream)
    for cut in range(1, len(stream)):
        relayout = chwire.NativeRelayout(54460)
        assert relayout.feed(stream[:cut]) + relayout.feed(stream[cut:]) == whole, cut
        relayout.finish()
    relayout = chwire.NativeRelayout(54460)
    relayout.feed(stream[:-1])
    with pytest.raises(chwire.WireError, match="inside a block"):
        relayout.finish()


def test_types_it_cannot_walk_are_refused_by_name() -> None:
    block = _block(1, [_column("j", "JSON", b"\x00" * 8)])
    with pytest.raises(chwire.WireError, match="JSON"):
        chwire.NativeRelayout(54460).feed(block)


@pytest.mark.parametrize("method", [chwire.METHOD_LZ4, chwire.METHOD_ZSTD, chwire.METHOD_NONE])
def test_compressed_blocks_round_trip_and_checksums_catch_damage(method: int) -> None:
    data = b"".join(b"row %d\n" % i for i in range(400_000))
    framed = b"".join(chwire.compress_blocks(data, method))
    assert framed[16] == method
    assert len(framed) > chwire.BLOCK_SIZE or method != chwire.METHOD_NONE  # several blocks of 1 MiB
    assert chwire.decompress_blocks(framed, len(data)) == data
    damaged = bytearray(framed)
    damaged[30] ^= 1
    with pytest.raises(chwire.WireError, match="checksum"):
        chwire.decompress_blocks(bytes(damaged), len(data))
    with pytest.raises(chwire.WireError, match="truncated"):
        chwire.decompress_blocks(framed[:-5], len(data))
    with pytest.raises(ValueError, match="exceeds"):
        chwire.decompress_blocks(framed, len(data) - 1)


def test_the_exception_block_is_clickhouses_framing() -> None:
    tag = chwire.exception_tag()
    assert len(tag) == 16 and tag.isalnum()
    message = "Code: 395. DB::Exception: boom. (FUNCTION_THROW_IF_VALUE_IS_NON_ZERO)"
    assert chwire.exception_block(message + "\n", tag) == (
        b"\r\n__exception__\r\n" + tag.encode() + b"\r\n" + message.encode() + b"\n"
        + f"{len(message)} {tag}".encode() + b"\r\n__exception__\r\n")
