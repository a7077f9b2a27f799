/**
 * What the pages work with. `endpoints.ts` maps the API's wire models onto these, so a change in the API's
 * field names is one edit there, not one per component.
 */

export type LogRow = {
  /** Stable key for the table and for `?log=` in the URL. */
  id: string;
  timestampMs: number;
  /** The timestamp as the API gave it (RFC 3339, nanoseconds kept for display). */
  timestamp: string;
  service: string;
  severityText: string;
  severityNumber: number;
  body: string;
  traceId: string;
  spanId: string;
  attributes: Record<string, string>;
  resourceAttributes: Record<string, string>;
  scopeName: string;
};

export type LogPage = { rows: LogRow[]; nextCursor: string | null; tookMs?: number };

export type SeverityBucket = { tMs: number; counts: Record<string, number> };

export type FieldInfo = { name: string; kind: string; type: string; expression: string };

export type TopValues = { field: string; values: { value: string; count: number }[]; total: number };

export type TraceSummary = {
  traceId: string;
  startMs: number;
  durationMs: number;
  rootService: string;
  rootName: string;
  spanCount: number;
  errorCount: number;
  services: string[];
};

export type TracePage = { traces: TraceSummary[]; nextCursor: string | null };

export type SpanEvent = { timeMs: number; name: string; attributes: Record<string, string> };
export type SpanLink = { traceId: string; spanId: string; attributes: Record<string, string> };

export type Span = {
  spanId: string;
  parentSpanId: string;
  traceId: string;
  service: string;
  name: string;
  kind: string;
  /** Milliseconds since the trace's first span started (sub-ms precision kept). */
  startMs: number;
  /** Absolute start, epoch ms, for display. */
  startEpochMs: number;
  durationMs: number;
  statusCode: string;
  statusMessage: string;
  error: boolean;
  attributes: Record<string, string>;
  resourceAttributes: Record<string, string>;
  scopeName: string;
  events: SpanEvent[];
  links: SpanLink[];
};

export type Trace = { traceId: string; spans: Span[]; startEpochMs: number };

export type ServiceRed = {
  service: string;
  requestsPerSecond: number;
  calls: number;
  errors: number;
  errorRate: number;
  p50Ms: number | null;
  p95Ms: number | null;
  p99Ms: number | null;
};

export type DependencyEdge = { caller: string; callee: string; calls: number; errors: number; p50Ms: number | null; p95Ms: number | null };

export type MetricResult = { stepS: number; series: { labels: Record<string, string>; points: [number, number | null][] }[] };

export type SqlResult = {
  columns: { name: string; type: string }[];
  rows: unknown[][];
  rowCount: number;
  tookMs?: number;
  truncated?: boolean;
  rowsRead?: number;
};

/** `GET /api/v1/health` as the API sends it (query/models.py HealthResponse). */
export type Health = {
  status: "ok" | "degraded" | "down" | "starting";
  checked_at: string | null;
  age_s: number | null;
  kafka: { ok: boolean; detail: string };
  clickhouse: { ok: boolean; detail: string };
  lag: { group: string; messages: number; seconds: number | null; partitions: number; error?: string | null }[];
  dead_letters: { count: number | null; topic: string };
  /** Records the ingest wrote to the raw topics per second (one record = one OTLP export request). */
  ingest?: { requests_per_s: number | null; by_signal: Record<string, number>; window_s: number | null } | null;
};
