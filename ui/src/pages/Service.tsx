/** One service: its RED figures over time, top operations, recent error traces and error logs. */
import { useMemo } from "react";
import { getRouteApi, Link } from "@tanstack/react-router";
import { useQuery } from "@tanstack/react-query";
import { listServices, searchLogs, searchTraces } from "../api/endpoints";
import { serviceLatencySeries, serviceRateSeries, topOperations } from "../api/red";
import { PageHeader } from "../components/Shell";
import { TimeRangePicker } from "../components/TimeRangePicker";
import { TimeSeriesChart, compact, type ChartSeries } from "../components/Chart";
import { Card, CardHeader, Stat, Badge } from "../components/ui/card";
import { Empty, ErrorState, SkeletonRows } from "../components/States";
import { serviceColor } from "../lib/colors";
import { fieldClause } from "../lib/search-state";
import { formatDuration, formatTimestamp, pickStep, resolveRange, zoomTo } from "../lib/time";
import { fmtMs, fmtPct, fmtRate } from "./Services";

const route = getRouteApi("/services/$service");

export function ServicePage() {
  const { service } = route.useParams();
  const range = route.useSearch();
  const navigate = route.useNavigate();
  const widthMs = (() => { try { const r = resolveRange(range); return r.toMs - r.fromMs; } catch { return 3_600_000; } })();
  const stepS = Math.max(60, pickStep(widthMs, 60));

  const summary = useQuery({ queryKey: ["services", range.from, range.to], queryFn: ({ signal }) => listServices(range, signal) });
  const rates = useQuery({ queryKey: ["red-rate", service, range.from, range.to, stepS], queryFn: ({ signal }) => serviceRateSeries(service, range, stepS, signal) });
  const latency = useQuery({ queryKey: ["red-latency", service, range.from, range.to, stepS], queryFn: ({ signal }) => serviceLatencySeries(service, range, stepS, signal) });
  const ops = useQuery({ queryKey: ["operations", service, range.from, range.to], queryFn: ({ signal }) => topOperations(service, range, widthMs / 1000, signal) });
  const errTraces = useQuery({ queryKey: ["error-traces", service, range.from, range.to], queryFn: ({ signal }) => searchTraces({ ...range, service, status: "error", limit: 10 }, signal) });
  const errLogs = useQuery({ queryKey: ["error-logs", service, range.from, range.to], queryFn: ({ signal }) => searchLogs({ q: `${fieldClause("service", service)} (level:error OR level:fatal)`, ...range, limit: 10 }, signal) });

  const red = summary.data?.find((s) => s.service === service);
  const onZoom = (a: number, b: number) => navigate({ search: zoomTo(a, b) });
  const color = serviceColor(service);
  const charts = useMemo(() => {
    const c: { key: string; title: string; note?: string; source: "rates" | "latency"; xs?: number[]; xRange?: [number, number]; series?: ChartSeries[]; format: (v: number) => string }[] = [
      { key: "rate", title: "Requests per second", note: rates.data && `${rates.data.calls.toLocaleString()} requests`, source: "rates", xs: rates.data?.xs, xRange: rates.data?.xRange, format: compact,
        series: rates.data && [{ label: "requests/s", color, values: rates.data.rate }] },
      { key: "errors", title: "Error rate (%)", note: rates.data && `${rates.data.errors.toLocaleString()} errors`, source: "rates", xs: rates.data?.xs, xRange: rates.data?.xRange, format: (v) => `${+v.toFixed(2)}%`,
        series: rates.data && [{ label: "errors %", color: "#dc2626", values: rates.data.errorPct }] },
      { key: "latency", title: "Latency", source: "latency", xs: latency.data?.xs, xRange: latency.data?.xRange, format: (v) => formatDuration(v),
        series: latency.data && [
          { label: "p50", color: "#60a5fa", values: latency.data.p50 },
          { label: "p95", color: "#f59e0b", values: latency.data.p95 },
          { label: "p99", color: "#dc2626", values: latency.data.p99 }] },
    ];
    return c;
  }, [rates.data, latency.data, color]);

  return (
    <div className="flex min-h-0 flex-1 flex-col">
      <PageHeader title="Service">
        <span className="flex items-center gap-1.5 font-semibold"><span className="size-2.5 rounded-full" style={{ background: color }} aria-hidden />{service}</span>
        <Link to="/traces" search={{ service, from: range.from, to: range.to }} className="text-sm text-accent underline">Traces</Link>
        <Link to="/logs" search={{ q: fieldClause("service", service), from: range.from, to: range.to }} className="text-sm text-accent underline">Logs</Link>
        <div className="ml-auto"><TimeRangePicker value={range} onChange={(r) => navigate({ search: r })} /></div>
      </PageHeader>
      <div className="flex min-h-0 flex-1 flex-col gap-3 overflow-auto p-3">
        {summary.error ? <ErrorState error={summary.error} onRetry={() => summary.refetch()} /> : (
          <div className="grid grid-cols-2 gap-2 sm:grid-cols-3 lg:grid-cols-6" data-testid="service-stats">
            <Stat label="Rate" value={red ? fmtRate(red.requestsPerSecond) : "–"} hint={red ? `${red.calls.toLocaleString()} calls` : summary.isLoading ? "loading" : "no calls in range"} />
            <Stat label="Errors" value={red ? fmtPct(red.errorRate) : "–"} hint={red ? `${red.errors.toLocaleString()} errors` : undefined} tone={red && red.errors ? "err" : undefined} />
            <Stat label="p50" value={red ? fmtMs(red.p50Ms) : "–"} />
            <Stat label="p95" value={red ? fmtMs(red.p95Ms) : "–"} />
            <Stat label="p99" value={red ? fmtMs(red.p99Ms) : "–"} />
            <Stat label="Calls" value={red ? red.calls.toLocaleString() : "–"} />
          </div>
        )}
        <div className="grid gap-3 lg:grid-cols-3">
          {charts.map((c) => ({ ...c, query: c.source === "rates" ? rates : latency })).map((c) => (
            <Card key={c.key}>
              <CardHeader title={c.title}>{c.note && <span className="text-xs text-muted" data-testid={`chart-total-${c.key}`}>{c.note} in range</span>}</CardHeader>
              <div className="p-2">
                {c.query.error ? <ErrorState error={c.query.error} className="m-0" onRetry={() => c.query.refetch()} />
                  : !c.xs || !c.series ? <div className="h-[150px] animate-pulse rounded bg-black/5" />
                  : c.xs.length === 0 ? <Empty title="No data points in this range" className="py-8" />
                  : <TimeSeriesChart xs={c.xs} xRange={c.xRange} series={c.series} height={150} onZoom={onZoom} ariaLabel={`${service}: ${c.title} over time`} format={c.format} />}
              </div>
            </Card>
          ))}
        </div>
        <div className="grid gap-3 lg:grid-cols-2">
          <Card>
            <CardHeader title="Top operations" />
            {ops.error ? <ErrorState error={ops.error} /> : ops.isLoading ? <SkeletonRows rows={4} /> : (ops.data?.operations.length ?? 0) === 0 ? <Empty title="No operations in this range" /> : (<>
              <table className="w-full text-sm" data-testid="operations-table">
                <thead className="bg-bg text-left text-xs text-muted"><tr><th className="px-3 py-1.5 font-medium">Operation</th><th className="px-2 text-right font-medium">Calls</th><th className="px-2 text-right font-medium">Errors</th><th className="px-3 text-right font-medium">p95</th></tr></thead>
                <tbody>{ops.data!.operations.slice(0, 15).map((o) => (
                  <tr key={o.operation} className="border-t border-border/60">
                    <td className="px-3 py-1.5"><Link to="/traces" search={{ service, operation: o.operation, from: range.from, to: range.to }} className="hover:underline">{o.operation || <em>unnamed</em>}</Link></td>
                    <td className="px-2 text-right tabular-nums">{o.calls.toLocaleString()}</td>
                    <td className="px-2 text-right tabular-nums">{o.errors ? <span className="text-err">{o.errors.toLocaleString()}</span> : 0}</td>
                    <td className="px-3 text-right tabular-nums">{fmtMs(o.p95Ms)}</td>
                  </tr>))}</tbody>
              </table>
              {ops.data!.latencyError && <p className="px-3 py-1.5 text-xs text-err">p95 unavailable: {ops.data!.latencyError}</p>}
            </>)}
          </Card>
          <Card>
            <CardHeader title="Recent errors" />
            {errTraces.error ? <ErrorState error={errTraces.error} /> : errTraces.isLoading ? <SkeletonRows rows={3} /> : (
              <div className="flex flex-col" data-testid="recent-errors">
                {(errTraces.data?.traces ?? []).map((t) => (
                  <Link key={t.traceId} to="/traces/$traceId" params={{ traceId: t.traceId }} className="flex items-center gap-2 border-t border-border/60 px-3 py-1.5 text-sm hover:bg-accent-soft/40">
                    <Badge tone="err">{t.errorCount} err</Badge><span className="truncate">{t.rootName}</span>
                    <span className="ml-auto text-xs text-muted tabular-nums">{formatDuration(t.durationMs)} · {formatTimestamp(t.startMs)}</span>
                  </Link>
                ))}
                {(errLogs.data?.rows ?? []).map((r) => (
                  <Link key={r.id} to="/logs" search={{ q: `${fieldClause("service", service)} (level:error OR level:fatal)`, from: range.from, to: range.to }} className="flex items-center gap-2 border-t border-border/60 px-3 py-1.5 text-sm hover:bg-accent-soft/40">
                    <Badge tone="err">{r.severityText || "error"}</Badge><span className="truncate font-mono text-xs">{r.body}</span>
                    <span className="ml-auto shrink-0 text-xs text-muted">{formatTimestamp(r.timestampMs)}</span>
                  </Link>
                ))}
                {(errTraces.data?.traces.length ?? 0) === 0 && (errLogs.data?.rows.length ?? 0) === 0 && <Empty title="No errors in this range" icon="✓" />}
              </div>
            )}
          </Card>
        </div>
      </div>
    </div>
  );
}
