/** SQL for power users: the API's read-only SQL endpoint, results as a table and a simple chart. */
import { useMemo, useState } from "react";
import { getRouteApi } from "@tanstack/react-router";
import { useQuery } from "@tanstack/react-query";
import { runSql } from "../api/endpoints";
import type { SqlResult } from "../api/types";
import { PageHeader } from "../components/Shell";
import { SqlEditor } from "../components/SqlEditor";
import { TimeSeriesChart, compact } from "../components/Chart";
import { Empty, ErrorState, Loading } from "../components/States";
import { Button } from "../components/ui/button";
import { Card, CardHeader, Kbd } from "../components/ui/card";
import { isNumericType, planChart, toEpochSeconds, toNumber } from "../lib/sql-chart";
import { cn } from "../lib/cn";
import type { SqlSearch } from "../lib/search-state";

const route = getRouteApi("/sql");

const EXAMPLES = [
  { label: "Logs per service, last hour", sql: "SELECT ServiceName, count() AS logs\nFROM otel_logs\nWHERE Timestamp > now() - INTERVAL 1 HOUR\nGROUP BY ServiceName\nORDER BY logs DESC" },
  { label: "Errors per minute", sql: "SELECT toStartOfMinute(Timestamp) AS minute, countIf(SeverityNumber >= 17) AS errors, count() AS logs\nFROM otel_logs\nWHERE Timestamp > now() - INTERVAL 1 HOUR\nGROUP BY minute\nORDER BY minute" },
  { label: "Slowest spans", sql: "SELECT ServiceName, SpanName, Duration / 1e6 AS ms, TraceId\nFROM otel_traces\nWHERE Timestamp > now() - INTERVAL 1 HOUR\nORDER BY Duration DESC\nLIMIT 20" },
];

const TABLES: Record<string, string[]> = {
  otel_logs: ["Timestamp", "TraceId", "SpanId", "SeverityText", "SeverityNumber", "ServiceName", "Body", "ResourceAttributes", "LogAttributes", "ScopeName"],
  otel_traces: ["Timestamp", "TraceId", "SpanId", "ParentSpanId", "SpanName", "SpanKind", "ServiceName", "Duration", "StatusCode", "StatusMessage", "SpanAttributes", "ResourceAttributes"],
  otel_metrics_sum: ["TimeUnix", "MetricName", "ServiceName", "Attributes", "Value"],
  otel_metrics_gauge: ["TimeUnix", "MetricName", "ServiceName", "Attributes", "Value"],
  otel_metrics_histogram: ["TimeUnix", "MetricName", "ServiceName", "Attributes", "Count", "Sum", "BucketCounts", "ExplicitBounds"],
};

const SHOWN = 2000;

export function SqlPage() {
  const search = route.useSearch();
  const navigate = route.useNavigate();
  const set = (patch: Partial<SqlSearch>) => navigate({ search: (prev) => ({ ...prev, ...patch }) });
  const [draft, setDraft] = useState(search.sql);
  const [runId, setRunId] = useState(0);
  const result = useQuery({
    queryKey: ["sql", search.sql, runId],
    queryFn: ({ signal }) => runSql(search.sql, signal),
    enabled: search.sql.trim() !== "",
    staleTime: Infinity,
    retry: false,
  });
  const run = (sql: string) => {
    setDraft(sql);
    if (sql === search.sql) setRunId((n) => n + 1);
    else set({ sql });
  };

  return (
    <div className="flex min-h-0 flex-1 flex-col">
      <PageHeader title="SQL">
        <span className="text-xs text-muted">read-only: one SELECT, WITH, SHOW, DESCRIBE or EXPLAIN; ClickHouse's limits apply</span>
      </PageHeader>
      <div className="flex min-h-0 flex-1 flex-col gap-3 overflow-auto p-3">
        <SqlEditor value={draft} onChange={setDraft} onRun={run} tables={TABLES} error={result.error ? (result.error as Error).message : null} />
        <div className="flex flex-wrap items-center gap-2">
          <Button variant="primary" onClick={() => run(draft)} disabled={!draft.trim() || result.isFetching} data-testid="sql-run">
            {result.isFetching ? "Running…" : "Run"}
          </Button>
          <span className="text-xs text-muted"><Kbd>Ctrl</Kbd>+<Kbd>Enter</Kbd></span>
          <span className="ml-auto flex flex-wrap gap-1">
            {EXAMPLES.map((e) => <Button key={e.label} size="sm" variant="ghost" onClick={() => run(e.sql)}>{e.label}</Button>)}
          </span>
        </div>
        {!search.sql.trim() ? <Empty title="Write a query and run it" icon="⌨">Tables: otel_logs, otel_traces, otel_metrics_sum, otel_metrics_gauge, otel_metrics_histogram. Try one of the examples.</Empty>
          : result.isLoading ? <Loading label="Running…" />
          : result.error ? <ErrorState error={result.error} title="The query failed" />
          : result.data ? <Results data={result.data} chart={search.chart} onChart={(chart) => set({ chart })} /> : null}
      </div>
    </div>
  );
}

