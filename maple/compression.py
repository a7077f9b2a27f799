"""Bounded decompression of request bodies (gzip, deflate, lz4, zstd), shared by every HTTP endpoint Maple serves.

A compressed bomb is stopped at `limit` decompressed bytes: the inflater is never asked for more, so
memory stays bounded by the limit whatever the compression ratio.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

SUPPORTED = ("gzip", "deflate", "lz4", "zstd")


class PayloadTooLarge(ValueError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds {limit} bytes after decompression")
        self.limit = limit


class UnsupportedEncoding(ValueError):
    def __init__(self, encoding: str) -> None:
        super().__init__(f"unsupported Content-Encoding {encoding!r}; use {', '.join(SUPPORTED)} or none")


class CorruptPayload(ValueError):
    """The body does not decompress with the encoding it claims."""


def inflate(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo `Content-Encoding`; raise PayloadTooLarge past `limit` decompressed bytes."""
    encoding = (encoding or "").strip().lower()
    if encoding in ("", "identity"):
        if len(body) > limit:
            raise PayloadTooLarge(limit)
        return body
    if encoding in ("gzip", "x-gzip", "deflate"):
        # wbits 47 accepts gzip and zlib headers alike; "deflate" in HTTP means zlib-wrapped.
        return _frames(body, lambda: zlib.decompressobj(wbits=47), limit, encoding, (zlib.error,))
    if encoding == "lz4":
        import lz4.frame

        return _frames(body, lz4.frame.LZ4FrameDecompressor, limit, encoding, (RuntimeError,))
    if encoding == "zstd":
        try:  # Python 3.14 ships zstd; older ones have the backport (a clickhouse-connect dependency)
            from compression import zstd  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            from backports import zstd  # type: ignore[import-not-found,no-redef,unused-ignore]

        return _frames(body, zstd.ZstdDecompressor, limit, encoding, (zstd.ZstdError,))
    raise UnsupportedEncoding(encoding)


def _frames(body: bytes, decompressor: Callable[[], Any], limit: int, encoding: str,
            errors: tuple[type[Exception], ...]) -> bytes:
    """Decompress every member of `body`: streaming clients (clickhouse-connect, gzip writers that flush)
    send one frame per block, concatenated."""
    out: list[bytes] = []
    total, rest = 0, body
    try:
        while rest:
            inflater = decompressor()
            piece = inflater.decompress(rest, limit + 1 - total)
            total += len(piece)
            if total > limit:
                raise PayloadTooLarge(limit)
            if not inflater.eof:
                raise CorruptPayload(f"truncated {encoding} body")
            out.append(piece)
            rest = inflater.unused_data
    except errors as exc:
        raise CorruptPayload(f"body is not valid {encoding}: {exc}") from exc
    return b"".join(out)
