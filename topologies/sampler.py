"""The tail-sampling agent: otel.spans (partitioned by TraceId) in, sampled otel_traces rows out.

Each span partition has its own `PartitionSampler` (processors/tail_sampler.py), a deterministic state
machine over the partition's messages. This module is the Faust glue around it:

* one Faust event is one span batch (or a tick): the sampler's per-span work is plain Python over columns;
* emitted rows go to partition `p % N` of otel.spans.sampled, stamped (`otel.spans/p`, offset, group) so
  the sink drops the copies a restarted sampler emits again;
* an event is acked only once it lies before the sampler's safe offset *and* every row emitted so far is
  in Kafka. Faust commits acked offsets, so a restart resumes where no trace straddles the commit;
* every `traces.tick_interval_s`, each partition this worker samples gets a tick record: the progress of
  every raw partition, as the sampler knows it from the spans, raised to the current time for raw
  partitions the traces agents have fully committed (`RawProgress`). Ticks move the clock of quiet
  partitions and are the points a restart begins at.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from itertools import pairwise
from pathlib import Path
from typing import Any

import faust
import orjson
import yaml
from prometheus_client import CollectorRegistry, Counter, Gauge

from maple import blocks, tenants
from maple.consumer import Cluster, KafkaOpError
from maple.jsoncolumns import encode
from maple.producer import AsyncProducer, Record
from maple.settings import Settings, SettingsError
from maple.topics import (
    DEFAULT_TENANT,
    FORMAT_NATIVE,
    HEADER_DECIDED_NS,
    HEADER_FORMAT,
    HEADER_GROUP,
    HEADER_READ,
    HEADER_ROWS,
    HEADER_SOURCE,
    HEADER_TABLE,
    HEADER_TENANT,
    HEADER_TICK,
    RAW_TRACES,
    SPANS,
    SPANS_SAMPLED,
    SourcePosition,
)
from processors import red, traces
from processors.sampling import DEFAULT_CONFIG, ConfigError, SamplingConfig, build_policies, decode_config
from processors.tail_sampler import Emission, PartitionSampler, SamplerCounts, SpanBatch, SpanColumns
from processors.values import datetime64
from topologies.acks import InOrderAcks, Release

log = logging.getLogger(__name__)

# Rows emitted at one message are grouped by the offset their trace was first seen at; a group too big for
# one batch is split, and the part number keeps the pieces apart: part = first_offset * GROUP_PIECES + piece.
GROUP_PIECES = 1024


def sampling_config(settings: Settings, span_partitions: int = 1) -> SamplingConfig:
    """The tail_sampling block from traces.sampling_config (or the seed default), decoded once, and checked
    for `span_partitions` (each must get a usable share of the rate budgets)."""
    path = settings.traces.sampling_config
    if not path:
        raw: Any = DEFAULT_CONFIG
    else:
        try:
            raw = yaml.safe_load(Path(path).expanduser().read_text())
        except OSError as exc:
            raise SettingsError(f"traces.sampling_config: cannot read {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise SettingsError(f"traces.sampling_config: {path} is not valid YAML: {exc}") from exc
    try:
        config = decode_config(raw)
        build_policies(config, 1.0 / span_partitions)
    except ConfigError as exc:
        raise SettingsError(f"traces.sampling_config {path or '(default)'}: {exc}") from exc
    return config


def red_options(settings: Settings) -> red.RedOptions:
    cfg = settings.traces
    buckets = cfg.red_buckets_ms  # numbers already (maple/settings.py); the order is checked here
    if not buckets or not all(math.isfinite(b) for b in buckets) or any(b >= c for b, c in pairwise(buckets)):
        raise SettingsError(f"traces.red_buckets_ms: {cfg.red_buckets_ms}; expected strictly increasing bounds")
    try:
        dimensions = tuple(red.Dimension.parse(d) for d in cfg.red_dimensions)
    except ValueError as exc:
        raise SettingsError(f"traces.red_dimensions: {exc}") from exc
    return red.RedOptions(dimensions=dimensions, buckets_ms=buckets)


class SamplerMetrics:
    """Totals over this worker's span partitions, published from the samplers' own counts."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.traces = Counter("maple_sampler_traces", "Traces decided", ["decision"], registry=r)
        self.spans = Counter("maple_sampler_spans", "Spans of decided traces", ["decision"], registry=r)
        self.late_spans = Counter("maple_sampler_late_spans", "Spans that came after their trace's decision "
                                  "and followed it", ["decision"], registry=r)
        self.forced_out = Counter("maple_sampler_forced_out", "Traces decided before decision_wait because "
                                  "num_traces pending traces were reached", registry=r)
        self.cache_evictions = Counter("maple_sampler_cache_evictions", "Decisions forgotten before "
                                       "late_span_window because a decision cache was full", registry=r)
        self.copies = Counter("maple_sampler_copies", "Span batches dropped as copies of ones already taken",
                              registry=r)
        self.pending = Gauge("maple_sampler_pending_traces", "Traces waiting for their decision", registry=r)
        self.held = Gauge("maple_sampler_held_messages", "Span batches read but not yet safe to commit", registry=r)
        self._by_field: dict[str, Callable[[float], None]] = {
            "traces_sampled": self.traces.labels("sampled").inc,
            "traces_not_sampled": self.traces.labels("not_sampled").inc,
            "spans_sampled": self.spans.labels("sampled").inc,
            "spans_not_sampled": self.spans.labels("not_sampled").inc,
            "late_spans_sampled": self.late_spans.labels("sampled").inc,
            "late_spans_dropped": self.late_spans.labels("not_sampled").inc,
            "forced_out": self.forced_out.inc, "cache_evictions": self.cache_evictions.inc, "copies": self.copies.inc,
        }

    def publish(self, counts: SamplerCounts, published: SamplerCounts) -> None:
        for f in fields(SamplerCounts):
            delta = getattr(counts, f.name) - getattr(published, f.name)
            if delta:
                self._by_field[f.name](delta)
                setattr(published, f.name, getattr(counts, f.name))