function Results({ data, chart, onChart }: { data: SqlResult; chart: SqlSearch["chart"]; onChart: (c: SqlSearch["chart"]) => void }) {
  const plan = useMemo(() => planChart(data.columns), [data.columns]);
  const numeric = useMemo(() => data.columns.map((c) => isNumericType(c.type)), [data.columns]);
  return (
    <>
      <p className="text-xs text-muted" data-testid="sql-summary">
        {data.rowCount.toLocaleString()} row{data.rowCount === 1 ? "" : "s"}{data.truncated ? " (cut at the API's limit)" : ""}
        {data.tookMs !== undefined && <> · {data.tookMs.toFixed(1)} ms</>}{data.rowsRead !== undefined && <> · {data.rowsRead.toLocaleString()} rows read</>}
      </p>
      {plan.kind !== "none" && (
        <Card>
          <CardHeader title="Chart">
            <span className="flex gap-1" role="group" aria-label="Chart">
              <Button size="sm" variant={chart === "none" ? "primary" : "default"} aria-pressed={chart === "none"} onClick={() => onChart("none")}>Off</Button>
              <Button size="sm" variant={chart !== "none" ? "primary" : "default"} aria-pressed={chart !== "none"} onClick={() => onChart(plan.kind === "time" ? "line" : "bar")} data-testid="sql-chart-on">
                {plan.kind === "time" ? "Line" : "Bars"}
              </Button>
            </span>
          </CardHeader>
          {chart !== "none" && <div className="p-2" data-testid="sql-chart"><ResultChart data={data} plan={plan} /></div>}
        </Card>
      )}
      <Card className="overflow-auto">
        <table className="w-full text-sm" data-testid="sql-results">
          <thead className="sticky top-0 bg-bg text-left text-xs"><tr>
            {data.columns.map((c, j) => <th key={c.name} className={cn("px-2 py-1.5 font-medium whitespace-nowrap", numeric[j] && "text-right")}>{c.name} <span className="font-normal text-muted">{c.type}</span></th>)}
          </tr></thead>
          <tbody>
            {data.rows.slice(0, SHOWN).map((row, i) => (
              <tr key={i} className="border-t border-border/60">
                {row.map((v, j) => <td key={j} className={cn("max-w-[32rem] truncate px-2 py-1 font-mono text-xs", numeric[j] && "text-right tabular-nums")} title={typeof v === "string" && v.length > 60 ? v : undefined}>{cell(v)}</td>)}
              </tr>
            ))}
          </tbody>
        </table>
        {data.rows.length === 0 && <Empty title="The query returned no rows" />}
        {data.rows.length > SHOWN && <p className="px-2 py-1 text-xs text-muted">Showing the first {SHOWN.toLocaleString()} rows.</p>}
      </Card>
    </>
  );
}

function cell(v: unknown): string {
  if (v === null || v === undefined) return "NULL";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

const LINE_COLORS = ["#c2410c", "#2563eb", "#0d9488", "#7c3aed", "#ca8a04"];

function ResultChart({ data, plan }: { data: SqlResult; plan: Exclude<ReturnType<typeof planChart>, { kind: "none" }> }) {
  if (plan.kind === "time") {
    const pairs = data.rows.map((r) => [toEpochSeconds(r[plan.x]), r] as const).filter(([t]) => t !== null).sort((a, b) => a[0]! - b[0]!);
    const xs = pairs.map(([t]) => t!);
    const series = plan.ys.slice(0, 5).map((y, i) => ({ label: data.columns[y].name, color: LINE_COLORS[i], values: pairs.map(([, r]) => toNumber(r[y])) }));
    return <TimeSeriesChart xs={xs} series={series} height={220} ariaLabel="Query result over time" format={compact} />;
  }
  const bars = data.rows.slice(0, 30).map((r) => ({ label: cell(r[plan.x]), value: toNumber(r[plan.y]) ?? 0 }));
  const max = Math.max(1e-9, ...bars.map((b) => b.value));
  return (
    <div className="flex flex-col gap-1" role="img" aria-label={`${data.columns[plan.y].name} by ${data.columns[plan.x].name}`}>
      {bars.map((b, i) => (
        <div key={i} className="grid grid-cols-[minmax(6rem,14rem)_1fr_4rem] items-center gap-2 text-xs">
          <span className="truncate text-right" title={b.label}>{b.label}</span>
          <div className="h-4 rounded-sm bg-black/5"><div className="h-4 rounded-sm bg-accent/80" style={{ width: `${Math.max(0.5, (b.value / max) * 100)}%` }} /></div>
          <span className="tabular-nums">{compact(b.value)}</span>
        </div>
      ))}
      {data.rows.length > 30 && <p className="text-xs text-muted">The first 30 rows.</p>}
    </div>
  );
}
