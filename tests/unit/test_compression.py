"""Bounded decompression: bombs stop at the limit, bad encodings are named, corrupt bodies are caught."""

from __future__ import annotations

import gzip
import zlib

import lz4.frame
import pytest

from maple.compression import CorruptPayload, PayloadTooLarge, UnsupportedEncoding, inflate

PACK = {"gzip": gzip.compress, "deflate": zlib.compress, "lz4": lz4.frame.compress}


@pytest.mark.parametrize("encoding", sorted(PACK))
def test_round_trip_within_the_limit(encoding: str) -> None:
    payload = b"otlp " * 1000
    assert inflate(PACK[encoding](payload), encoding, limit=len(payload)) == payload


@pytest.mark.parametrize("encoding", sorted(PACK))
def test_a_bomb_is_refused_at_the_limit(encoding: str) -> None:
    bomb = PACK[encoding](b"\0" * (64 << 20))  # 64 MiB of zeros packs to a few KiB
    assert len(bomb) < 1 << 20
    with pytest.raises(PayloadTooLarge, match="exceeds 1048576 bytes after decompression"):
        inflate(bomb, encoding, limit=1 << 20)


def test_identity_over_the_limit_and_unknown_and_corrupt_encodings() -> None:
    with pytest.raises(PayloadTooLarge):
        inflate(b"x" * 11, None, limit=10)
    with pytest.raises(UnsupportedEncoding, match="'br'"):
        inflate(b"x", "br", limit=10)
    with pytest.raises(CorruptPayload):
        inflate(b"definitely not gzip", "gzip", limit=100)
    with pytest.raises(CorruptPayload, match="truncated"):
        inflate(gzip.compress(b"x" * 1000)[:-12], "gzip", limit=10_000)