class RawProgress:
    """Which raw traces partitions the worker group has committed to the end (nothing left in flight)."""

    def __init__(self, cluster: Cluster, group: str) -> None:
        self.cluster = cluster  # long-lived: the worker's one admin/probe pair, never one per tick
        self.group = group
        self.partitions: list[int] | None = None

    def caught_up(self) -> set[int]:
        try:
            if self.partitions is None:
                self.partitions = self.cluster.partitions(RAW_TRACES.name)
            commits = self.cluster.committed(self.group, [RAW_TRACES.name])
            done = set()
            for partition in self.partitions:
                low, high = self.cluster.watermarks(RAW_TRACES.name, partition)
                commit = commits.get((RAW_TRACES.name, partition))
                if high <= low or (commit is not None and commit.offset >= high):
                    done.add(partition)
            return done
        except KafkaOpError as exc:
            log.info("raw traces progress unknown (%s); ticks carry what the spans showed", exc)
            return set()


@dataclass
class _PartitionState:
    partition: int
    sampler: PartitionSampler
    next_offset: int
    held: deque = field(default_factory=deque)  # events read, not yet acked, in offset order
    published: SamplerCounts = field(default_factory=SamplerCounts)


def _span_batch(message: Any, value: bytes | None, core: Any = None) -> SpanBatch:
    """The message as the sampler's input; raises ValueError when it is not a span batch or a tick.

    With the compiled core (`core`) the rows are held as Native span blocks (the bytes as they came, columns
    decoded when read); without it as column dicts. Batches of the other format are converted, so one
    sampler holds one kind (both kinds arrive while workers of both kinds run)."""
    headers = {key: v for key, v in (message.headers or []) if v is not None}
    timestamp_ms = int((message.timestamp or 0) * 1000)
    if HEADER_TICK in headers:
        progress = orjson.loads(value or b"{}")
        return SpanBatch(message.offset, timestamp_ms, progress={int(p): int(t) for p, t in progress.items()})
    columns: Any
    if blocks.format_of(headers.get(HEADER_FORMAT)) == FORMAT_NATIVE:
        columns = SpanColumns(core.SpanBlock(value or b"")) if core is not None else _python_columns(value or b"")
    else:
        columns = _json_columns(value)
        if core is not None:
            columns = SpanColumns(core.SpanBlock(_native_block(columns)))
    source = headers.get(HEADER_SOURCE)
    position = SourcePosition.parse(bytes(source)) if source else None
    tenant = tenants.check(bytes(headers.get(HEADER_TENANT) or DEFAULT_TENANT.encode()).decode())
    return SpanBatch(message.offset, timestamp_ms, columns, position.key if position else None,
                     (position.offset, position.part) if position else None,
                     position.partition if position and position.topic == RAW_TRACES.name else None,
                     tenant=tenant)


