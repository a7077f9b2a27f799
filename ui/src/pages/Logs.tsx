/**
 * The log explorer: search (the API's language, errors inline), time range with presets and drag-to-zoom
 * on the severity histogram, a virtualised table with cursor paging, a detail panel with click-to-filter,
 * live tail over SSE, and a link from a record's trace id to its trace.
 */
import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { getRouteApi, Link } from "@tanstack/react-router";
import { useInfiniteQuery, useQuery } from "@tanstack/react-query";
import { ApiError } from "../api/client";
import { logFields, logHistogram, searchLogs, tailLogs } from "../api/endpoints";
import type { LogRow } from "../api/types";
import { PageHeader } from "../components/Shell";
import { SearchBar } from "../components/SearchBar";
import { TimeRangePicker } from "../components/TimeRangePicker";
import { StackedBars, compact } from "../components/Chart";
import { LogTable } from "../components/LogTable";
import { AttributeList } from "../components/AttributeList";
import { Empty, ErrorState, Loading, SkeletonRows } from "../components/States";
import { Button } from "../components/ui/button";
import { Icon } from "../components/ui/icons";
import { Badge } from "../components/ui/card";
import { SEVERITIES, SEVERITY_COLOR, severityOf, type Severity } from "../lib/colors";
import { addClause, fieldClause } from "../lib/search-state";
import { pickStep, resolveRange, zoomTo, formatTimestamp } from "../lib/time";
import { cn } from "../lib/cn";

const route = getRouteApi("/logs");
const PAGE = 200;
const LIVE_MAX = 10_000;

