"""Dead letters, built in one place: what could not be processed, kept as it was, with why and where from.

Two stages write them to `maple.dlq` (topics.DEAD_LETTER): a worker (a raw record that is not a decodable
OTLP request, or a span batch the sampler cannot read) and a sink (row blocks ClickHouse refused for good,
in their format: Native or JSONColumns). `maple dlq` (ops/dlq.py) lists, shows and redrives them by these headers.
"""

from __future__ import annotations

from maple.producer import Headers, Record
from maple.topics import (
    DEAD_LETTER,
    FORMAT_JSON,
    HEADER_ERROR,
    HEADER_ERROR_CODE,
    HEADER_FORMAT,
    HEADER_GROUP,
    HEADER_SOURCE,
    HEADER_SOURCE_RANGE,
    HEADER_STAGE,
    HEADER_TABLE,
    HEADER_TENANT,
    HEADER_TOKEN,
    SourcePosition,
)

MAX_ERROR_BYTES = 4096


def _error(error: BaseException | str) -> bytes:
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return text.encode(errors="replace")[:MAX_ERROR_BYTES]


def worker_letter(value: bytes, source: SourcePosition, error: BaseException | str, group: str,
                  tenant: bytes | None = None, fmt: bytes | None = None) -> Record:
    """A record a worker could not process, as it came, which group gave up on it, its tenant and, for a span
    batch the sampler could not read, its maple.format (a redrive produces it back with both, so its rows land
    with the team that sent them and are read in their format)."""
    headers: Headers = [(HEADER_STAGE, b"worker"), (HEADER_ERROR, _error(error)), (HEADER_SOURCE, source.header()),
                        (HEADER_GROUP, group.encode())]
    if tenant is not None:
        headers.append((HEADER_TENANT, tenant))
    if fmt is not None:
        headers.append((HEADER_FORMAT, fmt))
    return Record(DEAD_LETTER.name, value, headers)


def sink_letter(block: bytes, table: str, error: str, code: int | None, token: str, source_range: str,
                fmt: str = FORMAT_JSON) -> Record:
    """Rows ClickHouse refused for good: the block(s) of `fmt`, the insert token they were tried with, and the
    source range (`<topic>/<partition>/<first>-<last>`) of the batch they belonged to."""
    headers: Headers = [(HEADER_STAGE, b"sink"), (HEADER_TABLE, table.encode()), (HEADER_ERROR, _error(error)),
                        (HEADER_TOKEN, token.encode()), (HEADER_SOURCE_RANGE, source_range.encode())]
    if code is not None:
        headers.append((HEADER_ERROR_CODE, str(code).encode()))
    if fmt != FORMAT_JSON:
        headers.append((HEADER_FORMAT, fmt.encode()))
    return Record(DEAD_LETTER.name, block, headers)