def _json_columns(value: bytes | None) -> dict[str, list[Any]]:
    columns = orjson.loads(value or b"")
    if not isinstance(columns, dict) or not isinstance(columns.get("TraceId"), list):
        raise ValueError("not a JSONColumns span batch (no TraceId column)")
    rows = len(columns["TraceId"])
    for name in (*traces.COLUMNS, traces.START_NS):
        column = columns.get(name)
        if not isinstance(column, list) or len(column) != rows:
            raise ValueError(f"span batch column {name} is missing or has the wrong length")
    return columns


def _ticks(text: Any) -> int:
    """DateTime64(9) text (seconds.nanoseconds) as Unix nanoseconds."""
    seconds, _, nanos = str(text).partition(".")
    return int(seconds) * 1_000_000_000 + int((nanos + "000000000")[:9])


def _native_block(columns: dict[str, list[Any]]) -> bytes:
    """A JSONColumns span batch (from a worker on the Python processors) as the compiled core's Native block."""
    values = {name: columns[name] for name in traces.COLUMNS}
    try:
        values["Timestamp"] = [_ticks(t) for t in values["Timestamp"]]
        values["Events.Timestamp"] = [[_ticks(t) for t in times] for times in values["Events.Timestamp"]]
        return blocks.encode_native(values, list(traces.NATIVE_TYPES.items()))
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise ValueError(f"span batch values do not fit otel_traces: {exc}") from exc


def _python_columns(block: bytes) -> dict[str, list[Any]]:
    """A Native span batch (from a worker on the compiled core) as the Python processors' columns."""
    columns = blocks.decode(block, FORMAT_NATIVE)
    for name in traces.COLUMNS:
        if name not in columns:
            raise ValueError(f"span batch column {name} is missing")
    columns[traces.START_NS] = list(columns["Timestamp"])
    columns["Timestamp"] = [datetime64(t) for t in columns["Timestamp"]]
    columns["Events.Timestamp"] = [[datetime64(t) for t in times] for times in columns["Events.Timestamp"]]
    return columns


def _sampled_records(emissions: list[Emission], partition: int, offset: int, out_partitions: int) -> list[Record]:
    """The row batches of one message's emissions. A group's batches (one tenant's rows each, tenants in name
    order) are numbered one after the other, so a group that holds one tenant is numbered as it always was."""
    records = []
    decided = str(time.time_ns()).encode()
    pieces: dict[int, int] = {}
    for emission in emissions:
        rows_blocks = (blocks.cut(emission.columns) if isinstance(emission.columns, bytes)
                       else encode(emission.columns))
        fmt = [(HEADER_FORMAT, FORMAT_NATIVE.encode())] if isinstance(emission.columns, bytes) else []
        for rows, block in rows_blocks:
            piece = pieces.get(emission.first_offset, 0)
            pieces[emission.first_offset] = piece + 1
            if piece >= GROUP_PIECES:
                raise ValueError(f"a sampled group needs more than {GROUP_PIECES} batches")
            position = SourcePosition(SPANS.name, partition, offset, emission.first_offset * GROUP_PIECES + piece)
            records.append(Record(SPANS_SAMPLED.name, block, [
                (HEADER_TABLE, traces.TABLE.encode()), (HEADER_ROWS, str(rows).encode()),
                (HEADER_SOURCE, position.header()), (HEADER_DECIDED_NS, decided),
                (HEADER_TENANT, emission.tenant.encode()), *fmt],
                partition=partition % out_partitions))
    return records


