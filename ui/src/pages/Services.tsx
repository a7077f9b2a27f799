/** Every service's RED figures over the range, and the service map from the dependencies endpoint. */
import { useMemo, useState } from "react";
import { getRouteApi, Link } from "@tanstack/react-router";
import { useQuery } from "@tanstack/react-query";
import { dependencies, listServices } from "../api/endpoints";
import type { ServiceRed } from "../api/types";
import { PageHeader } from "../components/Shell";
import { TimeRangePicker } from "../components/TimeRangePicker";
import { ServiceMap } from "../components/ServiceMap";
import { Card, CardHeader } from "../components/ui/card";
import { Empty, ErrorState, SkeletonRows } from "../components/States";
import { serviceColors } from "../lib/colors";
import { formatDuration } from "../lib/time";
import { cn } from "../lib/cn";

const route = getRouteApi("/services");

type SortKey = "service" | "requestsPerSecond" | "errorRate" | "p50Ms" | "p95Ms" | "p99Ms";

/** A rate readable at any size: per second from 1/s up, per minute below. */
export const fmtRate = (perS: number) => (perS >= 100 ? `${perS.toFixed(0)}/s` : perS >= 1 ? `${perS.toFixed(2)}/s` : perS * 60 >= 0.1 ? `${(perS * 60).toFixed(1)}/min` : `${(perS * 3600).toFixed(1)}/h`);
export const fmtPct = (v: number) => `${(v * 100).toFixed(v >= 0.1 ? 1 : 2)}%`;
export const fmtMs = (v: number | null) => (v == null ? "–" : formatDuration(v));

export function ServicesPage() {
  const range = route.useSearch();
  const navigate = route.useNavigate();
  const [sort, setSort] = useState<{ key: SortKey; desc: boolean }>({ key: "requestsPerSecond", desc: true });
  const services = useQuery({ queryKey: ["services", range.from, range.to], queryFn: ({ signal }) => listServices(range, signal) });
  const deps = useQuery({ queryKey: ["dependencies", range.from, range.to], queryFn: ({ signal }) => dependencies(range, signal) });

  const colors = useMemo(() => serviceColors([...(services.data ?? []).map((s) => s.service), ...(deps.data?.services ?? [])]), [services.data, deps.data]);
  const rows = [...(services.data ?? [])].sort((a, b) => {
    const x = a[sort.key] ?? -1, y = b[sort.key] ?? -1;
    const c = typeof x === "string" ? x.localeCompare(String(y)) : (x as number) - (y as number);
    return sort.desc ? -c : c;
  });
  const header = (key: SortKey, label: string, right = true) => (
    <th className={cn("px-2 py-1.5 font-medium", right ? "text-right" : "text-left")} aria-sort={sort.key === key ? (sort.desc ? "descending" : "ascending") : "none"}>
      <button type="button" className="hover:text-fg" onClick={() => setSort({ key, desc: sort.key === key ? !sort.desc : key !== "service" })}>
        {label}{sort.key === key ? (sort.desc ? " ↓" : " ↑") : ""}
      </button>
    </th>
  );

  return (
    <div className="flex min-h-0 flex-1 flex-col">
      <PageHeader title="Services">
        <div className="ml-auto"><TimeRangePicker value={range} onChange={(r) => navigate({ search: r })} onRefresh={() => { services.refetch(); deps.refetch(); }} /></div>
      </PageHeader>
      <div className="flex min-h-0 flex-1 flex-col gap-3 overflow-auto p-3">
        <Card>
          <CardHeader title="RED metrics"><span className="text-xs text-muted">requests served (server and consumer spans), counted before sampling</span></CardHeader>
          {services.error ? <ErrorState error={services.error} onRetry={() => services.refetch()} />
            : services.isLoading ? <SkeletonRows rows={4} />
            : rows.length === 0 ? <Empty title="No services in this range" icon="◎">Send traces to the ingest (OTLP on :4317/:4318); RED metrics count every span, sampled or not.</Empty>
            : (
              <div className="overflow-x-auto">
                <table className="w-full text-sm" data-testid="services-table">
                  <thead className="bg-bg text-xs text-muted"><tr>
                    {header("service", "Service", false)}{header("requestsPerSecond", "Rate")}<th className="px-2 text-right font-medium">Calls</th>
                    {header("errorRate", "Errors")}{header("p50Ms", "p50")}{header("p95Ms", "p95")}{header("p99Ms", "p99")}
                  </tr></thead>
                  <tbody>{rows.map((s) => <ServiceRow key={s.service} s={s} range={range} color={colors.get(s.service) ?? "#888"} />)}</tbody>
                </table>
              </div>
            )}
        </Card>
        <Card>
          <CardHeader title="Service map"><span className="text-xs text-muted">calls between services from parent/child spans; width by calls, red by errors</span></CardHeader>
          {deps.error ? <ErrorState error={deps.error} onRetry={() => deps.refetch()} />
            : deps.isLoading ? <SkeletonRows rows={3} />
            : (deps.data?.edges.length ?? 0) === 0 && (services.data?.length ?? 0) === 0 ? <Empty title="No calls between services yet" icon="⇄">Edges appear when a span's parent belongs to another service.</Empty>
            : <ServiceMap edges={deps.data?.edges ?? []} services={services.data ?? []} search={range} colors={colors} />}
        </Card>
      </div>
    </div>
  );
}

function ServiceRow({ s, range, color }: { s: ServiceRed; range: { from: string; to: string }; color: string }) {
  return (
    <tr className="border-t border-border/60 hover:bg-accent-soft/40" data-testid="service-row" data-service={s.service}>
      <td className="px-2 py-1.5">
        <Link to="/services/$service" params={{ service: s.service }} search={range} className="flex items-center gap-1.5 font-medium hover:underline">
          <span className="size-2.5 rounded-full" style={{ background: color }} aria-hidden />{s.service}
        </Link>
      </td>
      <td className="px-2 text-right tabular-nums">{fmtRate(s.requestsPerSecond)}</td>
      <td className="px-2 text-right tabular-nums" data-testid="service-calls">{s.calls.toLocaleString()}</td>
      <td className={cn("px-2 text-right tabular-nums", s.errors > 0 && "text-err")} data-testid="service-errors">{s.errors.toLocaleString()} <span className="text-xs">({fmtPct(s.errorRate)})</span></td>
      <td className="px-2 text-right tabular-nums">{fmtMs(s.p50Ms)}</td>
      <td className="px-2 text-right tabular-nums">{fmtMs(s.p95Ms)}</td>
      <td className="px-2 text-right tabular-nums">{fmtMs(s.p99Ms)}</td>
    </tr>
  );
}
