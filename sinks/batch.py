"""Per-partition batching for the sink, and the small state that makes its inserts exactly-once.

Pure logic (no Kafka, no ClickHouse), so every rule here is tested on plain values. The state of one
input partition lives in its committed Kafka offset and that commit's metadata (see docs/exactly-once.md):

* ``wm``: per source partition, the highest (offset, part) of a row batch already taken. A restarted or
  rebalanced worker re-emits batches in source order; anything at or below the watermark is a copy.
* ``end``: written *before* an insert (with the offset still at the batch's first message) and cleared
  after it. A sink that restarts with ``end`` set rebuilds exactly that offset range, so its insert
  carries the same deduplication token and ClickHouse drops it if the first attempt had landed.
* ``epoch``: raised by `maple replay --reinsert` (ops/replay.py). It goes into every token, so rows
  re-inserted after a TRUNCATE or a dropped partition never collide with the tokens of their first
  insert, which ClickHouse may still remember and would silently drop.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field

import orjson

from maple.topics import FORMAT_JSON, SourcePosition

Watermarks = dict[str, tuple[int, int]]


@dataclass(frozen=True)
class RowBatch:
    """One message of a processed topic: a block of rows for one table, in `fmt` (maple/blocks.py)."""

    offset: int
    table: str
    rows: int
    value: bytes
    source: SourcePosition | None
    received_ns: int | None  # ingest receipt, or the sampling decision for sampled spans: freshness counts from it
    fmt: str = FORMAT_JSON


@dataclass(frozen=True)
class Limits:
    rows: int
    size: int  # bytes
    interval_s: float


def encode_state(wm: Watermarks, end: int | None = None, epoch: int = 0) -> str:
    state: dict[str, object] = {"v": 1, "wm": {key: list(value) for key, value in sorted(wm.items())}}
    if end is not None:
        state["end"] = end
    if epoch:
        state["epoch"] = epoch
    return orjson.dumps(state).decode()


def decode_epoch(metadata: str | None) -> int:
    """The replay epoch from commit metadata (0 when absent or unreadable)."""
    try:
        return int(orjson.loads(metadata or "{}").get("epoch", 0))
    except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError):
        return 0


def decode_state(metadata: str | None) -> tuple[Watermarks, int | None]:
    """Watermarks and the pending batch end from commit metadata; empty for anything else."""
    if not metadata:
        return {}, None
    try:
        state = orjson.loads(metadata)
        wm = {str(key): (int(value[0]), int(value[1])) for key, value in state.get("wm", {}).items()}
        end = state.get("end")
        return wm, int(end) if end is not None else None
    except (orjson.JSONDecodeError, TypeError, ValueError, IndexError, AttributeError):
        return {}, None


@dataclass
class PartitionBatch:
    """The batch being gathered for one input partition, from `start` (its first offset) on."""

    topic: str
    partition: int
    start: int                      # first offset of this batch (the committed position)
    committed_wm: Watermarks        # watermarks as of `start`
    pending_end: int | None = None  # a recovered intent: this batch must end exactly here
    epoch: int = 0                  # replay epoch (see decode_epoch): part of every token
    wm: Watermarks = field(default_factory=dict)
    taken: list[RowBatch] = field(default_factory=list)
    last_offset: int | None = None
    rows: int = 0
    size: int = 0  # bytes gathered
    duplicates: int = 0
    opened_at: float | None = None

    def __post_init__(self) -> None:
        self.wm = dict(self.committed_wm)

    @property
    def end(self) -> int:
        """The last offset this batch covers (the recovered intent's end when there is one)."""
        if self.pending_end is not None:
            return self.pending_end
        assert self.last_offset is not None
        return self.last_offset

    def belongs(self, offset: int) -> bool:
        """False when `offset` lies past a recovered intent: flush this batch first."""
        return self.pending_end is None or offset <= self.pending_end

    def add(self, batch: RowBatch, now: float) -> bool:
        """Take `batch` unless its source position is at or below the watermark; True if taken.

        A batch without a source header is its own source (this partition and offset): never a copy in
        normal reading, but dropped like any other after a rewind that kept the watermarks."""
        self.last_offset = batch.offset
        if self.opened_at is None:
            self.opened_at = now
        source = batch.source or SourcePosition(self.topic, self.partition, batch.offset)
        seen = self.wm.get(source.key)
        if seen is not None and (source.offset, source.part) <= seen:
            self.duplicates += 1
            return False
        self.wm[source.key] = (source.offset, source.part)
        self.taken.append(batch)
        self.rows += batch.rows
        self.size += len(batch.value)
        return True

    def skip(self, offset: int, now: float) -> None:
        """Cover `offset` without taking anything from it (a message that is not a row batch)."""
        self.last_offset = offset
        if self.opened_at is None:
            self.opened_at = now

    def ready(self, now: float, limits: Limits) -> bool:
        if self.last_offset is None:
            return False
        if self.pending_end is not None:
            return self.last_offset >= self.pending_end
        assert self.opened_at is not None
        return (self.rows >= limits.rows or self.size >= limits.size
                or now - self.opened_at >= limits.interval_s)

    def inserts(self) -> dict[tuple[str, str], list[builtins.bytes]]:
        """The blocks per (table, format), in offset order: one insert each (a batch holds both formats only
        while workers of both kinds write the same topic)."""
        out: dict[tuple[str, str], list[builtins.bytes]] = {}
        for batch in self.taken:
            out.setdefault((batch.table, batch.fmt), []).append(batch.value)
        return out

    def token(self, group: str, table: str, fmt: str = FORMAT_JSON) -> str:
        """The insert deduplication token: the same for every attempt at this offset range, table and format."""
        epoch = f"/r{self.epoch}" if self.epoch else ""
        kind = "" if fmt == FORMAT_JSON else f"/{fmt}"
        return f"{group}/{self.topic}/{self.partition}/{self.start}-{self.end}/{table}{epoch}{kind}"

    def intent(self) -> str:
        return encode_state(self.committed_wm, self.end, self.epoch)

    def done(self) -> str:
        return encode_state(self.wm, epoch=self.epoch)

    def following(self) -> PartitionBatch:
        """The empty batch that starts right after this one."""
        return PartitionBatch(self.topic, self.partition, self.end + 1, dict(self.wm), epoch=self.epoch)
