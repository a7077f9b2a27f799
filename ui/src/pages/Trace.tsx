/** One trace: summary, waterfall, and the selected span's attributes, events and links; links to its logs. */
import { useMemo } from "react";
import { getRouteApi, Link } from "@tanstack/react-router";
import { useQuery } from "@tanstack/react-query";
import { getTrace } from "../api/endpoints";
import type { Span, Trace } from "../api/types";
import { PageHeader } from "../components/Shell";
import { Waterfall } from "../components/Waterfall";
import { AttributeList } from "../components/AttributeList";
import { Empty, ErrorState, Loading } from "../components/States";
import { Badge } from "../components/ui/card";
import { Button } from "../components/ui/button";
import { Icon } from "../components/ui/icons";
import { ApiError } from "../api/client";
import { serviceColors } from "../lib/colors";
import { fieldClause } from "../lib/search-state";
import { formatDuration, formatTimestamp } from "../lib/time";

const route = getRouteApi("/traces/$traceId");

/** A window around the trace for its logs: a minute either side, as absolute epoch ms. */
function logsRange(trace: Trace, durationMs: number) {
  return { from: String(Math.floor(trace.startEpochMs - 60_000)), to: String(Math.ceil(trace.startEpochMs + durationMs + 60_000)) };
}

export function TracePage() {
  const { traceId } = route.useParams();
  const { span } = route.useSearch();
  const navigate = route.useNavigate();
  const query = useQuery({ queryKey: ["trace", traceId], queryFn: ({ signal }) => getTrace(traceId, signal) });
  const trace = query.data;
  const summary = useMemo(() => {
    if (!trace || trace.spans.length === 0) return null;
    const end = Math.max(...trace.spans.map((s) => s.startMs + s.durationMs));
    const root = trace.spans.find((s) => !s.parentSpanId) ?? trace.spans[0];
    return { durationMs: end, root, errors: trace.spans.filter((s) => s.error).length, services: new Set(trace.spans.map((s) => s.service)).size };
  }, [trace]);
  const selected = trace?.spans.find((s) => s.spanId === span);
  const colors = useMemo(() => serviceColors(trace?.spans.map((s) => s.service) ?? []), [trace]);
  const select = (id: string | undefined) => navigate({ search: { span: id }, replace: true });

  return (
    <div className="flex min-h-0 flex-1 flex-col">
      <PageHeader title="Trace">
        <code className="truncate font-mono text-xs text-muted" data-testid="trace-id">{traceId}</code>
        {trace && summary && (
          <Link to="/logs" search={{ q: fieldClause("trace_id", traceId), ...logsRange(trace, summary.durationMs), live: false }}
            className="ml-auto inline-flex h-8 items-center rounded-md border border-border px-3 text-sm hover:bg-bg" data-testid="trace-logs">
            Logs of this trace →
          </Link>
        )}
      </PageHeader>
      {query.isLoading ? <Loading label="Loading the trace…" />
        : query.error ? (query.error instanceof ApiError && query.error.status === 404
          ? <Empty title="Trace not found" icon="∅">No spans with id <code className="font-mono">{traceId}</code>. It may not be sampled, not yet stored (the tail sampler waits for late spans), or past retention.</Empty>
          : <ErrorState error={query.error} onRetry={() => query.refetch()} />)
        : !trace || !summary ? <Empty title="This trace has no spans" />
        : (
          <>
            <section className="flex flex-wrap items-center gap-x-5 gap-y-1 border-b border-border bg-panel px-3 py-2 text-sm" aria-label="Summary">
              <span className="flex items-center gap-1.5 font-semibold">
                <span className="size-2.5 rounded-full" style={{ background: colors.get(summary.root.service) }} aria-hidden />
                {summary.root.service} <span className="font-normal">{summary.root.name}</span>
              </span>
              <span><span className="text-muted">Duration </span><strong className="tabular-nums">{formatDuration(summary.durationMs)}</strong></span>
              <span data-testid="trace-span-count"><span className="text-muted">Spans </span><strong>{trace.spans.length}</strong></span>
              <span><span className="text-muted">Services </span><strong>{summary.services}</strong></span>
              <span>{summary.errors ? <Badge tone="err">{summary.errors} error{summary.errors > 1 ? "s" : ""}</Badge> : <Badge tone="ok">no errors</Badge>}</span>
              <span className="text-xs text-muted">{formatTimestamp(trace.startEpochMs)}</span>
            </section>
            <div className="flex min-h-0 flex-1 max-lg:flex-col">
              <div className="flex min-h-0 min-w-0 flex-1 flex-col bg-panel"><Waterfall spans={trace.spans} selected={span} onSelect={select} colors={colors} /></div>
              {selected && <SpanDetail span={selected} trace={trace} color={colors.get(selected.service) ?? "#888"} onClose={() => select(undefined)} />}
            </div>
          </>
        )}
    </div>
  );
}

