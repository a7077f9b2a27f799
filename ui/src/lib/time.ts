/**
 * Time ranges as they live in the URL: `from`/`to` are either relative to now (`now`, `now-15m`, `now-2h`,
 * `now-7d`) or absolute epoch milliseconds. Relative ranges keep a shared link meaning "the last hour";
 * a zoom on the histogram turns the range absolute, because the user picked those instants.
 */

export type TimeRange = { from: string; to: string };

export type ResolvedRange = { fromMs: number; toMs: number };

const UNIT_MS: Record<string, number> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

export const PRESETS: { label: string; from: string }[] = [
  { label: "Last 5 minutes", from: "now-5m" },
  { label: "Last 15 minutes", from: "now-15m" },
  { label: "Last 1 hour", from: "now-1h" },
  { label: "Last 6 hours", from: "now-6h" },
  { label: "Last 24 hours", from: "now-24h" },
  { label: "Last 7 days", from: "now-7d" },
];

export const DEFAULT_RANGE: TimeRange = { from: "now-1h", to: "now" };

const RELATIVE = /^now(?:-(\d+)([smhdw]))?$/;

/** True when the string is a time bound this module understands. */
export function isTimeBound(value: string): boolean {
  return RELATIVE.test(value) || /^\d{10,16}$/.test(value);
}

/** One bound to epoch milliseconds; throws on anything else so a bad URL is reported, not guessed. */
export function resolveBound(value: string, nowMs: number): number {
  const m = RELATIVE.exec(value);
  if (m) return m[1] ? nowMs - Number(m[1]) * UNIT_MS[m[2]] : nowMs;
  if (/^\d{10,16}$/.test(value)) return Number(value);
  throw new Error(`not a time: ${JSON.stringify(value)} (expected now, now-15m, or epoch milliseconds)`);
}

export function resolveRange(range: TimeRange, nowMs: number = Date.now()): ResolvedRange {
  const fromMs = resolveBound(range.from, nowMs);
  const toMs = resolveBound(range.to, nowMs);
  if (fromMs >= toMs) throw new Error("the range starts after it ends");
  return { fromMs, toMs };
}

export function isRelative(range: TimeRange): boolean {
  return range.to === "now" && RELATIVE.test(range.from);
}

/** A range from a zoom selection (epoch ms), rounded to whole seconds; at least one second wide. */
export function zoomTo(aMs: number, bMs: number): TimeRange {
  let fromMs = Math.floor(Math.min(aMs, bMs) / 1000) * 1000;
  let toMs = Math.ceil(Math.max(aMs, bMs) / 1000) * 1000;
  if (toMs - fromMs < 1000) toMs = fromMs + 1000;
  return { from: String(fromMs), to: String(toMs) };
}

/** Twice as wide around the same centre (absolute), never into the future. */
export function zoomOut(range: TimeRange, nowMs: number = Date.now()): TimeRange {
  const { fromMs, toMs } = resolveRange(range, nowMs);
  const width = toMs - fromMs;
  const to = Math.min(nowMs, toMs + width / 2);
  return { from: String(Math.round(to - 2 * width)), to: String(Math.round(to)) };
}

/** Bucket widths a histogram may use; all divide a day, so buckets line up across zooms. */
export const STEPS_S = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];

/** The smallest step that keeps the histogram at or under `maxBuckets` bars. */
export function pickStep(widthMs: number, maxBuckets = 80): number {
  for (const s of STEPS_S) if (widthMs / (s * 1000) <= maxBuckets) return s;
  return STEPS_S[STEPS_S.length - 1];
}

const pad = (n: number, w = 2) => String(n).padStart(w, "0");

/** Local wall-clock time, e.g. `14:03:07.123`, with the date when it is not today. */
export function formatTimestamp(ms: number, nowMs: number = Date.now()): string {
  const d = new Date(ms);
  const today = new Date(nowMs);
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  if (d.toDateString() === today.toDateString()) return time;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
}

/** What the time-range button says. */
export function describeRange(range: TimeRange, nowMs: number = Date.now()): string {
  const preset = PRESETS.find((p) => p.from === range.from && range.to === "now");
  if (preset) return preset.label;
  const m = RELATIVE.exec(range.from);
  if (m && range.to === "now") return `Last ${m[1]}${m[2]}`;
  try {
    const { fromMs, toMs } = resolveRange(range, nowMs);
    return `${formatTimestamp(fromMs, nowMs)} → ${formatTimestamp(toMs, nowMs)}`;
  } catch {
    return "Invalid range";
  }
}

/** Duration for people: 850 µs, 12.3 ms, 1.24 s, 2m 05s. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return "–";
  if (ms < 1) return `${Math.round(ms * 1000)} µs`;
  if (ms < 10) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${ms.toFixed(1)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(2)} s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
}
