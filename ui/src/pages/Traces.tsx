/** Trace search: by service, operation, attributes (the search language), duration and status. */
import { useState } from "react";
import { getRouteApi, Link } from "@tanstack/react-router";
import { useInfiniteQuery, useQuery } from "@tanstack/react-query";
import { ApiError } from "../api/client";
import { listServices, searchTraces } from "../api/endpoints";
import { PageHeader } from "../components/Shell";
import { TimeRangePicker } from "../components/TimeRangePicker";
import { SearchBar } from "../components/SearchBar";
import { Empty, ErrorState, SkeletonRows, Loading } from "../components/States";
import { Button } from "../components/ui/button";
import { Input, Label, Select } from "../components/ui/input";
import { Badge } from "../components/ui/card";
import { serviceColor } from "../lib/colors";
import { formatDuration, formatTimestamp } from "../lib/time";
import type { TracesSearch } from "../lib/search-state";

const route = getRouteApi("/traces");

export function TracesPage() {
  const search = route.useSearch();
  const navigate = route.useNavigate();
  const set = (patch: Partial<TracesSearch>) => navigate({ search: (prev) => ({ ...prev, ...patch }) });
  const [draft, setDraft] = useState({ operation: search.operation, minMs: search.minMs?.toString() ?? "", maxMs: search.maxMs?.toString() ?? "", q: search.q });

  const services = useQuery({ queryKey: ["services", search.from, search.to], queryFn: ({ signal }) => listServices({ from: search.from, to: search.to }, signal) });
  const results = useInfiniteQuery({
    queryKey: ["traces", search],
    queryFn: ({ pageParam, signal }) => searchTraces({ ...search, cursor: pageParam, limit: 100 }, signal),
    initialPageParam: null as string | null,
    getNextPageParam: (last) => last.nextCursor,
  });
  const traces = results.data?.pages.flatMap((p) => p.traces) ?? [];
  const maxDuration = Math.max(1, ...traces.map((t) => t.durationMs));
  const err = results.error;
  const syntax = err instanceof ApiError && err.status === 400 && (err.position !== undefined || err.field === "q") ? err : null;

  const fromDraft = (): Partial<TracesSearch> => {
    const num = (v: string) => (v.trim() === "" || !Number.isFinite(Number(v)) ? undefined : Number(v));
    return { operation: draft.operation.trim(), minMs: num(draft.minMs), maxMs: num(draft.maxMs), q: draft.q.trim() };
  };
  const apply = (patch: Partial<TracesSearch> = {}) => set({ ...fromDraft(), ...patch });

  return (
    <div className="flex min-h-0 flex-1 flex-col">
      <PageHeader title="Traces">
        <div className="ml-auto"><TimeRangePicker value={{ from: search.from, to: search.to }} onChange={(r) => set(r)} onRefresh={() => results.refetch()} /></div>
      </PageHeader>
      <form className="flex flex-wrap items-end gap-2 border-b border-border bg-panel px-3 py-2" onSubmit={(e) => { e.preventDefault(); apply(); }} aria-label="Trace filters">
        <Label>Service
          <Select value={search.service} onChange={(e) => set({ service: e.target.value })} data-testid="trace-service">
            <option value="">All services</option>
            {(services.data ?? []).map((s) => <option key={s.service} value={s.service}>{s.service}</option>)}
            {search.service && !services.data?.some((s) => s.service === search.service) && <option value={search.service}>{search.service}</option>}
          </Select>
        </Label>
        <Label>Operation
          <Input value={draft.operation} onChange={(e) => setDraft({ ...draft, operation: e.target.value })} placeholder="span name" className="w-40" data-testid="trace-operation" />
        </Label>
        <Label>Min duration (ms)
          <Input inputMode="decimal" value={draft.minMs} onChange={(e) => setDraft({ ...draft, minMs: e.target.value })} className="w-24" />
        </Label>
        <Label>Max duration (ms)
          <Input inputMode="decimal" value={draft.maxMs} onChange={(e) => setDraft({ ...draft, maxMs: e.target.value })} className="w-24" />
        </Label>
        <Label>Span status
          <Select value={search.status} onChange={(e) => set({ status: e.target.value as TracesSearch["status"] })} data-testid="trace-status"
            title="Traces with a span of this status">
            <option value="any">Any</option><option value="error">Error</option><option value="ok">Ok</option><option value="unset">Unset</option>
          </Select>
        </Label>
        <Label className="min-w-[16rem] flex-1">Attributes
          <SearchBar label="Span attributes" value={search.q} placeholder="http.route:/checkout status:>=500"
            error={syntax ? { message: syntax.message, position: syntax.position } : null}
            onChange={(q) => setDraft((d) => ({ ...d, q }))} onSubmit={(q) => apply({ q: q.trim() })} />
        </Label>
        <Button type="submit" variant="primary">Search</Button>
      </form>
      <div className="min-h-0 flex-1 overflow-auto bg-panel">
        {err && !syntax ? <ErrorState error={err} onRetry={() => results.refetch()} />
          : results.isLoading ? <SkeletonRows />
          : traces.length === 0 ? <Empty title="No traces match" icon="∅">Widen the time range or loosen a filter. Traces are stored once the tail sampler decides on them (a few seconds after their last span).</Empty>
          : (
            <table className="w-full text-sm" data-testid="trace-results">
              <thead className="sticky top-0 bg-bg text-left text-xs text-muted">
                <tr><th className="px-3 py-1.5 font-medium">Start</th><th className="px-2 font-medium">Root</th><th className="px-2 font-medium max-md:hidden">Services</th>
                  <th className="px-2 text-right font-medium">Spans</th><th className="px-2 text-right font-medium">Errors</th><th className="w-1/4 px-3 font-medium">Duration</th></tr>
              </thead>
              <tbody>
                {traces.map((t) => (
                  <tr key={t.traceId} className="border-b border-border/60 hover:bg-accent-soft/50" data-testid="trace-row">
                    <td className="px-3 py-1.5 font-mono text-xs whitespace-nowrap text-muted">{formatTimestamp(t.startMs)}</td>
                    <td className="max-w-[24rem] px-2">
                      <Link to="/traces/$traceId" params={{ traceId: t.traceId }} className="flex min-w-0 items-center gap-1.5 hover:underline">
                        <span className="size-2 shrink-0 rounded-full" style={{ background: serviceColor(t.rootService || "?") }} aria-hidden />
                        <span className="shrink-0 text-xs text-muted">{t.rootService || "?"}</span>
                        <span className="truncate font-medium">{t.rootName || <em className="text-muted">root span missing</em>}</span>
                      </Link>
                    </td>
                    <td className="px-2 max-md:hidden"><span className="flex flex-wrap gap-1">{t.services.slice(0, 4).map((s) => <Badge key={s}>{s}</Badge>)}{t.services.length > 4 && <Badge>+{t.services.length - 4}</Badge>}</span></td>
                    <td className="px-2 text-right tabular-nums">{t.spanCount}</td>
                    <td className="px-2 text-right tabular-nums">{t.errorCount ? <Badge tone="err">{t.errorCount}</Badge> : <span className="text-muted">0</span>}</td>
                    <td className="px-3">
                      <div className="flex items-center gap-2">
                        <div className="h-2 flex-1 rounded-sm bg-black/5"><div className={`h-2 rounded-sm ${t.errorCount ? "bg-err" : "bg-accent/70"}`} style={{ width: `${Math.max(1, (t.durationMs / maxDuration) * 100)}%` }} /></div>
                        <span className="w-16 text-right text-xs tabular-nums">{formatDuration(t.durationMs)}</span>
                      </div>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        {results.hasNextPage && <div className="p-3"><Button onClick={() => results.fetchNextPage()} disabled={results.isFetchingNextPage}>{results.isFetchingNextPage ? "Loading…" : "Load more"}</Button></div>}
        {results.isFetching && !results.isLoading && !results.isFetchingNextPage && <Loading label="Refreshing…" />}
      </div>
    </div>
  );
}