function SpanDetail({ span, trace, color, onClose }: { span: Span; trace: Trace; color: string; onClose: () => void }) {
  const range = logsRange(trace, span.startMs + span.durationMs);
  return (
    <aside aria-label="Span" data-testid="span-detail" onKeyDown={(e) => { if (e.key === "Escape") onClose(); }}
      className="flex min-h-0 flex-col overflow-auto border-border bg-panel max-lg:max-h-[50%] max-lg:border-t lg:w-[min(34rem,40%)] lg:border-l">
      <header className="sticky top-0 flex items-center gap-2 border-b border-border bg-panel px-3 py-2">
        <span className="size-2.5 rounded-sm" style={{ background: color }} aria-hidden />
        <strong className="truncate text-sm">{span.name}</strong>
        <span className="text-xs text-muted">{span.service}</span>
        <Button variant="ghost" size="sm" className="ml-auto" onClick={onClose} aria-label="Close (Esc)"><Icon name="close" /></Button>
      </header>
      <div className="flex flex-col gap-4 p-3 text-sm">
        <div className="flex flex-wrap gap-2">
          <Badge>{span.kind || "kind unset"}</Badge>
          <Badge tone={span.error ? "err" : "ok"}>{span.statusCode || "Unset"}{span.statusMessage ? `: ${span.statusMessage}` : ""}</Badge>
          <Badge>{formatDuration(span.durationMs)}</Badge>
          <Badge>at +{formatDuration(span.startMs)}</Badge>
        </div>
        <div className="text-xs">
          <Link to="/logs" search={{ q: fieldClause("span_id", span.spanId), ...range, live: false }} className="text-accent underline">Logs of this span</Link>
        </div>
        <AttributeList title="Span" attributes={{ span_id: span.spanId, ...(span.parentSpanId ? { parent_span_id: span.parentSpanId } : {}), ...(span.scopeName ? { scope: span.scopeName } : {}) }} />
        <AttributeList title="Attributes" attributes={span.attributes} testid="span-attributes" />
        <AttributeList title="Resource" attributes={span.resourceAttributes} />
        <section className="flex flex-col gap-1" data-testid="span-events">
          <h3 className="text-xs font-semibold tracking-wide text-muted uppercase">Events <span className="font-normal">({span.events.length})</span></h3>
          {span.events.length === 0 ? <p className="text-xs text-muted">None</p> : span.events.map((e, i) => (
            <div key={i} className="rounded-md border border-border p-2">
              <div className="flex justify-between text-xs"><strong className={/exception/i.test(e.name) ? "text-err" : ""}>{e.name}</strong><span className="text-muted tabular-nums">+{formatDuration(e.timeMs - span.startMs)}</span></div>
              {Object.keys(e.attributes).length > 0 && <div className="mt-1"><AttributeList title="" attributes={e.attributes} /></div>}
            </div>
          ))}
        </section>
        <section className="flex flex-col gap-1" data-testid="span-links">
          <h3 className="text-xs font-semibold tracking-wide text-muted uppercase">Links <span className="font-normal">({span.links.length})</span></h3>
          {span.links.length === 0 ? <p className="text-xs text-muted">None</p> : span.links.map((l, i) => (
            <div key={i} className="rounded-md border border-border p-2 text-xs">
              <Link to="/traces/$traceId" params={{ traceId: l.traceId }} search={{ span: l.spanId }} className="font-mono text-accent underline">{l.traceId.slice(0, 16)}… / {l.spanId}</Link>
              {Object.keys(l.attributes).length > 0 && <div className="mt-1"><AttributeList title="" attributes={l.attributes} /></div>}
            </div>
          ))}
        </section>
      </div>
    </aside>
  );
}
