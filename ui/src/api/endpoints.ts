/**
 * Maple's query API (`query/` in this repository, OpenAPI at /api/openapi.json), one function per call,
 * each mapping the wire model (snake_case, `query/models.py`) onto the types the pages use.
 */
import { request, type Params } from "./client";
import type {
  DependencyEdge, Health, LogPage, LogRow, SeverityBucket, Span, SqlResult, Trace, TracePage, TraceSummary, ServiceRed,
  MetricResult, FieldInfo, TopValues,
} from "./types";

const V1 = "/api/v1";

// -- wire models (query/models.py) ----------------------------------------------------------------------

type WireRange = { start: string; end: string; start_ns: number; end_ns: number };
type WireLog = {
  timestamp: string; timestamp_ns: number; service: string; severity_text: string; severity_number: number; body: string;
  trace_id: string; span_id: string; attributes: Record<string, string>; resource_attributes: Record<string, string>; scope_name: string;
};
type WireTraceSummary = {
  trace_id: string; start: string; start_ns: number; duration_ms: number; root_service: string; root_name: string;
  span_count: number; error_count: number; services: string[];
};
type WireSpan = {
  trace_id: string; span_id: string; parent_span_id: string; name: string; kind: string; service: string; start: string; start_ns: number;
  duration_ms: number; status_code: string; status_message: string; depth: number; attributes: Record<string, string>;
  resource_attributes: Record<string, string>; scope_name: string; scope_version: string;
  events: { timestamp: string; timestamp_ns: number; name: string; attributes: Record<string, string> }[];
  links: { trace_id: string; span_id: string; trace_state: string; attributes: Record<string, string> }[];
};
type WireServiceRed = { service: string; calls: number; errors: number; error_rate: number; rate_per_s: number; p50_ms: number | null; p95_ms: number | null; p99_ms: number | null };

// -- time -------------------------------------------------------------------------------------------------

/**
 * Nanoseconds since the epoch from an RFC 3339 string, exactly: JSON numbers lose the last digits of
 * nanosecond timestamps (they are above 2^53), the string keeps them.
 */
export function rfc3339ToNs(s: string): bigint {
  const m = /^(.*T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})$/i.exec(s);
  if (!m) return BigInt(Math.round(Date.parse(s))) * 1_000_000n;
  const seconds = BigInt(Date.parse(`${m[1]}${m[3]}`) / 1000);
  const frac = (m[2] ?? "").padEnd(9, "0").slice(0, 9);
  return seconds * 1_000_000_000n + BigInt(frac);
}

const nsToMs = (ns: bigint) => Number(ns / 1000n) / 1000;

// -- logs -------------------------------------------------------------------------------------------------

export type LogQuery = { q: string; from: string; to: string; source?: string };

function fnv(text: string): string {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619);
  return (h >>> 0).toString(36);
}

/**
 * A record's id: its time, service, span and a hash of its body, so `?log=` in a shared link finds the same
 * record after a reload. Identical records in one page get a suffix (`~1`, `~2`) to stay distinct.
 */
function logRows(wire: WireLog[]): LogRow[] {
  const seen = new Map<string, number>();
  return wire.map((w) => {
    const base = `${rfc3339ToNs(w.timestamp)}-${fnv(`${w.service}\u0000${w.span_id}\u0000${w.body}`)}`;
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    return logRow(w, n ? `${base}~${n}` : base);
  });
}

function logRow(w: WireLog, id: string): LogRow {
  const ns = rfc3339ToNs(w.timestamp);
  return {
    id,
    timestampMs: nsToMs(ns),
    timestamp: w.timestamp,
    service: w.service,
    severityText: w.severity_text,
    severityNumber: w.severity_number,
    body: w.body,
    traceId: w.trace_id,
    spanId: w.span_id,
    attributes: w.attributes,
    resourceAttributes: w.resource_attributes,
    scopeName: w.scope_name,
  };
}

export async function searchLogs(query: LogQuery & { cursor?: string | null; limit?: number }, signal?: AbortSignal): Promise<LogPage> {
  const t0 = performance.now();
  const body = await request<{ rows: WireLog[]; next_cursor: string | null; range: WireRange }>(`${V1}/logs/search`, {
    params: { q: query.q, from: query.from, to: query.to, cursor: query.cursor ?? undefined, limit: query.limit, source: query.source },
    signal,
  });
  return { rows: logRows(body.rows), nextCursor: body.next_cursor, tookMs: performance.now() - t0 };
}

