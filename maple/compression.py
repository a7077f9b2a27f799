"""Bounded decompression of request bodies (gzip, deflate, lz4, zstd), shared by every HTTP endpoint Maple serves.

A compressed bomb is stopped at `limit` decompressed bytes: the inflater is never asked for more, so
memory stays bounded by the limit whatever the compression ratio.
"""

from __future__ import annotations

import zlib

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
    try:
        if encoding in ("gzip", "x-gzip", "deflate"):
            # wbits 47 accepts gzip and zlib headers alike; "deflate" in HTTP means zlib-wrapped.
            inflater = zlib.decompressobj(wbits=47)
            out = inflater.decompress(body, limit + 1)
            if len(out) <= limit and not inflater.eof:
                raise CorruptPayload(f"truncated {encoding} body")
        elif encoding == "lz4":
            import lz4.frame

            out = lz4.frame.LZ4FrameDecompressor().decompress(body, max_length=limit + 1)
        elif encoding == "zstd":
            try:  # Python 3.14 ships zstd; older ones have the backport (a clickhouse-connect dependency)
                from compression import zstd  # type: ignore[import-not-found,unused-ignore]
            except ImportError:
                from backports import zstd  # type: ignore[import-not-found,no-redef,unused-ignore]

            decompressor = zstd.ZstdDecompressor()
            try:
                out = decompressor.decompress(body, max_length=limit + 1)
            except zstd.ZstdError as exc:
                raise CorruptPayload(f"body is not valid zstd: {exc}") from exc
            if len(out) <= limit and not decompressor.eof:
                raise CorruptPayload("truncated zstd body")
        else:
            raise UnsupportedEncoding(encoding)
    except (zlib.error, RuntimeError) as exc:
        raise CorruptPayload(f"body is not valid {encoding}: {exc}") from exc
    if len(out) > limit:
        raise PayloadTooLarge(limit)
    return out