export function LogsPage() {
  const search = route.useSearch();
  const navigate = route.useNavigate();
  const { q, from, to, live } = search;
  const set = useCallback((patch: Partial<typeof search>) => navigate({ search: (prev) => ({ ...prev, ...patch }) }), [navigate]);

  const fields = useQuery({ queryKey: ["log-fields"], queryFn: ({ signal }) => logFields(signal), staleTime: 300_000, retry: false });
  const results = useInfiniteQuery({
    queryKey: ["logs", q, from, to],
    queryFn: ({ pageParam, signal }) => searchLogs({ q, from, to, cursor: pageParam, limit: PAGE }, signal),
    initialPageParam: null as string | null,
    getNextPageParam: (last) => last.nextCursor,
    enabled: !live,
  });
  const widthMs = (() => { try { const r = resolveRange({ from, to }); return r.toMs - r.fromMs; } catch { return 3_600_000; } })();
  const step = pickStep(widthMs, 90);
  const histogram = useQuery({
    queryKey: ["logs-histogram", q, from, to, step],
    queryFn: ({ signal }) => logHistogram({ q, from, to, intervalS: step }, signal),
    enabled: !live,
  });

  // Live tail: rows arrive over SSE, newest first, capped so a busy stream cannot exhaust memory.
  const [liveRows, setLiveRows] = useState<LogRow[]>([]);
  const [liveError, setLiveError] = useState<string | null>(null);
  useEffect(() => {
    if (!live) return;
    setLiveRows([]);
    setLiveError(null);
    return tailLogs({ q }, (rows) => setLiveRows((prev) => [...rows.slice().reverse(), ...prev].slice(0, LIVE_MAX)), setLiveError);
  }, [live, q]);

  const rows = useMemo(() => (live ? liveRows : results.data?.pages.flatMap((p) => p.rows) ?? []), [live, liveRows, results.data]);
  const selected = rows.find((r) => r.id === search.log);

  // For the browser tests' performance figures: when the first page of a search is on screen.
  const rendered = useRef<string | null>(null);
  useEffect(() => {
    const key = `${q}|${from}|${to}`;
    if (results.data && rendered.current !== key) {
      rendered.current = key;
      requestAnimationFrame(() => performance.mark("maple:logs-rendered", { detail: { rows: rows.length, q } }));
    }
  }, [results.data, q, from, to, rows.length]);

  const error = results.error ?? histogram.error;
  const syntax = error instanceof ApiError && error.status === 400 && (error.position !== undefined || error.field === "q") ? error : null;

  const filter = (field: string, value: string, negate: boolean) => set({ q: addClause(q, fieldClause(field, value, negate)), log: undefined });
  const fieldNames = useMemo(() => {
    const names = new Set((fields.data ?? []).map((f) => f.name));
    for (const r of rows.slice(0, 200)) for (const k of Object.keys(r.attributes)) names.add(k);
    return [...names].sort();
  }, [fields.data, rows]);

  return (
    <div className="flex min-h-0 flex-1 flex-col">
      <PageHeader title="Logs">
        <form className="flex min-w-0 flex-[1_1_24rem] items-start gap-2" onSubmit={(e) => e.preventDefault()} role="search">
          <SearchBar label="Search logs" value={q} fields={fieldNames} autoFocus
            placeholder='level:error service:checkout "connection refused"   (press / to focus, Enter to search)'
            error={syntax ? { message: syntax.message, position: syntax.position } : null}
            onSubmit={(next) => set({ q: next.trim(), log: undefined })} />
        </form>
        <TimeRangePicker value={{ from, to }} onChange={(r) => set({ ...r, live: false })} onRefresh={() => { results.refetch(); histogram.refetch(); }} />
        <Button variant={live ? "primary" : "default"} aria-pressed={live} onClick={() => set({ live: !live, log: undefined })} title="Stream new records as they arrive" data-testid="live-toggle">
          <span className={cn("size-2 rounded-full", live ? "animate-pulse bg-white" : "bg-ok")} aria-hidden /> {live ? "Live" : "Live tail"}
        </Button>
      </PageHeader>

      {!live && (
        <section aria-label="Log volume" className="border-b border-border bg-panel px-3 pt-2 pb-1">
          <div className="flex flex-wrap items-center justify-between gap-2 text-xs text-muted">
            <span data-testid="log-total">
              {histogram.data ? <><strong className="text-fg tabular-nums">{histogram.data.total.toLocaleString()}</strong> record{histogram.data.total === 1 ? "" : "s"}</> : histogram.isLoading ? "Counting…" : ""}
              {histogram.data && <> · {compact(histogram.data.intervalS)} s buckets · drag across the chart to zoom</>}
            </span>
            <SeverityLegend />
          </div>
          {histogram.data && <VolumeHistogram data={histogram.data} onZoom={(a, b) => set({ ...zoomTo(a, b), log: undefined })} />}
          {histogram.isLoading && <div className="h-[110px] animate-pulse rounded bg-black/5" />}
        </section>
      )}
      {live && (
        <div className="flex items-center gap-2 border-b border-border bg-accent-soft px-3 py-1.5 text-xs" role="status">
          <span className="size-2 animate-pulse rounded-full bg-accent" aria-hidden />
          Streaming records that match {q ? <code className="font-mono">{q}</code> : "everything"} · {liveRows.length.toLocaleString()} received
          {liveRows.length >= LIVE_MAX && ` (showing the newest ${LIVE_MAX.toLocaleString()})`}
          {liveError && <span className="text-err">· {liveError}</span>}
        </div>
      )}

      <div className="flex min-h-0 flex-1">
        <div className={cn("flex min-h-0 min-w-0 flex-1 flex-col bg-panel", selected && "max-lg:hidden")}>
          {error && !syntax ? (
            <ErrorState error={error} onRetry={() => { results.refetch(); histogram.refetch(); }} />
          ) : syntax ? (
            <Empty title="Fix the query to search" icon="⚠">The search language is described in docs/query.md: <code>field:value</code>, <code>"a phrase"</code>, <code>-exclude</code>, <code>AND</code>/<code>OR</code>, <code>duration:&gt;100</code>.</Empty>
          ) : !live && results.isLoading ? (
            <SkeletonRows />
          ) : rows.length === 0 ? (
            live ? <Empty title="Waiting for new records…" icon="◌">Records that match arrive here as they are stored.</Empty>
              : <Empty title={q ? "No records match" : "No records in this time range"} icon="∅">Nothing in {q ? "this search" : "this time range"}. Widen the time range{q ? ", or remove a filter" : ""}; data sent to the ingest appears within seconds.</Empty>
          ) : (
            <LogTable rows={rows} selected={search.log} onSelect={(id) => set({ log: id })}
              onEnd={() => { if (!live && results.hasNextPage && !results.isFetchingNextPage) results.fetchNextPage(); }}
              loadingMore={results.isFetchingNextPage}
              footer={results.isFetchingNextPage ? <Loading label="Loading older records…" /> : !live && results.data && !results.hasNextPage ? <p className="px-3 py-2 text-xs text-muted">End of results · {rows.length.toLocaleString()} record{rows.length === 1 ? "" : "s"}</p> : null} />
          )}
        </div>
        {selected && <LogDetail row={selected} onClose={() => set({ log: undefined })} onFilter={filter} range={{ from, to }} />}
      </div>
    </div>
  );
}

function SeverityLegend() {
  return (
    <span className="flex flex-wrap gap-2" aria-hidden>
      {SEVERITIES.filter((s) => s !== "UNSET").map((s) => (
        <span key={s} className="flex items-center gap-1"><span className="size-2 rounded-sm" style={{ background: SEVERITY_COLOR[s] }} />{s}</span>
      ))}
    </span>
  );
}

