/**
 * RED figures over time for one service, as PromQL over the RED metrics the trace worker derives
 * (`traces.span.metrics.calls` and `.duration`, the Collector's spanmetrics names). The API's metric and
 * label naming is in docs/query.md; this is the one place the UI spells it.
 */
import { metricQuery } from "./endpoints";
import { resolveRange } from "../lib/time";
import type { MetricResult } from "./types";

const CALLS = "traces_span_metrics_calls";
const DURATION = "traces_span_metrics_duration_bucket";

/** The span kinds `/traces/services` counts by default: requests a service served, not the calls it made. */
const SERVED = ',span_kind=~"SPAN_KIND_SERVER|SPAN_KIND_CONSUMER"';

function selector(service: string, extra = ""): string {
  const escaped = service.replace(/\\/g, "\\\\").replace(/"/g, '\\"');
  return `{service_name="${escaped}"${SERVED}${extra}}`;
}

/** The window of each point equals the step, so the points tile the range: rate x step summed over the
 * points is the exact number of calls in the range (the page shows that total beside the chart). */
export function redQueries(service: string, stepS: number) {
  const w = `[${stepS}s]`;
  return {
    rate: `sum(rate(${CALLS}${selector(service)}${w}))`,
    errors: `sum(rate(${CALLS}${selector(service, ',status_code="STATUS_CODE_ERROR"')}${w}))`,
    p50: `histogram_quantile(0.5, sum by (le) (rate(${DURATION}${selector(service)}${w})))`,
    p95: `histogram_quantile(0.95, sum by (le) (rate(${DURATION}${selector(service)}${w})))`,
    p99: `histogram_quantile(0.99, sum by (le) (rate(${DURATION}${selector(service)}${w})))`,
    operations: `sum by (span_name) (rate(${CALLS}${selector(service)}${w}))`,
  };
}

/** The range as absolute epoch ms, widened to whole steps. */
export function gridRange(range: { from: string; to: string }, stepS: number): { from: string; to: string } {
  const { fromMs, toMs } = resolveRange(range);
  const step = stepS * 1000;
  return { from: String(Math.floor(fromMs / step) * step), to: String(Math.ceil(toMs / step) * step) };
}

export type Aligned = { xs: number[]; values: (number | null)[][]; xRange: [number, number] };

/** Runs PromQL queries over one range and aligns their first series on one time axis (epoch seconds). */
async function aligned(queries: string[], range: { from: string; to: string }, stepS: number, signal?: AbortSignal): Promise<Aligned> {
  // "now-1h" resolved by each request separately would give each query its own step grid, a few ms
  // apart; one absolute range, on step boundaries, puts every series on the same instants.
  const grid = gridRange(range, stepS);
  const results = await Promise.all(queries.map((promql) => metricQuery({ promql, ...grid, stepS }, signal)));
  const times = new Set<number>();
  for (const r of results) for (const s of r.series) for (const [t] of s.points) times.add(t);
  const xsMs = [...times].sort((a, b) => a - b);
  const pick = (r: MetricResult) => {
    const m = new Map<number, number | null>((r.series[0]?.points ?? []).map(([t, v]) => [t, v]));
    return xsMs.map((t) => m.get(t) ?? null);
  };
  return { xs: xsMs.map((t) => t / 1000), values: results.map(pick), xRange: [Number(grid.from) / 1000, Number(grid.to) / 1000] };
}

/** Requests per second and the error percentage over time. */
export async function serviceRateSeries(service: string, range: { from: string; to: string }, stepS: number, signal?: AbortSignal) {
  const q = redQueries(service, stepS);
  const { xs, xRange, values: [rate, errors] } = await aligned([q.rate, q.errors], range, stepS, signal);
  const errorPct = rate.map((r, i) => (r && r > 0 ? ((errors[i] ?? 0) / r) * 100 : r === 0 ? 0 : null));
  const total = (values: (number | null)[]) => Math.round(values.reduce<number>((sum, v) => sum + (v ?? 0) * stepS, 0));
  return { xs, xRange, rate, errorPct, calls: total(rate), errors: total(errors) };
}

/** p50, p95 and p99 latency over time, in milliseconds. */
export async function serviceLatencySeries(service: string, range: { from: string; to: string }, stepS: number, signal?: AbortSignal) {
  const q = redQueries(service, stepS);
  const { xs, xRange, values: [p50, p95, p99] } = await aligned([q.p50, q.p95, q.p99], range, stepS, signal);
  return { xs, xRange, p50, p95, p99 };
}

export type OperationRed = { operation: string; calls: number; errors: number; p95Ms: number | null };
export type Operations = { operations: OperationRed[]; latencyError: string | null };

/** Calls, errors and p95 per operation (span name) of one service over the whole range. */
export async function topOperations(service: string, range: { from: string; to: string }, widthS: number, signal?: AbortSignal): Promise<Operations> {
  const w = `[${Math.max(60, Math.round(widthS))}s]`;
  const stepS = Math.min(86400, Math.max(60, Math.round(widthS)));
  const grid = gridRange(range, stepS);
  const run = (promql: string) => metricQuery({ promql, ...grid, stepS }, signal);
  const [calls, errors] = await Promise.all([
    run(`sum by (span_name) (increase(${CALLS}${selector(service)}${w}))`),
    run(`sum by (span_name) (increase(${CALLS}${selector(service, ',status_code="STATUS_CODE_ERROR"')}${w}))`),
  ]);
  // Latency is a second opinion: if it fails, the calls and errors still show, with the reason.
  let p95: MetricResult | null = null;
  let latencyError: string | null = null;
  try {
    p95 = await run(`histogram_quantile(0.95, sum by (le, span_name) (rate(${DURATION}${selector(service)}${w})))`);
  } catch (e) {
    if ((e as Error).name === "AbortError") throw e;
    latencyError = (e as Error).message;
  }
  const last = (points: [number, number | null][]) => { for (let i = points.length - 1; i >= 0; i--) if (points[i][1] != null) return points[i][1]!; return null; };
  const opOf = (labels: Record<string, string>) => labels.span_name ?? labels["span.name"] ?? "";
  const byOp = new Map<string, OperationRed>();
  for (const s of calls.series) {
    const op = opOf(s.labels);
    byOp.set(op, { operation: op, calls: Math.round(last(s.points) ?? 0), errors: 0, p95Ms: null });
  }
  for (const s of errors.series) { const o = byOp.get(opOf(s.labels)); if (o) o.errors = Math.round(last(s.points) ?? 0); }
  for (const s of p95?.series ?? []) { const o = byOp.get(opOf(s.labels)); if (o) o.p95Ms = last(s.points); }
  return { operations: [...byOp.values()].sort((a, b) => b.calls - a.calls), latencyError };
}
