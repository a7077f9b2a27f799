/** Simple dashboards: a named list of panels, each a log/span search (counts over time, a total, or top
 * values) or a PromQL query, with a chart type. The list page creates them; the view page shows one over the
 * time range in its URL. */
import { useMemo, useState, type FormEvent } from "react";
import { getRouteApi, Link, useNavigate } from "@tanstack/react-router";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { can, formatUnix, me } from "../api/access";
import { createDashboard, dashboard as getDashboard, dashboards as listDashboards, deleteDashboard, updateDashboard, type Panel } from "../api/alerts";
import { logHistogram, metricQuery, topValues } from "../api/endpoints";
import { ApiError } from "../api/client";
import { PageHeader } from "../components/Shell";
import { Card, CardHeader, Badge } from "../components/ui/card";
import { Button } from "../components/ui/button";
import { Input, Label, Select } from "../components/ui/input";
import { Empty, ErrorState, Loading, SkeletonRows } from "../components/States";
import { TimeSeriesChart } from "../components/Chart";
import { TimeRangePicker } from "../components/TimeRangePicker";
import { PALETTE } from "../lib/colors";
import { pickStep, resolveRange } from "../lib/time";
import { ME_KEY } from "../router";

const NEW_PANEL: Panel = { title: "", kind: "search", signal: "logs", q: "level:error", query: "", group_by: null, chart: "line" };

export function DashboardsPage() {
  const queryClient = useQueryClient();
  const navigate = useNavigate();
  const who = useQuery({ queryKey: ME_KEY, queryFn: ({ signal }) => me(signal), staleTime: 60_000 });
  const list = useQuery({ queryKey: ["dashboards"], queryFn: ({ signal }) => listDashboards(signal) });
  const [name, setName] = useState("");
  const create = useMutation({
    mutationFn: () => createDashboard({ name, description: "", range: "now-1h", panels: [{ ...NEW_PANEL, title: "Error logs" }] }),
    onSuccess: (made) => { queryClient.invalidateQueries({ queryKey: ["dashboards"] }); navigate({ to: "/dashboards/$dashboardId", params: { dashboardId: String(made.id) }, search: {} }); },
  });
  const submit = (e: FormEvent) => { e.preventDefault(); create.mutate(); };
  return (
    <div className="flex min-h-0 flex-1 flex-col">
      <PageHeader title="Dashboards" />
      <div className="flex min-h-0 flex-1 flex-col gap-3 overflow-auto p-3">
        {can(who.data?.role, "editor") && (
          <Card>
            <form onSubmit={submit} className="flex flex-wrap items-end gap-3 p-3">
              <Label className="min-w-64 flex-1">New dashboard <Input required value={name} onChange={(e) => setName(e.target.value)} placeholder="checkout overview" /></Label>
              <Button type="submit" variant="primary" disabled={create.isPending}>Create</Button>
            </form>
            {create.error && <ErrorState error={create.error} />}
          </Card>
        )}
        <Card>
          {list.error ? <ErrorState error={list.error} onRetry={() => list.refetch()} /> : list.isLoading ? <SkeletonRows rows={3} />
            : (list.data ?? []).length === 0 ? <Empty title="No dashboards yet" icon="▦">A dashboard puts searches and metric queries side by side, for the whole team.</Empty>
            : (
              <ul className="divide-y divide-border/60 text-sm" data-testid="dashboards">
                {(list.data ?? []).map((d) => (
                  <li key={d.id} className="flex items-center gap-2 px-3 py-2">
                    <Link to="/dashboards/$dashboardId" params={{ dashboardId: String(d.id) }} search={{}} className="font-medium text-accent hover:underline">{d.name}</Link>
                    <span className="text-xs text-muted">{d.panels.length} panel{d.panels.length === 1 ? "" : "s"} · {d.created_by} · {formatUnix(d.updated_at)}</span>
                  </li>))}
              </ul>
            )}
        </Card>
      </div>
    </div>
  );
}

