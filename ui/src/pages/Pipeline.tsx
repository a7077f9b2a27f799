/** What an operator looks at first: are Kafka and ClickHouse up, how far behind is each stage, dead letters. */
import { useQuery } from "@tanstack/react-query";
import { health } from "../api/endpoints";
import { PageHeader } from "../components/Shell";
import { Card, CardHeader, Stat, Badge } from "../components/ui/card";
import { ErrorState, Loading, Empty } from "../components/States";
import { Button } from "../components/ui/button";
import { Icon } from "../components/ui/icons";
import { formatDuration } from "../lib/time";
import { cn } from "../lib/cn";

const fmtPerS = (v: number) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2));

/** The stage a consumer group belongs to, by Maple's group naming (worker.group, sink.group). */
function stageOf(group: string): string {
  if (/worker/i.test(group)) return "Worker";
  if (/sink/i.test(group)) return "Sink";
  return "";
}

export function PipelinePage() {
  const q = useQuery({ queryKey: ["health"], queryFn: ({ signal }) => health(signal), refetchInterval: 5_000 });
  const h = q.data;
  const tone = (ok: boolean) => (ok ? "ok" : "err") as "ok" | "err";
  return (
    <div className="flex min-h-0 flex-1 flex-col">
      <PageHeader title="Pipeline">
        {h && <Badge tone={h.status === "ok" ? "ok" : h.status === "down" ? "err" : "warn"} data-testid="pipeline-status">{h.status}</Badge>}
        {h?.age_s != null && <span className="text-xs text-muted">measured {h.age_s.toFixed(0)} s ago · refreshes every 5 s</span>}
        <Button size="sm" variant="ghost" className="ml-auto" onClick={() => q.refetch()}><Icon name="refresh" /> Refresh</Button>
      </PageHeader>
      <div className="flex min-h-0 flex-1 flex-col gap-3 overflow-auto p-3">
        {q.error ? <ErrorState error={q.error} onRetry={() => q.refetch()} />
          : !h ? <Loading />
          : (
            <>
              <div className="grid grid-cols-2 gap-2 md:grid-cols-4" data-testid="pipeline-stats">
                <Stat label="Kafka" value={h.kafka.ok ? "reachable" : "unreachable"} hint={h.kafka.detail} tone={tone(h.kafka.ok)} />
                <Stat label="ClickHouse" value={h.clickhouse.ok ? "reachable" : "unreachable"} hint={h.clickhouse.detail} tone={tone(h.clickhouse.ok)} />
                <Stat label="Dead letters" value={h.dead_letters.count == null ? "?" : h.dead_letters.count.toLocaleString()} hint={h.dead_letters.topic}
                  tone={h.dead_letters.count ? "err" : h.dead_letters.count === 0 ? "ok" : "warn"} />
                <Stat label="Ingest (OTLP requests)" value={<span data-testid="ingest-rate">{h.ingest?.requests_per_s != null ? `${fmtPerS(h.ingest.requests_per_s)}/s` : "–"}</span>}
                  hint={h.ingest?.requests_per_s != null
                    ? Object.entries(h.ingest.by_signal).sort(([, a], [, b]) => b - a).map(([k, v]) => `${k} ${fmtPerS(v)}`).join(" · ")
                    : "known after two measurements"} />
              </div>
              <Card>
                <CardHeader title="Consumer lag"><span className="text-xs text-muted">records each stage has yet to process, and the age of the oldest</span></CardHeader>
                {h.lag.length === 0 ? <Empty title="No consumer groups yet" icon="⇶">Workers and sinks appear here once they have joined their groups.</Empty> : (
                  <div className="overflow-x-auto">
                    <table className="w-full text-sm" data-testid="lag-table">
                      <thead className="bg-bg text-left text-xs text-muted"><tr>
                        <th className="px-3 py-1.5 font-medium">Group</th><th className="px-2 text-right font-medium">Messages behind</th>
                        <th className="px-2 text-right font-medium">Oldest unprocessed</th><th className="px-2 text-right font-medium">Partitions</th><th className="px-3 font-medium">Problem</th>
                      </tr></thead>
                      <tbody>{h.lag.map((g) => (
                        <tr key={g.group} className="border-t border-border/60">
                          <td className="px-3 py-1.5"><span className="mr-2 text-xs font-medium">{stageOf(g.group)}</span><span className="font-mono text-xs text-muted">{g.group}</span></td>
                          <td className={cn("px-2 text-right tabular-nums", g.messages > 10_000 && "text-warn")}>{g.messages.toLocaleString()}</td>
                          <td className={cn("px-2 text-right tabular-nums", (g.seconds ?? 0) > 60 && "text-err")}>
                            {g.messages === 0 ? <span className="text-ok">caught up</span> : g.seconds == null ? "–" : formatDuration(g.seconds * 1000)}
                          </td>
                          <td className="px-2 text-right tabular-nums">{g.partitions}</td>
                          <td className="px-3 text-xs text-err">{g.error ?? ""}</td>
                        </tr>))}</tbody>
                    </table>
                  </div>
                )}
              </Card>
            </>
          )}
      </div>
    </div>
  );
}
