"""Tail sampling of one span partition: gather traces, decide them, and say how far it is safe to commit.

The sampler is a pure state machine over the messages of one partition of otel.spans, in offset order.
Its whole behaviour is a function of those messages (values, offsets and record timestamps), never of
the wall clock, so a sampler restarted at its committed offset makes the same decisions and emits the
same rows at the same positions as the one it replaces. That is what keeps tail sampling exactly-once
across kills and rebalances (docs/traces.md):

* **Stream time.** Span batches carry their request's ingest time. The sampler tracks, per raw partition,
  how far its requests have arrived; the clock is the minimum over all raw partitions, so a raw partition
  that is behind (its worker restarting, a backlog) holds decisions back instead of being outrun. A trace
  is decided once the clock is `decision_wait` past its first span's ingest time.
* **Ticks.** The worker writes tick records into each span partition it samples, carrying the progress of
  every raw partition (the current time for those fully processed). Progress never moves back. A tick
  that holds at least the progress seen so far is a checkpoint: the sampler commits only at checkpoints,
  so a restart begins with exactly the state the replaced sampler had there.
* **Decision caches.** A decided trace is remembered for `late_span_window` of stream time (and within
  the cache sizes): its late spans follow the decision.
* **Safe offset.** Restarting at offset `c` is safe when `c` is a checkpoint tick and no trace straddles `c`: every
  trace seen before `c` has been forgotten, and none of their spans (and no copy of a message before `c`)
  comes at or after `c`. `safe_offset()` is the highest such `c`; the worker commits only up to it.
* **Positions.** The rows emitted at the message at offset `o` are grouped by the offset where their
  trace was first seen, and each group is stamped (`o`, group): a restarted sampler re-creates every
  group after its restart point identically, so the sink recognises copies by position.
* **Tenants.** A trace is a tenant's trace id: spans of two tenants that share an id are two traces,
  decided apart, and a group is split by tenant (in name order), so every emitted batch belongs to one
  tenant and carries it.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from maple.native import core
from maple.topics import DEFAULT_TENANT
from processors.sampling import SamplingConfig, Trace, build_policies, decide_weight
from processors.traces import COLUMNS, SAMPLE_RATE


class SpanColumns(dict):
    """A Native span batch (the compiled core's SpanBlock) as the columns dict the sampler and the policies
    read: a column is decoded from the block on first read, then found at dict speed."""

    __slots__ = ("block",)

    def __init__(self, block: Any) -> None:
        super().__init__()
        self.block = block

    def __missing__(self, key: str) -> list[Any]:
        value = self[key] = self.block[key]
        return value


@dataclass(frozen=True)
class SpanBatch:
    """One message of a span partition: span rows, or a tick (columns None, `progress` set)."""

    offset: int
    timestamp_ms: int                      # the ingest time of the request the rows came from
    columns: dict[str, list[Any]] | None = None
    source_key: str | None = None          # where the rows came from (raw topic/partition), to spot copies
    source_position: tuple[int, int] | None = None  # (raw offset, part)
    raw_partition: int | None = None
    progress: dict[int, int] | None = None  # a tick: how far each raw partition has arrived (ms)
    tenant: str = DEFAULT_TENANT           # whose spans these are (the batch's maple.tenant header)


@dataclass
class Emission:
    """Rows to write for one group: traces first seen at `first_offset`, emitted at one message.

    `columns` are otel_traces columns when the span batches were column dicts (the Python processors'),
    or one Native block when they were the compiled core's span blocks."""

    first_offset: int
    columns: dict[str, list[Any]] | bytes
    tenant: str = DEFAULT_TENANT


@dataclass
class SamplerCounts:
    traces_sampled: int = 0
    traces_not_sampled: int = 0
    spans_sampled: int = 0
    spans_not_sampled: int = 0
    late_spans_sampled: int = 0
    late_spans_dropped: int = 0
    forced_out: int = 0          # traces decided early because num_traces was reached
    cache_evictions: int = 0     # decisions forgotten before late_span_window because a cache was full
    copies: int = 0              # messages dropped as copies of ones already seen


@dataclass
class _Pending:
    trace: Trace
    first_offset: int
    due_ms: int
    last_offset: int


@dataclass
class _Decided:
    first_offset: int
    last_offset: int
    decided_clock: int
    weight: float = 1.0  # a sampled trace's SampleRate, for its late spans too


# Sampled spans by the offset of their trace's first span: (span batch columns, row, the span's weight).
# A trace: (tenant, trace id). Emissions: (first offset, tenant) -> the spans to write with their weights.
TraceKey = tuple[str, str]
Groups = dict[tuple[int, str], list[tuple[dict[str, list[Any]], int, float]]]


@dataclass
class PartitionSampler:
    config: SamplingConfig
    raw_partitions: int = 1
    rate_share: float = 1.0  # this partition's part of the rate budgets: 1 / span partitions
    clock_ms: int = 0
    counts: SamplerCounts = field(default_factory=SamplerCounts)

    def __post_init__(self) -> None:
        self._policies = build_policies(self.config, self.rate_share)  # its own: policies keep rate budgets
        self._progress: dict[int, int] = {}      # raw partition -> latest ingest time arrived (ms)
        self._pending: OrderedDict[TraceKey, _Pending] = OrderedDict()       # in first-seen order
        self._due: list[tuple[int, int, TraceKey]] = []  # heap of (due time, arrival number, trace)
        self._arrivals = 0
        self._ticks: list[int] = []              # tick offsets at or after the safe offset, increasing
        self._blocked: set[int] = set()          # ticks a restart must not begin at: a trace straddles them
        self._sampled: OrderedDict[TraceKey, _Decided] = OrderedDict()       # in decision order
        self._not_sampled: OrderedDict[TraceKey, _Decided] = OrderedDict()
        self._alive: dict[int, int] = {}         # first offset -> traces pending or cached
        self._alive_order: deque[int] = deque()  # the first offsets in _alive, increasing
        self._watermarks: dict[str, tuple[tuple[int, int], int]] = {}  # source -> (position, offset seen)
        self._next_offset: int | None = None
        self._safe: int | None = None

    @property
    def pending_traces(self) -> int:
        return len(self._pending)

    @property
    def progress(self) -> dict[int, int]:
        return dict(self._progress)

    # -- one message --------------------------------------------------------------------------------

    def step(self, batch: SpanBatch) -> list[Emission]:
        """Take one message; returns the rows to emit at its offset, in position order."""
        offset = batch.offset
        if self._safe is None:
            self._safe = offset
        self._next_offset = offset + 1
        if batch.progress is not None:
            # A tick was written a moment (or, behind a backlog, a long while) before it is read: progress
            # never moves back. It is a checkpoint only if it holds everything seen so far, because then
            # a restart here, starting from the tick alone, has exactly this state.
            current = self._progress
            if all(batch.progress.get(p, 0) >= t for p, t in current.items()):
                self._ticks.append(offset)
            self._progress = {p: max(t, current.get(p, 0)) for p, t in batch.progress.items()}
            for p, t in current.items():
                self._progress.setdefault(p, t)
        elif batch.raw_partition is not None and batch.timestamp_ms > self._progress.get(batch.raw_partition, 0):
            self._progress[batch.raw_partition] = batch.timestamp_ms
        progress = self._progress
        self.clock_ms = min((progress.get(p, 0) for p in range(self.raw_partitions)), default=0)
        groups: Groups = {}
        self._expire()
        self._decide_due(groups)
        if batch.columns is not None and not self._is_copy(batch):
            self._take(batch, groups)
        while len(self._pending) > self.config.num_traces:
            self.counts.forced_out += 1
            self._decide(*self._pending.popitem(last=False), groups)
        return [Emission(first, _gather(spans), tenant) for (first, tenant), spans in sorted(groups.items())]

    def _is_copy(self, batch: SpanBatch) -> bool:
        if batch.source_key is None or batch.source_position is None:
            return False
        seen = self._watermarks.get(batch.source_key)
        if seen is not None and batch.source_position <= seen[0]:
            # A restarted upstream worker wrote this again. Never commit between the original and the
            # copy, so a restart sees both and drops the copy again.
            self.counts.copies += 1
            self._no_cut(seen[1], batch.offset)
            return True
        self._watermarks[batch.source_key] = (batch.source_position, batch.offset)
        return False

    def _take(self, batch: SpanBatch, groups: Groups) -> None:
        cols = batch.columns
        assert cols is not None
        offset, due = batch.offset, batch.timestamp_ms + self.config.decision_wait_ms
        pending, sampled, not_sampled = self._pending, self._sampled, self._not_sampled
        tenant = batch.tenant
        after_root = self.config.decision_wait_after_root_ms
        # Roots (no parent) bring a trace's decision forward, to after_root past the root's arrival: a
        # function of the messages alone, like every other due time.
        parents = cols["ParentSpanId"] if after_root is not None else None
        root_due = batch.timestamp_ms + after_root if after_root is not None else due
        for row, trace_id in enumerate(cols["TraceId"]):
            key = (tenant, trace_id)
            entry = pending.get(key)
            if entry is not None:
                entry.trace.spans.append((cols, row))
                entry.last_offset = offset
                if parents is not None and not parents[row] and root_due < entry.due_ms:
                    entry.due_ms = root_due  # the heap's older entry for it is skipped when it comes up
                    self._arrivals += 1
                    heapq.heappush(self._due, (root_due, self._arrivals, key))
                continue
            if not trace_id:  # no trace to wait for: keep the span as it is
                groups.setdefault((offset, tenant), []).append((cols, row, 1.0))
                self.counts.spans_sampled += 1
                continue
            decided = sampled.get(key)
            if decided is not None:
                decided.last_offset = offset
                groups.setdefault((decided.first_offset, tenant), []).append((cols, row, decided.weight))
                self.counts.late_spans_sampled += 1
                continue
            decided = not_sampled.get(key)
            if decided is not None:
                decided.last_offset = offset
                self.counts.late_spans_dropped += 1
                continue
            first_due = root_due if parents is not None and not parents[row] and root_due < due else due
            pending[key] = _Pending(Trace(trace_id, [(cols, row)]), offset, first_due, offset)
            self._arrivals += 1
            heapq.heappush(self._due, (first_due, self._arrivals, key))
            self._pin(offset)
        if len(self._due) > 2 * len(pending) + 1024:  # entries of traces forced out early: drop them
            self._due = [entry for entry in self._due if entry[2] in pending and pending[entry[2]].due_ms == entry[0]]
            heapq.heapify(self._due)

    # -- decisions ----------------------------------------------------------------------------------

    def _decide_due(self, groups: Groups) -> None:
        clock, pending, heap = self.clock_ms, self._pending, self._due
        while heap and heap[0][0] <= clock:
            due, _, key = heapq.heappop(heap)
            entry = pending.get(key)
            if entry is None or entry.due_ms != due:  # decided already (forced out)
                continue
            del pending[key]
            self._decide(key, entry, groups)

    def _decide(self, key: TraceKey, entry: _Pending,
                groups: Groups) -> None:
        trace = entry.trace
        record = _Decided(entry.first_offset, entry.last_offset, self.clock_ms)
        weight = decide_weight(self._policies, trace, self.clock_ms // 1000)
        if weight is not None:
            record.weight = weight
            groups.setdefault((entry.first_offset, key[0]), []).extend((cols, row, weight) for cols, row in trace.spans)
            self.counts.traces_sampled += 1
            self.counts.spans_sampled += trace.span_count
            self._remember(self._sampled, key, record, self.config.sampled_cache_size)
        else:
            self.counts.traces_not_sampled += 1
            self.counts.spans_not_sampled += trace.span_count
            self._remember(self._not_sampled, key, record, self.config.non_sampled_cache_size)

    def _remember(self, cache: OrderedDict[TraceKey, _Decided], key: TraceKey, record: _Decided, size: int) -> None:
        cache[key] = record
        while len(cache) > size:
            self.counts.cache_evictions += 1
            self._forget(cache.popitem(last=False)[1])

    def _expire(self) -> None:
        horizon = self.clock_ms - self.config.late_span_window_ms
        for cache in (self._sampled, self._not_sampled):
            while cache:
                record = next(iter(cache.values()))
                if record.decided_clock > horizon:
                    break
                cache.popitem(last=False)
                self._forget(record)

    # -- the safe offset ----------------------------------------------------------------------------

    def _pin(self, first_offset: int) -> None:
        count = self._alive.get(first_offset)
        if count is None:
            self._alive[first_offset] = 1
            self._alive_order.append(first_offset)
        else:
            self._alive[first_offset] = count + 1

    def _forget(self, record: _Decided) -> None:
        """A trace leaves memory: it no longer pins the commit, but nothing may cut through its span range."""
        first = record.first_offset
        remaining = self._alive[first] - 1
        if remaining:
            self._alive[first] = remaining
        else:
            del self._alive[first]
        if record.last_offset > first:
            self._no_cut(first, record.last_offset)

    def _no_cut(self, start: int, end: int) -> None:
        """A restart at any offset in (start, end] would split what must be seen together: block those ticks.

        `end` is at most the current offset, so only ticks already seen can fall in the range."""
        ticks = self._ticks
        index = bisect_right(ticks, start)
        while index < len(ticks) and ticks[index] <= end:
            self._blocked.add(ticks[index])
            index += 1

    def safe_offset(self) -> int | None:
        """The highest offset a restart may begin at (commit up to it); None before the first message."""
        if self._safe is None or self._next_offset is None:
            return None
        order = self._alive_order
        while order and order[0] not in self._alive:
            order.popleft()
        limit = order[0] if order else self._next_offset
        ticks, blocked = self._ticks, self._blocked
        for index in range(bisect_right(ticks, limit) - 1, -1, -1):
            if ticks[index] not in blocked:
                if ticks[index] > self._safe:
                    self._safe = ticks[index]
                    del ticks[:index]
                    self._blocked = {t for t in blocked if t >= self._safe}
                break
        return self._safe


def _gather(spans: list[tuple[dict[str, list[Any]], int, float]]) -> dict[str, list[Any]] | bytes:
    """The rows of `spans` with their SampleRate: as columns from column dicts, as one Native block from span
    blocks (copied block to block by the compiled core, never through Python values)."""
    first = spans[0][0]
    if isinstance(first, dict) and not isinstance(first, SpanColumns):
        columns = {name: [cols[name][row] for cols, row, _ in spans] for name in COLUMNS}
        columns[SAMPLE_RATE] = [weight for _, _, weight in spans]
        return columns
    assert core is not None  # span blocks exist only when the compiled core made them
    rows = [(cols.block if isinstance(cols, SpanColumns) else cols, row) for cols, row, _ in spans]
    return bytes(core.gather(rows, list(COLUMNS), [weight for _, _, weight in spans]))