const route = getRouteApi("/app/dashboards/$dashboardId");

export function DashboardPage() {
  const { dashboardId } = route.useParams();
  const id = Number(dashboardId);
  const search = route.useSearch();
  const navigate = route.useNavigate();
  const queryClient = useQueryClient();
  const who = useQuery({ queryKey: ME_KEY, queryFn: ({ signal }) => me(signal), staleTime: 60_000 });
  const editor = can(who.data?.role, "editor");
  const dash = useQuery({ queryKey: ["dashboard", id], queryFn: ({ signal }) => getDashboard(id, signal) });
  const [adding, setAdding] = useState<Panel | null>(null);
  const save = useMutation({
    mutationFn: (panels: Panel[]) => updateDashboard(id, { ...dash.data!, panels }),
    onSuccess: () => { setAdding(null); queryClient.invalidateQueries({ queryKey: ["dashboard", id] }); },
  });
  const remove = useMutation({ mutationFn: () => deleteDashboard(id), onSuccess: () => { queryClient.invalidateQueries({ queryKey: ["dashboards"] }); navigate({ to: "/dashboards" }); } });
  if (dash.error) {
    return <><PageHeader title="Dashboard" />{dash.error instanceof ApiError && dash.error.status === 404
      ? <Empty title="No such dashboard" icon="?"><Link to="/dashboards" className="text-accent underline">All dashboards</Link></Empty>
      : <ErrorState error={dash.error} onRetry={() => dash.refetch()} />}</>;
  }
  const d = dash.data;
  return (
    <div className="flex min-h-0 flex-1 flex-col">
      <PageHeader title={d?.name ?? "Dashboard"}>
        <TimeRangePicker value={{ from: search.from, to: search.to }} onChange={(r) => navigate({ search: r })} onRefresh={() => queryClient.invalidateQueries({ queryKey: ["panel"] })} />
        {d && editor && <div className="ml-auto flex gap-2">
          <Button size="sm" onClick={() => setAdding({ ...NEW_PANEL })}>Add panel</Button>
          <Button size="sm" variant="danger" onClick={() => { if (window.confirm(`Delete ${d.name}?`)) remove.mutate(); }}>Delete</Button>
        </div>}
      </PageHeader>
      {!d ? <Loading /> : (
        <div className="flex min-h-0 flex-1 flex-col gap-3 overflow-auto p-3">
          {adding && (
            <Card><CardHeader title="New panel" />
              <PanelForm panel={adding} onChange={setAdding} onSubmit={() => save.mutate([...d.panels, adding])} onCancel={() => setAdding(null)} />
              {save.error && <ErrorState error={save.error} />}
            </Card>
          )}
          {d.panels.length === 0 ? <Empty title="No panels" icon="▦">{editor ? "Add a panel: a search or a PromQL query." : "An editor adds panels."}</Empty> : (
            <div className="grid grid-cols-1 gap-3 lg:grid-cols-2" data-testid="panels">
              {d.panels.map((p, i) => (
                <Card key={i} data-testid="panel">
                  <CardHeader title={p.title}>
                    <Badge>{p.kind === "search" ? `${p.signal} search` : "PromQL"} · {p.chart}</Badge>
                    {editor && <Button size="sm" variant="ghost" onClick={() => save.mutate(d.panels.filter((_, j) => j !== i))} aria-label={`Remove ${p.title}`}>Remove</Button>}
                  </CardHeader>
                  <PanelView panel={p} from={search.from} to={search.to} />
                </Card>))}
            </div>
          )}
        </div>
      )}
    </div>
  );
}