export async function logHistogram(query: LogQuery & { intervalS: number }, signal?: AbortSignal): Promise<{ buckets: SeverityBucket[]; total: number; intervalS: number; startMs: number; endMs: number }> {
  const body = await request<{ interval_s: number; buckets: { time: string; group: string | null; count: number }[]; total: number; range: WireRange }>(
    `${V1}/logs/aggregate`, { params: { q: query.q, from: query.from, to: query.to, interval: query.intervalS, group_by: "severity", source: query.source }, signal });
  const byTime = new Map<number, SeverityBucket>();
  for (const b of body.buckets) {
    const tMs = nsToMs(rfc3339ToNs(b.time));
    const bucket = byTime.get(tMs) ?? { tMs, counts: {} };
    const key = b.group ?? "";
    bucket.counts[key] = (bucket.counts[key] ?? 0) + b.count;
    byTime.set(tMs, bucket);
  }
  return {
    buckets: [...byTime.values()].sort((a, b) => a.tMs - b.tMs), total: body.total, intervalS: body.interval_s,
    startMs: nsToMs(rfc3339ToNs(body.range.start)), endMs: nsToMs(rfc3339ToNs(body.range.end)),
  };
}

export async function logFields(signal?: AbortSignal): Promise<FieldInfo[]> {
  const body = await request<{ fields: FieldInfo[] }>(`${V1}/logs/fields`, { signal });
  return body.fields;
}

export async function topValues(query: LogQuery & { field: string; limit?: number }, signal?: AbortSignal): Promise<TopValues> {
  return request<TopValues>(`${V1}/logs/top`, { params: { q: query.q, from: query.from, to: query.to, field: query.field, limit: query.limit }, signal });
}

/**
 * Live tail: the API sends one `log` event per new record (oldest first) and an `error` event with a message
 * when the query cannot run. Records are handed over in batches, at most four times a second, so a busy
 * stream re-renders the table a few times a second rather than once per record.
 */
export function tailLogs(query: { q: string; source?: string }, onRows: (rows: LogRow[]) => void, onError: (message: string) => void): () => void {
  const params = new URLSearchParams();
  if (query.q) params.set("q", query.q);
  if (query.source) params.set("source", query.source);
  const es = new EventSource(`${V1}/logs/tail?${params}`);
  let pending: LogRow[] = [];
  let seq = 0;
  let timer: ReturnType<typeof setTimeout> | null = null;
  const flush = () => {
    timer = null;
    if (pending.length) { const rows = pending; pending = []; onRows(rows); }
  };
  es.addEventListener("log", (ev) => {
    try {
      const w: WireLog = JSON.parse((ev as MessageEvent).data);
      pending.push(logRow(w, `${rfc3339ToNs(w.timestamp)}-tail-${(seq++).toString(36)}`));
      timer ??= setTimeout(flush, 250);
    } catch (e) {
      onError(`could not read a live-tail event: ${(e as Error).message}`);
    }
  });
  es.addEventListener("error", (ev) => {
    const data = (ev as MessageEvent).data;
    if (typeof data === "string" && data) {
      onError(data);
      es.close();
    } else if (es.readyState === EventSource.CLOSED) {
      onError("the live tail was closed by the server");
    }
  });
  return () => { es.close(); if (timer) clearTimeout(timer); };
}

// -- traces ---------------------------------------------------------------------------------------------

export type TraceQuery = { from: string; to: string; service?: string; operation?: string; q?: string; minMs?: number; maxMs?: number; status?: "any" | "error" | "ok" | "unset" };

function traceSummary(w: WireTraceSummary): TraceSummary {
  return {
    traceId: w.trace_id, startMs: nsToMs(rfc3339ToNs(w.start)), durationMs: w.duration_ms, rootService: w.root_service,
    rootName: w.root_name, spanCount: w.span_count, errorCount: w.error_count, services: w.services,
  };
}

