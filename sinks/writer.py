"""Insert row blocks (Native or JSONColumns, maple/blocks.py) into ClickHouse: idempotently, retrying what is
transient, isolating bad rows.

* Every insert carries an `insert_deduplication_token` and is forced into one block, so a retried or
  repeated insert of the same rows with the same token is dropped by ClickHouse whole.
* Network errors and transient server codes are retried with backoff, without limit: the sink never
  moves past a batch ClickHouse has not acknowledged.
* A data error (ClickHouse cannot parse or convert a value) is deterministic: the blocks are bisected,
  each half inserted under a derived token, down to single rows; a row that fails alone is returned
  for the dead-letter topic and the rest lands. Isolating b bad rows among n costs about
  2·b·log2(n/b) inserts. While the rows refused so far do not outnumber the rows landed, the search
  goes on to the last bad row; once BISECT_BUDGET inserts are spent and refused rows are the majority
  (an error that hits every row, such as a column the table lacks), the pieces left are dead-lettered
  whole instead of costing one insert per row. Rows in the dead-letter topic are kept, not lost:
  `maple dlq redrive` inserts the ones that fit once the cause is fixed.
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

    def _insert_once(self, table: str, data: bytes, token: str, fmt: str = FORMAT_JSON) -> None:
        if self._client is None:
            self._client = self._connect()
        self._client.raw_insert(f"`{self.database}`.`{table}`", None, insert_block=data,  # type: ignore[attr-defined]
                                settings={**INSERT_SETTINGS, "insert_deduplication_token": token}, fmt=fmt)

    def insert(self, table: str, blocks: list[bytes], token: str, fmt: str = FORMAT_JSON) -> list[Rejected]:
        """Insert `blocks` (of format `fmt`) as one deduplicated block; returns the rows dead-lettered
        (normally none)."""
        return self._insert(table, blocks, token, Bisection(), fmt)

    def _insert(self, table: str, blocks: list[bytes], token: str, search: Bisection, fmt: str = FORMAT_JSON
                ) -> list[Rejected]:
        data = row_blocks.join(blocks, fmt)
        backoff, attempts = 0.2, 0
        while True:
            try:
                self._insert_once(table, data, token, fmt)
                if search.inserts:  # a piece of a bisected batch: count what landed
                    search.landed += row_blocks.count_rows(data, fmt)
                return []
            except Exception as exc:
                kind, code = classify(exc)
                attempts += 1
                if kind == DATA:
                    return self._bisect(table, blocks, token, exc, code, search, fmt)
                if kind == TRANSIENT:
                    self._client = None  # reconnect: the server (or the embedded host) may have restarted
                self.on_retry(kind if code is None else f"{kind}:{code}", table)
                (log.error if kind == UNKNOWN else log.warning)(
                    "insert into %s failed (%s%s), retry %d in %.1fs: %s", table, kind, f" code {code}" if code else "",
                    attempts, backoff, str(exc).splitlines()[0][:300])
                self.sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max_s)

    def _bisect(self, table: str, blocks: list[bytes], token: str, exc: Exception, code: int | None,
                search: Bisection, fmt: str = FORMAT_JSON) -> list[Rejected]:
        halves: tuple[list[bytes], list[bytes]] | None = None
        if len(blocks) > 1:
            middle = len(blocks) // 2
            halves = blocks[:middle], blocks[middle:]
        elif (rows := row_blocks.split(blocks[0], fmt)) is not None:
            halves = [rows[0]], [rows[1]]
        if halves is None or not search.may_split():
            message = str(exc).splitlines()[0][:2000]
            rejected = Rejected(table, row_blocks.join(blocks, fmt), token, message, code, fmt)
            search.refused += rejected.rows
            log.error("%s for %s rejected by ClickHouse and dead-lettered: %s",
                      "a row" if halves is None else f"a block of {rejected.rows} rows", table, message)
            return [rejected]
        search.inserts += 2
        return (self._insert(table, halves[0], f"{token}/0", search, fmt)
                + self._insert(table, halves[1], f"{token}/1", search, fmt))


@dataclass
class Bisection:
    """The state of one batch's search for the rows ClickHouse refuses (see the module doc).

    Deterministic: a redo of the batch after a crash meets the same refusals and the same landings
    (deduplicated), so it splits the same way and derives the same tokens."""

    inserts: int = 0  # sub-inserts made
    landed: int = 0   # rows sub-inserts landed
    refused: int = 0  # rows dead-lettered

    def may_split(self) -> bool:
        return self.inserts < BISECT_BUDGET or self.refused <= self.landed