function VolumeHistogram({ data, onZoom }: { data: Awaited<ReturnType<typeof logHistogram>>; onZoom: (a: number, b: number) => void }) {
  const { xs, groups } = useMemo(() => {
    const stepMs = data.intervalS * 1000;
    const first = Math.floor(data.startMs / stepMs) * stepMs;
    const xsMs: number[] = [];
    for (let t = first; t < data.endMs; t += stepMs) xsMs.push(t);
    const index = new Map(xsMs.map((t, i) => [t, i]));
    const values: Record<Severity, number[]> = Object.fromEntries(SEVERITIES.map((s) => [s, xsMs.map(() => 0)])) as Record<Severity, number[]>;
    for (const b of data.buckets) {
      const i = index.get(Math.floor(b.tMs / stepMs) * stepMs);
      if (i === undefined) continue;
      for (const [sev, n] of Object.entries(b.counts)) values[severityOf(sev)][i] += n;
    }
    const order: Severity[] = ["FATAL", "ERROR", "WARN", "INFO", "DEBUG", "TRACE", "UNSET"];
    return {
      xs: xsMs.map((t) => t / 1000),
      groups: order.map((s) => ({ label: s, color: SEVERITY_COLOR[s], values: values[s] })),
    };
  }, [data]);
  return <StackedBars xs={xs} stepS={data.intervalS} groups={groups} height={110} onZoom={onZoom} ariaLabel={`Log volume by severity, ${data.total} records`} />;
}

function LogDetail({ row, onClose, onFilter, range }: {
  row: LogRow;
  onClose: () => void;
  onFilter: (field: string, value: string, negate: boolean) => void;
  range: { from: string; to: string };
}) {
  const sev = severityOf(row.severityText, row.severityNumber);
  // The panel does not take focus: ↑/↓ in the table keep moving through records while it follows them.
  return (
    <aside tabIndex={-1} aria-label="Log record" data-testid="log-detail"
      onKeyDown={(e) => { if (e.key === "Escape") onClose(); }}
      className="flex min-h-0 w-full flex-col overflow-auto border-l border-border bg-panel lg:w-[min(40rem,45%)]">
      <header className="sticky top-0 flex items-center gap-2 border-b border-border bg-panel px-3 py-2">
        <span className="size-2.5 rounded-sm" style={{ background: SEVERITY_COLOR[sev] }} aria-hidden />
        <strong className="text-sm">{row.severityText || sev}</strong>
        <span className="truncate text-sm text-muted">{row.service}</span>
        <span className="ml-auto font-mono text-xs text-muted">{formatTimestamp(row.timestampMs)}</span>
        <Button variant="ghost" size="sm" onClick={onClose} aria-label="Close (Esc)" title="Close (Esc)"><Icon name="close" /></Button>
      </header>
      <div className="flex flex-col gap-4 p-3">
        <pre className="max-h-72 overflow-auto rounded-md bg-bg p-2 font-mono text-xs break-words whitespace-pre-wrap" data-testid="log-body">{row.body || <span className="text-muted">(empty body)</span>}</pre>
        <div className="flex flex-wrap items-center gap-2 text-xs">
          {row.traceId ? (
            <Link to="/traces/$traceId" params={{ traceId: row.traceId }} search={row.spanId ? { span: row.spanId } : {}}
              className="inline-flex h-7 items-center gap-1 rounded-md border border-accent bg-accent px-2 font-medium text-white hover:bg-[#a8380a]" data-testid="open-trace">
              View trace →
            </Link>
          ) : <Badge>no trace id</Badge>}
          {row.traceId && (
            <Link to="/logs" search={{ q: fieldClause("trace_id", row.traceId), from: range.from, to: range.to, live: false }} className="text-accent underline">
              All logs of this trace
            </Link>
          )}
        </div>
        <AttributeList title="Record" onFilter={onFilter} attributes={{
          service: row.service, level: row.severityText, ...(row.severityNumber ? { severity_number: String(row.severityNumber) } : {}),
          ...(row.traceId ? { trace_id: row.traceId } : {}), ...(row.spanId ? { span_id: row.spanId } : {}),
        }} testid="record-fields" />
        <AttributeList title="Attributes" attributes={row.attributes} onFilter={onFilter} fieldPrefix="attributes." testid="log-attributes" />
        <AttributeList title="Resource" attributes={row.resourceAttributes} onFilter={onFilter} fieldPrefix="resource." testid="resource-attributes" />
        <p className="text-xs text-muted">{row.timestamp}{row.scopeName ? ` · scope ${row.scopeName}` : ""}</p>
      </div>
    </aside>
  );
}