export async function searchTraces(query: TraceQuery & { cursor?: string | null; limit?: number }, signal?: AbortSignal): Promise<TracePage> {
  const params: Params = {
    from: query.from, to: query.to, service: query.service, span_name: query.operation, q: query.q,
    min_duration_ms: query.minMs, max_duration_ms: query.maxMs, status: query.status === "any" ? undefined : query.status,
    cursor: query.cursor ?? undefined, limit: query.limit,
  };
  const body = await request<{ traces: WireTraceSummary[]; next_cursor: string | null }>(`${V1}/traces/search`, { params, signal });
  return { traces: body.traces.map(traceSummary), nextCursor: body.next_cursor };
}

export async function getTrace(traceId: string, signal?: AbortSignal): Promise<Trace> {
  const body = await request<{ trace_id: string; start: string; spans: WireSpan[] }>(`${V1}/traces/${encodeURIComponent(traceId)}`, { signal });
  const origin = rfc3339ToNs(body.start);
  const spans: Span[] = body.spans.map((w) => {
    const start = rfc3339ToNs(w.start);
    return {
      spanId: w.span_id, parentSpanId: w.parent_span_id, traceId: w.trace_id, service: w.service, name: w.name, kind: w.kind,
      startMs: Number(start - origin) / 1e6, startEpochMs: nsToMs(start), durationMs: w.duration_ms,
      statusCode: w.status_code, statusMessage: w.status_message, error: /error/i.test(w.status_code),
      attributes: w.attributes, resourceAttributes: w.resource_attributes, scopeName: w.scope_name,
      events: w.events.map((e) => ({ timeMs: Number(rfc3339ToNs(e.timestamp) - origin) / 1e6, name: e.name, attributes: e.attributes })),
      links: w.links.map((l) => ({ traceId: l.trace_id, spanId: l.span_id, attributes: l.attributes })),
    };
  });
  return { traceId: body.trace_id, spans, startEpochMs: nsToMs(origin) };
}

// -- services ---------------------------------------------------------------------------------------------

function serviceRed(w: WireServiceRed): ServiceRed {
  return {
    service: w.service, calls: w.calls, errors: w.errors, errorRate: w.error_rate, requestsPerSecond: w.rate_per_s,
    p50Ms: w.p50_ms, p95Ms: w.p95_ms, p99Ms: w.p99_ms,
  };
}

export async function listServices(range: { from: string; to: string }, signal?: AbortSignal): Promise<ServiceRed[]> {
  const body = await request<{ services: WireServiceRed[] }>(`${V1}/traces/services`, { params: range, signal });
  return body.services.map(serviceRed);
}

export async function dependencies(range: { from: string; to: string }, signal?: AbortSignal): Promise<{ services: string[]; edges: DependencyEdge[] }> {
  const body = await request<{ services: string[]; edges: { caller: string; callee: string; calls: number; errors: number; p50_ms: number | null; p95_ms: number | null }[] }>(
    `${V1}/traces/dependencies`, { params: range, signal });
  return {
    services: body.services,
    edges: body.edges.map((e) => ({ caller: e.caller, callee: e.callee, calls: e.calls, errors: e.errors, p50Ms: e.p50_ms, p95Ms: e.p95_ms })),
  };
}

// -- metrics ---------------------------------------------------------------------------------------------

export async function metricQuery(query: { promql: string; from: string; to: string; stepS?: number }, signal?: AbortSignal): Promise<MetricResult> {
  const body = await request<{ step_s: number; series: { labels: Record<string, string>; points: [number, number | null][] }[] }>(
    `${V1}/metrics/query`, { params: { query: query.promql, from: query.from, to: query.to, step: query.stepS }, signal });
  return { stepS: body.step_s, series: body.series };
}

// -- sql, health -------------------------------------------------------------------------------------------

export async function runSql(sql: string, signal?: AbortSignal): Promise<SqlResult> {
  const body = await request<{ columns: { name: string; type: string }[]; rows: unknown[][]; truncated: boolean; rows_read: number; elapsed_ms: number }>(
    `${V1}/sql`, { body: { sql }, signal });
  return { columns: body.columns, rows: body.rows, rowCount: body.rows.length, tookMs: body.elapsed_ms, truncated: body.truncated, rowsRead: body.rows_read };
}

export async function health(signal?: AbortSignal): Promise<Health> {
  return request<Health>(`${V1}/health`, { signal });
}
