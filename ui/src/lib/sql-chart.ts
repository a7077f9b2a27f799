/** Which chart suits a SQL result: a time series when the first column is a time, bars for categories. */

export type ChartPlan =
  | { kind: "time"; x: number; ys: number[] }
  | { kind: "bar"; x: number; y: number }
  | { kind: "none"; reason: string };

export const isNumericType = (t: string) => /^(Nullable\()?(U?Int\d+|Float\d+|Decimal)/.test(t.replace(/^LowCardinality\(/, ""));
const isTimeType = (t: string) => /^(Nullable\()?(DateTime|Date)/.test(t);

export function planChart(columns: { name: string; type: string }[]): ChartPlan {
  if (columns.length < 2) return { kind: "none", reason: "A chart needs two columns: a label or time, then a number." };
  const ys = columns.map((c, i) => (i > 0 && isNumericType(c.type) ? i : -1)).filter((i) => i > 0);
  if (ys.length === 0) return { kind: "none", reason: "No numeric column after the first to plot." };
  if (isTimeType(columns[0].type)) return { kind: "time", x: 0, ys };
  return { kind: "bar", x: 0, y: ys[0] };
}

/** A time value from ClickHouse's JSON (`2026-11-28 12:00:00[.fff]`, ISO, or epoch) to epoch seconds. */
export function toEpochSeconds(v: unknown): number | null {
  if (typeof v === "number") return v > 1e11 ? v / 1000 : v;
  if (typeof v !== "string") return null;
  const iso = /^\d{4}-\d{2}-\d{2} \d/.test(v) ? `${v.replace(" ", "T")}Z` : /^\d{4}-\d{2}-\d{2}$/.test(v) ? `${v}T00:00:00Z` : v;
  const ms = Date.parse(iso);
  return Number.isFinite(ms) ? ms / 1000 : null;
}

export function toNumber(v: unknown): number | null {
  if (typeof v === "number") return v;
  if (typeof v === "string" && v.trim() !== "" && Number.isFinite(Number(v))) return Number(v);
  return null;
}