def add_sampler_agent(app: faust.App, settings: Settings, config: SamplingConfig, producer: AsyncProducer,
                      cluster: Cluster, registry: CollectorRegistry, raw_partitions: int, span_partitions: int,
                      sampled_partitions: int, on_bad_batch: Callable[[Any, Exception], Record],
                      fatal: Callable[[str], None], core: Any = None) -> None:
    """`core`: the compiled core (span batches held as Native blocks), or None (as column dicts)."""
    topic = app.topic(SPANS.name, value_serializer="raw", key_serializer="raw")
    metrics = SamplerMetrics(registry)
    states: dict[Any, _PartitionState] = {}
    share = 1.0 / span_partitions
    tick_s = settings.traces.tick_interval_s
    margin_ms = int(settings.traces.tick_margin_s * 1000)
    window = settings.worker.inflight_batches

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # Faust sends `revoked` as a keyword
    async def forget_revoked(_app: faust.App, revoked: set[Any], **_: Any) -> None:
        # The next owner rebuilds these partitions from their commits; keeping state here would be stale.
        for tp in revoked:
            states.pop(tp, None)

    progress = RawProgress(cluster, settings.worker.group)
    group = settings.worker.group.encode()

    @app.timer(interval=tick_s)
    async def tick_and_publish() -> None:
        busy = list(states)  # every partition: ticks are also the points its commits may land on
        if busy:
            # "Now" is taken before asking Kafka, less a margin for requests the ingest received just
            # before but whose records reach Kafka just after (its producer lingers and retries).
            now_ms = int(time.time() * 1000) - margin_ms
            caught_up = await asyncio.get_running_loop().run_in_executor(None, progress.caught_up)
            for tp in busy:
                state = states.get(tp)
                if state is None:
                    continue
                known = state.sampler.progress
                ticks = {p: now_ms if p in caught_up else known.get(p, 0) for p in range(raw_partitions)}
                # maple.read: how far this group's sampler has read, which its commit (held back by the traces
                # still pending and the late-span window) does not show; `maple lag` measures from it.
                sent = producer.produce_all([Record(SPANS.name, orjson.dumps({str(p): t for p, t in ticks.items()}),
                                                    [(HEADER_TICK, b"1"), (HEADER_GROUP, group),
                                                     (HEADER_READ, str(state.next_offset).encode())],
                                                    partition=tp.partition)])
                sent.add_done_callback(_log_tick_failure)
        for state in states.values():
            metrics.publish(state.sampler.counts, state.published)
        metrics.pending.set(sum(s.sampler.pending_traces for s in states.values()))
        metrics.held.set(sum(len(s.held) for s in states.values()))

    async def agent(stream: faust.StreamT) -> None:
        acks = InOrderAcks("sampler", window, fatal)

        def release_before(state: _PartitionState, safe: int | None) -> Release:
            """Ack the held events before the safe offset: a restart there re-creates exactly these rows."""
            async def release() -> None:
                held = state.held
                while held and safe is not None and held[0].message.offset < safe:
                    await stream.ack(held.popleft())
            return release

        producer.start(asyncio.get_running_loop())
        acks.start()
        try:
            async for event in stream.noack().events():  # type: ignore[attr-defined]  # Stream has it
                message = event.message
                tp = message.tp
                state = states.get(tp)
                if state is None or message.offset != state.next_offset:
                    if state is not None:
                        log.warning("%s[%d]: offset %d after %d; rebuilding its sampler from here", tp.topic,
                                    tp.partition, message.offset, state.next_offset)
                    fresh = PartitionSampler(config, raw_partitions, share)
                    state = states[tp] = _PartitionState(tp.partition, fresh, message.offset)
                extra: list[Record] = []
                try:
                    batch = _span_batch(message, event.value, core)
                except (ValueError, orjson.JSONDecodeError) as exc:
                    extra.append(on_bad_batch(message, exc))
                    batch = SpanBatch(message.offset, int((message.timestamp or 0) * 1000))
                # The rows live on in the sampler's columns; the message bytes are not needed while held.
                event.value = message.value = None
                emissions = state.sampler.step(batch)
                state.next_offset = message.offset + 1
                state.held.append(event)
                written = producer.produce_all(extra + _sampled_records(emissions, tp.partition, message.offset,
                                                                        sampled_partitions))
                await acks.put(written, release_before(state, state.sampler.safe_offset()),
                               f"{SPANS.name}[{tp.partition}]@{message.offset}")
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            fatal(f"sampler failed: {type(exc).__name__}: {exc}")
        finally:
            acks.stop()

    app.agent(topic, name="maple.sampler")(agent)


def _log_tick_failure(future: asyncio.Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("a sampler tick was not written (the next one retries): %s", future.exception())
