"""Insert row blocks (Native or JSONColumns, maple/blocks.py) into ClickHouse: idempotently, retrying what is
transient, isolating bad rows.

* Every insert carries an `insert_deduplication_token` and is forced into one block, so a retried or
  repeated insert of the same rows with the same token is dropped by ClickHouse whole.
* Network errors and transient server codes are retried with backoff, without limit: the sink never
  moves past a batch ClickHouse has not acknowledged.
* A data error (ClickHouse cannot parse or convert a value) is deterministic: the blocks are bisected,
  each half inserted under a derived token, down to single rows; a row that fails alone is returned
  for the dead-letter topic and the rest lands. The search is capped at BISECT_BUDGET inserts per batch:
  an error that hits every row (a column the table lacks) dead-letters whole blocks instead of costing
  one insert per row.
* Any other error is retried like a transient one, without limit and loudly: dead-lettering on an error
  that is not the data's fault would drop rows from the table, and bisecting on one that may not repeat
  would break the token scheme a redo relies on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from maple import blocks as row_blocks
from maple.clickhouse import ClickHouseUnavailable
from maple.topics import FORMAT_JSON

log = logging.getLogger(__name__)

# One block per insert, parsed in one piece: an insert that fails leaves nothing behind.
INSERT_SETTINGS = {"max_insert_block_size": 100_000_000, "min_insert_block_size_rows": 100_000_000,
                   "min_insert_block_size_bytes": 4 << 30, "input_format_parallel_parsing": 0}

# Server codes worth waiting out: overload, timeouts, readonly or missing replicas, unknown insert status,
# and tables or databases that are not there yet (the schema is being applied).
TRANSIENT_CODES = frozenset({3, 60, 81, 159, 164, 202, 203, 209, 210, 236, 241, 242, 252, 285, 319, 425, 439, 999,
                             1000})
# Codes that mean the data itself cannot go into the table.
DATA_CODES = frozenset({6, 16, 25, 26, 27, 38, 41, 53, 62, 69, 70, 72, 76, 117, 130, 131, 190, 349, 407, 691})

TRANSIENT, DATA, UNKNOWN = "transient", "data", "unknown"
BISECT_BUDGET = 64


def classify(exc: BaseException) -> tuple[str, int | None]:
    if isinstance(exc, (OperationalError, ClickHouseUnavailable)):
        return TRANSIENT, None
    if isinstance(exc, DatabaseError):
        code = exc.code  # from X-ClickHouse-Exception-Code (HTTP) or the engine (chDB)
        if code in TRANSIENT_CODES:
            return TRANSIENT, code
        if code in DATA_CODES:
            return DATA, code
        return UNKNOWN, code
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
        return TRANSIENT, None
    return UNKNOWN, None


@dataclass(frozen=True)
class Rejected:
    table: str
    block: bytes  # one or more blocks of `fmt`, as they were inserted (JSONColumns: newline-separated)
    token: str
    error: str
    code: int | None
    fmt: str = FORMAT_JSON

    @property
    def rows(self) -> int:
        return row_blocks.count_rows(self.block, self.fmt)


class Inserter:
    def __init__(self, connect: Callable[[], object], database: str, *, backoff_max_s: float,
                 on_retry: Callable[[str, str], None] = lambda reason, table: None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._connect = connect
        self._client: object | None = None
        self.database = database
        self.backoff_max_s = backoff_max_s
        self.on_retry = on_retry
        self.sleep = sleep

    def _insert_once(self, table: str, data: bytes, token: str, fmt: str) -> None:
        if self._client is None:
            self._client = self._connect()
        self._client.raw_insert(f"`{self.database}`.`{table}`", None, insert_block=data,  # type: ignore[attr-defined]
                                settings={**INSERT_SETTINGS, "insert_deduplication_token": token}, fmt=fmt)

    def insert(self, table: str, blocks: list[bytes], token: str, fmt: str = FORMAT_JSON) -> list[Rejected]:
        """Insert `blocks` (of format `fmt`) as one deduplicated block; returns the rows dead-lettered
        (normally none)."""
        return self._insert(table, blocks, token, [BISECT_BUDGET], fmt)

    def _insert(self, table: str, blocks: list[bytes], token: str, budget: list[int], fmt: str) -> list[Rejected]:
        data = row_blocks.join(blocks, fmt)
        backoff, attempts = 0.2, 0
        while True:
            try:
                self._insert_once(table, data, token, fmt)
                return []
            except Exception as exc:
                kind, code = classify(exc)
                attempts += 1
                if kind == DATA:
                    return self._bisect(table, blocks, token, exc, code, budget, fmt)
                if kind == TRANSIENT:
                    self._client = None  # reconnect: the server (or the embedded host) may have restarted
                self.on_retry(kind if code is None else f"{kind}:{code}", table)
                (log.error if kind == UNKNOWN else log.warning)(
                    "insert into %s failed (%s%s), retry %d in %.1fs: %s", table, kind, f" code {code}" if code else "",
                    attempts, backoff, str(exc).splitlines()[0][:300])
                self.sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max_s)

    def _bisect(self, table: str, blocks: list[bytes], token: str, exc: Exception, code: int | None,
                budget: list[int], fmt: str) -> list[Rejected]:
        halves: tuple[list[bytes], list[bytes]] | None = None
        if len(blocks) > 1:
            middle = len(blocks) // 2
            halves = blocks[:middle], blocks[middle:]
        elif (rows := row_blocks.split(blocks[0], fmt)) is not None:
            halves = [rows[0]], [rows[1]]
        if halves is None or budget[0] < 2:
            message = str(exc).splitlines()[0][:2000]
            log.error("%s for %s rejected by ClickHouse and dead-lettered: %s",
                      "a row" if halves is None else "a block", table, message)
            return [Rejected(table, row_blocks.join(blocks, fmt), token, message, code, fmt)]
        budget[0] -= 2
        return (self._insert(table, halves[0], f"{token}/0", budget, fmt)
                + self._insert(table, halves[1], f"{token}/1", budget, fmt))