function PanelForm({ panel, onChange, onSubmit, onCancel }: { panel: Panel; onChange: (p: Panel) => void; onSubmit: () => void; onCancel: () => void }) {
  const set = (patch: Partial<Panel>) => onChange({ ...panel, ...patch });
  return (
    <form className="flex flex-wrap items-end gap-3 p-3" onSubmit={(e) => { e.preventDefault(); onSubmit(); }}>
      <Label>Title <Input required value={panel.title} onChange={(e) => set({ title: e.target.value })} /></Label>
      <Label>Kind <Select value={panel.kind} onChange={(e) => set({ kind: e.target.value as Panel["kind"] })} aria-label="Kind"><option value="search">log search</option><option value="metric">PromQL</option></Select></Label>
      {panel.kind === "search"
        ? <Label className="min-w-64 flex-1">Search <Input className="font-mono" value={panel.q} onChange={(e) => set({ q: e.target.value })} /></Label>
        : <Label className="min-w-64 flex-1">PromQL <Input className="font-mono" required value={panel.query} onChange={(e) => set({ query: e.target.value })} placeholder="sum by (service_name) (rate(traces_span_metrics_calls[5m]))" /></Label>}
      <Label>Chart <Select value={panel.chart} onChange={(e) => set({ chart: e.target.value as Panel["chart"] })} aria-label="Chart">
        {(["line", "bar", "number", "table"] as const).map((c) => <option key={c} value={c}>{c}</option>)}</Select></Label>
      <Button type="submit" variant="primary">Add</Button><Button onClick={onCancel}>Cancel</Button>
    </form>
  );
}

function PanelView({ panel, from, to }: { panel: Panel; from: string; to: string }) {
  const { fromMs, toMs } = useMemo(() => resolveRange({ from, to }), [from, to]);
  const stepS = pickStep(toMs - fromMs, 60);
  const data = useQuery({
    queryKey: ["panel", panel, from, to],
    queryFn: async ({ signal }) => {
      if (panel.kind === "metric") {
        const result = await metricQuery({ promql: panel.query, from, to, stepS }, signal);
        return { series: result.series.map((s, i) => ({ label: Object.entries(s.labels).map(([k, v]) => `${k}=${v}`).join(", ") || "value",
          color: PALETTE[i % PALETTE.length], xs: s.points.map(([t]) => t / 1000), values: s.points.map(([, v]) => v) })), top: null };
      }
      if (panel.chart === "table") {
        const top = await topValues({ q: panel.q, from, to, field: panel.group_by || "service", limit: 10 }, signal);
        return { series: [], top };
      }
      const h = await logHistogram({ q: panel.q, from, to, intervalS: stepS }, signal);
      const xs = h.buckets.map((b) => b.tMs / 1000);
      return { series: [{ label: "records", color: PALETTE[0], xs, values: h.buckets.map((b) => Object.values(b.counts).reduce((a, c) => a + c, 0)) }], top: null, total: h.total };
    },
  });
  if (data.error) return <ErrorState error={data.error} onRetry={() => data.refetch()} />;
  if (!data.data) return <div className="h-40"><Loading /></div>;
  const { series, top } = data.data;
  if (top) {
    return top.values.length === 0 ? <Empty title="Nothing in range" icon="∅" /> : (
      <table className="w-full text-sm"><tbody>{top.values.map((v) => (
        <tr key={v.value} className="border-t border-border/60"><td className="px-3 py-1">{v.value}</td><td className="px-3 text-right tabular-nums">{v.count.toLocaleString()}</td></tr>))}</tbody></table>
    );
  }
  if (series.length === 0 || series.every((s) => s.values.every((v) => v == null || v === 0))) return <Empty title="Nothing in range" icon="∅">No data for this panel in the time range.</Empty>;
  if (panel.chart === "number") {
    const total = "total" in data.data ? (data.data as { total: number }).total : series[0].values.filter((v): v is number => v != null).pop() ?? 0;
    return <p className="px-3 py-6 text-center text-3xl font-semibold tabular-nums" data-testid="panel-number">{Number(total).toLocaleString(undefined, { maximumFractionDigits: 3 })}</p>;
  }
  return <div className="p-2"><TimeSeriesChart xs={series[0].xs} xRange={[fromMs / 1000, toMs / 1000]} series={series.map((s) => ({ label: s.label, color: s.color, values: s.values }))} ariaLabel={panel.title} height={180} /></div>;
}
