/**
 * Page state in the URL, so a view is a link: each route's search parameters are parsed here from flat
 * strings (`?q=level:error&from=now-1h`), with defaults dropped on the way out to keep links short.
 * Anything unparseable falls back to the default rather than breaking the page.
 */
import { DEFAULT_RANGE, isTimeBound, type TimeRange } from "./time";

type Raw = Record<string, unknown>;

const str = (v: unknown): string | undefined => (typeof v === "string" ? v : typeof v === "number" ? String(v) : undefined);

function range(raw: Raw): TimeRange {
  const from = str(raw.from);
  const to = str(raw.to);
  if (from && isTimeBound(from) && (!to || isTimeBound(to))) return { from, to: to ?? "now" };
  return { ...DEFAULT_RANGE };
}

function num(v: unknown): number | undefined {
  const s = str(v);
  if (s === undefined || s.trim() === "") return undefined;
  const n = Number(s);
  return Number.isFinite(n) && n >= 0 ? n : undefined;
}

export type LogsSearch = TimeRange & { q: string; live: boolean; log?: string };

export function parseLogsSearch(raw: Raw): LogsSearch {
  return { q: str(raw.q) ?? "", ...range(raw), live: str(raw.live) === "1" || raw.live === true, log: str(raw.log) || undefined };
}

/** A span status the trace search matches: a trace qualifies when one of its spans has it. */
export type TraceStatus = "any" | "error" | "ok" | "unset";

export type TracesSearch = TimeRange & {
  service: string;
  operation: string;
  q: string;
  minMs?: number;
  maxMs?: number;
  status: TraceStatus;
};

export function parseTracesSearch(raw: Raw): TracesSearch {
  const status = str(raw.status);
  return {
    service: str(raw.service) ?? "",
    operation: str(raw.operation) ?? "",
    q: str(raw.q) ?? "",
    minMs: num(raw.minMs),
    maxMs: num(raw.maxMs),
    status: status === "error" || status === "ok" || status === "unset" ? status : "any",
    ...range(raw),
  };
}

export type TraceSearch = { span?: string };

export function parseTraceSearch(raw: Raw): TraceSearch {
  return { span: str(raw.span) || undefined };
}

export type RangeSearch = TimeRange;

export function parseRangeSearch(raw: Raw): RangeSearch {
  return range(raw);
}

export type SqlSearch = { sql: string; chart: "none" | "line" | "bar" };

export function parseSqlSearch(raw: Raw): SqlSearch {
  const chart = str(raw.chart);
  return { sql: str(raw.sql) ?? "", chart: chart === "line" || chart === "bar" ? chart : "none" };
}

const DEFAULTS: Raw = { q: "", from: DEFAULT_RANGE.from, to: DEFAULT_RANGE.to, live: false, status: "any",
  service: "", operation: "", sql: "", chart: "none" };

/** The router's `stringifySearch`: flat `key=value` pairs, defaults and empty values left out. */
export function stringifySearch(search: Raw): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(search)) {
    if (v === undefined || v === null || v === "" || v === false || DEFAULTS[k] === v) continue;
    params.set(k, v === true ? "1" : String(v));
  }
  const s = params.toString();
  return s ? `?${s}` : "";
}

/** The router's `parseSearch`: every value stays a string; each route's parser gives it a type. */
export function parseSearch(search: string): Raw {
  const out: Raw = {};
  for (const [k, v] of new URLSearchParams(search.startsWith("?") ? search.slice(1) : search)) out[k] = v;
  return out;
}

/** A filter clause for the search language, quoting the value when it is not a bare word. */
export function fieldClause(field: string, value: string, negate = false): string {
  const bare = /^[A-Za-z0-9_.\-/:@]+$/.test(value) && !/^(AND|OR|NOT|TO)$/.test(value) && !value.includes(":");
  const v = bare ? value : `"${value.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
  return `${negate ? "-" : ""}${field}:${v}`;
}

/** Add a clause to a query (AND is implicit between clauses), unless the query already has it. */
export function addClause(query: string, clause: string): string {
  const q = query.trim();
  if (!q) return clause;
  if (q.split(/\s+/).includes(clause)) return q;
  return /\bOR\b/.test(q) ? `(${q}) ${clause}` : `${q} ${clause}`;
}
